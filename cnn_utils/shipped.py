"""The shipped weights: the course's trained models in the package, and their manifest.

One job: read, check and write ``shipped/manifest.json``, the table of the weights files that
ship with the package (one ``<stem>.weights.h5`` per model, with its SHA-256, size, the cache
key of the architecture and settings that trained it, and the notebook mode). The trained-model
cache (:mod:`cnn_utils.training`) loads from here on a cache miss; the environment report
(:mod:`cnn_utils.doctor`) and ``tools/weights.py`` verify the files. ``make weights`` rewrites
the folder.

The manifest is read once per call (:func:`load`) and checked entry by entry: a missing,
empty, truncated or foreign manifest and every malformed entry become one sentence in
:attr:`Manifest.problems` (with :data:`FIX`), and only the valid entries are used. A broken
manifest therefore never stops training: the cache trains the model instead, saying why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path

__all__ = [
    "FIX",
    "MANIFEST_FORMAT",
    "SHIPPED_BUDGET_BYTES",
    "SHIPPED_DIR",
    "Manifest",
    "entry_for",
    "load",
    "problems",
    "read_manifest",
    "sha256",
    "unverified",
    "verified",
    "write_manifest",
]

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
"""Folder of the shipped weights (``<stem>.weights.h5``) and their ``manifest.json``."""

SHIPPED_BUDGET_BYTES = 30_000_000
"""The most the shipped weights may weigh together (checked by the tests and ``make weights``)."""

MANIFEST_FORMAT = 1
"""Layout version of ``manifest.json`` (and of the cache's JSON sidecars)."""

FIX = (
    "restore the folder with `git checkout cnn_utils/shipped` (or reinstall the package), "
    "or rebuild it with `make weights`"
)
"""What to do about a broken manifest or shipped file (one sentence, for messages)."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The manifest as read once: its valid entries and one sentence per problem.

    Attributes:
        path: The ``manifest.json`` that was read.
        entries: stem -> entry, the entries that passed every check.
        bad: stem -> the problem of each entry that was skipped.
        error: The problem of the whole file (missing, truncated, foreign), or ``None``.
        problems: Every problem found (the whole file's, then each bad entry's), as sentences.
    """

    path: Path
    entries: dict[str, dict]
    bad: dict[str, str]
    error: str | None
    problems: tuple[str, ...]


def _folder(folder) -> Path:
    return SHIPPED_DIR if folder is None else Path(folder)


def sha256(path) -> str:
    """The SHA-256 of a file, as a hex string (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry_problem(stem, entry) -> str | None:
    """Why the manifest entry ``stem`` cannot be used, or ``None`` when it is well formed."""
    if not isinstance(entry, dict):
        return f"is not a table (found {type(entry).__name__})"
    missing = [k for k in ("file", "sha256", "key", "mode", "info") if k not in entry]
    if missing:
        return f"lacks {', '.join(repr(k) for k in missing)}"
    if entry["file"] != f"{stem}.weights.h5":
        return f"names the file {entry['file']!r}, not {stem}.weights.h5 (another model's)"
    for field in ("sha256", "key"):
        if not isinstance(entry[field], str) or not _HEX64.match(entry[field]):
            return f"has a {field!r} that is not 64 hex digits ({entry[field]!r})"
    if entry["mode"] not in ("fast", "full"):
        return f"has mode {entry['mode']!r}, not 'fast' or 'full'"
    if not isinstance(entry["info"], dict):
        return "has an 'info' that is not a table"
    if not isinstance(entry.get("compile_config"), (dict, type(None))):
        return "has a 'compile_config' that is not a table"
    size = entry.get("bytes", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"has a 'bytes' that is not a file size ({size!r})"
    return None


def _read_table(path: Path) -> tuple[dict, str | None]:
    """The manifest's ``models`` table, or ``{}`` and the sentence saying why there is none."""
    if not path.parent.is_dir():
        return {}, f"the shipped-weights folder {path.parent} is missing"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, f"the shipped-weights manifest {path} is missing"
    except (OSError, UnicodeDecodeError) as error:
        return {}, f"the shipped-weights manifest {path} cannot be read ({error})"
    try:
        record = json.loads(text)
    except ValueError:
        return {}, f"the shipped-weights manifest {path} is empty, truncated or not JSON"
    if not isinstance(record, dict) or record.get("format") != MANIFEST_FORMAT:
        return {}, f"{path} is not a manifest of shipped weights (format {MANIFEST_FORMAT})"
    table = record.get("models", {})
    if not isinstance(table, dict):
        return {}, f"the 'models' of the shipped-weights manifest {path} is not a table"
    return table, None


def load(folder=None) -> Manifest:
    """Read and check the manifest once; never raises for its content.

    Args:
        folder: The shipped folder (default :data:`SHIPPED_DIR`).

    Returns:
        A :class:`Manifest`: the valid entries, the bad ones with their problem, and every
        problem as a sentence (a missing folder or manifest, an empty, truncated or foreign
        file, an entry without ``file`` or ``sha256``, an entry naming another model's file).
    """
    path = _folder(folder) / "manifest.json"
    table, whole = _read_table(path)
    entries, bad = {}, {}
    for stem, entry in table.items():
        problem = _entry_problem(stem, entry)
        if problem is None:
            entries[stem] = entry
        else:
            bad[stem] = f"the shipped-weights entry {stem!r} in {path} {problem}"
    found = ([whole] if whole else []) + list(bad.values())
    return Manifest(path=path, entries=entries, bad=bad, error=whole, problems=tuple(found))


def read_manifest(folder=None) -> dict[str, dict]:
    """The manifest's valid entries, stem -> entry (:func:`load` has the problems).

    Args:
        folder: The shipped folder (default :data:`SHIPPED_DIR`).
    """
    return dict(load(folder).entries)


def verified(entry: dict, folder=None) -> bool:
    """Whether the entry's weights file exists and has the manifest's SHA-256."""
    path = _folder(folder) / entry["file"]
    return path.is_file() and sha256(path) == entry["sha256"]


def unverified(folder=None) -> list[str]:
    """The stems of valid entries whose weights file is missing or differs (sorted)."""
    entries = load(folder).entries
    return sorted(stem for stem, entry in entries.items() if not verified(entry, folder))


def problems(folder=None) -> list[str]:
    """Every problem of the shipped folder, one sentence each: the manifest, then the files.

    Args:
        folder: The shipped folder (default :data:`SHIPPED_DIR`).
    """
    manifest = load(folder)
    found = list(manifest.problems)
    for stem in sorted(manifest.entries):
        entry = manifest.entries[stem]
        path = _folder(folder) / entry["file"]
        if not path.is_file():
            found.append(f"the shipped weights {path} are missing")
        elif sha256(path) != entry["sha256"]:
            found.append(f"the shipped weights {path} differ from their manifest (sha256)")
    return found


def entry_for(stem: str, key: str, folder=None) -> dict | None:
    """The valid manifest entry of ``stem`` if it was trained with the same cache ``key``."""
    entry = load(folder).entries.get(stem)
    return entry if entry is not None and entry["key"] == key else None


def write_manifest(table: dict[str, dict], folder=None) -> None:
    """Write ``table`` (stem -> entry) as the folder's manifest, sorted, one key per line.

    Written to a temporary file and renamed into place, so a crash leaves the old manifest.
    """
    manifest = {"format": MANIFEST_FORMAT, "models": dict(sorted(table.items()))}
    text = json.dumps(manifest, indent=1, sort_keys=True, allow_nan=True)
    path = _folder(folder) / "manifest.json"
    temporary = path.with_name(f".manifest.json.tmp-{os.getpid()}")
    try:
        temporary.write_text(text + "\n", encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
