"""Course models: the small CNN of notebook 01, GoogLeNet, ResNet, their twins, a trained cache.

Every model returns logits (no softmax layer): train with
``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``, and apply
``keras.ops.softmax`` for probabilities. The attacks and saliency methods need the logits.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import keras

from cnn_utils import blocks, config, data

HEADS = ("gap", "flatten")


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
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}. Received: head={head!r}")
    if not filters or any(int(f) <= 0 for f in filters):
        raise ValueError(f"filters must be positive integers. Received: filters={filters!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2. Received: num_classes={num_classes!r}")
    if convs_per_stage < 1:
        raise ValueError(
            f"convs_per_stage must be >= 1. Received: convs_per_stage={convs_per_stage!r}"
        )
    if dense_units <= 0:
        raise ValueError(f"dense_units must be positive. Received: dense_units={dense_units!r}")
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


def compile_classifier(
    model: keras.Model,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
) -> keras.Model:
    """Compile a logits classifier with Adam, cross-entropy from logits and accuracy.

    Args:
        model: A model that outputs logits.
        learning_rate: Adam's learning rate, a float or a Keras schedule.

    Returns:
        The same model, compiled.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


# ---------------------------------------------------------------------------------------------
# ResNet (He et al. 2015)
# ---------------------------------------------------------------------------------------------

STEMS = ("imagenet", "small")


def _check_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2. Received: num_classes={num_classes!r}"
        )
    return num_classes


