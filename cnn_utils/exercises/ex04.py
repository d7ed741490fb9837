"""Checks for the exercises of notebook 04 (visualising what a CNN learned).

1. ``receptive_field``: by hand, how many input pixels one unit of a deeper CNN's relu3_1
   sees (checked against :func:`cnn_utils.shapes.receptive_field` of its kernels and strides;
   a gradient measurement would undercount an untrained network, where max pooling passes the
   gradient through one input per window and dead ReLUs cut paths).
2. ``saliency_function``: the saliency map of Simonyan et al. (2014) written by the student,
   on the notebook's images and on colour images of a random 3-channel CNN (where the maximum
   over channels matters), the package's maps switched off.
3. ``grad_cam_function``: Grad-CAM's weights (globally averaged gradients) and map at the
   layer's own resolution, on the notebook's CNN and on another network and layer.
4. ``occlusion_function``: the map of drops of a grey patch (Zeiler & Fergus 2014) written by
   the student, for patch sizes and strides the notebook does not use; ``occlusion_agrees``:
   the student's decision whether Grad-CAM agrees with it on that image.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from cnn_utils import models, probe, saliency, shapes
from cnn_utils.exercises import (
    NOT_ATTEMPTED,
    Feedback,
    Wrong,
    as_array,
    as_int,
    copied,
    forbid,
    not_attempted,
    report,
    student_code,
)

__all__ = [
    "OCCLUSION_CASES",
    "grad_cam_function",
    "occlusion_agrees",
    "occlusion_function",
    "occlusion_image",
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


def _colour_case():
    """A small random colour CNN and four colour images (12x12x3): a case the notebook lacks."""
    init = keras.initializers.GlorotUniform
    model = keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=init(1), name="conv_a"),
            keras.layers.Conv2D(6, 3, activation="relu", kernel_initializer=init(2), name="conv_b"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5, kernel_initializer=init(3)),
        ]
    )
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(4, 12, 12, 3)).astype("float32")
    return model, x, np.array([0, 3, 1, 4])


def _package_maps() -> list[tuple[object, str]]:
    return [(saliency, name) for name in saliency.__all__ if callable(getattr(saliency, name))]


_OWN = "write it with a GradientTape yourself."


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


def _deeper_model():
    """The network of exercise 4.1: notebook 01's CNN with two 3x3 convolutions per stage."""
    return models.small_cnn(filters=(32, 64, 128), convs_per_stage=2, head="flatten")


