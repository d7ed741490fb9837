"""Which pixels matter: gradient saliency, SmoothGrad, occlusion, CAM and Grad-CAM.

Also the backward passes that differ only in how they treat ReLUs (deconvnet, guided
backpropagation) and Guided Grad-CAM.

Every method returns one heatmap per image, shape (batch, H, W) at the input's resolution,
float32 in [0, 1] (unless ``normalize=False``), and finite even when every gradient is zero
(an all-zero map then). The class score is the logit before the softmax, as Simonyan et al.
recommend; a model that outputs probabilities is refused with a message that says how to get
the logits. Gradients are taken in float32, also under a ``mixed_float16`` policy. Layers are
found and probed through :mod:`cnn_utils.probe`.

References:
    Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional networks" (saliency).
    Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise".
    Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks" (occlusion).
    Zhou et al. 2016, "Learning deep features for discriminative localization" (CAM).
    Selvaraju et al. 2017, "Grad-CAM: visual explanations from deep networks".
    Springenberg et al. 2015, "Striving for simplicity: the all convolutional net" (guided
    backpropagation, Fig. 1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf

from cnn_utils import _checks, probe

__all__ = [
    "RELU_RULES",
    "backprop_gradients",
    "cam",
    "deconvnet",
    "grad_cam",
    "gradient_saliency",
    "guided_backprop",
    "guided_grad_cam",
    "normalize_maps",
    "occlusion",
    "relu_backward",
    "smoothgrad",
]

_EPS = 1e-12


def _inputs(model: keras.Model, x, class_index) -> tuple[tf.Tensor, tf.Tensor]:
    """Check a logits model, a batch of finite images and its classes; return both as tensors."""
    probe.ensure_built(model)
    x = _checks.images(x, rank=4)
    num_classes = _checks.logits_model(model, x)
    indices = _checks.class_index(class_index, int(x.shape[0]), num_classes)
    return x, indices


def _class_scores(logits: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    return tf.gather(tf.cast(logits, tf.float32), indices, axis=1, batch_dims=1)


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
    _checks.one_of("mode", mode, ("max", "minmax"))
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32))
    axes = tuple(range(1, maps.ndim))
    if mode == "max":
        maps = np.maximum(maps, 0.0)
        low = np.zeros_like(maps.max(axis=axes, keepdims=True))
    else:
        low = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - low
    return np.clip((maps - low) / np.maximum(span, _EPS), 0.0, 1.0).astype(np.float32)


def _resize(maps: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    return tf.image.resize(maps[..., tf.newaxis], size, method="bilinear")[..., 0]


def _input_gradients(model: keras.Model, x: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(_class_scores(model(x, training=False), indices))
    return tf.cast(
        probe.gradient(tape, score, x, what="the class score with respect to x"), tf.float32
    )


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
        ValueError: Bad shapes, values or classes, a softmax output, or a class score that
            does not depend on x.
    """
    normalize = _checks.flag("normalize", normalize)
    x, indices = _inputs(model, x, class_index)
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
        ValueError: Bad sizes, shapes, values or classes, a softmax output, or a class score
            that does not depend on x.
    """
    num_samples = _checks.positive_int("num_samples", num_samples)
    noise_level = _checks.number("noise_level", noise_level, minimum=0)
    seed = _checks.seed(seed)
    normalize = _checks.flag("normalize", normalize)
    x, indices = _inputs(model, x, class_index)
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
    patch_size = _checks.positive_int("patch_size", patch_size)
    stride = _checks.positive_int("stride", stride)
    baseline = _checks.number("baseline", baseline)
    batch_size = _checks.batch_size(batch_size)
    normalize = _checks.flag("normalize", normalize)
    x, indices = _inputs(model, x, class_index)
    x, indices = x.numpy(), indices.numpy()
    n, height, width, _ = x.shape
    if n == 0:
        raise ValueError("x must hold at least one image. Received: 0 images")
    if patch_size > min(height, width):
        raise ValueError(
            f"patch_size must be in [1, {min(height, width)}]. Received: patch_size={patch_size}"
        )
    corners = [
        (top, left)
        for top in _positions(height, patch_size, stride)
        for left in _positions(width, patch_size, stride)
    ]

    def probabilities(images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            logits = model(images[start : start + batch_size], training=False)
            logits = tf.cast(logits, tf.float32)
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
    normalize = _checks.flag("normalize", normalize)
    x, indices = _inputs(model, x, class_index)
    gap, dense = _gap_head(model)
    features = probe.layer_model(model, gap.input)(x, training=False)
    features = tf.cast(features, tf.float32)  # float16 under a mixed precision policy
    weights = tf.gather(tf.transpose(tf.cast(dense.kernel, tf.float32)), indices)  # (batch, K)
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
        layer_name: The layer whose maps are used; ``None`` takes
            :func:`cnn_utils.probe.last_feature_layer`.
        normalize: Scale each map to [0, 1] by its maximum.

    Returns:
        float32 array (batch, H, W).

    Raises:
        ValueError: An unknown layer (the message lists the names) or one without 4-D output,
            bad shapes, values or classes, a softmax output, or a class score that does not
            depend on the layer.
    """
    normalize = _checks.flag("normalize", normalize)
    x, indices = _inputs(model, x, class_index)
    layer_name = probe.last_feature_layer(model) if layer_name is None else layer_name
    output_shape = tuple(probe.layer(model, layer_name).output.shape)
    if len(output_shape) != 4:
        raise ValueError(
            f"layer_name must name a layer with 4-D feature maps. Received: "
            f"layer_name={layer_name!r} with output shape {output_shape}"
        )
    features_and_logits = probe.layer_model(model, [layer_name, None])
    with tf.GradientTape() as tape:
        features, logits = features_and_logits(x, training=False)
        score = tf.reduce_sum(_class_scores(logits, indices))
    what = f"the class score with respect to layer {layer_name!r}"
    grads = tf.cast(probe.gradient(tape, score, features, what=what), tf.float32)
    features = tf.cast(features, tf.float32)
    alpha = tf.reduce_mean(grads, axis=(1, 2))  # (batch, K)
    maps = tf.nn.relu(tf.einsum("bhwk,bk->bhw", features, alpha))
    maps = _resize(maps, tuple(x.shape[1:3])).numpy()
    return normalize_maps(maps) if normalize else maps


