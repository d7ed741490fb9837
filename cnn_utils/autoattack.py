"""AutoAttack in Keras 3: APGD, FAB-T and Square, and the protocol that runs them in turn.

One job: the attacks of AutoAttack (Croce & Hein 2020, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks") and their protocol. APGD
(:func:`apgd`) is PGD with a step-size schedule and two losses; FAB-T (:func:`fab`, Croce & Hein
2020, "Minimally distorted adversarial examples with a fast adaptive boundary attack") looks for
the closest point across the decision boundary of a target class; Square (:func:`square`,
Andriushchenko et al. 2020, "Square attack: a query-efficient black-box adversarial attack via
random search") needs no gradient at all, which is why the protocol includes it: a model whose
gradients are useless (masked) cannot hide from it. :func:`evaluate_robustness` runs them, each
on the survivors of the previous, and reports a row per stage, including the examples on which
a gradient stage saw an all-zero or non-finite input gradient.

Every attack scores each iterate (an example is broken by any misclassified iterate) and drops
broken examples from its working set (early exit); each runs as one compiled ``tf.function``
per model, norm and loss, with the numbers passed as tensors so that nothing retraces.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from cnn_utils import _checks
from cnn_utils._attack_settings import AttackSettings
from cnn_utils.attacks import model_cache, project, steepest_step

__all__ = [
    "LOSSES",
    "VERSIONS",
    "RobustnessReport",
    "apgd",
    "evaluate_robustness",
    "fab",
    "square",
]

LOSSES = ("ce", "dlr", "dlr_targeted")
"""Losses of :func:`apgd`: cross-entropy, difference of logits ratio, and its targeted form."""

VERSIONS = ("standard", "lite", "rand")
"""Versions of :func:`evaluate_robustness`: AutoAttack's standard and rand, and APGD only."""

# ---------------------------------------------------------------------------------------------
# Shared plumbing: losses and gradients, the outcome of an attack, a loop over a working set
# ---------------------------------------------------------------------------------------------


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
    if kind == "target_margin":  # FAB-T's boundary function, z_t - z_y (>= 0: fooled)
        return z_t - z_y
    spread = top[:, 0] - (0.5 * (top[:, 2] + top[:, 3]) if top.shape[-1] >= 4 else top[:, -1])
    return -(z_y - z_t) / (spread + 1e-12)


def _loss_and_gradient(model_ref, kind, samples, x, y, target):
    """Logits, per-example loss and input gradient, averaged over ``samples`` forward passes.

    One pass for a deterministic model; more (expectation over transformation, Athalye et al.
    2018) for a randomised one.
    """

    def one(_):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.cast(model_ref()(x, training=False), tf.float32)
            losses = _attack_loss(kind, logits, y, target)
            total = tf.reduce_sum(losses)
        grad = tape.gradient(total, x)
        return logits, losses, tf.zeros_like(x) if grad is None else tf.cast(grad, tf.float32)

    if samples == 1:
        return one(0)
    draws = [one(k) for k in range(samples)]
    return tuple(tf.add_n(list(parts)) / float(samples) for parts in zip(*draws, strict=True))


def loss_gradient(model, kind: str, samples: int = 1) -> Callable:
    """Compiled ``(logits, per-example loss, input gradient)``, not inlined (as in attacks)."""
    cache, ref = model_cache(model)
    key = ("loss_and_gradient", kind, samples)
    if key not in cache:
        cache[key] = tf.function(
            functools.partial(_loss_and_gradient, ref, kind, samples),
            reduce_retracing=True,
            experimental_attributes={"_noinline": True},
        )
    return cache[key]


def compiled(model, key: tuple, core: Callable) -> Callable:
    """``core`` compiled once per model and ``key`` (its switches follow the key's first item)."""
    cache, ref = model_cache(model)
    if key not in cache:
        cache[key] = tf.function(functools.partial(core, ref, *key[1:]), reduce_retracing=True)
    return cache[key]


def stateless_seed(seed, run: int = 0) -> tf.Tensor:
    """The stateless seed of run ``run`` (a fresh one from the global generator if ``None``)."""
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    return tf.constant([(seed + 7919 * run) % (2**31 - 1), 1], tf.int32)


def bad_gradient(grad) -> tf.Tensor:
    """Per example: is the input gradient all zero, or not finite anywhere?"""
    flat = tf.reshape(grad, [tf.shape(grad)[0], -1])
    zero = tf.reduce_all(tf.equal(flat, 0.0), axis=1)
    return tf.logical_or(zero, tf.logical_not(tf.reduce_all(tf.math.is_finite(flat), axis=1)))


class Outcome(NamedTuple):
    """What an attack found, one row per example of the whole batch (it does not shrink)."""

    broken: tf.Tensor  # bool: some iterate was misclassified
    x_out: tf.Tensor  # the input that broke it, or the attack's best point
    masked: tf.Tensor  # bool: a gradient on it was all zero or not finite


def new_outcome(x) -> Outcome:
    """Nothing broken or masked yet; every output is the clean input."""
    none = tf.zeros([tf.shape(x)[0]], tf.bool)
    return Outcome(none, x, none)


def record(out: Outcome, idx, fooled, x_adv, masked=None) -> Outcome:
    """Mark the working-set examples (``idx``) that ``fooled`` and keep the inputs that did."""
    where = tf.boolean_mask(idx, fooled)[:, None]
    broken = tf.tensor_scatter_nd_update(out.broken, where, tf.ones_like(where[:, 0], tf.bool))
    x_out = tf.tensor_scatter_nd_update(out.x_out, where, tf.boolean_mask(x_adv, fooled))
    if masked is None:
        return Outcome(broken, x_out, out.masked)
    hit = tf.boolean_mask(idx, masked)[:, None]
    masked = tf.tensor_scatter_nd_update(out.masked, hit, tf.ones_like(hit[:, 0], tf.bool))
    return Outcome(broken, x_out, masked)


def misclassified(logits, y) -> tf.Tensor:
    """Per example: is the predicted class (argmax of the logits) other than ``y``?"""
    return tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), y)


def loop(cond, body, state):
    """``tf.while_loop`` over a NamedTuple state whose ``SHRINKING`` fields shrink along axis 0.

    The loop also stops when the working set (``state.walk.idx``) is empty.
    """
    shapes = tf.nest.map_structure(lambda t: t.shape, state)
    free = {
        name: tf.nest.map_structure(lambda t: tf.TensorShape([None, *t.shape[1:]]), part)
        for name, part in zip(state._fields, state, strict=True)
        if name in state.SHRINKING
    }
    (state,) = tf.while_loop(
        lambda s: tf.logical_and(cond(s), tf.size(s.walk.idx) > 0),
        lambda s: (body(s),),
        (state,),
        shape_invariants=(shapes._replace(**free),),
    )
    return state


