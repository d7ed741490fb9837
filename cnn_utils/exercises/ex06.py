"""Checks for the exercises of notebook 06 (adversarial training).

1. ``worst_case_point`` / ``robust_loss``: by hand, the inner maximisation of adversarial
   training for logistic regression (Goodfellow et al. 2015, sec. 5): the worst point of the
   L-inf ball and the robust loss ``log(1 + exp(-y w.x + eps ||w||_1))``.
2. ``training_step``: one step of adversarial training written by the student, with a weight on
   the clean loss and the attack's labels as arguments (section 1.1 shows one setting; the
   check runs three), compared with the same step taken by the check; ``defense``'s trainers
   are switched off while the student's function runs.
3. ``masking_symptoms`` and ``break_masked``: a colleague's "defended" model that only hides
   its gradient (:class:`Saturated`, the failure of defensive distillation, Carlini & Wagner
   2016): the student names the failed rows of the masking checks, finds out what the model
   wraps, and finds adversarial examples that white-box PGD does not.
4. ``falls_below``: the smallest radius on a grid at which the robust model's accuracy under a
   fixed PGD attack falls below a level.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from cnn_utils import attacks, defense, robustness
from cnn_utils.exercises import (
    NOT_ATTEMPTED,
    Feedback,
    Wrong,
    as_array,
    as_number,
    close,
    copied,
    forbid,
    not_attempted,
    on_grid,
    report,
    student_code,
)

__all__ = [
    "GRID_STEP",
    "MASKING_EPSILONS",
    "STEP_CASES",
    "Saturated",
    "accuracy_at",
    "break_masked",
    "colleagues_model",
    "falls_below",
    "masking_symptoms",
    "robust_loss",
    "saturated",
    "training_step",
    "worst_case_point",
]

# ---------------------------------------------------------------------------------------------
# 1. The inner maximisation for a linear model, by hand
# ---------------------------------------------------------------------------------------------


def _linear(w, x, y):
    w, x = np.asarray(w, np.float64), np.asarray(x, np.float64)
    if y not in (-1, 1):
        raise ValueError(f"y must be -1 or +1. Received: y={y!r}")
    return w, x


def _logistic(w, point, y) -> float:
    return float(np.logaddexp(0.0, -y * (w @ point)))


def worst_case_point(x_adv, w, x, y: int, epsilon: float, *, verbose: int = 1) -> Feedback:
    """Check the point of the L-inf ball around ``x`` with the largest logistic loss."""
    w_np, x_np = _linear(w, x, y)

    def test():
        if not_attempted(x_adv):
            return NOT_ATTEMPTED
        point = as_array(x_adv, x_np.shape, "x_adv")
        if np.abs(point - x_np).max() > epsilon + 1e-9:
            raise Wrong(
                f"x_adv leaves the L-inf ball: a coordinate moves by "
                f"{np.abs(point - x_np).max():g} > eps = {epsilon:g}."
            )
        best = x_np - epsilon * y * np.sign(w_np)
        loss, best_loss = _logistic(w_np, point, y), _logistic(w_np, best, y)
        if close(loss, best_loss, rel=1e-9):
            return None
        if close(loss, _logistic(w_np, x_np + epsilon * y * np.sign(w_np), y), rel=1e-9):
            raise Wrong(
                "this point has the smallest loss of the ball: the attack moves the score "
                "against the label y, not towards it."
            )
        if _logistic(w_np, point, y) < _logistic(w_np, x_np, y):
            raise Wrong("the loss at x_adv is lower than at x: move against the label.")
        raise Wrong(
            "inside the ball and the loss goes up, but not to the largest value: every "
            "coordinate can move by the full eps."
        )

    return report("6.1a", test, verbose=verbose)


def robust_loss(answer, w, x, y: int, epsilon: float, *, verbose: int = 1) -> Feedback:
    """Check the value of ``max_{||x' - x||_inf <= eps} log(1 + exp(-y w.x'))``."""
    w_np, x_np = _linear(w, x, y)

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_number(answer, "the robust loss")
        margin = y * (w_np @ x_np)
        expected = float(np.logaddexp(0.0, -margin + epsilon * np.abs(w_np).sum()))
        if close(value, expected):
            return None
        if close(value, float(np.logaddexp(0.0, -margin))):
            raise Wrong("that is the loss at x itself: the ball's worst point has a larger one.")
        if close(value, float(np.logaddexp(0.0, -margin + epsilon * np.linalg.norm(w_np)))):
            raise Wrong("that is the worst case of the L2 ball; the ball here is L-inf.")
        if close(value, float(np.logaddexp(0.0, -margin - epsilon * np.abs(w_np).sum()))):
            raise Wrong("that is the smallest loss of the ball; the attack raises the loss.")
        raise Wrong("not the largest loss over the ball: how much can y w.x' drop?")

    return report("6.1b", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 2. One step of adversarial training
# ---------------------------------------------------------------------------------------------


def _copy(model: keras.Model) -> keras.Model:
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _cross_entropy(labels, logits) -> float:
    return float(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            labels, tf.cast(logits, tf.float32)
        )
    )


STEP_CASES = ((1.0, "predicted"), (0.0, "true"), (0.5, "predicted"))
"""(clean_weight, label_mode) of the steps exercise 6.2 takes (section 1.1 shows the first)."""


def _step_losses(model, x, y, epsilon, clean_weight, label_mode) -> dict[str, float]:
    """The batch loss of the asked step and of the usual mistakes (before any update)."""
    pred = np.asarray(tf.argmax(model(x, training=False), axis=-1))
    adv_pred = np.asarray(attacks.fgsm(model, x, pred, epsilon))
    adv_true = np.asarray(attacks.fgsm(model, x, y, epsilon))
    adv, other = (adv_pred, adv_true) if label_mode == "predicted" else (adv_true, adv_pred)
    clean = _cross_entropy(y, model(x, training=True))
    return {
        "right": clean_weight * clean + _cross_entropy(y, model(adv, training=True)),
        "other labels in the attack": clean_weight * clean
        + _cross_entropy(y, model(other, training=True)),
        "weight ignored": clean + _cross_entropy(y, model(adv, training=True)),
        "weight on the adversarial loss": clean
        + clean_weight * _cross_entropy(y, model(adv, training=True)),
        "predicted labels in the loss": clean_weight * _cross_entropy(pred, model(x, training=True))
        + _cross_entropy(pred, model(adv, training=True)),
    }


_MISTAKES = {
    "other labels in the attack": "the attack uses the wrong labels: label_mode='predicted' "
    "attacks the model's prediction argmax f(x), label_mode='true' the true labels y.",
    "weight ignored": "the loss ignores clean_weight: clean_weight * clean loss + adversarial "
    "loss.",
    "weight on the adversarial loss": "clean_weight multiplies the clean loss, not the "
    "adversarial one.",
    "predicted labels in the loss": "the losses use the predicted labels; both losses are "
    "against the true labels y (only the attack may use the prediction).",
}


def _reference_step(model, x, y, epsilon, learning_rate, clean_weight, label_mode) -> None:
    """The asked step, taken here on ``model`` (SGD, the attack outside the tape)."""
    pred = np.asarray(tf.argmax(model(x, training=False), axis=-1))
    adv = attacks.fgsm(model, x, pred if label_mode == "predicted" else y, epsilon)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        adversarial = loss_fn(y, tf.cast(model(adv, training=True), tf.float32))
        loss = adversarial
        if clean_weight:
            clean = loss_fn(y, tf.cast(model(x, training=True), tf.float32))
            loss = clean_weight * clean + adversarial
    grads = tape.gradient(loss, model.trainable_variables)
    keras.optimizers.SGD(learning_rate).apply_gradients(
        zip(grads, model.trainable_variables, strict=True)
    )


def training_step(
    fn: Callable,
    model: keras.Model,
    x,
    y,
    epsilon: float = 0.1,
    learning_rate: float = 0.1,
    *,
    verbose: int = 1,
) -> Feedback:
    """Check ``fn(model, x, y, epsilon, learning_rate, clean_weight, label_mode)``: one step.

    The loss is ``clean_weight`` times the mean clean cross-entropy plus the mean cross-entropy
    of FGSM examples made for the predicted (``label_mode="predicted"``) or the true labels
    (``"true"``), both losses against the true labels; ``fn`` takes one plain SGD step on it,
    in place, and returns the loss computed before the update. It runs on copies of ``model``
    for each setting of :data:`STEP_CASES`, with ``defense``'s trainers switched off, and the
    loss and every weight are compared with the same step taken here.
    """

    def test():
        x_np = np.asarray(x, np.float32)
        y_np = np.asarray(y).astype(np.int64)
        for clean_weight, label_mode in STEP_CASES:
            _step_case(fn, model, x_np, y_np, epsilon, learning_rate, clean_weight, label_mode)
        return None

    return report("6.2", test, verbose=verbose)


def _step_case(fn, model, x_np, y_np, epsilon, learning_rate, clean_weight, label_mode) -> None:
    student, reference = _copy(model), _copy(model)
    losses = _step_losses(_copy(model), x_np, y_np, epsilon, clean_weight, label_mode)
    before = [w.copy() for w in student.get_weights()]
    trainers = [(defense, "AdversarialModel"), (defense, "adversarially_trained")]
    with student_code(), forbid(*trainers, reason="write the step with a GradientTape."):
        out = fn(
            student,
            copied(x_np),
            copied(y_np, "int64"),
            epsilon,
            learning_rate,
            clean_weight,
            label_mode,
        )
        if out is None:
            raise Wrong("your function returns None: return the batch loss.")
        loss = as_number(out, "the returned loss")
    _reference_step(reference, x_np, y_np, epsilon, learning_rate, clean_weight, label_mode)
    setting = f"with clean_weight={clean_weight:g}, label_mode={label_mode!r}"
    if not close(loss, losses["right"], rel=1e-4):
        for mistake, value in losses.items():
            if mistake != "right" and close(loss, value, rel=1e-4):
                raise Wrong(f"{setting}: {_MISTAKES[mistake]}")
        raise Wrong(
            f"{setting} the returned loss is not the asked batch loss: clean_weight x mean "
            "clean cross-entropy + mean cross-entropy of the FGSM examples, both against the "
            "true labels, computed before the update."
        )
    after = student.get_weights()
    moved = max(float(np.abs(a - b).max()) for a, b in zip(after, before, strict=True))
    if moved == 0.0:
        raise Wrong("the loss is right but the weights did not move: apply one SGD step.")
    gap = max(
        float(np.abs(a - b).max()) for a, b in zip(after, reference.get_weights(), strict=True)
    )
    if gap > 1e-5 + 1e-3 * moved:
        raise Wrong(
            f"{setting} the loss is right but the weights moved differently (largest "
            f"difference {gap:.2g}): one plain SGD step of learning_rate on the gradient of "
            "that loss, the attack outside the tape."
        )


# ---------------------------------------------------------------------------------------------
# 3. A defence that only hides the gradient
# ---------------------------------------------------------------------------------------------


class Saturated(keras.Model):
    """``model``'s logits times ``scale``: the same predictions, a saturated softmax.

    With a large scale the softmax of a correctly classified input is exactly one-hot in
    float32, so the cross-entropy gradient underflows to zero and gradient attacks stall: the
    mechanism behind defensive distillation's apparent robustness (Papernot et al. 2016), broken
    by Carlini & Wagner (2016, "Defensive distillation is not robust to adversarial examples").
    """

    def __init__(self, model: keras.Model, scale: float = 1e4, **kwargs):
        super().__init__(**kwargs)
        self.inner = model
        self.scale = float(scale)

    def call(self, inputs, training=False):
        """The wrapped model's logits times ``scale``."""
        return self.scale * tf.cast(self.inner(inputs, training=training), tf.float32)


