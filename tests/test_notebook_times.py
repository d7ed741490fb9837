"""benchmarks/notebook_times.py writes one line for the student into each first cell."""

import importlib.util
import json
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "notebook_times", ROOT / "benchmarks" / "notebook_times.py"
)
times = importlib.util.module_from_spec(spec)
spec.loader.exec_module(times)


def test_the_student_line_is_rounded_and_names_no_mode():
    assert times.student_time(60) == "**Time:** about a minute on a 2-core laptop CPU."
    assert times.student_time(87) == "**Time:** about a minute and a half on a 2-core laptop CPU."
    assert times.student_time(224.7) == "**Time:** about 4 minutes on a 2-core laptop CPU."
    assert "FAST" not in times.student_time(500) and "mode" not in times.student_time(500)


def test_write_cells_replaces_the_time_line_where_it_stands(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 09 — T\n\n*Running time: ages.*\n\nIntro.")]
    nbformat.write(nb, folder / "09_t.ipynb")
    monkeypatch.setattr(times, "ROOT", tmp_path)
    results = {"full": {"fresh": {"times": {"09_t.ipynb": {"seconds": 200.0, "passed": True}}}}}
    times.write_cells(results)
    times.write_cells(results)  # twice: still one line
    text = "".join(nbformat.read(folder / "09_t.ipynb", as_version=4).cells[0]["source"])
    assert text == "# 09 — T\n\n**Time:** about 3 minutes on a 2-core laptop CPU.\n\nIntro."
    assert json.loads((folder / "09_t.ipynb").read_text())["nbformat"] == 4
