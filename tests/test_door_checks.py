"""Bad inputs to the evaluation and training entry points get clear errors, never a result."""

import keras
import numpy as np
import pytest
from conftest import build_tiny_model

from cnn_utils import attacks, defense, robustness

RNG = np.random.default_rng(0)
X = RNG.random((6, 8, 8, 1), dtype=np.float32)
Y = RNG.integers(0, 3, 6)


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=1)


def softmax_in_lambda():
    base = build_tiny_model(seed=2)
    out = keras.layers.Lambda(lambda t: keras.ops.softmax(t))(base.outputs[0])
    return keras.Model(base.inputs, out)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: robustness.robust_accuracy(m, X, np.array([10, 0, 1, 2, 0, 1]), None, verbose=0),
        lambda m: robustness.robust_accuracy(
            m, X, np.array([-1, 0, 1, 2, 0, 1]), "fgsm", verbose=0
        ),
        lambda m: robustness.epsilon_sweep(m, X, np.full(6, 7), [0.0, 0.1], ("fgsm",), verbose=0),
        lambda m: robustness.transfer_matrix({"a": m}, X, np.full(6, 3), "fgsm", epsilon=0.1),
    ],
    ids=["robust_accuracy clean", "robust_accuracy fgsm", "epsilon_sweep", "transfer_matrix"],
)
def test_labels_out_of_range_are_refused(model, call):
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        call(model)


def test_robust_accuracy_refuses_nan_pixels_and_two_outputs(model):
    x = X.copy()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        robustness.robust_accuracy(model, x, Y, None, verbose=0)
    two = keras.Model(model.inputs, [model.outputs[0], model.outputs[0]])
    with pytest.raises(ValueError, match="one output"):
        robustness.robust_accuracy(two, X, Y, None, verbose=0)


@pytest.mark.parametrize(
    "label, message",
    [(1.5, "class_index|y must be"), (np.eye(3)[1], "one integer"), (10, r"\[0, 3\)")],
)
def test_loss_surface_refuses_bad_labels(model, label, message):
    with pytest.raises(ValueError, match=message):
        robustness.loss_surface(model, X[0], label, [-0.1, 0.0, 0.1])


def test_loss_surface_refuses_softmax_nan_and_a_flat_loss(model):
    grid = [-0.1, 0.0, 0.1]
    with pytest.raises(ValueError, match="probabilities"):
        robustness.loss_surface(softmax_in_lambda(), X[0], 1, grid)
    x = X[0].copy()
    x[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        robustness.loss_surface(model, x, 1, grid)
    with pytest.raises(ValueError, match="finite"):
        robustness.loss_surface(model, X[0], 1, [0.0, np.nan])
    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Lambda(lambda t: 0.0 * t)(inputs)
    logits = keras.layers.Dense(3)(keras.layers.Flatten()(flat))
    with pytest.raises(ValueError, match="gradient at x is zero"):
        robustness.loss_surface(keras.Model(inputs, logits), X[0], 1, grid)
    out = robustness.loss_surface(model, X[0], np.int64(1), grid)
    assert out["loss"].shape == (3, 3) and np.isfinite(out["loss"]).all()


def test_attacks_say_when_x_does_not_fit_the_model(model):
    attacks.fgsm(model, X, Y, 0.1)  # the model is known (cached) before the bad call
    with pytest.raises(ValueError, match="input shape"):
        attacks.fgsm(model, X.reshape(6, -1), Y, 0.1)


@pytest.mark.parametrize(
    "x, y, message",
    [
        (X * 255.0, Y, "divide by 255"),
        (np.where(X > 0.5, np.nan, X).astype(np.float32), Y, "finite"),
        (X, np.full(6, 10), r"labels in \[0, 3\)"),
        (X, np.eye(3, dtype=np.float32)[Y], r"argmax\(-1\)"),
    ],
    ids=["0..255", "NaN", "label 10", "one-hot"],
)
def test_adversarial_fit_refuses_bad_arrays(x, y, message):
    trainer = defense.AdversarialModel(build_tiny_model(seed=3), 0.1, 2, 0.05)
    trainer.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match=message):
        trainer.fit(x, y, epochs=1, batch_size=3, verbose=0)
