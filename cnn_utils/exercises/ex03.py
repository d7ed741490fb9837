"""Checks for the exercises of notebook 03 (ResNet).

1. ``bottleneck_params``: by hand, the parameters of a bottleneck block's three convolutions
   (He et al. 2015, Figure 5 right: 1x1 reduce, 3x3, 1x1 expand).
2. ``block_mult_adds``: by hand, the multiply-adds of the first residual block of ResNet-18's
   stage conv3_x, its 1x1 projection shortcut included.
3. ``preactivation_block``: the pre-activation residual block (He et al. 2016, Identity
   mappings in deep residual networks, Figure 4e) written by the student: with its
   convolutions zeroed it must be exactly the identity.
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
    as_number,
    close,
    not_attempted,
    report,
)

__all__ = [
    "block_mult_adds",
    "bottleneck_params",
    "preactivation_block",
    "toy_gradient",
    "toy_weights",
]


def _is(value: float, expected: float) -> bool:
    return close(value, expected, rel=1e-9, abs_=0.5)


# ---------------------------------------------------------------------------------------------
# 1. The parameters of a bottleneck block
# ---------------------------------------------------------------------------------------------


def bottleneck_params(answer, c_in: int, mid: int, *, verbose: int = 1) -> Feedback:
    """Check the weights and biases of 1x1 (c_in -> mid), 3x3 (mid -> mid), 1x1 (mid -> c_in)."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_number(answer, "the parameter count")
        weights = c_in * mid + 9 * mid * mid + mid * c_in
        expected = weights + mid + mid + c_in
        if _is(value, expected):
            return None
        if _is(value, weights):
            raise Wrong("every convolution also has one bias per filter: add them.")
        if _is(value, c_in * mid + 9 * mid * mid + 2 * mid) or _is(value, 9 * mid * mid + mid):
            raise Wrong("the block ends with a 1x1 convolution back to the input's width.")
        if _is(value, 2 * (9 * c_in * c_in + c_in)):
            raise Wrong("that is a basic block of two 3x3 convolutions at the full width.")
        raise Wrong("not the count: list the three convolutions with their k, C_in and C_out.")

    return report("3.1", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 2. The multiply-adds of a downsampling residual block
# ---------------------------------------------------------------------------------------------


def block_mult_adds(answer, *, verbose: int = 1) -> Feedback:
    """Check the multiply-adds of Residual(128, use_1x1conv=True, strides=2) on 56x56x64."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_number(answer, "the multiply-adds")
        out = 28 * 28
        conv1, conv2, skip = 9 * 64 * 128, 9 * 128 * 128, 64 * 128
        if _is(value, out * (conv1 + conv2 + skip)):
            return None
        if _is(value, out * (conv1 + conv2)):
            raise Wrong("the 1x1 projection on the shortcut multiplies and adds too.")
        if _is(value, 56 * 56 * (conv1 + conv2 + skip)) or _is(
            value, 56 * 56 * conv1 + out * (conv2 + skip)
        ):
            raise Wrong("with stride 2 the convolutions compute 28 x 28 outputs, not 56 x 56.")
        if _is(value, out * (9 * 64 * 64 + conv2 + skip)) or _is(value, out * 2 * conv2 + skip):
            raise Wrong("the first 3x3 convolution reads 64 channels and writes 128.")
        raise Wrong("not the count: outputs x kernel area x C_in x C_out for each convolution.")

    return report("3.2", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 3. The pre-activation residual block
# ---------------------------------------------------------------------------------------------


def preactivation_block(fn: Callable, *, verbose: int = 1) -> Feedback:
    """Check ``fn(inputs, channels)``: BN -> ReLU -> 3x3 conv -> BN -> ReLU -> 3x3 conv, + x.

    Checks, in order: the output shape, the parameter count (two 3x3 convolutions with biases
    and two batch normalisations), that the block is not the identity with its random weights,
    and that it is exactly the identity once every convolution's kernel and bias are zero.
    """

    def test():
        channels = 4
        inputs = keras.Input((8, 8, channels))
        out = fn(inputs, channels)
        if out is None:
            raise Wrong("your function returns None: return the block's output tensor.")
        model = keras.Model(inputs, out)
        if tuple(model.output_shape) != (None, 8, 8, channels):
            raise Wrong(
                f"output shape {tuple(model.output_shape)}, but the block keeps the input's "
                f"shape (None, 8, 8, {channels}): 'same' padding, stride 1."
            )
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        bns = [
            layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
        ]
        if len(convs) != 2 or len(bns) != 2:
            raise Wrong(
                f"{len(convs)} convolutions and {len(bns)} batch normalisations; the block has "
                "two of each."
            )
        expected = 2 * (9 * channels * channels + channels) + 2 * 4 * channels
        if model.count_params() != expected:
            raise Wrong(f"{model.count_params()} parameters, not {expected}: two 3x3 convolutions.")
        x = np.random.default_rng(0).normal(size=(2, 8, 8, channels)).astype("float32")
        if np.allclose(np.asarray(model(x, training=False)), x, atol=1e-6):
            raise Wrong("with random weights the output equals the input: use the convolutions.")
        for conv in convs:
            conv.set_weights([np.zeros_like(w) for w in conv.get_weights()])
        y = np.asarray(model(x, training=False))
        if np.allclose(y, x, atol=1e-5):
            return None
        if np.allclose(y, np.maximum(x, 0), atol=1e-5):
            raise Wrong(
                "with the convolutions zeroed the block gives ReLU(x), not x: in the "
                "pre-activation block nothing follows the addition."
            )
        if np.allclose(y, 0, atol=1e-5):
            raise Wrong("with the convolutions zeroed the block outputs 0: add the input x.")
        raise Wrong("with the convolutions zeroed the block should be exactly the identity.")

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
