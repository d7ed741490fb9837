"""Tests of the exercise checks of notebooks 01-03: each accepts a solution, rejects mistakes."""

import keras
import numpy as np

from cnn_utils import exercises
from cnn_utils.exercises import ex01, ex02, ex03

NOT_ATTEMPTED, WRONG = exercises.NOT_ATTEMPTED, exercises.WRONG
layers = keras.layers


def wrong_with(feedback, words):
    """The check said "wrong", and its message contains ``words``."""
    return feedback.status == WRONG and words in feedback.message


# ---------------------------------------------------------------------------------------------
# Notebook 01
# ---------------------------------------------------------------------------------------------


def test_ex01_same_padding():
    assert ex01.same_padding(1, verbose=0).correct
    assert ex01.same_padding(..., verbose=0).status == NOT_ATTEMPTED
    assert wrong_with(ex01.same_padding(0, verbose=0), "7 rows")
    assert wrong_with(ex01.same_padding(2, verbose=0), "least")
    assert wrong_with(ex01.same_padding(0.5, verbose=0), "whole rows")


def test_ex01_stack_shapes():
    assert ex01.stack_shapes([30, 14, 14], 3136, verbose=0).correct
    assert ex01.stack_shapes(..., 3136, verbose=0).status == NOT_ATTEMPTED
    assert wrong_with(ex01.stack_shapes([31, 14, 14], 3136, verbose=0), "strided 'valid'")
    assert wrong_with(ex01.stack_shapes([30, 15, 15], 3600, verbose=0), "pooling")
    assert wrong_with(ex01.stack_shapes([30, 14, 12], 2304, verbose=0), "'same' convolution")
    assert wrong_with(ex01.stack_shapes([30, 14, 14], 196, verbose=0), "flattened")


def test_ex01_separable_params():
    assert ex01.separable_params(9 * 64 + 64 * 128, 3, 64, 128, verbose=0).correct
    assert wrong_with(ex01.separable_params(9 * 64 * 128, 3, 64, 128, verbose=0), "full")
    with_bias = 9 * 64 + 64 * 128 + 128
    assert wrong_with(ex01.separable_params(with_bias, 3, 64, 128, verbose=0), "biases")
    per_output = 9 * 128 + 64 * 128
    assert wrong_with(ex01.separable_params(per_output, 3, 64, 128, verbose=0), "per input")


def _correlate(x, kernel, stride, flip=False):
    if flip:
        kernel = kernel[::-1, ::-1]
    k = kernel.shape[0]
    rows, cols = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    out = np.zeros((rows, cols, kernel.shape[-1]))
    for i in range(rows):
        for j in range(cols):
            window = x[i * stride : i * stride + k, j * stride : j * stride + k]
            out[i, j] = np.tensordot(window, kernel, axes=3)
    return out


def test_ex01_cross_correlation():
    assert ex01.cross_correlation(_correlate, verbose=0).correct

    def untouched(x, kernel, stride):
        raise NotImplementedError

    assert ex01.cross_correlation(untouched, verbose=0).status == NOT_ATTEMPTED
    flipped = ex01.cross_correlation(lambda x, k, s: _correlate(x, k, s, flip=True), verbose=0)
    assert wrong_with(flipped, "flipped")
    no_stride = ex01.cross_correlation(lambda x, k, s: _correlate(x, k, 1), verbose=0)
    assert wrong_with(no_stride, "output shape")
    one_channel = ex01.cross_correlation(
        lambda x, k, s: _correlate(x[..., :1], k[:, :, :1], s), verbose=0
    )
    assert wrong_with(one_channel, "wrong values")


def test_ex01_tell_apart():
    assert ex01.tell_apart([(3, 3), (3, 10), (11, 11), (20, 11)], verbose=0).correct
    assert ex01.tell_apart(None, verbose=0).status == NOT_ATTEMPTED
    swapped = [(3, 19), (3, 3), (20, 11), (11, 11)]  # parts moved, gaps of 2 or more
    assert wrong_with(ex01.tell_apart(swapped, verbose=0), "same as the face")
    overlap = [(3, 3), (3, 6), (11, 11), (20, 11)]
    assert wrong_with(ex01.tell_apart(overlap, verbose=0), "overlap")
    assert wrong_with(ex01.tell_apart([(3, 3), (3, 25), (11, 11), (20, 11)], verbose=0), "leaves")


