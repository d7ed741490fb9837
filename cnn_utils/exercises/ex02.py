"""Checks for the exercises of notebook 02 (GoogLeNet).

1. ``inception_params``: by hand, the parameters of an Inception block with dimensionality
   reduction (Szegedy et al. 2014, Figure 2b and Table 1).
2. ``reduction_mult_adds``: by hand, the multiply-adds of a k x k branch with and without its
   1x1 reduction (Section 4 of the paper: "1x1 convolutions are used to compute reductions
   before the expensive 3x3 and 5x5 convolutions").
3. ``factorised_inception``: the Inception block with its 5x5 convolution factorised into two
   3x3 ones (Inception v3), written by the student with Keras layers.
4. ``matching_width``: the widest reduced GoogLeNet (width multiplier on a grid of 0.05) that
   costs no more multiply-adds than notebook 01's small CNN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from cnn_utils import models, shapes
from cnn_utils.exercises import (
    NOT_ATTEMPTED,
    Feedback,
    Wrong,
    as_number,
    close,
    not_attempted,
    on_grid,
    report,
)

__all__ = [
    "WIDTH_STEP",
    "factorised_inception",
    "googlenet_mult_adds",
    "inception_params",
    "matching_width",
    "reduction_mult_adds",
    "small_cnn_mult_adds",
]


def _conv(kernel: int, c_in: int, c_out: int, bias: bool = True) -> int:
    return kernel * kernel * c_in * c_out + (c_out if bias else 0)


def _is(value: float, expected: float) -> bool:
    return close(value, expected, rel=1e-9, abs_=0.5)


# ---------------------------------------------------------------------------------------------
# 1. The parameters of an Inception block
# ---------------------------------------------------------------------------------------------


def inception_params(
    answer, c_in: int, c1: int, c2: Sequence[int], c3: Sequence[int], c4: int, *, verbose=1
) -> Feedback:
    """Check the parameter count (weights and biases) of ``Inception(c1, c2, c3, c4)``."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_number(answer, "the parameter count")
        parts = [
            (1, c_in, c1),
            (1, c_in, c2[0]),
            (3, c2[0], c2[1]),
            (1, c_in, c3[0]),
            (5, c3[0], c3[1]),
            (1, c_in, c4),
        ]
        expected = sum(_conv(*p) for p in parts)
        if _is(value, expected):
            return None
        if _is(value, sum(_conv(*p, bias=False) for p in parts)):
            raise Wrong("every convolution also has one bias per filter: add them.")
        if _is(value, expected - _conv(1, c_in, c4)):
            raise Wrong(
                "the pooling branch has no weights in its pooling, but its 1x1 projection does."
            )
        naive = (
            _conv(1, c_in, c1) + _conv(3, c_in, c2[1]) + _conv(5, c_in, c3[1]) + _conv(1, c_in, c4)
        )
        if _is(value, naive) or _is(value, naive - _conv(1, c_in, c4)):
            raise Wrong(
                "the 3x3 and 5x5 convolutions read the output of their 1x1 reduction, not the "
                "block's input (and the reductions have weights of their own)."
            )
        raise Wrong("not the count: list the six convolutions with their k, C_in and C_out.")

    return report("2.1", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 2. What a 1x1 reduction saves
# ---------------------------------------------------------------------------------------------


def reduction_mult_adds(
    with_reduction,
    without,
    size: int,
    c_in: int,
    reduce: int,
    c_out: int,
    kernel: int,
    *,
    verbose=1,
) -> Feedback:
    """Check the multiply-adds of a ``kernel`` x ``kernel`` branch with and without reduction.

    'same' padding, stride 1, on a ``size`` x ``size`` x ``c_in`` input; the reduction is a
    1x1 convolution to ``reduce`` channels.
    """

    def test():
        if not_attempted(with_reduction) or not_attempted(without):
            return NOT_ATTEMPTED
        got_with = as_number(with_reduction, "with_reduction")
        got_without = as_number(without, "without")
        area = size * size
        expected_without = area * kernel * kernel * c_in * c_out
        expected_with = area * (c_in * reduce + kernel * kernel * reduce * c_out)
        if not _is(got_without, expected_without):
            if _is(got_without, kernel * kernel * c_in * c_out):
                raise Wrong(
                    "without: that is the cost at one position; the output has size x size."
                )
            raise Wrong("without: count output positions x kernel area x C_in x C_out.")
        if _is(got_with, expected_with):
            return f"the reduction saves {expected_without / expected_with:.1f}x."
        if _is(got_with, area * kernel * kernel * reduce * c_out):
            raise Wrong("with_reduction: the 1x1 reduction costs multiply-adds too; add them.")
        raise Wrong(
            "with_reduction: add the 1x1 convolution's cost and the k x k one on the thin tensor."
        )

    return report("2.2", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 3. The Inception block with the 5x5 factorised into two 3x3
# ---------------------------------------------------------------------------------------------


def factorised_inception(fn: Callable, *, verbose: int = 1) -> Feedback:
    """Check ``fn(inputs, c1, c2, c3, c4)``: the block of Figure 2b with its 5x5 made two 3x3.

    Branches (Szegedy et al. 2016, Rethinking the Inception architecture, Figure 5): 1x1
    (``c1``); 1x1 (``c2[0]``) -> 3x3 (``c2[1]``); 1x1 (``c3[0]``) -> 3x3 (``c3[1]``) -> 3x3
    (``c3[1]``); 3x3 max pooling (stride 1, 'same') -> 1x1 (``c4``). 'same' padding and a ReLU
    after every convolution; the outputs concatenated on channels.
    """

    def test():
        c_in, c1, c2, c3, c4 = 6, 2, (3, 4), (2, 5), 3
        inputs = keras.Input((8, 8, c_in))
        out = fn(inputs, c1, c2, c3, c4)
        if out is None:
            raise Wrong("your function returns None: return the concatenated tensor.")
        model = keras.Model(inputs, out)
        expected_shape = (None, 8, 8, c1 + c2[1] + c3[1] + c4)
        if tuple(model.output_shape) != expected_shape:
            raise Wrong(
                f"output shape {tuple(model.output_shape)} but {expected_shape} was expected: "
                "'same' padding and stride 1 everywhere, four branches concatenated."
            )
        common = _conv(1, c_in, c1) + _conv(1, c_in, c2[0]) + _conv(3, c2[0], c2[1])
        common += _conv(1, c_in, c3[0]) + _conv(1, c_in, c4)
        expected = common + _conv(3, c3[0], c3[1]) + _conv(3, c3[1], c3[1])
        got = model.count_params()
        if got == common + _conv(5, c3[0], c3[1]):
            raise Wrong("that is the 5x5 block of Figure 2b: replace the 5x5 by two 3x3.")
        if got != expected:
            raise Wrong(
                f"{got} parameters, not the count of this block: check each branch's "
                "convolutions and which tensor each one reads."
            )
        x = np.random.default_rng(0).normal(size=(2, 8, 8, c_in)).astype("float32")
        if np.asarray(model(x)).min() < 0:
            raise Wrong("some outputs are negative: every convolution is followed by a ReLU.")
        return None

    return report("2.3", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 4. A reduced GoogLeNet as cheap as the small CNN
# ---------------------------------------------------------------------------------------------

WIDTH_STEP = 0.05
"""The grid of width multipliers of exercise 2.4."""


def small_cnn_mult_adds() -> int:
    """Multiply-adds of notebook 01's small CNN for one 28x28x1 image."""
    cnn = models.small_cnn(filters=(32, 64, 128), convs_per_stage=1, head="flatten", dropout=0.2)
    return int(shapes.mult_adds_table(cnn).attrs["total_mult_adds"])


def googlenet_mult_adds(width: float) -> int:
    """Multiply-adds of the reduced GoogLeNet (small stem, batch norm) at ``width``."""
    net = models.googlenet((28, 28, 1), 10, width=width, stem="small", batch_norm=True)
    return int(shapes.mult_adds_table(net).attrs["total_mult_adds"])


def matching_width(answer, *, verbose: int = 1) -> Feedback:
    """Check the largest multiple of :data:`WIDTH_STEP` whose GoogLeNet costs <= the small CNN."""

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        width = on_grid(answer, WIDTH_STEP, "the width")
        budget = small_cnn_mult_adds()
        cost = googlenet_mult_adds(width)
        if cost > budget:
            raise Wrong(
                f"at width {width:g} the reduced GoogLeNet needs {cost / 1e6:.1f} M multiply-adds, "
                f"more than the small CNN's {budget / 1e6:.1f} M."
            )
        wider = round(width + WIDTH_STEP, 10)
        if googlenet_mult_adds(wider) <= budget:
            raise Wrong(f"width {wider:g} still fits in the budget: go wider.")
        return None

    return report("2.4", test, verbose=verbose)
