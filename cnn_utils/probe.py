"""Model introspection: layers by name, probe sub-models and batched features.

Saliency, feature visualisation and embeddings all need the same few things from a model: a
layer found by its name (with a message that lists the names when there is none), a
sub-model from the model's input to some layers' outputs (a *probe*), the layer that Grad-CAM
or the nearest-neighbour search uses by default, and the activations of a layer on many
images, a batch at a time. They live here, once.

Works for Sequential models (built from ``keras.Input``, or built by calling them once),
functional models, and functional models that contain the course's blocks
(:class:`~cnn_utils.blocks.ResnetBlock`, :class:`~cnn_utils.blocks.Inception` are single
layers whose outputs can be named).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from cnn_utils import _checks

__all__ = [
    "ensure_built",
    "features",
    "gradient",
    "last_feature_layer",
    "layer",
    "layer_model",
    "model_input",
    "penultimate_layer",
]

_NOT_FEATURE_LAYERS = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.InputLayer,
)


def ensure_built(model: keras.Model, input_shape: Sequence[int] | None = None) -> keras.Model:
    """Make sure ``model`` has symbolic inputs and outputs, so that layers can be named.

    A Sequential model built from ``keras.Input`` (or a functional model) already has them. A
    Sequential model that was never called has none ("layer sequential has never been called
    and thus has no defined output"); it is built once for ``input_shape``.

    Args:
        model: A Keras model.
        input_shape: (H, W, C) of one image, used when the model was never built.

    Returns:
        The same model.

    Raises:
        ValueError: Not a Keras model, or not built and no ``input_shape`` given.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model. Received: model={model!r}")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs:
        return model
    if input_shape is None:
        raise ValueError(
            f"Model {model.name!r} has never been called, so its layers have no outputs. "
            "Build it from keras.Input, call it once on a batch, or pass input_shape. "
            "Received: input_shape=None"
        )
    if isinstance(model, keras.Sequential):
        model.build((None, *tuple(input_shape)))
    else:
        model(np.zeros((1, *tuple(input_shape)), dtype="float32"), training=False)
    if not model.inputs:
        raise ValueError(
            f"Model {model.name!r} has no symbolic inputs even after being called "
            "(a subclassed model?). Rebuild it as a Sequential or functional model."
        )
    return model


def model_input(model: keras.Model):
    """The symbolic input of a built model: the tensor itself for a single-input model.

    Building ``keras.Model(model_input(model), ...)`` (rather than with the list
    ``model.inputs``) lets the probe be called on a plain tensor without a structure warning.
    """
    ensure_built(model)
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def layer(model: keras.Model, layer_name: str, *, name: str = "layer_name") -> keras.layers.Layer:
    """The layer called ``layer_name``; the error lists the model's layer names.

    Args:
        model: A Keras model.
        layer_name: The layer's name.
        name: Argument name for the message.

    Returns:
        The layer.

    Raises:
        ValueError: No layer has that name.
    """
    names = [each.name for each in model.layers]
    if not isinstance(layer_name, str) or layer_name not in names:
        raise ValueError(
            f"{name} must be one of the model's layers {names}. Received: {name}={layer_name!r}"
        )
    return model.get_layer(layer_name)


def _sequential_outputs(model: keras.Sequential) -> dict:
    """Every layer's output in one fresh pass over a Sequential model's layers from its input.

    ``layer.output`` is the layer's output in the *first* graph it was called in; a Sequential
    model built again (``model.build(...)`` after ``keras.Input``, common in tutorials) has a
    new input, so that output would belong to another graph. Calling the layers again from the
    current input (weights shared, as in any functional model) gives one connected graph.
    """
    tensor, found = model_input(model), {}
    for each in model.layers:
        tensor = each(tensor)
        found[each.name] = tensor
    return found


def _symbolic_output(model: keras.Model, key, outputs: dict | None = None):
    if key is None:
        return model.outputs[0] if outputs is None else list(outputs.values())[-1]
    if isinstance(key, str):
        found = layer(model, key)
        return found.output if outputs is None else outputs[found.name]
    if outputs is not None:  # a layer's input (``layer.input``): the previous layer's output
        previous = [model_input(model), *outputs.values()]
        for index, each in enumerate(model.layers):
            if each.input is key:
                return previous[index]
    return key  # a symbolic tensor of the model's graph, e.g. a layer's input


def layer_model(model: keras.Model, outputs) -> keras.Model:
    """A probe: the sub-model from the input of ``model`` to the outputs of named layers.

    Args:
        model: A built Sequential or functional model (see :func:`ensure_built`).
        outputs: A layer name, ``None`` for the model's own output (the logits), or a list of
            these; a symbolic tensor of the model's graph (``layer.input``) is also accepted.

    Returns:
        A ``keras.Model`` sharing the layers (and weights) of ``model``, with one output, or a
        list of outputs in the order of a list ``outputs``.

    Raises:
        ValueError: An unknown layer name (the message lists the names), or a model without
            symbolic inputs.
    """
    ensure_built(model)
    fresh = _sequential_outputs(model) if isinstance(model, keras.Sequential) else None
    if isinstance(outputs, (list, tuple)):
        tensors = [_symbolic_output(model, key, fresh) for key in outputs]
    else:
        tensors = _symbolic_output(model, outputs, fresh)
    return keras.Model(model_input(model), tensors, name=f"{model.name}_probe")


def last_feature_layer(model: keras.Model) -> str:
    """Name of the last layer that outputs feature maps (rank 4), the Grad-CAM default.

    Pooling, dropout and input layers are skipped, so this is the last convolution, its batch
    norm or ReLU, or the last :class:`~cnn_utils.blocks.ResnetBlock` /
    :class:`~cnn_utils.blocks.Inception` block.

    Raises:
        ValueError: The model has no layer with a 4-D output.
    """
    ensure_built(model)
    for each in reversed(model.layers):
        if isinstance(each, _NOT_FEATURE_LAYERS):
            continue
        try:
            rank = len(each.output.shape)
        except (AttributeError, ValueError):
            continue
        if rank == 4:
            return each.name
    raise ValueError(f"Model {model.name!r} has no layer with 4-D feature maps.")


def penultimate_layer(model: keras.Model) -> str:
    """Name of the layer that feeds the last one (the features the classifier reads).

    Dropout layers are skipped: their output equals their input at inference.

    Raises:
        ValueError: The model has a single layer.
    """
    ensure_built(model)
    for each in reversed(model.layers[:-1]):
        if not isinstance(each, (keras.layers.Dropout, keras.layers.InputLayer)):
            return each.name
    raise ValueError(f"Model {model.name!r} has a single layer: no penultimate layer.")


def features(
    model: keras.Model,
    x,
    layer_name: str | None = None,
    *,
    batch_size: int = 256,
    flatten: bool = True,
) -> np.ndarray:
    """Activations of a named layer on many images, a batch at a time (inference mode).

    Args:
        model: A built Keras model.
        x: Images (n, H, W, C), finite.
        layer_name: The layer; ``None`` takes :func:`penultimate_layer`.
        batch_size: Images per forward pass (any integer type).
        flatten: One vector per image (n, d); ``False`` keeps the layer's shape.

    Returns:
        float32 array, (n, d) or (n, *layer output shape); float32 also under a mixed
        precision policy.

    Raises:
        ValueError: An unknown layer (the message lists the names), a bad batch size,
            non-finite images.
    """
    batch_size = _checks.batch_size(batch_size)
    flatten = _checks.flag("flatten", flatten)
    ensure_built(model)
    x = _checks.images(x).numpy()
    layer_name = penultimate_layer(model) if layer_name is None else layer_name
    probe = layer_model(model, layer_name)
    chunks = [
        keras.ops.convert_to_numpy(
            tf.cast(probe(x[start : start + batch_size], training=False), tf.float32)
        )
        for start in range(0, len(x), batch_size)
    ]
    out = np.concatenate(chunks) if chunks else np.zeros((0, *probe.output.shape[1:]), "float32")
    return out.reshape(len(out), int(np.prod(out.shape[1:]))) if flatten else out


def gradient(tape: tf.GradientTape, target, source, *, what: str):
    """``tape.gradient(target, source)``, refusing a disconnected graph with a clear message.

    TensorFlow returns ``None`` when ``target`` does not depend on ``source`` (a model whose
    output ignores its input, a layer that does not feed the output); methods built on the
    gradient cannot say anything then.

    Args:
        tape: The tape that recorded the computation.
        target: The scalar (or tensor) to differentiate.
        source: The tensor to differentiate with respect to.
        what: Describes the pair for the message, e.g. ``"the class score with respect to x"``.

    Returns:
        The gradient.

    Raises:
        ValueError: The gradient is ``None``.
    """
    grads = tape.gradient(target, source)
    if grads is None:
        raise ValueError(
            f"The gradient of {what} is None: the model's output does not depend on it "
            "(a disconnected graph, e.g. a layer that ignores its input or a stop_gradient), "
            "so there is nothing to visualise."
        )
    return grads
