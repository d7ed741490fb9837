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
