"""Evaluation: robust accuracy, epsilon sweeps, transfer matrices, loss surfaces, Lp distances.

The attacks themselves are in :mod:`cnn_utils.attacks`; this module measures what they do to a
model. The attacks that score every iterate live here too (:func:`apgd`, and the PGD with early
exit behind :func:`robust_accuracy`), as do the AutoAttack-style protocol
(:func:`evaluate_robustness`) and the checks for gradient masking
(:func:`gradient_masking_checks`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from cnn_utils import _checks
from cnn_utils._attack_settings import AttackSettings
from cnn_utils.attacks import (
    ATTACKS,
    fgsm,
    loss_gradient_fn,
    model_cache,
    pgd,
    project,
    random_in_ball,
    steepest_step,
)

__all__ = [
    "LOSSES",
    "RobustnessReport",
    "apgd",
    "epsilon_sweep",
    "evaluate_robustness",
    "gradient_masking_checks",
    "loss_surface",
    "lp_distance",
    "predict_labels",
    "predict_with_confidence",
    "resolve_attack",
    "robust_accuracy",
    "transfer_matrix",
    "transfer_summary",
]

# ---------------------------------------------------------------------------------------------
# Distances and predictions
# ---------------------------------------------------------------------------------------------


def lp_distance(x, x_adv, p=2) -> np.ndarray:
    """Distance between each pair of examples in the L1, L2 or L-infinity norm.

    ``||x - x_adv||_p`` over all pixels and channels of each example (axis 0 is the batch).

    Args:
        x: Inputs, shape (batch, ...), numpy or tensor.
        x_adv: Inputs of the same shape.
        p: 1, 2, or ``np.inf`` (also ``"inf"`` or ``"linf"``).

    Returns:
        A float64 numpy array of shape (batch,).

    Raises:
        ValueError: Unknown ``p``, different shapes, scalars or non-finite values.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_adv, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x and x_adv must have the same shape. Received: {a.shape} and {b.shape}")
    if a.ndim < 1:
        raise ValueError("x must be a batch, shape (batch, ...). Received: a scalar")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("x and x_adv must be finite. Received: NaN or Inf values")
    diff = (a - b).reshape(len(a), int(np.prod(a.shape[1:], dtype=np.int64)))
    if p in ("inf", "linf") or (isinstance(p, (int, float)) and p == np.inf):
        return np.abs(diff).max(axis=1, initial=0.0)
    if p in (1, 2) and not isinstance(p, bool):
        return np.linalg.norm(diff, ord=int(p), axis=1)
    raise ValueError(f"p must be 1, 2 or np.inf. Received: p={p!r}")


def _batches(x, batch_size: int):
    x = x if isinstance(x, tf.Tensor) else np.asarray(x, dtype=np.float32)
    return [x[i : i + batch_size] for i in range(0, len(x), batch_size)]


def predict_labels(model: Callable, x, batch_size: int = 256) -> np.ndarray:
    """The model's predicted class (argmax of the logits) for every example, in batches.

    Args:
        model: Keras model or callable returning logits.
        x: Inputs, shape (n, ...).
        batch_size: Examples per forward pass.

    Returns:
        An int64 numpy array of shape (n,).

    Raises:
        ValueError: A non-positive ``batch_size``, or non-finite (NaN or Inf) logits.
    """
    batch_size = _checks.batch_size(batch_size)
    out = [
        np.asarray(tf.argmax(_checks.finite_logits(model(xb, training=False)), axis=-1))
        for xb in _batches(x, batch_size)
    ]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def predict_with_confidence(
    model: Callable, x, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class and its softmax probability for every example, in batches.

    Args:
        model: Keras model or callable returning logits.
        x: Inputs, shape (n, ...).
        batch_size: Examples per forward pass.

    Returns:
        ``(labels, confidences)``: int64 and float32 numpy arrays of shape (n,).

    Raises:
        ValueError: A non-positive ``batch_size``, or non-finite (NaN or Inf) logits.
    """
    batch_size = _checks.batch_size(batch_size)
    probs = [
        np.asarray(
            tf.nn.softmax(tf.cast(_checks.finite_logits(model(xb, training=False)), tf.float32))
        )
        for xb in _batches(x, batch_size)
    ]
    if not probs:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    probs = np.concatenate(probs)
    return probs.argmax(-1).astype(np.int64), probs.max(-1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Attacks that track every iterate: best iterate, early exit, APGD
# ---------------------------------------------------------------------------------------------

LOSSES = ("ce", "dlr", "dlr_targeted")
"""Losses of :func:`apgd`: cross-entropy, difference of logits ratio, and its targeted form."""


def _attack_loss(kind: str, logits, y, target):
    """Per-example loss to ascend: CE, DLR or targeted DLR (Croce & Hein 2020, eqs. 5 and 6)."""
    if kind == "ce":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
    top = tf.math.top_k(logits, k=min(4, int(logits.shape[-1]))).values
    z_y = tf.gather(logits, y, batch_dims=1)
    if kind == "dlr":
        other = tf.where(tf.equal(top[:, 0], z_y), top[:, 1], top[:, 0])  # best other class
        return -(z_y - other) / (top[:, 0] - top[:, 2] + 1e-12)
    z_t = tf.gather(logits, target, batch_dims=1)
    spread = top[:, 0] - (0.5 * (top[:, 2] + top[:, 3]) if top.shape[-1] >= 4 else top[:, -1])
    return -(z_y - z_t) / (spread + 1e-12)


def _loss_and_gradient(model_ref, kind, x, y, target):
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = tf.cast(model_ref()(x, training=False), tf.float32)
        losses = _attack_loss(kind, logits, y, target)
        total = tf.reduce_sum(losses)
    grad = tape.gradient(total, x)
    return logits, losses, tf.zeros_like(x) if grad is None else grad


def _loss_gradient_fn(model, kind: str) -> Callable:
    """Compiled ``(logits, per-example loss, input gradient)``, not inlined (as in attacks)."""
    cache, ref = model_cache(model)
    key = ("loss_and_gradient", kind)
    if key not in cache:
        cache[key] = tf.function(
            functools.partial(_loss_and_gradient, ref, kind),
            reduce_retracing=True,
            experimental_attributes={"_noinline": True},
        )
    return cache[key]


def _compiled(model, key: tuple, core: Callable) -> Callable:
    cache, ref = model_cache(model)
    if key not in cache:
        cache[key] = tf.function(functools.partial(core, ref, *key[1:]), reduce_retracing=True)
    return cache[key]


def _record(fooled, idx, x_adv, broken, x_out):
    """Mark the working-set examples that ``fooled`` and keep the input that fooled them."""
    where = tf.boolean_mask(idx, fooled)[:, None]
    broken = tf.tensor_scatter_nd_update(broken, where, tf.ones_like(where[:, 0], tf.bool))
    return broken, tf.tensor_scatter_nd_update(x_out, where, tf.boolean_mask(x_adv, fooled))


def _loop(cond, body, state: dict, shrinking: tuple) -> dict:
    """``tf.while_loop`` over a dict whose working-set entries shrink along axis 0."""
    invariants = {
        k: tf.TensorShape([None, *v.shape[1:]]) if k in shrinking else v.shape
        for k, v in state.items()
    }
    (state,) = tf.while_loop(
        lambda s: tf.logical_and(cond(s), tf.size(s["idx"]) > 0),
        lambda s: (body(s),),
        (state,),
        shape_invariants=(invariants,),
    )
    return state


def _shrink(state: dict, shrinking: tuple, keep) -> dict:
    return {k: tf.boolean_mask(v, keep) if k in shrinking else v for k, v in state.items()}


def _pgd_tracked_core(
    model_ref, norm, random_start, x, y, epsilon, num_steps, step_size, lo, hi, seed
):
    """PGD that scores every iterate and stops attacking an example once it is misclassified."""
    grad_fn = _loss_gradient_fn(model_ref(), "ce")
    start = x + random_in_ball(x, epsilon, norm, seed) if random_start else x
    n = tf.shape(x)[0]
    state = {
        "i": tf.constant(0),
        "work": tf.constant(0),
        "broken": tf.zeros([n], tf.bool),
        "x_out": x,
        "idx": tf.range(n),
        "x": x,
        "y": y,
        "x_adv": tf.clip_by_value(start, lo, hi),
    }
    shrinking = ("idx", "x", "y", "x_adv")

    def body(s):
        logits, _, grad = grad_fn(s["x_adv"], s["y"], s["y"])
        fooled = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), s["y"])
        s = dict(s, work=s["work"] + tf.size(s["idx"]), i=s["i"] + 1)
        s["broken"], s["x_out"] = _record(fooled, s["idx"], s["x_adv"], s["broken"], s["x_out"])
        x_new = s["x_adv"] + step_size * steepest_step(grad, norm)
        s["x_adv"] = tf.clip_by_value(project(x_new, s["x"], epsilon, norm), lo, hi)
        return _shrink(s, shrinking, tf.logical_not(fooled))

    s = _loop(lambda s: s["i"] < num_steps, body, state, shrinking)
    # The last iterate needs a forward pass only (none on an empty batch: oneDNN refuses it).
    fooled = tf.cond(
        tf.size(s["idx"]) > 0,
        lambda: tf.not_equal(
            tf.argmax(model_ref()(s["x_adv"], training=False), -1, tf.int32), s["y"]
        ),
        lambda: tf.zeros([0], tf.bool),
    )
    broken, x_out = _record(fooled, s["idx"], s["x_adv"], s["broken"], s["x_out"])
    x_out = tf.tensor_scatter_nd_update(x_out, s["idx"][:, None], s["x_adv"])
    return broken, x_out, s["work"]


def _fraction(share: float, steps) -> tf.Tensor:
    """``max(1, floor(share * steps))``: APGD's checkpoint lengths, as in the reference code."""
    return tf.maximum(tf.cast(share * steps, tf.int32), 1)


def _apgd_start(x, epsilon, norm, lo, hi, seed):
    """APGD's random start ``x^(0)``: noise scaled to the sphere of radius ``epsilon``, clipped."""
    n = tf.shape(x)[0]
    noise = (
        tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0)
        if norm == "linf"
        else tf.random.stateless_normal(tf.shape(x), seed)
    )
    scale = tf.reduce_max(tf.abs(noise), axis=tf.range(1, tf.rank(x)), keepdims=True)
    if norm == "l2":
        scale = tf.norm(tf.reshape(noise, [n, -1]), axis=1)[(...,) + (None,) * (len(x.shape) - 1)]
    return tf.clip_by_value(x + epsilon * noise / tf.maximum(scale, 1e-12), lo, hi)


