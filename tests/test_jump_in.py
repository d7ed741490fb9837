"""Any numbered section runs from its heading after the setup cells (tools/jump_in.py)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("jump_in", ROOT / "tools" / "jump_in.py")
jump_in = importlib.util.module_from_spec(spec)
spec.loader.exec_module(jump_in)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _write(tmp_path, cells):
    import nbformat

    nb = nbformat.v4.new_notebook()
    for kind, text in cells:
        maker = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        nb.cells.append(maker(text))
    path = tmp_path / "toy.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_name_from_an_earlier_section_is_found(tmp_path):
    path = _write(
        tmp_path,
        [
            ("code", "import numpy as np\nshared = np.zeros(3)"),
            ("md", "## 1. First"),
            ("code", "only_here = shared + 1\nfor i in range(3):\n    print(i)"),
            ("md", "## 2. Second"),
            ("code", "def f(x):\n    local = x + 1\n    return local + only_here\n"),
            ("code", "print(f(2), [k for k in range(2)], shared, len(shared))"),
            ("md", "Text, then\n\n## 3. Third"),
            ("code", "own = 1\nprint(own)"),
        ],
    )
    # Section 2 reads only_here (from section 1) inside a function it calls; nothing else.
    assert jump_in.borrowed_names(path) == {"2. Second": ["only_here"]}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_section_runs_from_its_heading(path):
    sections = [title for title, _ in jump_in.sections(path)[1:] if title[0].isdigit()]
    assert len(sections) >= 4, f"{path.name}: number its sections '## 1. ...' ({sections})"
    assert jump_in.borrowed_names(path) == {}
