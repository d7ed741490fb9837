import keras
import numpy as np
import pytest

from cnn_utils import blocks


def _x(*shape):
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def test_residual_shapes_of_the_lecture():
    x = _x(4, 6, 6, 3)
    assert tuple(blocks.Residual(3)(x).shape) == (4, 6, 6, 3)
    assert tuple(blocks.Residual(6, use_1x1conv=True, strides=2)(x).shape) == (4, 3, 3, 6)
    layer = blocks.Residual(6, use_1x1conv=True, strides=2)
    assert layer.compute_output_shape((4, 6, 6, 3)) == (4, 3, 3, 6)


def test_residual_names_and_structure():
    layer = blocks.Residual(4, use_1x1conv=True, strides=2, name="res3_block1")
    layer.build((None, 8, 8, 2))
    names = {sub.name for sub in layer._flatten_layers(include_self=False)}
    assert names == {
        "res3_block1_conv1",
        "res3_block1_bn1",
        "res3_block1_conv2",
        "res3_block1_bn2",
        "res3_block1_skip_conv",
    }
    assert layer.built and layer.conv1.built and layer.skip_conv.built
    # 2 convs 3x3 + 1x1 skip (with biases) + 2 BN (4 numbers per channel).
    expected = (9 * 2 + 1) * 4 + (9 * 4 + 1) * 4 + (2 + 1) * 4 + 2 * 4 * 4
    assert layer.count_params() == expected


def test_residual_adds_the_input():
    layer = blocks.Residual(2, name="r")
    x = _x(1, 4, 4, 2)
    layer.build(x.shape)
    for conv in (layer.conv1, layer.conv2):  # zero main path: f(x) = relu(0 + x) = x
        conv.kernel.assign(np.zeros(conv.kernel.shape, dtype="float32"))
    np.testing.assert_allclose(layer(x, training=False), x, atol=1e-5)
    plain = blocks.Residual(2, use_skip=False, name="p")
    plain.build(x.shape)
    assert plain.skip_conv is None


def test_resnet_block_shapes_and_names():
    x = _x(2, 8, 8, 3)
    block = blocks.ResnetBlock(5, 2, name="res3")
    assert tuple(block(x).shape) == (2, 4, 4, 5)
    assert [r.name for r in block.residuals] == ["res3_block1", "res3_block2"]
    assert block.residuals[0].skip_conv.name == "res3_block1_skip_conv"
    assert block.residuals[1].skip_conv is None
    first = blocks.ResnetBlock(3, 3, first_block=True, name="res2")
    assert tuple(first(x).shape) == (2, 8, 8, 3)
    assert first.compute_output_shape((2, 8, 8, 3)) == (2, 8, 8, 3)


def test_inception_shapes_and_names():
    x = _x(2, 8, 8, 6)
    layer = blocks.Inception(2, (3, 4), (1, 2), 3, name="inception_3a")
    assert tuple(layer(x).shape) == (2, 8, 8, 2 + 4 + 2 + 3)
    names = {sub.name for sub in layer._flatten_layers(include_self=False)}
    assert "inception_3a_b2_3x3" in names and "inception_3a_b4_pool" in names
    with_bn = blocks.Inception(2, (3, 4), (1, 2), 3, batch_norm=True)
    assert tuple(with_bn(x, training=True).shape) == (2, 8, 8, 11)


def test_inception_parameters_match_the_formula():
    layer = blocks.Inception(64, (96, 128), (16, 32), 32)
    layer.build((None, 28, 28, 192))
    c = 192
    expected = (
        (c + 1) * 64
        + (c + 1) * 96
        + (9 * 96 + 1) * 128
        + (c + 1) * 16
        + (25 * 16 + 1) * 32
        + (c + 1) * 32
    )
    assert layer.count_params() == expected


