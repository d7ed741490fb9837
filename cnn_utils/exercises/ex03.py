"""Checks for the exercises of notebook 03 (ResNet).

1. ``bottleneck_params``: by hand, the parameters of a bottleneck block's three convolutions
   (He et al. 2015, Figure 5 right: 1x1 reduce, 3x3, 1x1 expand), for ResNet-50's last stage
   (the notebook counts another one).
2. ``block_mult_adds``: by hand, the multiply-adds of a downsampling residual block with a 1x1
   projection shortcut, on an input the notebook does not use.
3. ``preactivation_block``: the pre-activation residual block (He et al. 2016, Identity
   mappings in deep residual networks, Figure 4e) written by the student, compared with the
   block computed from its own (randomised) weights, on shapes the notebook does not show.
4. ``toy_weights``: weights of the scalar residual toy of section 2 (|w| <= 0.5) whose
   input-output gradient falls below 0.1: the identity path is no floor for the gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from cnn_utils.exercises import (
    NOT_ATTEMPTED,
    Feedback,
    Wrong,
    as_array,
    as_int,
    copied,
    not_attempted,
    report,
    student_code,
)

__all__ = [
    "BOTTLENECK",
    "DOWNSAMPLING",
    "block_mult_adds",
    "bottleneck_params",
    "preactivation_block",
    "toy_gradient",
    "toy_weights",
]


# ---------------------------------------------------------------------------------------------
# 1. The parameters of a bottleneck block
# ---------------------------------------------------------------------------------------------


BOTTLENECK = {"c_in": 2048, "mid": 512}
"""The block of exercise 3.1: ResNet-50's last-stage bottleneck (conv5_x), 2048 -> 512 -> 2048."""