_APGD_SHARED = ("i", "work", "since", "period", "broken", "x_out")
"""Entries of APGD's loop state that do not shrink with the working set."""


def _apgd_state(x, y, target, x_adv, logits, losses, grad, epsilon, steps) -> dict:
    """The loop state after the start is scored: every example is its own best point so far.

    ``eta`` is the step size (``2 * epsilon`` at first), ``period`` the length of the first
    checkpoint interval (22 % of the steps), ``rises`` the steps of the current interval on
    which the loss rose, ``reduced`` whether the step was halved at the last checkpoint.
    """
    n = tf.shape(x)[0]
    fooled = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), y)
    broken, x_out = _record(fooled, tf.range(n), x_adv, tf.zeros([n], tf.bool), x)
    ones = tf.ones([n], tf.float32)
    return {
        "i": tf.constant(0),
        "work": n,
        "since": tf.constant(0),
        "period": _fraction(0.22, steps),
        "broken": broken,
        "x_out": x_out,
        "idx": tf.range(n),
        "x": x,
        "y": y,
        "target": target,
        "x_adv": x_adv,
        "x_prev": x_adv,
        "grad": grad,
        "x_best": x_adv,
        "grad_best": grad,
        "loss_best": losses,
        "loss_prev": losses,
        "loss_at_check": losses,
        "rises": 0.0 * ones,
        "reduced": ones > 0.0,
        "eta": 2.0 * epsilon * ones,
    }


def _apgd_step(s: dict, grad_fn, norm, epsilon, lo, hi):
    """One iteration of Algorithm 1: the step, its loss and gradient, the best point so far.

    Returns the new state and which examples the new iterate fools.
    """
    s = dict(s)
    expand = (slice(None),) + (None,) * (len(s["x"].shape) - 1)
    x, x_adv, eta = s["x"], s["x_adv"], s["eta"][expand]
    # z^(k+1) = P(x^(k) + eta grad), then x^(k+1) = P(x^(k) + alpha (z - x^(k)) + (1 - alpha)
    # (x^(k) - x^(k-1))).
    z = tf.clip_by_value(
        project(x_adv + eta * steepest_step(s["grad"], norm), x, epsilon, norm), lo, hi
    )
    alpha = tf.where(s["i"] > 0, 0.75, 1.0)  # momentum 0.75, none on the first step
    x_new = x_adv + alpha * (z - x_adv) + (1.0 - alpha) * (x_adv - s["x_prev"])
    s["x_prev"], s["x_adv"] = x_adv, tf.clip_by_value(project(x_new, x, epsilon, norm), lo, hi)
    logits, losses, s["grad"] = grad_fn(s["x_adv"], s["y"], s["target"])
    s["work"] += tf.size(s["idx"])
    fooled = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), s["y"])
    s["broken"], s["x_out"] = _record(fooled, s["idx"], s["x_adv"], s["broken"], s["x_out"])
    # The best point: x_max and f_max where the loss beats the best so far.
    better = losses > s["loss_best"]
    s["x_best"] = tf.where(better[expand], s["x_adv"], s["x_best"])
    s["grad_best"] = tf.where(better[expand], s["grad"], s["grad_best"])
    s["loss_best"] = tf.maximum(losses, s["loss_best"])
    s["rises"] += tf.cast(losses > s["loss_prev"], tf.float32)
    s["loss_prev"], s["i"], s["since"] = losses, s["i"] + 1, s["since"] + 1
    return s, fooled


def _apgd_checkpoint(s: dict, rho, steps) -> dict:
    """Algorithm 1's checkpoints: halve the step and restart from the best point where needed."""
    expand = (slice(None),) + (None,) * (len(s["x"].shape) - 1)
    # Checkpoint: halve the step and restart from the best point where the loss rose in
    # fewer than rho of the steps (condition 1) or the step was not cut last time and the
    # best loss has not improved since (condition 2).
    at_check = tf.equal(s["since"], s["period"])
    stalled = tf.logical_and(tf.logical_not(s["reduced"]), s["loss_at_check"] >= s["loss_best"])
    cut = tf.logical_and(
        at_check, tf.logical_or(s["rises"] <= rho * tf.cast(s["since"], tf.float32), stalled)
    )
    s["eta"] = tf.where(cut, s["eta"] / 2.0, s["eta"])
    s["x_adv"] = tf.where(cut[expand], s["x_best"], s["x_adv"])
    s["x_prev"] = tf.where(cut[expand], s["x_best"], s["x_prev"])
    s["grad"] = tf.where(cut[expand], s["grad_best"], s["grad"])
    s["reduced"] = tf.where(at_check, cut, s["reduced"])
    s["loss_at_check"] = tf.where(at_check, s["loss_best"], s["loss_at_check"])
    s["rises"] = tf.where(at_check, 0.0, s["rises"])
    # The next checkpoint: the period shrinks by 3 % of the steps, to at least 6 %.
    shorter = tf.maximum(s["period"] - _fraction(0.03, steps), _fraction(0.06, steps))
    s["period"] = tf.where(at_check, shorter, s["period"])
    s["since"] = tf.where(at_check, 0, s["since"])
    return s