# ---------------------------------------------------------------------------------------------
# Notebook 02
# ---------------------------------------------------------------------------------------------

BLOCK_4A = (480, 192, (96, 208), (16, 48), 64)


def test_ex02_inception_params():
    right = 481 * 192 + 481 * 96 + 865 * 208 + 481 * 16 + 401 * 48 + 481 * 64
    assert ex02.inception_params(right, *BLOCK_4A, verbose=0).correct
    assert ex02.inception_params(..., *BLOCK_4A, verbose=0).status == NOT_ATTEMPTED
    no_bias = 480 * 192 + 480 * 96 + 864 * 208 + 480 * 16 + 400 * 48 + 480 * 64
    assert wrong_with(ex02.inception_params(no_bias, *BLOCK_4A, verbose=0), "bias")
    no_pool = right - 481 * 64
    assert wrong_with(ex02.inception_params(no_pool, *BLOCK_4A, verbose=0), "projection")
    naive = 481 * 192 + (9 * 480 + 1) * 208 + (25 * 480 + 1) * 48 + 481 * 64
    assert wrong_with(ex02.inception_params(naive, *BLOCK_4A, verbose=0), "reduction")
    assert not ex02.inception_params("376176", *BLOCK_4A, verbose=0)


def test_ex02_reduction_mult_adds():
    kw = dict(size=14, c_in=528, reduce=32, c_out=128, kernel=5, verbose=0)
    area = 14 * 14
    with_r, without = area * (528 * 32 + 25 * 32 * 128), area * 25 * 528 * 128
    right = ex02.reduction_mult_adds(with_r, without, **kw)
    assert right.correct and "saves" in right.message
    assert ex02.reduction_mult_adds(..., without, **kw).status == NOT_ATTEMPTED
    forgot = ex02.reduction_mult_adds(area * 25 * 32 * 128, without, **kw)
    assert wrong_with(forgot, "1x1 reduction costs")
    one_position = ex02.reduction_mult_adds(with_r, 25 * 528 * 128, **kw)
    assert wrong_with(one_position, "one position")


def _factorised(inputs, c1, c2, c3, c4, *, five=False, relu=True, pool_proj=True):
    act = "relu" if relu else None

    def conv(x, filters, k):
        return layers.Conv2D(filters, k, padding="same", activation=act)(x)

    b3 = conv(conv(inputs, c3[0], 1), c3[1], 5 if five else 3)
    if not five:
        b3 = conv(b3, c3[1], 3)
    pooled = layers.MaxPooling2D(3, strides=1, padding="same")(inputs)
    b4 = conv(pooled, c4, 1) if pool_proj else pooled
    return layers.Concatenate()(
        [conv(inputs, c1, 1), conv(conv(inputs, c2[0], 1), c2[1], 3), b3, b4]
    )


def test_ex02_factorised_inception():
    assert ex02.factorised_inception(_factorised, verbose=0).correct

    def untouched(inputs, c1, c2, c3, c4):
        raise NotImplementedError

    assert ex02.factorised_inception(untouched, verbose=0).status == NOT_ATTEMPTED
    five = ex02.factorised_inception(lambda *a: _factorised(*a, five=True), verbose=0)
    assert wrong_with(five, "two 3x3")
    no_relu = ex02.factorised_inception(lambda *a: _factorised(*a, relu=False), verbose=0)
    assert wrong_with(no_relu, "ReLU")
    no_proj = ex02.factorised_inception(lambda *a: _factorised(*a, pool_proj=False), verbose=0)
    assert wrong_with(no_proj, "output shape")
    assert wrong_with(ex02.factorised_inception(lambda *a: None, verbose=0), "None")


