"""Grade a folder of submitted notebooks: one row per student, one column per exercise.

Each submission (any ``*.ipynb`` under the folder; the student is its path without the suffix)
is matched to its course notebook by cell ids (or by the ``NN_`` prefix of its name), then
executed alone:

* in its own kernel, in a child process, in a fresh temporary folder that holds only a copy of
  it (a relative path cannot reach the repository, the submissions or another submission);
* after the course notebook's own setup cells (the cells before its first numbered section),
  with the submission's ``## Exercises`` section (answers, explanations, extra cells);
* with every check cell replaced by the course notebook's check cell, run on freshly reloaded
  checks (an edited or deleted check cell, or a check patched by the student's code, changes
  nothing);
* with a time limit per cell (a loop is interrupted, the next cells still run) and per
  notebook (the process is killed); a crash, a dead kernel or a deleted file costs that
  submission its remaining checks, never the grading of the others.

The verdict of each check is read from what it printed (``Exercise 1.4 [correct]``); a check
that did not run is an error ("did not run": the kernel died or time ran out). Explanation
cells (tagged ``explain``) are not graded: the table says whether each was answered, and the
executed notebooks are kept for reading them. The table is written as CSV and HTML, with the
number of checks passed per student.

Usage::

    python tools/grade.py SUBMISSIONS/ [--out build/grades] [--fast] [--cell-timeout 600]
        [--timeout 3600] [--notebook NN]
    python tools/grade.py synthesize NN FOLDER/   # synthetic submissions to try the grader on

``make grade SUBMISSIONS=folder/`` runs the first form. Grade in the mode the students used
(their numbers for 05 and 06 depend on the models, which FAST mode trains differently).
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import solutions as source_tool  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SECTION = re.compile(r"^##\s+\d+\.", re.MULTILINE)
VERDICT = re.compile(
    r"^Exercise (\S+) \[(correct|not yet|not attempted yet|check error)\] ?(.*)$", re.MULTILINE
)
STATUS = {
    "correct": "correct",
    "not yet": "not yet",
    "not attempted yet": "not attempted",
    "check error": "error",
}
GUARD = """# Run by the grader: the course's check, on freshly reloaded checks.
import importlib as _grade_importlib

import cnn_utils.exercises as _grade_exercises

_grade_importlib.reload(_grade_exercises)
{module} = _grade_importlib.reload(_grade_importlib.import_module("cnn_utils.exercises.{module}"))
"""


# ---------------------------------------------------------------------------------------------
# The course notebooks: setup, check cells, columns
# ---------------------------------------------------------------------------------------------


def course_notebooks() -> dict[str, Path]:
    """The student notebooks by number."""
    return {p.name[:2]: p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))}


def setup_cells(course: dict) -> list[dict]:
    """The course notebook's setup: its cells before the first numbered section."""
    cells = []
    for cell in course["cells"]:
        if cell["cell_type"] == "markdown" and SECTION.match(source_tool.source(cell)):
            break
        cells.append(cell)
    return cells


def exercise_section(notebook: dict) -> list[dict] | None:
    """The cells of the ``## Exercises`` section (heading included), or None."""
    cells = notebook.get("cells", [])
    start = next(
        (i for i, c in enumerate(cells) if source_tool.source(c).startswith("## Exercises")), None
    )
    if start is None:
        return None
    end = next(
        (
            i
            for i in range(start + 1, len(cells))
            if cells[i]["cell_type"] == "markdown"
            and re.match(r"^##\s", source_tool.source(cells[i]))
        ),
        len(cells),
    )
    return cells[start:end]


