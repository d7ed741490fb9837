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
    assert ex01.same_padding(1, "bottom", verbose=0).correct
    assert ex01.same_padding(..., "bottom", verbose=0).status == NOT_ATTEMPTED
    assert ex01.same_padding(1, ..., verbose=0).status == NOT_ATTEMPTED
    assert wrong_with(ex01.same_padding(0, "bottom", verbose=0), "7 rows")
    assert wrong_with(ex01.same_padding(2, "bottom", verbose=0), "least")
    assert wrong_with(ex01.same_padding(0.5, "bottom", verbose=0), "whole rows")
    assert wrong_with(ex01.same_padding(1.4, "bottom", verbose=0), "whole number")


def test_ex01_same_padding_tells_top_from_bottom():
    # The hint's experiment: on a map whose row r holds r, the windows show the padded side.
    rows = np.arange(15, dtype="float32")[None, :, None, None] * np.ones((1, 15, 15, 1), "float32")
    pooled = np.asarray(keras.layers.MaxPooling2D(2, strides=2, padding="same")(rows))[0, :, 0, 0]
    assert list(pooled) == [1, 3, 5, 7, 9, 11, 13, 14]  # bottom; top would give 0, 2, ..., 14
    assert wrong_with(ex01.same_padding(1, "top", verbose=0), "row 0")
    assert wrong_with(ex01.same_padding(1, "both", verbose=0), "both sides")
    assert wrong_with(ex01.same_padding(1, "left", verbose=0), "one of")


def test_ex01_stack_shapes():
    assert ex01.stack_shapes([30, 14, 14], 3136, verbose=0).correct
    assert ex01.stack_shapes(..., 3136, verbose=0).status == NOT_ATTEMPTED
    assert wrong_with(ex01.stack_shapes([31, 14, 14], 3136, verbose=0), "strided 'valid'")
    assert wrong_with(ex01.stack_shapes([30, 15, 15], 3600, verbose=0), "pooling")
    assert wrong_with(ex01.stack_shapes([30, 14, 12], 2304, verbose=0), "'same' convolution")
    assert wrong_with(ex01.stack_shapes([30, 14, 14], 196, verbose=0), "flattened")


def test_ex01_stack_shapes_refuses_truncated_floats():
    assert wrong_with(ex01.stack_shapes([30.9, 14.2, 14.99], 3136, verbose=0), "whole number")
    assert wrong_with(ex01.stack_shapes([30, 14, 14], 3136.5, verbose=0), "whole number")
    assert ex01.stack_shapes([30.0, 14.0, np.int64(14)], 3136, verbose=0).correct


def test_ex01_separable_params():
    assert ex01.separable_params(9 * 64 + 64 * 128, verbose=0).correct
    assert wrong_with(ex01.separable_params(9 * 64 * 128, verbose=0), "full")
    with_bias = 9 * 64 + 64 * 128 + 128
    assert wrong_with(ex01.separable_params(with_bias, verbose=0), "biases")
    per_output = 9 * 128 + 64 * 128
    assert wrong_with(ex01.separable_params(per_output, verbose=0), "per input")


def test_ex01_separable_params_keeps_the_problem_in_the_check():
    # The problem's data cannot come from the call: 0 weights for a layer of 0 channels fails.
    assert wrong_with(ex01.separable_params(0, kernel=0, c_in=0, c_out=0, verbose=0), "too few")
    assert ex01.separable_params(8768, kernel=1, c_in=1, c_out=1, verbose=0).correct


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
    one_channel = ex01.cross_correlation(
        lambda x, k, s: _correlate(x[..., :1], k[:, :, :1], s), verbose=0
    )
    assert wrong_with(one_channel, "not the values")


def test_ex01_cross_correlation_ignoring_stride_is_not_yet():
    no_stride = ex01.cross_correlation(lambda x, k, s: _correlate(x, k, 1), verbose=0)
    assert wrong_with(no_stride, "stride")
    # stride 2 taken by slicing the stride-1 output works for 2 only: the check tries 1 to 3
    sliced = ex01.cross_correlation(lambda x, k, s: _correlate(x, k, 1)[::2, ::2], verbose=0)
    assert wrong_with(sliced, "stride")


