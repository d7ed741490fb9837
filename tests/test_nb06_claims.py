"""Notebook 06's catastrophic-overfitting claim, re-measured with other seeds.

Section 6 of the notebook trains three small MNIST models once (seed 6) with FGSM (no random
start, step eps), FGSM-RS (random start, step 1.25 eps) and PGD-5 at eps = 0.3, and asserts on
500 of their training images that FGSM training overfits catastrophically (FGSM accuracy stays
high while PGD-20 accuracy collapses to about 0) while PGD training keeps a real part of its PGD
accuracy. One seed could be luck: these tests repeat the notebook's recipe (the settings are
copied below; keep them in step with the notebook's ``CO_*`` constants) with other seeds
(other weights, training subset and random starts) and assert the same inequalities. FGSM-RS is
asserted to collapse as well (PGD accuracy <= 0.15), as the notebook says of this short run.
Training six small models takes about a minute, so they run only when ``CNN_UTILS_CLAIMS=1``
(``make claims``), in FAST mode like the notebook.
"""

import os

import pytest

from cnn_utils import attacks, data, defense, models, robustness

pytestmark = pytest.mark.skipif(
    os.environ.get("CNN_UTILS_CLAIMS") != "1",
    reason="claim checks train six small models; set CNN_UTILS_CLAIMS=1",
)

# The notebook's section 6 (FAST mode).
EPS = 0.3
CO_IMAGES = 10_000
CO_EPOCHS = 3
CO_EVAL = 500
SEEDS = [0, 1]  # the notebook uses 6


def co_architecture():
    return models.small_cnn(
        (28, 28, 1),
        10,
        filters=(16, 32),
        convs_per_stage=1,
        head="flatten",
        dense_units=64,
        dropout=0.0,
        batch_norm=False,
    )


def accuracies(attack, seed, **options):
    model = defense.adversarially_trained(
        f"claims_co_{attack}",
        co_architecture,
        "mnist",
        attack=attack,
        epsilon=EPS,
        label_mode="true",
        epochs=CO_EPOCHS,
        batch_size=128,
        learning_rate=1e-3,
        subset=CO_IMAGES,
        test_subset=100,
        seed=seed,
        verbose=0,
        **options,
    )
    ds = data.load_dataset("mnist", subset=CO_IMAGES, test_subset=100, seed=seed)
    x, y = ds.x_train[:CO_EVAL], ds.y_train[:CO_EVAL]
    row = {
        "clean": robustness.robust_accuracy(model, x, y, None, verbose=0),
        "noise": robustness.robust_accuracy(
            model, x, y, attacks.random_sign_noise, epsilon=EPS, verbose=0
        ),
        "fgsm": robustness.robust_accuracy(model, x, y, "fgsm", epsilon=EPS, verbose=0),
        "pgd": robustness.robust_accuracy(
            model,
            x,
            y,
            "pgd",
            epsilon=EPS,
            num_steps=20,
            step_size=2.5 * EPS / 20,
            seed=0,
            verbose=0,
        ),
    }
    print(f"seed {seed}, trained with {attack}: {row}")
    return row


@pytest.mark.parametrize("seed", SEEDS)
def test_fgsm_training_overfits_catastrophically_and_pgd_training_does_not(seed):
    fgsm = accuracies("fgsm", seed)
    assert fgsm["pgd"] <= 0.05 and fgsm["fgsm"] - fgsm["pgd"] >= 0.35, fgsm
    assert fgsm["clean"] - fgsm["noise"] <= 0.1, fgsm  # not simply fragile
    pgd = accuracies("pgd", seed, num_steps=5)
    assert pgd["pgd"] >= 0.3, pgd
    rs = accuracies("fgsm_rs", seed)
    assert rs["pgd"] <= 0.15, rs  # in this short run at eps = 0.3 the random start collapses too