def _apgd_core(model_ref, norm, loss, x, y, target, epsilon, num_steps, lo, hi, seed, rho):
    """Auto-PGD (Croce & Hein 2020, Algorithm 1) with early exit; see :func:`apgd`."""
    grad_fn = _loss_gradient_fn(model_ref(), loss)
    steps = tf.cast(num_steps, tf.float32)
    x_adv = _apgd_start(x, epsilon, norm, lo, hi, seed)
    logits, losses, grad = grad_fn(x_adv, y, target)
    state = _apgd_state(x, y, target, x_adv, logits, losses, grad, epsilon, steps)
    shrinking = tuple(k for k in state if k not in _APGD_SHARED)

    def body(s):
        s, fooled = _apgd_step(s, grad_fn, norm, epsilon, lo, hi)
        s = _apgd_checkpoint(s, rho, steps)
        return _shrink(s, shrinking, tf.logical_not(fooled))

    s = _loop(lambda s: s["i"] < num_steps, body, state, shrinking)
    # Every example still standing ends at its highest-loss point x_max.
    x_out = tf.tensor_scatter_nd_update(s["x_out"], s["idx"][:, None], s["x_best"])
    return s["broken"], x_out, s["work"]


def _stateless_seed(seed, run: int = 0) -> tf.Tensor:
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    return tf.constant([(seed + 7919 * run) % (2**31 - 1), 1], tf.int32)


def _run_apgd(model, x, labels, settings: AttackSettings, loss: str, target_rank: int, rho, run=0):
    """APGD on checked inputs: ``(broken, x_out, passes)`` as numpy arrays and an int."""
    target = labels
    if loss == "dlr_targeted":
        logits = tf.cast(model(x, training=False), tf.float32)
        target = tf.math.top_k(logits, k=target_rank).indices[:, target_rank - 1]
    fn = _compiled(model, ("apgd", settings.norm, loss), _apgd_core)
    seed = _stateless_seed(settings.seed, run)
    target = tf.cast(target, tf.int32)
    broken, x_out, work = fn(x, labels, target, *_numbers(settings), seed, tf.constant(rho))
    return broken.numpy(), x_out, int(work)


def _numbers(settings: AttackSettings):
    return (
        tf.constant(settings.epsilon, tf.float32),
        tf.constant(settings.num_steps, tf.int32),
        tf.constant(settings.clip_value_min, tf.float32),
        tf.constant(settings.clip_value_max, tf.float32),
    )


def apgd(
    model: Callable,
    x,
    y,
    epsilon: float = 0.3,
    num_steps: int = 100,
    *,
    loss: str = "ce",
    target_rank: int = 2,
    rho: float = 0.75,
    norm: str = "linf",
    clip_value_min: float = 0.0,
    clip_value_max: float = 1.0,
    seed: int | None = None,
) -> tf.Tensor:
    """Auto-PGD (Croce & Hein 2020): PGD with a step-size schedule instead of a step size.

    From "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks" (ICML 2020), the first attack of AutoAttack.
    From a random point of the ball, steps of size ``eta`` (initially ``2 * epsilon``) along
    :func:`~cnn_utils.attacks.steepest_step`, with momentum 0.75
    (``x_{k+1} = P(x_k + 0.75 (z_{k+1} - x_k) + 0.25 (x_k - x_{k-1}))``, ``z`` the projected
    step). At checkpoints after 22 %, then shorter and shorter periods (3 % less each time,
    at least 6 %), an example's step is halved and its iterate restarted from its best point
    when the loss rose in at most ``rho`` of the period's steps, or when the step was not
    halved at the previous checkpoint and the best loss has not improved since. Losses: ``"ce"``
    (cross-entropy), ``"dlr"`` (difference of logits ratio
    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``, invariant to the scale of the logits) and
    ``"dlr_targeted"`` (``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, with target ``t`` the
    class ranked ``target_rank`` by the model on the clean input). An example that becomes
    misclassified keeps that point and leaves the working set (early exit); the others end at
    their highest-loss point. Compiled once per model, norm and loss; nothing retraces when the
    numbers change.

    Args:
        model: Keras model (or callable) returning logits.
        x: Float inputs in ``[clip_value_min, clip_value_max]``, shape (batch, ...).
        y: True integer labels, shape (batch,).
        epsilon: Radius of the ball, >= 0.
        num_steps: Iterations, >= 1 (100 in AutoAttack).
        loss: One of :data:`LOSSES`.
        target_rank: For ``"dlr_targeted"``: 2 targets the highest-scored other class of a
            correctly classified input, 3 the next, ... (at most the number of classes).
        rho: Fraction of rising steps below which the step is halved (0.75 in the paper).
        norm: ``"linf"`` or ``"l2"``.
        clip_value_min: Lower end of the valid input range.
        clip_value_max: Upper end of the valid input range.
        seed: Seed of the random start; ``None`` draws one from TensorFlow's global generator.

    Returns:
        Adversarial inputs, a float32 tensor shaped like ``x``, in the ball and the clip range.

    Raises:
        ValueError: A bad argument (the message names it and the value received), labels that
            are not one integer per example in range, a model that does not return logits, or
            a DLR loss on a model with fewer than 3 classes.
    """
    settings, loss, target_rank, rho = _apgd_settings(
        epsilon, num_steps, loss, target_rank, rho, norm, clip_value_min, clip_value_max, seed
    )
    x, labels = _checked_batch(model, x, y, settings, loss, target_rank)
    if int(x.shape[0]) == 0 or settings.epsilon == 0.0:
        return tf.identity(x)
    return _run_apgd(model, x, labels, settings, loss, target_rank, rho)[1]


def _apgd_settings(epsilon, num_steps, loss, target_rank, rho, norm, lo, hi, seed):
    settings = AttackSettings(
        epsilon, num_steps, None, norm, clip_value_min=lo, clip_value_max=hi, seed=seed
    )
    loss = _checks.one_of("loss", loss, LOSSES)
    target_rank = _checks.integer("target_rank", target_rank, minimum=2)
    rho = _checks.number("rho", rho, minimum=0.0, maximum=1.0)
    return settings, loss, target_rank, rho


def _checked_batch(model, x, y, settings: AttackSettings, loss="ce", target_rank=2):
    """Images in the clip range and labels in range for ``model`` (as the attacks check them)."""
    x = _checks.images(x, value_range=(settings.clip_value_min, settings.clip_value_max))
    batch = int(x.shape[0])
    labels = _checks.labels(y, batch)
    if batch == 0:
        return x, labels
    classes = _checks.logits_model(model, x)
    labels = _checks.labels(labels, batch, classes)
    needed = {"ce": 2, "dlr": 3, "dlr_targeted": max(3, target_rank)}[loss]
    if classes is not None and classes < needed:
        raise ValueError(
            f"loss={loss!r} needs a model with at least {needed} classes (target_rank="
            f"{target_rank}). Received: a model with {classes} outputs"
        )
    return x, labels


# ---------------------------------------------------------------------------------------------
# Robust accuracy, sweeps, transfer
# ---------------------------------------------------------------------------------------------


def resolve_attack(attack) -> Callable | None:
    """An attack given by name (a key of :data:`cnn_utils.ATTACKS`), callable or None.

    Raises:
        ValueError: An unknown name.
    """
    if attack is None or callable(attack):
        return attack
    if attack in ATTACKS:
        return ATTACKS[attack]
    raise ValueError(
        f"attack must be None, a callable or one of {tuple(ATTACKS)}. Received: attack={attack!r}"
    )


