"""How long does each notebook take? Each one alone, top to bottom, in a given cache state.

Runs every notebook (or the ones named) on its own with nbval, as ``make test`` does, and
times the whole process. Three cache states:

* ``warm``: the model cache already holds every model (run any state first);
* ``fresh``: an empty cache with the shipped weights on, what a fresh clone gets;
* ``cold``: an empty cache with the shipped weights off (``CNN_UTILS_SHIPPED=0``): the
  notebook trains every model it loads, alone.

``--mode fast`` sets ``CNN_UTILS_FAST=1``; ``--mode full`` is the default mode of a lab session
(hours on a CPU for the notebooks that train). Results are merged into
``benchmarks/results/notebook_times.json``; ``--write-cells`` then writes the default-mode
time into the first cell of each notebook as one line for the student (``**Time:** about 4
minutes on a 2-core laptop CPU.``); per-mode numbers go in each "For instructors" section.

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
MARK = "**Time"


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


def student_time(seconds: float) -> str:
    """The first cell's one line for the student: the default mode on a fresh clone, rounded."""
    if seconds < 75:
        about = "about a minute"
    elif seconds < 105:
        about = "about a minute and a half"
    else:
        about = f"about {round(seconds / 60)} minutes"
    return f"{MARK}:** {about} on a 2-core laptop CPU."


def write_cells(results: dict) -> None:
    """Write each notebook's default-mode time into its first cell, as one line for the student.

    The line (``**Time:** about 4 minutes on a 2-core laptop CPU.``) replaces the cell's
    existing time line (one that starts with ``**Time`` or ``*Running time``) where it stands;
    per-mode numbers belong in the notebook's "For instructors" section, not here.
    """
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        entry = results.get("full", {}).get("fresh", {}).get("times", {}).get(path.name)
        if not entry or not entry["passed"]:
            continue
        line = student_time(entry["seconds"])
        nb = nbformat.read(path, as_version=4)
        lines = "".join(nb.cells[0]["source"]).split("\n")
        at = [i for i, x in enumerate(lines) if x.startswith((MARK, "*Running time"))]
        if at:
            lines = [line if i == at[0] else x for i, x in enumerate(lines) if i not in at[1:]]
        else:
            link = [x for x in lines if x.startswith("[Open in Colab]")]  # stays last
            lines = [x for x in lines if x not in link]
            while lines and lines[-1] == "":
                lines.pop()
            lines = [*lines, "", line, *(["", *link] if link else [])]
        nb.cells[0]["source"] = "\n".join(lines)
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
