"""Feedback for the notebooks' exercises: checks that say "correct" or what is wrong.

Every notebook ends with an "Exercises" section. A student writes the answer in a skeleton
cell, and the next cell calls a check from this package, e.g.
``exercises.ex05.fgsm_step(my_fgsm, model, x, y)``. A check prints one line and returns a
:class:`Feedback`:

* ``correct``: the answer passes every test of the check;
* ``wrong``: the first thing that is off ("shape (28, 28) but expected one map per image",
  "inside the eps-ball but the label did not change"), never the answer itself;
* ``not attempted``: the skeleton is untouched (the answer is ``...`` or ``None``, or the
  function raises ``NotImplementedError``), so an unsolved notebook still runs top to bottom
  (nbval, ``make lab``).

The checks of notebook N live in ``exercises.exNN``; worked solutions live apart from the
student's notebooks, in ``notebooks/solutions/`` (executed by ``make test``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CORRECT, WRONG, NOT_ATTEMPTED = "correct", "wrong", "not attempted"
_MARKS = {CORRECT: "[correct]", WRONG: "[not yet]", NOT_ATTEMPTED: "[not attempted yet]"}


@dataclass(frozen=True)
class Feedback:
    """The verdict of a check: its exercise, a status and a message that hides the answer."""

    exercise: str
    status: str
    message: str

    def __bool__(self) -> bool:
        return self.status == CORRECT

    def __str__(self) -> str:
        return f"Exercise {self.exercise} {_MARKS[self.status]} {self.message}".rstrip()

    @property
    def correct(self) -> bool:
        """True when the answer passed every test of the check."""
        return self.status == CORRECT


class Wrong(Exception):
    """Raised inside a check to report what is wrong; the message is shown to the student."""


def not_attempted(answer) -> bool:
    """True for an untouched skeleton: ``...`` (Ellipsis) or ``None``."""
    return answer is None or answer is Ellipsis


def report(exercise: str, test: Callable[[], str | None], *, verbose: int = 1) -> Feedback:
    """Run ``test`` and turn its outcome into :class:`Feedback` (printed unless ``verbose=0``).

    ``test`` returns ``None`` (or a short remark) when the answer is right, raises
    :class:`Wrong` with what is off, and raises ``NotImplementedError`` (or returns the
    constant :data:`NOT_ATTEMPTED`) for an untouched skeleton. Any other exception raised by
    the student's code is reported as wrong with its type and message.
    """
    try:
        remark = test()
    except NotImplementedError:
        status, message = NOT_ATTEMPTED, "Fill in the cell above, then run this one again."
    except Wrong as error:
        status, message = WRONG, str(error)
    except Exception as error:  # the student's code failed: show why, not a traceback
        status, message = WRONG, f"your code raised {type(error).__name__}: {error}"
    else:
        if remark == NOT_ATTEMPTED:
            status, message = NOT_ATTEMPTED, "Fill in the cell above, then run this one again."
        else:
            status, message = CORRECT, remark or ""
    feedback = Feedback(exercise, status, message)
    if verbose:
        print(feedback)
    return feedback


def as_number(answer, what: str = "the answer") -> float:
    """The answer as a finite float, or :class:`Wrong` saying what it is instead."""
    if isinstance(answer, (bool, str, bytes)):
        raise Wrong(f"{what} should be a number, not {answer!r}.")
    try:
        value = float(np.asarray(answer).reshape(()))
    except (TypeError, ValueError):
        raise Wrong(f"{what} should be one number; got {type(answer).__name__}.") from None
    if not math.isfinite(value):
        raise Wrong(f"{what} should be a finite number; got {value}.")
    return value


def on_grid(answer, step: float, what: str = "the answer") -> float:
    """The answer as a positive multiple of ``step`` (a float), or :class:`Wrong`."""
    value = as_number(answer, what)
    if value <= 0 or abs(value / step - round(value / step)) > 1e-6:
        raise Wrong(f"{what} should be a positive multiple of {step:g}; got {value:g}.")
    return value


def as_array(answer, shape: tuple, what: str = "the answer") -> np.ndarray:
    """The answer as a float array of the expected shape, or :class:`Wrong`."""
    try:
        array = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError):
        raise Wrong(f"{what} should be an array of numbers; got {type(answer).__name__}.") from None
    if array.shape != tuple(shape):
        raise Wrong(f"{what} has shape {array.shape} but shape {tuple(shape)} was expected.")
    if not np.all(np.isfinite(array)):
        raise Wrong(f"{what} holds NaN or infinite values.")
    return array


def close(answer: float, expected: float, *, rel: float = 1e-3, abs_: float = 1e-6) -> bool:
    """``answer`` equals ``expected`` up to a relative and an absolute tolerance."""
    return math.isclose(answer, expected, rel_tol=rel, abs_tol=abs_)


__all__ = [
    "CORRECT",
    "NOT_ATTEMPTED",
    "WRONG",
    "Feedback",
    "Wrong",
    "as_array",
    "as_number",
    "close",
    "not_attempted",
    "on_grid",
    "report",
]
