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


def _step(
    attack_labels="asked", terms=("clean", "adv"), loss_labels="true", apply=True, weight=True
):
    """An adversarial training step; the defaults are the asked ones, the options its mistakes."""

    def step(model, x, y, epsilon, learning_rate, clean_weight, label_mode):
        optimizer = keras.optimizers.SGD(learning_rate)
        pred = tf.argmax(model(x, training=False), axis=-1)
        use_pred = (label_mode == "predicted") == (attack_labels == "asked")
        x_adv = attacks.fgsm(model, x, pred if use_pred else y, epsilon)
        targets = y if loss_labels == "true" else pred
        ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        with tf.GradientTape() as tape:
            loss = 0.0
            if "clean" in terms:
                loss += (clean_weight if weight else 1.0) * ce(targets, model(x, training=True))
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
        ({"attack_labels": "other"}, "the attack uses the wrong labels"),
        ({"weight": False}, "ignores clean_weight"),
        ({"terms": ("clean",)}, "not the asked batch loss"),
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

    def twice_the_step(model, x, y, epsilon, learning_rate, *args):
        return right(model, x, y, epsilon, 2 * learning_rate, *args)

    wrong = ex06.training_step(twice_the_step, model, x, y, 0.1, 0.5, verbose=0)
    assert "moved differently" in wrong.message

    def skeleton(model, x, y, epsilon, learning_rate, clean_weight, label_mode):
        raise NotImplementedError

    assert ex06.training_step(skeleton, model, x, y, verbose=0).status == exercises.NOT_ATTEMPTED
    assert "returns None" in ex06.training_step(lambda *a: None, model, x, y, verbose=0).message
    assert "not the asked batch loss" in (
        ex06.training_step(lambda *a: 123.0, model, x, y, verbose=0).message
    )


def test_training_step_with_adversarial_model_train_on_batch_is_not_yet(step_batch):
    from cnn_utils import defense

    def printed_step(model, x, y, epsilon, learning_rate, clean_weight, label_mode):
        trainer = defense.AdversarialModel(
            model,
            epsilon,
            1,
            epsilon,
            attack="fgsm",
            label_mode=label_mode,
            clean_weight=clean_weight,
        )
        trainer.compile(keras.optimizers.SGD(learning_rate))
        return float(trainer.train_on_batch(x, y))

    model, x, y = step_batch
    feedback = ex06.training_step(printed_step, model, x, y, 0.1, 0.5, verbose=0)
    assert feedback.status == exercises.WRONG and "AdversarialModel" in feedback.message
    assert defense.AdversarialModel.__name__ == "AdversarialModel"  # restored afterwards


def test_training_step_copying_section_1_1_is_not_yet(step_batch):
    # Section 1.1's step (clean + adversarial, predicted labels) ignores the new arguments.
    def section_1_1(model, x, y, epsilon, learning_rate, clean_weight, label_mode):
        return _step()(model, x, y, epsilon, learning_rate, 1.0, "predicted")

    model, x, y = step_batch
    feedback = ex06.training_step(section_1_1, model, x, y, 0.1, 0.5, verbose=0)
    assert feedback.status == exercises.WRONG and "clean_weight=0" in feedback.message


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


def test_colleagues_model_does_not_say_what_it_wraps(trained):
    model, x, y = trained
    other = keras.models.clone_model(model)
    masked = ex06.colleagues_model(model, other)
    np.testing.assert_array_equal(
        robustness.predict_labels(masked, x), robustness.predict_labels(model, x)
    )


def test_masking_symptoms_names_the_failed_rows(trained):
    model, x, y = trained
    x, y = x[:60], y[:60]
    masked = ex06.saturated(model)
    source = keras.models.clone_model(model)
    source.set_weights(model.get_weights())
    table = robustness.gradient_masking_checks(
        masked, x, y, 0.3, source_model=source, epsilons=list(ex06.MASKING_EPSILONS)
    )
    failed = [row for row in table.index if not table.loc[row, "passed"]]
    assert failed  # the saturated model shows at least one symptom
    assert ex06.masking_symptoms(failed, masked, source, x, y, 0.3, verbose=0).correct
    passed = [row for row in table.index if table.loc[row, "passed"]]
    if passed:
        extra = ex06.masking_symptoms(failed + passed[:1], masked, source, x, y, 0.3, verbose=0)
        assert extra.status == exercises.WRONG and "passed" in extra.message
    if len(failed) > 1:
        fewer = ex06.masking_symptoms(failed[:1], masked, source, x, y, 0.3, verbose=0)
        assert fewer.status == exercises.WRONG and "another row" in fewer.message
    unknown = ex06.masking_symptoms(["gradients"], masked, source, x, y, 0.3, verbose=0)
    assert unknown.status == exercises.WRONG
    none = ex06.masking_symptoms(..., masked, source, x, y, 0.3, verbose=0)
    assert none.status == exercises.NOT_ATTEMPTED


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
