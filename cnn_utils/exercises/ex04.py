"""Checks for the exercises of notebook 04 (visualising what a CNN learned).

1. ``receptive_field``: by hand, how many input pixels one unit of a layer sees (checked
   against :func:`cnn_utils.shapes.receptive_field` of the model's own kernel sizes and strides;
   a gradient measurement would undercount an untrained network, where max pooling passes the
   gradient through one input per window and dead ReLUs cut paths).
2. ``saliency_function``: the saliency map of Simonyan et al. (2014) written by the student,
   compared with :func:`cnn_utils.saliency.gradient_saliency`.
3. ``grad_cam_function``: Grad-CAM's weights (globally averaged gradients) and map at the
   layer's own resolution, compared with the same computation as
   :func:`cnn_utils.saliency.grad_cam` (before its resize).
4. ``occlusion_position``: the position of the grey patch that lowers the true class's
   probability most (Zeiler & Fergus 2014), found with a loop of forward passes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from cnn_utils import probe, shapes
from cnn_utils.exercises import (
    NOT_ATTEMPTED,
    Feedback,
    Wrong,
    as_array,
    as_number,
    close,
    not_attempted,
    report,
)

__all__ = [
    "grad_cam_function",
    "occlusion_drops",
    "occlusion_position",
    "receptive_field",
    "saliency_function",
]


def _class_indices(class_index, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(class_index, dtype=np.int64).reshape(-1), (n,)).copy()


def _score_gradients(model, x: np.ndarray, indices: np.ndarray, *, probability: bool = False):
    x_t = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        out = tf.cast(model(x_t, training=False), tf.float32)
        out = tf.nn.softmax(out, axis=-1) if probability else out
        score = tf.reduce_sum(tf.gather(out, indices, axis=1, batch_dims=1))
    return tape.gradient(score, x_t).numpy()


def _per_map_max(maps: np.ndarray) -> np.ndarray:
    peak = np.abs(maps).reshape(len(maps), -1).max(axis=1)
    return maps / np.maximum(peak, 1e-12).reshape(-1, *([1] * (maps.ndim - 1)))


def _same_maps(a: np.ndarray, b: np.ndarray, atol: float = 2e-3) -> bool:
    """Equal up to a positive scale per map (a student may normalise, or not)."""
    return bool(np.allclose(_per_map_max(a), _per_map_max(b), atol=atol))


# ---------------------------------------------------------------------------------------------
# 1. The receptive field by hand
# ---------------------------------------------------------------------------------------------


def _stack(model, layer_name: str) -> list[tuple[int, int]]:
    """(kernel size, stride) of every convolution and pooling layer up to ``layer_name``."""
    stack = []
    for layer in model.layers:
        kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        if kernel is not None:
            stack.append((int(kernel[0]), int(layer.strides[0])))
        if layer.name == layer_name:
            return stack
    raise ValueError(f"layer_name {layer_name!r} is not a layer of model {model.name!r}")


def receptive_field(answer, model, layer_name: str, *, verbose: int = 1) -> Feedback:
    """Check the receptive field (pixels per side) of one unit of ``layer_name``."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_number(answer, "the receptive field")
        stack = _stack(model, layer_name)
        kernels = [k for k, _ in stack]
        if close(value, shapes.receptive_field(kernels, [s for _, s in stack])):
            return None
        convs_only = [k for k, s in stack if s == 1]
        if close(value, shapes.receptive_field(convs_only)):
            raise Wrong(
                "you added the 3x3 convolutions only: the poolings also widen the field, and "
                "after each one a step of one unit is a step of several pixels."
            )
        if close(value, shapes.receptive_field(kernels)):
            raise Wrong(
                "every layer's (k - 1) is right, but it must be multiplied by the product of "
                "the strides of the layers before it (the jump)."
            )
        if close(value, shapes.receptive_field(kernels[:-1], [s for _, s in stack[:-1]])):
            raise Wrong("you stopped one layer early: include the layer's own convolution.")
        raise Wrong(
            "not the receptive field of this stack: use r = 1 + sum_i (k_i - 1) * "
            "(product of the strides before layer i), pooling layers included."
        )

    return report("4.1", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 2. The saliency map by hand
# ---------------------------------------------------------------------------------------------


def saliency_function(fn: Callable, model, x, class_index, *, verbose: int = 1) -> Feedback:
    """Check ``fn(model, x, class_index)`` -> (batch, H, W) against gradient saliency.

    The maps may be scaled per image (normalised or not); they must equal
    max_channels |dS_c / dI| with S_c the logit of ``class_index``.
    """

    def test():
        x_np = np.asarray(x, dtype=np.float32)
        indices = _class_indices(class_index, len(x_np))
        out = fn(model, x_np, class_index)
        if out is None:
            raise Wrong("your function returns None: return the maps.")
        out = np.asarray(out, dtype=np.float64)
        if out.shape == x_np.shape:
            raise Wrong(
                f"shape {out.shape}: one value per pixel *and channel*; take the maximum over "
                "the channel axis to get one map (batch, H, W)."
            )
        maps = as_array(out, x_np.shape[:-1], "the maps")
        grads = _score_gradients(model, x_np, indices)
        reference = np.abs(grads).max(axis=-1)
        if _same_maps(maps, reference):
            return None
        if maps.min() < 0 and _same_maps(maps, grads.max(axis=-1)):
            raise Wrong("your maps have negative values: take the absolute value of the gradient.")
        prob = np.abs(_score_gradients(model, x_np, indices, probability=True)).max(axis=-1)
        if _same_maps(maps, prob):
            raise Wrong(
                "this is the gradient of the softmax probability: differentiate the class score "
                "S_c before the softmax (the logit)."
            )
        raise Wrong(
            "the maps differ from max over channels of |dS_c/dI|: take the gradient of the "
            "chosen class's logit with respect to the image."
        )

    return report("4.2", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 3. Grad-CAM's weights and map
# ---------------------------------------------------------------------------------------------


def _grad_cam_parts(model, x: np.ndarray, indices: np.ndarray, layer_name: str, prob=False):
    features_and_logits = probe.layer_model(model, [layer_name, None])
    x_t = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        features, logits = features_and_logits(x_t, training=False)
        out = tf.cast(logits, tf.float32)
        out = tf.nn.softmax(out, axis=-1) if prob else out
        score = tf.reduce_sum(tf.gather(out, indices, axis=1, batch_dims=1))
    grads = tape.gradient(score, features).numpy()
    return np.asarray(features, dtype=np.float64), grads.astype(np.float64)


def grad_cam_function(
    fn: Callable, model, x, class_index, layer_name: str, *, verbose: int = 1
) -> Feedback:
    """Check ``fn(model, x, class_index, layer_name)`` -> ``(alpha, maps)``.

    ``alpha`` (batch, K): the gradients of the class logit with respect to the layer's maps,
    averaged over the positions; ``maps`` (batch, h, w): ReLU(sum_k alpha_k A_k) at the
    layer's own resolution (not resized, not normalised).
    """

    def test():
        x_np = np.asarray(x, dtype=np.float32)
        indices = _class_indices(class_index, len(x_np))
        result = fn(model, x_np, class_index, layer_name)
        if result is None:
            raise Wrong("your function returns None: return the pair (alpha, maps).")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Wrong("return a pair (alpha, maps).")
        features, grads = _grad_cam_parts(model, x_np, indices, layer_name)
        n, h, w, k = features.shape
        alpha = as_array(result[0], (n, k), "alpha")
        expected = grads.mean(axis=(1, 2))
        if not np.allclose(alpha, expected, rtol=1e-3, atol=1e-6):
            if np.allclose(alpha, grads.sum(axis=(1, 2)), rtol=1e-3, atol=1e-6):
                raise Wrong("alpha is a sum over the positions: Grad-CAM takes their mean.")
            if np.allclose(alpha, grads.max(axis=(1, 2)), rtol=1e-3, atol=1e-6):
                raise Wrong("alpha is a maximum over the positions: Grad-CAM takes their mean.")
            _, prob_grads = _grad_cam_parts(model, x_np, indices, layer_name, prob=True)
            if np.allclose(alpha, prob_grads.mean(axis=(1, 2)), rtol=1e-3, atol=1e-6):
                raise Wrong("alpha comes from the softmax probability: use the logit S_c.")
            raise Wrong(
                "alpha differs from the spatial mean of dS_c/dA_k: differentiate the class "
                "logit with respect to the layer's feature maps A."
            )
        maps = as_array(result[1], (n, h, w), "maps")
        weighted = np.einsum("bhwk,bk->bhw", features, expected)
        if np.allclose(maps, np.maximum(weighted, 0), rtol=1e-3, atol=1e-5):
            return None
        if np.allclose(maps, weighted, rtol=1e-3, atol=1e-5):
            raise Wrong("the maps have negative values: apply the ReLU to sum_k alpha_k A_k.")
        if _same_maps(maps, np.maximum(weighted, 0)):
            raise Wrong("the right map up to a scale: return it before any normalisation.")
        raise Wrong("alpha is right; the maps are not ReLU(sum_k alpha_k A_k) at each position.")

    return report("4.3", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 4. Occlusion by hand
# ---------------------------------------------------------------------------------------------


def occlusion_drops(model, image, label: int, patch_size: int, stride: int) -> dict:
    """p(label | image) minus p(label | occluded image), for each top-left corner on the grid."""
    image = np.asarray(image, dtype=np.float32).reshape(1, *np.shape(image)[-3:])
    height, width = image.shape[1:3]
    corners = [
        (top, left)
        for top in range(0, height - patch_size + 1, stride)
        for left in range(0, width - patch_size + 1, stride)
    ]
    occluded = np.repeat(image, len(corners), axis=0)
    for j, (top, left) in enumerate(corners):
        occluded[j, top : top + patch_size, left : left + patch_size, :] = 0.5
    batch = np.concatenate([image, occluded])
    probabilities = tf.nn.softmax(tf.cast(model(batch, training=False), tf.float32)).numpy()
    drops = probabilities[0, label] - probabilities[1:, label]
    return dict(zip(corners, drops.tolist(), strict=True))


def occlusion_position(
    answer, model, image, label: int, *, patch_size: int = 6, stride: int = 2, verbose: int = 1
) -> Feedback:
    """Check ``(top, left)``: the grid corner whose grey patch lowers p(label) most."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        try:
            top, left = (int(v) for v in answer)
        except (TypeError, ValueError):
            raise Wrong("answer with a pair of integers (top, left).") from None
        drops = occlusion_drops(model, image, label, patch_size, stride)
        if (top, left) not in drops:
            raise Wrong(
                f"({top}, {left}) is not a corner of the grid: rows and columns 0, {stride}, "
                f"{2 * stride}, ... up to where a {patch_size}x{patch_size} patch still fits."
            )
        best = max(drops.values())
        if drops[(top, left)] >= best - 1e-6:
            return None
        if drops.get((left, top), -np.inf) >= best - 1e-6:
            raise Wrong("rows and columns are swapped: give (top, left) = (row, column).")
        if drops[(top, left)] <= min(drops.values()) + 1e-6:
            raise Wrong(
                "this patch lowers the probability least: the drop is p(clean) - p(occluded)."
            )
        raise Wrong(
            f"this patch lowers p by {drops[(top, left)]:.3f}; another position lowers it more."
        )

    return report("4.4", test, verbose=verbose)
