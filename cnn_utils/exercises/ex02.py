"""Checks for the exercises of notebook 02 (GoogLeNet).

1. ``inception_params``: by hand, the parameters of an Inception block with dimensionality
   reduction (Szegedy et al. 2014, Figure 2b), for a block that is not in the notebook's table.
2. ``reduction_mult_adds``: by hand, the multiply-adds of a k x k branch with and without its
   1x1 reduction (Section 4 of the paper: "1x1 convolutions are used to compute reductions
   before the expensive 3x3 and 5x5 convolutions").
3. ``factorised_inception``: the Inception block with its 5x5 convolution factorised into two
   3x3 ones (Inception v3), written by the student with Keras layers, built for configurations
   the notebook does not show and compared with the block computed from the student's weights.
4. ``matching_width``: the widest reduced GoogLeNet (width multiplier on a grid of 0.05, at
   most 1) that costs no more multiply-adds than notebook 01's small CNN.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from cnn_utils import models, shapes
from cnn_utils.exercises import (
    NOT_ATTEMPTED,
    Feedback,
    Wrong,
    as_int,
    close,
    copied,
    not_attempted,
    on_grid,
    report,
    student_code,
)

__all__ = [
    "BLOCK",
    "BRANCH",
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


BLOCK = {"c_in": 320, "c1": 96, "c2": (80, 160), "c3": (24, 48), "c4": 48}
"""The block of exercise 2.1: ``Inception(96, (80, 160), (24, 48), 48)`` on 320 channels (not a
block of GoogLeNet, so no table of the notebook holds its count)."""


def inception_params(answer, *ignored, verbose=1, **ignored_problem) -> Feedback:
    """Check the parameter count (weights and biases) of the block :data:`BLOCK`.

    The problem lives in the check: problem data passed by an older notebook are ignored.
    """

    def test():
        if not_attempted(answer):
            return NOT_ATTEMPTED
        value = as_int(answer, "the parameter count")
        c_in, c1, c2, c3, c4 = (BLOCK[k] for k in ("c_in", "c1", "c2", "c3", "c4"))
        parts = [
            (1, c_in, c1),
            (1, c_in, c2[0]),
            (3, c2[0], c2[1]),
            (1, c_in, c3[0]),
            (5, c3[0], c3[1]),
            (1, c_in, c4),
        ]
        expected = sum(_conv(*p) for p in parts)
        if value == expected:
            return None
        if value == sum(_conv(*p, bias=False) for p in parts):
            raise Wrong("every convolution also has one bias per filter: add them.")
        if value == expected - _conv(1, c_in, c4):
            raise Wrong(
                "the pooling branch has no weights in its pooling, but its 1x1 projection does."
            )
        naive = (
            _conv(1, c_in, c1) + _conv(3, c_in, c2[1]) + _conv(5, c_in, c3[1]) + _conv(1, c_in, c4)
        )
        if value in (naive, naive - _conv(1, c_in, c4)):
            raise Wrong(
                "the 3x3 and 5x5 convolutions read the output of their 1x1 reduction, not the "
                "block's input (and the reductions have weights of their own)."
            )
        raise Wrong(
            ("too high" if value > expected else "too low")
            + ": list the six convolutions with their k, C_in and C_out (check your method on "
            "block 4a against the table of section 2 first)."
        )

    return report("2.1", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 2. What a 1x1 reduction saves
# ---------------------------------------------------------------------------------------------

BRANCH = {"size": 14, "c_in": 528, "reduce": 32, "c_out": 128, "kernel": 5}
"""The branch of exercise 2.2: block 4e's 5x5 branch ('same', stride 1, 14x14x528 input)."""


