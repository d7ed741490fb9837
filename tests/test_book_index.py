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