def _model():
    inputs = keras.Input((8, 8, 3))
    x = blocks.ResnetBlock(3, 1, first_block=True, name="res2")(inputs)
    x = blocks.ResnetBlock(6, 2, name="res3")(x)
    x = blocks.Inception(2, (2, 3), (1, 2), 2, batch_norm=True, name="inc")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_saved_model_reloads_with_identical_outputs(tmp_path):
    model = _model()
    x = _x(3, 8, 8, 3)
    model(x, training=True)  # move the BN statistics away from their initial values
    path = tmp_path / "blocks.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model(x, training=False), loaded(x, training=False))
    assert isinstance(loaded.get_layer("res3"), blocks.ResnetBlock)
    assert [r.name for r in loaded.get_layer("res3").residuals] == ["res3_block1", "res3_block2"]


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (blocks.Residual, {"num_channels": 4, "use_1x1conv": True, "strides": 2}),
        (blocks.Residual, {"num_channels": 4, "use_skip": False, "bn_momentum": 0.5}),
        (blocks.ResnetBlock, {"num_channels": 4, "num_residuals": 3, "first_block": True}),
        (blocks.Inception, {"c1": 1, "c2": (2, 3), "c3": (4, 5), "c4": 6, "batch_norm": True}),
    ],
)
def test_get_config_round_trip(cls, kwargs):
    layer = cls(**kwargs, name="blk")
    config = layer.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    clone = cls.from_config(config)
    assert clone.get_config() == config
    assert clone.name == "blk"
    registered = keras.saving.get_registered_name(cls)
    assert registered == f"cnn_utils>{cls.__name__}"


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: blocks.Residual(0), r"num_channels must be a positive integer\. "
         r"Received: num_channels=0"),
        (lambda: blocks.Residual(3, strides=0), "strides.*0"),
        (lambda: blocks.Residual(2.5), "num_channels=2.5"),
        (lambda: blocks.Residual(3, bn_momentum=1.0), "bn_momentum=1.0"),
        (lambda: blocks.ResnetBlock(-1, 2), "num_channels=-1"),
        (lambda: blocks.ResnetBlock(4, 0), "num_residuals=0"),
        (lambda: blocks.Inception(0, (1, 2), (1, 2), 1), "c1=0"),
        (lambda: blocks.Inception(1, (1,), (1, 2), 1), r"c2.*pair.*\(1,\)"),
        (lambda: blocks.Inception(1, (1, 2), (0, 2), 1), r"c3.*\(0, 2\)"),
        (lambda: blocks.Inception(1, (1, 2), (1, 2), -3), "c4=-3"),
        (lambda: blocks.Residual(3, use_skip="no"), "use_skip must be True or False.*'no'"),
        (lambda: blocks.Residual(3, use_1x1conv=1), "use_1x1conv=1"),
        (lambda: blocks.Residual(3, batch_norm=None), "batch_norm=None"),
        (lambda: blocks.Residual(3, bn_momentum=float("nan")), "bn_momentum=nan"),
        (lambda: blocks.ResnetBlock(4, 1, first_block="yes"), "first_block='yes'"),
        (lambda: blocks.ResnetBlock(4, 1, use_skip=0), "use_skip=0"),
        (lambda: blocks.ResnetBlock(4, 1.0), r"num_residuals=1\.0"),
        (lambda: blocks.Inception(1, (1, 2), (1, 2), 1, batch_norm="on"), "batch_norm='on'"),
        (lambda: blocks.Inception(1, [1, True], (1, 2), 1), "c2"),
        (lambda: blocks.Inception(1, (1, 2), (1, 2), 1, bn_momentum=-0.1), "bn_momentum=-0.1"),
    ],
)  # fmt: skip
def test_invalid_arguments_raise_value_error(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_residual_without_1x1_conv_rejects_shape_change():
    with pytest.raises(ValueError, match="use_1x1conv=True"):
        blocks.Residual(6)(_x(1, 4, 4, 3))
    with pytest.raises(ValueError, match="strides=2"):
        blocks.Residual(3, strides=2)(_x(1, 4, 4, 3))
