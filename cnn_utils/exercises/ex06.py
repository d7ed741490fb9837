"""Checks for the exercises of notebook 06 (adversarial training).

1. ``worst_case_point`` / ``robust_loss``: by hand, the inner maximisation of adversarial
   training for logistic regression (Goodfellow et al. 2015, sec. 5): the worst point of the
   L-inf ball and the robust loss ``log(1 + exp(-y w.x + eps ||w||_1))``.
2. ``training_step``: one step of the lecture's adversarial training written by the student
   (predict, attack the prediction, clean + adversarial loss against the true labels, one SGD
   step), compared with :meth:`cnn_utils.defense.AdversarialModel.train_on_batch`.
3. ``break_masked``: a "defended" model that only hides its gradient (:func:`saturated`, the
   failure of defensive distillation, Carlini & Wagner 2016); the student finds adversarial
   examples that white-box PGD does not.
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
    not_attempted,
    on_grid,
    report,
)

__all__ = [
    "GRID_STEP",
    "Saturated",
    "accuracy_at",
    "break_masked",
    "falls_below",
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


def _step_losses(model, x, y, epsilon) -> dict[str, float]:
    """The batch loss of the lecture's step and of the usual mistakes (before any update)."""
    pred = np.asarray(tf.argmax(model(x, training=False), axis=-1))
    adv_pred = attacks.fgsm(model, x, pred, epsilon)
    adv_true = attacks.fgsm(model, x, y, epsilon)
    clean = _cross_entropy(y, model(x, training=True))
    return {
        "right": clean + _cross_entropy(y, model(adv_pred, training=True)),
        "true labels in the attack": clean + _cross_entropy(y, model(adv_true, training=True)),
        "adversarial loss only": _cross_entropy(y, model(adv_pred, training=True)),
        "clean loss only": clean,
        "predicted labels in the loss": _cross_entropy(pred, model(x, training=True))
        + _cross_entropy(pred, model(adv_pred, training=True)),
    }


_MISTAKES = {
    "true labels in the attack": "the attack moves away from the true labels; the lecture's "
    "step attacks the model's prediction y_pred = argmax f(x) (no label leaking).",
    "adversarial loss only": "only the adversarial loss: the lecture's batch loss also has the "
    "clean loss (both means, added).",
    "clean loss only": "only the clean loss: add the loss of the adversarial examples.",
    "predicted labels in the loss": "the losses use the predicted labels; both losses are "
    "against the true labels y (only the attack uses the prediction).",
}


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
    """Check ``fn(model, x, y, epsilon, learning_rate)``: one adversarial training step.

    ``fn`` must update the model's weights in place with one SGD step and return the batch
    loss. It runs on a copy of ``model``; :class:`cnn_utils.defense.AdversarialModel` with an
    FGSM inner attack on the predicted labels (nothing random) takes the same step on another
    copy, and the loss and every weight must agree.
    """

    def test():
        x_np = np.asarray(x, np.float32)
        y_np = np.asarray(y).astype(np.int64)
        student, reference = _copy(model), _copy(model)
        losses = _step_losses(_copy(model), x_np, y_np, epsilon)
        before = [w.copy() for w in student.get_weights()]
        out = fn(student, x_np, y_np, epsilon, learning_rate)
        if out is None:
            raise Wrong("your function returns None: return the batch loss.")
        loss = as_number(out, "the returned loss")
        trainer = defense.AdversarialModel(
            reference, epsilon, 1, epsilon, attack="fgsm", label_mode="predicted"
        )
        trainer.compile(keras.optimizers.SGD(learning_rate))
        trainer.train_on_batch(x_np, y_np)
        if not close(loss, losses["right"], rel=1e-4):
            for mistake, value in losses.items():
                if mistake != "right" and close(loss, value, rel=1e-4):
                    raise Wrong(_MISTAKES[mistake])
            raise Wrong(
                "the returned loss is not the lecture's batch loss: mean clean cross-entropy + "
                "mean cross-entropy of the FGSM examples (made for the predicted labels), "
                "both against the true labels, computed before the update."
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
                "the loss is right but the weights moved differently from AdversarialModel's "
                f"step (largest difference {gap:.2g}): one plain SGD step of learning_rate "
                "on the gradient of that loss, the attack outside the tape."
            )
        return None

    return report("6.2", test, verbose=verbose)


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
    """The "defended" model of exercise 6.3 (see :class:`Saturated`)."""
    return Saturated(model, scale)


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

    return report("6.3", test, verbose=verbose)


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
