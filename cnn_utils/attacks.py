"""Adversarial attacks on logits classifiers: FGSM, PGD and MIM, in the L-infinity and L2 balls.

One job: the lecture's attacks, in its order. First the two primitives, :func:`steepest_step`
(the best step of a given length under a norm) and :func:`project` (back onto the ball), and
the random start; then the loop they make, :func:`perturb`; then the attacks, each a call of
that loop: FGSM (Goodfellow et al. 2015, "Explaining and harnessing adversarial examples"),
PGD (Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks") and
MIM (Dong et al. 2018, "Boosting adversarial attacks with momentum"), and the noise control.
Models return logits; the loss is the cross-entropy in float32.

The plumbing is at the bottom: the arguments are checked once (``_attack_settings``), and the
loop runs as one compiled ``tf.function`` per model and switch, with every number passed as a
tensor, so nothing retraces between calls. Evaluating a model under attack is
:mod:`cnn_utils.robustness`.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable

import tensorflow as tf

from cnn_utils import _checks
from cnn_utils._attack_settings import NORMS, TINY, AttackSettings

__all__ = [
    "ATTACKS",
    "fgsm",
    "loss_gradient_fn",
    "mim",
    "model_cache",
    "perturb",
    "pgd",
    "project",
    "random_in_ball",
    "random_sign_noise",
    "run_attack",
    "steepest_step",
]

# --- The two primitives and a random start (tensors in, tensors out) -------------------------


def _per_example_norm(t: tf.Tensor, ord_: str) -> tf.Tensor:
    """L1 or L2 norm of each example, shaped (batch, 1, ..., 1), floored at :data:`TINY`."""
    axes = tf.range(1, tf.rank(t))
    if ord_ == "l1":
        norm = tf.reduce_sum(tf.abs(t), axis=axes, keepdims=True)
    else:
        norm = tf.sqrt(tf.reduce_sum(tf.square(t), axis=axes, keepdims=True))
    return tf.maximum(norm, TINY)


def steepest_step(grad: tf.Tensor, norm: str = "linf") -> tf.Tensor:
    """Unit-norm steepest ascent of a linear function: ``argmax_{||h|| <= 1} grad^T h``.

    ``sign(grad)`` for ``norm="linf"`` (the FGSM step), ``grad / ||grad||_2`` for ``"l2"``, per
    example (axis 0 is the batch); a zero gradient gives a zero step, never NaN.

    Raises:
        ValueError: Unknown ``norm`` (a Python string: it chooses the graph).
    """
    if norm == "linf":
        return tf.sign(grad)
    if norm == "l2":
        return grad / _per_example_norm(grad, "l2")
    raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")


def project(x_adv: tf.Tensor, x: tf.Tensor, epsilon, norm: str = "linf") -> tf.Tensor:
    """Project ``x_adv`` onto the ball ``B_eps(x) = {x' : ||x' - x|| <= epsilon}``, per example.

    L-infinity clips each coordinate of ``x_adv - x`` to ``[-epsilon, epsilon]``; L2 scales it
    by ``min(1, epsilon / ||x_adv - x||_2)``. Points inside stay put; clipping the result to a
    box that contains ``x`` (the pixel range) keeps it in the ball.

    Raises:
        ValueError: Unknown ``norm``.
    """
    epsilon, delta = tf.cast(epsilon, x.dtype), x_adv - x
    if norm == "linf":
        return x + tf.clip_by_value(delta, -epsilon, epsilon)
    if norm == "l2":
        return x + delta * tf.minimum(1.0, epsilon / _per_example_norm(delta, "l2"))
    raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")


def random_in_ball(x: tf.Tensor, epsilon, norm: str = "linf", seed=None) -> tf.Tensor:
    """A perturbation ``delta`` uniform in the ball of radius ``epsilon``, shaped like ``x``.

    L-infinity: each coordinate from ``Uniform(-epsilon, epsilon)`` (Madry et al. 2018); L2: a
    Gaussian direction at radius ``epsilon * U^(1/d)``. ``seed`` is ``None`` (stateful ops,
    following the global seed), a ``tf.random.Generator``, or a shape-(2,) integer tensor
    (stateless: same seed, same draw).

    Raises:
        ValueError: Unknown ``norm``.
    """
    epsilon, shape = tf.cast(epsilon, tf.float32), tf.shape(x)
    if norm == "linf":
        return (2.0 * _draw(False, shape, seed) - 1.0) * epsilon
    if norm != "l2":
        raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")
    seed_dir = seed_radius = seed
    if seed is not None and not isinstance(seed, tf.random.Generator):
        seed_dir, seed_radius = tf.unstack(
            tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
        )
    direction = _draw(True, shape, seed_dir)
    direction /= _per_example_norm(direction, "l2")
    dims = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
    radius = _draw(False, tf.concat([shape[:1], tf.ones_like(shape[1:])], 0), seed_radius)
    return direction * radius ** (1.0 / dims) * epsilon


# --- The loop of every attack ----------------------------------------------------------------


def perturb(
    model: Callable,
    x: tf.Tensor,
    y: tf.Tensor | None,
    epsilon,
    num_steps,
    step_size,
    *,
    norm: str = "linf",
    targeted: bool = False,
    random_start: bool = False,
    decay=None,
    clip_value_min=0.0,
    clip_value_max=1.0,
    seed=None,
) -> tf.Tensor:
    """The loop of FGSM, PGD and MIM: TensorFlow ops only, no argument checks.

    From ``x`` (plus a random point of the ball if ``random_start``), ``num_steps`` times::

        g  = grad_x' sum_i CE(logits(x'_i), y_i)        (minus it if targeted)
        v  = decay * v + g / ||g||_1 (per example)      (MIM only: decay is not None)
        x' = clip(project(x' + step_size * steepest_step(v or g), x, epsilon), lo, hi)

    FGSM is one step of ``epsilon``; FGSM-RS (Wong et al. 2020, "Fast is better than free") adds
    a random start and a step of ``1.25 * epsilon``. Use it inside a ``tf.function`` (a Keras
    ``train_step``, also under ``MirroredStrategy``) or through the checked :func:`fgsm`,
    :func:`pgd`, :func:`mim`. It makes no variables, calls the model with ``training=False``,
    and returns a constant for any outer tape (NaN after a NaN gradient). Unchecked: pass
    ``epsilon >= 0``, ``step_size > 0``, ``num_steps >= 1``, labels in range, ``x`` in range.

    Args:
        model: ``model(x, training=False)`` returns logits (any float dtype).
        x: Clean inputs, shape (batch, ...).
        y: Integer labels (the targets if ``targeted``); ``None`` attacks the prediction on
            the clean ``x`` (no label leaking).
        epsilon: Radius of the ball (this and the other numbers may be tensors).
        num_steps: Number of gradient steps.
        step_size: Step length in the norm of the ball.
        norm: ``"linf"`` or ``"l2"`` (Python values choose the graph: also the two flags).
        targeted: Descend the loss of ``y`` instead of ascending it.
        random_start: Start from a uniform random point of the ball.
        decay: ``None`` (FGSM, PGD) or MIM's momentum decay factor.
        clip_value_min: Lower end of the valid input range.
        clip_value_max: Upper end of the valid input range.
        seed: As in :func:`random_in_ball` (in a ``train_step``: a Generator made once).

    Returns:
        Adversarial inputs, float32, shaped like ``x``, in the ball and the clip range.
    """
    x = tf.cast(x, tf.float32)
    epsilon, step_size = tf.cast(epsilon, tf.float32), tf.cast(step_size, tf.float32)
    lo, hi = tf.cast(clip_value_min, tf.float32), tf.cast(clip_value_max, tf.float32)
    if y is None:
        labels = tf.argmax(_logits(model, x), axis=-1, output_type=tf.int32)
    else:
        labels = tf.reshape(tf.cast(y, tf.int32), [-1])
    labels = tf.stop_gradient(labels)
    momentum = decay is not None
    decay = tf.cast(decay if momentum else 0.0, tf.float32)
    x_adv = x
    if random_start:
        x_adv = tf.clip_by_value(x + random_in_ball(x, epsilon, norm, seed), lo, hi)
    gradient = loss_gradient_fn(model)

    def body(i, x_adv, velocity):
        grad = _nan_unless_finite(gradient(x_adv, labels))
        if targeted:
            grad = -grad
        if momentum:
            velocity = decay * velocity + grad / _per_example_norm(grad, "l1")
        x_new = x_adv + step_size * steepest_step(velocity if momentum else grad, norm)
        return i + 1, tf.clip_by_value(project(x_new, x, epsilon, norm), lo, hi), velocity

    _, x_adv, _ = tf.while_loop(
        lambda i, *_: i < tf.cast(num_steps, tf.int32),
        body,
        (tf.constant(0, tf.int32), x_adv, tf.zeros_like(x)),
    )
    return tf.stop_gradient(x_adv)


# --- The attacks -------------------------------------------------------------------------------


def fgsm(
    model: Callable,
    x,
    y,
    epsilon: float = 0.3,
    *,
    targeted: bool = False,
    soft_label: bool = False,
    norm: str = "linf",
    clip_value_min: float = 0.0,
    clip_value_max: float = 1.0,
) -> tf.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of ``epsilon``.

    ``clip(x + epsilon * sign(grad_x l(f(x), y)))`` (``g / ||g||_2`` for L2; down the loss of
    the targets if ``targeted``). Arguments, result and errors as in :func:`pgd`.
    """
    settings = AttackSettings(
        epsilon=epsilon,
        norm=norm,
        targeted=targeted,
        soft_label=soft_label,
        clip_value_min=clip_value_min,
        clip_value_max=clip_value_max,
    )
    return run_attack(model, x, y, settings)