def columns(course: dict) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Exercise ids of each check cell (by cell id), and the column of each explain cell.

    A check cell under ``### Exercise 5.1`` with one call reports ``5.1``; with k calls it
    reports ``5.1a``, ``5.1b``, ... (the checks' own naming).
    """
    checks, explains, heading = {}, {}, "?"
    for cell in exercise_section(course) or []:
        text = source_tool.source(cell)
        found = re.match(r"^###\s+Exercise\s+(\d+\.\d+)", text)
        if found:
            heading = found.group(1)
        cell_tags = source_tool.tags(cell)
        if "check" in cell_tags:
            calls = len(re.findall(r"^ex\d\d\.\w+\(", text, re.MULTILINE))
            ids = [heading] if calls == 1 else [heading + "abcdefgh"[i] for i in range(calls)]
            checks[cell["id"]] = ids
        elif "explain" in cell_tags:
            name = f"{heading} explain"
            while name in explains.values():
                name += "+"
            explains[cell["id"]] = name
    return checks, explains


def identify(submission: dict, name: str) -> str | None:
    """The number of the course notebook a submission answers (cell ids, then file name)."""
    ids = {c.get("id") for c in submission.get("cells", [])}
    best, overlap = None, 0
    for number, path in course_notebooks().items():
        course_ids = {c.get("id") for c in source_tool.load(path)["cells"]}
        shared = len(ids & course_ids)
        if shared > overlap:
            best, overlap = number, shared
    if best is not None and overlap >= 3:
        return best
    found = re.search(r"(?:^|/)(\d\d)_", name)
    return found.group(1) if found and found.group(1) in course_notebooks() else None


def graded_notebook(course: dict, submission: dict, number: str) -> tuple[dict, dict[int, str]]:
    """The notebook the grader runs, and the index of each course check cell in it."""
    module = f"ex{number}"
    canonical = {
        c["id"]: c for c in exercise_section(course) or [] if "check" in source_tool.tags(c)
    }
    section = exercise_section(submission)
    if section is None:  # no Exercises heading: the course's, unanswered
        section = exercise_section(course) or []
    cells, seen = [], set()
    for cell in section:
        cell_id = cell.get("id")
        if cell_id in canonical and cell_id not in seen:
            seen.add(cell_id)
            cells.append(copy.deepcopy(canonical[cell_id]))
        elif "check" in source_tool.tags(cell) or cell_id in seen:
            continue  # a check cell the course does not have: the student's own "verdict"
        else:
            cells.append(copy.deepcopy(cell))
    order = [c.get("id") for c in exercise_section(course) or []]
    for cell_id, cell in canonical.items():  # put back deleted check cells
        if cell_id in seen:
            continue
        before = order[: order.index(cell_id)]
        positions = [i for i, c in enumerate(cells) if c.get("id") in before]
        cells.insert(positions[-1] + 1 if positions else len(cells), copy.deepcopy(cell))
    head = [copy.deepcopy(c) for c in setup_cells(course)]
    notebook = copy.deepcopy(course)
    notebook["cells"] = head + cells
    index = {}
    for i, cell in enumerate(notebook["cells"]):
        cell.setdefault("metadata", {})
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        if cell.get("id") in canonical and i >= len(head):
            guarded = GUARD.format(module=module) + source_tool.source(canonical[cell["id"]])
            cell["source"] = source_tool.as_lines(guarded)
            index[i] = cell["id"]
    return notebook, index


# ---------------------------------------------------------------------------------------------
# Running one submission (child process)
# ---------------------------------------------------------------------------------------------


def run_one(path: Path, cell_timeout: int) -> None:
    """Execute ``path`` in place with nbclient, saving it after every cell (child process)."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)

    def save(**_):
        nbformat.write(notebook, path)

    client = nbclient.NotebookClient(
        notebook,
        timeout=cell_timeout,
        interrupt_on_timeout=True,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_executed=save,
    )
    try:
        client.execute()
    finally:
        save()


def execute(notebook: dict, workdir: Path, *, cell_timeout: int, timeout: int, fast: bool):
    """Run ``notebook`` in ``workdir`` in a child process; the executed notebook and a note."""
    workdir.mkdir(parents=True)
    path = workdir / "submission.ipynb"
    source_tool.dump(notebook, path)
    env = dict(os.environ)
    env.update(TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg", CNN_UTILS_WIDGETS="0")
    if fast:
        env.update(CNN_UTILS_FAST="1", CNN_UTILS_STANDIN_WEIGHTS="1")
    env.setdefault("KERAS_HOME", str(Path.home() / ".keras"))
    command = [sys.executable, str(Path(__file__).resolve()), "--run-one", str(path)]
    command += ["--cell-timeout", str(cell_timeout)]
    child = subprocess.Popen(  # noqa: S603 - our own script, no shell
        command,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    note = ""
    try:
        output, _ = child.communicate(timeout=timeout)
        if child.returncode:
            lines = output.decode(errors="replace").strip().splitlines()
            note = lines[-1][:200] if lines else f"exit code {child.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        note = f"the notebook ran out of time ({timeout} s)"
    try:
        executed = source_tool.load(path)
    except (OSError, ValueError):
        executed, note = notebook, note or "the executed notebook could not be read"
    return executed, note


# ---------------------------------------------------------------------------------------------
# Reading the verdicts
# ---------------------------------------------------------------------------------------------


def _text(outputs: list[dict]) -> str:
    parts = []
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            text = output.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else text)
    return "".join(parts)


def verdicts(executed: dict, index: dict[int, str], checks: dict[str, list[str]], note: str):
    """Each exercise's verdict: (status, message)."""
    found = {}
    for i, cell_id in index.items():
        cell = executed["cells"][i] if i < len(executed["cells"]) else {}
        outputs = cell.get("outputs", [])
        printed = {
            m.group(1): (STATUS[m.group(2)], m.group(3)) for m in VERDICT.finditer(_text(outputs))
        }
        errors = [o for o in outputs if o.get("output_type") == "error"]
        for exercise in checks[cell_id]:
            if exercise in printed:
                found[exercise] = printed[exercise]
            elif errors:
                error = errors[0]
                found[exercise] = ("error", f"{error.get('ename')}: {error.get('evalue')}"[:300])
            else:
                found[exercise] = ("error", f"did not run ({note or 'the kernel stopped'})")
    return found


def explained(submission: dict, course: dict, explains: dict[str, str]) -> dict[str, str]:
    """For each explain column: "answered" or "not attempted"."""
    by_id = {c.get("id"): c for c in submission.get("cells", [])}
    course_by_id = {c.get("id"): c for c in course["cells"]}
    result = {}
    for cell_id, column in explains.items():
        mine = by_id.get(cell_id)
        blank = mine is None or source_tool.source(mine).strip() == (
            source_tool.source(course_by_id[cell_id]).strip()
        )
        result[column] = "not attempted" if blank else "answered (read it)"
    return result


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def _cell(verdict: tuple[str, str]) -> str:
    status, message = verdict
    return (
        status if status in ("correct", "not attempted") or not message else f"{status}: {message}"
    )


def write_table(rows: list[dict], exercise_columns: list[str], out: Path) -> tuple[Path, Path]:
    """grades.csv and grades.html in ``out``."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    header = ["student", "notebook", *exercise_columns, "correct", "checks", "note"]
    csv_path, html_path = out / "grades.csv", out / "grades.html"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in header})
    colours = {"correct": "#d8f0d8", "not yet": "#fde9c8", "not attempted": "#eeeeee"}
    colours.update({"error": "#f6d0d0", "answered (read it)": "#dde8f8"})
    body = []
    for row in rows:
        cells = []
        for key in header:
            value = str(row.get(key, ""))
            colour = colours.get(value.split(":")[0], "")
            style = f' style="background:{colour}"' if colour and key in exercise_columns else ""
            cells.append(f"<td{style}>{html.escape(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    heads = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Grades</title>'
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:4px;vertical-align:top;font-size:13px}</style>"
        f"</head><body><h1>Grades</h1><table><tr>{heads}</tr>{''.join(body)}</table></body></html>"
    )
    html_path.write_text(page + "\n", encoding="utf-8")
    return csv_path, html_path


def grade(
    folder: Path,
    out: Path,
    *,
    fast: bool = False,
    cell_timeout: int = 600,
    timeout: int = 3600,
    number: str | None = None,
) -> list[dict]:
    """Grade every submission under ``folder``; write the table in ``out``; return the rows."""
    folder = folder.resolve()
    paths = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    copies = {p: p.read_bytes() for p in paths}  # read once, before any submission runs
    rows, all_columns = [], []
    scratch = Path(tempfile.mkdtemp(prefix="cnn-grade-"))
    (out / "executed").mkdir(parents=True, exist_ok=True)
    try:
        for k, path in enumerate(paths):
            student = str(path.relative_to(folder).with_suffix(""))
            row = {"student": student}
            started = time.perf_counter()
            try:
                submission = json.loads(copies[path].decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                row["note"] = f"not a notebook: {error}"[:200]
                rows.append(row)
                continue
            which = number or identify(submission, student)
            if which is None:
                row["note"] = "cannot tell which course notebook this answers"
                rows.append(row)
                continue
            course = source_tool.load(course_notebooks()[which])
            checks, explains = columns(course)
            notebook, index = graded_notebook(course, submission, which)
            executed, note = execute(
                notebook,
                scratch / f"{k:03d}" / "work",
                cell_timeout=cell_timeout,
                timeout=timeout,
                fast=fast,
            )
            found = verdicts(executed, index, checks, note)
            found_columns = [e for ids in checks.values() for e in ids]
            for column in [*found_columns, *explains.values()]:
                if column not in all_columns:
                    all_columns.append(column)
            row.update({e: _cell(found[e]) for e in found_columns})
            row.update(explained(submission, course, explains))
            row["notebook"] = which
            row["correct"] = sum(found[e][0] == "correct" for e in found_columns)
            row["checks"] = len(found_columns)
            row["note"] = note or f"{time.perf_counter() - started:.0f} s"
            safe = re.sub(r"[^\w.-]+", "_", student)
            source_tool.dump(executed, out / "executed" / f"{safe}.ipynb")
            rows.append(row)
            print(
                f"{student}: {row['correct']}/{row['checks']} correct ({row['note']})", flush=True
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_table(rows, all_columns, out)
    return rows


# ---------------------------------------------------------------------------------------------
# Synthetic submissions
# ---------------------------------------------------------------------------------------------


def solved_copy(number: str) -> dict:
    """The student notebook with every answer cell replaced by its solution (same ids)."""
    student_path, solutions_path = source_tool.pair(number)
    student = source_tool.load(student_path)
    answers = source_tool.solution_cells(source_tool.load(solutions_path))
    cells = []
    for cell in student["cells"]:
        if set(source_tool.tags(cell)) & {"exercise", "explain"} and cell["id"] in answers:
            text = "\n".join(source_tool.source(c) for c in answers[cell["id"]])
            made = copy.deepcopy(cell)
            made["source"] = source_tool.as_lines(text)
            cells.append(made)
        else:
            cells.append(copy.deepcopy(cell))
    student["cells"] = cells
    return student


def synthesize(number: str, folder: Path) -> list[Path]:
    """Synthetic submissions of notebook ``number``: correct, blank, crashing, looping,
    editing its checks, deleting files.
    """  # noqa: D205
    student_path, _ = source_tool.pair(number)
    blank, solved = source_tool.load(student_path), solved_copy(number)
    answer_cells = [i for i, c in enumerate(solved["cells"]) if "exercise" in source_tool.tags(c)]

    def with_code(notebook, position, text, *, replace=False):
        made = copy.deepcopy(notebook)
        cell = made["cells"][answer_cells[position]]
        cell["source"] = source_tool.as_lines(text if replace else text + source_tool.source(cell))
        return made

    crashing = with_code(solved, 2, "import os\n\nos._exit(3)  # the kernel dies here\n")
    looping = with_code(solved, 1, "while True:  # never ends\n    pass\n")
    cheating = copy.deepcopy(blank)
    for cell in cheating["cells"]:
        if "check" in source_tool.tags(cell):
            ids = re.findall(r"^(ex\d\d)\.", source_tool.source(cell), re.MULTILINE)
            cell["source"] = [f'print("Exercise {number[1]}.1 [correct]")\n'] if ids else []
    first = cheating["cells"][answer_cells[0]]
    first["source"] = source_tool.as_lines(
        f"from cnn_utils.exercises import Feedback, ex{number}\n\n"
        f"for name in ex{number}.__all__:  # every check says correct\n"
        f"    setattr(ex{number}, name, lambda *a, **k: Feedback('{number[1]}.1', 'correct', ''))\n"
        + source_tool.source(first)
    )
    deleting = with_code(
        solved,
        0,
        "import glob\nimport os\n\n"
        "for pattern in ('*', '../*', '../../*', '**/*.ipynb'):  # delete what can be reached\n"
        "    for name in glob.glob(pattern, recursive=True):\n"
        "        if os.path.isfile(name):\n"
        "            os.remove(name)\n",
    )
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name, notebook in (
        ("all_correct", solved),
        ("all_blank", blank),
        ("crashing", crashing),
        ("looping", looping),
        ("edits_checks", cheating),
        ("deletes_files", deleting),
    ):
        path = folder / f"{name}.ipynb"
        source_tool.dump(notebook, path)
        made.append(path)
    return made


def main(argv: list[str]) -> int:
    """Command line: grade a folder, run one notebook (internal), or synthesize submissions."""
    if argv[:1] == ["synthesize"]:
        for path in synthesize(argv[1], Path(argv[2])):
            print(path)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", nargs="?", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "grades")
    parser.add_argument("--fast", action="store_true", help="grade in FAST mode")
    parser.add_argument("--cell-timeout", type=int, default=600)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per notebook")
    parser.add_argument("--notebook", help="the course notebook number, e.g. 01")
    parser.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        run_one(args.run_one, args.cell_timeout)
        return 0
    if args.submissions is None or not args.submissions.is_dir():
        parser.error("give the folder of submitted notebooks (SUBMISSIONS=folder/)")
    started = time.perf_counter()
    rows = grade(
        args.submissions,
        args.out,
        fast=args.fast,
        cell_timeout=args.cell_timeout,
        timeout=args.timeout,
        number=args.notebook,
    )
    print(
        f"{len(rows)} submissions graded in {time.perf_counter() - started:.0f} s: "
        f"{args.out / 'grades.csv'}, {args.out / 'grades.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
