"""Notebook times against an older version of the same notebooks, the runs taken in turn.

This machine's speed drifts by up to a fifth within an hour, so two single runs taken apart do
not compare. This script checks ``--against`` (a commit) out into a temporary git worktree and
runs each notebook alternately from this checkout and from that one, ``--runs`` times each, in
FAST mode from the fresh state of ``notebook_times.py`` (empty cache, shipped weights), each
run importing its own checkout's ``cnn_utils``. It prints each side's median and the ratio
now/then of every pair, and merges them into ``benchmarks/results/paired_times.json``.

Run (about 2 x runs x the notebook's time)::

    KERAS_HOME=... python benchmarks/paired_times.py --against 277cc68 notebooks/06_*.ipynb
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "paired_times.json"
_spec = importlib.util.spec_from_file_location(
    "notebook_times", ROOT / "benchmarks" / "notebook_times.py"
)
notebook_times = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebook_times)


def seconds(tree: Path, name: str) -> float:
    """Wall seconds of one FAST run of ``tree``'s notebook ``name``, fresh state, own package."""
    with tempfile.TemporaryDirectory() as scratch:
        env = dict(os.environ, CNN_UTILS_FAST="1", CNN_UTILS_STANDIN_WEIGHTS="1")
        env.update(CNN_UTILS_SHIPPED="1", CNN_UTILS_CACHE=str(Path(scratch) / "cache"))
        env.update(PYTHONPATH=str(tree))  # the kernel imports this checkout's cnn_utils
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        took, passed = notebook_times.run(tree / "notebooks" / name, env)
    if not passed:
        raise SystemExit(f"{name} failed in {tree}")
    return round(took, 1)


def compare(old: Path, name: str, runs: int) -> dict:
    """``runs`` pairs (now, then) of one notebook, taken in turn."""
    now, then = [], []
    for _ in range(runs):
        now.append(seconds(ROOT, name))
        then.append(seconds(old, name))
    ratios = [round(a / b, 3) for a, b in zip(now, then, strict=True)]
    return {
        "now": now,
        "then": then,
        "median_now": statistics.median(now),
        "median_then": statistics.median(then),
        "ratios": ratios,
    }


def _short_hash(revision: str) -> str:
    """The abbreviated commit hash of ``revision`` in this repository."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=ROOT, check=True, capture_output=True,
        text=True,
    )  # fmt: skip
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the older commit")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args()
    if args.runs < 1:
        raise SystemExit(f"--runs must be at least 1. Received: {args.runs}")
    commit, head = _short_hash(args.against), _short_hash("HEAD")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    with tempfile.TemporaryDirectory() as scratch:
        old = Path(scratch) / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), commit], cwd=ROOT, check=True
        )
        try:
            for notebook in args.notebooks:
                found = compare(old, notebook.name, args.runs)
                found.update(against=commit, head=head, date=datetime.now(UTC).date().isoformat())
                results[notebook.name] = found
                print(
                    f"{notebook.name}: now {found['median_now']} s, then {found['median_then']} s "
                    f"(medians of {args.runs}); now/then pair by pair {found['ratios']}",
                    flush=True,
                )
                RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False
            )


if __name__ == "__main__":
    main()
