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
  (nbval, ``make lab``);
* ``error``: the check itself failed (not the student's code): the message says so.

The checks test behaviour: they run the student's function on cases the notebook does not show
(other strides, sizes, images), on copies of the inputs, with the package's own version of the
exercise switched off (:func:`forbid`), and compare with a reference built from the student's
own weights where a layer is built. The problem's data live in the check, not in the call.
Nothing public here returns an answer, and a wrong number gets a direction, never the value.

The checks of notebook N live in ``exercises.exNN``; worked solutions live apart from the
student's notebooks, in ``notebooks/solutions/`` (generated around the student's prompts by
``tools/solutions.py``, executed by ``make test``); ``make grade`` runs every check on a folder
of submitted notebooks (``tools/grade.py``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

CORRECT, WRONG, NOT_ATTEMPTED, ERROR = "correct", "wrong", "not attempted", "error"
_MARKS = {
    CORRECT: "[correct]",
    WRONG: "[not yet]",
    NOT_ATTEMPTED: "[not attempted yet]",
    ERROR: "[check error]",
}


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

    def _ipython_display_(self) -> None:
        """Nothing more to show in a notebook: :func:`report` has printed the verdict."""


class Wrong(Exception):
    """Raised inside a check to report what is wrong; the message is shown to the student."""


class _Forbidden(Wrong):
    """Raised when the student's code calls a function the exercise asks them to write."""


@contextlib.contextmanager
def student_code(what: str = "your code") -> Iterator[None]:
    """Run the student's code: its exceptions become :class:`Wrong` ("your code raised ...").

    ``NotImplementedError`` (an untouched skeleton) and :class:`Wrong` pass through; any other
    exception raised outside this block is the check's own failure (reported as ``error``).
    """
    try:
        yield
    except (NotImplementedError, Wrong):
        raise
    except Exception as error:
        raise Wrong(f"{what} raised {type(error).__name__}: {error}") from None


@contextlib.contextmanager
def forbid(*targets: tuple[object, str], reason: str) -> Iterator[None]:
    """Switch off ``(module_or_class, attribute)`` pairs while the student's code runs.

    A call to one of them raises :class:`Wrong` with ``reason`` (the exercise asks the student
    to write that computation, not to call it); the attributes are restored afterwards.
    """
    saved = []
    for owner, name in targets:
        original = getattr(owner, name, None)
        if original is None:
            continue

        label = f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
        label = label.replace("keras.api.", "keras.").replace("cnn_utils.", "")

        def blocked(*args, _label=label, **kwargs):
            raise _Forbidden(f"your code calls {_label}: {reason}")

        saved.append((owner, name, original))
        setattr(owner, name, blocked)
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def copied(array, dtype="float32") -> np.ndarray:
    """A fresh copy of ``array`` for the student's code (it may write into its input)."""
    return np.array(array, dtype=dtype, copy=True)


def not_attempted(answer) -> bool:
    """True for an untouched skeleton: ``...`` (Ellipsis) or ``None``."""
    return answer is None or answer is Ellipsis


def report(exercise: str, test: Callable[[], str | None], *, verbose: int = 1) -> Feedback:
    """Run ``test`` and turn its outcome into :class:`Feedback` (printed unless ``verbose=0``).

    ``test`` returns ``None`` (or a short remark) when the answer is right, raises
    :class:`Wrong` with what is off, and raises ``NotImplementedError`` (or returns the
    constant :data:`NOT_ATTEMPTED`) for an untouched skeleton. The student's code runs inside
    :func:`student_code`, so its exceptions are reported as wrong with their type and message;
    any other exception is the check's own failure and is reported as such (status ``error``).
    """
    try:
        remark = test()
    except NotImplementedError:
        status, message = NOT_ATTEMPTED, "Fill in the cell above, then run this one again."
    except Wrong as error:
        status, message = WRONG, str(error)
    except Exception as error:  # a bug or a broken install, not the student's answer
        status, message = (
            ERROR,
            (
                f"the check itself failed ({type(error).__name__}: {error}). This is not a verdict "
                "on your answer: tell your instructor."
            ),
        )
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


def as_int(answer, what: str = "the answer") -> int:
    """The answer as an integer, or :class:`Wrong` (``30.9`` is refused, not truncated)."""
    value = as_number(answer, what)
    if value != round(value):
        raise Wrong(f"{what} should be a whole number; got {value:g}.")
    return int(round(value))


def on_grid(answer, step: float, what: str = "the answer", *, maximum: float = math.inf) -> float:
    """The answer as a positive multiple of ``step`` at most ``maximum``, or :class:`Wrong`."""
    value = as_number(answer, what)
    if value <= 0 or abs(value / step - round(value / step)) > 1e-6:
        raise Wrong(f"{what} should be a positive multiple of {step:g}; got {value:g}.")
    if value > maximum + 1e-9:
        raise Wrong(f"{what} = {value:g} is beyond {maximum:g}, the end of the grid: look lower.")
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
    "ERROR",
    "NOT_ATTEMPTED",
    "WRONG",
    "Feedback",
    "Wrong",
    "as_array",
    "as_int",
    "as_number",
    "close",
    "copied",
    "forbid",
    "not_attempted",
    "on_grid",
    "report",
    "student_code",
]
