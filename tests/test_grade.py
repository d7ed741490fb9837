"""Tests of tools/grade.py on synthetic submissions of notebook 01 (FAST mode, ~2 minutes).

The folder holds six submissions: all correct, all blank, one whose kernel dies, one that loops,
one that edits its check cells and patches the checks, one that deletes every file it can reach.
Each gets its row; the repository and the other submissions are untouched.
"""

import csv
import hashlib
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import grade  # noqa: E402
import solutions as source_tool  # noqa: E402

NUMBER = "01"


def _digest(paths):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


FIXTURES = ROOT / "tests" / "grade_fixtures"


def test_the_committed_fixtures_are_current(tmp_path):
    # tests/grade_fixtures/ (make grade SUBMISSIONS=tests/grade_fixtures/ FAST=1) is what
    # `python tools/grade.py synthesize 01 tests/grade_fixtures` makes from today's notebook.
    made = grade.synthesize(NUMBER, tmp_path)
    assert sorted(p.name for p in FIXTURES.glob("*.ipynb")) == sorted(p.name for p in made)
    for path in made:
        assert (FIXTURES / path.name).read_text() == path.read_text(), path.name


def test_the_graded_notebook_uses_the_course_checks(tmp_path):
    subs = tmp_path / "subs"
    grade.synthesize(NUMBER, subs)
    course = source_tool.load(grade.course_notebooks()[NUMBER])
    cheating = source_tool.load(subs / "edits_checks.ipynb")
    assert grade.identify(cheating, "edits_checks") == NUMBER
    notebook, index = grade.graded_notebook(course, cheating, NUMBER)
    checks, _ = grade.columns(course)
    assert sorted(index.values()) == sorted(checks)  # every course check, once
    texts = [source_tool.source(notebook["cells"][i]) for i in index]
    assert all("_grade_importlib.reload" in t for t in texts)
    assert not any("print(" in t for t in texts)  # the student's fake verdicts are gone
    setup = grade.setup_cells(course)
    assert [source_tool.source(c) for c in notebook["cells"][: len(setup)]] == [
        source_tool.source(c) for c in setup
    ]


def test_columns_follow_the_checks_naming():
    course = source_tool.load(grade.course_notebooks()["05"])
    checks, explains = grade.columns(course)
    ids = [e for group in checks.values() for e in group]
    assert ids == ["5.1a", "5.1b", "5.2", "5.3", "5.4", "5.5"]
    assert "5.5 explain" in explains.values()


def test_grade_a_synthetic_folder(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    shutil.copytree(FIXTURES, subs)
    submitted = _digest(sorted(subs.glob("*.ipynb")))
    repository = _digest(sorted((ROOT / "notebooks").rglob("*.ipynb")))
    rows = grade.grade(subs, out, fast=True, cell_timeout=40, timeout=400)
    by = {row["student"]: row for row in rows}
    assert set(by) == {
        "all_correct",
        "all_blank",
        "crashing",
        "looping",
        "edits_checks",
        "deletes_files",
    }
    exercises = ["1.1", "1.2", "1.3", "1.4", "1.5"]
    assert [by["all_correct"][e] for e in exercises] == ["correct"] * 5
    assert by["all_correct"]["correct"] == by["all_correct"]["checks"] == 5
    assert by["all_correct"]["1.5 explain"] == "answered (read it)"
    assert [by["all_blank"][e] for e in exercises] == ["not attempted"] * 5
    assert by["all_blank"]["1.5 explain"] == "not attempted"
    # The kernel dies in 1.3's cell: what ran before counts, the rest is an error.
    assert [by["crashing"][e] for e in ("1.1", "1.2")] == ["correct"] * 2
    assert all(by["crashing"][e].startswith("error") for e in ("1.3", "1.4", "1.5"))
    # 1.2's cell loops: interrupted at the cell's time limit; the other cells still run.
    assert by["looping"]["1.2"].startswith("error")
    assert [by["looping"][e] for e in ("1.1", "1.3", "1.4", "1.5")] == ["correct"] * 4
    # Fake verdicts and patched checks change nothing: the course's checks run, reloaded.
    assert [by["edits_checks"][e] for e in exercises] == ["not attempted"] * 5
    # Deleting every reachable file hurts nobody: the submission ran on a copy in its own folder.
    assert by["deletes_files"]["correct"] == 5
    assert _digest(sorted(subs.glob("*.ipynb"))) == submitted
    assert _digest(sorted((ROOT / "notebooks").rglob("*.ipynb"))) == repository
    with (out / "grades.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 6 and set(exercises) <= set(table[0])
    page = (out / "grades.html").read_text()
    assert page.count("<tr>") == 7 and "all_correct" in page
    assert len(list((out / "executed").glob("*.ipynb"))) == 6