def bottleneck_params(answer, *ignored, verbose: int = 1, **ignored_problem) -> Feedback:
    """Check the weights and biases of 1x1 (c_in -> mid), 3x3 (mid -> mid), 1x1 (mid -> c_in).

    The problem (:data:`BOTTLENECK`) lives in the check: problem data passed by an older
    notebook are ignored.
    """

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_int(answer, "the parameter count")
        c_in, mid = BOTTLENECK["c_in"], BOTTLENECK["mid"]
        weights = c_in * mid + 9 * mid * mid + mid * c_in
        expected = weights + mid + mid + c_in
        if value == expected:
            return None
        if value == weights:
            raise Wrong("every convolution also has one bias per filter: add them.")
        if value == expected + 2 * (mid + mid + c_in) or value == expected + 4 * (2 * mid + c_in):
            raise Wrong("leave out batch norm: count the three convolutions only.")
        if value in (c_in * mid + 9 * mid * mid + 2 * mid, 9 * mid * mid + mid):
            raise Wrong("the block ends with a 1x1 convolution back to the input's width.")
        if value == 2 * (9 * c_in * c_in + c_in):
            raise Wrong("that is a basic block of two 3x3 convolutions at the full width.")
        raise Wrong(
            ("too high" if value > expected else "too low")
            + ": list the three convolutions with their k, C_in and C_out."
        )

    return report("3.1", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 2. The multiply-adds of a downsampling residual block
# ---------------------------------------------------------------------------------------------

DOWNSAMPLING = {"size": 32, "c_in": 48, "channels": 96}
"""The block of exercise 3.2: ``Residual(96, use_1x1conv=True, strides=2)`` on 32x32x48 (a
block the notebook does not count)."""


def block_mult_adds(answer, *, verbose: int = 1) -> Feedback:
    """Check the multiply-adds of the block :data:`DOWNSAMPLING` (convolutions only)."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_int(answer, "the multiply-adds")
        size, c_in, c = (DOWNSAMPLING[k] for k in ("size", "c_in", "channels"))
        out, full = (size // 2) ** 2, size * size
        conv1, conv2, skip = 9 * c_in * c, 9 * c * c, c_in * c
        expected = out * (conv1 + conv2 + skip)
        if value == expected:
            return None
        if value == out * (conv1 + conv2):
            raise Wrong("the 1x1 projection on the shortcut multiplies and adds too.")
        if value in (full * (conv1 + conv2 + skip), full * conv1 + out * (conv2 + skip)):
            raise Wrong("with stride 2 the convolutions compute half as many rows and columns.")
        if value in (out * (9 * c_in * c_in + conv2 + skip), out * (2 * conv2 + skip)):
            raise Wrong("the first 3x3 convolution reads C_in channels and writes C_out.")
        raise Wrong(
            ("too high" if value > expected else "too low")
            + ": outputs x kernel area x C_in x C_out for each convolution."
        )

    return report("3.2", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 3. The pre-activation residual block
# ---------------------------------------------------------------------------------------------

PREACTIVATION_CASES = ((8, 8, 4), (7, 5, 3))
"""(height, width, channels) of the blocks exercise 3.3 builds (the notebook shows none)."""


def _bn(x, layer_weights, epsilon):
    gamma, beta, mean, variance = layer_weights
    return gamma * (x - mean) / np.sqrt(variance + epsilon) + beta


def _conv_same(x, kernel, bias):
    return np.asarray(keras.ops.conv(x, kernel, padding="same"), np.float64) + bias


def _residual_variants(x, convs, bns, eps) -> dict[str, np.ndarray]:
    """The block computed from the student's weights, and the usual wrong arrangements."""
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    (k1, b1), (k2, b2) = convs
    bn1 = lambda t: _bn(t, bns[0], eps[0])  # noqa: E731
    bn2 = lambda t: _bn(t, bns[1], eps[1])  # noqa: E731
    x64 = x.astype(np.float64)
    pre = x64 + _conv_same(relu(bn2(_conv_same(relu(bn1(x64)), k1, b1))), k2, b2)
    return {
        "right": pre,
        "post-activation": relu(x64 + bn2(_conv_same(relu(bn1(_conv_same(x64, k1, b1))), k2, b2))),
        "relu after add": relu(pre),
        "no relu": x64 + _conv_same(bn2(_conv_same(bn1(x64), k1, b1)), k2, b2),
        "no shortcut": pre - x64,
    }


_RESIDUAL_MISTAKES = {
    "post-activation": "this is the original (post-activation) order, conv -> BN -> ReLU, with a "
    "ReLU after the addition: the pre-activation block puts BN and ReLU before each convolution.",
    "relu after add": "a ReLU follows the addition: in the pre-activation block nothing follows "
    "it, so the shortcut stays an identity (negative inputs pass).",
    "no relu": "the block has no ReLU: BN -> ReLU before each convolution.",
    "no shortcut": "the input is not added: the block returns x + F(x).",
}


def preactivation_block(fn: Callable, *, verbose: int = 1) -> Feedback:
    """Check ``fn(inputs, channels)``: x + conv(ReLU(BN(conv(ReLU(BN(x)))))).

    The block is built for the shapes of :data:`PREACTIVATION_CASES`; it must have two 3x3
    convolutions with biases and two batch normalisations, and, with random weights and
    statistics set into them, compute on random inputs (negative values included, inference
    mode) the pre-activation block computed here from those same weights.
    """

    def test():
        rng = np.random.default_rng(31)
        for height, width, channels in PREACTIVATION_CASES:
            with student_code():
                inputs = keras.Input((height, width, channels))
                out = fn(inputs, channels)
                if out is None:
                    raise Wrong("your function returns None: return the block's output tensor.")
                model = keras.Model(inputs, out)
            if tuple(model.output_shape) != (None, height, width, channels):
                raise Wrong(
                    f"output shape {tuple(model.output_shape)}, but the block keeps the input's "
                    f"shape (None, {height}, {width}, {channels}): 'same' padding, stride 1."
                )
            convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
            bns = [
                layer
                for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)
            ]
            if len(convs) != 2 or len(bns) != 2:
                raise Wrong(
                    f"{len(convs)} convolutions and {len(bns)} batch normalisations; the block "
                    "has two of each."
                )
            expected = 2 * (9 * channels * channels + channels) + 2 * 4 * channels
            if model.count_params() != expected or any(
                tuple(c.kernel.shape) != (3, 3, channels, channels) or not c.use_bias for c in convs
            ):
                raise Wrong(
                    f"{model.count_params()} parameters, not {expected}: two 3x3 convolutions "
                    "with biases, from and to the same width, and two batch normalisations."
                )
            conv_weights = []
            for conv in convs:
                kernel = rng.normal(scale=0.3, size=(3, 3, channels, channels))
                bias = rng.normal(scale=0.3, size=channels)
                conv.set_weights([kernel.astype("float32"), bias.astype("float32")])
                conv_weights.append((kernel, bias))
            bn_weights = []
            for bn in bns:
                stats = [
                    rng.uniform(0.5, 1.5, channels),
                    rng.normal(scale=0.5, size=channels),
                    rng.normal(scale=0.5, size=channels),
                    rng.uniform(0.5, 1.5, channels),
                ]
                bn.set_weights([v.astype("float32") for v in stats])
                bn_weights.append(stats)
            x = rng.normal(size=(3, height, width, channels)).astype("float32")
            with student_code():
                y = np.asarray(model(copied(x), training=False), np.float64)
            variants = _residual_variants(
                x, conv_weights, bn_weights, [float(bn.epsilon) for bn in bns]
            )
            if np.allclose(y, variants["right"], atol=1e-3):
                continue
            for name, message in _RESIDUAL_MISTAKES.items():
                if np.allclose(y, variants[name], atol=1e-3):
                    raise Wrong(message)
            raise Wrong(
                "the output differs from x + conv(ReLU(BN(conv(ReLU(BN(x)))))) computed from your "
                "own weights: check the order of BN, ReLU and the convolutions."
            )
        return None

    return report("3.3", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 4. The residual toy: no floor at 1
# ---------------------------------------------------------------------------------------------

TOY_INPUT = 0.7
"""The input of the scalar toy network of section 2."""


def toy_gradient(weights, residual: bool = True, x: float = TOY_INPUT) -> float:
    """Input-output gradient of the toy h <- h + tanh(w h) (residual) or h <- tanh(w h)."""
    h, grad = float(x), 1.0
    for w in np.asarray(weights, dtype=np.float64).reshape(-1):
        local = w * (1.0 - np.tanh(w * h) ** 2)
        grad *= (1.0 + local) if residual else local
        h = h + np.tanh(w * h) if residual else np.tanh(w * h)
    return float(grad)


def toy_weights(weights, *, verbose: int = 1) -> Feedback:
    """Check 20 weights with |w| <= 0.5 whose residual toy gradient is below 0.1."""

    def test():
        if not_attempted(weights):
            return NOT_ATTEMPTED
        w = as_array(weights, (20,), "the weights")
        if np.abs(w).max() > 0.5 + 1e-12:
            raise Wrong(f"a weight has size {np.abs(w).max():g} > 0.5: keep |w| <= 0.5.")
        grad = toy_gradient(w, residual=True)
        if grad < 0.1:
            return f"the residual gradient is {grad:.3g}."
        if (w >= 0).all():
            raise Wrong(
                f"the gradient is {grad:.3g}: with w >= 0 every factor 1 + g'(h) is at least 1."
            )
        raise Wrong(f"the gradient is {grad:.3g}, not below 0.1: which factors 1 + g' are small?")

    return report("3.4", test, verbose=verbose)