def test_ex02_matching_width():
    budget = ex02.small_cnn_mult_adds()
    assert ex02.googlenet_mult_adds(0.1) <= budget < ex02.googlenet_mult_adds(0.15)
    assert ex02.matching_width(0.1, verbose=0).correct
    assert ex02.matching_width(..., verbose=0).status == NOT_ATTEMPTED
    assert wrong_with(ex02.matching_width(0.25, verbose=0), "more than the small CNN")
    assert wrong_with(ex02.matching_width(0.05, verbose=0), "go wider")
    assert wrong_with(ex02.matching_width(0.12, verbose=0), "multiple")


# ---------------------------------------------------------------------------------------------
# Notebook 03
# ---------------------------------------------------------------------------------------------


def test_ex03_bottleneck_params():
    right = (256 * 64 + 64) + (9 * 64 * 64 + 64) + (64 * 256 + 256)
    assert ex03.bottleneck_params(right, 256, 64, verbose=0).correct
    assert ex03.bottleneck_params(None, 256, 64, verbose=0).status == NOT_ATTEMPTED
    no_bias = 256 * 64 + 9 * 64 * 64 + 64 * 256
    assert wrong_with(ex03.bottleneck_params(no_bias, 256, 64, verbose=0), "bias")
    basic = 2 * (9 * 256 * 256 + 256)
    assert wrong_with(ex03.bottleneck_params(basic, 256, 64, verbose=0), "basic block")
    no_expand = 256 * 64 + 9 * 64 * 64 + 128
    assert wrong_with(ex03.bottleneck_params(no_expand, 256, 64, verbose=0), "back to")


def test_ex03_block_mult_adds():
    conv1, conv2, skip = 9 * 64 * 128, 9 * 128 * 128, 64 * 128
    assert ex03.block_mult_adds(784 * (conv1 + conv2 + skip), verbose=0).correct
    assert ex03.block_mult_adds(..., verbose=0).status == NOT_ATTEMPTED
    assert wrong_with(ex03.block_mult_adds(784 * (conv1 + conv2), verbose=0), "shortcut")
    big = 56 * 56 * (conv1 + conv2 + skip)
    assert wrong_with(ex03.block_mult_adds(big, verbose=0), "28 x 28")
    assert not ex03.block_mult_adds(1.0, verbose=0)


def _preact(inputs, channels, *, relu_after=False, skip=True):
    y = layers.ReLU()(layers.BatchNormalization()(inputs))
    y = layers.Conv2D(channels, 3, padding="same")(y)
    y = layers.ReLU()(layers.BatchNormalization()(y))
    y = layers.Conv2D(channels, 3, padding="same")(y)
    if not skip:
        return y
    out = layers.Add()([inputs, y])
    return layers.ReLU()(out) if relu_after else out


def test_ex03_preactivation_block():
    assert ex03.preactivation_block(_preact, verbose=0).correct
    post = ex03.preactivation_block(lambda x, c: _preact(x, c, relu_after=True), verbose=0)
    assert wrong_with(post, "ReLU(x)")
    plain = ex03.preactivation_block(lambda x, c: _preact(x, c, skip=False), verbose=0)
    assert wrong_with(plain, "add the input")

    def one_conv(inputs, channels):
        return layers.Add()([inputs, layers.Conv2D(channels, 3, padding="same")(inputs)])

    assert wrong_with(ex03.preactivation_block(one_conv, verbose=0), "two of each")


def test_ex03_toy_weights():
    assert ex03.toy_weights(np.full(20, -0.5), verbose=0).correct
    assert ex03.toy_weights(..., verbose=0).status == NOT_ATTEMPTED
    assert wrong_with(ex03.toy_weights(np.full(20, 0.3), verbose=0), "at least 1")
    assert wrong_with(ex03.toy_weights(np.full(20, -0.9), verbose=0), "0.5")
    assert wrong_with(ex03.toy_weights(np.full(10, -0.5), verbose=0), "shape")
    assert ex03.toy_gradient(np.full(20, 0.3)) > 1 > ex03.toy_gradient(np.full(20, -0.1))
