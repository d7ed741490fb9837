"""Checks for the exercises of notebook 01 (the building blocks of a CNN).

1. ``same_padding``: by hand, the padding that 'same' adds when a 2x2, stride-2 max pooling
   maps 15 to 8 (worked example B), and where Keras puts it (tested on a map whose row r
   holds r: the windows show which rows were paired).
2. ``stack_shapes``: by hand, the output sizes of a small stack of layers and its flattened
   length, compared with the shapes Keras builds.
3. ``separable_params``: by hand, the weights of a depthwise-separable convolution (Chollet
   2017; Howard et al. 2017).
4. ``cross_correlation``: the student's NumPy convolution layer ('valid', strides), compared
   with ``keras.layers.Conv2D``, which computes a cross-correlation (no kernel flip).
5. ``tell_apart``: an arrangement of the "face" parts of section 5 whose globally max-pooled
   features differ from the face's, for the reason asked (a window that sees two parts; parts
   kept away from the edge, where a missing window would be another reason).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from cnn_utils.exercises import (
    NOT_ATTEMPTED,
    Feedback,
    Wrong,
    as_int,
    as_number,
    close,
    copied,
    forbid,
    not_attempted,
    report,
    student_code,
)

__all__ = [
    "FACE",
    "SEPARABLE",
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

SIDES = ("top", "bottom", "both")
"""The answers allowed for where the padding goes."""


def same_padding(total, where=..., *, verbose: int = 1) -> Feedback:
    """Check the rows 'same' adds for a 2x2/2 pooling of 15 rows, and where Keras puts them."""

    def test():
        if not_attempted(total) or not_attempted(where):
            return NOT_ATTEMPTED
        value = as_number(total, "the padding")
        if _is(value, 0.5):
            raise Wrong("padding comes in whole rows; count the total over both sides.")
        value = as_int(total, "the padding")
        if value == 0:
            raise Wrong("without padding, (15 - 2) // 2 + 1 = 7 rows: 'same' must give 8.")
        if value == 2:
            raise Wrong(
                "that gives (15 + 2 - 2) // 2 + 1 = 8 too, but 'same' adds the least that works."
            )
        if value != 1:
            raise Wrong("solve (15 + P - 2) // 2 + 1 = 8 for the smallest P.")
        if where not in SIDES:
            raise Wrong(f"where should be one of {', '.join(map(repr, SIDES))}; got {where!r}.")
        if where == "both":
            raise Wrong("one row cannot be split over both sides: test it on the row-index map.")
        if where == "top":
            raise Wrong(
                "pool the map whose row r holds r: with a row on top, row 0 would sit alone in "
                "the first window. Which rows share the first window in Keras?"
            )
        return "Keras (TensorFlow) puts the odd row at the bottom (and the column at the right)."

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


def _build_stack() -> keras.Model:
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
        model = _build_stack()
        expected = [layer.output.shape[1] for layer in model.layers[:-1]]
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
            raise Wrong("sizes should be a list of three integers, one per layer.")
        got = [as_int(s, "each size") for s in sizes]
        if len(got) != len(expected):
            raise Wrong(f"{len(got)} sizes for {len(expected)} layers.")
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            if g != e:
                what = ["the strided 'valid' convolution", "the pooling", "the 'same' convolution"]
                raise Wrong(f"the size after {what[index]} is off: (W - F + 2P) // S + 1.")
        if as_int(flat, "flat") != model.output_shape[-1]:
            raise Wrong("the flattened length is height x width x channels of the last map.")
        return None

    return report("1.2", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 3. Depthwise-separable convolution
# ---------------------------------------------------------------------------------------------


SEPARABLE = {"kernel": 3, "c_in": 64, "c_out": 128}
"""The layer of exercise 1.3: a depthwise-separable 3x3 convolution from 64 to 128 channels."""


def separable_params(answer, *ignored, verbose: int = 1, **ignored_problem) -> Feedback:
    """Check the weights (no biases) of the depthwise-separable layer :data:`SEPARABLE`.

    The problem lives in the check: problem data passed by an older notebook are ignored.
    """

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_int(answer, "the weight count")
        kernel, c_in, c_out = SEPARABLE["kernel"], SEPARABLE["c_in"], SEPARABLE["c_out"]
        depthwise, pointwise = kernel * kernel * c_in, c_in * c_out
        if value == depthwise + pointwise:
            return f"{kernel * kernel * c_in * c_out / value:.1f}x fewer than a full convolution."
        if value in (depthwise + pointwise + c_out, depthwise + pointwise + c_in + c_out):
            raise Wrong("count the weights only, without biases.")
        if value == kernel * kernel * c_in * c_out:
            raise Wrong("that is the full convolution: split it into a depthwise and a 1x1 part.")
        if value == kernel * kernel * c_out + c_in * c_out:
            raise Wrong("the depthwise part has one k x k filter per input channel.")
        if value in (depthwise, pointwise):
            raise Wrong("that is one of the two parts: add the other.")
        raise Wrong(
            ("too many" if value > depthwise + pointwise else "too few")
            + ": one k x k filter per input channel, then a 1x1 convolution to C_out."
        )

    return report("1.3", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 4. Cross-correlation in NumPy
# ---------------------------------------------------------------------------------------------


CONV_CASES = (
    # (height, width, channels in, kernel, channels out, stride): odd sizes, several strides
    (9, 8, 3, 3, 2, 2),
    (7, 7, 2, 3, 4, 1),
    (11, 10, 1, 5, 3, 3),
    (6, 9, 4, 1, 2, 2),
)
"""The cases exercise 1.4 runs the student's convolution on (the notebook shows none)."""


