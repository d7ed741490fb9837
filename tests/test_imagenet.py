"""Tests of cnn_utils.imagenet: pixel models (random weights: no internet here), class names."""

import keras
import numpy as np
import pytest

from cnn_utils import imagenet, probe, saliency

LAYERS = {"vgg16": ["block1_conv1", "block5_conv3", "fc2"], "mobilenet_v2": ["Conv1", "Conv_1"]}
PREPROCESS = {
    "vgg16": keras.applications.vgg16.preprocess_input,
    "mobilenet_v2": keras.applications.mobilenet_v2.preprocess_input,
}


@pytest.fixture(scope="module", params=["vgg16", "mobilenet_v2"])
def built(request):
    return request.param, imagenet.pixel_model(request.param, weights=None)


def test_pixel_model_keeps_every_layer_addressable(built):
    name, model = built
    assert model.pretrained is False
    assert tuple(model.inputs[0].shape) == (None, 224, 224, 3)
    for layer_name in LAYERS[name]:
        assert model.get_layer(layer_name).output is not None  # in this graph: one node
        assert probe.layer_model(model, layer_name).output.shape[0] is None
    expected = {"vgg16": "block5_conv3", "mobilenet_v2": "out_relu"}[name]
    assert probe.last_feature_layer(model) == expected  # the Grad-CAM default


def test_pixel_model_outputs_logits_after_the_architectures_preprocessing(built):
    name, model = built
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    preprocessed = probe.layer_model(model, "preprocess")(x)
    expected = PREPROCESS[name](x.copy() * 255.0)
    np.testing.assert_allclose(preprocessed, expected, rtol=1e-5, atol=1e-4)
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    assert logits.shape == (1, 1000) and np.isfinite(logits).all()
    assert not np.isclose(logits.sum(), 1.0) or logits.min() < 0  # not a softmax
    assert model.layers[-1].get_config()["activation"] == "linear"


def test_grad_cam_runs_on_a_pixel_model(built):
    name, model = built
    x = np.random.default_rng(1).random((1, 224, 224, 3), dtype=np.float32)
    layer_name = LAYERS[name][-1] if name == "mobilenet_v2" else "block5_conv3"
    heat = saliency.grad_cam(model, x, 3, layer_name=layer_name)
    assert heat.shape == (1, 224, 224) and np.isfinite(heat).all()


def _fake_architecture(weights=None, classifier_activation=None):
    """A tiny functional stand-in that fails to download like Keras does offline."""
    if weights is not None:
        raise Exception("URL fetch failure on https://example.invalid: None -- offline")
    inputs = keras.Input((224, 224, 3))
    h = keras.layers.Conv2D(2, 3, strides=16, name="conv")(inputs)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inputs, keras.layers.Dense(1000, name="predictions")(h))


def test_unavailable_weights_raise_a_clear_error_without_the_switch(monkeypatch):
    monkeypatch.setitem(imagenet._ARCHITECTURES, "vgg16", (_fake_architecture, PREPROCESS["vgg16"]))
    monkeypatch.delenv(imagenet.STANDIN_VARIABLE, raising=False)
    with pytest.raises(imagenet.WeightsUnavailableError, match="CNN_UTILS_STANDIN_WEIGHTS=1"):
        imagenet.pixel_model("vgg16")


def test_stand_in_weights_with_the_switch_say_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(imagenet._ARCHITECTURES, "vgg16", (_fake_architecture, PREPROCESS["vgg16"]))
    monkeypatch.setenv(imagenet.STANDIN_VARIABLE, "1")
    model = imagenet.pixel_model("vgg16")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "stand-in" in lines[0]
    assert model.pretrained is False and model.get_layer("conv").output.shape[-1] == 2
    monkeypatch.setenv(imagenet.STANDIN_VARIABLE, "maybe")
    with pytest.raises(ValueError, match="CNN_UTILS_STANDIN_WEIGHTS must be one of"):
        imagenet.pixel_model("vgg16")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "resnet50"}, "name must be one of"),
        ({"name": "vgg16", "weights": 3}, "weights must be 'imagenet', None or a file path"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        imagenet.pixel_model(**kwargs)


def test_class_names_from_the_keras_cache():
    names = imagenet.class_names()
    assert len(names) == 1000
    assert names[281] == "tabby" and names[0] == "tench"


def test_preprocessing_layer_round_trips_its_config():
    layer = imagenet.PixelPreprocessing("mobilenet_v2", name="pre")
    again = imagenet.PixelPreprocessing.from_config(layer.get_config())
    x = np.linspace(0, 1, 12, dtype=np.float32).reshape(1, 2, 2, 3)
    np.testing.assert_allclose(again(x), 2 * x - 1, atol=1e-6)