# ---------------------------------------------------------------------------------------------
# Deconvnet, guided backpropagation, Guided Grad-CAM
# ---------------------------------------------------------------------------------------------

RELU_RULES = ("standard", "deconvnet", "guided")
"""How a backward pass treats a ReLU with input z and incoming gradient g.

``"standard"``: g * [z > 0] (the true gradient); ``"deconvnet"``: max(g, 0), the forward mask
ignored (Zeiler & Fergus 2014); ``"guided"``: max(g, 0) * [z > 0], both gates
(Springenberg et al. 2015, Fig. 1).
"""


def _rule_relu(rule: str):
    original = tf.nn.relu

    @tf.custom_gradient
    def relu(z):
        def backward(g):
            if rule == "deconvnet":
                return tf.maximum(g, tf.zeros_like(g))
            gate = tf.cast(z > 0, g.dtype)
            return (tf.maximum(g, tf.zeros_like(g)) if rule == "guided" else g) * gate

        return original(z), backward

    def patched(features, name=None):
        del name
        return relu(features)

    return patched


@contextlib.contextmanager
def relu_backward(rule: str) -> Iterator[None]:
    """Inside the block, every ReLU that Keras computes back-propagates by ``rule``.

    Keras' TensorFlow backend computes every ReLU (``activation="relu"``, ``layers.ReLU``,
    ``ops.relu`` inside custom blocks) with ``tf.nn.relu``; the block swaps that function for
    one with the same forward pass and a custom gradient (:data:`RELU_RULES`), and restores it
    on exit. Run the forward pass *and* the gradient inside the block, eagerly.

    Args:
        rule: ``"standard"``, ``"deconvnet"`` or ``"guided"``.

    Raises:
        ValueError: An unknown rule.
    """
    _checks.one_of("rule", rule, RELU_RULES)
    original = tf.nn.relu
    tf.nn.relu = _rule_relu(rule) if rule != "standard" else original
    try:
        yield
    finally:
        tf.nn.relu = original


