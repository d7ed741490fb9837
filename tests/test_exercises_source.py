"""One source for the exercises: the solutions notebooks carry the student notebooks' prompts.

``tools/solutions.py`` builds each solutions notebook from its own head, the student notebook's
exercise cells and the solution cells tagged for each answer cell; these tests fail when a
prompt, a skeleton's place or a check differs between the two copies, or an answer cell has no
solution.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import solutions as tool  # noqa: E402

NUMBERS = sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("number", NUMBERS)
def test_solutions_carry_the_student_prompts(number):
    assert tool.drift(*tool.pair(number)) == []


@pytest.mark.parametrize("number", NUMBERS)
def test_every_answer_cell_has_a_model_answer(number):
    student_path, solutions_path = tool.pair(number)
    student, solutions = tool.load(student_path), tool.load(solutions_path)
    answers = [
        c for c in tool.exercise_cells(student) if set(tool.tags(c)) & {"exercise", "explain"}
    ]
    solved = tool.solution_cells(solutions)
    assert answers, f"{student_path.name}: no answer cells"
    assert all(solved.get(c["id"]) for c in answers)


def _copies(tmp_path, number):
    student_path, solutions_path = tool.pair(number)
    (tmp_path / "solutions").mkdir()
    student = tmp_path / student_path.name
    solutions = tmp_path / "solutions" / solutions_path.name
    shutil.copy(student_path, student)
    shutil.copy(solutions_path, solutions)
    return student, solutions


def _edit(path, predicate, change):
    notebook = json.loads(path.read_text())
    cell = next(c for c in notebook["cells"] if predicate(c))
    change(cell)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def _is_prompt(cell):
    return cell["cell_type"] == "markdown" and tool.HEADING.match(tool.source(cell))


def test_a_prompt_edited_in_one_copy_is_drift(tmp_path):
    student, solutions = _copies(tmp_path, "05")
    assert tool.drift(student, solutions) == []
    _edit(solutions, _is_prompt, lambda c: c["source"].append(" (edited in the solutions only)"))
    assert tool.drift(student, solutions)
    tool.write(student, solutions)  # rebuilt from the student's prompts: no drift left
    assert tool.drift(student, solutions) == []


def test_a_check_changed_in_the_student_copy_is_drift(tmp_path):
    student, solutions = _copies(tmp_path, "04")

    def widen(cell):
        cell["source"] = [
            line.replace("x_ex, y_ex", "x_ex[:4], y_ex[:4]") for line in cell["source"]
        ]

    _edit(student, lambda c: "check" in tool.tags(c) and "x_ex, y_ex" in tool.source(c), widen)
    assert tool.drift(student, solutions)


def test_an_answer_cell_without_solution_is_drift(tmp_path):
    student, solutions = _copies(tmp_path, "06")
    _edit(student, lambda c: "explain" in tool.tags(c), lambda c: c.update(id="0000beef"))
    assert any("no solution" in p for p in tool.drift(student, solutions))


def test_check_cells_become_asserts():
    made = tool.asserted("ex05.linear_shift(shift, w, 0.1)\nex05.linear_step(\n    d, w, 0.1\n)\n")
    assert made == (
        "assert ex05.linear_shift(shift, w, 0.1).correct\n"
        "assert ex05.linear_step(\n    d, w, 0.1\n).correct\n"
    )
