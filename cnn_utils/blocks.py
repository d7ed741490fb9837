"""Building blocks of GoogLeNet and ResNet as Keras 3 layers: Inception, Residual, ResnetBlock.

Each block is one ``keras.layers.Layer``: its sublayers are made in ``__init__`` with names
derived from the block's own name (a ``ResnetBlock`` named ``"res3"`` holds ``"res3_block1"``,
whose first convolution is ``"res3_block1_conv1"``), ``build`` builds them explicitly,
``get_config`` returns the constructor arguments, and the classes are registered for
``.keras`` serialisation under the package name ``"cnn_utils"``.

References:
    Szegedy et al. 2014, "Going deeper with convolutions" (Inception, GoogLeNet).
    He et al. 2015, "Deep residual learning for image recognition" (Residual, ResNet).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops

from cnn_utils import _checks

__all__ = [
    "Inception",
    "Residual",
    "ResnetBlock",
]


def _branch_filters(argname: str, value: object) -> tuple[int, int]:
    """The ``(reduce, out)`` filters of an Inception branch: two positive integers."""
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0 for v in value)
    ):
        raise ValueError(
            f"{argname} must be a pair of positive integers (reduce, out). "
            f"Received: {argname}={value!r}"
        )
    return int(value[0]), int(value[1])


def _momentum(value: object) -> float:
    return _checks.number("bn_momentum", value, minimum=0.0, below=1.0)


@keras.saving.register_keras_serializable(package="cnn_utils")
class Residual(layers.Layer):
    """The residual block of ResNet (He et al. 2015), VGG style.

    Main path: 3x3 conv (with ``strides``) -> BN -> ReLU -> 3x3 conv -> BN. The input is added
    to it (through a 1x1 convolution with the same stride when ``use_1x1conv``, so that the
    shapes match when the block changes the number of channels or the resolution), and a ReLU
    follows. The block thus learns the residual g(x) = f(x) - x and outputs f(x) = g(x) + x.

    With ``use_skip=False`` the addition (and the 1x1 convolution) is dropped: the same layers
    without a shortcut, the "plain" twin of the degradation experiment.

    Sublayers are named ``<name>_conv1``, ``<name>_bn1``, ``<name>_conv2``, ``<name>_bn2`` and
    ``<name>_skip_conv``.

    Args:
        num_channels: Output channels of both 3x3 convolutions.
        use_1x1conv: Put a 1x1 convolution (with ``strides``) on the shortcut.
        strides: Stride of the first 3x3 convolution (2 halves the resolution).
        use_skip: Add the shortcut; ``False`` gives the plain block.
        batch_norm: Batch normalisation after each 3x3 convolution (``False`` drops it, to
            show how plain and residual networks fare without it).
        bn_momentum: Momentum of the batch-norm moving statistics (0.9 keeps short trainings
            from evaluating with stale statistics).
        **kwargs: Passed to ``keras.layers.Layer`` (``name``, ``dtype``...).

    Raises:
        ValueError: A non-positive ``num_channels`` or ``strides``, a bad momentum, or a flag
            that is not a boolean (``use_skip="no"``).
    """

    def __init__(
        self,
        num_channels: int,
        use_1x1conv: bool = False,
        strides: int = 1,
        *,
        use_skip: bool = True,
        batch_norm: bool = True,
        bn_momentum: float = 0.9,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_channels = _checks.positive_int("num_channels", num_channels)
        self.use_1x1conv = _checks.flag("use_1x1conv", use_1x1conv)
        self.strides = _checks.positive_int("strides", strides)
        self.use_skip = _checks.flag("use_skip", use_skip)
        self.batch_norm = _checks.flag("batch_norm", batch_norm)
        self.bn_momentum = _momentum(bn_momentum)
        name = self.name
        self.conv1 = layers.Conv2D(
            self.num_channels, 3, strides=self.strides, padding="same", name=f"{name}_conv1"
        )
        self.conv2 = layers.Conv2D(self.num_channels, 3, padding="same", name=f"{name}_conv2")
        self.bn1 = self.bn2 = None
        if self.batch_norm:
            self.bn1 = layers.BatchNormalization(momentum=self.bn_momentum, name=f"{name}_bn1")
            self.bn2 = layers.BatchNormalization(momentum=self.bn_momentum, name=f"{name}_bn2")
        self.skip_conv = None
        if self.use_skip and self.use_1x1conv:
            self.skip_conv = layers.Conv2D(
                self.num_channels, 1, strides=self.strides, name=f"{name}_skip_conv"
            )

    def build(self, input_shape):
        """Build the sublayers for ``input_shape`` (batch, H, W, C)."""
        input_shape = tuple(input_shape)
        if self.use_skip and self.skip_conv is None:
            if self.strides != 1 or input_shape[-1] != self.num_channels:
                raise ValueError(
                    f"A Residual without use_1x1conv keeps the input's shape, so it needs "
                    f"strides=1 and {self.num_channels} input channels. Received: "
                    f"strides={self.strides}, input_shape={input_shape}; "
                    "pass use_1x1conv=True."
                )
        self.conv1.build(input_shape)
        hidden = self.conv1.compute_output_shape(input_shape)
        self.conv2.build(hidden)
        if self.batch_norm:
            self.bn1.build(hidden)
            self.bn2.build(hidden)
        if self.skip_conv is not None:
            self.skip_conv.build(input_shape)

    def call(self, inputs, training=None):
        """Apply the block."""
        y = self.conv1(inputs)
        if self.batch_norm:
            y = self.bn1(y, training=training)
        y = self.conv2(ops.relu(y))
        if self.batch_norm:
            y = self.bn2(y, training=training)
        if self.use_skip:
            shortcut = inputs if self.skip_conv is None else self.skip_conv(inputs)
            y = ops.add(y, shortcut)
        return ops.relu(y)

    def compute_output_shape(self, input_shape):
        """Output shape: the resolution divided by ``strides``, ``num_channels`` channels."""
        return self.conv1.compute_output_shape(tuple(input_shape))

    def get_config(self):
        """Return the constructor arguments."""
        config = super().get_config()
        config.update(
            num_channels=self.num_channels,
            use_1x1conv=self.use_1x1conv,
            strides=self.strides,
            use_skip=self.use_skip,
            batch_norm=self.batch_norm,
            bn_momentum=self.bn_momentum,
        )
        return config


@keras.saving.register_keras_serializable(package="cnn_utils")
class ResnetBlock(layers.Layer):
    """A stage of ResNet: ``num_residuals`` residual blocks with ``num_channels`` channels.

    The first residual halves the resolution and changes the channels (1x1 convolution with
    stride 2 on its shortcut) unless ``first_block``, which follows the stem's max pooling and
    keeps the shape (He et al. 2015, Table 1). Residuals are named ``<name>_block1``,
    ``<name>_block2``...

    Args:
        num_channels: Channels of every residual block of the stage.
        num_residuals: Number of residual blocks (>= 1).
        first_block: The stage right after the stem: no down-sampling in its first residual.
        use_skip: Passed to every :class:`Residual` (``False`` gives the plain stage).
        batch_norm: Passed to every :class:`Residual`.
        bn_momentum: Passed to every :class:`Residual`.
        **kwargs: Passed to ``keras.layers.Layer``.

    Raises:
        ValueError: A non-positive ``num_channels`` or ``num_residuals``, a bad momentum, or a
            flag that is not a boolean.
    """

    def __init__(
        self,
        num_channels: int,
        num_residuals: int,
        first_block: bool = False,
        *,
        use_skip: bool = True,
        batch_norm: bool = True,
        bn_momentum: float = 0.9,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_channels = _checks.positive_int("num_channels", num_channels)
        self.num_residuals = _checks.positive_int("num_residuals", num_residuals)
        self.first_block = _checks.flag("first_block", first_block)
        self.use_skip = _checks.flag("use_skip", use_skip)
        self.batch_norm = _checks.flag("batch_norm", batch_norm)
        self.bn_momentum = _momentum(bn_momentum)
        self.residuals = []
        for index in range(self.num_residuals):
            downsample = index == 0 and not self.first_block
            self.residuals.append(
                Residual(
                    self.num_channels,
                    use_1x1conv=downsample,
                    strides=2 if downsample else 1,
                    use_skip=self.use_skip,
                    batch_norm=self.batch_norm,
                    bn_momentum=self.bn_momentum,
                    name=f"{self.name}_block{index + 1}",
                )
            )

    def build(self, input_shape):
        """Build each residual block on the output shape of the previous one."""
        shape = tuple(input_shape)
        for residual in self.residuals:
            residual.build(shape)
            shape = residual.compute_output_shape(shape)

    def call(self, inputs, training=None):
        """Apply the residual blocks in turn."""
        x = inputs
        for residual in self.residuals:
            x = residual(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        """Output shape after all residual blocks."""
        shape = tuple(input_shape)
        for residual in self.residuals:
            shape = residual.compute_output_shape(shape)
        return shape

    def get_config(self):
        """Return the constructor arguments."""
        config = super().get_config()
        config.update(
            num_channels=self.num_channels,
            num_residuals=self.num_residuals,
            first_block=self.first_block,
            use_skip=self.use_skip,
            batch_norm=self.batch_norm,
            bn_momentum=self.bn_momentum,
        )
        return config


@keras.saving.register_keras_serializable(package="cnn_utils")
class Inception(layers.Layer):
    """The Inception block with dimensionality reduction (Szegedy et al. 2014, Figure 2b).

    Four parallel branches on the same input, concatenated on the channel axis:

    1. 1x1 convolution with ``c1`` filters (``<name>_b1_1x1``);
    2. 1x1 convolution with ``c2[0]`` filters, then 3x3 with ``c2[1]``
       (``<name>_b2_reduce``, ``<name>_b2_3x3``);
    3. 1x1 convolution with ``c3[0]`` filters, then 5x5 with ``c3[1]``
       (``<name>_b3_reduce``, ``<name>_b3_5x5``);
    4. 3x3 max pooling with stride 1 and 'same' padding, then 1x1 with ``c4``
       (``<name>_b4_pool``, ``<name>_b4_1x1``).

    Every convolution uses 'same' padding and ReLU, so the output keeps the input's resolution
    and has ``c1 + c2[1] + c3[1] + c4`` channels. The 1x1 "reduce" convolutions (Lin et al.
    2014, Network in Network) make the 3x3 and 5x5 convolutions cheap.

    Args:
        c1: Filters of the 1x1 branch.
        c2: ``(reduce, out)`` filters of the 3x3 branch.
        c3: ``(reduce, out)`` filters of the 5x5 branch.
        c4: Filters of the pooling branch's 1x1 projection.
        batch_norm: Batch normalisation after each convolution (before the ReLU), which the
            2014 paper did not have (Inception v2 added it); helps short trainings.
        bn_momentum: Momentum of the batch-norm moving statistics.
        **kwargs: Passed to ``keras.layers.Layer``.

    Raises:
        ValueError: A non-positive ``c1`` or ``c4``, ``c2``/``c3`` not a pair of positive
            integers, a bad momentum, or a non-boolean ``batch_norm``.
    """

    def __init__(
        self,
        c1: int,
        c2: Sequence[int],
        c3: Sequence[int],
        c4: int,
        *,
        batch_norm: bool = False,
        bn_momentum: float = 0.9,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.c1 = _checks.positive_int("c1", c1)
        self.c2 = _branch_filters("c2", c2)
        self.c3 = _branch_filters("c3", c3)
        self.c4 = _checks.positive_int("c4", c4)
        self.batch_norm = _checks.flag("batch_norm", batch_norm)
        self.bn_momentum = _momentum(bn_momentum)
        name = self.name
        self.b1_1x1 = self._conv(self.c1, 1, f"{name}_b1_1x1")
        self.b2_reduce = self._conv(self.c2[0], 1, f"{name}_b2_reduce")
        self.b2_3x3 = self._conv(self.c2[1], 3, f"{name}_b2_3x3")
        self.b3_reduce = self._conv(self.c3[0], 1, f"{name}_b3_reduce")
        self.b3_5x5 = self._conv(self.c3[1], 5, f"{name}_b3_5x5")
        self.b4_pool = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_b4_pool")
        self.b4_1x1 = self._conv(self.c4, 1, f"{name}_b4_1x1")

    def _conv(self, filters: int, kernel_size: int, name: str) -> list:
        """A convolution with 'same' padding, optionally followed by batch normalisation."""
        conv = layers.Conv2D(filters, kernel_size, padding="same", name=name)
        if not self.batch_norm:
            return [conv]
        return [conv, layers.BatchNormalization(momentum=self.bn_momentum, name=f"{name}_bn")]

    @property
    def _branches(self) -> list[list]:
        return [
            self.b1_1x1,
            self.b2_reduce + self.b2_3x3,
            self.b3_reduce + self.b3_5x5,
            [self.b4_pool, *self.b4_1x1],
        ]

    def build(self, input_shape):
        """Build every branch on ``input_shape`` (batch, H, W, C)."""
        for branch in self._branches:
            shape = tuple(input_shape)
            for layer in branch:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

    def call(self, inputs, training=None):
        """Apply the four branches and concatenate their outputs on the channel axis."""
        outputs = []
        for branch in self._branches:
            x = inputs
            for layer in branch:
                if isinstance(layer, layers.BatchNormalization):
                    x = layer(x, training=training)
                elif isinstance(layer, layers.Conv2D):
                    x = layer(x)
                    if not self.batch_norm:
                        x = ops.relu(x)
                else:
                    x = layer(x)
                if isinstance(layer, layers.BatchNormalization):
                    x = ops.relu(x)
            outputs.append(x)
        return ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        """Same resolution, ``c1 + c2[1] + c3[1] + c4`` channels."""
        return (*tuple(input_shape)[:-1], self.c1 + self.c2[1] + self.c3[1] + self.c4)

    def get_config(self):
        """Return the constructor arguments."""
        config = super().get_config()
        config.update(
            c1=self.c1,
            c2=self.c2,
            c3=self.c3,
            c4=self.c4,
            batch_norm=self.batch_norm,
            bn_momentum=self.bn_momentum,
        )
        return config