def _broken(model, x, labels, attack, kwargs: dict, run: int) -> tuple[np.ndarray, int]:
    """Which examples ``attack`` breaks (any iterate for PGD and APGD), and the passes used."""
    if attack is pgd or attack is apgd:
        if attack is pgd:
            unknown = set(kwargs) - set(inspect.signature(pgd).parameters)
            if unknown:
                raise ValueError(f"pgd has no argument {sorted(unknown)[0]!r}. Received: {kwargs}")
            defaults = {"epsilon": 0.3, "num_steps": 20, "step_size": 0.01, "random_start": True}
            options = {**defaults, **kwargs, "targeted": False}
            options.pop("soft_label", None)  # only correctly classified inputs are attacked
            settings = AttackSettings.of(options)
        else:
            settings, loss, rank, rho = _apgd_settings(**_apgd_options(kwargs))
        x, labels = _checked_batch(model, x, labels, settings)
        if settings.epsilon == 0.0:
            return np.zeros(len(labels), bool), 0
        if attack is apgd:
            broken, _, work = _run_apgd(model, x, labels, settings, loss, rank, rho, run)
            return broken, work
        key = ("pgd_tracked", settings.norm, settings.random_start)
        broken, _, work = _compiled(model, key, _pgd_tracked_core)(
            x,
            labels,
            tf.constant(settings.epsilon, tf.float32),
            tf.constant(settings.num_steps, tf.int32),
            tf.constant(settings.step_size, tf.float32),
            tf.constant(settings.clip_value_min, tf.float32),
            tf.constant(settings.clip_value_max, tf.float32),
            _stateless_seed(settings.seed, run),
        )
        return broken.numpy(), int(work)
    if run and "seed" in kwargs and kwargs["seed"] is not None:
        kwargs = dict(kwargs, seed=kwargs["seed"] + 7919 * run)
    x_adv = attack(model, x, labels, **kwargs)
    return predict_labels(model, x_adv, len(labels) or 1) != np.asarray(labels), 0


def _apgd_options(kwargs: dict) -> dict:
    names = ("epsilon", "num_steps", "loss", "target_rank", "rho", "norm", "seed")
    unknown = set(kwargs) - set(names) - {"clip_value_min", "clip_value_max"}
    if unknown:
        raise ValueError(f"apgd has no argument {sorted(unknown)[0]!r}. Received: {kwargs!r}")
    options = {"epsilon": 0.3, "num_steps": 100, "loss": "ce", "target_rank": 2, "rho": 0.75}
    options.update(norm="linf", seed=None, lo=0.0, hi=1.0)
    options.update({k: v for k, v in kwargs.items() if k in names})
    options["lo"] = kwargs.get("clip_value_min", 0.0)
    options["hi"] = kwargs.get("clip_value_max", 1.0)
    return options


def _checked_labels(model, x, y) -> np.ndarray:
    """Labels checked against ``model`` (logits, one output) and ``x`` (finite, fits it)."""
    x = _checks.images(x)
    classes = _checks.logits_model(model, x)
    return np.asarray(_checks.labels(y, int(x.shape[0]), classes))


def robust_accuracy(
    model: Callable,
    x,
    y,
    attack: Callable | str | None,
    batch_size: int = 256,
    *,
    restarts: int = 0,
    verbose: int = 1,
    return_details: bool = False,
    **attack_kwargs,
):
    """Accuracy of ``model`` under ``attack``, counting an example as broken by any iterate.

    Only the examples the model classifies correctly are attacked. For :func:`pgd` and
    :func:`apgd` (or their names) every iterate is scored, as AutoAttack does: an example is
    broken as soon as any iterate is misclassified (the best iterate, not the last), and it then
    leaves the batch, so the attack keeps working on the survivors only (early exit). Each of
    the ``restarts`` extra runs attacks the survivors again from a new random start; an example
    is robust only if it survives every run. Any other attack (``"fgsm"``, ``"mim"``, a
    callable with their signature) is scored on the input it returns. With ``attack=None`` it
    is the clean accuracy.

    Args:
        model: Keras model returning logits.
        x: Inputs, shape (n, ...), in the attack's clip range.
        y: True integer labels, shape (n,).
        attack: ``fgsm``, ``pgd``, ``mim`` (or their names), :func:`apgd`, any callable with
            the same signature, or ``None`` for clean accuracy.
        batch_size: Examples attacked at once.
        restarts: Extra runs on the survivors, >= 0 (each from a new random start; with a
            ``seed``, run ``r`` uses ``seed + 7919 * r``).
        verbose: 1 shows a progress bar per run, 0 is silent.
        return_details: Also return a dict with ``robust`` (a bool per example), ``passes``
            (forward+backward passes of PGD/APGD per attacked example) and ``per_run``
            (the accuracy after each run).
        **attack_kwargs: Passed to the attack (``epsilon``, ``num_steps``, ``norm``...).

    Returns:
        The robust accuracy, a float in [0, 1]; with ``return_details``, ``(accuracy, details)``.

    Raises:
        ValueError: A bad batch size or number of restarts, an unknown attack, labels that do
            not match ``x``, a targeted attack (robust accuracy is measured against the true
            labels), or any error of the attack itself.
    """
    attack = resolve_attack(attack)
    batch_size = _checks.batch_size(batch_size)
    restarts = _checks.integer("restarts", restarts, minimum=0)
    if attack_kwargs.get("targeted"):
        raise ValueError(
            "robust_accuracy measures accuracy against the true labels and cannot run a "
            "targeted attack. Received: targeted=True"
        )
    n = len(x)
    labels = _checked_labels(model, x, y)
    if n == 0:
        raise ValueError("x must hold at least one example. Received: 0 examples")
    robust = predict_labels(model, x, batch_size) == labels
    attacked, work, per_run = int(robust.sum()), 0, []
    for run in range(1 + restarts if attack is not None else 0):
        index = np.flatnonzero(robust)
        bar = keras.utils.Progbar(len(index), verbose=verbose, unit_name="example")
        for start in range(0, len(index), batch_size):
            chunk = index[start : start + batch_size]
            broken, passes = _broken(
                model, _take(x, chunk), labels[chunk], attack, dict(attack_kwargs), run
            )
            robust[chunk[broken]] = False
            work += passes
            if verbose:
                bar.add(len(chunk), values=[("accuracy", robust.mean())])
        per_run.append(float(robust.mean()))
    accuracy = float(robust.mean())
    if not return_details:
        return accuracy
    return accuracy, {"robust": robust, "passes": work / max(attacked, 1), "per_run": per_run}


def _take(x, index: np.ndarray):
    return tf.gather(x, index) if isinstance(x, tf.Tensor) else np.asarray(x)[index]


_FGSM_ARGS = {"epsilon", "norm", "soft_label", "clip_value_min", "clip_value_max"}


