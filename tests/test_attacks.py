import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import build_tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnn_utils import attacks, robustness

NUM_CLASSES = 3
SHAPE = (8, 8, 1)


def images(n=16, seed=0):
    return np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)


def labels(n=16, seed=0, dtype="int64"):
    return np.random.default_rng(seed).integers(0, NUM_CLASSES, n).astype(dtype)


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


def _templates():
    rng = np.random.default_rng(1)
    return rng.random((NUM_CLASSES, *SHAPE), dtype=np.float32)


@pytest.fixture(scope="module")
def trained():
    """A small model trained on three noisy templates, and 100 test images and labels."""
    return train_template_model()


def train_template_model():
    """A small model trained on three noisy templates: clean accuracy near 1."""
    rng = np.random.default_rng(2)
    templates = _templates()
    y = rng.integers(0, NUM_CLASSES, 600)
    x = np.clip(templates[y] + 0.25 * rng.standard_normal((600, *SHAPE)), 0, 1)
    model = build_tiny_model(seed=3)
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x[:500].astype("float32"), y[:500], epochs=15, batch_size=50, verbose=0)
    return model, x[500:].astype("float32"), y[500:]


ALL = [
    pytest.param(attacks.fgsm, id="fgsm"),
    pytest.param(attacks.pgd, id="pgd"),
    pytest.param(attacks.mim, id="mim"),
]


def _call(attack, model, x, y, eps, **kwargs):
    if attack is attacks.fgsm:
        kwargs.pop("step_size", None)
        kwargs.pop("seed", None)
        return attack(model, x, y, eps, **kwargs)
    return attack(model, x, y, eps, num_steps=3, **kwargs)


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", ALL)
@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    eps=st.floats(0.0, 2.0),
    step=st.floats(0.001, 1.0),
    lo=st.sampled_from([0.0, -1.0]),
    data_seed=st.integers(0, 1000),
)
def test_result_in_ball_and_clip_range(model, attack, norm, targeted, eps, step, lo, data_seed):
    x = images(seed=data_seed) * (1.0 - lo) + lo  # in [lo, 1]
    y = labels(seed=data_seed)
    x_adv = _call(
        attack,
        model,
        x,
        y,
        eps,
        norm=norm,
        targeted=targeted,
        step_size=step,
        clip_value_min=lo,
        seed=data_seed,
    )
    assert x_adv.dtype == tf.float32 and tuple(x_adv.shape) == x.shape
    x_adv = x_adv.numpy()
    assert np.all(np.isfinite(x_adv))
    p = np.inf if norm == "linf" else 2
    assert np.all(robustness.lp_distance(x, x_adv, p) <= eps * (1 + 1e-5) + 1e-6)
    assert x_adv.min() >= lo and x_adv.max() <= 1.0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_takes_a_full_step_to_the_surface(model, norm):
    x = np.full((4, *SHAPE), 0.5, np.float32)  # far from the clip range's ends
    x_adv = attacks.fgsm(model, x, labels(4), 0.1, norm=norm).numpy()
    p = np.inf if norm == "linf" else 2
    np.testing.assert_allclose(robustness.lp_distance(x, x_adv, p), 0.1, rtol=1e-4)


@pytest.mark.parametrize("attack", ALL)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_zero_epsilon_returns_x(model, attack, norm):
    x = images()
    x_adv = _call(attack, model, tf.constant(x), labels(), 0.0, norm=norm)
    np.testing.assert_array_equal(x_adv.numpy(), x)


class ConstantModel(keras.Model):
    """Logits that do not depend on the input: the gradient is zero (or None)."""

    def __init__(self, connected=True):
        super().__init__()
        self.connected = connected

    def call(self, x, training=False):
        base = tf.constant([[1.0, 0.0, -1.0]])
        out = tf.tile(base, [tf.shape(x)[0], 1])
        if self.connected:
            out = out + 0.0 * tf.reduce_sum(x, axis=[1, 2, 3])[:, None]
        return out


@pytest.mark.parametrize("connected", [True, False])
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", ALL)
def test_zero_gradient_gives_no_nan_and_no_move(attack, norm, connected):
    x = images(4)
    x_adv = _call(attack, ConstantModel(connected), x, labels(4), 0.3, norm=norm)
    x_adv = x_adv.numpy()
    assert np.all(np.isfinite(x_adv))
    if attack is not attacks.pgd:  # no random start: nothing moves
        np.testing.assert_array_equal(x_adv, x)


