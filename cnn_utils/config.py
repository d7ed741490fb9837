"""Run-time configuration: the FAST switch, seeding and where caches live (the ground floor).

``FAST`` is read once, at import, from the environment variable ``CNN_UTILS_FAST``: notebooks
use smaller subsets, fewer epochs and fewer optimisation steps when it is true (the test suite
sets it), and the full settings otherwise (a student's or instructor's lab session). This
module imports no other module of the package but the argument checks (``_checks``); the
environment report is :mod:`cnn_utils.doctor`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TypeVar

import numpy as np

__all__ = [
    "DEFAULT_SEED",
    "FAST",
    "by_mode",
    "cache_dir",
    "keras_home",
    "set_seed",
    "use_shipped",
    "use_widgets",
]

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _parse_flag(name: str, value: str | None) -> bool:
    """Parse a boolean environment variable, rejecting values that are neither true nor false."""
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(
        f"{name} must be one of {sorted(_TRUE)} or {sorted(_FALSE - {''})}. "
        f"Received: {name}={value!r}"
    )


FAST: bool = _parse_flag("CNN_UTILS_FAST", os.environ.get("CNN_UTILS_FAST"))
"""True when ``CNN_UTILS_FAST=1``: small subsets and few epochs (tests, quick demos)."""

DEFAULT_SEED = 42


def by_mode(fast: T, full: T) -> T:
    """Return ``fast`` in FAST mode and ``full`` otherwise.

    Notebooks write every size that depends on the mode as ``by_mode(fast=..., full=...)`` so
    that both settings stand side by side.

    Args:
        fast: Value used when ``CNN_UTILS_FAST=1``.
        full: Value used otherwise.

    Returns:
        One of the two values.
    """
    return fast if FAST else full


def set_seed(seed: int = DEFAULT_SEED) -> int:
    """Seed Python, NumPy, TensorFlow and Keras so that a notebook tells the same story each run.

    Args:
        seed: Non-negative integer seed.

    Returns:
        The seed, for logging.

    Raises:
        ValueError: If ``seed`` is not a non-negative integer.
    """
    import keras  # Imported here: reading FAST must not pay for TensorFlow.

    from cnn_utils import _checks

    seed = _checks.integer("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)  # Python, NumPy and the backend (TensorFlow) generators.
    return seed


def cache_dir(create: bool = True) -> Path:
    """Return the folder where trained course models and other artefacts are cached.

    ``CNN_UTILS_CACHE`` if set, else ``~/.cache/cnn_utils``. Read on every call so that tests
    and CI can point it elsewhere at run time.

    Args:
        create: Create the folder if it does not exist.

    Returns:
        The cache folder as an absolute path.

    Raises:
        ValueError: A non-boolean ``create``.
        OSError: The folder cannot be created.
    """
    if not isinstance(create, (bool, np.bool_)):
        raise ValueError(f"create must be True or False. Received: create={create!r}")
    path = Path(os.environ.get("CNN_UTILS_CACHE") or "~/.cache/cnn_utils").expanduser().resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def use_shipped() -> bool:
    """Whether the trained-model cache may start from the weights shipped with the course.

    True unless ``CNN_UTILS_SHIPPED`` is false (``0``, ``false``, ``no``, ``off``): set it to
    train every course model from scratch (``make weights`` and the cold-start timings do).
    Read on every call.

    Raises:
        ValueError: ``CNN_UTILS_SHIPPED`` set to a value that is neither true nor false.
    """
    value = os.environ.get("CNN_UTILS_SHIPPED")
    return True if value is None else _parse_flag("CNN_UTILS_SHIPPED", value)


def use_widgets() -> bool:
    """Whether the notebooks' live controls (``ipywidgets``) are shown after their static twins.

    True unless ``CNN_UTILS_WIDGETS`` is false (``0``, ``false``, ``no``, ``off``). ``make book``
    and ``make slides`` set it to 0: a static page has no widget front-end, so it shows the
    static twin alone. Read on every call.

    Raises:
        ValueError: ``CNN_UTILS_WIDGETS`` set to a value that is neither true nor false.
    """
    value = os.environ.get("CNN_UTILS_WIDGETS")
    return True if value is None else _parse_flag("CNN_UTILS_WIDGETS", value)


def keras_home() -> Path:
    """Return the folder where Keras caches downloads: ``$KERAS_HOME`` or ``~/.keras``.

    This mirrors Keras' own rule (which falls back to ``/tmp/.keras`` when the home folder is not
    writable). Datasets live in its ``datasets`` subfolder.
    """
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"]).expanduser().resolve()
    home = Path("~").expanduser()
    base = home if os.access(home, os.W_OK) else Path("/tmp")
    return (base / ".keras").resolve()