def epsilon_sweep(
    model: Callable,
    x,
    y,
    epsilons: Sequence[float],
    attacks: Sequence[str] | Mapping[str, Callable] = ("fgsm", "pgd", "mim"),
    *,
    batch_size: int = 256,
    verbose: int = 1,
    **attack_kwargs,
):
    """Robust accuracy for every epsilon of a list and every attack, in one call.

    For the iterative attacks, ``step_size`` may be a number, a callable ``eps -> step``, or
    left out: it is then ``2.5 * eps / num_steps`` (a rule of thumb, not Madry et al.'s own
    setting), so the attack can reach the surface of every ball. epsilon = 0 gives the clean
    accuracy (no attack is run).

    Args:
        model: Keras model returning logits.
        x: Inputs, shape (n, ...).
        y: True integer labels, shape (n,).
        epsilons: Radii to try, each >= 0.
        attacks: Attack names (``"fgsm"``, ``"pgd"``, ``"mim"``), or a mapping from column
            name to attack callable.
        batch_size: Examples attacked at once.
        verbose: 1 prints one line per attack and epsilon, 0 is silent.
        **attack_kwargs: Passed to every attack (``norm``, ``num_steps``, ``seed``...); FGSM
            receives only the arguments it accepts.

    Returns:
        A pandas DataFrame indexed by epsilon with one column of accuracies per attack.

    Raises:
        ValueError: Empty or negative epsilons, an unknown attack, or a bad attack argument.
    """
    import pandas as pd

    eps_list = _checks.numbers("epsilons", epsilons, minimum=0.0)
    if isinstance(attacks, (str, bytes)) or not attacks:
        raise ValueError(
            "attacks must be a non-empty list of attack names or a mapping name -> attack, "
            f"e.g. ('fgsm', 'pgd'). Received: attacks={attacks!r}"
        )
    if isinstance(attacks, Mapping):
        table = {str(name): resolve_attack(fn) for name, fn in attacks.items()}
    else:
        table = {str(name): resolve_attack(name) for name in attacks}
    step_rule = attack_kwargs.pop("step_size", None)
    num_steps = attack_kwargs.get("num_steps", 20)
    clean = None
    results: dict[str, list[float]] = {}
    for name, fn in table.items():
        column = []
        for eps in eps_list:
            if eps == 0.0:
                if clean is None:
                    clean = robust_accuracy(model, x, y, None, batch_size, verbose=0)
                column.append(clean)
                continue
            kwargs = dict(attack_kwargs, epsilon=eps)
            if fn is fgsm:
                kwargs = {k: v for k, v in kwargs.items() if k in _FGSM_ARGS}
            elif callable(step_rule):
                kwargs["step_size"] = float(step_rule(eps))
            elif step_rule is not None:
                kwargs["step_size"] = step_rule
            else:
                kwargs["step_size"] = 2.5 * eps / num_steps
            accuracy = robust_accuracy(model, x, y, fn, batch_size, verbose=0, **kwargs)
            if verbose:
                print(f"{name:>6}  eps={eps:<8g} accuracy={accuracy:.4f}")
            column.append(accuracy)
        results[name] = column
    return pd.DataFrame(results, index=pd.Index(eps_list, name="epsilon"))


def transfer_matrix(
    models: Mapping[str, Callable],
    x,
    y,
    attack: Callable | str,
    *,
    batch_size: int = 256,
    verbose: int = 0,
    **attack_kwargs,
):
    """Black-box transfer: success of examples made on one model (rows) against another (columns).

    The examples are made with ``attack`` on each source model (white-box), then classified
    by every target model. Only examples that every model classifies correctly are used, so
    that every cell counts the same examples; a cell is the fraction of them that the target
    misclassifies. The diagonal is the white-box success rate.

    Args:
        models: Mapping from a display name to a model returning logits (at least one).
        x: Inputs, shape (n, ...).
        y: True integer labels, shape (n,).
        attack: ``fgsm``, ``pgd``, ``mim`` (or their names), or a callable with their signature.
        batch_size: Examples attacked at once.
        verbose: 1 prints progress, 0 is silent.
        **attack_kwargs: Passed to the attack.

    Returns:
        A pandas DataFrame of success rates in [0, 1], index ``source``, columns ``target``;
        ``attrs["n"]`` is the number of examples used.

    Raises:
        ValueError: No models, no example that all models classify correctly, or a bad
            attack argument.
    """
    import pandas as pd

    attack = resolve_attack(attack)
    if attack is None or not models:
        raise ValueError("models must be a non-empty mapping and attack must not be None.")
    batch_size = _checks.batch_size(batch_size)
    for model in models.values():
        labels = _checked_labels(model, x, y)
    x = np.asarray(x, dtype=np.float32)
    keep = np.ones(len(labels), bool)
    for model in models.values():
        keep &= predict_labels(model, x, batch_size) == labels
    if not keep.any():
        raise ValueError("No example is classified correctly by every model: nothing to attack.")
    x, labels = x[keep], labels[keep]
    rows = {}
    for source_name, source in models.items():
        if verbose:
            print(f"attacking {source_name} ({len(labels)} examples)")
        x_adv = np.concatenate(
            [
                np.asarray(attack(source, xb, labels[i : i + batch_size], **attack_kwargs))
                for i, xb in zip(
                    range(0, len(labels), batch_size), _batches(x, batch_size), strict=True
                )
            ]
        )
        rows[source_name] = {
            target_name: float(np.mean(predict_labels(target, x_adv, batch_size) != labels))
            for target_name, target in models.items()
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name, frame.columns.name = "source", "target"
    frame.attrs["n"] = int(len(labels))
    return frame


def transfer_summary(matrices: Mapping):
    """White-box and transfer success of several attacks, from their ``transfer_matrix`` tables.

    For each attack, the mean of the diagonal (each model attacked white-box) and the mean of
    the off-diagonal cells (examples made on one model, classified by another).

    Args:
        matrices: Mapping from an attack's display name to its ``transfer_matrix`` result
            (square, the same models as rows and columns, at least two models).

    Returns:
        A pandas DataFrame, index ``["white-box success", "transfer success"]``, one column per
        attack.

    Raises:
        ValueError: No matrices, or a matrix that is not square over the same models with at
            least two of them.
    """
    import pandas as pd

    if not isinstance(matrices, Mapping) or not matrices:
        raise ValueError(
            "matrices must be a non-empty mapping of transfer_matrix results, e.g. "
            f"{{'FGSM': transfer_matrix(...)}}. Received: matrices={matrices!r}"
        )
    columns = {}
    for name, frame in matrices.items():
        values = np.asarray(frame, dtype=float)
        if values.ndim != 2 or values.shape[0] != values.shape[1] or values.shape[0] < 2:
            raise ValueError(
                f"matrices[{name!r}] must be a square transfer matrix over at least two models. "
                f"Received: shape {values.shape}"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"matrices[{name!r}] must hold finite success rates. Received: NaN or Inf cells"
            )
        if list(getattr(frame, "index", [])) != list(getattr(frame, "columns", [None])):
            raise ValueError(
                f"matrices[{name!r}] must have the same models as rows and columns, got "
                f"{list(frame.index)} and {list(frame.columns)}."
            )
        off_diagonal = ~np.eye(len(values), dtype=bool)
        columns[name] = {
            "white-box success": float(np.diag(values).mean()),
            "transfer success": float(values[off_diagonal].mean()),
        }
    return pd.DataFrame(columns)


# ---------------------------------------------------------------------------------------------
# Loss surface
# ---------------------------------------------------------------------------------------------


def loss_surface(
    model: Callable,
    x,
    y,
    alphas: Sequence[float],
    betas: Sequence[float] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 512,
    clip: bool = False,
    clip_value_min: float = 0.0,
    clip_value_max: float = 1.0,
) -> dict[str, np.ndarray]:
    """Loss and prediction of ``model`` on the plane ``x + alpha * g + beta * g_perp``.

    ``g = sign(grad_x l(f(x), y))`` is the FGSM direction (so ``alpha`` is an L-infinity step in
    input units, and by Taylor ``l(x + h) ~ l(x) + grad^T h`` it is the steepest local ascent);
    ``g_perp`` is a random +-1 vector (seeded) with its component along ``g`` removed, so it is
    orthogonal to ``g`` and of about the same size. By default the inputs are not clipped to the
    valid range: this is a picture of the function around ``x``, partly off the image domain
    (at ``alpha = 0.25`` a black MNIST background pixel with ``g < 0`` sits at -0.25). With
    ``clip=True`` every point is clipped to ``[clip_value_min, clip_value_max]``: the surface
    over the images an attack can actually reach (the plane bends at the range's faces).

    Args:
        model: Keras model returning logits.
        x: One input, shape (H, W, C) or (1, H, W, C).
        y: Its integer label.
        alphas: Steps along ``g``.
        betas: Steps along ``g_perp`` (default: ``alphas``).
        seed: Seed of ``g_perp``.
        batch_size: Grid points per forward pass.
        clip: Clip every point of the plane to ``[clip_value_min, clip_value_max]``.
        clip_value_min: Lower end of the valid input range (used with ``clip=True``).
        clip_value_max: Upper end of the valid input range (used with ``clip=True``).

    Returns:
        A dict with ``alphas``, ``betas`` (1-D arrays), ``loss`` and ``pred`` (arrays of shape
        (len(betas), len(alphas)): cross-entropy of ``y`` and the predicted class), ``g`` and
        ``g_perp`` (the directions, shaped like one input).

    Raises:
        ValueError: A batch of more than one input; empty or non-finite alphas or betas; a
            label that is not one integer in range; non-finite pixels (or, with ``clip=True``,
            pixels outside the clip range, or a bad range); a model that does not return
            logits; or a loss whose gradient at ``x`` is zero everywhere.
    """
    x = _one_input(x)
    seed = _checks.seed(seed)
    batch_size = _checks.batch_size(batch_size)
    alphas, betas = _surface_axes(alphas, betas)
    clip = _checks.flag("clip", clip)
    lo, hi = _checks.clip_range(clip_value_min, clip_value_max)
    batch_x = _checks.images(x[np.newaxis], value_range=(lo, hi) if clip else None)
    classes = _checks.logits_model(model, batch_x)
    label = _checks.class_index(y, 1, classes, name="y")
    g, g_perp = _surface_directions(model, batch_x, label, seed)
    grid_a, grid_b = np.meshgrid(alphas, betas)
    points = (
        x[np.newaxis]
        + grid_a.reshape(-1, *([1] * x.ndim)) * g[np.newaxis]
        + grid_b.reshape(-1, *([1] * x.ndim)) * g_perp[np.newaxis]
    ).astype(np.float32)
    if clip:
        points = np.clip(points, lo, hi)
    loss, pred = _losses_and_predictions(model, points, label[0], batch_size)
    return {
        "alphas": alphas,
        "betas": betas,
        "loss": loss.reshape(grid_a.shape),
        "pred": pred.reshape(grid_a.shape),
        "g": g,
        "g_perp": g_perp.astype(np.float32),
    }


def _one_input(x) -> np.ndarray:
    """``x`` as one float32 input without a batch axis (a batch of one is unwrapped)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim >= 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim < 1 or (x.ndim == 4):
        raise ValueError(f"x must be one input. Received: x with shape {x.shape}")
    return x


def _surface_axes(alphas, betas) -> tuple[np.ndarray, np.ndarray]:
    """The steps along ``g`` and ``g_perp``, float32 vectors (``betas`` defaults to ``alphas``)."""
    alphas = np.asarray(alphas, dtype=np.float32).reshape(-1)
    betas = alphas if betas is None else np.asarray(betas, dtype=np.float32).reshape(-1)
    if alphas.size == 0 or betas.size == 0:
        raise ValueError("alphas and betas must not be empty.")
    if not (np.all(np.isfinite(alphas)) and np.all(np.isfinite(betas))):
        raise ValueError("alphas and betas must be finite. Received: NaN or Inf values")
    return alphas, betas


def _surface_directions(model, batch_x, label, seed) -> tuple[np.ndarray, np.ndarray]:
    """The plane's directions: ``g`` (FGSM's sign of the gradient) and ``g_perp`` (random, ⟂ g)."""
    grad = loss_gradient_fn(model)(batch_x, label)
    g = np.sign(np.asarray(grad[0], dtype=np.float32))
    if not g.any():
        raise ValueError(
            "The loss gradient at x is zero everywhere (does the model's output depend on "
            "its input?), so there is no attack direction to draw. Received: a model whose "
            "loss does not change with x at this input"
        )
    r = np.random.default_rng(seed).choice(np.array([-1.0, 1.0], np.float32), size=g.shape)
    g_dot = float(np.sum(g * g))
    g_perp = r - (np.sum(r * g) / g_dot) * g if g_dot > 0 else r
    return g, g_perp


def _losses_and_predictions(model, points, label, batch_size) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy of ``label`` and the predicted class at every point, a batch at a time."""
    losses, preds = [], []
    for batch in _batches(points, batch_size):
        logits = tf.cast(model(tf.constant(batch), training=False), tf.float32)
        labels = tf.fill([tf.shape(logits)[0]], label)
        losses.append(np.asarray(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))
        preds.append(np.asarray(tf.argmax(logits, axis=-1)))
    return np.concatenate(losses), np.concatenate(preds)


