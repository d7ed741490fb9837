"""Argument checks shared by every module: one rule for each kind of argument.

Each check raises ``ValueError`` naming the argument and the value received
(``"epsilon must be >= 0. Received: epsilon=-0.1"``) and returns the value in the form the
caller computes with (a Python float or int, a float32 tensor, int32 labels). Private: the
public functions of the package call these at the door, so that the same mistake gets the same
message everywhere.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

# ---------------------------------------------------------------------------------------------
# Numbers, integers, flags, choices
# ---------------------------------------------------------------------------------------------


def number(
    name: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    below: float | None = None,
) -> float:
    """A finite real number (not a bool); optionally ``>= minimum``, ``<= maximum``, ``> 0``."""
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a number. Received: {name}={value!r}")
    if isinstance(value, (np.ndarray, tf.Tensor)) and np.ndim(value) != 0:
        raise ValueError(f"{name} must be a single number. Received: {name}={value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number. Received: {name}={value!r}") from None
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite. Received: {name}={value!r}")
    if positive and result <= 0:
        raise ValueError(f"{name} must be > 0. Received: {name}={value!r}")
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}. Received: {name}={value!r}")
    if maximum is not None and result > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}. Received: {name}={value!r}")
    if below is not None and result >= below:
        raise ValueError(f"{name} must be < {below:g}. Received: {name}={value!r}")
    return result


def numbers(
    name: str, values, *, minimum: float | None = None, positive: bool = False
) -> list[float]:
    """A non-empty list of finite numbers (a list, tuple or 1-D array; not a single number)."""
    if isinstance(values, (str, bytes, dict)) or np.ndim(values) != 1:
        raise ValueError(
            f"{name} must be a list of numbers, e.g. [0.1, 0.2]. Received: {name}={values!r}"
        )
    values = list(values)
    if not values:
        raise ValueError(f"{name} must hold at least one number. Received: {name}={values!r}")
    return [number(name, v, minimum=minimum, positive=positive) for v in values]


def integer(name: str, value, *, minimum: int | None = None) -> int:
    """A whole number of any integer type (not a bool, not a float), optionally ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an integer{bound}. Received: {name}={value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}. Received: {name}={value!r}")
    return int(value)


def positive_int(name: str, value) -> int:
    """A whole number >= 1 of any integer type (``np.int64`` included, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return int(value)


def batch_size(value, name: str = "batch_size") -> int:
    """Examples per forward pass: a positive integer."""
    return positive_int(name, value)


def flag(name: str, value) -> bool:
    """A boolean (``True``/``False`` or a NumPy bool); strings such as ``"no"`` are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False. Received: {name}={value!r}")
    return bool(value)


def one_of(name: str, value, choices: Sequence):
    """One of a fixed set of values (compared with ``==``, strings case-sensitive)."""
    try:
        ok = value in choices
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {tuple(choices)}. Received: {name}={value!r}")
    return value


def seed(value, name: str = "seed") -> int | None:
    """``None`` or a non-negative integer seed."""
    if value is None:
        return None
    return integer(name, value, minimum=0)


def clip_range(clip_value_min, clip_value_max) -> tuple[float, float]:
    """The valid input range: two finite numbers with ``clip_value_min < clip_value_max``."""
    lo = number("clip_value_min", clip_value_min)
    hi = number("clip_value_max", clip_value_max)
    if lo >= hi:
        raise ValueError(
            "clip_value_min must be < clip_value_max. Received: "
            f"clip_value_min={clip_value_min!r}, clip_value_max={clip_value_max!r}"
        )
    return lo, hi


# ---------------------------------------------------------------------------------------------
# Arrays: images and labels
# ---------------------------------------------------------------------------------------------