def pgd(
    model: Callable,
    x,
    y,
    epsilon: float = 0.3,
    num_steps: int = 20,
    step_size: float = 0.01,
    *,
    targeted: bool = False,
    soft_label: bool = False,
    norm: str = "linf",
    clip_value_min: float = 0.0,
    clip_value_max: float = 1.0,
    random_start: bool = True,
    seed: int | None = None,
) -> tf.Tensor:
    """Projected gradient descent (Madry et al. 2018).

    ``x_0 = x + Uniform(B_eps)`` (if ``random_start``), then ``num_steps`` times
    ``x_{t+1} = clip(Proj_{B_eps(x)}(x_t + step_size * steepest_step(grad)))``. With
    ``num_steps * step_size < epsilon`` it cannot reach the surface of the ball; this course
    uses the rule of thumb ``2.5 * epsilon / num_steps`` (Madry et al.'s own MNIST setting is
    40 steps of 0.01 at epsilon 0.3).

    Args:
        model: Keras model (or callable) returning logits (no softmax).
        x: Float inputs in ``[clip_value_min, clip_value_max]``, shape (batch, ...).
        y: Integer labels of any integer dtype, shape (batch,) or (batch, 1): the true labels,
            or the targets if ``targeted``; ignored (may be ``None``) with ``soft_label``.
        epsilon: Radius of the ball, >= 0 (0 returns ``x``).
        num_steps: Number of steps, >= 1.
        step_size: Length of each step in the ball's norm, > 0.
        targeted: Move toward the labels ``y``.
        soft_label: Attack the model's prediction on the clean ``x`` (computed once).
        norm: ``"linf"`` or ``"l2"``.
        clip_value_min: Lower end of the valid input range.
        clip_value_max: Upper end of the valid input range.
        random_start: Start from a uniform random point of the ball.
        seed: Seed of the random start (same seed, same result); ``None`` draws one from
            TensorFlow's global generator (reproducible after ``config.set_seed``).

    Returns:
        Adversarial inputs, a float32 tensor shaped like ``x``.

    Raises:
        ValueError: A bad argument (the message names it and the value received), labels
            that are not one integer per example in range, or a model ending in a softmax.
    """
    settings = AttackSettings(
        epsilon=epsilon,
        num_steps=num_steps,
        step_size=step_size,
        norm=norm,
        targeted=targeted,
        soft_label=soft_label,
        random_start=random_start,
        clip_value_min=clip_value_min,
        clip_value_max=clip_value_max,
        seed=seed,
    )
    return run_attack(model, x, y, settings)


