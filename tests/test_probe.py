"""Tests of cnn_utils.probe: layers by name, probe sub-models, defaults, batched features."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn_utils import blocks, probe


def test_layer_finds_by_name_and_lists_names_otherwise(named_model):
    assert probe.layer(named_model, "conv2") is named_model.get_layer("conv2")
    with pytest.raises(
        ValueError, match=r"layer_name must be one of .*'conv1'.*Received: layer_name='nope'"
    ):
        probe.layer(named_model, "nope")
    with pytest.raises(ValueError, match="Received: layer_name=3"):
        probe.layer(named_model, 3)


def test_layer_model_single_list_and_logits(named_model):
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    single = probe.layer_model(named_model, "conv2")
    assert tuple(single(x).shape) == (3, 8, 8, 4)
    features, logits = probe.layer_model(named_model, ["pool", None])(x)
    assert tuple(features.shape) == (3, 4, 4, 4)
    np.testing.assert_allclose(logits, named_model(x, training=False), rtol=1e-5, atol=1e-6)
    # A symbolic tensor of the graph (a layer's input) is accepted too.
    flatten_input = probe.layer_model(named_model, named_model.get_layer("flatten").input)
    np.testing.assert_allclose(flatten_input(x), features, rtol=1e-5, atol=1e-6)


def test_defaults_skip_pooling_dropout_and_find_blocks(named_model):
    assert probe.last_feature_layer(named_model) == "conv2"  # the pooling layer is skipped
    assert probe.penultimate_layer(named_model) == "fc"  # dropout skipped
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    h = blocks.ResnetBlock(4, 1, first_block=True, name="res2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))
    assert probe.last_feature_layer(model) == "res2"
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no layer with 4-D"):
        probe.last_feature_layer(flat)


def test_never_called_sequential_model_is_built_on_demand():
    model = keras.Sequential([keras.layers.Conv2D(2, 3, name="conv"), keras.layers.Flatten()])
    with pytest.raises(ValueError, match="never been called"):
        probe.ensure_built(model)
    probe.ensure_built(model, (8, 8, 1))
    assert probe.layer_model(model, "conv").output.shape[1:] == (6, 6, 2)
    with pytest.raises(ValueError, match="model must be a keras.Model"):
        probe.ensure_built(lambda x: x)


@pytest.mark.parametrize("batch_size", [1, 3, np.int64(4), np.int32(256)])
def test_features_are_batched_and_equal_to_one_pass(named_model, batch_size):
    x = np.random.default_rng(0).random((7, 8, 8, 1), dtype=np.float32)
    out = probe.features(named_model, x, "conv2", batch_size=batch_size)
    direct = probe.layer_model(named_model, "conv2")(x).numpy().reshape(7, -1)
    assert out.shape == (7, 8 * 8 * 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-6)
    kept = probe.features(named_model, x, "conv2", batch_size=batch_size, flatten=False)
    assert kept.shape == (7, 8, 8, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"batch_size": 2.0}, "batch_size must be a positive integer"),
        ({"batch_size": True}, "batch_size must be a positive integer"),
        ({"flatten": "no"}, "flatten must be True or False"),
        ({"layer_name": "nope"}, "layer_name must be one of"),
    ],
)
def test_features_bad_arguments(named_model, kwargs, message):
    x = np.zeros((2, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match=message):
        probe.features(named_model, x, **kwargs)


def test_features_refuse_nan_images(named_model):
    x = np.zeros((2, 8, 8, 1), np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x must be finite"):
        probe.features(named_model, x)


def test_gradient_of_a_disconnected_graph_is_a_clear_error():
    x = tf.constant(np.ones((1, 3), np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(tf.stop_gradient(x) * 2.0)
    with pytest.raises(ValueError, match="gradient of the score with respect to x is None"):
        probe.gradient(tape, y, x, what="the score with respect to x")