def test_ex01_cross_correlation_calling_keras_conv_is_not_yet():
    def library(x, kernel, stride):
        return np.asarray(keras.ops.conv(x[None], kernel, strides=stride))[0]

    assert wrong_with(ex01.cross_correlation(library, verbose=0), "conv")
    assert ex01.cross_correlation(_correlate, verbose=0).correct  # restored afterwards
    assert keras.ops.conv(np.ones((1, 3, 3, 1)), np.ones((1, 1, 1, 1))).shape == (1, 3, 3, 1)


def test_ex01_cross_correlation_gets_copies():
    def vandal(x, kernel, stride):
        out = _correlate(x, kernel, stride)
        x[...] = 0  # writes into its input: harmless, the check passed a copy
        return out

    assert ex01.cross_correlation(vandal, verbose=0).correct


def test_ex01_tell_apart():
    assert ex01.tell_apart([(3, 3), (3, 10), (11, 11), (20, 11)], verbose=0).correct
    assert ex01.tell_apart(None, verbose=0).status == NOT_ATTEMPTED
    swapped = [(3, 19), (3, 3), (20, 11), (11, 11)]  # parts moved, gaps of 2 or more
    assert wrong_with(ex01.tell_apart(swapped, verbose=0), "same as the face")
    overlap = [(3, 3), (3, 6), (11, 11), (20, 11)]
    assert wrong_with(ex01.tell_apart(overlap, verbose=0), "overlap")
    assert wrong_with(ex01.tell_apart([(3, 3), (3, 25), (11, 11), (20, 11)], verbose=0), "leaves")


def test_ex01_tell_apart_refuses_another_reason():
    # A part against the edge changes the pooled features (windows go missing), but not
    # because one window sees two parts: not the reason asked.
    edge = [(3, 3), (3, 19), (11, 11), (22, 11)]
    pair = np.stack([ex01.place(ex01.FACE), ex01.place(edge)])[..., None]
    assert any(np.abs(np.diff(np.asarray(d(pair)), axis=0)).max() > 1e-4 for d in ex01.detectors())
    assert wrong_with(ex01.tell_apart(edge, verbose=0), "edge")
    assert wrong_with(ex01.tell_apart([(3.5, 3), (3, 10), (11, 11), (20, 11)], verbose=0), "whole")


# ---------------------------------------------------------------------------------------------
# Notebook 02
# ---------------------------------------------------------------------------------------------


def test_ex02_inception_params():
    # Inception(96, (80, 160), (24, 48), 48) on 320 channels: not a block of the notebook.
    right = 321 * 96 + 321 * 80 + 721 * 160 + 321 * 24 + 601 * 48 + 321 * 48
    assert ex02.inception_params(right, verbose=0).correct
    assert ex02.inception_params(..., verbose=0).status == NOT_ATTEMPTED
    no_bias = 320 * 96 + 320 * 80 + 720 * 160 + 320 * 24 + 600 * 48 + 320 * 48
    assert wrong_with(ex02.inception_params(no_bias, verbose=0), "bias")
    no_pool = right - 321 * 48
    assert wrong_with(ex02.inception_params(no_pool, verbose=0), "projection")
    naive = 321 * 96 + (9 * 320 + 1) * 160 + (25 * 320 + 1) * 48 + 321 * 48
    assert wrong_with(ex02.inception_params(naive, verbose=0), "reduction")
    assert not ex02.inception_params(str(right), verbose=0)
    block_4a = 481 * 192 + 481 * 96 + 865 * 208 + 481 * 16 + 401 * 48 + 481 * 64
    assert not ex02.inception_params(block_4a, verbose=0)  # the table's number is not the answer
    assert str(right) not in ex02.inception_params(right + 1, verbose=0).message


def test_ex02_reduction_mult_adds():
    kw = dict(verbose=0)
    area = 14 * 14
    with_r, without = area * (528 * 32 + 25 * 32 * 128), area * 25 * 528 * 128
    right = ex02.reduction_mult_adds(with_r, without, **kw)
    assert right.correct and "saves" in right.message
    assert ex02.reduction_mult_adds(..., without, **kw).status == NOT_ATTEMPTED
    forgot = ex02.reduction_mult_adds(area * 25 * 32 * 128, without, **kw)
    assert wrong_with(forgot, "1x1 reduction costs")
    one_position = ex02.reduction_mult_adds(with_r, 25 * 528 * 128, **kw)
    assert wrong_with(one_position, "one position")