def mim(
    model: Callable,
    x,
    y,
    epsilon: float = 0.3,
    num_steps: int = 20,
    step_size: float = 0.01,
    decay: float = 1.0,
    *,
    targeted: bool = False,
    soft_label: bool = False,
    norm: str = "linf",
    clip_value_min: float = 0.0,
    clip_value_max: float = 1.0,
    random_start: bool = False,
    seed: int | None = None,
) -> tf.Tensor:
    """Momentum iterative method (Dong et al. 2018).

    ``v_{t+1} = decay * v_t + g_t / ||g_t||_1`` per example, then
    ``x_{t+1} = clip(Proj_{B_eps(x)}(x_t + step_size * steepest_step(v_{t+1})))``: the
    accumulated direction steadies the steps and transfers better to other models. No random
    start by default, as in the paper. Arguments, return value and errors as in :func:`pgd`,
    plus ``decay`` (gamma >= 0; 0 gives PGD without random start).
    """
    settings = AttackSettings(
        epsilon=epsilon,
        num_steps=num_steps,
        step_size=step_size,
        decay=decay,
        norm=norm,
        targeted=targeted,
        soft_label=soft_label,
        random_start=random_start,
        clip_value_min=clip_value_min,
        clip_value_max=clip_value_max,
        seed=seed,
    )
    return run_attack(model, x, y, settings)


