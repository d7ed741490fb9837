"""Checks for the exercises of notebook 05 (adversarial attacks).

1. ``linear_shift`` / ``linear_step``: by hand, how far one L-inf step of size eps moves the
   score of a linear model, and the step that does it (Goodfellow et al. 2015, sec. 3).
2. ``fgsm_function``: the fast gradient method written by the student (L-inf: FGSM; L2),
   compared with :func:`cnn_utils.attacks.fgsm` at the notebook's radius and at two others,
   the package's attacks switched off while the student's function runs.
3. ``smallest_epsilon``: the smallest radius on a grid at which a fixed PGD attack changes the
   label of one image (that image's robustness radius, as the attack sees it).
4. ``targeted``: adversarial examples that reach a class of the student's choice.
5. ``noise_control``: the control the student chooses and defends (checked: every pixel moves
   by eps, random signs unrelated to the gradient, in [0, 1]) and the accuracies on it and
   under FGSM: the direction matters, not only the size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from cnn_utils import attacks
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
    "fgsm_function",
    "fooled",
    "linear_shift",
    "linear_step",
    "noise_control",
    "smallest_epsilon",
    "targeted",
]


def _predict(model, x) -> np.ndarray:
    return np.asarray(tf.argmax(model(tf.constant(x, tf.float32), training=False), axis=-1))


def _losses(model, x, y) -> np.ndarray:
    logits = tf.cast(model(tf.constant(x, tf.float32), training=False), tf.float32)
    return np.asarray(
        tf.nn.sparse_softmax_cross_entropy_with_logits(tf.constant(y, tf.int32), logits)
    )


# ---------------------------------------------------------------------------------------------
# 1. The linear model by hand
# ---------------------------------------------------------------------------------------------


def linear_shift(answer, w, epsilon: float, *, verbose: int = 1) -> Feedback:
    """Check the largest increase of ``w @ x`` over the L-inf ball of radius ``epsilon``."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_number(answer)
        weights = np.asarray(w, dtype=np.float64)
        expected = epsilon * np.abs(weights).sum()
        if close(value, expected):
            return None
        if close(value, epsilon * np.linalg.norm(weights)):
            raise Wrong(
                "that is the increase for an L2 step of length eps; in the L-inf ball every "
                "coordinate may move by the full eps at the same time."
            )
        if close(value, epsilon * weights.sum()) or close(value, epsilon * abs(weights.sum())):
            raise Wrong(
                "check the signs: a coordinate whose weight is negative raises the score when "
                "it moves down."
            )
        if close(value, np.abs(weights).sum()):
            raise Wrong("the step has size eps, not 1.")
        raise Wrong("not the largest increase: which move of each coordinate raises w_i x_i most?")

    return report("5.1a", test, verbose=verbose)


