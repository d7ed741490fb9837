"""ImageNet networks on [0, 1] pixels, with every layer addressable by name, and the class names.

The course's visualisation and attack code works on images scaled to [0, 1]. A Keras
application expects its own input scale instead (VGG16: BGR minus the ImageNet mean, "caffe";
MobileNetV2: [-1, 1]), and wrapping it as one layer of a new model hides its layers from
Grad-CAM and the layer probes. :func:`pixel_model` therefore rebuilds the network behind a
:class:`PixelPreprocessing` layer, layer by layer, so that ``model.get_layer("block5_conv3")``
works on the new model, and returns logits (``classifier_activation=None``).

Without internet the ImageNet weights cannot be fetched. Setting the environment variable
``CNN_UTILS_STANDIN_WEIGHTS=1`` (``make test`` does) then builds the same architecture with
random weights, says so in one printed line, and marks the model with ``pretrained=False`` so
that a notebook can skip the checks that need the real weights.

References:
    Simonyan & Zisserman 2014, "Very deep convolutional networks for large-scale image
    recognition" (VGG16).
    Sandler et al. 2018, "MobileNetV2: inverted residuals and linear bottlenecks".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras

from cnn_utils import _checks, config

__all__ = [
    "CLASS_INDEX_URL",
    "INPUT_SHAPE",
    "STANDIN_VARIABLE",
    "PixelPreprocessing",
    "WeightsUnavailableError",
    "class_names",
    "pixel_model",
    "standin_allowed",
]

STANDIN_VARIABLE = "CNN_UTILS_STANDIN_WEIGHTS"
"""Environment variable: build random stand-in weights when the ImageNet ones cannot be had."""

CLASS_INDEX_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"
)
"""Where :func:`class_names` downloads ``imagenet_class_index.json`` from (Keras' own copy)."""
_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"  # the hash Keras' decode_predictions uses

_ARCHITECTURES = {
    "vgg16": (keras.applications.VGG16, keras.applications.vgg16.preprocess_input),
    "mobilenet_v2": (
        keras.applications.MobileNetV2,
        keras.applications.mobilenet_v2.preprocess_input,
    ),
}
INPUT_SHAPE = (224, 224, 3)
"""The input shape of :func:`pixel_model`'s networks: 224x224 RGB."""


class WeightsUnavailableError(OSError):
    """The ImageNet weights could not be downloaded or found in the Keras cache."""


@keras.saving.register_keras_serializable(package="cnn_utils")
class PixelPreprocessing(keras.layers.Layer):
    """RGB pixels in [0, 1] -> the architecture's own input: ``preprocess_input(255 * x)``.

    Args:
        architecture: ``"vgg16"`` or ``"mobilenet_v2"``.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(self, architecture: str, **kwargs):
        super().__init__(**kwargs)
        self.architecture = _checks.one_of("architecture", architecture, tuple(_ARCHITECTURES))

    def call(self, inputs):
        """Return the preprocessed images."""
        preprocess = _ARCHITECTURES[self.architecture][1]
        return preprocess(keras.ops.multiply(inputs, 255.0))

    def compute_output_shape(self, input_shape):
        """Same shape as the input."""
        return input_shape

    def get_config(self) -> dict:
        """The constructor arguments."""
        return {**super().get_config(), "architecture": self.architecture}


def standin_allowed() -> bool:
    """Whether ``CNN_UTILS_STANDIN_WEIGHTS`` asks for random stand-in weights when offline."""
    return config._parse_flag(STANDIN_VARIABLE, os.environ.get(STANDIN_VARIABLE))


def _base(name: str, weights: str | None) -> tuple[keras.Model, bool]:
    constructor = _ARCHITECTURES[name][0]
    if weights is None:
        return constructor(weights=None, classifier_activation=None), False
    try:
        return constructor(weights=weights, classifier_activation=None), True
    except Exception as error:  # Keras raises a bare Exception for a failed download
        if not standin_allowed():
            raise WeightsUnavailableError(
                f"The {weights} weights of {name} could not be downloaded or found in the Keras "
                f"cache ($KERAS_HOME/models, default ~/.keras/models): "
                f"{type(error).__name__}: {str(error)[:200]}. Run once with internet access, "
                f"or set {STANDIN_VARIABLE}=1 to use random stand-in weights."
            ) from error
        reason = type(error).__name__
    print(
        f"{name}: the {weights} weights are not available ({reason}); using random stand-in "
        f"weights ({STANDIN_VARIABLE}=1): the pictures and predictions mean nothing."
    )
    return constructor(weights=None, classifier_activation=None), False


def pixel_model(name: str = "vgg16", weights: str | None = "imagenet") -> keras.Model:
    """An ImageNet classifier on RGB images in [0, 1] whose layers can all be named.

    The returned functional model is ``pixels -> PixelPreprocessing -> the architecture's
    layers`` with fresh copies of the layers (same names, same weights), so that every layer
    of the Keras application (``"block5_conv3"``, ``"Conv_1"``...) is reachable with
    ``model.get_layer`` and its output lies in the new graph: Grad-CAM, the probes of
    :mod:`cnn_utils.probe` and :func:`cnn_utils.maximize.maximize_activation` work on it. The
    output is the 1,000 logits (no softmax).

    Args:
        name: ``"vgg16"`` or ``"mobilenet_v2"``.
        weights: ``"imagenet"`` (downloaded by Keras on first use), ``None`` for random
            weights, or the path of a weights file for the Keras application.

    Returns:
        A ``keras.Model`` of input (None, 224, 224, 3) and output (None, 1000), with the
        attribute ``pretrained`` (``False`` for random or stand-in weights).

    Raises:
        ValueError: An unknown architecture, or a weights path with no file there (raised
            even when stand-in weights are allowed).
        WeightsUnavailableError: The weights cannot be fetched and ``CNN_UTILS_STANDIN_WEIGHTS``
            is not set.
    """
    _checks.one_of("name", name, tuple(_ARCHITECTURES))
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"weights must be 'imagenet', None or a file path. Received: weights={weights!r}"
        )
    if weights is not None and weights != "imagenet" and not os.path.isfile(weights):
        # Checked before any stand-in: a mistyped path must not turn into random weights.
        raise ValueError(
            f"weights must be 'imagenet', None or an existing weights file; there is no file "
            f"at that path. Received: weights={weights!r}"
        )
    base, pretrained = _base(name, weights)
    pixels = keras.Input(INPUT_SHAPE, name="pixels")
    preprocessed = PixelPreprocessing(name, name="preprocess")(pixels)

    def fresh_copy(layer):  # a new layer object, so that its output lies in the new graph
        return layer.__class__.from_config(layer.get_config())

    # Functional models re-run their graph on new inputs with each layer replaced by the
    # result of operation_fn (what keras.models.clone_model does inside).
    logits = base._run_through_graph(preprocessed, operation_fn=fresh_copy)
    model = keras.Model(pixels, logits, name=f"{name}_pixels")
    if pretrained:
        for layer in base.layers:
            if layer.weights:
                model.get_layer(layer.name).set_weights(layer.get_weights())
    model.pretrained = pretrained
    return model


def class_names() -> list[str]:
    """The 1,000 ImageNet class names, index -> short name (``"tabby"``, ``"tiger_cat"``...).

    Read from ``imagenet_class_index.json``, which Keras downloads once into
    ``$KERAS_HOME/models`` (the file ``decode_predictions`` uses).

    Raises:
        WeightsUnavailableError: The file is neither cached nor downloadable.
    """
    try:
        path = keras.utils.get_file(
            "imagenet_class_index.json",
            CLASS_INDEX_URL,
            cache_subdir="models",
            file_hash=_CLASS_INDEX_MD5,
        )
    except Exception as error:  # Keras raises a bare Exception for a failed download
        raise WeightsUnavailableError(
            "imagenet_class_index.json could not be downloaded or found in the Keras cache "
            f"($KERAS_HOME/models): {type(error).__name__}: {str(error)[:200]}"
        ) from error
    index = json.loads(Path(path).read_text())
    return [index[str(i)][1] for i in range(len(index))]
