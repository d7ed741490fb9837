"""The environment report: what the notebooks need, whether this machine has it, and the fix.

One job: :func:`report` checks Python, TensorFlow and Keras against the tested versions, the
GPU, the mode (FAST or default), the trained-model cache, the shipped weights, the Keras cache
(``KERAS_HOME``) and the datasets the notebooks use, and whether this is Colab. Each row's
``found`` is a sentence. It checks what it reports: a probe file is written in each folder,
the free space is measured, and every parent of a folder must be a folder. Nothing is
downloaded or trained, and TensorFlow's C++ start-up lines are kept off the screen. It is the
package's top floor: it reads every other module and none imports it. From a shell:
``python -m cnn_utils.doctor``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["MIN_FREE_BYTES", "NOTEBOOK_DATASETS", "OLDEST_PYTHON", "PINNED", "report"]

OLDEST_PYTHON = (3, 11)
"""The oldest Python on which the pinned environment installs (``requires-python``, CI)."""

PINNED = {"tensorflow": "2.21", "keras": "3.15"}
"""The versions the course is tested with (major.minor; requirements.txt pins the patch)."""

NOTEBOOK_DATASETS = ("fashion_mnist", "mnist")
"""The datasets the notebooks load (the only ones the report checks)."""

MIN_FREE_BYTES = 200_000_000
"""Free space a cache folder needs (the course's models and datasets take about 100 MB)."""

_NATIVE_LOG = re.compile(r"^(?:[IWEF]\d{4} |WARNING: All log messages before absl::)")


def _row(check: str, status: str, found: str, fix: str = "") -> dict:
    return {"check": check, "status": status, "found": found, "fix": fix}


@contextlib.contextmanager
def _quiet_native_logs():
    """Drop the C++ log lines (absl: ``I0000 ...``, ``E0000 ...``) written to file descriptor 2.

    Such lines are written before absl's logging is initialised, whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says; anything else written to stderr meanwhile is passed on.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some notebook front-ends)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
    kept = [line for line in text.splitlines() if line and not _NATIVE_LOG.match(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


# The package's modules import TensorFlow, whose C++ start-up lines would print here.
with _quiet_native_logs():
    from cnn_utils import _checks, config, data, shipped  # noqa: E402


def _python_row() -> dict:
    found = platform.python_version()
    oldest = ".".join(map(str, OLDEST_PYTHON))
    if sys.version_info >= OLDEST_PYTHON:
        return _row("Python", "ok", f"Python {found} is recent enough ({oldest} or newer).")
    return _row(
        "Python",
        "problem",
        f"Python {found} is too old: the course needs {oldest} or newer.",
        f"Python {oldest} or newer: `make setup PYTHON=python{oldest}`",
    )


def _package_rows() -> list[dict]:
    """TensorFlow and Keras: installed, and the tested major.minor version."""
    rows = []
    for package, wanted in PINNED.items():
        try:
            version = __import__(package).__version__
        except ImportError:
            fix = "`make setup` (or pip install -r requirements.txt)"
            rows.append(_row(package, "problem", f"{package} is not installed.", fix))
            continue
        if version.startswith(wanted + ".") or version == wanted:
            rows.append(_row(package, "ok", f"{package} {version} is the tested version."))
        else:
            found = f"{package} {version} is installed; the course is tested with {wanted}.x."
            rows.append(_row(package, "note", found, "`make setup` installs the tested version"))
    return rows


def _gpu_rows() -> list[dict]:
    try:
        import tensorflow as tf
    except ImportError:
        return []
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return [_row("GPU", "ok", f"TensorFlow sees {', '.join(g.name for g in gpus)}.")]
    fix = "Linux with an NVIDIA GPU: `make setup-gpu`; else CNN_UTILS_FAST=1 for quick runs"
    return [_row("GPU", "note", "No GPU was found: training runs on the CPU.", fix)]


def _mode_row() -> dict:
    if config.FAST:
        return _row("mode", "ok", "FAST mode (CNN_UTILS_FAST=1): small subsets and few epochs.")
    return _row("mode", "ok", "Default mode: the full datasets and epochs.")


def _folder_problem(path: Path, what: str) -> tuple[str, str] | None:
    """Why ``path`` cannot be a writable folder with room: ``(kind, sentence)``, or ``None``.

    The kinds are ``"file"``, ``"below a file"``, ``"read-only"`` (a probe file cannot be
    written) and ``"full"``.

    A folder that does not exist yet is judged by its nearest existing parent (it is created
    on first use).
    """
    if path.exists() and not path.is_dir():
        return "file", f"{what} {path} is a file, not a folder."
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return "below a file", f"{what} {path} lies below the file {existing}: no folder there."
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".cnn-utils-doctor-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        return "read-only", f"{what} {path} is not writable ({error.strerror or error})."
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        return "full", f"{what} {path} has only {free / 1e6:,.0f} MB free (needs ~200 MB)."
    return None


def _free(path: Path) -> str:
    existing = path
    while not existing.exists():
        existing = existing.parent
    return f"{shutil.disk_usage(existing).free / 1e9:,.1f} GB free"


def _cache_row() -> dict:
    cache = config.cache_dir(create=False)
    problem = _folder_problem(cache, "The model cache")
    if problem is not None:
        fix = "set CNN_UTILS_CACHE to a writable folder with room (e.g. /tmp/cnn_utils)"
        return _row("model cache", "problem", problem[1], fix)
    count = len(list(cache.glob("*.keras"))) if cache.exists() else 0
    found = f"The model cache {cache} is writable ({count} trained models, {_free(cache)})."
    return _row("model cache", "ok", found)


def _shipped_row() -> dict:
    """The weights shipped with the course: every problem of the manifest and of the files."""
    problems = shipped.problems()
    table = shipped.read_manifest()
    if problems:
        found = f"{len(problems)} problem(s) in the shipped weights: " + "; ".join(problems)
        return _row("shipped weights", "problem", found, shipped.FIX)
    modes = " and ".join(sorted({entry["mode"] for entry in table.values()})) or "no"
    state = (
        "in use" if config.use_shipped() else "not in use (CNN_UTILS_SHIPPED=0: every model trains)"
    )
    found = f"shipped weights: {len(table)} models ({modes} mode), all hashes match; {state}."
    return _row("shipped weights", "ok", found)


_LABELS = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST"}


def _dataset_row(name: str) -> dict:
    """One dataset the notebooks use: cached, partly cached, or damaged (hash differs)."""
    label = _LABELS.get(name, name)
    files = data.expected_files(name)
    present = [path for path in files if Path(path).is_file()]
    hashes = dict(zip(files, data.DATASETS[name].sha256, strict=False))
    damaged = [p for p in present if hashes.get(p) and shipped.sha256(p) != hashes[p]]
    check = f"dataset {name}"
    if damaged:
        found = f"{label}: cached file(s) differ from the published ones: {', '.join(damaged)}."
        fix = f"delete only the damaged file(s) (rm {' '.join(damaged)}); Keras fetches them again"
        return _row(check, "problem", found, fix)
    if len(present) == len(files):
        return _row(check, "ok", f"{label} is cached ({len(files)} file(s), hashes match).")
    found = f"{label}: {len(present)} of {len(files)} files cached; downloaded on first use."
    return _row(check, "note", found, "offline: seed KERAS_HOME (README, 'Offline use')")


def _keras_home_rows() -> list[dict]:
    """The Keras cache (a writable folder with room) and the datasets the notebooks use."""
    datasets = [_dataset_row(name) for name in NOTEBOOK_DATASETS]
    if not os.environ.get("KERAS_HOME", "unset").strip():
        found = "KERAS_HOME is set but empty, so Keras caches downloads in the current folder."
        fix = "unset KERAS_HOME, or set it to a folder before starting Python"
        return [_row("KERAS_HOME", "problem", found, fix), *datasets]
    home = config.keras_home()
    problem = _folder_problem(home, "KERAS_HOME")
    if problem is None:
        found = f"Keras caches downloads in {home} (writable, {_free(home)})."
        return [_row("KERAS_HOME", "ok", found), *datasets]
    kind, found = problem
    fix = "point KERAS_HOME at a writable folder with room before starting Python"
    if kind == "read-only":  # the files may be good: copy them, never delete them
        found += " Keras then ignores it and downloads into /tmp/.keras instead."
        if all(row["status"] == "ok" for row in datasets):
            found += " Its datasets are intact."
        fix = (
            f"copy it to a writable folder and point KERAS_HOME there before starting Python: "
            f"cp -r {home} /tmp/keras_home && export KERAS_HOME=/tmp/keras_home"
        )
    return [_row("KERAS_HOME", "problem", found, fix), *datasets]


def _rows() -> list[dict]:
    rows = [_python_row(), *_package_rows(), *_gpu_rows(), _mode_row(), _cache_row()]
    rows += [_shipped_row(), *_keras_home_rows()]
    colab = "google.colab" in sys.modules
    rows.append(_row("Colab", "ok", "Running on Colab." if colab else "Not running on Colab."))
    return rows


def report(*, verbose: int = 1):
    """Report what the notebooks need and whether this environment has it, with the fix.

    Args:
        verbose: 1 prints the table (and each fix), 0 is silent.

    Returns:
        A pandas DataFrame with one row per check: ``check``, ``status`` ("ok", "note" or
        "problem"), ``found`` (a sentence) and ``fix``.

    Raises:
        ValueError: A bad ``verbose``.
    """
    import pandas as pd

    verbose = _checks.integer("verbose", verbose, minimum=0)
    with _quiet_native_logs():
        rows = _rows()
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    table = pd.DataFrame(rows, columns=["check", "status", "found", "fix"])
    if verbose:
        with pd.option_context("display.max_colwidth", 160, "display.width", 220):
            print(table.drop(columns="fix").to_string(index=False))
        for row in rows:
            if row["status"] != "ok" and row["fix"]:
                print(f"- {row['check']}: {row['fix']}")
    return table


if __name__ == "__main__":
    report()