def _factorised(
    inputs,
    c1,
    c2,
    c3,
    c4,
    *,
    five=False,
    relu=True,
    pool_proj=True,
    pool="max",
    inner=True,
    order=(0, 1, 2, 3),
):
    act = "relu" if relu else None

    def conv(x, filters, k, last=True):
        return layers.Conv2D(filters, k, padding="same", activation=act if last or inner else None)(
            x
        )

    b3 = conv(conv(inputs, c3[0], 1, False), c3[1], 5 if five else 3, five)
    if not five:
        b3 = conv(b3, c3[1], 3)
    pooling = {"max": layers.MaxPooling2D, "avg": layers.AveragePooling2D}
    pooled = pooling[pool](3, strides=1, padding="same")(inputs) if pool else inputs
    b4 = conv(pooled, c4, 1) if pool_proj else pooled
    branches = [conv(inputs, c1, 1), conv(conv(inputs, c2[0], 1, False), c2[1], 3), b3, b4]
    return layers.Concatenate()([branches[i] for i in order])


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


def test_ex02_factorised_inception_without_max_pool_is_not_yet():
    no_pool = ex02.factorised_inception(lambda *a: _factorised(*a, pool=None), verbose=0)
    assert wrong_with(no_pool, "no pooling")


def test_ex02_factorised_inception_with_average_pooling_is_not_yet():
    average = ex02.factorised_inception(lambda *a: _factorised(*a, pool="avg"), verbose=0)
    assert wrong_with(average, "maximum")


def test_ex02_factorised_inception_without_inner_relus_is_not_yet():
    linear_inside = ex02.factorised_inception(lambda *a: _factorised(*a, inner=False), verbose=0)
    assert wrong_with(linear_inside, "ReLU")


def test_ex02_factorised_inception_in_another_order_is_not_yet():
    shuffled = ex02.factorised_inception(lambda *a: _factorised(*a, order=(1, 0, 2, 3)), verbose=0)
    assert wrong_with(shuffled, "order")
    last_first = ex02.factorised_inception(
        lambda *a: _factorised(*a, order=(3, 0, 1, 2)), verbose=0
    )
    assert wrong_with(last_first, "order")


def test_ex02_the_factorisation_claim_for_block_3a():
    # The prompt's numbers: 5x5 (16 -> 32) against 3x3 (16 -> 32) then 3x3 (32 -> 32).
    assert 25 * 16 * 32 == 12_800 and 9 * 16 * 32 + 9 * 32 * 32 == 13_824


def test_ex02_matching_width():
    budget = ex02.small_cnn_mult_adds()
    assert ex02.googlenet_mult_adds(0.1) <= budget < ex02.googlenet_mult_adds(0.15)
    assert ex02.matching_width(0.1, verbose=0).correct
    assert ex02.matching_width(..., verbose=0).status == NOT_ATTEMPTED
    assert wrong_with(ex02.matching_width(0.25, verbose=0), "more than the small CNN")
    assert wrong_with(ex02.matching_width(0.05, verbose=0), "go wider")
    assert wrong_with(ex02.matching_width(0.12, verbose=0), "multiple")


def test_ex02_matching_width_is_bounded():
    import time

    start = time.perf_counter()
    assert wrong_with(ex02.matching_width(25, verbose=0), "beyond 1")
    assert time.perf_counter() - start < 5  # refused before any network is built


# ---------------------------------------------------------------------------------------------
# Notebook 03
# ---------------------------------------------------------------------------------------------


def test_ex03_bottleneck_params():
    c, m = 2048, 512  # ResNet-50's conv5_x bottleneck: the notebook counts the 256/64 one
    right = (c * m + m) + (9 * m * m + m) + (m * c + c)
    assert ex03.bottleneck_params(right, verbose=0).correct
    assert ex03.bottleneck_params(None, verbose=0).status == NOT_ATTEMPTED
    no_bias = c * m + 9 * m * m + m * c
    assert wrong_with(ex03.bottleneck_params(no_bias, verbose=0), "bias")
    basic = 2 * (9 * c * c + c)
    assert wrong_with(ex03.bottleneck_params(basic, verbose=0), "basic block")
    no_expand = c * m + 9 * m * m + 2 * m
    assert wrong_with(ex03.bottleneck_params(no_expand, verbose=0), "back to")
    assert not ex03.bottleneck_params(70_016, verbose=0)  # the notebook's block