def images(
    x,
    *,
    name: str = "x",
    rank: int | None = None,
    value_range: tuple[float, float] | None = None,
) -> tf.Tensor:
    """A batch of finite numeric inputs as float32, optionally of a given rank and inside a range.

    Args:
        x: Array or tensor, shape (batch, ...).
        name: Argument name for messages.
        rank: Required rank (4 for a batch of images), or ``None`` for any rank >= 2.
        value_range: ``(lo, hi)`` the values must lie in (1e-6 slack), or ``None``.

    Returns:
        A float32 tensor.
    """
    array = x if isinstance(x, tf.Tensor) else np.asarray(x)
    try:
        dtype = tf.as_dtype(array.dtype)
    except TypeError:
        dtype = None
    if dtype is None or not (dtype.is_floating or dtype.is_integer):
        kind = getattr(array.dtype, "name", str(array.dtype))
        raise ValueError(f"{name} must hold numbers. Received: {name} with dtype {kind}")
    out = tf.cast(array, tf.float32)
    shape = tuple(out.shape)
    if rank is not None and len(shape) != rank:
        what = "a batch of images, shape (batch, H, W, C)" if rank == 4 else f"rank {rank}"
        raise ValueError(f"{name} must be {what}. Received: {name} with shape {shape}")
    if len(shape) < 2:
        raise ValueError(
            f"{name} must be a batch of inputs, shape (batch, ...). "
            f"Received: {name} with shape {shape}"
        )
    if int(tf.size(out)) == 0:
        return out
    low, high = float(tf.reduce_min(out)), float(tf.reduce_max(out))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} must be finite. Received: {name} with NaN or Inf values")
    if value_range is not None:
        lo, hi = value_range
        if low < lo - 1e-6 or high > hi + 1e-6:
            hint = (
                " Scale 8-bit images to [0, 1] first: divide by 255 "
                "(x = x.astype('float32') / 255.0)."
                if high > 1.5 and hi <= 1.0
                else ""
            )
            raise ValueError(
                f"{name} must lie in [{lo:g}, {hi:g}] (the valid input range). Received: "
                f"{name} with values in [{low:g}, {high:g}].{hint}"
            )
    return out


def labels(y, batch: int, num_classes: int | None = None, name: str = "y") -> tf.Tensor:
    """Integer class labels, one per example, shape (batch,) or (batch, 1), in range.

    One-hot or probability labels (float, or shape (batch, k)) are refused with a message that
    says ``y.argmax(-1)``.

    Returns:
        An int32 tensor of shape (batch,).
    """
    array = y if isinstance(y, tf.Tensor) else np.asarray(y)
    try:
        dtype = tf.as_dtype(array.dtype)
    except TypeError:
        dtype = None
    shape = tuple(array.shape)
    if dtype is None or not dtype.is_integer or (len(shape) == 2 and shape[1] > 1):
        kind = getattr(array.dtype, "name", str(array.dtype))
        raise ValueError(
            f"{name} must hold integer class labels, shape (batch,). Received: {name} with "
            f"dtype {kind} and shape {shape}; for one-hot labels pass {name}.argmax(-1)."
        )
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
            f"{name} must hold one label per example ({batch}). Received: {shape[0]} labels"
        )
    result = tf.cast(array, tf.int64)
    if batch and num_classes is not None:
        y_min, y_max = int(tf.reduce_min(result)), int(tf.reduce_max(result))
        if y_min < 0 or y_max >= num_classes:
            raise ValueError(
                f"{name} must hold labels in [0, {num_classes}) (the model has {num_classes} "
                f"outputs). Received: labels in [{y_min}, {y_max}]"
            )
    return tf.cast(result, tf.int32)


def class_index(value, batch: int, num_classes: int, name: str = "class_index") -> tf.Tensor:
    """One integer class for the whole batch, or one per image, in ``[0, num_classes)``."""
    array = np.asarray(value)
    if array.ndim == 0 and np.issubdtype(array.dtype, np.integer) and not isinstance(value, bool):
        array = np.full((batch,), int(array))
    if (
        array.ndim != 1
        or len(array) != batch
        or not np.issubdtype(array.dtype, np.integer)
        or isinstance(value, bool)
    ):
        raise ValueError(
            f"{name} must be one integer or one integer per image ({batch}). "
            f"Received: {name}={value!r}"
        )
    return labels(array, batch, num_classes, name=name)


# ---------------------------------------------------------------------------------------------
# Models: logits, one output
# ---------------------------------------------------------------------------------------------

LOGITS_HINT = (
    "These methods need logits (the scores before the softmax): rebuild the last layer "
    "without the activation (keras.layers.Dense(num_classes) instead of "
    "Dense(num_classes, activation='softmax'), or "
    "keras.applications.*(classifier_activation=None)), or cut the model before the softmax: "
    "keras.Model(model.inputs, model.layers[-2].output)."
)

_CLASSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


