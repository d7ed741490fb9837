"""Tests of cnn_utils.exercises.ex06: each check accepts a solution, rejects typical mistakes."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import build_tiny_model
from test_attacks import train_template_model

from cnn_utils import attacks, exercises, robustness
from cnn_utils.exercises import ex06

# The lecture's linear example (notebook 05, section 2): score w.x = -3 for the label y = -1.
X = np.array([2, -1, 3, -2, 2, 2, 1, -4, 5, 1], dtype=np.float64)
W = np.array([-1, -1, 1, -1, 1, -1, 1, 1, -1, 1], dtype=np.float64)
Y, EPS = -1, 0.5


@pytest.fixture(scope="module")
def trained():
    return train_template_model()


def test_worst_case_point_of_the_linear_model():
    right = X - EPS * Y * np.sign(W)
    assert ex06.worst_case_point(right, W, X, Y, EPS, verbose=0).correct
    assert ex06.worst_case_point(..., W, X, Y, EPS, verbose=0).status == exercises.NOT_ATTEMPTED
    towards = ex06.worst_case_point(X + EPS * Y * np.sign(W), W, X, Y, EPS, verbose=0)
    assert towards.status == exercises.WRONG and "against the label" in towards.message
    outside = ex06.worst_case_point(X - 2 * EPS * Y * np.sign(W), W, X, Y, EPS, verbose=0)
    assert "leaves the L-inf ball" in outside.message
    half = ex06.worst_case_point(X - 0.5 * EPS * Y * np.sign(W), W, X, Y, EPS, verbose=0)
    assert "largest value" in half.message
    assert not ex06.worst_case_point(right[:5], W, X, Y, EPS, verbose=0).correct  # shape


def test_robust_loss_of_the_linear_model():
    right = np.log1p(np.exp(-3 + EPS * np.abs(W).sum()))  # margin 3, penalty 5: log(1 + e^2)
    assert ex06.robust_loss(right, W, X, Y, EPS, verbose=0).correct
    assert ex06.robust_loss(float(np.float32(right)), W, X, Y, EPS, verbose=0).correct
    at_x = ex06.robust_loss(np.log1p(np.exp(-3.0)), W, X, Y, EPS, verbose=0)
    assert "loss at x itself" in at_x.message
    l2 = ex06.robust_loss(np.log1p(np.exp(-3 + EPS * np.sqrt(10))), W, X, Y, EPS, verbose=0)
    assert "L2 ball" in l2.message
    lowest = ex06.robust_loss(np.log1p(np.exp(-3 - 5.0)), W, X, Y, EPS, verbose=0)
    assert "smallest loss" in lowest.message
    assert not ex06.robust_loss(right + 1.0, W, X, Y, EPS, verbose=0).correct
    assert ex06.robust_loss("8", W, X, Y, EPS, verbose=0).status == exercises.WRONG
    with pytest.raises(ValueError, match="y must be -1 or \\+1"):
        ex06.robust_loss(1.0, W, X, 0, EPS, verbose=0)


def _step(attack_labels="pred", terms=("clean", "adv"), loss_labels="true", apply=True):
    """An adversarial training step; the defaults are the lecture's, the options its mistakes."""

    def step(model, x, y, epsilon, learning_rate):
        optimizer = keras.optimizers.SGD(learning_rate)
        pred = tf.argmax(model(x, training=False), axis=-1)
        x_adv = attacks.fgsm(model, x, pred if attack_labels == "pred" else y, epsilon)
        targets = y if loss_labels == "true" else pred
        ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        with tf.GradientTape() as tape:
            loss = 0.0
            if "clean" in terms:
                loss += ce(targets, model(x, training=True))
            if "adv" in terms:
                loss += ce(targets, model(x_adv, training=True))
        if apply:
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return float(loss)

    return step


@pytest.fixture(scope="module")
def step_batch():
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 3, 32)
    return build_tiny_model(seed=5), x, y


