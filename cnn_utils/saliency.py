"""Which pixels matter: gradient saliency, SmoothGrad, occlusion, CAM and Grad-CAM.

Every method returns one heatmap per image, shape (batch, H, W) at the input's resolution,
float32 in [0, 1] (unless ``normalize=False``), and finite even when every gradient is zero
(an all-zero map then). The class score is the logit before the softmax, as Simonyan et al.
recommend; a model whose last layer applies a softmax is refused with a message that says how
to get the logits.

The helpers :func:`get_layer` and :func:`layer_model` turn a layer name into a model that
outputs that layer's activations; they work for Sequential models (built from
``keras.Input``, or built by calling them once), functional models, and functional models
containing the course's blocks (:class:`~cnn_utils.blocks.ResnetBlock`,
:class:`~cnn_utils.blocks.Inception` are single layers whose outputs can be named).

References:
    Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional networks" (saliency).
    Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise".
    Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks" (occlusion).
    Zhou et al. 2016, "Learning deep features for discriminative localization" (CAM).
    Selvaraju et al. 2017, "Grad-CAM: visual explanations from deep networks".
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

_EPS = 1e-12
_NOT_FEATURE_LAYERS = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.InputLayer,
)


# ---------------------------------------------------------------------------------------------
# Layers and sub-models
# ---------------------------------------------------------------------------------------------


def ensure_built(model: keras.Model, input_shape: Sequence[int] | None = None) -> keras.Model:
    """Make sure ``model`` has symbolic inputs and outputs, so that layers can be named.

    A Sequential model built from ``keras.Input`` (or a functional model) already has them. A
    Sequential model that was never called has none ("layer sequential has never been called
    and thus has no defined output"); it is called once on zeros of ``input_shape``.

    Args:
        model: A Keras model.
        input_shape: (H, W, C) of one image, used when the model was never built.

    Returns:
        The same model.

    Raises:
        ValueError: The model is not built and no ``input_shape`` is given.
    """
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


def get_layer(model: keras.Model, layer_name: str) -> keras.layers.Layer:
    """Return the layer called ``layer_name``, with a message listing the names if there is none.

    Args:
        model: A Keras model.
        layer_name: The layer's name.

    Returns:
        The layer.

    Raises:
        ValueError: No layer has that name; the message lists the available names.
    """
    for layer in model.layers:
        if layer.name == layer_name:
            return layer
    names = [layer.name for layer in model.layers]
    raise ValueError(
        f"layer_name must be one of the model's layers {names}. Received: layer_name={layer_name!r}"
    )


def layer_model(
    model: keras.Model, layer_names: str | Sequence[str], *, include_output: bool = False
) -> keras.Model:
    """A model from the input of ``model`` to the outputs of the named layers.

    Args:
        model: A built Sequential or functional model (see :func:`ensure_built`).
        layer_names: One name or several.
        include_output: Also output the model's own output (the logits), last.

    Returns:
        A ``keras.Model`` with one output per name (plus the logits), as a list.

    Raises:
        ValueError: An unknown layer name, or a model without symbolic inputs.
    """
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    ensure_built(model)
    outputs = [get_layer(model, name).output for name in names]
    if include_output:
        outputs.append(model.outputs[0])
    return keras.Model(model_input(model), outputs, name=f"{model.name}_features")


def check_logits(model: keras.Model) -> None:
    """Refuse a model whose last layer applies a softmax: saliency needs the scores before it.

    Raises:
        ValueError: The last layer is a ``Softmax`` layer, an ``Activation("softmax")`` or a
            layer with ``activation=softmax``.
    """
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    is_softmax = isinstance(last, keras.layers.Softmax) or (
        activation is not None and getattr(activation, "__name__", "") == "softmax"
    )
    if is_softmax:
        raise ValueError(
            f"The last layer of model {model.name!r} ({last.name!r}) applies a softmax, but "
            "these methods need the class scores before it (logits). Build the model with "
            "no final activation (e.g. keras.applications.VGG16(classifier_activation=None)) "
            "or set `model.layers[-1].activation = keras.activations.linear`."
        )


def last_feature_layer(model: keras.Model) -> str:
    """Name of the last layer that outputs feature maps (rank 4), the Grad-CAM default.

    Pooling, dropout and input layers are skipped, so this is the last convolution, its batch
    norm or ReLU, or the last :class:`~cnn_utils.blocks.ResnetBlock` /
    :class:`~cnn_utils.blocks.Inception` block.

    Raises:
        ValueError: The model has no layer with a 4-D output.
    """
    ensure_built(model)
    for layer in reversed(model.layers):
        if isinstance(layer, _NOT_FEATURE_LAYERS):
            continue
        try:
            rank = len(layer.output.shape)
        except (AttributeError, ValueError):
            continue
        if rank == 4:
            return layer.name
    raise ValueError(f"Model {model.name!r} has no layer with 4-D feature maps.")


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _as_batch(x) -> tf.Tensor:
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    if x.shape.rank != 4:
        raise ValueError(
            f"x must be a batch of images of shape (batch, H, W, C). Received: x with shape "
            f"{tuple(x.shape)}"
        )
    return x


def _class_indices(class_index, batch: int, num_classes: int) -> tf.Tensor:
    indices = np.asarray(class_index)
    if indices.ndim == 0:
        indices = np.full((batch,), int(indices))
    if indices.ndim != 1 or len(indices) != batch or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"class_index must be one integer or one integer per image ({batch}). "
            f"Received: class_index={class_index!r}"
        )
    if indices.min() < 0 or indices.max() >= num_classes:
        raise ValueError(
            f"class_index must be in [0, {num_classes}). Received: class_index={class_index!r}"
        )
    return tf.constant(indices, dtype=tf.int32)


def _class_scores(logits: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    return tf.gather(logits, indices, axis=1, batch_dims=1)


def normalize_maps(maps, *, mode: str = "max") -> np.ndarray:
    """Scale each heatmap to [0, 1]; all-zero (or constant) maps stay finite.

    Args:
        maps: Array (batch, H, W).
        mode: ``"max"`` divides non-negative maps by their maximum (negative values are
            clipped to 0); ``"minmax"`` maps the minimum to 0 and the maximum to 1.

    Returns:
        float32 array (batch, H, W) in [0, 1].

    Raises:
        ValueError: An unknown mode.
    """
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32))
    axes = tuple(range(1, maps.ndim))
    if mode == "max":
        maps = np.maximum(maps, 0.0)
        low = np.zeros_like(maps.max(axis=axes, keepdims=True))
    elif mode == "minmax":
        low = maps.min(axis=axes, keepdims=True)
    else:
        raise ValueError(f"mode must be 'max' or 'minmax'. Received: mode={mode!r}")
    span = maps.max(axis=axes, keepdims=True) - low
    return np.clip((maps - low) / np.maximum(span, _EPS), 0.0, 1.0).astype(np.float32)


def _resize(maps: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    return tf.image.resize(maps[..., tf.newaxis], size, method="bilinear")[..., 0]


def _input_gradients(model: keras.Model, x: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(_class_scores(model(x, training=False), indices))
    grads = tape.gradient(score, x)
    return tf.zeros_like(x) if grads is None else grads


# ---------------------------------------------------------------------------------------------
# Gradient methods
# ---------------------------------------------------------------------------------------------


def gradient_saliency(model: keras.Model, x, class_index, *, normalize: bool = True) -> np.ndarray:
    """Saliency map of Simonyan et al. (2014): max over channels of |dS_c / dI|.

    ``S_c`` is the class score before the softmax: the gradient of the probability would also
    depend on the other classes' scores.

    Args:
        model: A model that outputs logits.
        x: Images (batch, H, W, C).
        class_index: One class for all images, or one per image.
        normalize: Scale each map to [0, 1] by its maximum.

    Returns:
        float32 array (batch, H, W).

    Raises:
        ValueError: Bad shapes or classes, or a softmax output.
    """
    check_logits(model)
    x = _as_batch(x)
    indices = _class_indices(class_index, x.shape[0], model.outputs[0].shape[-1])
    maps = tf.reduce_max(tf.abs(_input_gradients(model, x, indices)), axis=-1).numpy()
    return normalize_maps(maps) if normalize else maps


def smoothgrad(
    model: keras.Model,
    x,
    class_index,
    *,
    num_samples: int = 25,
    noise_level: float = 0.15,
    seed: int | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """SmoothGrad (Smilkov et al. 2017): the saliency map averaged over noisy copies of x.

    Each copy adds Gaussian noise of standard deviation ``noise_level * (max(x) - min(x))``;
    averaging the maps of ``num_samples`` copies removes the speckle of the raw gradient.

    Args:
        model: A model that outputs logits.
        x: Images (batch, H, W, C).
        class_index: One class for all images, or one per image.
        num_samples: Noisy copies per image.
        noise_level: Noise standard deviation as a fraction of the input range, >= 0.
        seed: Seed of the noise.
        normalize: Scale each map to [0, 1] by its maximum.

    Returns:
        float32 array (batch, H, W).

    Raises:
        ValueError: Bad sizes, shapes or classes, or a softmax output.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be >= 1. Received: num_samples={num_samples!r}")
    if noise_level < 0:
        raise ValueError(f"noise_level must be >= 0. Received: noise_level={noise_level!r}")
    check_logits(model)
    x = _as_batch(x)
    indices = _class_indices(class_index, x.shape[0], model.outputs[0].shape[-1])
    sigma = noise_level * float(tf.reduce_max(x) - tf.reduce_min(x))
    generator = tf.random.Generator.from_seed(0 if seed is None else seed)
    total = tf.zeros(x.shape[:-1])
    for _ in range(num_samples):
        noisy = x + sigma * generator.normal(tf.shape(x))
        total += tf.reduce_max(tf.abs(_input_gradients(model, noisy, indices)), axis=-1)
    maps = (total / num_samples).numpy()
    return normalize_maps(maps) if normalize else maps


# ---------------------------------------------------------------------------------------------
# Occlusion
# ---------------------------------------------------------------------------------------------


def _positions(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)  # the last patch touches the border: every pixel covered
    return starts


def occlusion(
    model: keras.Model,
    x,
    class_index,
    *,
    patch_size: int = 6,
    stride: int = 2,
    baseline: float = 0.5,
    batch_size: int = 256,
    normalize: bool = True,
) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2014): slide a grey patch, watch p(class) drop.

    Every position of a ``patch_size`` square filled with ``baseline`` gives the drop of the
    class probability, p(x) - p(x occluded); a pixel's value is the mean drop over the
    patches that cover it. High values mark the regions the prediction depends on.

    Args:
        model: A model that outputs logits.
        x: Images (batch, H, W, C).
        class_index: One class for all images, or one per image.
        patch_size: Side of the square patch, in [1, min(H, W)].
        stride: Step between patch positions, >= 1.
        baseline: The value the patch fills in (grey 0.5 for images in [0, 1]).
        batch_size: Occluded images per forward pass.
        normalize: Scale each map to [0, 1] (min-max); ``False`` returns the raw drops.

    Returns:
        float32 array (batch, H, W).

    Raises:
        ValueError: Bad patch size or stride, shapes or classes, or a softmax output.
    """
    check_logits(model)
    x = _as_batch(x).numpy()
    n, height, width, _ = x.shape
    if isinstance(patch_size, bool) or not isinstance(patch_size, int):
        raise ValueError(f"patch_size must be an integer. Received: patch_size={patch_size!r}")
    if not 1 <= patch_size <= min(height, width):
        raise ValueError(
            f"patch_size must be in [1, {min(height, width)}]. Received: patch_size={patch_size}"
        )
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer. Received: stride={stride!r}")
    indices = _class_indices(class_index, n, model.outputs[0].shape[-1]).numpy()
    corners = [
        (top, left)
        for top in _positions(height, patch_size, stride)
        for left in _positions(width, patch_size, stride)
    ]

    def probabilities(images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            logits = model(images[start : start + batch_size], training=False)
            out.append(keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1)))
        return np.concatenate(out)

    maps = np.zeros((n, height, width), dtype=np.float32)
    clean = probabilities(x)[np.arange(n), indices]
    counts = np.zeros((height, width), dtype=np.float32)
    for top, left in corners:
        counts[top : top + patch_size, left : left + patch_size] += 1
    for image_index in range(n):
        occluded = np.repeat(x[image_index : image_index + 1], len(corners), axis=0)
        for j, (top, left) in enumerate(corners):
            occluded[j, top : top + patch_size, left : left + patch_size, :] = baseline
        drops = clean[image_index] - probabilities(occluded)[:, indices[image_index]]
        for drop, (top, left) in zip(drops, corners, strict=True):
            maps[image_index, top : top + patch_size, left : left + patch_size] += drop
    maps /= counts
    return normalize_maps(maps, mode="minmax") if normalize else maps


# ---------------------------------------------------------------------------------------------
# CAM and Grad-CAM
# ---------------------------------------------------------------------------------------------


def _gap_head(model: keras.Model) -> tuple[keras.layers.Layer, keras.layers.Dense]:
    ensure_built(model)
    layers = model.layers
    gap_positions = [
        i
        for i, layer in enumerate(layers)
        if isinstance(layer, keras.layers.GlobalAveragePooling2D)
    ]
    head = layers[gap_positions[-1] + 1 :] if gap_positions else []
    middle = head[:-1]
    if (
        not gap_positions
        or not head
        or not isinstance(head[-1], keras.layers.Dense)
        or not all(isinstance(layer, keras.layers.Dropout) for layer in middle)
    ):
        raise ValueError(
            f"cam needs a model whose head is GlobalAveragePooling2D -> (Dropout) -> Dense "
            f"(Zhou et al. 2016); model {model.name!r} ends with "
            f"{[layer.__class__.__name__ for layer in layers[-3:]]}. Use grad_cam instead."
        )
    return layers[gap_positions[-1]], head[-1]


def cam(model: keras.Model, x, class_index, *, normalize: bool = True) -> np.ndarray:
    """Class activation map (Zhou et al. 2016) of a model with a global-average-pooling head.

    With F_k = GAP(f_k) and S_c = sum_k w_{k,c} F_k + b_c, the map is
    M_c = sum_k w_{k,c} f_k over the last feature maps f_k, upsampled to the input.

    Args:
        model: A logits model ending in GlobalAveragePooling2D -> (Dropout) -> Dense.
        x: Images (batch, H, W, C).
        class_index: One class for all images, or one per image.
        normalize: Scale each map to [0, 1] (min-max).

    Returns:
        float32 array (batch, H, W).

    Raises:
        ValueError: A model without a GAP head, bad shapes or classes, a softmax output.
    """
    check_logits(model)
    gap, dense = _gap_head(model)
    x = _as_batch(x)
    indices = _class_indices(class_index, x.shape[0], model.outputs[0].shape[-1])
    features = keras.Model(model_input(model), gap.input)(x, training=False)
    weights = tf.gather(tf.transpose(dense.kernel), indices)  # (batch, K)
    maps = tf.einsum("bhwk,bk->bhw", features, weights)
    maps = _resize(maps, tuple(x.shape[1:3])).numpy()
    return normalize_maps(maps, mode="minmax") if normalize else maps


def grad_cam(
    model: keras.Model, x, class_index, layer_name: str | None = None, *, normalize: bool = True
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) at any convolutional layer.

    With A the layer's feature maps, alpha_k = mean_{h,w} dS_c/dA_{h,w,k} and
    M = ReLU(sum_k alpha_k A_k), bilinearly resized to the input.

    Args:
        model: A model that outputs logits.
        x: Images (batch, H, W, C).
        class_index: One class for all images, or one per image.
        layer_name: The layer whose maps are used; ``None`` takes :func:`last_feature_layer`.
        normalize: Scale each map to [0, 1] by its maximum.

    Returns:
        float32 array (batch, H, W).

    Raises:
        ValueError: An unknown layer (the message lists the names) or one without 4-D output,
            bad shapes or classes, a softmax output.
    """
    check_logits(model)
    x = _as_batch(x)
    indices = _class_indices(class_index, x.shape[0], model.outputs[0].shape[-1])
    layer_name = last_feature_layer(model) if layer_name is None else layer_name
    output_shape = tuple(get_layer(model, layer_name).output.shape)
    if len(output_shape) != 4:
        raise ValueError(
            f"layer_name must name a layer with 4-D feature maps. Received: "
            f"layer_name={layer_name!r} with output shape {output_shape}"
        )
    probe = layer_model(model, layer_name, include_output=True)
    with tf.GradientTape() as tape:
        features, logits = probe(x, training=False)
        score = tf.reduce_sum(_class_scores(logits, indices))
    grads = tape.gradient(score, features)
    grads = tf.zeros_like(features) if grads is None else grads
    alpha = tf.reduce_mean(grads, axis=(1, 2))  # (batch, K)
    maps = tf.nn.relu(tf.einsum("bhwk,bk->bhw", features, alpha))
    maps = _resize(maps, tuple(x.shape[1:3])).numpy()
    return normalize_maps(maps) if normalize else maps