def shrink(state, keep):
    """The state with only the ``keep`` rows of its working set."""
    return state._replace(
        **{
            name: tf.nest.map_structure(lambda t: tf.boolean_mask(t, keep), getattr(state, name))
            for name in state.SHRINKING
        }
    )


def _expand(x) -> tuple:
    """Index that turns a per-example vector into a tensor that broadcasts against ``x``."""
    return (slice(None),) + (None,) * (len(x.shape) - 1)


# ---------------------------------------------------------------------------------------------
# APGD (Croce & Hein 2020, Algorithm 1)
# ---------------------------------------------------------------------------------------------


class _Walk(NamedTuple):
    """APGD's working set: the examples still attacked, their iterates and gradients."""

    idx: tf.Tensor
    x: tf.Tensor
    y: tf.Tensor
    target: tf.Tensor
    x_adv: tf.Tensor
    x_prev: tf.Tensor
    grad: tf.Tensor


class _Best(NamedTuple):
    """The highest-loss point of each example so far (``x_max``, its gradient, ``f_max``)."""

    x: tf.Tensor
    grad: tf.Tensor
    loss: tf.Tensor


class _Schedule(NamedTuple):
    """The step-size schedule of each example (Algorithm 1's checkpoint conditions).

    ``eta`` is the step (``2 * epsilon`` at first), ``rises`` the steps of the current period on
    which the loss rose, ``reduced`` whether the step was halved at the last checkpoint.
    """

    eta: tf.Tensor
    rises: tf.Tensor
    reduced: tf.Tensor
    loss_prev: tf.Tensor
    loss_at_check: tf.Tensor


class _ApgdState(NamedTuple):
    """APGD's loop state: counters, the outcome, and the working set (which shrinks)."""

    i: tf.Tensor
    work: tf.Tensor
    since: tf.Tensor  # steps since the last checkpoint
    period: tf.Tensor  # length of the current checkpoint period
    out: Outcome
    walk: _Walk
    best: _Best
    schedule: _Schedule
    SHRINKING = ("walk", "best", "schedule")


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
        scale = tf.norm(tf.reshape(noise, [n, -1]), axis=1)[_expand(x)]
    return tf.clip_by_value(x + epsilon * noise / tf.maximum(scale, 1e-12), lo, hi)


def _safe(grad):
    """The gradient with every non-finite entry set to 0 (the report says where it happened)."""
    return tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad))


def _apgd_state(x, y, target, x_adv, logits, losses, grad, epsilon, steps) -> _ApgdState:
    """The loop state after the start is scored: every example is its own best point so far."""
    n = tf.shape(x)[0]
    idx = tf.range(n)
    out = record(new_outcome(x), idx, misclassified(logits, y), x_adv, bad_gradient(grad))
    grad, ones = _safe(grad), tf.ones([n], tf.float32)
    return _ApgdState(
        i=tf.constant(0),
        work=n,
        since=tf.constant(0),
        period=_fraction(0.22, steps),
        out=out,
        walk=_Walk(idx, x, y, target, x_adv, x_adv, grad),
        best=_Best(x_adv, grad, losses),
        schedule=_Schedule(2.0 * epsilon * ones, 0.0 * ones, ones > 0.0, losses, losses),
    )


def _apgd_step(s: _ApgdState, grad_fn, norm, epsilon, lo, hi):
    """One iteration of Algorithm 1: the step, its loss and gradient, the best point so far.

    Returns the new state and which examples the new iterate fools.
    """
    w, b, sch = s.walk, s.best, s.schedule
    ex = _expand(w.x)
    # z^(k+1) = P(x^(k) + eta grad), then x^(k+1) = P(x^(k) + alpha (z - x^(k)) + (1 - alpha)
    # (x^(k) - x^(k-1))).
    z = tf.clip_by_value(
        project(w.x_adv + sch.eta[ex] * steepest_step(w.grad, norm), w.x, epsilon, norm), lo, hi
    )
    alpha = tf.where(s.i > 0, 0.75, 1.0)  # momentum 0.75, none on the first step
    x_new = w.x_adv + alpha * (z - w.x_adv) + (1.0 - alpha) * (w.x_adv - w.x_prev)
    x_new = tf.clip_by_value(project(x_new, w.x, epsilon, norm), lo, hi)
    logits, losses, grad = grad_fn(x_new, w.y, w.target)
    fooled = misclassified(logits, w.y)
    out = record(s.out, w.idx, fooled, x_new, bad_gradient(grad))
    grad = _safe(grad)
    better = losses > b.loss  # the best point: x_max and f_max where the loss beats it
    best = _Best(
        tf.where(better[ex], x_new, b.x),
        tf.where(better[ex], grad, b.grad),
        tf.maximum(losses, b.loss),
    )
    rises = sch.rises + tf.cast(losses > sch.loss_prev, tf.float32)
    s = s._replace(
        i=s.i + 1,
        work=s.work + tf.size(w.idx),
        since=s.since + 1,
        out=out,
        walk=w._replace(x_adv=x_new, x_prev=w.x_adv, grad=grad),
        best=best,
        schedule=sch._replace(rises=rises, loss_prev=losses),
    )
    return s, fooled


def _apgd_checkpoint(s: _ApgdState, rho, steps) -> _ApgdState:
    """Algorithm 1's checkpoints: halve the step and restart from the best point where needed.

    At a checkpoint the step is halved and the iterate restarted from the best point where the
    loss rose in fewer than ``rho`` of the period's steps (condition 1), or where the step was
    not cut last time and the best loss has not improved since (condition 2).
    """
    w, b, sch = s.walk, s.best, s.schedule
    ex = _expand(w.x)
    at_check = tf.equal(s.since, s.period)
    stalled = tf.logical_and(tf.logical_not(sch.reduced), sch.loss_at_check >= b.loss)
    cut = tf.logical_and(
        at_check, tf.logical_or(sch.rises <= rho * tf.cast(s.since, tf.float32), stalled)
    )
    walk = w._replace(
        x_adv=tf.where(cut[ex], b.x, w.x_adv),
        x_prev=tf.where(cut[ex], b.x, w.x_prev),
        grad=tf.where(cut[ex], b.grad, w.grad),
    )
    schedule = sch._replace(
        eta=tf.where(cut, sch.eta / 2.0, sch.eta),
        reduced=tf.where(at_check, cut, sch.reduced),
        loss_at_check=tf.where(at_check, b.loss, sch.loss_at_check),
        rises=tf.where(at_check, 0.0, sch.rises),
    )
    # The next checkpoint: the period shrinks by 3 % of the steps, to at least 6 %.
    shorter = tf.maximum(s.period - _fraction(0.03, steps), _fraction(0.06, steps))
    return s._replace(
        period=tf.where(at_check, shorter, s.period),
        since=tf.where(at_check, 0, s.since),
        walk=walk,
        schedule=schedule,
    )


