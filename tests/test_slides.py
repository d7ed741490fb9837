"""Slide metadata: tools/slides.py derives it from headings; every notebook carries it."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("slides", ROOT / "tools" / "slides.py")
slides = importlib.util.module_from_spec(spec)
spec.loader.exec_module(slides)


def md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def test_slide_types_follow_headings(tmp_path):
    cells = [
        md("# 01 Title"),
        md("text"),
        md("## 1. Section"),
        md("### Exercise 1.1"),
        {"cell_type": "code", "metadata": {}, "source": "# comment, not a heading"},
    ]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    assert slides.apply(path, check=True) == [0, 1, 2, 3, 4]
    slides.apply(path)
    stored = json.loads(path.read_text())["cells"]
    types = [c["metadata"]["slideshow"]["slide_type"] for c in stored]
    assert types == ["slide", "-", "slide", "subslide", "-"]
    assert slides.apply(path, check=True) == []


def test_every_notebook_has_slide_metadata():
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = {p.name: slides.apply(p, check=True) for p in notebooks}
    assert not {k: v for k, v in missing.items() if v}, "run `make strip` (tools/slides.py)"


def test_a_heading_below_the_first_line_starts_its_own_cell(tmp_path):
    text = "What to see: a figure.\n\n## 2. Next section\n\nIts text.\n\n### 2.1 Part\nmore"
    fenced = "Code:\n```python\n# a comment in a fence\n```\nend"
    cells = [md("# 01 Title"), {**md(text), "id": "abc"}, md(fenced)]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    assert slides.apply(path, check=True) == [0, 1, 2]  # cell 1 is split, all lack metadata
    slides.apply(path)
    stored = json.loads(path.read_text())["cells"]
    assert ["".join(c["source"]) for c in stored] == [
        "# 01 Title",
        "What to see: a figure.",
        "## 2. Next section\n\nIts text.",
        "### 2.1 Part\nmore",
        fenced,  # a "#" line inside a code fence is not a heading
    ]
    assert [c.get("id") for c in stored[1:4]] == ["abc", "abc-1", "abc-2"]
    types = [c["metadata"]["slideshow"]["slide_type"] for c in stored]
    assert types == ["slide", "-", "slide", "subslide", "-"]
    assert slides.apply(path, check=True) == []