def saturated(model: keras.Model, scale: float = 1e4) -> keras.Model:
    """A model whose logits are ``model``'s times ``scale`` (see :class:`Saturated`)."""
    return Saturated(model, scale)


def colleagues_model(*candidates: keras.Model) -> keras.Model:
    """The colleague's "defended" model of exercise 6.3, made from one of ``candidates``.

    Which one, and what was done to it, is for the student to find out (the notebook passes the
    standard and the robust MNIST models).
    """
    return Saturated(candidates[0], 1e4)


MASKING_EPSILONS = (0.0, 0.1, 0.2, 1.0)
"""The radii of exercise 6.3's run of :func:`cnn_utils.robustness.gradient_masking_checks`."""

_MASKING_CACHE: dict = {}


def _masking_table(masked, source, x, y, epsilon):
    key = (id(masked), id(source), float(epsilon), np.asarray(x).tobytes().__hash__())
    if key not in _MASKING_CACHE:
        _MASKING_CACHE.clear()
        _MASKING_CACHE[key] = robustness.gradient_masking_checks(
            masked, x, y, epsilon, source_model=source, epsilons=list(MASKING_EPSILONS)
        )
    return _MASKING_CACHE[key]


def masking_symptoms(
    answer, masked: keras.Model, source: keras.Model, x, y, epsilon: float, *, verbose: int = 1
) -> Feedback:
    """Check the names of the rows of ``gradient_masking_checks`` that fail for ``masked``."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        names = [answer] if isinstance(answer, str) else answer
        try:
            named = {str(name) for name in names}
        except TypeError:
            raise Wrong("answer with a list of the table's row names.") from None
        table = _masking_table(masked, source, np.asarray(x, np.float32), y, epsilon)
        rows = set(table.index)
        unknown = named - rows
        if unknown:
            raise Wrong(f"{sorted(unknown)} is not a row of the table; its rows: {sorted(rows)}.")
        failed = {row for row in rows if not bool(table.loc[row, "passed"])}
        if named == failed:
            return None
        if named - failed:
            raise Wrong("you named a row that passed: read the 'passed' column again.")
        raise Wrong("another row fails too: every failed row is a symptom to name.")

    return report("6.3a", test, verbose=verbose)


def _accuracy(model, x, y) -> float:
    return float(np.mean(robustness.predict_labels(model, x) == np.asarray(y)))


def break_masked(
    x_adv, masked: keras.Model, x, y, epsilon: float, *, level: float = 0.2, verbose: int = 1
) -> Feedback:
    """Check adversarial examples against ``masked``: in the ball, in [0, 1], accuracy <= level."""

    def test():
        if not_attempted(x_adv):
            return NOT_ATTEMPTED
        x_np = np.asarray(x, np.float32)
        adv = as_array(x_adv, x_np.shape, "x_adv")
        if adv.min() < -1e-6 or adv.max() > 1 + 1e-6:
            raise Wrong("x_adv leaves the valid range [0, 1]: clip it.")
        distance = np.abs(adv - x_np).reshape(len(x_np), -1).max(axis=1)
        if distance.max() > epsilon + 1e-5:
            raise Wrong(
                f"x_adv is outside the eps-ball: an image moves by {distance.max():.4g} "
                f"> eps = {epsilon:g}."
            )
        accuracy = _accuracy(masked, adv.astype(np.float32), y)
        if accuracy <= level:
            return f"the 'defended' model keeps {accuracy:.1%} of these images."
        if accuracy >= _accuracy(masked, x_np, y) - 0.05:
            raise Wrong(
                f"the model still classifies {accuracy:.1%} of x_adv correctly, about its "
                "clean accuracy: its own gradient is useless here (which row of "
                "gradient_masking_checks failed?). Attack something with the same decisions "
                "and a useful gradient."
            )
        raise Wrong(
            f"the model still classifies {accuracy:.1%} of x_adv correctly (at most "
            f"{level:.0%} is reachable): a stronger attack, or a better source?"
        )

    return report("6.3b", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 4. Where robust accuracy falls below a level
# ---------------------------------------------------------------------------------------------

GRID_STEP = 0.025
"""The grid of radii of exercise 6.4: multiples of 0.025."""


def accuracy_at(model, x, y, epsilon: float) -> float:
    """The fixed attack of exercise 6.4: accuracy under PGD-20, step 2.5 eps / 20, seed 0."""
    if epsilon <= 0:
        return _accuracy(model, x, y)
    return robustness.robust_accuracy(
        model,
        x,
        y,
        "pgd",
        epsilon=epsilon,
        num_steps=20,
        step_size=2.5 * epsilon / 20,
        seed=0,
        verbose=0,
    )


def falls_below(answer, model, x, y, level: float = 0.5, *, verbose: int = 1) -> Feedback:
    """Check the smallest multiple of :data:`GRID_STEP` where :func:`accuracy_at` < ``level``."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        eps = on_grid(answer, GRID_STEP, "epsilon")
        if eps > 1.0:
            raise Wrong("epsilon beyond 1 is the whole image range: look lower.")
        accuracy = accuracy_at(model, x, y, eps)
        if accuracy >= level:
            raise Wrong(f"at epsilon = {eps:g} the accuracy is still {accuracy:.3f} >= {level:g}.")
        below = round(eps - GRID_STEP, 6)
        if below > 0 and accuracy_at(model, x, y, below) < level:
            raise Wrong(f"the accuracy is already below {level:g} at epsilon = {below:g}.")
        return None

    return report("6.4", test, verbose=verbose)