# ---------------------------------------------------------------------------------------------
# The standard protocol and the gradient-masking checks
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RobustnessReport:
    """The result of :func:`evaluate_robustness`.

    Attributes:
        robust: One bool per example: classified correctly and not broken by any stage.
        x_adv: Per-example worst case: the input that broke the example, or for a robust one
            the highest-loss point of the last stage that attacked it (``x`` if none did).
        broken_by: Per example, the stage that broke it (``"clean"`` for a clean error), or
            ``""`` for a robust example.
        table: A pandas DataFrame, one row per stage (``clean``, each attack, ``final``): the
            accuracy after the stage, the examples it broke, its time in seconds and the
            forward+backward passes per attacked example.
    """

    robust: np.ndarray
    x_adv: np.ndarray
    broken_by: np.ndarray
    table: object

    @property
    def accuracy(self) -> float:
        """The final robust accuracy."""
        return float(self.robust.mean())


def evaluate_robustness(
    model: Callable,
    x,
    y,
    epsilon: float,
    norm: str = "linf",
    *,
    num_steps: int = 100,
    target_classes: int = 9,
    batch_size: int = 500,
    clip_value_min: float = 0.0,
    clip_value_max: float = 1.0,
    seed: int = 0,
    verbose: int = 1,
) -> RobustnessReport:
    """Robust accuracy under "AutoAttack-lite": APGD-CE, then targeted APGD-DLR on the survivors.

    The protocol of AutoAttack (Croce & Hein 2020, "Reliable evaluation of adversarial
    robustness with an ensemble of diverse parameter-free attacks") without its two other
    attacks: **FAB and Square are not included**, so this is an upper bound on what full
    AutoAttack would report (in the paper the two APGD attacks account for almost all of its
    strength on undefended and adversarially trained models, but a defence that masks
    gradients can fool them; see :func:`gradient_masking_checks`). Stages: ``clean`` (the
    errors of the model), ``apgd-ce`` (:func:`apgd` with cross-entropy, one run), ``apgd-t``
    (targeted DLR against each of the ``target_classes`` highest-scored other classes in turn,
    one run each, on the examples still standing). Every iterate counts (an example is broken
    by any misclassified iterate) and broken examples leave the batch.

    Args:
        model: Keras model returning logits.
        x: Inputs, shape (n, ...), in ``[clip_value_min, clip_value_max]``.
        y: True integer labels, shape (n,).
        epsilon: Radius of the ball, >= 0.
        norm: ``"linf"`` or ``"l2"``.
        num_steps: APGD iterations per run (100 in AutoAttack).
        target_classes: Target classes of the targeted stage (9 in AutoAttack; at most the
            number of classes minus one).
        batch_size: Examples attacked at once.
        clip_value_min: Lower end of the valid input range.
        clip_value_max: Upper end of the valid input range.
        seed: Seed of the random starts (each run gets its own).
        verbose: 1 prints one line per stage, 0 is silent.

    Returns:
        A :class:`RobustnessReport` (``report.accuracy``, ``report.table``...).

    Raises:
        ValueError: A bad argument (the message names it), labels that do not match ``x``, or a
            model that does not return logits.
    """
    settings = _protocol_settings(epsilon, num_steps, norm, clip_value_min, clip_value_max, seed)
    target_classes = _checks.integer("target_classes", target_classes, minimum=0)
    batch_size = _checks.batch_size(batch_size)
    verbose = _checks.one_of("verbose", verbose, (0, 1))
    x_all, labels = _checked_batch(model, x, y, settings)
    if len(labels) == 0:
        raise ValueError("x must hold at least one example. Received: 0 examples")
    classes = int(model(x_all[:1], training=False).shape[-1])
    protocol = _Protocol(model, np.asarray(x_all), np.asarray(labels), settings, batch_size)
    protocol.clean_stage(verbose)
    for run, (stage, loss, rank) in enumerate(_protocol_stages(target_classes, classes)):
        protocol.attack_stage(stage, loss, rank, run, verbose)
    return protocol.report()


