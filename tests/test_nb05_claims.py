"""Notebook 05's thin margins, re-measured on other test images than the notebook's own.

The notebook asserts each claim once, on its first test images. Where the margin is a few
points (momentum's gain in transfer, transfer against random noise, the one-pixel attack), these
tests measure the same quantity with the notebook's settings on other, disjoint subsets of the
test set, so that the notebook's threshold is not the luck of one draw. They use the course
models of ``training.trained`` (the notebook's own, trained on first use and then cached; FAST
mode). They train or load the three course models and attack hundreds of images (about a
minute), so they run only when ``CNN_UTILS_CLAIMS=1`` (``make claims``).
"""

import os

import numpy as np
import pytest

from cnn_utils import config, data, robustness, training

pytestmark = pytest.mark.skipif(
    os.environ.get("CNN_UTILS_CLAIMS") != "1",
    reason="claim checks attack hundreds of images with three models; set CNN_UTILS_CLAIMS=1",
)

EPS = 0.1  # the notebook's TRANSFER_EPS
STEPS = 20
SUBSETS = [slice(150, 300), slice(300, 450), slice(450, 600)]  # the notebook: x_test[:150]


def random_sign_noise(model, x, y, epsilon, seed=0, **unused):
    x = np.asarray(x, dtype="float32")
    signs = np.random.default_rng(seed).choice(np.array([-1.0, 1.0], "float32"), size=x.shape)
    return np.clip(x + epsilon * signs, 0.0, 1.0)


@pytest.fixture(scope="module")
def course():
    ds = data.load_dataset("fashion_mnist", test_subset=config.by_mode(fast=1000, full=10000))
    zoo = {
        "small CNN": training.trained("small_cnn", dataset="fashion_mnist", verbose=0),
        "ResNet": training.trained("resnet", dataset="fashion_mnist", verbose=0),
        "GoogLeNet": training.trained("googlenet", dataset="fashion_mnist", verbose=0),
    }
    return ds, zoo


@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: f"test{s.start}-{s.stop}")
def test_momentum_helps_transfer_and_the_cnn_examples_beat_noise(course, subset):
    ds, zoo = course
    x, y = ds.x_test[subset], ds.y_test[subset]
    steps = {"num_steps": STEPS, "step_size": 2.5 * EPS / STEPS}
    mim = robustness.transfer_matrix(zoo, x, y, "mim", epsilon=EPS, decay=1.0, **steps)
    plain = robustness.transfer_matrix(zoo, x, y, "mim", epsilon=EPS, decay=0.0, **steps)
    noise = robustness.transfer_matrix(zoo, x, y, random_sign_noise, epsilon=EPS).iloc[0]
    off = ~np.eye(len(zoo), dtype=bool)
    gain = mim.to_numpy()[off].mean() - plain.to_numpy()[off].mean()
    pairs_won = int(np.sum(mim.to_numpy()[off] >= plain.to_numpy()[off]))
    # the notebook asserts gain > 0.03 and pairs_won >= 5 (measured there: about +0.06, 6 of 6)
    assert gain > 0.03, (gain, mim.round(3), plain.round(3))
    assert pairs_won >= 5, (mim.round(3), plain.round(3))
    for matrix in (mim, plain):
        from_cnn = matrix.loc["small CNN"].drop("small CNN")
        assert (from_cnn - noise.drop("small CNN") > 0.15).all(), (from_cnn, noise)
        assert matrix.to_numpy()[off].mean() > noise.mean()


@pytest.mark.parametrize("start", [100, 300], ids=lambda s: f"test{s}")
def test_one_pixel_beats_a_random_pixel_on_unsure_images(course, start):
    ds, zoo = course
    model = zoo["small CNN"]
    x, y = ds.x_test[start : start + 80], ds.y_test[start : start + 80]
    pred, confidence = robustness.predict_with_confidence(model, x)
    ok = np.flatnonzero(pred == y)
    rng = np.random.default_rng(0)
    best, random_pixel = [], []
    rows, cols = np.divmod(np.arange(28 * 28), 28)
    for i in ok:  # the notebook's search: every pixel moved to the far end of the range
        candidates = np.repeat(x[i][None], 28 * 28, axis=0)
        candidates[np.arange(28 * 28), rows, cols] = np.where(x[i][rows, cols] > 0.5, 0.0, 1.0)
        wrong = robustness.predict_labels(model, candidates, batch_size=784) != y[i]
        best.append(wrong.any())
        random_pixel.append(wrong[rng.integers(len(wrong))])
    best = np.array(best)
    # the notebook asserts: random < 0.05, best > random, and lower clean confidence when flipped
    assert np.mean(random_pixel) < 0.05
    assert np.mean(best) > np.mean(random_pixel), np.mean(best)
    assert confidence[ok][best].mean() < confidence[ok][~best].mean()


NOTEBOOK = os.path.join(
    os.path.dirname(__file__), "..", "notebooks", "05_adversarial_attacks.ipynb"
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_softmax_regression_turns_nines_into_every_digit_on_other_draws(seed):
    """Section 2's linear example (cell ``linear-digits``), its code read from the notebook,
    on other draws of the 2,000 training and 500 test MNIST images (the notebook uses seed 0)."""
    import json

    cells = {c.get("id"): "".join(c["source"]) for c in json.load(open(NOTEBOOK))["cells"]}
    code = cells["linear-digits"]
    assert "seed=0)" in code and "plots.image_grid(" in code, "update this test"
    code = code.replace("seed=0)", f"seed={seed})", 1).split("\nplots.image_grid(")[0]
    namespace = {"np": np, "data": data}
    exec(code, namespace)
    hit, noise_moved = namespace["hit"], namespace["noise_moved"]
    print(f"seed {seed}: {len(hit)} 9s, target reached {hit.mean():.3f}, noise {noise_moved:.3f}")
    # the notebook's assert (noise moved 5 % of the 9s there, 10-28 % on these draws)
    assert hit.mean() > 0.9 and noise_moved < hit.mean() - 0.5