def _apgd_core(model_ref, norm, loss, samples, x, y, target, epsilon, num_steps, lo, hi, seed, rho):
    """Auto-PGD (Croce & Hein 2020, Algorithm 1) with early exit; see :func:`apgd`."""
    grad_fn = loss_gradient(model_ref(), loss, samples)
    steps = tf.cast(num_steps, tf.float32)
    x_adv = _apgd_start(x, epsilon, norm, lo, hi, seed)
    logits, losses, grad = grad_fn(x_adv, y, target)
    state = _apgd_state(x, y, target, x_adv, logits, losses, grad, epsilon, steps)

    def body(s):
        s, fooled = _apgd_step(s, grad_fn, norm, epsilon, lo, hi)
        s = _apgd_checkpoint(s, rho, steps)
        return shrink(s, tf.logical_not(fooled))

    s = loop(lambda s: s.i < num_steps, body, state)
    # Every example still standing ends at its highest-loss point x_max.
    x_out = tf.tensor_scatter_nd_update(s.out.x_out, s.walk.idx[:, None], s.best.x)
    return s.out._replace(x_out=x_out), s.work


class Result(NamedTuple):
    """An attack's outcome as numpy arrays, and the model passes it used."""

    broken: np.ndarray
    x_out: np.ndarray
    masked: np.ndarray
    work: int


def _result(outcome: Outcome, work) -> Result:
    broken, x_out, masked = (np.asarray(t) for t in outcome)
    return Result(broken, x_out, masked, int(work))


def numbers(settings: AttackSettings) -> tuple:
    """Epsilon, steps and the clip range of ``settings`` as tensors (no retracing)."""
    return (
        tf.constant(settings.epsilon, tf.float32),
        tf.constant(settings.num_steps, tf.int32),
        tf.constant(settings.clip_value_min, tf.float32),
        tf.constant(settings.clip_value_max, tf.float32),
    )