def reduction_mult_adds(
    with_reduction, without, *ignored, verbose=1, **ignored_problem
) -> Feedback:
    """Check the multiply-adds of the branch :data:`BRANCH` with and without its reduction.

    The problem lives in the check: problem data passed by an older notebook are ignored.
    """

    def test():
        if not_attempted(with_reduction) or not_attempted(without):
            return NOT_ATTEMPTED
        got_with = as_int(with_reduction, "with_reduction")
        got_without = as_int(without, "without")
        size, c_in, reduce, c_out, kernel = (BRANCH[k] for k in BRANCH)
        area = size * size
        expected_without = area * kernel * kernel * c_in * c_out
        expected_with = area * (c_in * reduce + kernel * kernel * reduce * c_out)
        if got_without != expected_without:
            if got_without == kernel * kernel * c_in * c_out:
                raise Wrong(
                    "without: that is the cost at one position; the output has size x size."
                )
            raise Wrong("without: count output positions x kernel area x C_in x C_out.")
        if got_with == expected_with:
            return f"the reduction saves {expected_without / expected_with:.1f}x."
        if got_with == area * kernel * kernel * reduce * c_out:
            raise Wrong("with_reduction: the 1x1 reduction costs multiply-adds too; add them.")
        raise Wrong(
            "with_reduction: add the 1x1 convolution's cost and the k x k one on the thin tensor."
        )

    return report("2.2", test, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# 3. The Inception block with the 5x5 factorised into two 3x3
# ---------------------------------------------------------------------------------------------

FACTORISED_CASES = (
    # (height, width, c_in, c1, c2, c3, c4): every convolution has its own (k, C_in, C_out)
    (8, 8, 6, 2, (3, 4), (5, 7), 1),
    (7, 9, 5, 3, (2, 6), (4, 8), 1),
)
"""The configurations exercise 2.3 builds the student's block with (the notebook shows none)."""

_ROLES = ("b1", "b2a", "b2b", "b3a", "b3b", "b3c", "b4")


def _signatures(c_in, c1, c2, c3, c4) -> dict[tuple[int, int, int], str]:
    return {
        (1, c_in, c1): "b1",
        (1, c_in, c2[0]): "b2a",
        (3, c2[0], c2[1]): "b2b",
        (1, c_in, c3[0]): "b3a",
        (3, c3[0], c3[1]): "b3b",
        (3, c3[1], c3[1]): "b3c",
        (1, c_in, c4): "b4",
    }


def _reference_branches(x, weights, *, pool="max", inner_relu=True) -> list[np.ndarray]:
    """The four branches of the factorised block with the student's weights (NumPy out)."""
    ops = keras.ops

    def conv(tensor, role, last):
        kernel, bias = weights[role]
        y = ops.conv(tensor, kernel, padding="same") + bias
        return ops.relu(y) if (last or inner_relu) else y

    b1 = conv(x, "b1", True)
    b2 = conv(conv(x, "b2a", False), "b2b", True)
    b3 = conv(conv(conv(x, "b3a", False), "b3b", False), "b3c", True)
    if pool == "max":
        pooled = ops.max_pool(x, 3, 1, padding="same")
    elif pool == "avg":
        pooled = ops.average_pool(x, 3, 1, padding="same")
    else:
        pooled = x
    b4 = conv(pooled, "b4", True)
    return [np.asarray(b, dtype=np.float64) for b in (b1, b2, b3, b4)]


def factorised_inception(fn: Callable, *, verbose: int = 1) -> Feedback:
    """Check ``fn(inputs, c1, c2, c3, c4)``: the block of Figure 2b with its 5x5 made two 3x3.

    Branches (Szegedy et al. 2016, Rethinking the Inception architecture, Figure 5): 1x1
    (``c1``); 1x1 (``c2[0]``) -> 3x3 (``c2[1]``); 1x1 (``c3[0]``) -> 3x3 (``c3[1]``) -> 3x3
    (``c3[1]``); 3x3 max pooling (stride 1, 'same') -> 1x1 (``c4``). 'same' padding and a ReLU
    after every convolution; the outputs concatenated on channels in that order. The block is
    built for the configurations of :data:`FACTORISED_CASES`, and its output compared with the
    same block computed here from the student's own weights (random, negative inputs).
    """

    def test():
        rng = np.random.default_rng(23)
        for height, width, c_in, c1, c2, c3, c4 in FACTORISED_CASES:
            with student_code():
                inputs = keras.Input((height, width, c_in))
                out = fn(inputs, c1, c2, c3, c4)
                if out is None:
                    raise Wrong("your function returns None: return the concatenated tensor.")
                model = keras.Model(inputs, out)
            expected_shape = (None, height, width, c1 + c2[1] + c3[1] + c4)
            if tuple(model.output_shape) != expected_shape:
                raise Wrong(
                    f"for {(c1, c2, c3, c4)} on {height}x{width}x{c_in} the output shape is "
                    f"{tuple(model.output_shape)}, not {expected_shape}: 'same' padding and "
                    "stride 1 everywhere, four branches concatenated."
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
                    "convolutions (with biases) and which tensor each one reads."
                )
            signatures = _signatures(c_in, c1, c2, c3, c4)
            weights = {}
            for layer in model.layers:
                if isinstance(layer, keras.layers.Conv2D):
                    kernel = layer.get_weights()[0]
                    role = signatures.get(tuple(int(v) for v in kernel.shape[1:]))
                    if role is None or role in weights or kernel.shape[0] != kernel.shape[1]:
                        raise Wrong(
                            f"a convolution with a {kernel.shape[0]}x{kernel.shape[1]} kernel "
                            f"from {kernel.shape[2]} to {kernel.shape[3]} channels is not one of "
                            "this block's seven: check each branch."
                        )
                    bias = layer.get_weights()[1] if len(layer.get_weights()) > 1 else 0.0
                    weights[role] = (kernel, bias)
            if set(weights) != set(_ROLES):
                raise Wrong("the block needs seven convolutions, each with its own weights.")
            for role in _ROLES:  # biases away from zero, so a missing ReLU shows
                kernel, _ = weights[role]
                weights[role] = (kernel, rng.normal(scale=0.3, size=kernel.shape[-1]))
            for layer in model.layers:
                if isinstance(layer, keras.layers.Conv2D):
                    role = signatures[tuple(int(v) for v in layer.get_weights()[0].shape[1:])]
                    layer.set_weights([weights[role][0], weights[role][1]])
            x = rng.normal(size=(3, height, width, c_in)).astype("float32")
            with student_code():
                y = np.asarray(model(copied(x)), dtype=np.float64)
            branches = _reference_branches(x, weights)
            if np.allclose(y, np.concatenate(branches, axis=-1), atol=1e-4):
                continue
            _diagnose_inception(x, y, weights, branches)
        return None

    return report("2.3", test, verbose=verbose)


def _diagnose_inception(x, y, weights, branches) -> None:
    """Raise :class:`Wrong` with what differs from the block (without giving the code)."""
    import itertools

    def matches(candidate):
        return np.allclose(y, np.concatenate(candidate, axis=-1), atol=1e-4)

    for order in itertools.permutations(range(4)):
        if order != (0, 1, 2, 3) and matches([branches[i] for i in order]):
            raise Wrong(
                "the right branches in another order: concatenate 1x1, 3x3, the factorised "
                "branch, then the pooling branch (as blocks.Inception does)."
            )
    if matches(_reference_branches(x, weights, pool="avg")):
        raise Wrong("the fourth branch averages: GoogLeNet's pooling branch takes the maximum.")
    if matches(_reference_branches(x, weights, pool="none")):
        raise Wrong("the fourth branch has no pooling: 3x3 max pooling (stride 1) before its 1x1.")
    if matches(_reference_branches(x, weights, inner_relu=False)):
        raise Wrong(
            "the outputs match a block without ReLUs inside the branches: a ReLU follows "
            "every convolution, the 1x1 reductions included."
        )
    widths = np.cumsum([0] + [b.shape[-1] for b in branches])
    names = ["1x1", "3x3", "factorised", "pooling"]
    for i, branch in enumerate(branches):
        if not np.allclose(y[..., widths[i] : widths[i + 1]], branch, atol=1e-4):
            if y[..., widths[i] : widths[i + 1]].min() < 0:
                raise Wrong(
                    f"the {names[i]} branch has negative outputs: a ReLU follows every convolution."
                )
            raise Wrong(
                f"the {names[i]} branch differs from the block's (computed from your own "
                "weights): check which tensor each of its layers reads, its pooling and ReLUs."
            )
    raise Wrong("the outputs differ from the block computed from your own weights.")


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
        width = on_grid(answer, WIDTH_STEP, "the width", maximum=1.0)
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
