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


def png(width, height):
    """A base64 PNG header of the given size (all that fit() reads of a figure)."""
    import base64
    import struct

    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    return base64.b64encode(head + struct.pack(">II", width, height) + b"\x08\x06\0\0\0").decode()


def code(source, *outputs):
    return {"cell_type": "code", "metadata": {}, "source": source, "outputs": list(outputs)}


def figure(width, height):
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {"image/png": png(width, height), "text/plain": "<Figure>"},
    }


def lesson():
    """A section far taller than a 1280x720 slide: text, code, two tall figures, more code."""
    body = "\n".join(f"line_{k} = {k}" for k in range(12))
    return {
        "cells": [
            md("# 05 Attacks"),
            md("## 13. Beyond the ε-ball\n\n" + "A paragraph of the lesson. " * 30),
            code(body),
            code("grid()", figure(1330, 500)),
            md("What to see: the panels agree."),
            code(body),
            code("curve()", figure(900, 400)),
            md("What to see: the curve falls."),
            md("Then a paragraph that introduces the next cell. " * 3),
            code("\n".join(f"step_{k}()" for k in range(60))),
        ]
    }


def test_png_size_reads_the_header():
    assert slides.png_size(png(1330, 512)) == (1330, 512)


def test_fit_cuts_a_tall_section_into_sub_slides_that_each_fit():
    nb = slides.fit(lesson())
    kinds = [c["metadata"]["slideshow"]["slide_type"] for c in nb["cells"]]
    assert kinds.count("slide") == 2  # the title and the section, as the headings say
    assert kinds.count("subslide") >= 2  # the section is cut
    # every slide's estimated height fits (a cell taller than a slide scrolls in its own box)
    groups, height = [], 0
    for cell, kind in zip(nb["cells"], kinds, strict=True):
        if kind in ("slide", "subslide"):
            groups.append(height)
            height = 0
        if kind != "notes":
            height += slides.slide_height(cell)
    groups.append(height)
    assert max(groups) <= slides.SLIDE_HEIGHT, groups
    # each continuation repeats the section's heading
    continued = [c["source"] for c in nb["cells"] if c["source"].endswith("(cont.)")]
    assert continued and all(s == "### 13. Beyond the ε-ball (cont.)" for s in continued)
    # the 60-line cell cannot fit: its code scrolls in a box of the tallest tier that fits
    assert nb["cells"][-1]["metadata"]["tags"] == ["slides-code-540"]


def test_a_cell_too_tall_for_a_slide_shows_its_outputs_on_the_next():
    body = "\n".join(f"line_{k} = {k}" for k in range(20))  # 440 px of code
    cell = {**code(body, figure(1330, 900)), "id": "grid"}  # and a figure 600 px tall at most
    nb = slides.fit({"cells": [md("# T"), md("## 1. Part"), cell, md("What to see: a grid.")]})
    sources = ["".join(c["source"]) for c in nb["cells"]]
    kinds = [c["metadata"]["slideshow"]["slide_type"] for c in nb["cells"]]
    assert sources == ["# T", "## 1. Part", body, "### 1. Part (cont.)", "", "What to see: a grid."]
    assert kinds == ["slide", "slide", "-", "subslide", "-", "notes"]
    code_cell, result = nb["cells"][2], nb["cells"][4]
    assert code_cell["outputs"] == [] and result["outputs"] == cell["outputs"]
    assert result["metadata"]["tags"][0] == slides.OUTPUT_TAG and result["id"] == "grid-out"
    assert slides.slide_height(result) <= slides.SLIDE_HEIGHT - slides.HEADED  # shrunk to fit
    template = (ROOT / "tools" / "nbconvert" / "slides" / "index.html.j2").read_text()
    assert f".celltag_{slides.OUTPUT_TAG} .jp-InputArea" in template  # its empty input hidden


def test_outputs_taller_than_a_slide_together_take_a_sub_slide_each():
    """Four wide figures of one cell (05's attack grids) do not fit one slide even shrunk."""
    grids = [figure(1330, 544) for _ in range(4)]
    cell = {**code("show_grids()", *grids), "id": "grids"}
    nb = slides.fit({"cells": [md("# T"), md("## 1. Part"), cell, md("What to see: grids.")]})
    results = [c for c in nb["cells"] if slides.OUTPUT_TAG in c["metadata"].get("tags", [])]
    assert [c["outputs"] for c in results] == [[g] for g in grids]
    assert [c["id"] for c in results] == ["grids-out", "grids-out1", "grids-out2", "grids-out3"]
    kinds = [c["metadata"]["slideshow"]["slide_type"] for c in nb["cells"]]
    assert kinds.count("subslide") == 4 and kinds[-1] == "notes"
    assert all(slides.slide_height(c) <= slides.SLIDE_HEIGHT - slides.HEADED for c in results)


def test_squeeze_shrinks_the_code_box_then_the_figures():
    body = "\n".join(f"line_{k} = {k}" for k in range(20))
    cell = code(body, figure(1330, 900))
    room = slides.SLIDE_HEIGHT - slides.HEADED
    slides.squeeze(cell, room)
    tags = cell["metadata"]["tags"]
    assert any(t.startswith("slides-code-") for t in tags)  # the code box first ...
    assert any(t.startswith("slides-figure-") for t in tags)  # ... then the figure
    assert slides.slide_height(cell) <= room
    template = (ROOT / "tools" / "nbconvert" / "slides" / "index.html.j2").read_text()
    assert str(list(slides.TIERS)) in template  # the template styles every tier fit() uses
    small = code("x = 1", figure(600, 300))
    slides.squeeze(small, slides.SLIDE_HEIGHT)
    assert "tags" not in small["metadata"]  # what fits is left alone


def test_notes_skip_the_check_cells_after_a_figure_and_land_on_its_slide():
    cells = [
        md("# T"),
        md("## 1. Part"),
        code("plot()", figure(1200, 480)),  # fills most of its slide
        code("\n".join(f"assert check_{k}()" for k in range(8))),  # next slide
        md("What to see: the bars."),
        md("An intro to the next cell."),  # not notes: only the first text after a figure
        code("x = 1"),
    ]
    nb = slides.fit({"cells": cells})
    sources = ["".join(c["source"]) for c in nb["cells"]]
    kinds = [c["metadata"]["slideshow"]["slide_type"] for c in nb["cells"]]
    at = sources.index("What to see: the bars.")
    assert kinds[at] == "notes" and sources[at - 1] == "plot()"  # on the figure's slide
    assert kinds[sources.index("An intro to the next cell.")] == "-"
    assert "subslide" in kinds[at + 1 :]  # the check cell went to the next sub-slide


def test_a_long_text_is_cut_at_its_paragraphs_outside_code_and_math():
    paragraph = "A sentence of the lesson, long enough to fill a line or two. " * 8
    math = "$$\na = b\n\nc = d\n$$"  # a blank line inside display math stays inside
    text = "## 9. For instructors\n\n" + "\n\n".join([paragraph] * 6 + [math, paragraph])
    nb = slides.fit({"cells": [md("# T"), {**md(text), "id": "long"}]})
    sources = ["".join(c["source"]) for c in nb["cells"] if not c["source"].endswith("(cont.)")]
    assert sources[1] == "## 9. For instructors" and sources.count(paragraph) == 7
    assert math in sources  # whole
    kinds = [c["metadata"]["slideshow"]["slide_type"] for c in nb["cells"]]
    assert "subslide" in kinds
    ids = [c["id"] for c in nb["cells"] if "id" in c]
    assert {"long", "long-p1"} <= set(ids) and len(set(ids)) == len(ids)
