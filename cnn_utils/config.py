"""Run-time configuration: the FAST switch, seeding, where caches live, the environment doctor.

``FAST`` is read once, at import, from the environment variable ``CNN_UTILS_FAST``: notebooks
use smaller subsets, fewer epochs and fewer optimisation steps when it is true (the test suite
sets it), and the full settings otherwise (a student's or instructor's lab session).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TypeVar

import numpy as np

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


# ---------------------------------------------------------------------------------------------
# The environment doctor
# ---------------------------------------------------------------------------------------------

PINNED = {"tensorflow": "2.21", "keras": "3.15"}
"""The versions the course is tested with (major.minor; requirements.txt pins the patch)."""


def _row(check: str, status: str, found: str, fix: str = "") -> dict:
    return {"check": check, "status": status, "found": found, "fix": fix}


def _writable(path: Path) -> bool:
    probe = path if path.exists() else path.parent
    return os.access(probe, os.W_OK)


def _shipped_row() -> dict:
    """The doctor's row on the weights shipped with the course (files present, hashes)."""
    from cnn_utils import training

    try:
        table = training._manifest(training.SHIPPED_DIR)
    except ValueError as error:
        return _row("shipped weights", "problem", str(error), "`git checkout cnn_utils/shipped`")
    bad = [
        stem
        for stem, entry in table.items()
        if not (training.SHIPPED_DIR / entry["file"]).exists()
        or training._sha256(training.SHIPPED_DIR / entry["file"]) != entry["sha256"]
    ]
    modes = ", ".join(sorted({entry["mode"] for entry in table.values()})) or "none"
    if bad:
        return _row(
            "shipped weights",
            "problem",
            f"{len(bad)} of {len(table)} files missing or changed: {', '.join(bad)}",
            "`git checkout cnn_utils/shipped` (or `make weights FAST=1` to rebuild them)",
        )
    state = "on" if use_shipped() else "off (CNN_UTILS_SHIPPED=0: every model trains)"
    return _row("shipped weights", "ok", f"{len(table)} models ({modes}), hashes match; {state}")


def doctor(*, verbose: int = 1):
    """Report what the notebooks need and whether this environment has it, with the fix.

    Checks Python, TensorFlow and Keras (against the tested versions), the GPU, the mode (FAST
    or default), the trained-model cache (folder, writable, models cached), the shipped
    weights (present, hashes as in their manifest), the Keras cache
    (``KERAS_HOME``: writable, which datasets are there) and whether this is Colab. Nothing is
    downloaded or trained.

    Args:
        verbose: 1 prints the table (and each fix), 0 is silent.

    Returns:
        A pandas DataFrame with one row per check: ``check``, ``status`` ("ok", "note" or
        "problem"), ``found`` and ``fix``.
    """
    import platform
    import sys

    import pandas as pd

    from cnn_utils import _checks

    verbose = _checks.integer("verbose", verbose, minimum=0)
    rows = []
    py = platform.python_version()
    rows.append(
        _row("Python", "ok", py)
        if sys.version_info >= (3, 10)
        else _row("Python", "problem", py, "Python 3.10 or newer: `make setup` with python3.11")
    )
    for package, wanted in PINNED.items():
        try:
            module = __import__(package)
            version = module.__version__
        except ImportError:
            rows.append(
                _row(
                    package,
                    "problem",
                    "not installed",
                    "`make setup` (or pip install -r requirements.txt)",
                )
            )
            continue
        same = version.startswith(wanted + ".") or version == wanted
        rows.append(
            _row(package, "ok", version)
            if same
            else _row(
                package,
                "note",
                f"{version} (tested: {wanted}.x)",
                "`make setup` installs the tested version",
            )
        )
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        rows.append(
            _row("GPU", "ok", ", ".join(g.name for g in gpus))
            if gpus
            else _row(
                "GPU",
                "note",
                "none: training runs on the CPU",
                "Linux with an NVIDIA GPU: `make setup-gpu`; else CNN_UTILS_FAST=1 for quick runs",
            )
        )
    except ImportError:
        pass
    rows.append(
        _row(
            "mode",
            "ok",
            "FAST (CNN_UTILS_FAST=1): small subsets, few epochs"
            if FAST
            else "default (full datasets and epochs)",
        )
    )
    cache = cache_dir(create=False)
    models = sorted(cache.glob("*.keras")) if cache.exists() else []
    if not _writable(cache):
        rows.append(
            _row(
                "model cache",
                "problem",
                f"{cache} is not writable",
                "point CNN_UTILS_CACHE at a writable folder",
            )
        )
    else:
        rows.append(_row("model cache", "ok", f"{cache} ({len(models)} trained models cached)"))
    rows.append(_shipped_row())
    home = keras_home()
    if not _writable(home):
        rows.append(
            _row(
                "KERAS_HOME",
                "problem",
                f"{home} is not writable (Keras then ignores it)",
                "copy it to a writable folder and export KERAS_HOME before starting Python",
            )
        )
    else:
        rows.append(_row("KERAS_HOME", "ok", str(home)))
    from cnn_utils import data

    for name in sorted(data.DATASETS):
        files = data.expected_files(name)
        present = [f for f in files if Path(f).exists()]
        if len(present) == len(files):
            rows.append(_row(f"dataset {name}", "ok", "cached"))
        else:
            rows.append(
                _row(
                    f"dataset {name}",
                    "note",
                    f"{len(present)} of {len(files)} files cached: downloaded on first use",
                    "offline: seed KERAS_HOME (README, 'Offline use')",
                )
            )
    colab = "google.colab" in sys.modules
    rows.append(_row("Colab", "ok", "yes" if colab else "no"))
    table = pd.DataFrame(rows, columns=["check", "status", "found", "fix"])
    if verbose:
        with pd.option_context("display.max_colwidth", 120, "display.width", 200):
            print(table.drop(columns="fix").to_string(index=False))
        for row in rows:
            if row["status"] != "ok" and row["fix"]:
                print(f"- {row['check']}: {row['fix']}")
    return table
