"""Ship the course's trained models: ``make weights`` runs this after the notebooks.

Usage::

    python tools/weights.py collect CACHE_FOLDER --mode fast|full   # ship what the cache holds
    python tools/weights.py collect CACHE_FOLDER --mode full --add  # ...keeping the others
    python tools/weights.py collect CACHE_FOLDER --mode full --source benchmarks  # a benchmark's
    python tools/weights.py check                                   # hashes, sizes, budget

``make weights`` (``FAST=1`` for the FAST set) runs every notebook with an empty cache folder
and ``CNN_UTILS_SHIPPED=0``, so each model a notebook loads is trained from scratch, then
collects that folder into ``cnn_utils/shipped/`` (weights only, with sha256, cache key and the
training record in ``manifest.json``). Each entry records who loads it (``--source``: the
notebooks, or a benchmark such as ``benchmarks/adversarial_training.py``); a collect replaces
only the entries of its own mode and source, so ``make weights`` keeps the benchmark's model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnn_utils import shipped, training


def collect(cache_folder: Path, mode: str, add: bool = False, source: str = "notebooks") -> int:
    """Ship every model of ``cache_folder`` as ``mode`` from ``source``; check; the exit code."""
    table = training.ship_cached_models(cache_folder, mode, keep=add, source=source)
    for stem, entry in table.items():
        if entry["mode"] == mode:
            accuracy = entry["info"].get("test_accuracy")
            shown = f"{accuracy:.4f}" if isinstance(accuracy, float) else "-"
            print(f"shipped {stem}: {entry['bytes'] / 1e6:.2f} MB, test accuracy {shown}")
    return check()


def check() -> int:
    """Check the manifest, the shipped files and the budget (what the doctor checks); exit code."""
    table = shipped.load().entries
    problems = shipped.problems()
    total = sum(entry["bytes"] for entry in table.values() if isinstance(entry.get("bytes"), int))
    modes = sorted({entry["mode"] for entry in table.values()})
    print(f"{len(table)} shipped models ({', '.join(modes) or 'none'}), {total / 1e6:.2f} MB")
    if total > shipped.SHIPPED_BUDGET_BYTES:
        problems.append(f"{total / 1e6:.1f} MB is over the {shipped.SHIPPED_BUDGET_BYTES} budget")
    for problem in problems:
        print("problem:", problem, file=sys.stderr)
    return 1 if problems else 0


def main() -> int:
    """Parse the command line and run a subcommand."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("collect", help="ship every model of a cache folder")
    one.add_argument("cache_folder", type=Path)
    one.add_argument("--mode", choices=("fast", "full"), required=True)
    one.add_argument(
        "--add", action="store_true", help="keep the shipped models the folder does not hold"
    )
    one.add_argument(
        "--source",
        choices=("notebooks", "benchmarks"),
        default="notebooks",
        help="who loads these models (a collect replaces only its own source's entries)",
    )
    sub.add_parser("check", help="check the shipped files against the manifest")
    args = parser.parse_args()
    if args.command == "collect":
        return collect(args.cache_folder, args.mode, args.add, args.source)
    return check()


if __name__ == "__main__":
    sys.exit(main())
