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

from cnn_utils import _checks

__all__ = [
    "conv2d_mult_adds",
    "conv2d_params",
    "conv_output_size",
    "dense_mult_adds",
    "dense_params",
    "layer_mult_adds",
    "mult_adds_table",
    "pool2d_ops",
    "pool_output_size",
    "receptive_field",
    "shape_trace",
]


def _size_pair(argname: str, value: int | Sequence[int]) -> tuple[int, int]:
    """A 2-D size given as one positive int or a (height, width) pair, as Keras accepts it."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{argname} must be an integer or a pair of integers. Received: {argname}={value!r}"
            )
        return _checks.positive_int(argname, value[0]), _checks.positive_int(argname, value[1])
    size = _checks.positive_int(argname, value)
    return size, size


def _sequence(argname: str, value) -> list:
    """A list or tuple of values (one per layer), refusing a bare number or a string."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise ValueError(
            f"{argname} must be a list with one entry per layer. Received: {argname}={value!r}"
        )
    return list(value)


def _keras_model(model):
    """A Keras model (anything with ``layers`` and ``count_params``)."""
    if not (hasattr(model, "layers") and hasattr(model, "count_params")):
        raise ValueError(f"model must be a keras.Model. Received: model={model!r}")
    return model


def _window_output_size(
    size: int, window: int, strides: int, padding: str | int, dilation_rate: int, what: str
) -> int:
    size = _checks.positive_int("size", size)
    window = _checks.positive_int(what, window)
    strides = _checks.positive_int("strides", strides)
    dilation_rate = _checks.positive_int("dilation_rate", dilation_rate)
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
            f"{what} must fit in the padded input, or the output would be empty. Received: "
            f"{what}={window} (effective {effective}), size={size}, padding={padding!r}"
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
        ValueError: A non-positive size, or a non-boolean ``use_bias``.
    """
    k_h, k_w = _size_pair("kernel_size", kernel_size)
    c_in = _checks.positive_int("in_channels", in_channels)
    c_out = _checks.positive_int("filters", filters)
    return (k_h * k_w * c_in + int(_checks.flag("use_bias", use_bias))) * c_out


def dense_params(in_features: int, units: int, use_bias: bool = True) -> int:
    """Number of parameters of a Dense layer: ``(n_in + 1) * n_out``.

    Args:
        in_features: Input features.
        units: Output units.
        use_bias: Count one bias per unit.

    Returns:
        The parameter count.

    Raises:
        ValueError: A non-positive size, or a non-boolean ``use_bias``.
    """
    n_in = _checks.positive_int("in_features", in_features)
    n_out = _checks.positive_int("units", units)
    return (n_in + int(_checks.flag("use_bias", use_bias))) * n_out


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
    h_out, w_out = _size_pair("output_size", output_size)
    k_h, k_w = _size_pair("kernel_size", kernel_size)
    c_in = _checks.positive_int("in_channels", in_channels)
    c_out = _checks.positive_int("filters", filters)
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
    return _checks.positive_int("in_features", in_features) * _checks.positive_int("units", units)


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
    kernels = [
        _checks.positive_int("kernel_sizes", k) for k in _sequence("kernel_sizes", kernel_sizes)
    ]
    if not kernels:
        raise ValueError("kernel_sizes must name at least one layer. Received: kernel_sizes=[]")
    steps = (
        [1] * len(kernels)
        if strides is None
        else [_checks.positive_int("strides", s) for s in _sequence("strides", strides)]
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


def _layer_row(layer, batch_size: int | None) -> dict:
    """One row of a model table: the layer's name, type, output shape(s) and parameters."""
    output = layer.output
    shape = [t.shape for t in output] if isinstance(output, (list, tuple)) else output.shape
    return {
        "layer": layer.name,
        "type": type(layer).__name__,
        "output_shape": _format_shape(shape, batch_size),
        "params": int(layer.count_params()),
    }


def _input_name(tensor) -> str:
    """The name given to ``keras.Input(name=...)``, or ``"input"`` for Keras' generated names."""
    name = str(getattr(tensor, "name", "") or "")
    return "input" if not name or name.startswith("keras_tensor") else name


