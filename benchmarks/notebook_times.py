"""How long does each notebook take? Each one alone, top to bottom, in a given cache state.

Runs every notebook (or the ones named) on its own with nbval, as ``make test`` does, and
times the whole process. Three cache states:

* ``warm``: the model cache already holds every model (run any state first);
* ``fresh``: an empty cache with the shipped weights on, what a fresh clone gets;
* ``cold``: an empty cache with the shipped weights off (``CNN_UTILS_SHIPPED=0``): the
  notebook trains every model it loads, alone.

``--mode fast`` sets ``CNN_UTILS_FAST=1``; ``--mode full`` is the default mode of a lab session
(hours on a CPU for the notebooks that train). Results are merged into
``benchmarks/results/notebook_times.json``; ``--write-cells`` then writes the measured times
into the first cell of each notebook (the line that starts with ``**Time**``).

Run (FAST: about 6 minutes warm, 15 cold, on 2 CPU cores)::

    KERAS_HOME=... python benchmarks/notebook_times.py --mode fast --state fresh
    KERAS_HOME=... python benchmarks/notebook_times.py --mode fast --state warm --write-cells
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "notebook_times.json"
NBVAL = ["--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider", "-q"]
MARK = "**Time**"


def section_seconds(notebook: Path, junit: Path) -> dict[str, float]:
    """Seconds to run each numbered section from its heading: the setup cells plus its own."""
    import importlib.util
    import xml.etree.ElementTree as ET

    spec = importlib.util.spec_from_file_location("jump_in", ROOT / "tools" / "jump_in.py")
    jump_in = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(jump_in)
    cell_seconds = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        if name.startswith("Cell "):
            cell_seconds[int(name.split()[1])] = float(case.get("time", 0.0))
    parts, first = [], 0
    for title, sources in jump_in.sections(notebook):
        cells = range(first, first + len(sources))
        parts.append((title, sum(cell_seconds.get(i, 0.0) for i in cells)))
        first += len(sources)
    setup = parts[0][1]
    return {title: round(setup + seconds, 1) for title, seconds in parts[1:]}


def run(notebook: Path, env: dict, junit: Path | None = None) -> tuple[float, bool]:
    """Seconds for nbval to run one notebook, and whether it passed."""
    start = time.perf_counter()
    extra = [f"--junitxml={junit}"] if junit is not None else []
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(notebook), *NBVAL, *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout[-3000:], file=sys.stderr)
    return seconds, done.returncode == 0


def measure(mode: str, state: str, notebooks: list[Path]) -> dict:
    env = dict(os.environ, CNN_UTILS_FAST="1" if mode == "fast" else "0")
    env["CNN_UTILS_STANDIN_WEIGHTS"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    times = {}
    for notebook in notebooks:
        with tempfile.TemporaryDirectory() as scratch:
            if state in ("fresh", "cold"):
                env["CNN_UTILS_CACHE"] = str(Path(scratch) / "cache")
            env["CNN_UTILS_SHIPPED"] = "0" if state == "cold" else "1"
            junit = Path(scratch) / "junit.xml"
            seconds, passed = run(notebook, env, junit)
            times[notebook.name] = {
                "seconds": round(seconds, 1),
                "passed": passed,
                "date": datetime.now(UTC).date().isoformat(),
            }
            if junit.exists():  # seconds per section when jumping in
                times[notebook.name]["sections"] = section_seconds(notebook, junit)
        print(f"{mode:>4} {state:>5} {notebook.name:<40} {seconds:7.1f} s  passed={passed}")
    return times


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def write_cells(results: dict) -> None:
    """Write each notebook's measured times into its first cell (the ``**Time**`` line)."""
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):

        def get(mode, state, name=path.name):
            entry = results.get(mode, {}).get(state, {}).get("times", {}).get(name)
            return entry["seconds"] if entry and entry["passed"] else None

        def part(seconds, what):
            return f"{_fmt(seconds)} {what}" if seconds is not None else f"not measured {what}"

        dates = sorted(  # an entry's own date; older entries have only their run's date
            {
                entry.get("date", run["date"])[:10]
                for runs in results.values()
                for run in runs.values()
                if (entry := run["times"].get(path.name))
            }
        )
        measured = (
            f", {dates[0]} to {dates[-1]}" if len(dates) > 1 else f", {dates[0]}" if dates else ""
        )
        line = (
            f"{MARK} (2-core CPU{measured}, measured by `benchmarks/notebook_times.py`). FAST mode "
            f"(`CNN_UTILS_FAST=1`): {part(get('fast', 'warm'), 'with the models cached')} · "
            f"{part(get('fast', 'fresh'), 'on a fresh clone (shipped weights)')} · "
            f"{part(get('fast', 'cold'), 'training every model it uses from scratch')}. "
            "Default mode: "
            + (
                f"{part(get('full', 'fresh'), 'on a fresh clone (shipped weights)')}"
                + (
                    f" · {_fmt(get('full', 'warm'))} with the models cached"
                    if get("full", "warm") is not None
                    else ""
                )
                + "; training its models from scratch instead takes the training times the "
                "README lists (`cnn_utils/shipped/manifest.json`)."
                if get("full", "fresh") is not None
                else "not measured on this CPU yet."
            )
        )
        nb = nbformat.read(path, as_version=4)
        cell = nb.cells[0]
        text = "".join(cell["source"])
        lines = [x for x in text.split("\n") if not x.startswith(MARK)]
        link = [x for x in lines if x.startswith("[Open in Colab]")]  # stays last (tools/colab.py)
        lines = [x for x in lines if x not in link]
        while lines and lines[-1] == "":
            lines.pop()
        cell["source"] = "\n".join([*lines, "", line, *(["", *link] if link else [])])
        nbformat.write(nb, path)


def table(results: dict) -> str:
    """The README's table: one row per notebook, one column per measured (mode, state)."""
    columns = [
        (mode, state)
        for mode in ("fast", "full")
        for state in ("warm", "fresh", "cold")
        if results.get(mode, {}).get(state)
    ]
    names = sorted({n for m, st in columns for n in results[m][st]["times"]})
    head = "| notebook | " + " | ".join(f"{m.upper()} {st}" for m, st in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for name in names:
        cells = []
        for mode, state in columns:
            entry = results[mode][state]["times"].get(name)
            cells.append(
                "–"
                if entry is None
                else _fmt(entry["seconds"]) + ("" if entry["passed"] else " (failed)")
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("fast", "full"), default="fast")
    parser.add_argument("--state", choices=("warm", "fresh", "cold"), default=None)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--write-cells", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the README's table")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.state is not None:
        notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        times = measure(args.mode, args.state, [n.resolve() for n in notebooks])
        entry = results.setdefault(args.mode, {}).setdefault(args.state, {"times": {}})
        entry["times"].update(times)
        entry["date"] = datetime.now(UTC).isoformat(timespec="seconds")
        entry["cpu_count"] = os.cpu_count()
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if args.write_cells:
        write_cells(results)
    if args.table:
        print(table(results))


if __name__ == "__main__":
    main()
