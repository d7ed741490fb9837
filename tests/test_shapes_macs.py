import keras
import numpy as np
import pytest

from cnn_utils import blocks, shapes


def _tiny_model():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = blocks.Inception(2, (3, 4), (1, 2), 3, name="inc")(x)
    x = blocks.ResnetBlock(6, 1, name="res")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(5, name="logits")(x)
    return keras.Model(inputs, outputs)


def _inception_mult_adds(size, c_in, c1, c2, c3, c4):
    area = size * size
    return area * (
        c_in * c1 + c_in * c2[0] + 9 * c2[0] * c2[1] + c_in * c3[0] + 25 * c3[0] * c3[1] + c_in * c4
    )


def test_pool2d_ops():
    assert shapes.pool2d_ops(14, 3, 480) == 14 * 14 * 9 * 480
    assert shapes.pool2d_ops((2, 3), (2, 2), 1) == 24
    with pytest.raises(ValueError, match="channels.*0"):
        shapes.pool2d_ops(2, 2, 0)


def test_layer_mult_adds_of_leaf_layers():
    conv = keras.layers.Conv2D(8, 3, groups=2)
    assert shapes.layer_mult_adds(conv, (1, 10, 10, 4), (1, 8, 8, 8)) == 64 * 9 * 2 * 8
    dense = keras.layers.Dense(3)
    assert shapes.layer_mult_adds(dense, (1, 7), (1, 3)) == 21
    assert shapes.layer_mult_adds(dense, (1, 4, 7), (1, 4, 3)) == 84
    pool = keras.layers.MaxPooling2D(2)
    assert shapes.layer_mult_adds(pool, (1, 4, 4, 3), (1, 2, 2, 3)) == 0
    assert shapes.layer_mult_adds(pool, (1, 4, 4, 3), (1, 2, 2, 3), include_pooling=True) == 48
    gap = keras.layers.GlobalAveragePooling2D()
    assert shapes.layer_mult_adds(gap, (1, 4, 4, 3), (1, 3), include_pooling=True) == 48
    assert shapes.layer_mult_adds(keras.layers.ReLU(), (1, 4), (1, 4)) == 0


def test_mult_adds_table_counts_inside_blocks():
    model = _tiny_model()
    table = shapes.mult_adds_table(model)
    assert list(table["layer"]) == ["conv", "pool", "inc", "res", "gap", "logits"]
    by_layer = dict(zip(table["layer"], table["mult_adds"], strict=True))
    assert by_layer["conv"] == shapes.conv2d_mult_adds(8, 3, 2, 4)
    assert by_layer["pool"] == 0
    assert by_layer["inc"] == _inception_mult_adds(4, 4, 2, (3, 4), (1, 2), 3)
    # One residual with a 1x1 stride-2 shortcut: 11 -> 6 channels, 4x4 -> 2x2.
    assert by_layer["res"] == (
        shapes.conv2d_mult_adds(2, 3, 11, 6)
        + shapes.conv2d_mult_adds(2, 3, 6, 6)
        + shapes.conv2d_mult_adds(2, 1, 11, 6)
    )
    assert by_layer["logits"] == shapes.dense_mult_adds(6, 5)
    assert table.attrs["total_mult_adds"] == sum(by_layer.values())
    assert list(table["params"]) == [layer.count_params() for layer in model.layers[1:]]
    assert table["output_shape"].iloc[2] == (1, 4, 4, 11)


def test_mult_adds_table_detail_and_model_is_restored():
    model = _tiny_model()
    x = np.random.default_rng(0).random((2, 8, 8, 2), dtype=np.float32)
    before = np.asarray(model(x))
    detail = shapes.mult_adds_table(model, detail=True, include_pooling=True)
    assert {"inc_b2_3x3", "res_block1_skip_conv", "inc_b4_pool"} <= set(detail["layer"])
    row = detail.set_index("layer").loc["inc_b3_5x5"]
    assert row["block"] == "inc" and row["input_shape"] == (1, 4, 4, 1)
    assert row["mult_adds"] == shapes.conv2d_mult_adds(4, 5, 1, 2)
    assert detail.set_index("layer").loc["inc_b4_pool", "mult_adds"] == 4 * 4 * 9 * 4
    # The recording hooks are gone: the model computes as before, and no instance attribute.
    np.testing.assert_array_equal(before, model(x))
    assert "call" not in vars(model.get_layer("conv"))


def test_mult_adds_table_with_merge_layers():
    inputs = keras.Input((4, 4, 2))
    a = keras.layers.Conv2D(2, 1, name="a")(inputs)
    b = keras.layers.Add(name="add")([a, inputs])
    c = keras.layers.Concatenate(name="cat")([b, inputs])
    table = shapes.mult_adds_table(keras.Model(inputs, c), detail=True).set_index("layer")
    assert table.loc["add", "mult_adds"] == 0
    assert table.loc["add", "input_shape"] == ((1, 4, 4, 2), (1, 4, 4, 2))
    assert table.attrs["total_mult_adds"] == 16 * 2 * 2


def test_mult_adds_table_needs_inputs():
    with pytest.raises(ValueError, match="defined inputs"):
        shapes.mult_adds_table(keras.Sequential([keras.layers.Dense(2)]))
