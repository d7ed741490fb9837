"""Checks for the exercises of notebook 01 (the building blocks of a CNN).

1. ``same_padding``: by hand, the padding that 'same' adds when a 2x2, stride-2 max pooling
   maps 15 to 8 (worked example B).
2. ``stack_shapes``: by hand, the output sizes of a small stack of layers and its flattened
   length, compared with the shapes Keras builds.
3. ``separable_params``: by hand, the weights of a depthwise-separable convolution (Chollet
   2017; Howard et al. 2017).
4. ``cross_correlation``: the student's NumPy convolution layer ('valid', strides), compared
   with ``keras.layers.Conv2D``, which computes a cross-correlation (no kernel flip).
5. ``tell_apart``: an arrangement of the "face" parts of section 5 whose globally max-pooled
   features differ from the face's: where must the parts be for pooling to notice?
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from cnn_utils.exercises import (
    NOT_ATTEMPTED,
    Feedback,
    Wrong,
    as_number,
    close,
    not_attempted,
    report,
)

__all__ = [
    "FACE",
    "cross_correlation",
    "place",
    "same_padding",
    "separable_params",
    "stack_shapes",
    "tell_apart",
]


def _is(value: float, expected: float) -> bool:
    return close(value, expected, rel=1e-9, abs_=1e-9)


# ---------------------------------------------------------------------------------------------
# 1. 'same' padding
# ---------------------------------------------------------------------------------------------


def same_padding(answer, *, verbose: int = 1) -> Feedback:
    """Check the total padding (rows) that 'same' adds for a 2x2/2 pooling of 15 rows."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_number(answer, "the padding")
        if _is(value, 1):
            return (
                "Keras (TensorFlow) puts the odd row at the bottom (and the column at the right)."
            )
        if _is(value, 0):
            raise Wrong("without padding, (15 - 2) // 2 + 1 = 7 rows: 'same' must give 8.")
        if _is(value, 2):
            raise Wrong(
                "that gives (15 + 2 - 2) // 2 + 1 = 8 too, but 'same' adds the least that works."
            )
        if _is(value, 0.5):
            raise Wrong("padding comes in whole rows; count the total over both sides.")
        raise Wrong("solve (15 + P - 2) // 2 + 1 = 8 for the smallest P.")

    return report("1.1", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 2. Shapes through a stack
# ---------------------------------------------------------------------------------------------

STACK = [
    ("conv", {"filters": 8, "kernel_size": 5, "strides": 2, "padding": "valid"}),
    ("pool", {"pool_size": 3, "strides": 2, "padding": "valid"}),
    ("conv", {"filters": 16, "kernel_size": 3, "strides": 1, "padding": "same"}),
]
"""The stack of exercise 1.2, on a 64x64x3 input."""


def build_stack() -> keras.Model:
    """The model of exercise 1.2: :data:`STACK` then Flatten, on 64x64x3 images."""
    layers = [keras.Input((64, 64, 3))]
    for kind, kwargs in STACK:
        layers.append(
            keras.layers.Conv2D(**kwargs) if kind == "conv" else keras.layers.MaxPooling2D(**kwargs)
        )
    layers.append(keras.layers.Flatten())
    return keras.Sequential(layers)


def stack_shapes(sizes, flat, *, verbose: int = 1) -> Feedback:
    """Check the spatial size after each layer of :data:`STACK` and the flattened length."""

    def test():
        if not_attempted(sizes) or not_attempted(flat):
            return NOT_ATTEMPTED
        model = build_stack()
        expected = [layer.output.shape[1] for layer in model.layers[:-1]]
        try:
            got = [int(s) for s in sizes]
        except (TypeError, ValueError):
            raise Wrong("sizes should be a list of three integers, one per layer.") from None
        if len(got) != len(expected):
            raise Wrong(f"{len(got)} sizes for {len(expected)} layers.")
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            if g != e:
                what = ["the strided 'valid' convolution", "the pooling", "the 'same' convolution"]
                raise Wrong(f"the size after {what[index]} is off: (W - F + 2P) // S + 1.")
        if not _is(as_number(flat, "flat"), model.output_shape[-1]):
            raise Wrong("the flattened length is height x width x channels of the last map.")
        return None

    return report("1.2", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 3. Depthwise-separable convolution
# ---------------------------------------------------------------------------------------------


def separable_params(answer, kernel: int, c_in: int, c_out: int, *, verbose: int = 1) -> Feedback:
    """Check the weights (no biases) of a depthwise-separable convolution."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_number(answer, "the weight count")
        depthwise, pointwise = kernel * kernel * c_in, c_in * c_out
        if _is(value, depthwise + pointwise):
            return f"{kernel * kernel * c_in * c_out / value:.1f}x fewer than a full convolution."
        if _is(value, depthwise + pointwise + c_out) or _is(
            value, depthwise + pointwise + c_in + c_out
        ):
            raise Wrong("count the weights only, without biases.")
        if _is(value, kernel * kernel * c_in * c_out):
            raise Wrong("that is the full convolution: split it into a depthwise and a 1x1 part.")
        if _is(value, kernel * kernel * c_out + c_in * c_out):
            raise Wrong("the depthwise part has one k x k filter per input channel.")
        raise Wrong("one k x k filter per input channel, then a 1x1 convolution to C_out.")

    return report("1.3", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 4. Cross-correlation in NumPy
# ---------------------------------------------------------------------------------------------


def cross_correlation(fn: Callable, *, verbose: int = 1) -> Feedback:
    """Check ``fn(x, kernel, stride)`` for x (H, W, C_in), kernel (k, k, C_in, C_out), 'valid'."""

    def test():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(9, 8, 3)).astype("float32")
        kernel = rng.normal(size=(3, 3, 3, 2)).astype("float32")
        conv = keras.layers.Conv2D(2, 3, strides=2, use_bias=False)
        conv.build((None, 9, 8, 3))
        conv.set_weights([kernel])
        expected = np.asarray(conv(x[np.newaxis]))[0]
        out = fn(x, kernel, 2)
        if out is None:
            raise Wrong("your function returns None: return the output array.")
        got = np.asarray(out, dtype=np.float64)
        if got.shape != expected.shape:
            raise Wrong(
                f"output shape {got.shape} but {expected.shape} was expected: "
                "(H - k) // stride + 1 rows and columns, one channel per filter."
            )
        if np.allclose(got, expected, atol=1e-4):
            return None
        flipped = kernel[::-1, ::-1]
        conv.set_weights([flipped])
        if np.allclose(got, np.asarray(conv(x[np.newaxis]))[0], atol=1e-4):
            raise Wrong(
                "you flipped the kernel: that is the mathematical convolution; Conv2D computes "
                "the cross-correlation (no flip)."
            )
        raise Wrong(
            "right shape, wrong values: sum window x filter over rows, columns and channels."
        )

    return report("1.4", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 5. Pooling and the arrangement of parts
# ---------------------------------------------------------------------------------------------

CANVAS, PART = 28, 6
"""The canvas and part sizes of section 5's face."""


def face_parts() -> dict[str, np.ndarray]:
    """The parts of section 5: an eye, a nose and a mouth (6x6, values in [0, 1), seed 0)."""
    rng = np.random.default_rng(0)
    eye, nose, mouth = (rng.uniform(size=(PART, PART)).astype("float32") for _ in range(3))
    return {"eye": eye, "nose": nose, "mouth": mouth}


def place(positions: Sequence[tuple[int, int]]) -> np.ndarray:
    """Draw eye, eye, nose, mouth with their top-left corners at ``positions``."""
    parts = face_parts()
    canvas = np.zeros((CANVAS, CANVAS), "float32")
    for name, (r, c) in zip(("eye", "eye", "nose", "mouth"), positions, strict=True):
        canvas[r : r + PART, c : c + PART] = parts[name]
    return canvas


FACE = [(3, 3), (3, 19), (11, 11), (20, 11)]
"""Section 5's face: the two eyes, the nose and the mouth."""


def detectors(count: int = 5) -> list[keras.Model]:
    """``count`` fresh 3x3 ReLU convolutions (16 filters, seeds 0...) with global max pooling."""
    models = []
    for seed in range(count):
        models.append(
            keras.Sequential(
                [
                    keras.Input((CANVAS, CANVAS, 1)),
                    keras.layers.Conv2D(
                        16,
                        3,
                        activation="relu",
                        kernel_initializer=keras.initializers.GlorotUniform(seed),
                    ),
                    keras.layers.GlobalMaxPooling2D(),
                ]
            )
        )
    return models


def tell_apart(positions, *, verbose: int = 1) -> Feedback:
    """Check an arrangement of eye, eye, nose, mouth that global max pooling tells from the face.

    The parts must lie inside the canvas without overlapping (each part stays whole); the
    pooled features of at least one of five fresh detectors must differ from the face's.
    """

    def test():
        if not_attempted(positions):
            return NOT_ATTEMPTED
        try:
            corners = [(int(r), int(c)) for r, c in positions]
        except (TypeError, ValueError):
            raise Wrong("positions should be four (row, column) pairs.") from None
        if len(corners) != 4:
            raise Wrong("four positions: eye, eye, nose, mouth.")
        for r, c in corners:
            if not (0 <= r <= CANVAS - PART and 0 <= c <= CANVAS - PART):
                raise Wrong(f"a part at {(r, c)} leaves the {CANVAS}x{CANVAS} canvas.")
        mask = np.zeros((CANVAS, CANVAS), int)
        for r, c in corners:
            mask[r : r + PART, c : c + PART] += 1
        if mask.max() > 1:
            raise Wrong("two parts overlap, so a part is no longer whole: keep them apart.")
        pair = np.stack([place(FACE), place(corners)])[..., np.newaxis]
        differ = [float(np.abs(np.diff(np.asarray(d(pair)), axis=0)).max()) for d in detectors()]
        if max(differ) > 1e-4:
            return f"{sum(d > 1e-4 for d in differ)} of 5 detectors tell them apart."
        raise Wrong(
            "the pooled features are the same as the face's for all 5 detectors: where must "
            "two parts be for one 3x3 window to see both?"
        )

    return report("1.5", test, verbose=verbose)