def receptive_field(answer, *, verbose: int = 1) -> Feedback:
    """Check the receptive field (pixels per side) of one unit of the deeper CNN's relu3_1."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_int(answer, "the receptive field")
        stack = _stack(_deeper_model(), "relu3_1")
        kernels = [k for k, _ in stack]
        expected = shapes.receptive_field(kernels, [s for _, s in stack])
        if value == expected:
            return None
        convs_only = [k for k, s in stack if s == 1]
        if value == shapes.receptive_field(convs_only):
            raise Wrong(
                "you added the 3x3 convolutions only: the poolings also widen the field, and "
                "after each one a step of one unit is a step of several pixels."
            )
        if value == shapes.receptive_field(kernels):
            raise Wrong(
                "every layer's (k - 1) is right, but it must be multiplied by the product of "
                "the strides of the layers before it (the jump)."
            )
        if value == shapes.receptive_field(kernels[:-1], [s for _, s in stack[:-1]]):
            raise Wrong("you stopped one layer early: include the layer's own convolution.")
        raise Wrong(
            ("too large" if value > expected else "too small")
            + ": use r = 1 + sum_i (k_i - 1) * (product of the strides before layer i), "
            "pooling layers included."
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
        colour_model, colour_x, colour_y = _colour_case()
        cases = [(model, np.asarray(x, np.float32), class_index, "these images")]
        cases.append((colour_model, colour_x, colour_y, "colour images (a random 3-channel CNN)"))
        for case in cases:
            _saliency_case(fn, *case)
        return None

    return report("4.2", test, verbose=verbose)


def _saliency_case(fn, model, x_np, class_index, where: str) -> None:
    """Raise :class:`Wrong` unless ``fn`` gives the saliency maps of ``x_np``."""
    indices = _class_indices(class_index, len(x_np))
    with student_code(), forbid(*_package_maps(), reason=_OWN):
        out = fn(model, copied(x_np), copied(np.asarray(class_index), "int64"))
        if out is None:
            raise Wrong("your function returns None: return the maps.")
        out = np.asarray(out, dtype=np.float64)
    if out.shape == x_np.shape:
        raise Wrong(
            f"shape {out.shape}: one value per pixel *and channel*; take the maximum over "
            "the channel axis to get one map (batch, H, W)."
        )
    maps = as_array(out, x_np.shape[:-1], f"the maps of {where}")
    grads = _score_gradients(model, x_np, indices)
    reference = np.abs(grads).max(axis=-1)
    if _same_maps(maps, reference):
        return
    if grads.shape[-1] > 1 and _same_maps(maps, np.abs(grads).mean(axis=-1)):
        raise Wrong(f"on {where} your maps average the channels: take the maximum over them.")
    if maps.min() < 0 and _same_maps(maps, grads.max(axis=-1)):
        raise Wrong("your maps have negative values: take the absolute value of the gradient.")
    prob = np.abs(_score_gradients(model, x_np, indices, probability=True)).max(axis=-1)
    if _same_maps(maps, prob):
        raise Wrong(
            "this is the gradient of the softmax probability: differentiate the class score "
            "S_c before the softmax (the logit)."
        )
    raise Wrong(
        f"on {where} the maps differ from max over channels of |dS_c/dI|: take the "
        "gradient of the chosen class's logit with respect to the image."
    )


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
        colour_model, colour_x, colour_y = _colour_case()
        cases = [(model, np.asarray(x, np.float32), class_index, layer_name)]
        cases.append((colour_model, colour_x, colour_y, "conv_b"))
        for case in cases:
            _grad_cam_case(fn, *case)
        return None

    return report("4.3", test, verbose=verbose)


def _grad_cam_case(fn, model, x_np, class_index, layer_name) -> None:
    """Raise :class:`Wrong` unless ``fn`` gives Grad-CAM's weights and maps at ``layer_name``."""
    indices = _class_indices(class_index, len(x_np))
    with student_code(), forbid(*_package_maps(), reason=_OWN):
        result = fn(model, copied(x_np), copied(np.asarray(class_index), "int64"), layer_name)
        if result is None:
            raise Wrong("your function returns None: return the pair (alpha, maps).")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Wrong("return a pair (alpha, maps).")
        result = [np.asarray(part, np.float64) for part in result]
    features, grads = _grad_cam_parts(model, x_np, indices, layer_name)
    n, h, w, k = features.shape
    alpha = as_array(result[0], (n, k), f"alpha at {layer_name}")
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
    maps = as_array(result[1], (n, h, w), f"maps at {layer_name}")
    weighted = np.einsum("bhwk,bk->bhw", features, expected)
    if np.allclose(maps, np.maximum(weighted, 0), rtol=1e-3, atol=1e-5):
        return
    if np.allclose(maps, weighted, rtol=1e-3, atol=1e-5):
        raise Wrong("the maps have negative values: apply the ReLU to sum_k alpha_k A_k.")
    if _same_maps(maps, np.maximum(weighted, 0)):
        raise Wrong("the right map up to a scale: return it before any normalisation.")
    raise Wrong("alpha is right; the maps are not ReLU(sum_k alpha_k A_k) at each position.")


# ---------------------------------------------------------------------------------------------
# 4. Occlusion by hand
# ---------------------------------------------------------------------------------------------


def _occlusion_drops(model, image, label: int, patch_size: int, stride: int) -> np.ndarray:
    """p(label | image) - p(label | occluded image) on the grid of top-left corners (2-D)."""
    image = np.asarray(image, dtype=np.float32).reshape(1, *np.shape(image)[-3:])
    height, width = image.shape[1:3]
    tops = range(0, height - patch_size + 1, stride)
    lefts = range(0, width - patch_size + 1, stride)
    occluded = np.repeat(image, len(tops) * len(lefts), axis=0)
    for j, (top, left) in enumerate((t, m) for t in tops for m in lefts):
        occluded[j, top : top + patch_size, left : left + patch_size, :] = 0.5
    batch = np.concatenate([image, occluded])
    probabilities = tf.nn.softmax(tf.cast(model(batch, training=False), tf.float32)).numpy()
    drops = probabilities[0, label] - probabilities[1:, label]
    return drops.reshape(len(tops), len(lefts)).astype(np.float64)


