"""Adversarial attacks on logits classifiers: FGSM, PGD and MIM, for the L-infinity and L2 balls.

Every attack is a few lines on top of two primitives:

* :func:`steepest_step`: the unit-norm direction that increases a linear function fastest
  within the ball (``sign(g)`` for L-infinity, ``g / ||g||_2`` for L2);
* :func:`project`: the projection of a point onto the ball ``B_eps(x)``.

and one graph-friendly core, :func:`perturb`, that runs the whole loop (optional random start,
optional momentum) with ``tf.while_loop``: tensors in, tensor out, no Python-side checks, so it
can be traced inside another ``tf.function`` such as a ``train_step`` (adversarial training,
:mod:`cnn_utils.defense`). The public attacks :func:`fgsm`, :func:`pgd` and :func:`mim` check
their arguments at the door and call one compiled copy of the core, with epsilon, step size,
number of steps, decay, clip range and seed passed as tensors so that calls with the same
shapes never retrace.

Methods: FGSM (Goodfellow et al. 2015, "Explaining and harnessing adversarial examples"), PGD
(Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks"), MIM
(Dong et al. 2018, "Boosting adversarial attacks with momentum"); FGSM with a random start is
Wong et al. 2020 ("Fast is better than free").

Models return logits (no softmax). The loss is the cross-entropy of the logits, computed in
float32 even when the model runs under a float16 policy.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

NORMS = ("linf", "l2")
"""The norms of the epsilon-ball that the attacks support."""

TINY = 1e-12
"""Floor of every norm the attacks divide by (float32), so a zero gradient gives a zero step."""

_ATTACK_NAMES = ("fgsm", "pgd", "mim")

# ---------------------------------------------------------------------------------------------
# Primitives (graph-friendly: tensors in, tensors out)
# ---------------------------------------------------------------------------------------------


def _per_example_norm(t: tf.Tensor, ord_: str) -> tf.Tensor:
    """Norm of each example of a batch, shaped (batch, 1, ..., 1) to broadcast against ``t``."""
    axes = tf.range(1, tf.rank(t))
    if ord_ == "l1":
        norm = tf.reduce_sum(tf.abs(t), axis=axes, keepdims=True)
    else:  # l2
        norm = tf.sqrt(tf.reduce_sum(tf.square(t), axis=axes, keepdims=True))
    return tf.maximum(norm, TINY)


def steepest_step(grad: tf.Tensor, norm: str = "linf") -> tf.Tensor:
    """Steepest-ascent direction of unit norm for a linear function with gradient ``grad``.

    Maximising ``g^T h`` subject to ``||h|| <= 1`` gives ``h = sign(g)`` for the L-infinity
    norm (the FGSM step, Goodfellow et al. 2015) and ``h = g / ||g||_2`` for L2. Computed per
    example (axis 0 is the batch). A zero gradient gives a zero step (the L2 norm is floored at
    :data:`TINY`), never NaN.

    Args:
        grad: Gradient tensor, shape (batch, ...), float32.
        norm: ``"linf"`` or ``"l2"`` (a Python string: it chooses the graph).

    Returns:
        The step direction, shaped like ``grad``.

    Raises:
        ValueError: Unknown ``norm``.
    """
    if norm == "linf":
        return tf.sign(grad)
    if norm == "l2":
        return grad / _per_example_norm(grad, "l2")
    raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")


def project(x_adv: tf.Tensor, x: tf.Tensor, epsilon, norm: str = "linf") -> tf.Tensor:
    """Project ``x_adv`` onto the ball ``B_eps(x) = {x' : ||x' - x|| <= epsilon}``, per example.

    L-infinity: clip every coordinate of ``x_adv - x`` to ``[-epsilon, epsilon]``. L2: scale
    ``x_adv - x`` by ``min(1, epsilon / ||x_adv - x||_2)``. Points inside the ball are left
    unchanged; with ``epsilon = 0`` the result is ``x``. Clipping the result to a box that
    contains ``x`` (the valid pixel range) keeps it in the ball.

    Args:
        x_adv: Points to project, shape (batch, ...), float32.
        x: Centres of the balls, same shape.
        epsilon: Radius, a non-negative scalar (float or tensor).
        norm: ``"linf"`` or ``"l2"``.

    Returns:
        The projected points, shaped like ``x``.

    Raises:
        ValueError: Unknown ``norm``.
    """
    epsilon = tf.cast(epsilon, x.dtype)
    delta = x_adv - x
    if norm == "linf":
        delta = tf.clip_by_value(delta, -epsilon, epsilon)
    elif norm == "l2":
        delta = delta * tf.minimum(1.0, epsilon / _per_example_norm(delta, "l2"))
    else:
        raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")
    return x + delta


def _uniform(shape, seed, minval=0.0, maxval=1.0) -> tf.Tensor:
    if seed is None:
        return tf.random.uniform(shape, minval, maxval, dtype=tf.float32)
    if isinstance(seed, tf.random.Generator):
        return seed.uniform(shape, minval, maxval, dtype=tf.float32)
    return tf.random.stateless_uniform(shape, seed, minval, maxval, dtype=tf.float32)


def _normal(shape, seed) -> tf.Tensor:
    if seed is None:
        return tf.random.normal(shape, dtype=tf.float32)
    if isinstance(seed, tf.random.Generator):
        return seed.normal(shape, dtype=tf.float32)
    return tf.random.stateless_normal(shape, seed, dtype=tf.float32)


def random_in_ball(x: tf.Tensor, epsilon, norm: str = "linf", seed=None) -> tf.Tensor:
    """Random perturbation drawn uniformly from the ball of radius ``epsilon``, per example.

    L-infinity: every coordinate from ``Uniform(-epsilon, epsilon)`` (Madry et al. 2018). L2:
    a Gaussian direction scaled to radius ``epsilon * U^(1/d)``, uniform in the L2 ball.

    Args:
        x: Tensor whose shape (batch, ...) the perturbation takes, float32.
        epsilon: Radius (scalar float or tensor).
        norm: ``"linf"`` or ``"l2"``.
        seed: ``None`` (TensorFlow's stateful random ops, following the global seed), a
            ``tf.random.Generator``, or a shape-(2,) integer tensor for stateless ops
            (same seed, same draw).

    Returns:
        The perturbation ``delta`` (not ``x + delta``), shaped like ``x``.

    Raises:
        ValueError: Unknown ``norm``.
    """
    epsilon = tf.cast(epsilon, tf.float32)
    shape = tf.shape(x)
    if norm == "linf":
        return _uniform(shape, seed, -1.0, 1.0) * epsilon
    if norm != "l2":
        raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")
    if seed is None or isinstance(seed, tf.random.Generator):
        seed_dir = seed_radius = seed
    else:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
        seed_dir, seed_radius = seeds[0], seeds[1]
    direction = _normal(shape, seed_dir)
    direction = direction / _per_example_norm(direction, "l2")
    dims = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
    batch_shape = tf.concat([shape[:1], tf.ones_like(shape[1:])], axis=0)
    radius = _uniform(batch_shape, seed_radius) ** (1.0 / dims)
    return direction * radius * epsilon


def _logits(model, x: tf.Tensor) -> tf.Tensor:
    return tf.cast(model(x, training=False), tf.float32)


# The gradient of the loss, one compiled function per model that the attack loop calls. It is
# marked "_noinline" so that TensorFlow runs it as a function of its own instead of inlining it
# into the body of the tf.while_loop: inlined, every step was about 1.5x slower on CPU, a gap
# that vanishes with TF_ENABLE_ONEDNN_OPTS=0, so a while-loop body apparently misses oneDNN's
# graph rewrites that a function of its own gets (benchmarks/README.md). Keyed weakly by model.
_GRADIENT_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GRADIENT_FNS_STRONG: dict = {}  # callables that cannot be weakly referenced


def _model_ref(model) -> tuple[dict, Callable]:
    """A per-model cache dict and a function returning the model (weakly held if possible)."""
    try:
        cache = _GRADIENT_FNS.setdefault(model, {})
        return cache, weakref.ref(model)
    except TypeError:
        cache = _GRADIENT_FNS_STRONG.setdefault(id(model), {})
        return cache, lambda: model


def loss_gradient_fn(model: Callable) -> Callable:
    """The compiled gradient of the summed cross-entropy with respect to the input, for ``model``.

    Returns ``grad(x, labels)`` = ``d/dx sum_i CE(logits(x_i), labels_i)`` as float32 (zeros
    when the logits do not depend on ``x``), with the model called with ``training=False`` and
    the loss computed in float32. The function is created once per model and cached; it can be
    called eagerly or from inside another ``tf.function`` (it is not inlined there, see the
    comment in the source). :func:`perturb` uses it for every step.

    Args:
        model: A callable returning logits.

    Returns:
        A ``tf.function`` taking ``(x, labels)``: float inputs and int32 labels.
    """
    cache, ref = _model_ref(model)
    fn = cache.get("gradient")
    if fn is None:
        # A partial, not a closure: TensorFlow counts retracing per code object, and one
        # closure per model would share the count (and warn about "retracing") across models.
        fn = cache["gradient"] = tf.function(
            functools.partial(_loss_gradient, ref),
            reduce_retracing=True,
            experimental_attributes={"_noinline": True},
        )
    return fn


def _loss_gradient(model_ref, x, labels):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(
            tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=_logits(model_ref(), x)
            )
        )
    grad = tape.gradient(loss, x)
    if grad is None:  # the output does not depend on the input at all
        return tf.zeros_like(x)
    return tf.cast(grad, tf.float32)


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
    """The attack loop shared by FGSM, PGD and MIM; graph-friendly, with no argument checks.

    Starting from ``x`` (plus a random point of the ball if ``random_start``), repeat
    ``num_steps`` times::

        g      = grad_x' of sum_i CE(logits(x'_i), y_i)     (minus it if targeted)
        v      = decay * v + g / ||g||_1 (per example)      (only if decay is not None: MIM)
        x'     = x' + step_size * steepest_step(v or g, norm)
        x'     = clip(project(x', x, epsilon, norm), clip_value_min, clip_value_max)

    FGSM is ``num_steps=1, step_size=epsilon``; FGSM with a random start (Wong et al. 2020) is
    ``num_steps=1, random_start=True, step_size=1.25 * epsilon``; PGD (Madry et al. 2018) is
    ``random_start=True``; MIM (Dong et al. 2018) sets ``decay`` (1.0 in the paper).

    This function builds TensorFlow ops only: call it inside a ``tf.function`` (for example a
    Keras ``train_step``, also in a replica context of ``tf.distribute.MirroredStrategy``), or
    use :func:`fgsm`, :func:`pgd` and :func:`mim`, which validate their arguments and run a
    compiled copy. It creates no variables; the loop is a ``tf.while_loop`` whose body calls
    the model's cached, non-inlined gradient function (:func:`loss_gradient_fn`; as fast as
    separate compiled forward and backward passes on CPU); the model is called with
    ``training=False`` (batch norm uses its moving statistics, dropout is off).
    The result is wrapped in ``tf.stop_gradient``, so it is a constant for any outer
    ``GradientTape``; still, call it before (outside) the tape that computes the training
    loss, so that the tape does not record the attack.

    Nothing is checked here: pass a valid ``norm`` (Python string), non-negative epsilon,
    positive step size and ``num_steps >= 1``, integer labels in ``[0, num_classes)`` and
    ``x`` inside the clip range. Called eagerly it also works, one step at a time.

    Example, adversarial training (checked under ``MirroredStrategy`` on two logical CPUs
    with each kind of ``seed``)::

        def train_step(self, data):  # in a keras.Model subclass wrapping `self.inner`
            x, y = data
            x_adv = attacks.perturb(
                self.inner, x, None, 0.3, 10, 0.075, random_start=True, seed=self.generator
            )  # self.generator = tf.random.Generator.from_seed(0), made in __init__
            with tf.GradientTape() as tape:
                loss = ...  # clean loss + adversarial loss on x_adv, with training=True
            ...

    Args:
        model: A callable ``model(x, training=False)`` returning logits, shape
            (batch, num_classes), any float dtype (cast to float32).
        x: Clean inputs, shape (batch, ...); cast to float32.
        y: Integer labels, shape (batch,), any integer dtype: the true labels (untargeted)
            or the target labels (``targeted=True``). ``None`` attacks the model's own
            prediction ``argmax logits(x)`` on the clean input, computed once before the loop
            (the lecture's ``soft_label``; useful when the labels are unknown, and avoids
            label leaking).
        epsilon: Radius of the ball, scalar float or tensor.
        num_steps: Number of gradient steps, scalar int or tensor (>= 1).
        step_size: Step length in the norm of the ball, scalar float or tensor.
        norm: ``"linf"`` or ``"l2"``; Python string (selects the graph).
        targeted: Python bool: descend the loss of ``y`` instead of ascending it.
        random_start: Python bool: start from a uniform random point of the ball.
        decay: ``None`` for plain steps (FGSM, PGD), or the momentum decay factor (scalar
            float or tensor) for MIM's L1-normalised gradient accumulation.
        clip_value_min: Lower end of the valid input range (scalar float or tensor).
        clip_value_max: Upper end of the valid input range.
        seed: Randomness of the random start: ``None`` (stateful ``tf.random`` ops, following
            the global seed), a ``tf.random.Generator`` created once outside (e.g. in the
            model's ``__init__``), or a shape-(2,) integer tensor for stateless ops (the same
            seed gives the same start). Ignored when ``random_start`` is false.

    Returns:
        The adversarial inputs, float32, shaped like ``x``, inside the ball ``B_eps(x)`` and
        the clip range, with no gradient flowing back.
    """
    x = tf.cast(x, tf.float32)
    epsilon = tf.cast(epsilon, tf.float32)
    step_size = tf.cast(step_size, tf.float32)
    num_steps = tf.cast(num_steps, tf.int32)
    lo = tf.cast(clip_value_min, tf.float32)
    hi = tf.cast(clip_value_max, tf.float32)
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
        grad = gradient(x_adv, labels)
        if targeted:
            grad = -grad
        if momentum:
            velocity = decay * velocity + grad / _per_example_norm(grad, "l1")
            direction = velocity
        else:
            direction = grad
        x_new = x_adv + step_size * steepest_step(direction, norm)
        x_new = tf.clip_by_value(project(x_new, x, epsilon, norm), lo, hi)
        return i + 1, x_new, velocity

    _, x_adv, _ = tf.while_loop(
        lambda i, *_: i < num_steps,
        body,
        (tf.constant(0, tf.int32), x_adv, tf.zeros_like(x)),
    )
    return tf.stop_gradient(x_adv)


# Compiled copies of the core for the public attacks, one per model and per setting of the
# Python-level switches (norm, targeted, random start, momentum, soft label). Every number is a
# tensor argument, so calls with the same shapes reuse one trace; reduce_retracing generalises
# the batch dimension after a second batch size. Cached beside the model's gradient function
# (weakly keyed by the model, which the traced function reaches through a weak reference).
def _compiled_for(model, switches: tuple) -> Callable:
    per_model, ref = _model_ref(model)
    fn = per_model.get(switches)
    if fn is None:
        fn = per_model[switches] = tf.function(
            functools.partial(_attack_loop, ref, switches), reduce_retracing=True
        )
    return fn


def _attack_loop(model_ref, switches, x, y, epsilon, num_steps, step_size, decay, lo, hi, seed):
    norm, targeted, random_start, momentum, soft_label = switches
    return perturb(
        model_ref(),
        x,
        None if soft_label else y,
        epsilon,
        num_steps,
        step_size,
        norm=norm,
        targeted=targeted,
        random_start=random_start,
        decay=decay if momentum else None,
        clip_value_min=lo,
        clip_value_max=hi,
        seed=seed,
    )


# ---------------------------------------------------------------------------------------------
# Checks at the door
# ---------------------------------------------------------------------------------------------

_SOFTMAX_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_LOGITS_HINT = (
    "The attacks need logits: rebuild the last layer without the activation (e.g. "
    "keras.layers.Dense(num_classes) instead of Dense(num_classes, activation='softmax'), "
    "or keras.applications.*(classifier_activation=None)), or wrap the model up to the "
    "layer before the softmax: keras.Model(model.inputs, model.layers[-2].output)."
)


def _is_softmax_layer(layer) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    if activation is None:
        return False
    return activation is keras.activations.softmax or getattr(activation, "__name__", "") in (
        "softmax",
        "log_softmax",
    )


def _check_model(model, x: tf.Tensor) -> None:
    if not callable(model):
        raise ValueError(f"model must be a callable that returns logits. Received: {model!r}")
    try:
        if model in _SOFTMAX_CHECKED:
            return
    except TypeError:  # not weak-referenceable or hashable: check every call
        pass
    layers = getattr(model, "layers", None)
    if layers and _is_softmax_layer(layers[-1]):
        raise ValueError(
            f"model must return logits, but its last layer {layers[-1].name!r} applies a "
            f"softmax. {_LOGITS_HINT}"
        )
    probe = model(x[: min(4, int(x.shape[0]))], training=False)
    if len(probe.shape) != 2:
        raise ValueError(
            "model must return logits of shape (batch, num_classes). "
            f"Received: output shape {tuple(probe.shape)}"
        )
    probe = np.asarray(tf.cast(probe, tf.float32))
    if (
        probe.shape[-1] > 1
        and np.all(probe >= 0)
        and np.all(probe <= 1)
        and np.allclose(probe.sum(-1), 1.0, atol=1e-3)
    ):
        raise ValueError(
            "model must return logits, but its outputs are probabilities (non-negative rows "
            f"that sum to 1): its last layer applies a softmax. {_LOGITS_HINT}"
        )
    try:
        _SOFTMAX_CHECKED[model] = int(probe.shape[-1])
    except TypeError:
        pass


def _num_classes(model) -> int | None:
    try:
        return _SOFTMAX_CHECKED.get(model)
    except TypeError:
        return None


def _check_number(name: str, value, *, minimum: float | None = None, positive=False) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number. Received: {name}={value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number. Received: {name}={value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite. Received: {name}={value!r}")
    if positive and number <= 0:
        raise ValueError(f"{name} must be > 0. Received: {name}={value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}. Received: {name}={value!r}")
    return number


def _check_steps(num_steps) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise ValueError(f"num_steps must be an integer >= 1. Received: num_steps={num_steps!r}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1. Received: num_steps={num_steps!r}")
    return int(num_steps)


def _check_norm(norm) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")
    return norm


def _check_clip(clip_value_min, clip_value_max) -> tuple[float, float]:
    lo = _check_number("clip_value_min", clip_value_min)
    hi = _check_number("clip_value_max", clip_value_max)
    if lo >= hi:
        raise ValueError(
            "clip_value_min must be < clip_value_max. Received: "
            f"clip_value_min={clip_value_min!r}, clip_value_max={clip_value_max!r}"
        )
    return lo, hi


def _as_images(x, lo: float, hi: float) -> tf.Tensor:
    array = x if isinstance(x, tf.Tensor) else np.asarray(x)
    dtype = tf.as_dtype(array.dtype)
    if not (dtype.is_floating or dtype.is_integer):
        raise ValueError(f"x must hold numbers. Received: x with dtype {dtype.name}")
    x = tf.cast(array, tf.float32)
    if len(x.shape) < 2:
        raise ValueError(
            "x must be a batch of inputs, shape (batch, ...). "
            f"Received: x with shape {tuple(x.shape)}"
        )
    if int(tf.size(x)) == 0:
        return x
    x_min, x_max = float(tf.reduce_min(x)), float(tf.reduce_max(x))
    if not (math.isfinite(x_min) and math.isfinite(x_max)):
        raise ValueError("x must be finite. Received: x with NaN or Inf values")
    if x_min < lo - 1e-6 or x_max > hi + 1e-6:
        raise ValueError(
            f"x must lie in [clip_value_min, clip_value_max] = [{lo:g}, {hi:g}]. Received: x "
            f"with values in [{x_min:g}, {x_max:g}]. Scale images to [0, 1] first (e.g. "
            "x = x.astype('float32') / 255.0 for 8-bit images), or pass the clip range your "
            "inputs use."
        )
    return x


def _as_labels(y, batch: int, num_classes: int | None = None, name: str = "y") -> tf.Tensor:
    array = y if isinstance(y, tf.Tensor) else np.asarray(y)
    dtype = tf.as_dtype(array.dtype)
    if not dtype.is_integer:
        raise ValueError(
            f"{name} must hold integer class labels (any integer dtype). Received: {name} "
            f"with dtype {dtype.name}; for one-hot labels pass y.argmax(-1)."
        )
    shape = tuple(array.shape)
    if len(shape) == 2 and shape[1] == 1:
        array = tf.reshape(array, [-1])
        shape = (shape[0],)
    if len(shape) != 1:
        raise ValueError(
            f"{name} must be a vector of class labels, shape (batch,). Received: {name} with "
            f"shape {shape}"
        )
    if shape[0] != batch:
        raise ValueError(
            f"{name} must hold one label per example of x ({batch}). Received: {shape[0]} labels"
        )
    labels = tf.cast(array, tf.int64)
    if batch and num_classes is not None:
        y_min, y_max = int(tf.reduce_min(labels)), int(tf.reduce_max(labels))
        if y_min < 0 or y_max >= num_classes:
            raise ValueError(
                f"{name} must hold labels in [0, {num_classes}) (the model has {num_classes} "
                f"outputs). Received: labels in [{y_min}, {y_max}]"
            )
    return tf.cast(labels, tf.int32)


def _check_seed(seed) -> tf.Tensor:
    if seed is None:
        # Follows TensorFlow's global seed (config.set_seed), different at every call.
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be None or a non-negative integer. Received: seed={seed!r}")
    return tf.constant([int(seed) % (2**31 - 1), 0], tf.int32)


def _run(
    model,
    x,
    y,
    *,
    epsilon,
    num_steps,
    step_size,
    decay,
    norm,
    targeted,
    soft_label,
    random_start,
    seed,
    clip_value_min,
    clip_value_max,
) -> tf.Tensor:
    epsilon = _check_number("epsilon", epsilon, minimum=0.0)
    num_steps = _check_steps(num_steps)
    step_size = _check_number("step_size", step_size, positive=True)
    momentum = decay is not None
    if momentum:
        decay = _check_number("decay", decay, minimum=0.0)
    norm = _check_norm(norm)
    lo, hi = _check_clip(clip_value_min, clip_value_max)
    for name, flag in (("targeted", targeted), ("soft_label", soft_label)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False. Received: {name}={flag!r}")
    if targeted and soft_label:
        raise ValueError(
            "soft_label=True attacks the model's own prediction and cannot be targeted. "
            "Received: targeted=True, soft_label=True"
        )
    seed_tensor = _check_seed(seed)
    x = _as_images(x, lo, hi)
    batch = int(x.shape[0])
    if soft_label:
        labels = tf.zeros([batch], tf.int32)  # ignored
        if y is not None:
            _as_labels(y, batch)  # still a useful check on the caller's arrays
    else:
        if y is None:
            raise ValueError(
                "y must hold the labels (the target labels when targeted=True). Received: "
                "y=None; pass soft_label=True to attack the model's own predictions."
            )
        labels = _as_labels(y, batch, name="y")
    if batch == 0:
        return x
    _check_model(model, x)
    if not soft_label:
        labels = _as_labels(labels, batch, _num_classes(model), name="y")
    if epsilon == 0.0:
        return tf.identity(x)
    switches = (norm, bool(targeted), bool(random_start), momentum, bool(soft_label))
    return _compiled_for(model, switches)(
        x,
        labels,
        tf.constant(epsilon, tf.float32),
        tf.constant(num_steps, tf.int32),
        tf.constant(step_size, tf.float32),
        tf.constant(decay if momentum else 0.0, tf.float32),
        tf.constant(lo, tf.float32),
        tf.constant(hi, tf.float32),
        seed_tensor,
    )


# ---------------------------------------------------------------------------------------------
# The attacks
# ---------------------------------------------------------------------------------------------


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
    """Fast gradient sign method (Goodfellow et al. 2015, "Explaining and harnessing...").

    One step of length epsilon along the steepest direction of the loss:
    ``x_adv = x + epsilon * sign(grad_x l(f(x), y))`` (untargeted), or
    ``x - epsilon * sign(grad_x l(f(x), y_t))`` toward target labels ``y_t``; with
    ``norm="l2"`` the step is ``epsilon * g / ||g||_2`` (the fast gradient method). It
    maximises the linearised loss over the ball. The result is clipped to the valid range.

    Args:
        model: Keras model (or callable) returning logits.
        x: Float inputs in ``[clip_value_min, clip_value_max]``, shape (batch, ...), numpy or
            tensor.
        y: Integer labels of any integer dtype, shape (batch,) or (batch, 1): the true labels,
            or the target labels when ``targeted``. Ignored (may be ``None``) with
            ``soft_label``.
        epsilon: Radius of the ball, >= 0 (0 returns ``x``).
        targeted: Move toward the labels ``y`` instead of away from them.
        soft_label: Attack the model's own prediction on the clean ``x`` instead of ``y``.
        norm: ``"linf"`` or ``"l2"``.
        clip_value_min: Lower end of the valid input range.
        clip_value_max: Upper end of the valid input range.

    Returns:
        Adversarial inputs, a float32 tensor shaped like ``x``.

    Raises:
        ValueError: A bad argument (negative epsilon, unknown norm, empty clip range, ``x``
            outside the clip range, labels that are not integers or not one per example, or
            out of range), or a model whose output is a softmax.
    """
    return _run(
        model,
        x,
        y,
        epsilon=epsilon,
        num_steps=1,
        step_size=max(_check_number("epsilon", epsilon, minimum=0.0), TINY),
        decay=None,
        norm=norm,
        targeted=targeted,
        soft_label=soft_label,
        random_start=False,
        seed=0,
        clip_value_min=clip_value_min,
        clip_value_max=clip_value_max,
    )


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
    """Projected gradient descent (Madry et al. 2018, "Towards deep learning models resistant...").

    ``x_0 = x + Uniform(B_eps)`` (if ``random_start``), then ``num_steps`` times
    ``x_{t+1} = clip(Proj_{B_eps(x)}(x_t + step_size * steepest_step(grad)))``, where the
    steepest step is ``sign(g)`` for L-infinity and ``g / ||g||_2`` for L2. Targeted attacks
    step down the loss of the target labels. With ``num_steps * step_size < epsilon`` the
    attack cannot reach the surface of the ball: Madry et al. use ``2.5 * epsilon / num_steps``.

    Args:
        model: Keras model (or callable) returning logits.
        x: Float inputs in ``[clip_value_min, clip_value_max]``, shape (batch, ...).
        y: Integer labels (true labels, or target labels when ``targeted``); ignored with
            ``soft_label``.
        epsilon: Radius of the ball, >= 0.
        num_steps: Number of steps, >= 1.
        step_size: Length of each step in the ball's norm, > 0.
        targeted: Move toward the labels ``y``.
        soft_label: Attack the model's prediction on the clean ``x`` (computed once).
        norm: ``"linf"`` or ``"l2"``.
        clip_value_min: Lower end of the valid input range.
        clip_value_max: Upper end of the valid input range.
        random_start: Start from a uniform random point of the ball.
        seed: Seed of the random start: the same seed gives the same result; ``None`` draws
            one from TensorFlow's global generator (reproducible after
            :func:`cnn_utils.config.set_seed`).

    Returns:
        Adversarial inputs, a float32 tensor shaped like ``x``.

    Raises:
        ValueError: A bad argument (see :func:`fgsm`; also ``num_steps < 1``,
            ``step_size <= 0`` or a bad seed).
    """
    return _run(
        model,
        x,
        y,
        epsilon=epsilon,
        num_steps=num_steps,
        step_size=step_size,
        decay=None,
        norm=norm,
        targeted=targeted,
        soft_label=soft_label,
        random_start=random_start,
        seed=seed,
        clip_value_min=clip_value_min,
        clip_value_max=clip_value_max,
    )


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
    """Momentum iterative method (Dong et al. 2018, "Boosting adversarial attacks with momentum").

    ``v_{t+1} = decay * v_t + g_t / ||g_t||_1`` (per example), then
    ``x_{t+1} = clip(Proj_{B_eps(x)}(x_t + step_size * steepest_step(v_{t+1})))``. The
    accumulated direction stabilises the updates and escapes poor local maxima, which makes
    the examples transfer better to other models. No random start by default, as in the paper.

    Args:
        model: Keras model (or callable) returning logits.
        x: Float inputs in ``[clip_value_min, clip_value_max]``, shape (batch, ...).
        y: Integer labels (true labels, or target labels when ``targeted``); ignored with
            ``soft_label``.
        epsilon: Radius of the ball, >= 0.
        num_steps: Number of steps, >= 1.
        step_size: Length of each step, > 0.
        decay: Momentum decay factor gamma, >= 0 (0 gives PGD without random start).
        targeted: Move toward the labels ``y``.
        soft_label: Attack the model's prediction on the clean ``x``.
        norm: ``"linf"`` or ``"l2"``.
        clip_value_min: Lower end of the valid input range.
        clip_value_max: Upper end of the valid input range.
        random_start: Start from a uniform random point of the ball.
        seed: Seed of the random start (see :func:`pgd`).

    Returns:
        Adversarial inputs, a float32 tensor shaped like ``x``.

    Raises:
        ValueError: A bad argument (see :func:`pgd`; also ``decay < 0``).
    """
    return _run(
        model,
        x,
        y,
        epsilon=epsilon,
        num_steps=num_steps,
        step_size=step_size,
        decay=decay,
        norm=norm,
        targeted=targeted,
        soft_label=soft_label,
        random_start=random_start,
        seed=seed,
        clip_value_min=clip_value_min,
        clip_value_max=clip_value_max,
    )


ATTACKS: dict[str, Callable] = {"fgsm": fgsm, "pgd": pgd, "mim": mim}
"""The attacks by name, for :func:`robust_accuracy` and :func:`epsilon_sweep`."""


# ---------------------------------------------------------------------------------------------
# Measuring
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
        ValueError: Unknown ``p``, or different shapes.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_adv, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x and x_adv must have the same shape. Received: {a.shape} and {b.shape}")
    if a.ndim < 1:
        raise ValueError("x must be a batch, shape (batch, ...). Received: a scalar")
    diff = (a - b).reshape(len(a), -1)
    if p in ("inf", "linf") or (isinstance(p, (int, float)) and p == np.inf):
        return np.abs(diff).max(axis=1, initial=0.0)
    if p in (1, 2) and not isinstance(p, bool):
        return np.linalg.norm(diff, ord=int(p), axis=1)
    raise ValueError(f"p must be 1, 2 or np.inf. Received: p={p!r}")


def predict_labels(model: Callable, x, batch_size: int = 256) -> np.ndarray:
    """The model's predicted class (argmax of the logits) for every example, in batches.

    Args:
        model: Keras model or callable returning logits.
        x: Inputs, shape (n, ...).
        batch_size: Examples per forward pass.

    Returns:
        An int64 numpy array of shape (n,).

    Raises:
        ValueError: A non-positive ``batch_size``.
    """
    batch_size = _check_batch_size(batch_size)
    x = np.asarray(x, dtype=np.float32) if not isinstance(x, tf.Tensor) else x
    out = [
        np.asarray(tf.argmax(model(x[i : i + batch_size], training=False), axis=-1))
        for i in range(0, len(x), batch_size)
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
        ValueError: A non-positive ``batch_size``.
    """
    batch_size = _check_batch_size(batch_size)
    x = np.asarray(x, dtype=np.float32) if not isinstance(x, tf.Tensor) else x
    probs = [
        np.asarray(tf.nn.softmax(_logits(model, x[i : i + batch_size])))
        for i in range(0, len(x), batch_size)
    ]
    if not probs:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    probs = np.concatenate(probs)
    return probs.argmax(-1).astype(np.int64), probs.max(-1).astype(np.float32)


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size must be a positive integer. Received: {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: {batch_size!r}")
    return int(batch_size)


def _resolve_attack(attack) -> Callable | None:
    if attack is None or callable(attack):
        return attack
    if attack in ATTACKS:
        return ATTACKS[attack]
    raise ValueError(
        f"attack must be None, a callable or one of {_ATTACK_NAMES}. Received: attack={attack!r}"
    )


def robust_accuracy(
    model: Callable,
    x,
    y,
    attack: Callable | str | None,
    batch_size: int = 256,
    *,
    verbose: int = 1,
    **attack_kwargs,
) -> float:
    """Accuracy of ``model`` on adversarial examples made by ``attack``, batch by batch.

    For each batch, ``x_adv = attack(model, x_batch, y_batch, **attack_kwargs)`` is made and
    classified; the result is the fraction of examples whose prediction on ``x_adv`` is still
    the true label. With ``attack=None`` it is the clean accuracy.

    Args:
        model: Keras model returning logits.
        x: Inputs, shape (n, ...), in the attack's clip range.
        y: True integer labels, shape (n,).
        attack: ``fgsm``, ``pgd``, ``mim`` (or their names), any callable with the same
            signature, or ``None`` for clean accuracy.
        batch_size: Examples attacked at once.
        verbose: 1 shows a progress bar, 0 is silent.
        **attack_kwargs: Passed to the attack (``epsilon``, ``num_steps``, ``norm``...).

    Returns:
        The robust accuracy, a float in [0, 1].

    Raises:
        ValueError: A bad batch size, unknown attack, labels that do not match ``x``, a
            targeted attack (robust accuracy is measured against the true labels; compute
            the success rate of targeted attacks from their predictions), or any error of the
            attack itself.
    """
    attack = _resolve_attack(attack)
    batch_size = _check_batch_size(batch_size)
    if attack_kwargs.get("targeted"):
        raise ValueError(
            "robust_accuracy measures accuracy against the true labels and cannot run a "
            "targeted attack. Received: targeted=True"
        )
    n = len(x)
    labels = np.asarray(_as_labels(y, n))
    if n == 0:
        raise ValueError("x must hold at least one example. Received: 0 examples")
    bar = keras.utils.Progbar(n, verbose=verbose, unit_name="example") if verbose else None
    correct = 0
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], labels[start : start + batch_size]
        if attack is not None:
            xb = attack(model, xb, yb, **attack_kwargs)
        correct += int(np.sum(predict_labels(model, xb, batch_size) == yb))
        if bar is not None:
            bar.add(len(yb), values=[("accuracy", correct / min(start + batch_size, n))])
    return correct / n


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
    left out: it is then ``2.5 * eps / num_steps`` (Madry et al. 2018), so the attack can
    reach the surface of every ball. epsilon = 0 gives the clean accuracy (no attack is run).

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

    eps_list = [_check_number("epsilons", e, minimum=0.0) for e in epsilons]
    if not eps_list:
        raise ValueError("epsilons must hold at least one value. Received: []")
    if isinstance(attacks, Mapping):
        table = {str(name): _resolve_attack(fn) for name, fn in attacks.items()}
    else:
        table = {str(name): _resolve_attack(name) for name in attacks}
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
            else:
                if callable(step_rule):
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