def _model_inputs(model) -> list:
    """Return the symbolic inputs of a built model, or raise a ValueError saying how to build it."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"model must be built with defined inputs (start it with keras.Input(shape=...)). "
            f"Received: model={getattr(model, 'name', model)!r} with no inputs"
        )
    return inputs


def shape_trace(model, batch_size: int | None = None):
    """Tabulate each layer of a built Keras model: name, type, output shape and parameters.

    Args:
        model: A built ``keras.Model`` (Sequential with an ``Input``, or functional).
        batch_size: Write this batch size instead of ``None`` in the shapes.

    Returns:
        A ``pandas.DataFrame`` with columns ``layer``, ``type``, ``output_shape`` and
        ``params``; the first row is the input. ``df.attrs["total_params"]`` holds the total.

    Raises:
        ValueError: Not a Keras model, a model without defined inputs (build it with
            ``keras.Input``), or a non-positive ``batch_size``.
    """
    import pandas as pd

    _keras_model(model)
    if batch_size is not None:
        batch_size = _checks.batch_size(batch_size)
    inputs = _model_inputs(model)
    rows = [
        {
            "layer": _input_name(tensor),
            "type": "Input",
            "output_shape": _format_shape(tensor.shape, batch_size),
            "params": 0,
        }
        for tensor in inputs
    ]
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        rows.append(_layer_row(layer, batch_size))
    table = pd.DataFrame(rows, columns=["layer", "type", "output_shape", "params"])
    table.attrs["total_params"] = int(model.count_params())
    return table


# ---------------------------------------------------------------------------------------------
# Multiply-adds of whole models, blocks included
# ---------------------------------------------------------------------------------------------

_CONV_TYPES = ("Conv2D", "DepthwiseConv2D")
_POOL_TYPES = (
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
)


def pool2d_ops(
    output_size: int | Sequence[int], pool_size: int | Sequence[int], channels: int
) -> int:
    """Operations of a 2D pooling layer: ``H_out * W_out * C * p_h * p_w``.

    Pooling has no multiplications by weights: each output reads its window once (a comparison
    for max pooling, an addition for average pooling). Papers count these as zero
    multiply-adds (the GoogLeNet table does); this is the count when one wants them.

    Args:
        output_size: Output height and width, an int (square) or (H_out, W_out).
        pool_size: Window size, an int or (p_h, p_w).
        channels: Channels (pooled one by one).

    Returns:
        The number of window reads.

    Raises:
        ValueError: A non-positive size.
    """
    h_out, w_out = _size_pair("output_size", output_size)
    p_h, p_w = _size_pair("pool_size", pool_size)
    return h_out * w_out * p_h * p_w * _checks.positive_int("channels", channels)


def layer_mult_adds(layer, input_shape, output_shape, *, include_pooling: bool = False) -> int:
    """Multiply-adds of one leaf Keras layer, given the shapes it saw (batch axis included).

    Conv2D: ``H_out * W_out * k_h * k_w * C_in / groups * C_out`` (:func:`conv2d_mult_adds`);
    DepthwiseConv2D: ``H_out * W_out * k_h * k_w * C_out``; Dense: ``n_in * units`` per
    position; pooling: 0, or :func:`pool2d_ops` with ``include_pooling``; anything else
    (batch norm, activations, additions, concatenation) 0. Counts are per example.

    Args:
        layer: A Keras layer without sublayers.
        input_shape: The shape of its input, (batch, ...).
        output_shape: The shape of its output, (batch, ...).
        include_pooling: Count pooling window reads.

    Returns:
        The number of multiply-adds for one example.

    Raises:
        ValueError: A non-boolean ``include_pooling``, or shapes without a batch axis.
    """
    include_pooling = _checks.flag("include_pooling", include_pooling)
    for argname, shape in (("input_shape", input_shape), ("output_shape", output_shape)):
        if (
            isinstance(shape, (str, bytes))
            or not isinstance(shape, (list, tuple))
            or len(shape) < 2
        ):
            raise ValueError(
                f"{argname} must be a shape with a batch axis, (batch, ...). "
                f"Received: {argname}={shape!r}"
            )
    kind = type(layer).__name__
    if kind not in (*_CONV_TYPES, "Dense", *_POOL_TYPES):
        return 0  # batch norm, activations, additions, concatenation...
    out = [int(d) for d in output_shape[1:]]
    inp = [int(d) for d in input_shape[1:]]
    if kind == "Conv2D":
        k_h, k_w = layer.kernel_size
        return out[0] * out[1] * k_h * k_w * (inp[-1] // layer.groups) * out[-1]
    if kind == "DepthwiseConv2D":
        k_h, k_w = layer.kernel_size
        return out[0] * out[1] * k_h * k_w * out[-1]
    if kind == "Dense":
        return int(np.prod(inp[:-1], dtype=np.int64)) * inp[-1] * out[-1]
    if include_pooling and kind in _POOL_TYPES:
        if kind.startswith("Global"):
            return int(np.prod(inp, dtype=np.int64))
        p_h, p_w = layer.pool_size
        return pool2d_ops((out[0], out[1]), (p_h, p_w), out[-1])
    return 0


def _leaves(layer) -> list:
    """The layers without sublayers inside ``layer`` (itself if it has none)."""
    found = [
        sub
        for sub in layer._flatten_layers(include_self=True, recursive=True)
        if not list(sub._flatten_layers(include_self=False, recursive=False))
    ]
    return found or [layer]


def _shape_of(value) -> tuple:
    """The shape of a tensor, or a tuple of shapes for a list of tensors (``Add``...)."""
    if isinstance(value, (list, tuple)):
        return tuple(_shape_of(v) for v in value)
    return tuple(value.shape)


def _record_shapes(model, batch_size: int) -> dict[int, tuple[tuple, tuple]]:
    """Run ``model`` once on zeros, recording the input and output shape of every leaf layer."""
    import keras

    seen: dict[int, tuple[tuple, tuple]] = {}
    patched = []

    def hook(leaf, original):
        def call(inputs, *args, **kwargs):
            outputs = original(inputs, *args, **kwargs)
            seen.setdefault(id(leaf), (_shape_of(inputs), _shape_of(outputs)))
            return outputs

        return call

    for top in model.layers:
        for leaf in _leaves(top):
            if type(leaf).__name__ in ("InputLayer",):
                continue
            object.__setattr__(leaf, "call", hook(leaf, leaf.call))
            patched.append(leaf)
    try:
        zeros = [
            np.zeros(
                (batch_size, *tensor.shape[1:]), dtype=keras.backend.standardize_dtype(tensor.dtype)
            )
            for tensor in model.inputs
        ]
        model(zeros if len(zeros) > 1 else zeros[0], training=False)
    finally:
        for leaf in patched:
            object.__delattr__(leaf, "call")
    return seen


def mult_adds_table(model, *, detail: bool = False, include_pooling: bool = False):
    """Parameters and multiply-adds of every layer of a model, counted inside blocks too.

    Runs the model once on a batch of one zero image while recording the shapes every leaf
    layer (Conv2D, Dense, pooling... also those inside an ``Inception`` or a ``ResnetBlock``)
    sees, then applies :func:`layer_mult_adds`. This reproduces the "ops" column of the
    GoogLeNet table (Szegedy et al. 2014, Table 1) and ResNet-18's 1.8 G multiply-adds
    (He et al. 2015, Table 1).

    Args:
        model: A built ``keras.Model`` with defined inputs.
        detail: One row per leaf layer (with the top-level layer it belongs to in ``block``)
            instead of one row per top-level layer.
        include_pooling: Count pooling window reads (the papers count them as 0).

    Returns:
        A ``pandas.DataFrame`` with columns ``layer``, ``type``, ``output_shape``, ``params``
        and ``mult_adds`` (with ``detail``: also ``block`` and ``input_shape``), per example.
        ``df.attrs["total_mult_adds"]`` and ``df.attrs["total_params"]`` hold the totals.

    Raises:
        ValueError: Not a Keras model, a model without defined inputs (build it with
            ``keras.Input``), or non-boolean flags.
    """
    import pandas as pd

    _keras_model(model)
    detail = _checks.flag("detail", detail)
    include_pooling = _checks.flag("include_pooling", include_pooling)
    _model_inputs(model)
    seen = _record_shapes(model, 1)
    rows = []
    for top in model.layers:
        if type(top).__name__ == "InputLayer":
            continue
        leaf_rows = []
        for leaf in _leaves(top):
            if id(leaf) not in seen:
                continue
            in_shape, out_shape = seen[id(leaf)]
            leaf_rows.append(
                {
                    "block": top.name,
                    "layer": leaf.name,
                    "type": type(leaf).__name__,
                    "input_shape": in_shape,
                    "output_shape": out_shape,
                    "params": int(leaf.count_params()) if leaf.built else 0,
                    "mult_adds": layer_mult_adds(
                        leaf, in_shape, out_shape, include_pooling=include_pooling
                    ),
                }
            )
        if detail:
            rows.extend(leaf_rows)
            continue
        rows.append(
            {
                **_layer_row(top, 1),
                "mult_adds": int(sum(row["mult_adds"] for row in leaf_rows)),
            }
        )
    columns = ["layer", "type", "output_shape", "params", "mult_adds"]
    if detail:
        columns = ["block", "layer", "type", "input_shape", "output_shape", "params", "mult_adds"]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs["total_mult_adds"] = int(table["mult_adds"].sum())
    table.attrs["total_params"] = int(model.count_params())
    return table