def _protocol_settings(epsilon, num_steps, norm, lo, hi, seed) -> AttackSettings:
    """The APGD settings of every stage of :func:`evaluate_robustness`, checked."""
    seed = _checks.integer("seed", seed, minimum=0)
    return AttackSettings(
        epsilon, num_steps, None, norm, clip_value_min=lo, clip_value_max=hi, seed=seed
    )


def _protocol_stages(target_classes: int, classes: int) -> list[tuple[str, str, int]]:
    """``(stage, loss, target rank)`` of each attack stage: APGD-CE, then one APGD-T per target.

    The targeted stages need at least 3 classes (the DLR loss ranks three logits).
    """
    stages = [("apgd-ce", "ce", 2)]
    if classes < 3:
        return stages
    return stages + [
        (f"apgd-t (target {r - 1})", "dlr_targeted", r)
        for r in range(2, min(target_classes, classes - 1) + 2)
    ]


@dataclasses.dataclass
class _Protocol:
    """The running state of :func:`evaluate_robustness`: the survivors, worst inputs and table."""

    model: Callable
    x: np.ndarray
    labels: np.ndarray
    settings: AttackSettings
    batch_size: int
    robust: np.ndarray | None = None
    x_adv: np.ndarray | None = None
    broken_by: np.ndarray | None = None
    rows: list = dataclasses.field(default_factory=list)

    def _add_row(self, stage: str, broken: int, seconds: float, passes: float) -> None:
        self.rows.append(
            {
                "stage": stage,
                "accuracy": self.robust.mean(),
                "broken": broken,
                "seconds": seconds,
                "passes_per_example": passes,
            }
        )

    def clean_stage(self, verbose: int) -> None:
        """The model's own errors: the examples every attack stage starts from."""
        start = time.perf_counter()
        self.robust = predict_labels(self.model, self.x, self.batch_size) == self.labels
        self.x_adv = self.x.copy()
        self.broken_by = np.where(self.robust, "", "clean").astype(object)
        self._add_row("clean", int((~self.robust).sum()), time.perf_counter() - start, 0.0)
        if verbose:
            print(f"clean: accuracy {self.robust.mean():.4f} ({len(self.labels)} examples)")

    def attack_stage(self, stage: str, loss: str, rank: int, run: int, verbose: int) -> None:
        """One APGD run on the examples still standing, a batch at a time."""
        start, work, index = time.perf_counter(), 0, np.flatnonzero(self.robust)
        broken_count = 0
        for begin in range(0, len(index), self.batch_size):
            chunk = index[begin : begin + self.batch_size]
            broken, x_out, passes = _run_apgd(
                self.model,
                tf.constant(self.x[chunk]),
                tf.constant(self.labels[chunk]),
                self.settings,
                loss,
                rank,
                0.75,
                run,
            )
            self.x_adv[chunk] = np.asarray(x_out)
            self.robust[chunk[broken]] = False
            self.broken_by[chunk[broken]] = stage
            work, broken_count = work + passes, broken_count + int(broken.sum())
        seconds = time.perf_counter() - start
        self._add_row(stage, broken_count, seconds, work / max(len(index), 1))
        if verbose:
            accuracy = self.robust.mean()
            print(f"{stage}: accuracy {accuracy:.4f} (broke {broken_count}, {seconds:.1f} s)")

    def report(self) -> RobustnessReport:
        """The report, its table ending with a ``final`` row (the total time)."""
        import pandas as pd

        total = sum(row["seconds"] for row in self.rows)
        self._add_row("final", int((~self.robust).sum()), total, np.nan)
        table = pd.DataFrame(self.rows).set_index("stage")
        return RobustnessReport(self.robust, self.x_adv, self.broken_by.astype(str), table)


def gradient_masking_checks(
    model: Callable,
    x,
    y,
    epsilon: float,
    *,
    source_model: Callable | None = None,
    epsilons: Sequence[float] | None = None,
    norm: str = "linf",
    num_steps: int = 20,
    batch_size: int = 500,
    seed: int = 0,
    tolerance: float = 0.01,
    restarts: int = 0,
    strong: bool = False,
    strong_steps: int = 100,
    target_classes: int = 9,
    strong_gap: float = 0.03,
):
    """The four symptoms of gradient masking (Athalye et al. 2018; Carlini et al. 2019), as a table.

    1. *iterative <= single step*: white-box accuracy at ``epsilon`` is at most FGSM accuracy;
    2. *white-box <= transfer*: the white-box accuracy is at most the accuracy left by PGD
       examples made on ``source_model`` (a model trained apart) and transferred (skipped when
       no source model is given);
    3. *accuracy -> 0 as eps grows*: PGD at the largest radius (default the width of the clip
       range, where any input is reachable) leaves at most 5 % accuracy;
    4. *accuracy monotone in eps*: PGD accuracy never rises as epsilon grows.

    A failed row does not prove masking, and passing all four does not prove robustness; a
    failure says the reported robust accuracy is not to be trusted. PGD uses ``num_steps``
    steps of ``2.5 * eps / num_steps`` from a random start, scored on every iterate, with
    ``restarts`` extra runs on the survivors. With ``strong=True`` the white-box accuracy at
    ``epsilon`` (rows 1 and 2, and the sweep's point at ``epsilon``) is the per-example worst
    case of that PGD and of :func:`evaluate_robustness` (APGD-CE, then targeted APGD-DLR), the
    literature's protocol (the sweep of rows 3 and 4 stays PGD, one attack at every radius);
    the table then has a fifth row, *PGD vs the strong protocol*, that shows both numbers and
    passes when the protocol removes at most ``strong_gap`` more than PGD did (a larger gap
    means PGD alone overstated the robustness: trust the lower number).

    Args:
        model: Keras model returning logits.
        x: Inputs, shape (n, ...), in [0, 1].
        y: True integer labels, shape (n,).
        epsilon: The radius the robustness is claimed for.
        source_model: Another model (returning logits) for the transfer check, or ``None``.
        epsilons: Radii of the sweep; default ``epsilon`` times 0, 0.25, 0.5, 1, 1.5, 2, and 1.0.
        norm: ``"linf"`` or ``"l2"``.
        num_steps: PGD steps.
        batch_size: Examples attacked at once.
        seed: Seed of the random starts.
        tolerance: Slack of the comparisons (accuracy is measured on a finite sample), >= 0;
            0 asks for the inequalities exactly.
        restarts: Extra PGD runs from new random starts in every white-box evaluation, >= 0.
        strong: Also run :func:`evaluate_robustness` at ``epsilon`` (see above).
        strong_steps: APGD iterations per run of the strong protocol.
        target_classes: Target classes of the strong protocol's targeted stage.
        strong_gap: Largest accuracy the strong protocol may remove beyond PGD's for the fifth
            row to pass, >= 0.

    Returns:
        A pandas DataFrame indexed by check with columns ``passed`` (bool, or ``None`` when
        skipped) and ``numbers`` (what was compared). ``attrs`` holds the accuracies:
        ``"pgd"`` (white-box PGD at ``epsilon``), ``"fgsm"``, ``"transfer"`` (or ``None``),
        ``"white_box"`` (the number the rows compare), ``"strong"`` (the protocol's, or
        ``None``), ``"sweep"`` (epsilon -> PGD accuracy) and ``"robust"`` (a bool per example:
        not broken by the white-box attacks at ``epsilon``).

    Raises:
        ValueError: A bad argument (the message names it).
    """
    epsilon, tolerance, restarts, strong, strong_gap, epsilons = _masking_arguments(
        epsilon, tolerance, restarts, strong, strong_gap, epsilons
    )
    suite = _MaskingAttacks(model, x, y, norm, num_steps, batch_size, seed, restarts)
    white = suite.white_box(epsilon, strong, strong_steps, target_classes)
    single = suite.fgsm(epsilon)
    transfer = None if source_model is None else suite.pgd(epsilon, source=source_model)
    sweep = suite.sweep(epsilons, epsilon, white.pgd)
    return _masking_table(white, single, transfer, sweep, tolerance, strong_gap)