def test_ex03_bottleneck_params_keeps_the_problem_in_the_check():
    assert not ex03.bottleneck_params(0, c_in=0, mid=0, verbose=0)  # the shortcut
    assert not ex03.bottleneck_params(0, verbose=0)


def test_ex03_block_mult_adds():
    # Residual(96, use_1x1conv=True, strides=2) on 32x32x48: not the notebook's first_block.
    conv1, conv2, skip = 9 * 48 * 96, 9 * 96 * 96, 48 * 96
    assert ex03.block_mult_adds(256 * (conv1 + conv2 + skip), verbose=0).correct
    assert ex03.block_mult_adds(..., verbose=0).status == NOT_ATTEMPTED
    assert wrong_with(ex03.block_mult_adds(256 * (conv1 + conv2), verbose=0), "shortcut")
    big = 1024 * (conv1 + conv2 + skip)
    assert wrong_with(ex03.block_mult_adds(big, verbose=0), "half as many")
    assert not ex03.block_mult_adds(1.0, verbose=0)
    first_block = 28 * 28 * (9 * 64 * 128 + 9 * 128 * 128 + 64 * 128)  # printed in section 4
    assert not ex03.block_mult_adds(first_block, verbose=0)


def _preact(inputs, channels, *, relu_after=False, skip=True, relu=True):
    act = layers.ReLU if relu else layers.Identity
    y = act()(layers.BatchNormalization()(inputs))
    y = layers.Conv2D(channels, 3, padding="same")(y)
    y = act()(layers.BatchNormalization()(y))
    y = layers.Conv2D(channels, 3, padding="same")(y)
    if not skip:
        return y
    out = layers.Add()([inputs, y])
    return layers.ReLU()(out) if relu_after else out


def test_ex03_preactivation_block():
    assert ex03.preactivation_block(_preact, verbose=0).correct
    relu_after = ex03.preactivation_block(lambda x, c: _preact(x, c, relu_after=True), verbose=0)
    assert wrong_with(relu_after, "follows the addition")
    plain = ex03.preactivation_block(lambda x, c: _preact(x, c, skip=False), verbose=0)
    assert wrong_with(plain, "not added")

    def one_conv(inputs, channels):
        return layers.Add()([inputs, layers.Conv2D(channels, 3, padding="same")(inputs)])

    assert wrong_with(ex03.preactivation_block(one_conv, verbose=0), "two of each")


def _postact(inputs, channels):
    y = layers.ReLU()(
        layers.BatchNormalization()(layers.Conv2D(channels, 3, padding="same")(inputs))
    )
    y = layers.BatchNormalization()(layers.Conv2D(channels, 3, padding="same")(y))
    return layers.ReLU()(layers.Add()([inputs, y]))


def test_ex03_preactivation_block_in_post_activation_order_is_not_yet():
    assert wrong_with(ex03.preactivation_block(_postact, verbose=0), "post-activation")


def test_ex03_preactivation_block_without_relu_is_not_yet():
    no_relu = ex03.preactivation_block(lambda x, c: _preact(x, c, relu=False), verbose=0)
    assert wrong_with(no_relu, "no ReLU")


def test_ex03_toy_weights():
    assert ex03.toy_weights(np.full(20, -0.5), verbose=0).correct
    assert ex03.toy_weights(..., verbose=0).status == NOT_ATTEMPTED
    assert wrong_with(ex03.toy_weights(np.full(20, 0.3), verbose=0), "at least 1")
    assert wrong_with(ex03.toy_weights(np.full(20, -0.9), verbose=0), "0.5")
    assert wrong_with(ex03.toy_weights(np.full(10, -0.5), verbose=0), "shape")
    assert ex03.toy_gradient(np.full(20, 0.3)) > 1 > ex03.toy_gradient(np.full(20, -0.1))