def backprop_gradients(model: keras.Model, x, class_index, *, rule: str = "guided") -> np.ndarray:
    """dS_c/dI computed with a ReLU rule: the raw, signed (batch, H, W, C) "reconstruction".

    Args:
        model: A model that outputs logits.
        x: Images (batch, H, W, C).
        class_index: One class for all images, or one per image.
        rule: ``"standard"`` (the gradient of :func:`gradient_saliency`), ``"deconvnet"`` or
            ``"guided"`` (:data:`RELU_RULES`).

    Returns:
        float32 array shaped like x.

    Raises:
        ValueError: An unknown rule, bad shapes, values or classes, a softmax output, or a
            class score that does not depend on x.
    """
    _checks.one_of("rule", rule, RELU_RULES)
    x, indices = _inputs(model, x, class_index)
    with relu_backward(rule):
        return _input_gradients(model, x, indices).numpy()


def guided_backprop(model: keras.Model, x, class_index, *, normalize: bool = True) -> np.ndarray:
    """Guided backpropagation (Springenberg et al. 2015): max over channels of |guided grad|.

    At every ReLU the backward signal passes only where the forward input was positive (as in
    the true gradient) *and* the signal itself is positive (as in the deconvnet), so only
    evidence *for* the class flows back: sharper, image-like maps.

    Args:
        model: A model that outputs logits.
        x: Images (batch, H, W, C).
        class_index: One class for all images, or one per image.
        normalize: Scale each map to [0, 1] by its maximum.

    Returns:
        float32 array (batch, H, W).

    Raises:
        ValueError: Bad shapes, values or classes, a softmax output, or a class score that
            does not depend on x.
    """
    normalize = _checks.flag("normalize", normalize)
    maps = np.abs(backprop_gradients(model, x, class_index, rule="guided")).max(axis=-1)
    return normalize_maps(maps) if normalize else maps


def deconvnet(model: keras.Model, x, class_index, *, normalize: bool = True) -> np.ndarray:
    """Deconvnet map (Zeiler & Fergus 2014): the backward pass that ignores the forward mask.

    At every ReLU only the sign of the backward signal counts (max(g, 0)); which units were
    active on this image does not (max-pooling switches are kept, as in the paper).

    Args:
        model: A model that outputs logits.
        x: Images (batch, H, W, C).
        class_index: One class for all images, or one per image.
        normalize: Scale each map to [0, 1] by its maximum.

    Returns:
        float32 array (batch, H, W).

    Raises:
        ValueError: Bad shapes, values or classes, a softmax output, or a class score that
            does not depend on x.
    """
    normalize = _checks.flag("normalize", normalize)
    maps = np.abs(backprop_gradients(model, x, class_index, rule="deconvnet")).max(axis=-1)
    return normalize_maps(maps) if normalize else maps


def guided_grad_cam(
    model: keras.Model, x, class_index, layer_name: str | None = None, *, normalize: bool = True
) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times Grad-CAM.

    Grad-CAM is class-discriminative but coarse, guided backpropagation is fine but hardly
    class-discriminative; their pixel-wise product (Grad-CAM upsampled to the input) is both.

    Args:
        model: A model that outputs logits.
        x: Images (batch, H, W, C).
        class_index: One class for all images, or one per image.
        layer_name: Grad-CAM's layer (``None``: the last feature layer).
        normalize: Scale each map to [0, 1] by its maximum.

    Returns:
        float32 array (batch, H, W).

    Raises:
        ValueError: As :func:`guided_backprop` and :func:`grad_cam`.
    """
    normalize = _checks.flag("normalize", normalize)
    guided = guided_backprop(model, x, class_index, normalize=False)
    cam_maps = grad_cam(model, x, class_index, layer_name, normalize=True)
    maps = guided * cam_maps
    return normalize_maps(maps) if normalize else maps