def _masking_arguments(epsilon, tolerance, restarts, strong, strong_gap, epsilons) -> tuple:
    """The numbers of :func:`gradient_masking_checks`, checked; the default sweep filled in."""
    epsilon = _checks.number("epsilon", epsilon, positive=True)
    tolerance = _checks.number("tolerance", tolerance, minimum=0.0)
    restarts = _checks.integer("restarts", restarts, minimum=0)
    strong = _checks.flag("strong", strong)
    strong_gap = _checks.number("strong_gap", strong_gap, minimum=0.0)
    if epsilons is None:
        epsilons = [epsilon * f for f in (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)] + [1.0]
    epsilons = sorted(set(_checks.numbers("epsilons", epsilons, minimum=0.0)))
    return epsilon, tolerance, restarts, strong, strong_gap, epsilons


class _WhiteBox(NamedTuple):
    """The white-box accuracy at the claimed radius, as :func:`gradient_masking_checks` has it."""

    pgd: float  # PGD alone
    accuracy: float  # the number the rows compare: PGD's, or the worst case with the protocol
    strong: float | None  # evaluate_robustness's accuracy, or None without strong=True
    name: str  # what ``accuracy`` is, for the table
    robust: np.ndarray  # a bool per example: not broken by any white-box attack


@dataclasses.dataclass
class _MaskingAttacks:
    """The attacks of :func:`gradient_masking_checks`, all on the same examples and settings."""

    model: Callable
    x: object
    y: object
    norm: str
    num_steps: int
    batch_size: int
    seed: int
    restarts: int
    labels: np.ndarray = dataclasses.field(init=False)
    common: dict = dataclasses.field(init=False)

    def __post_init__(self):
        """Check the batch size and the labels; the options every call shares."""
        self.batch_size = _checks.batch_size(self.batch_size)
        self.labels = np.asarray(_checks.labels(self.y, len(self.x)))
        self.common = {"norm": self.norm, "batch_size": self.batch_size, "verbose": 0}

    def pgd(self, eps, source=None, details=False):
        """PGD accuracy at ``eps``: white-box, or of examples made on ``source`` (transfer)."""
        step_size = 2.5 * eps / self.num_steps
        kwargs = dict(epsilon=eps, num_steps=self.num_steps, step_size=step_size, seed=self.seed)
        if source is None or source is self.model:
            return robust_accuracy(
                self.model,
                self.x,
                self.y,
                "pgd",
                restarts=self.restarts,
                return_details=details,
                **self.common,
                **kwargs,
            )
        label_batches = [
            self.labels[i : i + self.batch_size]
            for i in range(0, len(self.labels), self.batch_size)
        ]
        batches = zip(_batches(self.x, self.batch_size), label_batches, strict=True)
        x_adv = np.concatenate(
            [np.asarray(pgd(source, xb, yb, norm=self.norm, **kwargs)) for xb, yb in batches]
        )
        return float(np.mean(predict_labels(self.model, x_adv, self.batch_size) == self.labels))

    def clean(self) -> float:
        """The clean accuracy."""
        return robust_accuracy(self.model, self.x, self.y, None, **self.common)

    def fgsm(self, eps) -> float:
        """FGSM accuracy at ``eps``."""
        return robust_accuracy(self.model, self.x, self.y, "fgsm", epsilon=eps, **self.common)

    def white_box(self, epsilon, strong: bool, strong_steps, target_classes) -> _WhiteBox:
        """PGD at ``epsilon``; with ``strong``, also the worst case with the strong protocol."""
        pgd_white, details = self.pgd(epsilon, details=True)
        if not strong:
            return _WhiteBox(pgd_white, pgd_white, None, "PGD", details["robust"])
        report = evaluate_robustness(
            self.model,
            self.x,
            self.y,
            epsilon,
            self.norm,
            num_steps=strong_steps,
            target_classes=target_classes,
            batch_size=self.batch_size,
            seed=self.seed,
            verbose=0,
        )
        robust = details["robust"] & report.robust
        name = "worst of PGD and APGD"
        return _WhiteBox(pgd_white, float(np.mean(robust)), report.accuracy, name, robust)

    def sweep(self, epsilons, epsilon, at_epsilon: float) -> dict:
        """PGD accuracy at every radius (the clean accuracy at 0, ``at_epsilon`` at ``epsilon``)."""
        accuracies = {}
        for e in epsilons:
            if e == epsilon:
                accuracies[e] = at_epsilon
            elif e > 0:
                accuracies[e] = self.pgd(e)
            else:
                accuracies[e] = self.clean()
        return accuracies


def _masking_table(white: _WhiteBox, single, transfer, sweep: dict, tolerance, strong_gap):
    """The checks' table: one row per symptom (a fifth with the strong protocol), and attrs."""
    import pandas as pd

    rows = {
        "iterative <= single step": (
            white.accuracy <= single + tolerance,
            f"{white.name} {white.accuracy:.4f} vs FGSM {single:.4f}",
        )
    }
    if transfer is None:
        rows["white-box <= transfer"] = (None, "skipped: no source_model")
    else:
        rows["white-box <= transfer"] = (
            white.accuracy <= transfer + tolerance,
            f"white-box {white.accuracy:.4f} vs transfer {transfer:.4f}",
        )
    epsilons, accuracies = list(sweep), list(sweep.values())
    rows["accuracy -> 0 as eps grows"] = (
        accuracies[-1] <= 0.05,
        f"PGD {accuracies[-1]:.4f} at eps={epsilons[-1]:g}",
    )
    rises = [b - a for a, b in zip(accuracies[:-1], accuracies[1:], strict=True)]
    text = ", ".join(f"{e:g}: {a:.4f}" for e, a in sweep.items())
    rows["accuracy monotone in eps"] = (max(rises, default=0.0) <= tolerance, text)
    if white.strong is not None:
        rows["PGD vs the strong protocol"] = (
            white.pgd - white.accuracy <= strong_gap,
            f"PGD {white.pgd:.4f}, APGD-CE + APGD-T {white.strong:.4f}, "
            f"worst case {white.accuracy:.4f}",
        )
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["passed", "numbers"])
    frame.index.name = "check"
    frame.attrs.update(
        pgd=white.pgd,
        fgsm=single,
        transfer=transfer,
        white_box=white.accuracy,
        strong=white.strong,
        sweep=sweep,
        robust=white.robust,
    )
    return frame