def _input_shape(model) -> tuple | None:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    return tuple(inputs[0].shape[1:]) if inputs and len(inputs) == 1 else None


def _probe_input(model, x) -> tf.Tensor:
    expected = _input_shape(model)
    if x is not None:
        x = tf.convert_to_tensor(x)
        shape = tuple(x.shape[1:])
        fits = expected is None or (
            len(shape) == len(expected)
            and all(e is None or e == s for e, s in zip(expected, shape, strict=True))
        )
        if not fits:
            wanted = ", ".join("any" if e is None else str(e) for e in expected)
            raise ValueError(
                f"x must have the model's input shape (batch, {wanted}). "
                f"Received: x with shape {tuple(x.shape)}"
            )
        return tf.cast(x[: min(4, int(x.shape[0]))], tf.float32)
    shape = expected
    if not shape or any(d is None for d in shape):
        return None
    # A fixed, non-constant probe: rows of a softmax sum to 1 whatever the input.
    return tf.random.stateless_uniform((2, *shape), seed=(1, 2), dtype=tf.float32)


def logits_model(model, x=None, name: str = "model") -> int | None:
    """Check that ``model`` is a callable with one output of logits; return the class count.

    Refused: objects that are not callable; a last layer that applies a softmax (a ``Softmax``
    layer or ``activation="softmax"``); outputs that are probabilities anyway (non-negative rows
    summing to 1, e.g. a softmax inside a ``Lambda``); several outputs; outputs that are not
    (batch, num_classes). The model is called once on up to 4 examples of ``x`` (or on random
    inputs of its input shape); the answer is remembered per model.

    Args:
        model: A Keras model or a callable ``model(x, training=False)``.
        x: Example inputs to probe with, or ``None`` to use the model's input shape.
        name: Argument name for messages.

    Returns:
        The number of classes, or ``None`` when the model could not be probed (no ``x`` and no
        known input shape).
    """
    if not callable(model):
        raise ValueError(f"{name} must be a callable that returns logits. Received: {model!r}")
    try:
        known = _CLASSES.get(model)
    except TypeError:  # not weak-referenceable: checked at every call
        known = None
    if known is not None:
        if x is not None:
            _probe_input(model, x)  # x must still fit the model's input shape
        return known
    layers = getattr(model, "layers", None)
    if layers and _is_softmax_layer(layers[-1]):
        raise ValueError(
            f"{name} must return logits, but its last layer {layers[-1].name!r} applies a "
            f"softmax. {LOGITS_HINT}"
        )
    probe_x = _probe_input(model, x)
    if probe_x is None:
        return None
    output = model(probe_x, training=False)
    if isinstance(output, (list, tuple, dict)):
        raise ValueError(
            f"{name} must have one output (the logits). Received: a model with "
            f"{len(output)} outputs; wrap the one you want: keras.Model(model.inputs, "
            "model.outputs[0])."
        )
    if len(output.shape) != 2:
        raise ValueError(
            f"{name} must return logits of shape (batch, num_classes). "
            f"Received: output shape {tuple(output.shape)}"
        )
    probs = np.asarray(tf.cast(output, tf.float32))
    if (
        probs.shape[-1] > 1
        and np.all(probs >= 0)
        and np.all(probs <= 1)
        and np.allclose(probs.sum(-1), 1.0, atol=1e-3)
    ):
        raise ValueError(
            f"{name} must return logits, but its outputs are probabilities (non-negative rows "
            f"that sum to 1): it applies a softmax. {LOGITS_HINT}"
        )
    classes = int(probs.shape[-1])
    try:
        _CLASSES[model] = classes
    except TypeError:
        pass
    return classes


def finite_logits(logits, name: str = "model") -> tf.Tensor:
    """Return ``logits`` if every value is finite; else a ``ValueError`` saying what to check.

    NaN or Inf logits come from a model whose weights diverged (NaN after training) or from an
    input that overflows; an argmax over them is a meaningless class, so nothing is computed.
    """
    if not bool(tf.reduce_all(tf.math.is_finite(tf.cast(logits, tf.float32)))):
        raise ValueError(
            f"{name} returns non-finite logits (NaN or Inf), so its predictions mean nothing: "
            "its weights may hold NaN (a diverged training: retrain it with a smaller learning "
            "rate), or the inputs overflow. Check np.isfinite(model(x)).all()."
        )
    return logits