def test_float16_policy_model():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_tiny_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model(images(2)).dtype == "float16"
    x = images(8)
    for attack in (attacks.fgsm, attacks.pgd, attacks.mim):
        for norm in ("linf", "l2"):
            x_adv = _call(attack, model, x, labels(8), 0.05, norm=norm)
            assert x_adv.dtype == tf.float32
            x_adv = x_adv.numpy()
            assert np.all(np.isfinite(x_adv))
            p = np.inf if norm == "linf" else 2
            assert np.all(robustness.lp_distance(x, x_adv, p) <= 0.05 + 1e-6)
    assert np.any(attacks.fgsm(model, x, labels(8), 0.05).numpy() != x)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "int64", "uint16"])
def test_labels_of_any_integer_dtype(model, dtype):
    x, y = images(), labels()
    reference = attacks.pgd(model, x, y, 0.1, num_steps=2, seed=0).numpy()
    for y_variant in (y.astype(dtype), y.astype(dtype)[:, None], tf.constant(y.astype(dtype))):
        result = attacks.pgd(model, x, y_variant, 0.1, num_steps=2, seed=0).numpy()
        np.testing.assert_array_equal(result, reference)


def test_keras_dataset_uint8_labels_shape_n_1(model):
    y = labels(dtype="uint8")[:, None]  # like keras.datasets.cifar10
    x_adv = attacks.fgsm(model, images(), y, 0.1)
    assert tuple(x_adv.shape) == (16, *SHAPE)


def test_seed_determinism(model):
    x, y = images(), labels()
    a = attacks.pgd(model, x, y, 0.2, num_steps=2, seed=7).numpy()
    b = attacks.pgd(model, x, y, 0.2, num_steps=2, seed=7).numpy()
    c = attacks.pgd(model, x, y, 0.2, num_steps=2, seed=8).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    tf.random.set_seed(5)
    d = attacks.pgd(model, x, y, 0.2, num_steps=2).numpy()
    tf.random.set_seed(5)
    e = attacks.pgd(model, x, y, 0.2, num_steps=2).numpy()
    np.testing.assert_array_equal(d, e)


def _trace_count(model):
    return sum(f.experimental_get_tracing_count() for f in attacks._COMPILED[model].values())


def test_no_retracing_when_numbers_change(model):
    x, y = images(), labels()
    attacks.pgd(model, x, y, 0.1, num_steps=2, step_size=0.01, seed=1)
    before = _trace_count(model)
    attacks.pgd(model, x, y, 0.3, num_steps=5, step_size=0.05, seed=2)
    attacks.pgd(model, x + 0, y, 0.2, num_steps=1, step_size=0.5, clip_value_min=-1.0)
    assert _trace_count(model) == before


def test_no_retracing_warning_across_models_and_settings(caplog):
    zoo = [build_tiny_model(seed) for seed in range(3)]
    x, y = images(), labels()
    with caplog.at_level("WARNING", logger="tensorflow"):
        for net in zoo:
            for attack in (attacks.fgsm, attacks.pgd, attacks.mim):
                for targeted in (False, True):
                    _call(attack, net, x, y, 0.1, targeted=targeted)
                    _call(attack, net, x[:5], y[:5], 0.1, targeted=targeted)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_mim_without_momentum_is_pgd_without_random_start(model):
    x, y = images(), labels()
    a = attacks.mim(model, x, y, 0.1, num_steps=4, step_size=0.02, decay=0.0).numpy()
    b = attacks.pgd(model, x, y, 0.1, num_steps=4, step_size=0.02, random_start=False).numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_soft_label_attacks_the_prediction(model):
    x = images()
    predicted = robustness.predict_labels(model, x)
    a = attacks.fgsm(model, x, None, 0.1, soft_label=True).numpy()
    b = attacks.fgsm(model, x, predicted, 0.1).numpy()
    np.testing.assert_array_equal(a, b)


