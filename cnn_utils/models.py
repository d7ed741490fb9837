"""Course architectures: the small CNN of notebook 01, AlexNet, GoogLeNet, ResNet, plain twins.

Every model returns logits (no softmax layer): train with
``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``, and apply
``keras.ops.softmax`` for probabilities. The attacks and saliency methods need the logits.

This module builds architectures only; training them and the trained-model cache
(``trained("small_cnn")``) live in :mod:`cnn_utils.training`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from cnn_utils import _checks, blocks

__all__ = [
    "GOOGLENET_INCEPTIONS",
    "HEADS",
    "STEMS",
    "alexnet",
    "googlenet",
    "resnet",
    "resnet18",
    "small_cnn",
]

HEADS = ("gap", "flatten")
STEMS = ("imagenet", "small")


def _input_shape(input_shape) -> tuple[int, int, int]:
    """(H, W, C): three positive integers."""
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise ValueError(
            f"input_shape must be (height, width, channels). Received: input_shape={input_shape!r}"
        )
    if len(input_shape) != 3:
        raise ValueError(
            "input_shape must be (height, width, channels), three positive integers. "
            f"Received: input_shape={input_shape!r}"
        )
    return tuple(_checks.positive_int("input_shape", size) for size in input_shape)


def _num_classes(num_classes) -> int:
    return _checks.integer("num_classes", num_classes, minimum=2)


def _widths(argname: str, values) -> tuple[int, ...]:
    """A non-empty sequence of positive integers (channel counts)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(
            f"{argname} must be a non-empty sequence of positive integers. "
            f"Received: {argname}={values!r}"
        )
    try:
        return tuple(_checks.positive_int(argname, value) for value in values)
    except ValueError:
        raise ValueError(
            f"{argname} must be positive integers. Received: {argname}={values!r}"
        ) from None


def _dropout(value) -> float:
    return _checks.number("dropout", value, minimum=0.0, below=1.0)


def _model_name(name) -> str | None:
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"name must be a non-empty string or None. Received: name={name!r}")
    return name


def small_cnn(
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    *,
    filters: Sequence[int] = (32, 64),
    convs_per_stage: int = 2,
    head: str = "gap",
    dense_units: int = 128,
    dropout: float = 0.3,
    batch_norm: bool = True,
    name: str | None = None,
) -> keras.Model:
    """The small CNN of notebook 01: VGG-style stages with batch norm, ReLU and dropout.

    Each stage is ``convs_per_stage`` 3x3 'same' convolutions (each followed by batch
    normalisation and ReLU) and a 2x2 max pooling, then dropout. The head is either global
    average pooling followed by one Dense layer (``head="gap"``, Lin et al. 2014) or
    Flatten -> Dense(``dense_units``) -> Dense (``head="flatten"``, the AlexNet/VGG head).

    Args:
        input_shape: (H, W, C) of the images.
        num_classes: Number of classes (logit outputs).
        filters: Filters of each stage; the spatial size halves after each.
        convs_per_stage: 3x3 convolutions per stage.
        head: ``"gap"`` or ``"flatten"``.
        dense_units: Width of the hidden Dense layer of the ``"flatten"`` head.
        dropout: Dropout rate after each stage and before the classifier, in [0, 1).
        batch_norm: Use batch normalisation after each convolution.
        name: Model name (default ``"small_cnn_<head>"``).

    Returns:
        An uncompiled ``keras.Model`` that outputs logits.

    Raises:
        ValueError: Unknown head, empty or non-positive filters, a bad rate or size.
    """
    input_shape = _input_shape(input_shape)
    num_classes = _num_classes(num_classes)
    _checks.one_of("head", head, HEADS)
    filters = _widths("filters", filters)
    convs_per_stage = _checks.positive_int("convs_per_stage", convs_per_stage)
    dense_units = _checks.positive_int("dense_units", dense_units)
    dropout = _dropout(dropout)
    batch_norm = _checks.flag("batch_norm", batch_norm)
    name = _model_name(name)
    layers = keras.layers
    inputs = keras.Input(tuple(input_shape), name="image")
    x = inputs
    for stage, width in enumerate(filters, start=1):
        for index in range(1, convs_per_stage + 1):
            tag = f"{stage}_{index}"
            x = layers.Conv2D(
                int(width), 3, padding="same", use_bias=not batch_norm, name=f"conv{tag}"
            )(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=0.9, name=f"bn{tag}")(x)
            x = layers.ReLU(name=f"relu{tag}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{stage}")(x)
    if head == "gap":
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(dense_units, activation="relu", name="fc")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout_head")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"small_cnn_{head}")