def _check_stem(stem: str) -> str:
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}. Received: stem={stem!r}")
    return stem


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
            two classes.
    """
    _check_classes(num_classes)
    _check_stem(stem)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 for w in widths):
        raise ValueError(f"widths must be positive integers. Received: widths={widths!r}")
    counts = (
        [num_residuals] * len(widths) if isinstance(num_residuals, int) else list(num_residuals)
    )
    if len(counts) != len(widths) or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts
    ):
        raise ValueError(
            "num_residuals must be a positive integer or one per stage. "
            f"Received: num_residuals={num_residuals!r}"
        )
    depth = 2 + 2 * sum(counts)
    layers = keras.layers
    inputs = keras.Input(tuple(input_shape), name="image")
    if stem == "imagenet":
        x = layers.Conv2D(widths[0], 7, strides=2, padding="same", name="conv1")(inputs)
    else:
        x = layers.Conv2D(widths[0], 3, padding="same", name="conv1")(inputs)
    if batch_norm:
        x = layers.BatchNormalization(momentum=bn_momentum, name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    if stem == "imagenet":
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
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
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
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
        ValueError: Fewer than two classes.
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
            classes.
    """
    _check_classes(num_classes)
    _check_stem(stem)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"width must be a positive number. Received: width={width!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    layers = keras.layers

    def ch(channels: int) -> int:
        return max(1, round(channels * width))

    def conv(x, filters: int, kernel_size: int, strides: int = 1, *, name: str):
        x = layers.Conv2D(
            ch(filters),
            kernel_size,
            strides=strides,
            padding="same",
            activation=None if batch_norm else "relu",
            name=name,
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
            x = layers.ReLU(name=f"{name}_relu")(x)
        return x

    def pool(x, name: str):
        return layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)

    def inception(x, key: str):
        c1, c2, c3, c4 = GOOGLENET_INCEPTIONS[key]
        return blocks.Inception(
            ch(c1),
            (ch(c2[0]), ch(c2[1])),
            (ch(c3[0]), ch(c3[1])),
            ch(c4),
            batch_norm=batch_norm,
            name=f"inception_{key}",
        )(x)

    inputs = keras.Input(tuple(input_shape), name="image")
    if stem == "imagenet":
        x = conv(inputs, 64, 7, 2, name="conv1")
        x = pool(x, "pool1")
    else:
        x = conv(inputs, 64, 3, name="conv1")
    x = conv(x, 64, 1, name="conv2_reduce")
    x = conv(x, 192, 3, name="conv2")
    x = pool(x, "pool2")
    for key in ("3a", "3b"):
        x = inception(x, key)
    x = pool(x, "pool3")
    for key in ("4a", "4b", "4c", "4d", "4e"):
        x = inception(x, key)
    x = pool(x, "pool4")
    for key in ("5a", "5b"):
        x = inception(x, key)
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
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
        ValueError: Fewer than two classes.
    """
    _check_classes(num_classes)
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


# ---------------------------------------------------------------------------------------------
# Gradient norms: the degradation experiment
# ---------------------------------------------------------------------------------------------


def _loss_and_gradients(model: keras.Model, x, y, variables, training: bool):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        logits = model(x, training=training)
        loss = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        )
    return float(loss), tape.gradient(loss, variables)


def gradient_norms(model: keras.Model, x, y, *, training: bool = True) -> dict[str, float]:
    """L2 norm of the loss gradient with respect to each kernel (Conv2D and Dense weights).

    Kernels come in the model's weight order (input side first, blocks included), so plotting
    the values against their index shows how the gradient signal fades (or not) with depth.

    Args:
        model: A model that outputs logits.
        x: A batch of images.
        y: Their integer labels.
        training: Run the forward pass in training mode (batch statistics in BN).

    Returns:
        A dict from the kernel's path (``"res2/res2_block1/res2_block1_conv1/kernel"``) to the
        norm of its gradient of the mean cross-entropy.
    """
    kernels = [w for w in model.trainable_weights if w.path.endswith("/kernel")]
    _, grads = _loss_and_gradients(model, x, y, kernels, training)
    return {
        w.path: float(keras.ops.norm(keras.ops.reshape(g, (-1,))))
        for w, g in zip(kernels, grads, strict=True)
    }


class TrainingProbe(keras.callbacks.Callback):
    """Record the loss and one layer's gradient norm on a fixed batch every few steps.

    Used to compare a plain network with its residual twin (He et al. 2015, Section 4.1):
    ``steps``, ``losses`` and ``grad_norms`` are filled during ``fit`` (and once before it
    starts), measured in training mode on the same probe batch.

    Args:
        x: Probe images.
        y: Probe labels.
        layer_name: The layer whose kernel gradient is measured (default ``"conv1"``).
        every: Measure every this many training steps.
    """

    def __init__(self, x, y, layer_name: str = "conv1", every: int = 10):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
            raise ValueError(f"every must be a positive integer. Received: every={every!r}")
        self.x, self.y, self.layer_name, self.every = x, y, layer_name, every
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self._step = 0

    def _measure(self) -> None:
        kernel = self.model.get_layer(self.layer_name).kernel
        loss, (grad,) = _loss_and_gradients(self.model, self.x, self.y, [kernel], True)
        self.steps.append(self._step)
        self.losses.append(loss)
        self.grad_norms.append(float(keras.ops.norm(keras.ops.reshape(grad, (-1,)))))

    def on_train_begin(self, logs=None):
        """Measure once before training."""
        if not self.steps:
            self._measure()

    def on_train_batch_end(self, batch, logs=None):
        """Measure every ``every`` steps."""
        self._step += 1
        if self._step % self.every == 0:
            self._measure()


def train_classifier(
    model: keras.Model,
    dataset: data.Dataset,
    *,
    epochs: int,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    verbose: int = 1,
) -> tuple[dict[str, list[float]], float, float]:
    """Compile and fit a logits classifier on a :class:`~cnn_utils.data.Dataset`, then test it.

    Adam with a cosine-decayed learning rate (to 5 % of ``learning_rate``), cross-entropy from
    logits, the dataset's validation split (if any) for validation curves.

    Args:
        model: A model that outputs logits.
        dataset: The data; ``dataset.validation_data`` is used when present.
        epochs: Training epochs.
        batch_size: Mini-batch size.
        learning_rate: Initial learning rate.
        verbose: Keras' progress bar (1), one line per epoch (2) or silent (0).

    Returns:
        ``(history, seconds, test_accuracy)``: the per-epoch metrics as a dict of float lists,
        the training time in seconds and the accuracy on ``dataset.x_test``.

    Raises:
        ValueError: A non-positive number of epochs or batch size.
    """
    for argname, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{argname} must be a positive integer. Received: {argname}={value!r}")
    steps = -(-len(dataset.x_train) // batch_size) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.05)
    compile_classifier(model, learning_rate=schedule)
    start = time.perf_counter()
    history = model.fit(
        dataset.x_train,
        dataset.y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=dataset.validation_data,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(dataset.x_test, dataset.y_test, batch_size=256, verbose=0)
    metrics = {key: [float(v) for v in values] for key, values in history.history.items()}
    return metrics, seconds, float(accuracy)


# ---------------------------------------------------------------------------------------------
# Trained course models, cached
# ---------------------------------------------------------------------------------------------


def _recipes() -> dict[str, dict]:
    """The course models that :func:`trained` knows: builder, architecture and schedule."""
    return {
        "small_cnn": {
            "build": lambda shape, n: small_cnn(
                shape,
                n,
                filters=(32, 64, 128),
                convs_per_stage=1,
                head="flatten",
                dropout=0.2,
                name="small_cnn",
            ),  # fmt: skip
            "arch": {
                "builder": "small_cnn",
                "filters": [32, 64, 128],
                "convs": 1,
                "head": "flatten",
                "dropout": 0.2,
            },  # fmt: skip
            "fast": (30_000, 2),
            "full": (None, 15),
            "batch_size": 64,
            "learning_rate": 1e-3,
            "validation_split": 0.1,
        },
        "resnet": {
            "build": lambda shape, n: resnet(
                shape, n, widths=(16, 32, 64), num_residuals=2, stem="small", name="resnet14"
            ),
            "arch": {"builder": "resnet", "widths": [16, 32, 64], "num_residuals": 2},
            "fast": (16_000, 3),
            "full": (None, 15),
            "batch_size": 64,
            "learning_rate": 2e-3,
        },
        "googlenet": {
            "build": lambda shape, n: googlenet(
                shape,
                n,
                width=0.25,
                stem="small",
                batch_norm=True,
                dropout=0.2,
                name="googlenet_small",
            ),  # fmt: skip
            "arch": {"builder": "googlenet", "width": 0.25, "stem": "small", "bn": True},
            "fast": (6_000, 2),
            "full": (None, 12),
            "batch_size": 64,
            "learning_rate": 2e-3,
        },
    }


TRAINED_MODELS = tuple(_recipes())
"""Names that :func:`trained` accepts."""

_CACHE_VERSION = 2  # bump when a recipe changes, so that old cached files are not reused


def trained_settings(
    name: str,
    dataset: str = "fashion_mnist",
    *,
    epochs: int | None = None,
    subset: int | None = None,
    test_subset: int | None = None,
    seed: int = config.DEFAULT_SEED,
) -> dict:
    """The settings that :func:`trained` trains ``name`` with, and the file it caches it in.

    Args:
        name: One of :data:`TRAINED_MODELS`.
        dataset: A dataset name of :mod:`cnn_utils.data`.
        epochs: Training epochs; ``None`` takes the recipe's (fewer in FAST mode).
        subset: Training examples; ``None`` takes the recipe's (a subset in FAST mode, all
            otherwise).
        test_subset: Test examples for the reported accuracy; ``None`` uses the whole test set.
        seed: Seed of the weights, the subset and the shuffling.

    Returns:
        A dict with ``name``, ``dataset``, ``epochs``, ``subset``, ``test_subset``, ``seed``,
        ``batch_size``, ``learning_rate``, ``arch``, ``key`` and ``path`` (the ``.keras`` file
        in :func:`cnn_utils.config.cache_dir`).

    Raises:
        ValueError: An unknown name or dataset, or non-positive epochs.
    """
    recipes = _recipes()
    if name not in recipes:
        raise ValueError(f"name must be one of {TRAINED_MODELS}. Received: name={name!r}")
    if dataset not in data.DATASETS:
        raise ValueError(
            f"dataset must be one of {sorted(data.DATASETS)}. Received: dataset={dataset!r}"
        )
    recipe = recipes[name]
    default_subset, default_epochs = config.by_mode(fast=recipe["fast"], full=recipe["full"])
    epochs = default_epochs if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"epochs must be a positive integer. Received: epochs={epochs!r}")
    subset = default_subset if subset is None else subset
    settings = {
        "name": name,
        "dataset": dataset,
        "epochs": epochs,
        "subset": subset,
        "test_subset": test_subset,
        "seed": int(seed),
        "batch_size": recipe["batch_size"],
        "learning_rate": recipe["learning_rate"],
        "arch": recipe["arch"],
        "version": _CACHE_VERSION,
    }
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    key = f"{name}-{dataset}-e{epochs}-n{subset or 'all'}-s{seed}-{digest}"
    settings["key"] = key
    settings["path"] = str(config.cache_dir() / f"{key}.keras")
    return settings


def trained(
    name: str,
    dataset: str = "fashion_mnist",
    *,
    epochs: int | None = None,
    subset: int | None = None,
    test_subset: int | None = None,
    seed: int = config.DEFAULT_SEED,
    verbose: int = 1,
    return_info: bool = False,
):
    """Return a trained course model, training it on first use and caching it as ``.keras``.

    The file lives in :func:`cnn_utils.config.cache_dir` under a key made of every setting
    (name, dataset, epochs, subset, seed and a digest of the architecture and schedule), so a
    second call with the same settings loads it in seconds, and FAST and full mode never share
    a file. Training uses :func:`compile_classifier` (Adam with a cosine-decayed learning
    rate, cross-entropy from logits); a JSON file beside the model keeps the history, the
    training time and the test accuracy.

    Models: ``"small_cnn"`` (notebook 01's :func:`small_cnn`: three one-convolution stages,
    Flatten + Dense head, 10 % of the training set held out for validation curves), ``"resnet"`` (a
    narrow 14-layer :func:`resnet` for 28x28 images), ``"googlenet"`` (:func:`googlenet` with
    the small stem, a quarter of the width and batch norm).

    Args:
        name: One of :data:`TRAINED_MODELS`.
        dataset: A dataset name of :mod:`cnn_utils.data` (default Fashion-MNIST).
        epochs: Training epochs; ``None`` takes the recipe's (fewer in FAST mode).
        subset: Training examples; ``None`` takes the recipe's (a subset in FAST mode).
        test_subset: Test examples for the reported accuracy; ``None`` uses all.
        seed: Seed of the weights, the subset and the shuffling.
        verbose: 1 prints what happens and Keras' progress bar; 0 is silent.
        return_info: Also return the info dict.

    Returns:
        The trained, compiled model (outputs logits); with ``return_info`` a pair
        ``(model, info)`` where ``info`` holds the settings, ``path``, ``history``,
        ``train_seconds``, ``test_accuracy``, ``params`` and ``from_cache``.

    Raises:
        ValueError: An unknown name or dataset, or bad sizes.
    """
    settings = trained_settings(
        name, dataset, epochs=epochs, subset=subset, test_subset=test_subset, seed=seed
    )
    path = Path(settings["path"])
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        model = keras.models.load_model(path)
        info = json.loads(info_path.read_text())
        info["from_cache"] = True
        if verbose:
            print(f"Loaded {name!r} ({settings['key']}) from the cache: {path}")
        return (model, info) if return_info else model

    recipe = _recipes()[name]
    config.set_seed(settings["seed"])
    ds = data.load_dataset(
        dataset,
        subset=settings["subset"],
        test_subset=test_subset,
        validation_split=recipe.get("validation_split", 0.0),
        seed=settings["seed"],
    )
    model = recipe["build"](ds.input_shape, ds.num_classes)
    if verbose:
        print(
            f"Training {name!r} on {len(ds.x_train)} {dataset} images for "
            f"{settings['epochs']} epochs ({model.count_params():,} parameters)..."
        )
    history, seconds, accuracy = train_classifier(
        model,
        ds,
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        verbose=verbose,
    )
    info = {
        **settings,
        "history": history,
        "train_seconds": seconds,
        "test_accuracy": float(accuracy),
        "params": int(model.count_params()),
    }
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)
    info_path.write_text(json.dumps(info, indent=1))
    info["from_cache"] = False
    if verbose:
        print(f"Test accuracy {accuracy:.4f} after {seconds:.1f} s; cached in {path}")
    return (model, info) if return_info else model
