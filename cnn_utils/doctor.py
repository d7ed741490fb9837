"""The environment report: what the notebooks need, whether this machine has it, and the fix.

One job: :func:`report` checks Python, TensorFlow and Keras against the tested versions, the
GPU, the mode (FAST or default), the trained-model cache, the shipped weights, the Keras cache
(``KERAS_HOME``) and its datasets, and whether this is Colab. Nothing is downloaded or trained.
It is the package's top floor: it reads every other module and none imports it. From a shell:
``python -m cnn_utils.doctor``.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from cnn_utils import _checks, config, data, shipped

__all__ = ["OLDEST_PYTHON", "PINNED", "report"]

OLDEST_PYTHON = (3, 11)
"""The oldest Python on which the pinned environment installs (``requires-python``, CI)."""

PINNED = {"tensorflow": "2.21", "keras": "3.15"}
"""The versions the course is tested with (major.minor; requirements.txt pins the patch)."""


def _row(check: str, status: str, found: str, fix: str = "") -> dict:
    return {"check": check, "status": status, "found": found, "fix": fix}


def _writable(path: Path) -> bool:
    probe = path if path.exists() else path.parent
    return os.access(probe, os.W_OK)


def _python_row() -> dict:
    found = platform.python_version()
    if sys.version_info >= OLDEST_PYTHON:
        return _row("Python", "ok", found)
    oldest = ".".join(map(str, OLDEST_PYTHON))
    return _row(
        "Python", "problem", found, f"Python {oldest} or newer: `make setup PYTHON=python{oldest}`"
    )


def _package_rows() -> list[dict]:
    """TensorFlow and Keras: installed, and the tested major.minor version."""
    rows = []
    for package, wanted in PINNED.items():
        try:
            version = __import__(package).__version__
        except ImportError:
            fix = "`make setup` (or pip install -r requirements.txt)"
            rows.append(_row(package, "problem", "not installed", fix))
            continue
        if version.startswith(wanted + ".") or version == wanted:
            rows.append(_row(package, "ok", version))
        else:
            fix = "`make setup` installs the tested version"
            rows.append(_row(package, "note", f"{version} (tested: {wanted}.x)", fix))
    return rows


def _gpu_rows() -> list[dict]:
    try:
        import tensorflow as tf
    except ImportError:
        return []
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return [_row("GPU", "ok", ", ".join(g.name for g in gpus))]
    fix = "Linux with an NVIDIA GPU: `make setup-gpu`; else CNN_UTILS_FAST=1 for quick runs"
    return [_row("GPU", "note", "none: training runs on the CPU", fix)]


def _mode_row() -> dict:
    if config.FAST:
        return _row("mode", "ok", "FAST (CNN_UTILS_FAST=1): small subsets, few epochs")
    return _row("mode", "ok", "default (full datasets and epochs)")


def _cache_row() -> dict:
    cache = config.cache_dir(create=False)
    if not _writable(cache):
        fix = "point CNN_UTILS_CACHE at a writable folder"
        return _row("model cache", "problem", f"{cache} is not writable", fix)
    models = sorted(cache.glob("*.keras")) if cache.exists() else []
    return _row("model cache", "ok", f"{cache} ({len(models)} trained models cached)")


def _shipped_row() -> dict:
    """The weights shipped with the course: every file present, hashes as in the manifest."""
    try:
        table = shipped.read_manifest()
        bad = shipped.unverified()
    except ValueError as error:
        return _row("shipped weights", "problem", str(error), "`git checkout cnn_utils/shipped`")
    if bad:
        return _row(
            "shipped weights",
            "problem",
            f"{len(bad)} of {len(table)} files missing or changed: {', '.join(bad)}",
            "`git checkout cnn_utils/shipped` (or `make weights FAST=1` to rebuild them)",
        )
    modes = ", ".join(sorted({entry["mode"] for entry in table.values()})) or "none"
    state = "on" if config.use_shipped() else "off (CNN_UTILS_SHIPPED=0: every model trains)"
    return _row("shipped weights", "ok", f"{len(table)} models ({modes}), hashes match; {state}")


def _keras_home_rows() -> list[dict]:
    """The Keras cache (writable) and which datasets it holds."""
    home = config.keras_home()
    if _writable(home):
        rows = [_row("KERAS_HOME", "ok", str(home))]
    else:
        fix = "copy it to a writable folder and export KERAS_HOME before starting Python"
        rows = [
            _row("KERAS_HOME", "problem", f"{home} is not writable (Keras then ignores it)", fix)
        ]
    for name in sorted(data.DATASETS):
        files = data.expected_files(name)
        present = [f for f in files if Path(f).exists()]
        if len(present) == len(files):
            rows.append(_row(f"dataset {name}", "ok", "cached"))
        else:
            found = f"{len(present)} of {len(files)} files cached: downloaded on first use"
            fix = "offline: seed KERAS_HOME (README, 'Offline use')"
            rows.append(_row(f"dataset {name}", "note", found, fix))
    return rows


def report(*, verbose: int = 1):
    """Report what the notebooks need and whether this environment has it, with the fix.

    Args:
        verbose: 1 prints the table (and each fix), 0 is silent.

    Returns:
        A pandas DataFrame with one row per check: ``check``, ``status`` ("ok", "note" or
        "problem"), ``found`` and ``fix``.

    Raises:
        ValueError: A bad ``verbose``.
    """
    import pandas as pd

    verbose = _checks.integer("verbose", verbose, minimum=0)
    rows = [_python_row(), *_package_rows(), *_gpu_rows(), _mode_row(), _cache_row()]
    rows += [_shipped_row(), *_keras_home_rows()]
    rows.append(_row("Colab", "ok", "yes" if "google.colab" in sys.modules else "no"))
    table = pd.DataFrame(rows, columns=["check", "status", "found", "fix"])
    if verbose:
        with pd.option_context("display.max_colwidth", 120, "display.width", 200):
            print(table.drop(columns="fix").to_string(index=False))
        for row in rows:
            if row["status"] != "ok" and row["fix"]:
                print(f"- {row['check']}: {row['fix']}")
    return table


if __name__ == "__main__":
    report()
