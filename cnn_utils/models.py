"""Course models: the small CNN of notebook 01 (and, later, GoogLeNet, ResNet and their twins).

Every model returns logits (no softmax layer): train with
``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``, and apply
``keras.ops.softmax`` for probabilities. The attacks and saliency methods need the logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

HEADS = ("gap", "flatten")


def small_cnn(
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    *,
    filters: Sequence[int] = (32, 64),
    head: str = "gap",
    dense_units: int = 128,
    dropout: float = 0.3,
    batch_norm: bool = True,
    name: str | None = None,
) -> keras.Model:
    """The small CNN of notebook 01: VGG-style stages with batch norm, ReLU and dropout.

    Each stage is two 3x3 'same' convolutions (each followed by batch normalisation and ReLU)
    and a 2x2 max pooling, then dropout. The head is either global average pooling followed by
    one Dense layer (``head="gap"``, Lin et al. 2014) or Flatten -> Dense(``dense_units``) ->
    Dense (``head="flatten"``, the AlexNet/VGG head).

    Args:
        input_shape: (H, W, C) of the images.
        num_classes: Number of classes (logit outputs).
        filters: Filters of each stage; the spatial size halves after each.
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
    if dense_units <= 0:
        raise ValueError(f"dense_units must be positive. Received: dense_units={dense_units!r}")
    layers = keras.layers
    inputs = keras.Input(tuple(input_shape), name="image")
    x = inputs
    for stage, width in enumerate(filters, start=1):
        for index in (1, 2):
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


def compile_classifier(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Compile a logits classifier with Adam, cross-entropy from logits and accuracy.

    Args:
        model: A model that outputs logits.
        learning_rate: Adam's learning rate.

    Returns:
        The same model, compiled.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model
