import keras
import numpy as np
import pytest

from cnn_utils import shapes


@pytest.mark.parametrize(
    ("size", "kernel", "strides", "padding", "expected"),
    [
        (7, 3, 2, "valid", 3),  # worked example A, height
        (8, 3, 2, "valid", 3),  # worked example A, width
        (32, 4, 2, "valid", 15),  # worked example B
        (32, 3, 1, "same", 32),
        (15, 3, 2, "same", 8),
        (224, 7, 2, 3, 112),  # explicit padding P = 3
        (5, 5, 1, "valid", 1),
    ],
)
def test_conv_output_size_formula(size, kernel, strides, padding, expected):
    assert shapes.conv_output_size(size, kernel, strides, padding) == expected


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize(
    ("size", "kernel", "strides"), [(7, 3, 2), (28, 5, 1), (31, 4, 3), (9, 1, 2)]
)
def test_conv_output_size_agrees_with_keras(size, kernel, strides, padding):
    layer = keras.layers.Conv2D(1, kernel, strides=strides, padding=padding)
    out = layer(np.zeros((1, size, size, 1), dtype="float32"))
    assert out.shape[1] == shapes.conv_output_size(size, kernel, strides, padding)


@pytest.mark.parametrize(
    ("size", "pool", "strides", "padding"),
    [(15, 2, None, "same"), (15, 2, None, "valid"), (56, 3, 2, "same"), (112, 3, 2, "valid")],
)
def test_pool_output_size_agrees_with_keras(size, pool, strides, padding):
    layer = keras.layers.MaxPooling2D(pool, strides=strides, padding=padding)
    out = layer(np.zeros((1, size, size, 1), dtype="float32"))
    assert out.shape[1] == shapes.pool_output_size(size, pool, strides, padding)


def test_dilation():
    layer = keras.layers.Conv2D(1, 3, dilation_rate=2)
    out = layer(np.zeros((1, 11, 11, 1), dtype="float32"))
    assert out.shape[1] == shapes.conv_output_size(11, 3, dilation_rate=2) == 7


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 0, "kernel_size": 3}, "size must be a positive integer.*size=0"),
        ({"size": 8, "kernel_size": -1}, "kernel_size.*-1"),
        ({"size": 8, "kernel_size": 3, "strides": 0}, "strides.*0"),
        ({"size": 8, "kernel_size": 3, "padding": "full"}, "padding.*'full'"),
        ({"size": 8, "kernel_size": 3, "padding": -1}, "padding.*-1"),
        ({"size": 2, "kernel_size": 3}, "must fit in the padded input"),
        ({"size": 7.5, "kernel_size": 3}, "size.*7.5"),
    ],
)
def test_conv_output_size_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        shapes.conv_output_size(**kwargs)


def test_parameter_counts_match_keras():
    assert shapes.conv2d_params(3, 3, 4) == 112
    assert shapes.conv2d_params(3, 3, 64) == 1_792
    assert shapes.conv2d_params((3, 3), 64, 64) == 36_928
    assert shapes.conv2d_params(3, 5, 5, use_bias=False) == 9 * 5 * 5
    layer = keras.layers.Conv2D(7, (3, 5))
    layer.build((None, 10, 10, 4))
    assert layer.count_params() == shapes.conv2d_params((3, 5), 4, 7)
    dense = keras.layers.Dense(10)
    dense.build((None, 256))
    assert dense.count_params() == shapes.dense_params(256, 10) == 2_570


def test_parameter_count_errors():
    with pytest.raises(ValueError, match="in_channels.*0"):
        shapes.conv2d_params(3, 0, 4)
    with pytest.raises(ValueError, match="kernel_size.*pair"):
        shapes.conv2d_params((3, 3, 3), 3, 4)
    with pytest.raises(ValueError, match="units"):
        shapes.dense_params(3, 0)


def test_mult_adds():
    # 5x5 conv with 96 filters on a 28x28x192 input, 'same' padding.
    assert shapes.conv2d_mult_adds(28, 5, 192, 96) == 28 * 28 * 96 * 25 * 192
    assert shapes.conv2d_mult_adds((2, 3), (1, 1), 4, 5) == 2 * 3 * 4 * 5
    assert shapes.dense_mult_adds(1024, 1000) == 1_024_000
    with pytest.raises(ValueError, match="output_size"):
        shapes.conv2d_mult_adds(0, 3, 1, 1)