def linear_step(delta, w, epsilon: float, *, verbose: int = 1) -> Feedback:
    """Check a perturbation ``delta`` that reaches the largest increase of ``w @ x``."""

    def test():
        if not_attempted(delta):
            return NOT_ATTEMPTED
        weights = np.asarray(w, dtype=np.float64)
        step = as_array(delta, weights.shape, "delta")
        if np.abs(step).max() > epsilon + 1e-9:
            raise Wrong(
                f"delta leaves the L-inf ball: one coordinate moves by {np.abs(step).max():g} "
                f"> eps = {epsilon:g}."
            )
        gain, best = float(weights @ step), epsilon * np.abs(weights).sum()
        if not close(gain, best):
            raise Wrong(
                f"delta stays in the ball but raises the score by {gain:g}, not by the most "
                "possible."
            )
        return None

    return report("5.1b", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 2. FGSM by the student
# ---------------------------------------------------------------------------------------------


def fgsm_function(
    fn: Callable, model, x, y, epsilon: float = 0.1, norm: str = "linf", *, verbose: int = 1
) -> Feedback:
    """Check ``fn(model, x, y, epsilon)`` against :func:`cnn_utils.attacks.fgsm` with ``norm``.

    The checks, in order: the shape, finite values, the valid range [0, 1], the eps-ball of
    ``norm`` (per image), that the loss of the true labels goes up, that the step has the full
    length (where clipping allows), and that it points where the gradient says: its sign for
    ``"linf"`` (FGSM), ``g / ||g||_2`` per image for ``"l2"`` (the fast gradient method).
    """

    def test():
        x_all, y_all = np.asarray(x, dtype=np.float32), np.asarray(y)
        cases = [(x_all, y_all, epsilon)]
        cases += [(x_all[:16], y_all[:16], e) for e in (0.5 * epsilon, 2.0 * epsilon)]
        for case in cases:
            _fgsm_case(fn, model, *case, norm)
        return None

    return report("5.2", test, verbose=verbose)


def _attack_functions() -> list[tuple[object, str]]:
    return [(attacks, name) for name in attacks.__all__ if callable(getattr(attacks, name))]


def _fgsm_case(fn, model, x_np, y_np, epsilon, norm) -> None:
    """Raise :class:`Wrong` unless ``fn`` makes the fast gradient method's images."""
    with student_code(), forbid(*_attack_functions(), reason="write the step yourself."):
        out = fn(model, copied(x_np), copied(y_np, "int64"), epsilon)
        if out is None:
            raise Wrong("your function returns None: return the adversarial images.")
        out = np.asarray(out, np.float64)
    adv = as_array(out, x_np.shape, f"the result at eps = {epsilon:g}")
    if adv.min() < -1e-6 or adv.max() > 1 + 1e-6:
        raise Wrong(
            f"pixels leave the valid range [0, 1] (values in [{adv.min():.3g}, "
            f"{adv.max():.3g}]): clip the result."
        )
    delta = (adv - x_np).reshape(len(x_np), -1)
    reference = np.asarray(attacks.fgsm(model, x_np, y_np, epsilon, norm=norm))
    ref_delta = (reference - x_np).reshape(len(x_np), -1)
    if norm == "linf":
        size, ref_size = np.abs(delta).max(axis=1), np.abs(ref_delta).max(axis=1)
    else:
        size, ref_size = np.linalg.norm(delta, axis=1), np.linalg.norm(ref_delta, axis=1)
    if size.max() > epsilon * (1 + 1e-4) + 1e-6:
        raise Wrong(
            f"an image moves by {size.max():.4g} in the {norm} norm > eps = {epsilon:g}: "
            "stay in the ball."
        )
    if _losses(model, adv, y_np).mean() <= _losses(model, x_np, y_np).mean():
        raise Wrong(
            "the loss of the true labels went down: an untargeted attack steps up the "
            "gradient of the loss."
        )
    if norm == "linf":
        free = (x_np > epsilon) & (x_np < 1 - epsilon)  # pixels clipping cannot stop
        short = free.any() and np.median(np.abs(adv - x_np)[free]) < 0.99 * epsilon
    else:
        short = np.median(size / np.maximum(ref_size, 1e-12)) < 0.9
    if short:
        raise Wrong("the step is shorter than eps: take the full step (then clip).")
    agree = np.mean(np.abs(adv - reference) <= 1e-4)
    if agree < 0.99:
        direction = (
            "the sign of the gradient of the loss"
            if norm == "linf"
            else "the gradient divided by its own L2 norm, image by image"
        )
        raise Wrong(
            f"at eps = {epsilon:g}: inside the ball and the loss goes up, but "
            f"{100 * (1 - agree):.1f} % of the pixels move differently from the reference: "
            f"step along {direction}."
        )


# ---------------------------------------------------------------------------------------------
# 3. The smallest fooling epsilon of one image
# ---------------------------------------------------------------------------------------------

GRID_STEP = 0.002
"""The grid of radii of exercise 5.3: multiples of 0.002."""


def attack_at(model, x, y, epsilon: float) -> np.ndarray:
    """The fixed attack of exercise 5.3: PGD-20, step 2.5 eps / 20, seed 0."""
    return np.asarray(
        attacks.pgd(model, x, y, epsilon, num_steps=20, step_size=2.5 * epsilon / 20, seed=0)
    )


def fooled(model, x, y, epsilon: float) -> bool:
    """Whether :func:`attack_at` changes the label of the single image ``x`` at ``epsilon``."""
    if epsilon <= 0:
        return bool(_predict(model, x)[0] != int(np.asarray(y).reshape(-1)[0]))
    adv = attack_at(model, x, y, epsilon)
    return bool(_predict(model, adv)[0] != int(np.asarray(y).reshape(-1)[0]))


def smallest_epsilon(answer, model, x, y, *, verbose: int = 1) -> Feedback:
    """Check the smallest multiple of :data:`GRID_STEP` at which :func:`fooled` is true."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        eps = on_grid(answer, GRID_STEP, "epsilon")
        if not fooled(model, x, y, eps):
            raise Wrong(f"at epsilon = {eps:g} the attack does not change the label yet.")
        if fooled(model, x, y, eps - GRID_STEP):
            raise Wrong(f"the label already changes at epsilon = {eps - GRID_STEP:g}.")
        return None

    return report("5.3", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 4. A targeted attack
# ---------------------------------------------------------------------------------------------


def targeted(x_adv, model, x, target, epsilon: float, *, verbose: int = 1) -> Feedback:
    """Check adversarial images: shape, range [0, 1], the eps-ball, and the target class."""

    def test():
        if not_attempted(x_adv):
            return NOT_ATTEMPTED
        x_np = np.asarray(x, dtype=np.float32)
        adv = as_array(x_adv, x_np.shape, "x_adv")
        goal = np.broadcast_to(np.asarray(target), (len(x_np),))
        if adv.min() < -1e-6 or adv.max() > 1 + 1e-6:
            raise Wrong("x_adv leaves the valid range [0, 1]: clip it.")
        distance = np.abs(adv - x_np).reshape(len(x_np), -1).max(axis=1)
        if distance.max() > epsilon + 1e-5:
            raise Wrong(
                f"x_adv is outside the eps-ball: an image moves by {distance.max():.4g} "
                f"> eps = {epsilon:g}."
            )
        before, after = _predict(model, x_np), _predict(model, adv)
        hit = after == goal
        if hit.all():
            return None
        unchanged = np.mean(after == before)
        if unchanged == 1.0:
            raise Wrong("inside the eps-ball, but the label did not change.")
        raise Wrong(
            f"inside the eps-ball, but only {hit.sum()} of {len(hit)} images reach the target "
            "class (more steps? a targeted attack descends the loss of the target)."
        )

    return report("5.4", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 5. The random-noise control
# ---------------------------------------------------------------------------------------------


def _accuracy(model, x, y) -> float:
    return float(np.mean(_predict(model, x) == np.asarray(y)))


def _fgsm_signs(model, x, y) -> np.ndarray:
    x_t = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        logits = tf.cast(model(x_t, training=False), tf.float32)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.constant(y, tf.int32), logits)
    return np.sign(tape.gradient(loss, x_t).numpy())


def noise_control(
    noisy, noise_accuracy, fgsm_accuracy, model, x, y, epsilon: float, *, verbose: int = 1
) -> Feedback:
    """Check the control images ``noisy``, the accuracy on them, and the accuracy under FGSM.

    A fair control moves every pixel by as much as FGSM does, in a direction that knows nothing
    of the model: ``noisy`` must be ``clip(x + eps * s)`` with random signs ``s`` (about half
    up, unrelated to the gradient's signs), and ``noise_accuracy`` the model's accuracy on
    exactly those images.
    """

    def test():
        if any(not_attempted(v) for v in (noisy, noise_accuracy, fgsm_accuracy)):
            return NOT_ATTEMPTED
        x_np, y_np = np.asarray(x, np.float32), np.asarray(y)
        images = as_array(noisy, x_np.shape, "noisy")
        noise_acc = as_number(noise_accuracy, "noise_accuracy")
        fgsm_acc = as_number(fgsm_accuracy, "fgsm_accuracy")
        for name, value in (("noise_accuracy", noise_acc), ("fgsm_accuracy", fgsm_acc)):
            if not 0 <= value <= 1:
                raise Wrong(f"{name} is an accuracy, a fraction in [0, 1]; got {value:g}.")
        if images.min() < -1e-6 or images.max() > 1 + 1e-6:
            raise Wrong("noisy leaves the valid range [0, 1]: clip it.")
        delta = images - x_np
        free = (x_np >= epsilon + 1e-4) & (x_np <= 1 - epsilon - 1e-4)  # clipping cannot stop
        size = np.abs(delta[free])
        if size.size == 0 or size.max() < 1e-6:
            raise Wrong("noisy is the clean images: the control adds noise of size eps.")
        if np.abs(size - epsilon).max() > 1e-4:
            raise Wrong(
                "the noise has the wrong size: a fair control moves every pixel by exactly eps, "
                "as FGSM does (uniform or Gaussian noise moves most pixels less, so a smaller "
                "effect would prove nothing about the direction)."
            )
        up = float(np.mean(delta[free] > 0))
        if not 0.4 <= up <= 0.6:
            raise Wrong(
                f"{up:.0%} of the pixels move up: the signs should be random, about half each."
            )
        signs = _fgsm_signs(model, x_np, y_np)
        same = float(np.mean(np.sign(delta[free]) == signs[free]))
        if same > 0.6:
            raise Wrong(
                "the noise follows the sign of the gradient: that is FGSM, not a control that "
                "knows nothing of the model."
            )
        expected_noise = _accuracy(model, images.astype(np.float32), y_np)
        if abs(noise_acc - expected_noise) > 0.5 / len(y_np):
            raise Wrong(
                "noise_accuracy is not the model's accuracy on your noisy images "
                f"({'too high' if noise_acc > expected_noise else 'too low'})."
            )
        adv = np.asarray(attacks.fgsm(model, x_np, y_np, epsilon))
        expected_fgsm = _accuracy(model, adv, y_np)
        if abs(fgsm_acc - expected_fgsm) > 1.5 / len(y_np):
            raise Wrong("fgsm_accuracy is not the accuracy on FGSM examples of this eps.")
        return None

    return report("5.5", test, verbose=verbose)