def test_training_step_accepts_the_lecture_step(step_batch):
    model, x, y = step_batch
    before = [w.copy() for w in model.get_weights()]
    assert ex06.training_step(_step(), model, x, y, 0.1, 0.5, verbose=0).correct
    # The check works on copies: the model passed in is not trained.
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ({"attack_labels": "true"}, "attacks the model's prediction"),
        ({"terms": ("adv",)}, "also has the clean loss"),
        ({"terms": ("clean",)}, "add the loss of the adversarial"),
        ({"loss_labels": "pred"}, "against the true labels y"),
        ({"apply": False}, "weights did not move"),
    ],
)
def test_training_step_rejects_typical_mistakes(step_batch, mistake, message):
    model, x, y = step_batch
    feedback = ex06.training_step(_step(**mistake), model, x, y, 0.1, 0.5, verbose=0)
    assert feedback.status == exercises.WRONG and message in feedback.message, feedback


def test_training_step_rejects_a_wrong_update_and_other_answers(step_batch):
    model, x, y = step_batch
    right = _step()

    def twice_the_step(model, x, y, epsilon, learning_rate):
        return right(model, x, y, epsilon, 2 * learning_rate)

    wrong = ex06.training_step(twice_the_step, model, x, y, 0.1, 0.5, verbose=0)
    assert "moved differently" in wrong.message

    def skeleton(model, x, y, epsilon, learning_rate):
        raise NotImplementedError

    assert ex06.training_step(skeleton, model, x, y, verbose=0).status == exercises.NOT_ATTEMPTED
    assert "returns None" in ex06.training_step(lambda *a: None, model, x, y, verbose=0).message
    assert "not the lecture's batch loss" in (
        ex06.training_step(lambda *a: 123.0, model, x, y, verbose=0).message
    )


def test_saturated_model_hides_its_gradient_but_keeps_its_decisions(trained):
    model, x, y = trained
    masked = ex06.saturated(model)
    np.testing.assert_array_equal(
        robustness.predict_labels(masked, x), robustness.predict_labels(model, x)
    )
    plain = robustness.robust_accuracy(
        model, x, y, "pgd", epsilon=0.3, num_steps=10, step_size=0.075, seed=0, verbose=0
    )
    white_box = robustness.robust_accuracy(
        masked, x, y, "pgd", epsilon=0.3, num_steps=10, step_size=0.075, seed=0, verbose=0
    )
    assert white_box > plain + 0.3, (white_box, plain)  # the masked model *looks* robust


def test_break_masked_accepts_transfer_and_rejects_white_box(trained):
    model, x, y = trained
    masked = ex06.saturated(model)
    transferred = np.asarray(attacks.pgd(model, x, y, 0.3, 10, 0.075, seed=0))
    assert robustness.robust_accuracy(masked, transferred, y, None, verbose=0) <= 0.2
    assert ex06.break_masked(transferred, masked, x, y, 0.3, verbose=0).correct
    white_box = np.asarray(attacks.pgd(masked, x, y, 0.3, 10, 0.075, seed=0))
    stuck = ex06.break_masked(white_box, masked, x, y, 0.3, verbose=0)
    assert stuck.status == exercises.WRONG and "gradient is useless" in stuck.message
    outside = ex06.break_masked(np.clip(transferred + 0.2, 0, 1), masked, x, y, 0.3, verbose=0)
    assert "outside the eps-ball" in outside.message
    assert "valid range" in ex06.break_masked(x + 0.1, masked, x, y, 0.5, verbose=0).message
    assert ex06.break_masked(None, masked, x, y, 0.3, verbose=0).status == exercises.NOT_ATTEMPTED


def test_falls_below_finds_the_first_radius_on_the_grid(trained):
    model, x, y = trained
    x, y = x[:40], y[:40]
    eps = ex06.GRID_STEP
    while ex06.accuracy_at(model, x, y, eps) >= 0.5:
        eps = round(eps + ex06.GRID_STEP, 6)
    assert ex06.falls_below(eps, model, x, y, verbose=0).correct
    too_far = ex06.falls_below(round(eps + ex06.GRID_STEP, 6), model, x, y, verbose=0)
    assert "already below" in too_far.message
    if eps > ex06.GRID_STEP:
        too_near = ex06.falls_below(round(eps - ex06.GRID_STEP, 6), model, x, y, verbose=0)
        assert "still" in too_near.message
    assert "multiple of 0.025" in ex06.falls_below(0.01, model, x, y, verbose=0).message
    assert ex06.falls_below(..., model, x, y, verbose=0).status == exercises.NOT_ATTEMPTED
    assert ex06.accuracy_at(model, x, y, 0.0) == pytest.approx(
        robustness.robust_accuracy(model, x, y, None, verbose=0)
    )