_FGSM_ARGS = {"epsilon", "norm", "soft_label", "clip_value_min", "clip_value_max"}


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

    attack = _resolve_attack(attack)
    if attack is None or not models:
        raise ValueError("models must be a non-empty mapping and attack must not be None.")
    batch_size = _check_batch_size(batch_size)
    labels = np.asarray(_as_labels(y, len(x)))
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
                np.asarray(
                    attack(
                        source,
                        x[i : i + batch_size],
                        labels[i : i + batch_size],
                        **attack_kwargs,
                    )
                )
                for i in range(0, len(labels), batch_size)
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


def loss_surface(
    model: Callable,
    x,
    y,
    alphas: Sequence[float],
    betas: Sequence[float] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 512,
) -> dict[str, np.ndarray]:
    """Loss and prediction of ``model`` on the plane ``x + alpha * g + beta * g_perp``.

    ``g = sign(grad_x l(f(x), y))`` is the FGSM direction (so ``alpha`` is an L-infinity step in
    input units, and by Taylor ``l(x + h) ~ l(x) + grad^T h`` it is the steepest local ascent);
    ``g_perp`` is a random +-1 vector (seeded) with its component along ``g`` removed, so it is
    orthogonal to ``g`` and of about the same size. The inputs are not clipped to the valid
    range: this is a picture of the function around ``x``.

    Args:
        model: Keras model returning logits.
        x: One input, shape (H, W, C) or (1, H, W, C).
        y: Its integer label.
        alphas: Steps along ``g``.
        betas: Steps along ``g_perp`` (default: ``alphas``).
        seed: Seed of ``g_perp``.
        batch_size: Grid points per forward pass.

    Returns:
        A dict with ``alphas``, ``betas`` (1-D arrays), ``loss`` and ``pred`` (arrays of shape
        (len(betas), len(alphas)): cross-entropy of ``y`` and the predicted class), ``g`` and
        ``g_perp`` (the directions, shaped like one input).

    Raises:
        ValueError: A batch of more than one input, or empty alphas or betas.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim >= 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim < 1 or (x.ndim == 4):
        raise ValueError(f"x must be one input. Received: x with shape {x.shape}")
    alphas = np.asarray(alphas, dtype=np.float32).reshape(-1)
    betas = alphas if betas is None else np.asarray(betas, dtype=np.float32).reshape(-1)
    if alphas.size == 0 or betas.size == 0:
        raise ValueError("alphas and betas must not be empty.")
    label = tf.constant([int(np.asarray(y).reshape(-1)[0])], tf.int32)
    x_t = tf.constant(x[np.newaxis])
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(label, _logits(model, x_t))
    grad = tape.gradient(loss, x_t)
    g = np.sign(np.asarray(grad[0], dtype=np.float32))
    r = np.random.default_rng(seed).choice(np.array([-1.0, 1.0], np.float32), size=x.shape)
    g_dot = float(np.sum(g * g))
    g_perp = r - (np.sum(r * g) / g_dot) * g if g_dot > 0 else r
    grid_a, grid_b = np.meshgrid(alphas, betas)
    points = (
        x[np.newaxis]
        + grid_a.reshape(-1, *([1] * x.ndim)) * g[np.newaxis]
        + grid_b.reshape(-1, *([1] * x.ndim)) * g_perp[np.newaxis]
    ).astype(np.float32)
    losses, preds = [], []
    for i in range(0, len(points), batch_size):
        logits = _logits(model, tf.constant(points[i : i + batch_size]))
        labels = tf.fill([tf.shape(logits)[0]], label[0])
        losses.append(np.asarray(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))
        preds.append(np.asarray(tf.argmax(logits, axis=-1)))
    shape = grid_a.shape
    return {
        "alphas": alphas,
        "betas": betas,
        "loss": np.concatenate(losses).reshape(shape),
        "pred": np.concatenate(preds).reshape(shape),
        "g": g,
        "g_perp": g_perp.astype(np.float32),
    }