def test_receptive_field():
    assert shapes.receptive_field([3]) == 3
    assert shapes.receptive_field([3, 3]) == 5
    assert shapes.receptive_field([3, 3, 3]) == 7
    assert shapes.receptive_field([3, 2, 3], strides=[1, 2, 1]) == 8
    with pytest.raises(ValueError, match="kernel_sizes"):
        shapes.receptive_field([])
    with pytest.raises(ValueError, match="one entry per kernel"):
        shapes.receptive_field([3, 3], strides=[1])


def _lecture_model():
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(4, 4, strides=2, name="conv"),
            keras.layers.MaxPooling2D(2, strides=2, padding="same", name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(10, activation="softmax", name="dense"),
        ]
    )


def test_shape_trace_of_lecture_model():
    table = shapes.shape_trace(_lecture_model(), batch_size=2)
    assert list(table["layer"])[1:] == ["conv", "pool", "flatten", "dense"]
    assert list(table["output_shape"]) == [
        (2, 32, 32, 3),
        (2, 15, 15, 4),
        (2, 8, 8, 4),
        (2, 256),
        (2, 10),
    ]
    assert list(table["params"]) == [0, 196, 0, 0, 2_570]
    assert table.attrs["total_params"] == table["params"].sum()


def test_shape_trace_functional_with_two_outputs():
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(2, 3, name="a")(inputs)
    b = keras.layers.Conv2D(3, 1, name="b")(inputs)
    model = keras.Model(inputs, [a, b])
    table = shapes.shape_trace(model)
    assert dict(zip(table["layer"], table["output_shape"], strict=True))["a"] == (None, 6, 6, 2)


def test_shape_trace_needs_inputs():
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="keras.Input"):
        shapes.shape_trace(model)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: shapes.conv2d_params(3, 3, 4, use_bias="no"), "use_bias='no'"),
        (lambda: shapes.dense_params(3, 4, use_bias=None), "use_bias=None"),
        (lambda: shapes.conv2d_params((3, 3, 3), 3, 4), r"kernel_size.*\(3, 3, 3\)"),
        (lambda: shapes.conv2d_mult_adds(0, 3, 3, 4), "output_size=0"),
        (lambda: shapes.dense_mult_adds(np.float64(3), 4), r"in_features=(np.float64\()?3.0"),
        (lambda: shapes.pool_output_size(8, 2, strides=0), "strides=0"),
        (lambda: shapes.pool_output_size(8, True), "pool_size=True"),
        (lambda: shapes.receptive_field(3), "kernel_sizes.*one entry per layer.*3"),
        (lambda: shapes.receptive_field("333"), "kernel_sizes='333'"),
        (lambda: shapes.receptive_field([3, 3], strides=2), "strides=2"),
        (lambda: shapes.receptive_field([3, 3], strides=[1]), "one entry per kernel"),
        (lambda: shapes.receptive_field([3, 0]), "kernel_sizes=0"),
        (lambda: shapes.receptive_field([]), "at least one layer"),
        (lambda: shapes.pool2d_ops(2, 2, 0), "channels=0"),
        (lambda: shapes.shape_trace("model"), "model must be a keras.Model"),
        (lambda: shapes.shape_trace(_tiny(), batch_size=0), "batch_size=0"),
        (lambda: shapes.shape_trace(_tiny(), batch_size=2.0), "batch_size=2.0"),
        (lambda: shapes.mult_adds_table(None), "model=None"),
        (lambda: shapes.mult_adds_table(_tiny(), detail="yes"), "detail='yes'"),
        (lambda: shapes.mult_adds_table(_tiny(), include_pooling=1), "include_pooling=1"),
        (
            lambda: shapes.layer_mult_adds(keras.layers.Dense(2), 4, (1, 2)),
            "input_shape=4",
        ),
        (
            lambda: shapes.layer_mult_adds(
                keras.layers.Dense(2), (1, 4), (1, 2), include_pooling="x"
            ),
            "include_pooling='x'",
        ),
    ],
)
def test_bad_calls_get_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _tiny():
    from conftest import build_tiny_model

    return build_tiny_model()