def occlusion_image(model, x, y) -> tuple[np.ndarray, int]:
    """The image of exercise 4.4 and its label: the first of ``x`` that a 6x6 patch can move.

    "Can move": some grey patch (stride 2) lowers the probability of the true class by more
    than 0.2. Returns the problem, not its answer.
    """
    x_np, y_np = np.asarray(x, np.float32), np.asarray(y).reshape(-1)
    for image, label in zip(x_np, y_np, strict=True):
        if _occlusion_drops(model, image, int(label), 6, 2).max() > 0.2:
            return image.copy(), int(label)
    return x_np[0].copy(), int(y_np[0])


OCCLUSION_CASES = ((6, 2), (4, 3), (8, 4))
"""(patch size, stride) of the occlusion maps exercise 4.4 asks for (the notebook shows one)."""


def occlusion_function(fn: Callable, model, x, y, *, verbose: int = 1) -> Feedback:
    """Check ``fn(model, image, label, patch_size, stride)`` -> the 2-D map of drops.

    Entry ``[i, j]`` is p(label | image) - p(label | image with a grey (0.5) patch whose
    top-left corner is at row ``i * stride``, column ``j * stride``). Run on the image of
    :func:`occlusion_image` and on another image of ``x``, with the patch sizes and strides of
    :data:`OCCLUSION_CASES`, the package's occlusion switched off.
    """

    def test():
        image, label = occlusion_image(model, x, y)
        x_np, y_np = np.asarray(x, np.float32), np.asarray(y).reshape(-1)
        other = int(np.argmin([np.abs(image - candidate).sum() == 0 for candidate in x_np]))
        images = [(image, label), (x_np[other], int(y_np[other]))]
        for (size, stride), (picture, truth) in zip(
            OCCLUSION_CASES, images + images[:1], strict=True
        ):
            expected = _occlusion_drops(model, picture, truth, size, stride)
            with student_code(), forbid(*_package_maps(), reason="write the loop yourself."):
                out = fn(model, copied(picture), truth, size, stride)
                if out is None:
                    raise Wrong("your function returns None: return the map of drops.")
                got = np.asarray(out, np.float64)
            case = f"for a {size}x{size} patch with stride {stride}"
            if got.shape != expected.shape:
                raise Wrong(
                    f"{case} the map has shape {got.shape}, not {expected.shape}: one value per "
                    "top-left corner, (H - patch) // stride + 1 of them per side."
                )
            if np.allclose(got, expected, atol=1e-4):
                continue
            if np.allclose(got, -expected, atol=1e-4):
                raise Wrong("the sign is flipped: the drop is p(clean) - p(occluded).")
            if np.allclose(got, expected.T, atol=1e-4):
                raise Wrong("rows and columns are swapped: entry [i, j] is row i, column j.")
            raise Wrong(
                f"{case} the values differ: grey (0.5) patch, softmax probability of the true "
                "class, clean minus occluded."
            )
        return None

    return report("4.4a", test, verbose=verbose)


def occlusion_agrees(answer, model, x, y, *, verbose: int = 1) -> Feedback:
    """Check the decision: does Grad-CAM (relu3_1) agree with occlusion on the 4.4 image?

    "Agree" is the criterion stated in the exercise: the Grad-CAM map's mean over the 6x6
    square at the corner of the largest drop (stride 2) is above its mean over the image.
    """

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        if not isinstance(answer, (bool, np.bool_)):
            raise Wrong(f"answer True or False; got {answer!r}.")
        image, label = occlusion_image(model, x, y)
        drops = _occlusion_drops(model, image, label, 6, 2)
        top, left = (2 * int(v) for v in np.unravel_index(np.argmax(drops), drops.shape))
        cam = np.asarray(saliency.grad_cam(model, image[None], label, layer_name="relu3_1"))[0]
        agrees = bool(cam[top : top + 6, left : left + 6].mean() > cam.mean())
        if bool(answer) == agrees:
            return None
        raise Wrong(
            "not what the two maps show: draw the square of the largest drop on the Grad-CAM "
            "map and compare the map's mean inside it with its mean over the image."
        )

    return report("4.4b", test, verbose=verbose)
