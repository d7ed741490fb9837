"""Shape arithmetic of convolutional networks: output sizes, parameters, multiply-adds, traces.

The formulas of the lecture, one function each, so that notebooks compute every worked example
instead of typing its result, and check it against what Keras builds:

* output size per spatial axis: ``floor((W - F + 2P) / S) + 1`` ('valid' is P = 0; 'same' gives
  ``ceil(W / S)``);
* parameters of a convolution: ``(k_h * k_w * C_in + 1) * C_out``; of a dense layer:
  ``(n_in + 1) * n_out``;
* multiply-adds of a convolution: ``H_out * W_out * k_h * k_w * C_in * C_out``;
* receptive field of a stack of layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PADDINGS = ("valid", "same")


def _positive_int(argname: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{argname} must be a positive integer. Received: {argname}={value!r}")
    return int(value)


def _pair(argname: str, value: int | Sequence[int]) -> tuple[int, int]:
    """Normalise an int or a pair of ints (as Keras accepts for sizes) to a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{argname} must be an integer or a pair of integers. Received: {argname}={value!r}"
            )
        return _positive_int(argname, value[0]), _positive_int(argname, value[1])
    size = _positive_int(argname, value)
    return size, size


def _window_output_size(
    size: int, window: int, strides: int, padding: str | int, dilation_rate: int, what: str
) -> int:
    size = _positive_int("size", size)
    window = _positive_int(what, window)
    strides = _positive_int("strides", strides)
    dilation_rate = _positive_int("dilation_rate", dilation_rate)
    effective = dilation_rate * (window - 1) + 1
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "same":
            return math.ceil(size / strides)
        if mode != "valid":
            raise ValueError(
                f"padding must be 'valid', 'same' or a non-negative integer. "
                f"Received: padding={padding!r}"
            )
        pad = 0
    elif isinstance(padding, (int, np.integer)) and not isinstance(padding, bool) and padding >= 0:
        pad = int(padding)
    else:
        raise ValueError(
            f"padding must be 'valid', 'same' or a non-negative integer. "
            f"Received: padding={padding!r}"
        )
    if size + 2 * pad < effective:
        raise ValueError(
            f"{what}={window} (effective {effective}) does not fit in size={size} with "
            f"padding={padding!r}: the output would be empty."
        )
    return (size - effective + 2 * pad) // strides + 1


def conv_output_size(
    size: int,
    kernel_size: int,
    strides: int = 1,
    padding: str | int = "valid",
    *,
    dilation_rate: int = 1,
) -> int:
    """Output length of a convolution along one spatial axis.

    ``floor((W - F + 2P) / S) + 1`` with ``F = dilation_rate * (kernel_size - 1) + 1``;
    ``'valid'`` means P = 0, ``'same'`` pads so that the output is ``ceil(W / S)``, and an
    integer is an explicit zero padding P on each side.

    Args:
        size: Input length W.
        kernel_size: Kernel length F.
        strides: Stride S.
        padding: ``"valid"``, ``"same"`` or an integer P >= 0.
        dilation_rate: Dilation of the kernel.

    Returns:
        The output length.

    Raises:
        ValueError: A non-positive size, kernel or stride, an unknown padding, or a kernel that
            does not fit in the (padded) input.
    """
    return _window_output_size(size, kernel_size, strides, padding, dilation_rate, "kernel_size")


def pool_output_size(
    size: int, pool_size: int, strides: int | None = None, padding: str | int = "valid"
) -> int:
    """Output length of a pooling layer along one spatial axis (strides default to pool_size).

    Args:
        size: Input length.
        pool_size: Window length.
        strides: Stride; ``None`` means ``pool_size``, as in Keras.
        padding: ``"valid"``, ``"same"`` or an integer P >= 0.

    Returns:
        The output length.

    Raises:
        ValueError: As :func:`conv_output_size`.
    """
    return _window_output_size(
        size, pool_size, pool_size if strides is None else strides, padding, 1, "pool_size"
    )


def conv2d_params(
    kernel_size: int | Sequence[int], in_channels: int, filters: int, use_bias: bool = True
) -> int:
    """Number of parameters of a Conv2D layer: ``(k_h * k_w * C_in + 1) * C_out``.

    Args:
        kernel_size: Kernel size, an int or (k_h, k_w).
        in_channels: Input channels C_in (each filter sums over all of them).
        filters: Number of filters C_out.
        use_bias: Count one bias per filter.

    Returns:
        The parameter count.

    Raises:
        ValueError: A non-positive size.
    """
    k_h, k_w = _pair("kernel_size", kernel_size)
    c_in = _positive_int("in_channels", in_channels)
    c_out = _positive_int("filters", filters)
    return (k_h * k_w * c_in + int(bool(use_bias))) * c_out