def random_sign_noise(
    model: Callable | None,
    x,
    y=None,
    epsilon: float = 0.3,
    *,
    norm: str = "linf",
    seed: int = 0,
    clip_value_min: float = 0.0,
    clip_value_max: float = 1.0,
    **unused,
) -> tf.Tensor:
    """The control for every attack: ``clip(x + epsilon * s)`` with random signs ``s = +-1``.

    Noise of the attack's own size but in a random direction: with ``norm="linf"`` each pixel
    moves by exactly ``epsilon`` (a corner of the L-infinity ball, as FGSM's step); with
    ``norm="l2"`` by ``epsilon / sqrt(d)`` (``d`` values per example), so the noise has L2 norm
    ``epsilon`` before clipping, as an L2 attack's step. An attack's effect counts only where it
    exceeds this noise's. Same call as the attacks (``model`` and ``y`` are not used, and
    further keyword arguments are ignored), so every table that takes an attack takes it.

    Args:
        model: Not used (any value, ``None`` included).
        x: Float inputs in ``[clip_value_min, clip_value_max]``, shape (batch, ...).
        y: Not used.
        epsilon: Size of the noise, >= 0 (per pixel for L-infinity, per example for L2).
        norm: ``"linf"`` or ``"l2"``: the ball whose size the noise has.
        seed: Seed of the signs, >= 0 (same seed, same noise).
        clip_value_min: Lower end of the valid input range.
        clip_value_max: Upper end of the valid input range.
        **unused: Ignored (the attacks' other arguments, e.g. ``num_steps``).

    Returns:
        The noisy inputs, a float32 tensor shaped like ``x``.

    Raises:
        ValueError: A negative or non-finite ``epsilon``, an unknown norm, a bad seed or clip
            range, or ``x`` that is not finite or lies outside the clip range.
    """
    del model, y, unused
    epsilon = _checks.number("epsilon", epsilon, minimum=0.0)
    norm = _checks.one_of("norm", norm, NORMS)
    seed = _checks.integer("seed", seed, minimum=0)
    lo, hi = _checks.clip_range(clip_value_min, clip_value_max)
    x = _checks.images(x, value_range=(lo, hi))
    signs = tf.where(tf.random.stateless_uniform(tf.shape(x), seed=[seed, 0]) < 0.5, -1.0, 1.0)
    if norm == "l2" and x.shape[0]:
        signs /= tf.sqrt(tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32))
    return tf.clip_by_value(x + epsilon * signs, lo, hi)


ATTACKS: dict[str, Callable] = {"fgsm": fgsm, "pgd": pgd, "mim": mim}
"""The attacks by name: the package's one table (:mod:`cnn_utils.robustness` resolves here)."""


# --- Plumbing: random draws, the gradient, one compiled copy of the loop per model ----------


def _draw(normal: bool, shape, seed) -> tf.Tensor:
    """Standard normal or Uniform[0, 1) noise: stateful op, Generator, or stateless seed."""
    if isinstance(seed, tf.random.Generator):
        return seed.normal(shape) if normal else seed.uniform(shape)
    if seed is None:
        return tf.random.normal(shape) if normal else tf.random.uniform(shape)
    return (tf.random.stateless_normal if normal else tf.random.stateless_uniform)(shape, seed)


def _nan_unless_finite(grad: tf.Tensor) -> tf.Tensor:
    """``grad`` with every NaN or Inf entry made NaN, so a bad gradient shows in the result."""
    return tf.where(tf.math.is_finite(grad), grad, tf.constant(float("nan"), grad.dtype))


def _logits(model, x: tf.Tensor) -> tf.Tensor:
    return tf.cast(model(x, training=False), tf.float32)


