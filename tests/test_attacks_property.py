"""Property test: 1,000 random attack configurations stay in the ball and the clip range."""

import numpy as np
import pytest
from conftest import build_tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnn_utils import attacks

ATTACKS = {"fgsm": attacks.fgsm, "pgd": attacks.pgd, "mim": attacks.mim}


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=5)


@st.composite
def configurations(draw):
    name = draw(st.sampled_from(sorted(ATTACKS)))
    mode = draw(st.sampled_from(["untargeted", "targeted", "soft_label"]))
    lo = draw(st.sampled_from([0.0, -1.0, -0.5, 0.25]))
    hi = lo + draw(st.sampled_from([0.5, 1.0, 2.0]))
    kwargs = {
        "epsilon": draw(st.floats(0.0, 1.5, allow_nan=False)),
        "norm": draw(st.sampled_from(["linf", "l2"])),
        "targeted": mode == "targeted",
        "soft_label": mode == "soft_label",
        "clip_value_min": lo,
        "clip_value_max": hi,
    }
    if name != "fgsm":
        kwargs["num_steps"] = draw(st.integers(1, 4))
        kwargs["step_size"] = draw(st.floats(1e-4, 1.0, allow_nan=False))
        kwargs["random_start"] = draw(st.booleans())
        kwargs["seed"] = draw(st.integers(0, 2**20))
    if name == "mim":
        kwargs["decay"] = draw(st.floats(0.0, 2.0, allow_nan=False))
    data_seed = draw(st.integers(0, 2**16))
    return name, kwargs, data_seed


@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(configurations())
def test_random_configurations_stay_in_ball_and_range(model, config):
    name, kwargs, data_seed = config
    rng = np.random.default_rng(data_seed)
    lo, hi = kwargs["clip_value_min"], kwargs["clip_value_max"]
    x = rng.uniform(lo, hi, (4, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 4)
    out = np.asarray(ATTACKS[name](model, x, y, **kwargs))
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert out.min() >= lo - 1e-6 and out.max() <= hi + 1e-6
    delta = (out - x).reshape(len(x), -1).astype(np.float64)
    eps = kwargs["epsilon"]
    if kwargs["norm"] == "linf":
        size = np.abs(delta).max(axis=1)
    else:
        size = np.linalg.norm(delta, axis=1)
    assert np.all(size <= eps * (1 + 1e-5) + 1e-5), (size.max(), eps)