def run_apgd(
    model, x, labels, settings: AttackSettings, loss="ce", target_rank=2, rho=0.75, run=0, eot=1
) -> Result:
    """APGD on checked inputs (``eot`` gradient samples per step)."""
    target = labels
    if loss == "dlr_targeted":
        logits = tf.cast(model(x, training=False), tf.float32)
        target = tf.math.top_k(logits, k=target_rank).indices[:, target_rank - 1]
    fn = compiled(model, ("apgd", settings.norm, loss, eot), _apgd_core)
    seed = stateless_seed(settings.seed, run)
    target = tf.cast(target, tf.int32)
    outcome, work = fn(x, labels, target, *numbers(settings), seed, tf.constant(rho))
    result = _result(outcome, work)
    if loss != "ce" and int(model(x[:1], training=False).shape[-1]) < 4:
        # With 3 classes the DLR loss can be constant (-1 when the target is the third class):
        # its zero gradient says nothing about the model, so it is not reported.
        result = result._replace(masked=np.zeros_like(result.masked))
    return result


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
    eot: int = 1,
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
    their highest-loss point. With ``eot > 1`` every step follows the mean gradient of ``eot``
    forward passes (expectation over transformation, for randomised models). Compiled once per
    model, norm, loss and ``eot``; nothing retraces when the numbers change.

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
        eot: Forward passes averaged per step, >= 1 (20 in AutoAttack's rand version).
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
    settings, loss, target_rank, rho, eot = apgd_settings(
        epsilon, num_steps, loss, target_rank, rho, eot, norm, clip_value_min, clip_value_max, seed
    )
    x, labels = checked_batch(model, x, y, settings, loss, target_rank)
    if int(x.shape[0]) == 0 or settings.epsilon == 0.0:
        return tf.identity(x)
    return tf.constant(run_apgd(model, x, labels, settings, loss, target_rank, rho, 0, eot).x_out)


def apgd_settings(epsilon, num_steps, loss, target_rank, rho, eot, norm, lo, hi, seed):
    """APGD's arguments, checked: ``(settings, loss, target_rank, rho, eot)``."""
    settings = AttackSettings(
        epsilon, num_steps, None, norm, clip_value_min=lo, clip_value_max=hi, seed=seed
    )
    loss = _checks.one_of("loss", loss, LOSSES)
    target_rank = _checks.integer("target_rank", target_rank, minimum=2)
    rho = _checks.number("rho", rho, minimum=0.0, maximum=1.0)
    eot = _checks.integer("eot", eot, minimum=1)
    return settings, loss, target_rank, rho, eot


def _refuse_float16_overflow(model, x, labels) -> None:
    """Under a float16 policy a NaN or Inf input gradient is an overflow: an error naming the fix.

    (Under float32 a non-finite gradient is reported as masking instead; see ``bad_gradient``.)
    """
    policy = getattr(getattr(model, "dtype_policy", None), "compute_dtype", "float32")
    if policy not in ("float16", "bfloat16"):
        return
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = tf.cast(model(x, training=False), tf.float32)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    grad = tape.gradient(loss, x)
    if grad is not None and not bool(tf.reduce_all(tf.math.is_finite(grad))):
        raise ValueError(
            f"The loss or its input gradient is NaN or Inf under a {policy} policy. float16 "
            "overflow: run the attack under a float32 policy "
            "(keras.mixed_precision.set_global_policy('float32') before building or loading "
            "the model)."
        )


def checked_batch(model, x, y, settings: AttackSettings, loss="ce", target_rank=2):
    """Images in the clip range and labels in range for ``model`` (as the attacks check them)."""
    x = _checks.images(x, value_range=(settings.clip_value_min, settings.clip_value_max))
    batch = int(x.shape[0])
    labels = _checks.labels(y, batch)
    if batch == 0:
        return x, labels
    classes = _checks.logits_model(model, x)
    labels = _checks.labels(labels, batch, classes)
    _refuse_float16_overflow(model, x, labels)
    needed = {"ce": 2, "dlr": 3, "dlr_targeted": max(3, target_rank)}[loss]
    if classes is not None and classes < needed:
        raise ValueError(
            f"loss={loss!r} needs a model with at least {needed} classes (target_rank="
            f"{target_rank}). Received: a model with {classes} outputs"
        )
    return x, labels


# ---------------------------------------------------------------------------------------------
# FAB-T (Croce & Hein 2020): the closest point across the linearised target boundary
# ---------------------------------------------------------------------------------------------


class _FabWalk(NamedTuple):
    """FAB's working set: the clean inputs, iterates, and the closest adversarial point found."""

    idx: tf.Tensor
    x: tf.Tensor
    y: tf.Tensor
    target: tf.Tensor
    x1: tf.Tensor
    best_norm: tf.Tensor


class _FabState(NamedTuple):
    """FAB's loop state: the step counter, model passes, outcome and working set."""

    i: tf.Tensor
    work: tf.Tensor
    out: Outcome
    walk: _FabWalk
    SHRINKING = ("walk",)


def _flat_norm(t, norm):
    flat = tf.reshape(t, [tf.shape(t)[0], -1])
    return tf.reduce_max(tf.abs(flat), 1) if norm == "linf" else tf.norm(flat, axis=1)


def boundary_step(x, w, g, lo, hi, norm):
    """The smallest step ``d`` (L-infinity or L2) with ``w . d = -g`` and ``x + d`` in the box.

    The projection of ``x`` onto the hyperplane ``{z: g + w . (z - x) = 0}`` intersected with
    ``[lo, hi]`` (FAB's projection; Croce & Hein 2020, section 3.1), per example, exactly: each
    coordinate moves by ``min(t, b_i)`` (times ``|w_i|`` for L2) towards the hyperplane, with the
    scalar ``t`` found from the sorted breakpoints ``b_i``. Where the box does not reach the
    hyperplane, every coordinate moves to the box's face.
    """
    shape, n = tf.shape(x), tf.shape(x)[0]
    x, w = tf.reshape(x, [n, -1]), tf.reshape(w, [n, -1])
    direction = -tf.sign(g)[:, None] * tf.sign(w)
    direction = tf.where(tf.equal(direction, 0.0), 1.0, direction)
    cap = tf.maximum(tf.where(direction > 0, hi - x, x - lo), 0.0)
    aw = tf.abs(w)
    if norm == "linf":
        weight, brk = aw, cap
    else:
        weight, brk = tf.square(aw), tf.where(aw > 0, cap / tf.maximum(aw, 1e-30), 0.0)
    order = tf.argsort(brk, axis=1)
    brk_s, weight_s = tf.gather(brk, order, batch_dims=1), tf.gather(weight, order, batch_dims=1)
    before = tf.cumsum(weight_s * brk_s, axis=1, exclusive=True)
    after = tf.cumsum(weight_s, axis=1, reverse=True)
    reach = before + brk_s * after  # w . d when t is each breakpoint (non-decreasing)
    need = tf.abs(g)[:, None]
    k = tf.reduce_sum(tf.cast(reach < need, tf.int32), axis=1)
    last = tf.shape(brk)[1] - 1
    kk = tf.minimum(k, last)[:, None]
    t = (need[:, 0] - tf.gather(before, kk, batch_dims=1)[:, 0]) / tf.maximum(
        tf.gather(after, kk, batch_dims=1)[:, 0], 1e-30
    )
    t = tf.where(k > last, tf.reduce_max(brk, axis=1), t)
    move = tf.minimum(t[:, None], brk)
    d = direction * (move if norm == "linf" else move * aw)
    return tf.reshape(d, shape)


def _fab_step(s: _FabState, grad_fn, model, norm, epsilon, lo, hi, early_stop):
    """One FAB iteration: two projections onto the linearised boundary, mixed.

    From the iterate and from x, at most 10 % of the latter, with a 5 % overshoot; an
    adversarial iterate steps 10 % back towards x.
    """
    w = s.walk
    ex = _expand(w.x)
    _, g, grad = grad_fn(w.x1, w.y, w.target)
    masked = bad_gradient(grad)
    grad = _safe(grad)
    g_from_x = g - tf.reduce_sum(tf.reshape(grad * (w.x1 - w.x), [tf.shape(g)[0], -1]), 1)
    d1 = boundary_step(w.x1, grad, g, lo, hi, norm)
    d2 = boundary_step(w.x, grad, g_from_x, lo, hi, norm)
    a1 = tf.maximum(_flat_norm(d1, norm), 1e-8)
    a2 = tf.maximum(_flat_norm(d2, norm), 1e-8)
    alpha = tf.clip_by_value(a1 / (a1 + a2), 0.0, 0.1)[ex]
    x1 = tf.clip_by_value((w.x1 + 1.05 * d1) * (1.0 - alpha) + (w.x + 1.05 * d2) * alpha, lo, hi)
    fooled = misclassified(tf.cast(model(x1, training=False), tf.float32), w.y)
    dist = _flat_norm(x1 - w.x, norm)
    closer = tf.logical_and(fooled, dist < w.best_norm)
    inside = tf.logical_and(closer, dist <= epsilon)
    out = record(s.out, w.idx, inside, x1, masked)
    best_norm = tf.where(closer, dist, w.best_norm)
    x1 = tf.where(fooled[ex], w.x + 0.9 * (x1 - w.x), x1)
    s = _FabState(s.i + 1, s.work + tf.size(w.idx), out, w._replace(x1=x1, best_norm=best_norm))
    keep = best_norm > epsilon if early_stop else tf.ones_like(fooled)
    return shrink(s, keep)


def _fab_core(model_ref, norm, early_stop, x, y, target, epsilon, num_steps, lo, hi):
    """FAB-T from the clean input (AutoAttack's single run); see :func:`fab`."""
    model = model_ref()
    grad_fn = loss_gradient(model, "target_margin")
    n = tf.shape(x)[0]
    walk = _FabWalk(tf.range(n), x, y, target, x, tf.fill([n], np.float32(np.inf)))
    state = _FabState(tf.constant(0), tf.constant(0), new_outcome(x), walk)

    def body(s):
        return _fab_step(s, grad_fn, model, norm, epsilon, lo, hi, early_stop)

    s = loop(lambda s: s.i < num_steps, body, state)
    return s.out, s.work


def run_fab(model, x, labels, settings: AttackSettings, target_rank=2, run=0, early_stop=True):
    """FAB-T on checked inputs against the class the clean input ranks ``target_rank``."""
    del run  # one deterministic run from the clean input, as in AutoAttack
    logits = tf.cast(model(x, training=False), tf.float32)
    target = tf.cast(tf.math.top_k(logits, k=target_rank).indices[:, target_rank - 1], tf.int32)
    fn = compiled(model, ("fab", settings.norm, early_stop), _fab_core)
    outcome, work = fn(x, labels, target, *numbers(settings))
    return _result(outcome, 2 * work)  # a gradient and a forward pass per step


def fab(
    model: Callable,
    x,
    y,
    epsilon: float = 0.3,
    num_steps: int = 100,
    *,
    target_rank: int = 2,
    norm: str = "linf",
    clip_value_min: float = 0.0,
    clip_value_max: float = 1.0,
    seed: int | None = None,
) -> tf.Tensor:
    """FAB-T, the targeted fast adaptive boundary attack (Croce & Hein 2020).

    From "Minimally distorted adversarial examples with a fast adaptive boundary attack" (ICML
    2020), AutoAttack's third stage. It looks for the *closest* adversarial example: at each
    step the boundary between the true class ``y`` and the target ``t`` (the class the model
    ranks ``target_rank`` on the clean input) is linearised, ``z_t - z_y ~ g + w . d``, and the
    iterate moves to a mix of two projections onto that hyperplane within the valid box: from
    the iterate, and at most 10 % from the clean input (which keeps it close), with a 5 %
    overshoot. An iterate that is adversarial is recorded if it is the closest so far, then
    pulled 10 % back towards ``x``. One run from the clean input (AutoAttack's FAB-T), so the
    result does not depend on ``seed``. Compiled once per model and norm.

    Args:
        model: Keras model (or callable) returning logits.
        x: Float inputs in ``[clip_value_min, clip_value_max]``, shape (batch, ...).
        y: True integer labels, shape (batch,).
        epsilon: Radius of the ball, >= 0: the closest adversarial point found is returned when
            it lies within it, ``x`` otherwise.
        num_steps: Iterations, >= 1 (100 in AutoAttack).
        target_rank: 2 targets the highest-scored other class, 3 the next, ...
        norm: ``"linf"`` or ``"l2"``.
        clip_value_min: Lower end of the valid input range.
        clip_value_max: Upper end of the valid input range.
        seed: Accepted for a common signature; FAB-T's single run is deterministic.

    Returns:
        A float32 tensor shaped like ``x``: per example, the closest adversarial input found
        within ``epsilon``, or ``x``.

    Raises:
        ValueError: A bad argument (the message names it and the value received), labels that
            do not match ``x``, or a model with fewer than ``target_rank`` classes.
    """
    settings = AttackSettings(
        epsilon,
        num_steps,
        None,
        norm,
        clip_value_min=clip_value_min,
        clip_value_max=clip_value_max,
        seed=seed,
    )
    target_rank = _checks.integer("target_rank", target_rank, minimum=2)
    x, labels = checked_batch(model, x, y, settings, "dlr_targeted", target_rank)
    if int(x.shape[0]) == 0 or settings.epsilon == 0.0:
        return tf.identity(x)
    return tf.constant(run_fab(model, x, labels, settings, target_rank, early_stop=False).x_out)


# ---------------------------------------------------------------------------------------------
# Square (Andriushchenko et al. 2020): random search, no gradient
# ---------------------------------------------------------------------------------------------


class _SquareWalk(NamedTuple):
    """Square's working set: the examples not yet fooled, their best point and its margin."""

    idx: tf.Tensor
    x: tf.Tensor
    y: tf.Tensor
    x_best: tf.Tensor
    margin: tf.Tensor


class _SquareState(NamedTuple):
    """Square's loop state: the query counter, model passes, outcome and working set."""

    i: tf.Tensor
    work: tf.Tensor
    out: Outcome
    walk: _SquareWalk
    SHRINKING = ("walk",)


def _margin(model, x, y):
    """Logits and the margin ``z_y - max_{j != y} z_j`` (negative: misclassified)."""
    logits = tf.cast(model(x, training=False), tf.float32)
    z_y = tf.gather(logits, y, batch_dims=1)
    others = tf.where(tf.one_hot(y, tf.shape(logits)[-1]) > 0, -np.inf, logits)
    return logits, z_y - tf.reduce_max(others, axis=-1)


def _square_fraction(p_init, i, num_queries):
    """The paper's schedule of ``p``, the fraction of the pixels that a square covers.

    Halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 queries, the
    thresholds rescaled to the budget.
    """
    it = tf.cast(tf.cast(i, tf.float32) / tf.cast(num_queries, tf.float32) * 10000.0, tf.int32)
    bounds = tf.constant([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000])
    halvings = tf.reduce_sum(tf.cast(it > bounds, tf.int32))
    return p_init / tf.pow(2.0, tf.cast(halvings, tf.float32))


def _window(n, h, w, s, seed):
    """A random ``s x s`` window per example: its mask (n, h, w, 1) and top-left corner."""
    corner = tf.random.stateless_uniform([2, n], seed, 0, 2**30, dtype=tf.int32)
    vh, vw = corner[0] % (h - s + 1), corner[1] % (w - s + 1)
    rows = tf.range(h)[None, :] - vh[:, None]  # (n, h): row offset inside the window
    cols = tf.range(w)[None, :] - vw[:, None]
    inside_r = tf.logical_and(rows >= 0, rows < s)
    inside_c = tf.logical_and(cols >= 0, cols < s)
    mask = tf.logical_and(inside_r[:, :, None], inside_c[:, None, :])
    return tf.cast(mask, tf.float32)[..., None], rows, cols


def _signs(shape, seed):
    return 2.0 * tf.cast(tf.random.stateless_uniform(shape, seed) < 0.5, tf.float32) - 1.0


def _square_side(p, n_features, channels, minimum):
    return tf.maximum(tf.cast(tf.round(tf.sqrt(p * n_features / channels)), tf.int32), minimum)


def _linf_proposal(w: _SquareWalk, p, epsilon, lo, hi, seed):
    """L-infinity: one square of side ``sqrt(p * pixels)`` set to ``+-epsilon`` per channel."""
    n, h, wd, c = (tf.shape(w.x)[k] for k in range(4))
    s = tf.minimum(
        _square_side(p, tf.cast(h * wd * c, tf.float32), tf.cast(c, tf.float32), 1), h - 1
    )
    seeds = tf.random.experimental.stateless_split(seed, 2)
    mask, _, _ = _window(n, h, wd, s, seeds[0])
    step = 2.0 * epsilon * _signs([n, 1, 1, c], seeds[1]) * mask
    x_new = tf.clip_by_value(w.x_best + step, w.x - epsilon, w.x + epsilon)
    return tf.clip_by_value(x_new, lo, hi)


def _eta_rectangle(rows, cols):
    """The paper's pseudo-Gaussian block: nested rectangles weighted by ``1 / (k + 1)^2``."""
    rc, cc = rows // 2, cols // 2
    k_max = tf.maximum(rc, cc) + 1
    terms = 1.0 / tf.square(tf.cast(tf.range(k_max), tf.float32) + 1.0)
    tail = tf.concat([tf.cumsum(terms, reverse=True), [0.0]], 0)  # tail[k] = sum_{j >= k}
    dr = tf.abs(tf.range(rows) - rc)[:, None]
    dc = tf.abs(tf.range(cols) - cc)[None, :]
    block = tf.gather(tail, tf.minimum(tf.maximum(dr, dc), k_max))
    return block / tf.maximum(tf.norm(block), 1e-12)


def _eta(s, flip):
    """The L2 square's pattern: a positive block over a negative one, unit norm, maybe turned."""
    top = _eta_rectangle(s // 2, s)
    bottom = -_eta_rectangle(s - s // 2, s)
    block = tf.concat([top, bottom], 0)
    block = block / tf.maximum(tf.norm(block), 1e-12)
    return tf.cond(flip, lambda: tf.transpose(block), lambda: block)


def _l2_norm(t, keep_channels=False):
    axes = [1, 2] if keep_channels else [1, 2, 3]
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=axes, keepdims=True))


def _unit(t):
    return t / (_l2_norm(t) + 1e-12)


def _l2_proposal(w: _SquareWalk, p, epsilon, lo, hi, seed):
    """L2: a new pseudo-Gaussian square in one window, mass moved from a second window."""
    n, h, wd, c = (tf.shape(w.x)[k] for k in range(4))
    s = _square_side(p, tf.cast(h * wd * c, tf.float32), tf.cast(c, tf.float32), 3)
    s = tf.minimum(s + 1 - s % 2, h - 1)  # odd, and a window fits
    seeds = tf.random.experimental.stateless_split(seed, 4)
    delta = w.x_best - w.x
    mask1, rows, cols = _window(n, h, wd, s, seeds[0])
    mask2, _, _ = _window(n, h, wd, s, seeds[1])
    flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
    eta = _eta(s, flip)
    r = tf.clip_by_value(rows, 0, s - 1)[:, :, None]
    q = tf.clip_by_value(cols, 0, s - 1)[:, None, :]
    where = tf.stack([tf.broadcast_to(r, [n, h, wd]), tf.broadcast_to(q, [n, h, wd])], -1)
    placed = tf.gather_nd(eta, where)
    placed = placed[..., None] * mask1 * _signs([n, 1, 1, c], seeds[3])
    norm_window1 = _l2_norm(delta * mask1, keep_channels=True)
    norm_image = _l2_norm(delta)
    norm_windows = _l2_norm(delta * tf.maximum(mask1, mask2))
    new = placed + delta * mask1 / (norm_window1 + 1e-12)
    budget = tf.maximum(epsilon**2 - norm_image**2, 0.0) / tf.cast(c, tf.float32) + norm_windows**2
    new = new / (_l2_norm(new, keep_channels=True) + 1e-12) * tf.sqrt(budget)
    delta = delta * (1.0 - mask2) * (1.0 - mask1) + new * mask1
    return tf.clip_by_value(w.x + _unit(delta) * epsilon, lo, hi)


def _square_start(x, norm, epsilon, lo, hi, seed):
    """Vertical stripes of ``+-epsilon`` (L-infinity), or a grid of pseudo-Gaussian blocks (L2)."""
    n, h, w, c = (tf.shape(x)[k] for k in range(4))
    if norm == "linf":
        return tf.clip_by_value(x + epsilon * _signs([n, 1, w, c], seed), lo, hi)
    s = tf.maximum(h // 5, 1)
    start = (h - 5 * s) // 2
    eta = _eta(s, tf.constant(False))
    r, q = tf.range(h) - start, tf.range(w) - start
    inside_r = tf.logical_and(r >= 0, r < (h // s) * s)
    inside_c = tf.logical_and(q >= 0, q < (w // s) * s)
    block_r, block_c = tf.maximum(r, 0) // s, tf.maximum(q, 0) // s
    pattern = tf.gather(tf.gather(eta, tf.maximum(r, 0) % s), tf.maximum(q, 0) % s, axis=1)
    signs = _signs([n, h // s + 1, w // s + 1, c], seed)
    signs = tf.gather(tf.gather(signs, block_r, axis=1), block_c, axis=2)
    inside = tf.cast(tf.logical_and(inside_r[:, None], inside_c[None, :]), tf.float32)
    delta = (pattern * inside)[None, :, :, None] * signs
    return tf.clip_by_value(x + _unit(delta) * epsilon, lo, hi)


def _square_core(model_ref, norm, x, y, epsilon, num_queries, lo, hi, seed, p_init):
    """The Square attack with early exit; see :func:`square`."""
    model = model_ref()
    n = tf.shape(x)[0]
    x_best = _square_start(x, norm, epsilon, lo, hi, seed)
    logits, margin = _margin(model, x_best, y)
    idx = tf.range(n)
    fooled = misclassified(logits, y)
    state = _SquareState(
        tf.constant(1),
        n,
        record(new_outcome(x), idx, fooled, x_best),
        _SquareWalk(idx, x, y, x_best, margin),
    )
    state = shrink(state, tf.logical_not(fooled))
    propose = _linf_proposal if norm == "linf" else _l2_proposal

    def body(s: _SquareState):
        w = s.walk
        p = _square_fraction(p_init, s.i - 1, num_queries)
        step_seed = tf.random.experimental.stateless_fold_in(seed, s.i)
        x_new = propose(w, p, epsilon, lo, hi, step_seed)
        logits, margin = _margin(model, x_new, w.y)
        fooled = misclassified(logits, w.y)
        better = tf.logical_or(margin < w.margin, fooled)
        walk = w._replace(
            x_best=tf.where(better[:, None, None, None], x_new, w.x_best),
            margin=tf.where(better, margin, w.margin),
        )
        s = _SquareState(
            s.i + 1, s.work + tf.size(w.idx), record(s.out, w.idx, fooled, x_new), walk
        )
        return shrink(s, tf.logical_not(fooled))

    s = loop(lambda s: s.i < num_queries, body, state)
    x_out = tf.tensor_scatter_nd_update(s.out.x_out, s.walk.idx[:, None], s.walk.x_best)
    return s.out._replace(x_out=x_out), s.work


def run_square(model, x, labels, settings: AttackSettings, p_init=0.8, run=0) -> Result:
    """Square on checked inputs; ``settings.num_steps`` is the query budget."""
    fn = compiled(model, ("square", settings.norm), _square_core)
    seed = stateless_seed(settings.seed, run)
    eps, queries, lo, hi = numbers(settings)
    outcome, work = fn(x, labels, eps, queries, lo, hi, seed, tf.constant(p_init, tf.float32))
    return _result(outcome, work)


def square(
    model: Callable,
    x,
    y,
    epsilon: float = 0.3,
    num_queries: int = 5000,
    *,
    p_init: float = 0.8,
    norm: str = "linf",
    clip_value_min: float = 0.0,
    clip_value_max: float = 1.0,
    seed: int | None = None,
) -> tf.Tensor:
    """The Square attack (Andriushchenko et al. 2020): random search with square updates.

    From "Square attack: a query-efficient black-box adversarial attack via random search"
    (ECCV 2020), AutoAttack's gradient-free stage. It reads only the logits, never a gradient,
    so masked gradients do not stop it. L-infinity: start from vertical stripes of
    ``+-epsilon``; at each query, one random square per example (side ``sqrt(p * pixels)``) is set
    to ``+-epsilon`` around its current point, one sign per channel. L2: start from a grid of
    pseudo-Gaussian blocks; each query places a new block in one window and moves the mass of a
    second window into it, the perturbation staying on the sphere of radius ``epsilon``. A
    proposal is kept when it lowers the margin ``z_y - max_{j != y} z_j``. ``p`` follows the
    paper's schedule: ``p_init``, halved after 0.1 %, 0.5 %, 2 %, 5 %, 10 %, 20 %, 40 %, 60 % and
    80 % of the budget. An example leaves the batch as soon as it is misclassified (early exit),
    keeping the input that fooled the model; the others end at their lowest-margin point. The
    loop runs as one compiled ``tf.function`` over the whole batch.

    Args:
        model: Keras model (or callable) returning logits.
        x: Images in ``[clip_value_min, clip_value_max]``, shape (batch, H, W, C), H and W >= 5.
        y: True integer labels, shape (batch,).
        epsilon: Radius of the ball, >= 0.
        num_queries: Query budget per example, >= 1 (5,000 in AutoAttack).
        p_init: Initial fraction of the pixels a square covers, in (0, 1] (0.8 in AutoAttack).
        norm: ``"linf"`` or ``"l2"``.
        clip_value_min: Lower end of the valid input range.
        clip_value_max: Upper end of the valid input range.
        seed: Seed of every random draw; ``None`` draws one from TensorFlow's global generator.

    Returns:
        Adversarial inputs, a float32 tensor shaped like ``x``, in the ball and the clip range.

    Raises:
        ValueError: A bad argument (the message names it and the value received), inputs that
            are not a batch of images of at least 5 x 5 pixels, labels that do not match, or a
            model that does not return logits.
    """
    settings, p_init = square_settings(
        epsilon, num_queries, p_init, norm, clip_value_min, clip_value_max, seed
    )
    x, labels = checked_batch(model, x, y, settings)
    square_images(x)
    if int(x.shape[0]) == 0 or settings.epsilon == 0.0:
        return tf.identity(x)
    return tf.constant(run_square(model, x, labels, settings, p_init).x_out)


def square_settings(epsilon, num_queries, p_init, norm, lo, hi, seed):
    """Square's arguments, checked: ``(settings, p_init)`` (the budget as ``num_steps``)."""
    num_queries = _checks.integer("num_queries", num_queries, minimum=1)
    settings = AttackSettings(
        epsilon, num_queries, None, norm, clip_value_min=lo, clip_value_max=hi, seed=seed
    )
    p_init = _checks.number("p_init", p_init, positive=True, maximum=1.0)
    return settings, p_init


def square_images(x) -> None:
    """Square moves squares of pixels: ``x`` must be images (batch, H, W, C) of at least 5 x 5."""
    shape = tuple(x.shape)
    if len(shape) != 4 or min(shape[1:3]) < 5:
        raise ValueError(
            "x must be a batch of images of at least 5 x 5 pixels, shape (batch, H, W, C), for "
            f"the Square attack. Received: x with shape {shape}"
        )


# ---------------------------------------------------------------------------------------------
# The protocol: each attack on the survivors of the previous one
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RobustnessReport:
    """The result of :func:`evaluate_robustness`.

    Attributes:
        robust: One bool per example: classified correctly and not broken by any stage.
        x_adv: Per-example worst case: the input that broke the example, or for a robust one
            the best point of the last stage that attacked it (``x`` if none did).
        broken_by: Per example, the stage that broke it (``"clean"`` for a clean error), or
            ``""`` for a robust example.
        table: A pandas DataFrame, one row per stage (``clean``, each attack, ``final``): the
            accuracy after the stage, the examples it broke, its time in seconds, the model
            passes per attacked example, and ``zero_gradients``, the attacked examples on which
            the stage saw an input gradient that was all zero or not finite (gradient masking:
            a gradient attack cannot move such an example; trust the gradient-free stage).
        zero_gradient: One bool per example: some gradient stage saw an all-zero or non-finite
            input gradient on it.
    """

    robust: np.ndarray
    x_adv: np.ndarray
    broken_by: np.ndarray
    table: object
    zero_gradient: np.ndarray

    @property
    def accuracy(self) -> float:
        """The final robust accuracy."""
        return float(self.robust.mean())


class _Stage(NamedTuple):
    """One stage of the protocol: its name in the table, the attack and its loss and target."""

    name: str
    attack: str  # "apgd", "fab" or "square"
    loss: str = "ce"
    rank: int = 2  # the target: the class the clean input ranks ``rank``
    eot: int = 1


def _protocol_stages(version, target_classes, classes, eot) -> list[_Stage]:
    """The stages of each version (the targeted ones need at least 3 classes)."""
    ranks = range(2, min(target_classes, classes - 1) + 2) if classes >= 3 else range(0)
    if version == "rand":
        stages = [_Stage("apgd-ce", "apgd", eot=eot)]
        return stages + ([_Stage("apgd-dlr", "apgd", "dlr", eot=eot)] if classes >= 3 else [])
    stages = [_Stage("apgd-ce", "apgd")]
    stages += [_Stage(f"apgd-t (target {r - 1})", "apgd", "dlr_targeted", r) for r in ranks]
    if version == "standard":
        stages += [_Stage(f"fab-t (target {r - 1})", "fab", rank=r) for r in ranks]
        stages.append(_Stage("square", "square"))
    return stages


@dataclasses.dataclass
class _Protocol:
    """The running state of :func:`evaluate_robustness`: the survivors, worst inputs and table."""

    model: Callable
    x: np.ndarray
    labels: np.ndarray
    settings: dict  # attack -> its AttackSettings (APGD and FAB steps, Square's queries)
    batch_size: int
    robust: np.ndarray | None = None
    x_adv: np.ndarray | None = None
    broken_by: np.ndarray | None = None
    zero_gradient: np.ndarray | None = None
    rows: list = dataclasses.field(default_factory=list)

    def _add_row(self, stage: str, broken: int, seconds: float, passes, zero) -> None:
        self.rows.append(
            {
                "stage": stage,
                "accuracy": self.robust.mean(),
                "broken": broken,
                "seconds": seconds,
                "passes_per_example": passes,
                "zero_gradients": zero,
            }
        )

    def clean_stage(self, verbose: int) -> None:
        """The model's own errors: the examples every attack stage starts from."""
        start = time.perf_counter()
        logits = [
            np.asarray(_checks.finite_logits(self.model(tf.constant(xb), training=False)))
            for xb in (
                self.x[i : i + self.batch_size] for i in range(0, len(self.x), self.batch_size)
            )
        ]
        self.robust = np.concatenate(logits).argmax(-1) == self.labels
        self.x_adv = self.x.copy()
        self.broken_by = np.where(self.robust, "", "clean").astype(object)
        self.zero_gradient = np.zeros(len(self.labels), bool)
        seconds = time.perf_counter() - start
        self._add_row("clean", int((~self.robust).sum()), seconds, 0.0, 0)
        if verbose:
            print(f"clean: accuracy {self.robust.mean():.4f} ({len(self.labels)} examples)")

    def _run(self, stage: _Stage, x, labels, run: int) -> Result:
        settings = self.settings[stage.attack]
        if stage.attack == "apgd":
            return run_apgd(
                self.model, x, labels, settings, stage.loss, stage.rank, 0.75, run, stage.eot
            )
        if stage.attack == "fab":
            return run_fab(self.model, x, labels, settings, stage.rank, run)
        return run_square(self.model, x, labels, settings, 0.8, run)

    def attack_stage(self, stage: _Stage, run: int, verbose: int) -> None:
        """One attack on the examples still standing, a batch at a time."""
        start, work, index = time.perf_counter(), 0, np.flatnonzero(self.robust)
        broken_count, zero = 0, np.zeros(len(self.labels), bool)
        for begin in range(0, len(index), self.batch_size):
            chunk = index[begin : begin + self.batch_size]
            x, labels = tf.constant(self.x[chunk]), tf.constant(self.labels[chunk])
            result = self._run(stage, x, labels, run)
            self.x_adv[chunk] = result.x_out
            self.robust[chunk[result.broken]] = False
            self.broken_by[chunk[result.broken]] = stage.name
            zero[chunk[result.masked]] = True
            work, broken_count = work + result.work, broken_count + int(result.broken.sum())
        self.zero_gradient |= zero
        seconds = time.perf_counter() - start
        passes = work / max(len(index), 1)
        self._add_row(stage.name, broken_count, seconds, passes, int(zero.sum()))
        if verbose:
            accuracy = self.robust.mean()
            print(f"{stage.name}: accuracy {accuracy:.4f} (broke {broken_count}, {seconds:.1f} s)")
            if zero.any():
                print(
                    f"  warning: {int(zero.sum())} of {len(index)} examples had an all-zero or "
                    "non-finite input gradient (gradient masking?): trust the square stage"
                )

    def report(self) -> RobustnessReport:
        """The report, its table ending with a ``final`` row (the total time)."""
        import pandas as pd

        total = sum(row["seconds"] for row in self.rows)
        zero = int(self.zero_gradient.sum())
        self._add_row("final", int((~self.robust).sum()), total, np.nan, zero)
        table = pd.DataFrame(self.rows).set_index("stage")
        broken_by = self.broken_by.astype(str)
        return RobustnessReport(self.robust, self.x_adv, broken_by, table, self.zero_gradient)


def evaluate_robustness(
    model: Callable,
    x,
    y,
    epsilon: float,
    norm: str = "linf",
    *,
    version: str = "standard",
    num_steps: int = 100,
    target_classes: int = 9,
    square_queries: int = 5000,
    eot: int = 20,
    batch_size: int = 500,
    clip_value_min: float = 0.0,
    clip_value_max: float = 1.0,
    seed: int = 0,
    verbose: int = 1,
) -> RobustnessReport:
    """Robust accuracy under AutoAttack: each attack runs on the survivors of the previous one.

    The protocol of Croce & Hein (2020, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks"). ``version="standard"``: APGD-CE
    (:func:`apgd`, cross-entropy), APGD-T (targeted DLR against each of the ``target_classes``
    highest-scored other classes in turn), FAB-T (:func:`fab`, the same targets) and Square
    (:func:`square`, ``square_queries`` queries), the gradient-free stage that a model with
    masked gradients cannot fool. ``"lite"``: APGD-CE and APGD-T only (faster; an upper bound
    on the standard number). ``"rand"``, for randomised defences: APGD-CE and APGD-DLR, each
    step following the mean gradient of ``eot`` forward passes (expectation over
    transformation). Every iterate counts (an example is broken by any misclassified iterate),
    broken examples leave the batch, and each run gets its own seed. Every gradient stage
    records the examples whose input gradient was all zero or not finite, a sign of gradient
    masking (the table's ``zero_gradients`` column, ``report.zero_gradient``).

    Args:
        model: Keras model returning logits.
        x: Inputs, shape (n, ...), in ``[clip_value_min, clip_value_max]`` (images, shape
            (n, H, W, C) with H, W >= 5, for the standard version's Square stage).
        y: True integer labels, shape (n,).
        epsilon: Radius of the ball, >= 0.
        norm: ``"linf"`` or ``"l2"``.
        version: One of :data:`VERSIONS`.
        num_steps: APGD and FAB iterations per run (100 in AutoAttack).
        target_classes: Target classes of the targeted stages (9 in AutoAttack; at most the
            number of classes minus one).
        square_queries: Square's query budget (5,000 in AutoAttack).
        eot: Forward passes per gradient in the rand version (20 in AutoAttack).
        batch_size: Examples attacked at once.
        clip_value_min: Lower end of the valid input range.
        clip_value_max: Upper end of the valid input range.
        seed: Seed of the random starts (each run gets its own).
        verbose: 1 prints one line per stage (and a warning on zero gradients), 0 is silent.

    Returns:
        A :class:`RobustnessReport` (``report.accuracy``, ``report.table``...).

    Raises:
        ValueError: A bad argument (the message names it), labels that do not match ``x``, or a
            model that does not return logits.
    """
    version = _checks.one_of("version", version, VERSIONS)
    target_classes = _checks.integer("target_classes", target_classes, minimum=0)
    batch_size = _checks.batch_size(batch_size)
    verbose = _checks.one_of("verbose", verbose, (0, 1))
    eot = _checks.integer("eot", eot, minimum=1)
    lo_hi = (clip_value_min, clip_value_max)
    settings = _protocol_settings(epsilon, num_steps, square_queries, norm, lo_hi, seed)
    x_all, labels = checked_batch(model, x, y, settings["apgd"])
    if len(labels) == 0:
        raise ValueError("x must hold at least one example. Received: 0 examples")
    if version == "standard":
        square_images(x_all)
    classes = int(model(x_all[:1], training=False).shape[-1])
    protocol = _Protocol(model, np.asarray(x_all), np.asarray(labels), settings, batch_size)
    protocol.clean_stage(verbose)
    for run, stage in enumerate(_protocol_stages(version, target_classes, classes, eot)):
        protocol.attack_stage(stage, run, verbose)
    return protocol.report()


def _protocol_settings(epsilon, num_steps, square_queries, norm, lo_hi, seed) -> dict:
    """The settings of each attack of :func:`evaluate_robustness`, checked."""
    seed = _checks.integer("seed", seed, minimum=0)
    square_queries = _checks.integer("square_queries", square_queries, minimum=1)
    common = dict(norm=norm, clip_value_min=lo_hi[0], clip_value_max=lo_hi[1], seed=seed)
    apgd_settings = AttackSettings(epsilon, num_steps, None, **common)
    return {
        "apgd": apgd_settings,
        "fab": apgd_settings,
        "square": AttackSettings(epsilon, square_queries, None, **common),
    }