# Compiled functions per model, weakly keyed by the model (which they reach through a weak
# reference). The gradient is marked "_noinline" so that TensorFlow runs it as a function of its
# own instead of inlining it into the body of the tf.while_loop: inlined, every step was about
# 1.5x slower on CPU, a gap that vanishes with TF_ENABLE_ONEDNN_OPTS=0, so a while-loop body
# apparently misses oneDNN's graph rewrites that a function of its own gets (benchmarks/README).
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_COMPILED_STRONG: dict = {}  # callables that cannot be weakly referenced


def model_cache(model) -> tuple[dict, Callable]:
    """The dict of ``model``'s compiled functions and a callable returning the model (weakly)."""
    try:
        return _COMPILED.setdefault(model, {}), weakref.ref(model)
    except TypeError:
        return _COMPILED_STRONG.setdefault(id(model), {}), lambda: model


def loss_gradient_fn(model: Callable) -> Callable:
    """The compiled ``grad(x, labels) = d/dx sum_i CE(logits(x_i), labels_i)`` for ``model``.

    Float32, zeros when the logits do not depend on ``x``, ``training=False``; made once per
    model, callable eagerly or inside another ``tf.function`` (not inlined: see the source).
    """
    cache, ref = model_cache(model)
    if "gradient" not in cache:
        # A partial, not a closure: TensorFlow counts retracing per code object, and one
        # closure per model would share the count (and warn about "retracing") across models.
        cache["gradient"] = tf.function(
            functools.partial(_loss_gradient, ref),
            reduce_retracing=True,
            experimental_attributes={"_noinline": True},
        )
    return cache["gradient"]


def _loss_gradient(model_ref, x, labels):
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = _logits(model_ref(), x)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    grad = tape.gradient(loss, x)
    return tf.zeros_like(x) if grad is None else tf.cast(grad, tf.float32)


def _compiled_core(model_ref, switches, x, y, numbers):
    norm, targeted, random_start, soft_label, momentum = switches
    numbers = dict(numbers, decay=numbers["decay"] if momentum else None)
    y = None if soft_label else y
    return perturb(
        model_ref(), x, y, norm=norm, targeted=targeted, random_start=random_start, **numbers
    )


def run_attack(model: Callable, x, y, settings: AttackSettings) -> tf.Tensor:
    """Check ``model``, ``x`` and ``y`` (``ValueError``), then run ``settings``' compiled core."""
    x = _checks.images(x, value_range=(settings.clip_value_min, settings.clip_value_max))
    batch = int(x.shape[0])
    if y is None and not settings.soft_label:
        raise ValueError(
            "y must hold the labels (the target labels when targeted=True). Received: y=None; "
            "pass soft_label=True to attack the model's own predictions."
        )
    labels = tf.zeros([batch], tf.int32) if y is None else _checks.labels(y, batch)
    if batch == 0:
        return x
    classes = _checks.logits_model(model, x)
    if not settings.soft_label:
        labels = _checks.labels(labels, batch, classes)
    if settings.epsilon == 0.0:
        return tf.identity(x)
    switches = (settings.norm, settings.targeted, settings.random_start, settings.soft_label)
    switches += (settings.decay is not None,)
    cache, ref = model_cache(model)
    if switches not in cache:  # one per model and switch; numbers are tensors: no retracing
        core = functools.partial(_compiled_core, ref, switches)
        cache[switches] = tf.function(core, reduce_retracing=True)
    x_adv = cache[switches](x, labels, settings.numbers())
    if not bool(tf.reduce_all(tf.math.is_finite(x_adv))):
        raise _non_finite_error(model, x)
    return x_adv


def _non_finite_error(model, x) -> ValueError:
    """The error for an attack whose gradient was NaN or Inf, naming the likely cause."""
    policy = getattr(getattr(model, "dtype_policy", None), "compute_dtype", "float32")
    if policy in ("float16", "bfloat16"):
        return ValueError(
            f"The loss or its input gradient is NaN or Inf under a {policy} policy. float16 "
            "overflow: run the attack under a float32 policy "
            "(keras.mixed_precision.set_global_policy('float32') before building or loading "
            "the model)."
        )
    if not bool(tf.reduce_all(tf.math.is_finite(_logits(model, x)))):
        return ValueError(
            "model returns non-finite logits (NaN or Inf) on x, so no attack is possible: its "
            "weights may hold NaN (a diverged training); check np.isfinite(model(x))."
        )
    return ValueError(
        "The input gradient of the loss is NaN or Inf although the logits are finite (a "
        "layer whose derivative overflows); the attack would return NaN images."
    )
