import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "book_index.py"


def _load():
    spec = importlib.util.spec_from_file_location("book_index", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(path, title):
    cells = [{"cell_type": "code", "source": "x = 1"}]
    if title:
        cells.insert(0, {"cell_type": "markdown", "source": f"intro\n# {title}\ntext"})
    path.write_text(json.dumps({"cells": cells}))
    return str(path)


def test_index_links_notebooks_in_the_given_order_with_titles(tmp_path):
    book_index = _load()
    first = _notebook(tmp_path / "01_a.ipynb", "01 — First & <best>")
    second = _notebook(tmp_path / "02_b.ipynb", None)
    book_index.main(str(tmp_path), [first, second])
    page = (tmp_path / "index.html").read_text()
    assert page.index("01_a.html") < page.index("02_b.html")
    assert "01 — First &amp; &lt;best&gt;" in page  # escaped title from the first heading
    assert ">02_b</a>" in page  # no heading: the file name


def test_index_says_the_course_the_mode_and_the_date_and_links_every_output(tmp_path):
    import datetime

    book_index = _load()
    first = _notebook(tmp_path / "01_a.ipynb", "01 — First")
    second = _notebook(tmp_path / "02_b.ipynb", "02 — Second")
    book_index.main(str(tmp_path), [first, second], "FAST")
    page = (tmp_path / "index.html").read_text()
    assert "<title>Advanced Convolutional Neural Networks</title>" in page
    assert "<h1>Advanced Convolutional Neural Networks</h1>" in page
    assert "FAST mode" in page and "default mode" not in page
    assert f"built on {datetime.date.today().isoformat()}" in page
    for name in ("01_a", "02_b"):  # the page, the executed notebook and the slides of each
        for link in (f"{name}.html", f"{name}.ipynb", f"slides/{name}.slides.html"):
            assert f'href="{link}"' in page, link
    assert "<style>" in page  # a styled page, not a bare list
    book_index.main(str(tmp_path), [first], "default")
    assert "default mode" in (tmp_path / "index.html").read_text()


def test_the_command_line_takes_the_mode(tmp_path):
    import subprocess
    import sys

    first = _notebook(tmp_path / "01_a.ipynb", "01 — First")
    args = [sys.executable, str(SCRIPT), str(tmp_path), first, "--mode", "FAST"]
    subprocess.run(args, check=True, capture_output=True)
    page = (tmp_path / "index.html").read_text()
    assert "FAST mode" in page and page.count("<li>") == 1