def test_perturb_inside_tf_function_with_generator_and_stateless_seed(model):
    x, y = tf.constant(images()), tf.constant(labels())
    generator = tf.random.Generator.from_seed(1)

    @tf.function
    def train_like(x, y):
        x1 = attacks.perturb(model, x, y, 0.1, 3, 0.05, random_start=True, seed=generator)
        x2 = attacks.perturb(
            model, x, None, 0.5, 2, 0.3, norm="l2", random_start=True, seed=tf.constant([1, 2])
        )
        x3 = attacks.perturb(model, x, y, 0.1, 1, 0.125, random_start=True, decay=1.0)
        return x1, x2, x3

    x1, x2, x3 = train_like(x, y)
    train_like(x, y)
    assert train_like.experimental_get_tracing_count() == 1
    assert robustness.lp_distance(x, x1, np.inf).max() <= 0.1 + 1e-6
    assert robustness.lp_distance(x, x2, 2).max() <= 0.5 + 1e-5
    assert robustness.lp_distance(x, x3, np.inf).max() <= 0.1 + 1e-6


def test_trained_model_pgd_stronger_than_fgsm_and_targeted_success(trained):
    model, x, y = trained
    assert robustness.robust_accuracy(model, x, y, None, verbose=0) > 0.95
    for eps in (0.1, 0.2):
        fgsm_acc = robustness.robust_accuracy(model, x, y, "fgsm", epsilon=eps, verbose=0)
        pgd_acc = robustness.robust_accuracy(
            model, x, y, "pgd", epsilon=eps, num_steps=10, step_size=eps / 4, seed=0, verbose=0
        )
        assert pgd_acc <= fgsm_acc
    assert pgd_acc < 0.5
    target = (y + 1) % NUM_CLASSES
    for attack in (attacks.pgd, attacks.mim):
        x_adv = attack(model, x, target, 0.4, num_steps=20, step_size=0.05, targeted=True)
        assert np.mean(robustness.predict_labels(model, x_adv) == target) > 0.9


def test_l2_attacks_work_on_trained_model(trained):
    model, x, y = trained
    clean = robustness.robust_accuracy(model, x, y, None, verbose=0)
    acc = robustness.robust_accuracy(
        model, x, y, attacks.pgd, epsilon=2.0, norm="l2", step_size=0.5, verbose=0
    )
    assert acc < clean - 0.3


def test_primitives():
    g = tf.constant([[3.0, -4.0], [0.0, 0.0]])
    np.testing.assert_allclose(attacks.steepest_step(g, "linf"), [[1, -1], [0, 0]])
    np.testing.assert_allclose(attacks.steepest_step(g, "l2"), [[0.6, -0.8], [0, 0]])
    x = tf.zeros((2, 2))
    np.testing.assert_allclose(attacks.project(g, x, 1.0, "linf"), [[1, -1], [0, 0]])
    np.testing.assert_allclose(attacks.project(g, x, 1.0, "l2"), [[0.6, -0.8], [0, 0]])
    np.testing.assert_allclose(attacks.project(g * 0.1, x, 1.0, "l2"), g * 0.1, rtol=1e-6)
    delta = attacks.random_in_ball(tf.zeros((50, 6)), 0.5, "l2", tf.constant([1, 2]))
    norms = np.linalg.norm(delta.numpy(), axis=1)
    assert norms.max() <= 0.5 + 1e-6 and norms.min() > 0.2  # uniform in 6-D: mostly outside
    for fn, args in ((attacks.steepest_step, (g,)), (attacks.project, (g, x, 1.0))):
        with pytest.raises(ValueError, match="norm must be one of"):
            fn(*args, norm="l1")


# ---------------------------------------------------------------------------------------------
# Error paths
# ---------------------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    (attacks.pgd, {"epsilon": -0.1}, r"epsilon must be >= 0. Received: epsilon=-0.1"),
    (attacks.fgsm, {"epsilon": -0.1}, r"epsilon must be >= 0"),
    (attacks.pgd, {"epsilon": float("nan")}, r"epsilon must be finite"),
    (attacks.pgd, {"step_size": 0.0}, r"step_size must be > 0. Received: step_size=0.0"),
    (attacks.mim, {"step_size": -1}, r"step_size must be > 0"),
    (attacks.pgd, {"num_steps": 0}, r"num_steps must be >= 1. Received: num_steps=0"),
    (attacks.pgd, {"num_steps": 2.5}, r"num_steps must be an integer"),
    (attacks.mim, {"decay": -1.0}, r"decay must be >= 0"),
    (attacks.fgsm, {"norm": "l1"}, r"norm must be one of \('linf', 'l2'\). Received: norm='l1'"),
    (attacks.pgd, {"norm": "inf"}, r"norm must be one of"),
    (
        attacks.fgsm,
        {"clip_value_min": 1.0, "clip_value_max": 0.0},
        r"clip_value_min must be < clip_value_max",
    ),
    (attacks.pgd, {"seed": -3}, r"seed must be >= 0. Received: seed=-3"),
    (attacks.fgsm, {"targeted": True, "soft_label": True}, r"cannot be targeted"),
    (attacks.fgsm, {"targeted": "yes"}, r"targeted must be True or False"),
]