def dense_params(in_features: int, units: int, use_bias: bool = True) -> int:
    """Number of parameters of a Dense layer: ``(n_in + 1) * n_out``.

    Args:
        in_features: Input features.
        units: Output units.
        use_bias: Count one bias per unit.

    Returns:
        The parameter count.

    Raises:
        ValueError: A non-positive size.
    """
    n_in = _positive_int("in_features", in_features)
    n_out = _positive_int("units", units)
    return (n_in + int(bool(use_bias))) * n_out


def conv2d_mult_adds(
    output_size: int | Sequence[int],
    kernel_size: int | Sequence[int],
    in_channels: int,
    filters: int,
) -> int:
    """Multiply-adds of a Conv2D layer: ``H_out * W_out * k_h * k_w * C_in * C_out``.

    Each of the ``H_out * W_out * C_out`` outputs is a dot product of length
    ``k_h * k_w * C_in``. Biases (one addition per output) are not counted, as in the papers.

    Args:
        output_size: Output height and width, an int (square) or (H_out, W_out).
        kernel_size: Kernel size, an int or (k_h, k_w).
        in_channels: Input channels.
        filters: Output channels.

    Returns:
        The number of multiply-adds.

    Raises:
        ValueError: A non-positive size.
    """
    h_out, w_out = _pair("output_size", output_size)
    k_h, k_w = _pair("kernel_size", kernel_size)
    c_in = _positive_int("in_channels", in_channels)
    c_out = _positive_int("filters", filters)
    return h_out * w_out * k_h * k_w * c_in * c_out


def dense_mult_adds(in_features: int, units: int) -> int:
    """Multiply-adds of a Dense layer: ``n_in * n_out``.

    Args:
        in_features: Input features.
        units: Output units.

    Returns:
        The number of multiply-adds.

    Raises:
        ValueError: A non-positive size.
    """
    return _positive_int("in_features", in_features) * _positive_int("units", units)


def receptive_field(kernel_sizes: Sequence[int], strides: Sequence[int] | None = None) -> int:
    """Receptive field (in input pixels, per axis) of one neuron after a stack of layers.

    ``r = 1 + sum_i (k_i - 1) * prod_{j < i} s_j``: two stacked 3x3 convolutions see 5x5,
    three see 7x7.

    Args:
        kernel_sizes: Kernel (or pooling window) size of each layer, first layer first.
        strides: Stride of each layer; ``None`` means all 1.

    Returns:
        The receptive field size.

    Raises:
        ValueError: Empty or non-positive sizes, or lists of different lengths.
    """
    kernels = [_positive_int("kernel_sizes", k) for k in kernel_sizes]
    if not kernels:
        raise ValueError("kernel_sizes must name at least one layer. Received: kernel_sizes=[]")
    steps = (
        [1] * len(kernels) if strides is None else [_positive_int("strides", s) for s in strides]
    )
    if len(steps) != len(kernels):
        raise ValueError(
            "strides must have one entry per kernel. Received: "
            f"kernel_sizes={list(kernel_sizes)}, strides={list(strides)}"
        )
    field, jump = 1, 1
    for k, s in zip(kernels, steps, strict=True):
        field += (k - 1) * jump
        jump *= s
    return field


def _format_shape(shape: object, batch_size: int | None) -> tuple:
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return tuple(_format_shape(s, batch_size) for s in shape)
    dims = tuple(shape)
    if batch_size is not None and dims and dims[0] is None:
        dims = (batch_size, *dims[1:])
    return dims


def shape_trace(model, batch_size: int | None = None):
    """Tabulate each layer of a built Keras model: name, type, output shape and parameters.

    Args:
        model: A built ``keras.Model`` (Sequential with an ``Input``, or functional).
        batch_size: Write this batch size instead of ``None`` in the shapes.

    Returns:
        A ``pandas.DataFrame`` with columns ``layer``, ``type``, ``output_shape`` and
        ``params``; the first row is the input. ``df.attrs["total_params"]`` holds the total.

    Raises:
        ValueError: If the model has no defined inputs yet (build it with ``keras.Input``).
    """
    import pandas as pd

    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"model must be built with defined inputs (start it with keras.Input(shape=...)). "
            f"Received: model={getattr(model, 'name', model)!r} with no inputs"
        )
    rows = [
        {
            "layer": tensor.name if hasattr(tensor, "name") else "input",
            "type": "Input",
            "output_shape": _format_shape(tensor.shape, batch_size),
            "params": 0,
        }
        for tensor in inputs
    ]
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        output = layer.output
        shape = [t.shape for t in output] if isinstance(output, (list, tuple)) else output.shape
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output_shape": _format_shape(shape, batch_size),
                "params": int(layer.count_params()),
            }
        )
    table = pd.DataFrame(rows, columns=["layer", "type", "output_shape", "params"])
    table.attrs["total_params"] = int(model.count_params())
    return table
