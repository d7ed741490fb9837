"""The solutions notebooks, built around the student notebooks' exercise prompts (one source).

A solutions notebook is its own *head* (title, Colab cell, the setup that rebuilds what the
exercises use: every cell before its first ``### Exercise`` heading) followed by the student
notebook's exercises, from the first ``### Exercise`` heading to the end of the ``## Exercises``
section, where

* every answer cell (tagged ``exercise``: a skeleton; ``explain``: a Markdown cell for the
  student's explanation or defence) is replaced by the solution cells written for it: cells
  tagged ``solution`` whose metadata ``solution_for`` is the answer cell's id;
* every check cell (tagged ``check``) has each call ``exNN.check(...)`` turned into
  ``assert exNN.check(...).correct``, so that running the solutions proves every check passes;
* every other cell (the prompts) is the student's, unchanged.

``check`` lists every difference between the solutions notebooks and what this rule builds
(a prompt edited in one copy only, a missing solution); ``write`` rebuilds them, keeping each
head and each solution cell.

Usage::

    python tools/solutions.py check [NN ...]   # exit 1 and list the drift
    python tools/solutions.py write [NN ...]   # rebuild the exercise part of the solutions
"""

from __future__ import annotations

import ast
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ANSWER_TAGS = ("exercise", "explain")
HEADING = re.compile(r"^###\s+Exercise\s+\d+\.\d+")


def source(cell: dict) -> str:
    """A cell's source as one string."""
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else text


def tags(cell: dict) -> list[str]:
    """A cell's tags."""
    return list(cell.get("metadata", {}).get("tags", []))


def as_lines(text: str) -> list[str]:
    """A source string as nbformat's list of lines."""
    return text.splitlines(keepends=True)


def load(path: Path) -> dict:
    """A notebook as JSON."""
    return json.loads(path.read_text(encoding="utf-8"))


def dump(notebook: dict, path: Path) -> None:
    """Write a notebook the way the repository stores them."""
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def pair(number: str) -> tuple[Path, Path]:
    """The student notebook ``NN_*.ipynb`` and its solutions notebook."""
    (student,) = sorted(NOTEBOOKS.glob(f"{number}_*.ipynb"))
    return student, NOTEBOOKS / "solutions" / f"{student.stem}_solutions.ipynb"


def exercise_cells(student: dict) -> list[dict]:
    """The student's exercise cells: first ``### Exercise`` heading to the section's end."""
    cells = student["cells"]
    start = next(
        (
            i
            for i, c in enumerate(cells)
            if c["cell_type"] == "markdown" and HEADING.match(source(c))
        ),
        None,
    )
    if start is None:
        return []
    end = len(cells)
    for i in range(start + 1, len(cells)):
        text = source(cells[i])
        if cells[i]["cell_type"] == "markdown" and re.match(r"^##\s", text):
            end = i
            break
    return cells[start:end]


def head_cells(solutions: dict) -> list[dict]:
    """The solutions notebook's own cells: everything before its first exercise heading."""
    cells = solutions["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "markdown" and HEADING.match(source(cell)):
            return cells[:i]
    return [c for c in cells if "solution" not in tags(c)]


def solution_cells(solutions: dict) -> dict[str, list[dict]]:
    """The solution cells of a solutions notebook, by the id of the answer cell they replace."""
    found: dict[str, list[dict]] = {}
    for cell in solutions["cells"]:
        if "solution" in tags(cell):
            found.setdefault(cell.get("metadata", {}).get("solution_for", "?"), []).append(cell)
    return found


def asserted(check_source: str) -> str:
    """A check cell with every top-level call ``f(...)`` turned into ``assert f(...).correct``."""
    tree = ast.parse(check_source)
    lines = check_source.splitlines(keepends=True)
    pieces, last = [], 0
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            start = offsets[node.lineno - 1] + node.col_offset
            end = offsets[node.end_lineno - 1] + node.end_col_offset
            pieces.append(check_source[last:start])
            pieces.append(f"assert {check_source[start:end]}.correct")
            last = end
    pieces.append(check_source[last:])
    return "".join(pieces)


def build(student: dict, solutions: dict) -> tuple[list[dict], list[str]]:
    """The cells the solutions notebook should have, and the answer cells with no solution."""
    answers = solution_cells(solutions)
    cells = [copy.deepcopy(c) for c in head_cells(solutions)]
    missing = []
    for cell in exercise_cells(student):
        cell_tags = tags(cell)
        if any(tag in cell_tags for tag in ANSWER_TAGS):
            solved = answers.get(cell.get("id", ""), [])
            if not solved:
                missing.append(cell.get("id", "?"))
            cells.extend(copy.deepcopy(c) for c in solved)
            continue
        made = copy.deepcopy(cell)
        if "check" in cell_tags:
            made["source"] = as_lines(asserted(source(cell)))
        if made["cell_type"] == "code":
            made["outputs"], made["execution_count"] = [], None
        cells.append(made)
    return cells, missing


def _key(cell: dict) -> tuple[str, str]:
    return cell["cell_type"], source(cell)


def drift(student_path: Path, solutions_path: Path) -> list[str]:
    """Every difference between the solutions notebook and the one :func:`build` makes."""
    student, solutions = load(student_path), load(solutions_path)
    if not exercise_cells(student):
        return [f"{student_path.name}: no '### Exercise' heading"]
    expected, missing = build(student, solutions)
    problems = [f"{solutions_path.name}: no solution for answer cell {i}" for i in missing]
    actual = solutions["cells"]
    for index in range(max(len(expected), len(actual))):
        want = expected[index] if index < len(expected) else None
        have = actual[index] if index < len(actual) else None
        if want is None or have is None or _key(want) != _key(have):
            shown = (source(want or have or {}) or "").strip().splitlines()[:1]
            problems.append(
                f"{solutions_path.name}: cell {index} differs from the student notebook's "
                f"prompt (or its solution moved): {shown}"
            )
            break
    return problems


def write(student_path: Path, solutions_path: Path) -> list[str]:
    """Rebuild the solutions notebook's exercise part; returns the answer cells left unsolved."""
    student, solutions = load(student_path), load(solutions_path)
    cells, missing = build(student, solutions)
    solutions["cells"] = cells
    dump(solutions, solutions_path)
    return missing


def main(argv: list[str]) -> int:
    """``check`` or ``write`` the notebooks given by number (all of them by default)."""
    if not argv or argv[0] not in ("check", "write"):
        print(__doc__)
        return 2
    numbers = argv[1:] or sorted(p.name[:2] for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    problems = []
    for number in numbers:
        student_path, solutions_path = pair(number)
        if argv[0] == "write":
            problems += [
                f"{solutions_path.name}: no solution for {i}" for i in write(*pair(number))
            ]
        else:
            problems += drift(student_path, solutions_path)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