@pytest.mark.parametrize("attack, kwargs, message", BAD_ARGUMENTS)
def test_bad_arguments(model, attack, kwargs, message):
    with pytest.raises(ValueError, match=message):
        attack(model, images(4), labels(4), **kwargs)


def test_x_outside_clip_range_says_how_to_scale(model):
    with pytest.raises(ValueError, match=r"x must lie in .*\[0, 1\].*254.*/ 255"):
        attacks.fgsm(model, images(4) * 255, labels(4))
    with pytest.raises(ValueError, match=r"x must be finite"):
        attacks.pgd(model, np.full((2, *SHAPE), np.nan, np.float32), labels(2))


@pytest.mark.parametrize(
    "y, message",
    [
        (np.zeros(5, np.int64), r"one label per example \(4\). Received: 5 labels"),
        (np.zeros(4, np.float32), r"integer class labels.*float32"),
        (np.zeros((4, 3), np.int64), r"shape \(batch,\)"),
        (np.array([0, 1, 2, 3]), r"labels in \[0, 3\)"),
        (None, r"y must hold the labels"),
    ],
)
def test_bad_labels(model, y, message):
    with pytest.raises(ValueError, match=message):
        attacks.pgd(model, images(4), y)


@pytest.mark.parametrize("kind", ["dense", "layer", "lambda"])
def test_softmax_model_is_caught(kind):
    if kind == "dense":
        model = build_tiny_model(activation="softmax")
    else:
        base = build_tiny_model()
        head = (
            keras.layers.Softmax()
            if kind == "layer"
            else keras.layers.Lambda(lambda t: keras.ops.softmax(t))
        )
        model = keras.Sequential([base, head])
    with pytest.raises(ValueError, match=r"logits.*softmax.*Dense\(num_classes\)"):
        attacks.pgd(model, images(4), labels(4))


def test_random_sign_noise_is_the_size_of_the_attack_in_a_random_direction():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, size=(64, 8, 8, 1)).astype("float32")
    noisy = attacks.random_sign_noise(None, x, None, 0.1, seed=3).numpy()
    # Every pixel away from the clip bounds moves by exactly epsilon, both ways about equally.
    np.testing.assert_allclose(np.abs(noisy - x), 0.1, atol=1e-6)
    up = np.mean(noisy > x)
    assert 0.45 < up < 0.55, up
    # Same seed, same noise; another seed, other signs.
    np.testing.assert_array_equal(noisy, attacks.random_sign_noise(None, x, None, 0.1, seed=3))
    assert np.mean(noisy != attacks.random_sign_noise(None, x, None, 0.1, seed=4).numpy()) > 0.4
    # The clip: pixels at 0 or 1 that would leave the range stay in it.
    edge = np.concatenate([np.zeros((8, 4, 4, 1)), np.ones((8, 4, 4, 1))]).astype("float32")
    clipped = attacks.random_sign_noise(None, edge, None, 0.3, seed=0).numpy()
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0
    moved = np.abs(clipped - edge)
    assert np.all(np.isclose(moved, 0.0) | np.isclose(moved, 0.3)), np.unique(moved)
    assert np.isclose(moved, 0.0).mean() > 0.4 and np.isclose(moved, 0.3).mean() > 0.4
    # Extra attack arguments are accepted and ignored (so tables can pass num_steps etc.).
    attacks.random_sign_noise(None, x, None, 0.1, num_steps=5, step_size=0.01)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epsilon": -0.1}, "epsilon must be >= 0"),
        ({"epsilon": 0.1, "seed": -1}, "seed must be >= 0"),
    ],
)
def test_random_sign_noise_bad_arguments(kwargs, message):
    x = np.full((2, 4, 4, 1), 0.5, "float32")
    with pytest.raises(ValueError, match=message):
        attacks.random_sign_noise(None, x, None, **kwargs)
    with pytest.raises(ValueError, match="x must lie in"):
        attacks.random_sign_noise(None, x * 255, None, 0.1)