def _keras_conv(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    conv = keras.layers.Conv2D(kernel.shape[-1], kernel.shape[0], strides=stride, use_bias=False)
    conv.build((None, *x.shape))
    conv.set_weights([kernel])
    return np.asarray(conv(x[np.newaxis]))[0].astype(np.float64)


def _library_convolutions() -> list[tuple[object, str]]:
    import tensorflow as tf

    targets = [(keras.ops, "conv"), (keras.ops, "depthwise_conv"), (keras.ops, "separable_conv")]
    targets += [(keras.layers, "Conv2D"), (tf.nn, "conv2d"), (tf.nn, "convolution")]
    try:
        import scipy.signal

        targets += [(scipy.signal, n) for n in ("correlate", "correlate2d", "convolve")]
    except ImportError:  # pragma: no cover - scipy ships with the course
        pass
    return targets


def cross_correlation(fn: Callable, *, verbose: int = 1) -> Feedback:
    """Check ``fn(x, kernel, stride)`` for x (H, W, C_in), kernel (k, k, C_in, C_out), 'valid'.

    ``fn`` runs on the cases of :data:`CONV_CASES` (odd sizes, strides 1 to 3, kernels 1 to 5,
    negative values), on copies of the inputs, with Keras', TensorFlow's and SciPy's
    convolutions switched off; it must match ``keras.layers.Conv2D`` (no kernel flip).
    """

    def test():
        rng = np.random.default_rng(11)
        for height, width, c_in, k, c_out, stride in CONV_CASES:
            x = rng.normal(size=(height, width, c_in)).astype("float32")
            kernel = rng.normal(size=(k, k, c_in, c_out)).astype("float32")
            expected = _keras_conv(x, kernel, stride)
            flipped = _keras_conv(x, kernel[::-1, ::-1].copy(), stride)
            with (
                student_code(),
                forbid(*_library_convolutions(), reason="write the loops (or einsum) yourself."),
            ):
                out = fn(copied(x), copied(kernel), stride)
                if out is None:
                    raise Wrong("your function returns None: return the output array.")
                got = np.asarray(out, dtype=np.float64)
            case = f"for a {height}x{width}x{c_in} input, a {k}x{k} kernel and stride {stride}"
            if got.shape != expected.shape:
                raise Wrong(
                    f"{case} the output has shape {got.shape}, not {expected.shape}: "
                    "(H - k) // stride + 1 rows and columns, one channel per filter."
                )
            if not np.all(np.isfinite(got)):
                raise Wrong(f"{case} the output holds NaN or infinite values.")
            if np.allclose(got, expected, atol=1e-4):
                continue
            if k > 1 and np.allclose(got, flipped, atol=1e-4):
                raise Wrong(
                    "you flipped the kernel: that is the mathematical convolution; Conv2D "
                    "computes the cross-correlation (no flip)."
                )
            raise Wrong(
                f"{case} the shape is right but not the values: sum window x filter over rows, "
                "columns and channels, the window moving by the stride."
            )
        return f"{len(CONV_CASES)} cases (strides 1 to 3, kernels 1 to 5) match Conv2D."

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


MARGIN = 2
"""Exercise 1.5 keeps every part this many pixels from the edge (so the face's windows exist)."""


def _gaps(corners: list[tuple[int, int]]) -> list[int]:
    """For each pair of parts, the number of empty pixels between them (Chebyshev gap)."""
    gaps = []
    for i, (r1, c1) in enumerate(corners):
        for r2, c2 in corners[i + 1 :]:
            rows = max(r1, r2) - min(r1, r2) - PART
            cols = max(c1, c2) - min(c1, c2) - PART
            gaps.append(max(rows, cols))
    return gaps


def tell_apart(positions, *, verbose: int = 1) -> Feedback:
    """Check an arrangement of eye, eye, nose, mouth that global max pooling tells from the face.

    The parts must lie inside the canvas at least :data:`MARGIN` pixels from its edge (so that
    every 3x3 window the face has exists, whatever the arrangement), without overlapping (each
    part stays whole); the pooled features of at least one of five fresh detectors must differ
    from the face's, and the reason must be the one asked: a window that sees two parts.
    """

    def test():
        if not_attempted(positions):
            return NOT_ATTEMPTED
        if isinstance(positions, (str, bytes)) or not hasattr(positions, "__len__"):
            raise Wrong("positions should be four (row, column) pairs.")
        if len(positions) != 4:
            raise Wrong("four positions: eye, eye, nose, mouth.")
        try:
            corners = [(as_int(r, "a row"), as_int(c, "a column")) for r, c in positions]
        except (TypeError, ValueError):
            raise Wrong("positions should be four (row, column) pairs.") from None
        low, high = MARGIN, CANVAS - PART - MARGIN
        for r, c in corners:
            if not (0 <= r <= CANVAS - PART and 0 <= c <= CANVAS - PART):
                raise Wrong(f"a part at {(r, c)} leaves the {CANVAS}x{CANVAS} canvas.")
            if not (low <= r <= high and low <= c <= high):
                raise Wrong(
                    f"a part at {(r, c)} is closer than {MARGIN} pixels to the edge: there the "
                    "detector loses the windows that see the part's border, a difference that "
                    "has nothing to do with arrangement. Keep corners between "
                    f"{low} and {high}."
                )
        gaps = _gaps(corners)
        if min(gaps) < 0:
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