# ---------------------------------------------------------------------------------------------
# ResNet (He et al. 2015)
# ---------------------------------------------------------------------------------------------


def _residual_counts(num_residuals, stages: int) -> list[int]:
    """Residual blocks per stage: one positive integer for all stages, or one per stage."""
    if isinstance(num_residuals, (int, np.integer)) and not isinstance(num_residuals, bool):
        return [_checks.positive_int("num_residuals", num_residuals)] * stages
    try:
        counts = list(_widths("num_residuals", num_residuals))
    except ValueError:
        counts = []
    if len(counts) != stages:
        raise ValueError(
            "num_residuals must be a positive integer or one per stage. "
            f"Received: num_residuals={num_residuals!r}"
        )
    return counts


def _resnet_stem(inputs, stem: str, width: int, batch_norm: bool, bn_momentum: float):
    """ResNet's stem: 7x7/2 conv, (BN), ReLU, 3x3/2 max pool (ImageNet) or 3x3/1 conv (small)."""
    layers = keras.layers
    if stem == "imagenet":
        x = layers.Conv2D(width, 7, strides=2, padding="same", name="conv1")(inputs)
    else:
        x = layers.Conv2D(width, 3, padding="same", name="conv1")(inputs)
    if batch_norm:
        x = layers.BatchNormalization(momentum=bn_momentum, name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    if stem == "imagenet":
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    return x


def resnet(
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    *,
    widths: Sequence[int] = (16, 32, 64),
    num_residuals: int | Sequence[int] = 2,
    stem: str = "small",
    residual: bool = True,
    batch_norm: bool = True,
    bn_momentum: float = 0.9,
    name: str | None = None,
) -> keras.Model:
    """A ResNet (He et al. 2015): a stem, one :class:`~cnn_utils.blocks.ResnetBlock` per width.

    The stem is either the ImageNet one (``"imagenet"``: 7x7/2 convolution, BN, ReLU, 3x3/2 max
    pooling, a quarter of the resolution) or, for 28x28 or 32x32 images, a 3x3/1 convolution,
    BN and ReLU (``"small"``, as the paper's CIFAR-10 networks). The first stage keeps the
    resolution (``first_block=True``), every later stage halves it and changes the width.
    Global average pooling and one Dense layer give the logits. Layers are named ``conv1``,
    ``bn1``, ``relu1``, (``pool1``), ``res2``, ``res3``... (the paper's conv2_x, conv3_x...),
    ``gap`` and ``logits``.

    The network has ``2 + 2 * sum(num_residuals)`` layers with weights; with
    ``residual=False`` the same layers without shortcuts (nor their 1x1 convolutions) form its
    plain twin, for the degradation experiment.

    Args:
        input_shape: (H, W, C) of the images.
        num_classes: Number of logits.
        widths: Channels of each stage.
        num_residuals: Residual blocks per stage, one number for all or one per stage.
        stem: ``"imagenet"`` or ``"small"``.
        residual: Use the shortcut connections; ``False`` builds the plain twin.
        batch_norm: Batch normalisation in the stem and the blocks (``False`` drops all).
        bn_momentum: Momentum of every batch normalisation.
        name: Model name (default ``"resnet<depth>"`` or ``"plain<depth>"``).

    Returns:
        An uncompiled ``keras.Model`` that outputs logits.

    Raises:
        ValueError: Empty or non-positive widths or block counts, an unknown stem, fewer than
            two classes, an input shape that is not three positive integers, a non-boolean
            flag, a momentum outside [0, 1), or a bad name.
    """
    input_shape = _input_shape(input_shape)
    num_classes = _num_classes(num_classes)
    _checks.one_of("stem", stem, STEMS)
    widths = _widths("widths", widths)
    counts = _residual_counts(num_residuals, len(widths))
    residual = _checks.flag("residual", residual)
    batch_norm = _checks.flag("batch_norm", batch_norm)
    bn_momentum = _checks.number("bn_momentum", bn_momentum, minimum=0.0, below=1.0)
    name = _model_name(name)
    depth = 2 + 2 * sum(counts)
    inputs = keras.Input(tuple(input_shape), name="image")
    x = _resnet_stem(inputs, stem, widths[0], batch_norm, bn_momentum)
    for stage, (width, count) in enumerate(zip(widths, counts, strict=True)):
        x = blocks.ResnetBlock(
            width,
            count,
            first_block=stage == 0,
            use_skip=residual,
            batch_norm=batch_norm,
            bn_momentum=bn_momentum,
            name=f"res{stage + 2}",
        )(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    default = f"{'resnet' if residual else 'plain'}{depth}"
    return keras.Model(inputs, outputs, name=name or default)


def resnet18(input_shape: Sequence[int] = (224, 224, 3), num_classes: int = 10) -> keras.Model:
    """ResNet-18 as in the lecture (He et al. 2015, Table 1, the 18-layer column).

    Stem 7x7/2 convolution with 64 filters, BN, ReLU, 3x3/2 max pooling; four stages of two
    residual blocks with 64, 128, 256 and 512 channels; global average pooling; Dense. On a
    224x224x3 image the stages output 56x56x64, 28x28x128, 14x14x256 and 7x7x512.

    Args:
        input_shape: (H, W, C) of the images.
        num_classes: Number of logits.

    Returns:
        An uncompiled ``keras.Model`` named ``"resnet18"`` that outputs logits.

    Raises:
        ValueError: Fewer than two classes, or an input shape that is not three positive
            integers.
    """
    return resnet(
        input_shape,
        num_classes,
        widths=(64, 128, 256, 512),
        num_residuals=2,
        stem="imagenet",
        name="resnet18",
    )


# ---------------------------------------------------------------------------------------------
# GoogLeNet (Szegedy et al. 2014) and AlexNet (Krizhevsky et al. 2012)
# ---------------------------------------------------------------------------------------------

#: The inception blocks of GoogLeNet (Szegedy et al. 2014, Table 1): name -> (c1, c2, c3, c4).
GOOGLENET_INCEPTIONS = {
    "3a": (64, (96, 128), (16, 32), 32),
    "3b": (128, (128, 192), (32, 96), 64),
    "4a": (192, (96, 208), (16, 48), 64),
    "4b": (160, (112, 224), (24, 64), 64),
    "4c": (128, (128, 256), (24, 64), 64),
    "4d": (112, (144, 288), (32, 64), 64),
    "4e": (256, (160, 320), (32, 128), 128),
    "5a": (256, (160, 320), (32, 128), 128),
    "5b": (384, (192, 384), (48, 128), 128),
}


class _GoogLeNetStages:
    """GoogLeNet from the image to inception 5b (Table 1's rows), as functional-API calls."""

    def __init__(self, width: float, batch_norm: bool):
        self.width, self.batch_norm = width, batch_norm

    def ch(self, channels: int) -> int:
        """A channel count scaled by ``width`` (at least 1)."""
        return max(1, round(channels * self.width))

    def conv(self, x, filters: int, kernel_size: int, strides: int = 1, *, name: str):
        """A 'same' convolution and ReLU (with batch normalisation between if asked)."""
        layers = keras.layers
        x = layers.Conv2D(
            self.ch(filters),
            kernel_size,
            strides=strides,
            padding="same",
            activation=None if self.batch_norm else "relu",
            name=name,
        )(x)
        if self.batch_norm:
            x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
            x = layers.ReLU(name=f"{name}_relu")(x)
        return x

    def inception(self, x, key: str):
        """The inception block ``key`` of :data:`GOOGLENET_INCEPTIONS`, one layer."""
        c1, c2, c3, c4 = GOOGLENET_INCEPTIONS[key]
        return blocks.Inception(
            self.ch(c1),
            (self.ch(c2[0]), self.ch(c2[1])),
            (self.ch(c3[0]), self.ch(c3[1])),
            self.ch(c4),
            batch_norm=self.batch_norm,
            name=f"inception_{key}",
        )(x)

    def __call__(self, inputs, stem: str):
        def pool(x, name: str):
            return keras.layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)

        if stem == "imagenet":
            x = pool(self.conv(inputs, 64, 7, 2, name="conv1"), "pool1")
        else:
            x = self.conv(inputs, 64, 3, name="conv1")
        x = self.conv(x, 64, 1, name="conv2_reduce")
        x = pool(self.conv(x, 192, 3, name="conv2"), "pool2")
        for stage, keys in ((3, ("3a", "3b")), (4, ("4a", "4b", "4c", "4d", "4e"))):
            for key in keys:
                x = self.inception(x, key)
            x = pool(x, f"pool{stage}")
        for key in ("5a", "5b"):
            x = self.inception(x, key)
        return x


def googlenet(
    input_shape: Sequence[int] = (224, 224, 3),
    num_classes: int = 1000,
    *,
    width: float = 1.0,
    stem: str = "imagenet",
    batch_norm: bool = False,
    dropout: float = 0.4,
    name: str | None = None,
) -> keras.Model:
    """GoogLeNet (Szegedy et al. 2014, Table 1) without its auxiliary classifiers.

    ImageNet stem: 7x7/2 convolution (64), 3x3/2 max pooling, 1x1 (64) and 3x3 (192)
    convolutions, 3x3/2 max pooling. Then inception 3a, 3b, max pooling, 4a-4e, max pooling,
    5a, 5b (:data:`GOOGLENET_INCEPTIONS`), global average pooling, dropout and a Dense layer.
    On 224x224x3 the layer outputs are the paper's table. Every inception block is one layer
    (``inception_3a``...), so :func:`cnn_utils.shapes.shape_trace` reads off its output.

    The ``"small"`` stem, for 28x28 images, is a 3x3/1 convolution without the first pooling,
    so that the inception stages work at 14x14, 7x7 and 4x4; ``width`` scales every channel
    count.

    Args:
        input_shape: (H, W, C) of the images.
        num_classes: Number of logits.
        width: Multiplier of every channel count (1.0 is the paper's network).
        stem: ``"imagenet"`` or ``"small"``.
        batch_norm: Batch normalisation after every convolution (Inception v2 style).
        dropout: Dropout rate before the classifier, in [0, 1).
        name: Model name (default ``"googlenet"``).

    Returns:
        An uncompiled ``keras.Model`` that outputs logits.

    Raises:
        ValueError: A non-positive width, an unknown stem, a bad dropout rate, fewer than two
            classes, an input shape that is not three positive integers, a non-boolean
            ``batch_norm``, or a bad name.
    """
    input_shape = _input_shape(input_shape)
    num_classes = _num_classes(num_classes)
    _checks.one_of("stem", stem, STEMS)
    width = _checks.number("width", width, positive=True)
    batch_norm = _checks.flag("batch_norm", batch_norm)
    dropout = _dropout(dropout)
    name = _model_name(name)
    inputs = keras.Input(tuple(input_shape), name="image")
    x = _GoogLeNetStages(width, batch_norm)(inputs, stem)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or "googlenet")


def alexnet(input_shape: Sequence[int] = (227, 227, 3), num_classes: int = 1000) -> keras.Model:
    """AlexNet (Krizhevsky et al. 2012) in one tower, for counting its parameters (about 62 M).

    Convolutions 96 11x11/4, 256 5x5, 384 3x3, 384 3x3, 256 3x3 with 3x3/2 max pooling after
    the first, second and fifth; two Dense layers of 4096 with dropout; a Dense classifier.

    Args:
        input_shape: (H, W, C) of the images (227x227 gives the paper's 6x6x256 last map).
        num_classes: Number of logits.

    Returns:
        An uncompiled ``keras.Model`` named ``"alexnet"`` that outputs logits.

    Raises:
        ValueError: Fewer than two classes, or an input shape that is not three positive
            integers.
    """
    input_shape = _input_shape(input_shape)
    num_classes = _num_classes(num_classes)
    layers = keras.layers
    inputs = keras.Input(tuple(input_shape), name="image")
    x = layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = layers.Conv2D(256, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = layers.Flatten(name="flatten")(x)
    for index in (6, 7):
        x = layers.Dense(4096, activation="relu", name=f"fc{index}")(x)
        x = layers.Dropout(0.5, name=f"dropout{index}")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="alexnet")
