"""Checks on the committed notebooks themselves (nbval executes them separately)."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SOLUTIONS = sorted((NOTEBOOK_DIR / "solutions").glob("*.ipynb"))
ALL = NOTEBOOKS + SOLUTIONS
CHECK_CALL = re.compile(r"\bex(\d\d)\.([a-z_0-9]+)\(")


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell):
    return "".join(cell["source"])


def test_notebooks_exist_in_lecture_order():
    names = [path.name for path in NOTEBOOKS]
    assert names, "no notebooks found"
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", name) for name in names), names
    numbers = [int(name[:2]) for name in names]
    assert numbers == list(range(1, len(numbers) + 1)), names


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_notebook_is_stored_stripped(path):
    dirty = [
        index
        for index, cell in enumerate(_cells(path))
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} have stored outputs; run `make strip`"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_notebook_has_no_absolute_paths(path):
    text = "".join(_source(cell) for cell in _cells(path))
    found = re.findall(r"(?:/home/|/Users/|/work/|/root/|[A-Z]:\\\\)\S*", text)
    assert not found, f"{path.name} uses absolute paths: {found}"


def _exercise_notebooks():
    return [p for p in NOTEBOOKS if any(_source(c).startswith("## Exercises") for c in _cells(p))]


@pytest.mark.parametrize("path", _exercise_notebooks(), ids=lambda p: p.name)
def test_exercises_have_skeletons_checks_and_proven_solutions(path):
    cells = _cells(path)
    start = next(i for i, c in enumerate(cells) if _source(c).startswith("## Exercises"))
    section = cells[start:]
    headings = [c for c in section if re.match(r"### Exercise \d+\.\d+", _source(c))]
    assert len(headings) >= 4, f"{path.name}: {len(headings)} exercises, at least 4 expected"
    tags = [c.get("metadata", {}).get("tags", []) for c in section]
    skeletons = [i for i, t in enumerate(tags) if "exercise" in t]
    assert len(skeletons) >= len(headings), f"{path.name}: an exercise has no skeleton cell"
    for i in skeletons:  # every skeleton is followed by its check
        assert "check" in tags[i + 1], f"{path.name}: skeleton without a check cell after it"
        assert CHECK_CALL.search(_source(section[i + 1])), _source(section[i + 1])
    check_cells = [c for c, t in zip(section, tags, strict=True) if "check" in t]
    student_checks = {m.group(0) for c in check_cells for m in CHECK_CALL.finditer(_source(c))}
    solution = NOTEBOOK_DIR / "solutions" / f"{path.stem}_solutions.ipynb"
    assert solution.exists(), f"{path.name}: no solutions notebook {solution.name}"
    solved = "".join(_source(c) for c in _cells(solution))
    missing = {call for call in student_checks if call not in solved}
    assert not missing, f"{solution.name} does not prove the checks {sorted(missing)}"
    asserted = {f"{m}(" for m in re.findall(r"assert (ex\d\d\.[a-z_0-9]+)\(", solved)}
    unproven = student_checks - asserted
    assert not unproven, f"{solution.name}: assert these checks .correct: {sorted(unproven)}"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_every_widget_comes_after_its_static_twin(path):
    # A live control goes through plots.live_control (which leaves it out where no front-end
    # can show it), and the same cell or the one before it draws the static twin.
    cells = [c for c in _cells(path) if c["cell_type"] == "code"]
    for index, cell in enumerate(cells):
        source = _source(cell)
        assert "import ipywidgets" not in source, f"{path.name}: use plots.live_control"
        if "plots.live_control(" in source:
            before = source[: source.index("plots.live_control(")]
            if index:
                before = _source(cells[index - 1]) + before
            assert re.search(r"plt\.show\(\)|plots\.\w+\(", before), (
                f"{path.name}: plots.live_control with no static twin drawn before it"
            )


# --- The student edition (DESIGN.md, "Notebooks: the student edition") ----------------------

# What speaks to us, not to the student: allowed only in the "For instructors" section.
MAINTAINER_TEXT = re.compile(
    r"\bFAST\b|CNN_UTILS_\w+|default mode|\bmake (?:test|claims|weights|book|slides|strip|grade"
    r"|lab|setup|lint)\b|tests?/\w+|\btest_\w+\.py|\b20\d\d-\d\d-\d\d\b|shipped weights"
)
# Sections off the core path: the optional part at the end, the exercises, the back matter.
OFF_CORE = re.compile(r"going further|optional|exercises|for instructors|references", re.I)
CORE_WORDS = 3500  # DESIGN.md: "at most ~3,500 words of markdown"


def _sections(path):
    """(level-2 heading, cell) for every cell; the title cell's section is ""."""
    heading = ""
    for cell in _cells(path):
        markdown = cell["cell_type"] == "markdown"
        found = re.match(r"## (?!#)(.*)", _source(cell)) if markdown else None
        heading = found.group(1) if found else heading
        yield heading, cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_speaks_to_the_student(path):
    """Modes, dates, test files and make targets only in the one "For instructors" section."""
    headings = [h for h, c in _sections(path) if _source(c).startswith(f"## {h}") and h]
    assert headings.count("For instructors") == 1, f"{path.name}: {headings}"
    found = [
        (heading, match.group(0))
        for heading, cell in _sections(path)
        if cell["cell_type"] == "markdown" and heading != "For instructors"
        for match in MAINTAINER_TEXT.finditer(_source(cell))
    ]
    assert not found, f"{path.name}: maintainer text outside 'For instructors': {found}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_core_path_is_short_and_code_cells_are_thin(path):
    """At most ~3,500 words on the core path; no code cell over 30 lines but a by-hand one."""
    words = sum(
        len(_source(cell).split())
        for heading, cell in _sections(path)
        if cell["cell_type"] == "markdown" and not OFF_CORE.search(heading)
    )
    assert 500 < words <= CORE_WORDS, f"{path.name}: {words} words on the core path"
    long_cells = [
        (cell.get("id"), len(_source(cell).splitlines()))
        for _, cell in _sections(path)
        if cell["cell_type"] == "code"
        and len(_source(cell).splitlines()) > 30
        and not str(cell.get("id", "")).endswith("by-hand")
    ]
    assert not long_cells, f"{path.name}: code cells over 30 lines: {long_cells}"
