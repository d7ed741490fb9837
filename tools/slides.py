"""Give every notebook cell its slide metadata, from the notebook's own headings.

``#`` and ``##`` headings start a slide, ``###`` headings a sub-slide (below it, in reveal.js),
and every other cell continues the current one. A heading can only start a slide from the first
line of its cell, so a markdown cell with a heading further down is first split in two at that
heading (the text before it ends the previous slide). The same metadata drives RISE in JupyterLab
(present and run the cells live) and ``make slides`` (reveal.js HTML). Run by ``make strip``,
so a notebook is committed with it; ``--check`` only reports cells without it (exit 1).

At export (``make slides``), ``fit`` rewrites a copy of an executed notebook for a 1280x720
projector, so that no slide scrolls:

* a section taller than one screen is cut into sub-slides, a new one before the cell that would
  overflow (heights estimated from lines and from the figures' pixel sizes; each continuation
  repeats the section's heading);
* a markdown cell taller than a screen is first cut at its paragraphs; a code cell whose code
  and outputs do not fit together shows its outputs on the next sub-slide; what is still too
  tall is squeezed by tags the template styles (code in a scroll box, figures shrunk);
* the text after a figure (what to see) becomes that slide's speaker notes
  (``<aside class="notes">``, the ``S`` key in reveal.js).

The estimate is checked in headless Chromium by tests/test_browser_slides.py. The committed
notebooks keep the heading-derived metadata only.

Usage: ``python tools/slides.py [--check] NOTEBOOK...`` or ``python tools/slides.py fit IN OUT``
"""

from __future__ import annotations

import base64
import copy
import json
import re
import struct
import sys
from pathlib import Path

HEADING = re.compile(r"^#{1,3} ")


def slide_type(cell: dict) -> str:
    """The reveal.js slide type of a cell: "slide", "subslide", "-" (same slide) or "skip".

    The Colab install cell (tagged ``colab-install``, see tools/colab.py) is skipped: it does
    nothing outside Colab and has no place in a lecture.
    """
    if "colab-install" in cell.get("metadata", {}).get("tags", []):
        return "skip"
    if cell.get("cell_type") != "markdown":
        return "-"
    first = "".join(cell.get("source", "")).lstrip().split("\n", 1)[0]
    if first.startswith(("# ", "## ")):
        return "slide"
    if first.startswith("### "):
        return "subslide"
    return "-"


def split_at_headings(cell: dict) -> list[dict]:
    """A markdown cell cut before every heading line after its first line (outside code fences).

    The parts keep the cell's metadata; the first keeps its id, the others get ``<id>-<k>``.
    """
    if cell.get("cell_type") != "markdown":
        return [cell]
    source = cell.get("source", "")
    lines = ("".join(source) if isinstance(source, list) else source).split("\n")
    parts, current, fenced = [], [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if HEADING.match(line) and not fenced and any(x.strip() for x in current):
            parts.append(current)
            current = []
        current.append(line)
    parts.append(current)
    if len(parts) == 1:
        return [cell]
    cells = []
    for k, part in enumerate(parts):
        while part and not part[-1].strip():
            part = part[:-1]
        text = [line + "\n" for line in part[:-1]] + part[-1:]  # lines, as nbformat stores them
        new = {**cell, "metadata": dict(cell.get("metadata", {})), "source": text}
        if k and "id" in cell:
            new["id"] = f"{cell['id'][:60]}-{k}"
        cells.append(new)
    return cells


def apply(path: Path, *, check: bool = False) -> list[int]:
    """Set (or with ``check``, compare) every cell's slide type; return the cells that differ.

    Markdown cells with a heading below their first line are split there first; such a cell
    counts as differing (its index as read).
    """
    notebook = json.loads(path.read_text(encoding="utf-8"))
    parts = [split_at_headings(cell) for cell in notebook["cells"]]
    differ = {index for index, cell_parts in enumerate(parts) if len(cell_parts) > 1}
    if not check:
        notebook["cells"] = [cell for cell_parts in parts for cell in cell_parts]
    for index, cell in enumerate(notebook["cells"]):
        wanted = slide_type(cell)
        if index == 0:
            wanted = "slide"
        meta = cell.setdefault("metadata", {})
        if meta.get("slideshow", {}).get("slide_type") != wanted:
            differ.add(index)
            meta["slideshow"] = {"slide_type": wanted}
    if differ and not check:
        text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        path.write_text(text, encoding="utf-8")
    return sorted(differ)


# The slide as the slides template lays it out (tools/nbconvert/slides): 1280x720 pixels, text
# 20 px on 30 px lines, code 15 px on 21 px lines, figures at most 1240 px wide and 600 px tall.
SLIDE_HEIGHT = 640  # 720 less reveal's margin and some slack for the estimate
SLIDE_WIDTH = 1240
TEXT_LINE, TEXT_CHARS = 30, 105
CODE_LINE, CODE_CHARS = 21, 125
HEADING_HEIGHT = {1: 100, 2: 80, 3: 64}
BLANK_LINE = 26  # the space between two paragraphs
CELL_GAP = 16
FIGURE_MAX_HEIGHT = 600
OUTPUT_MAX_HEIGHT = 420  # a longer text output scrolls inside its own box (see the template)
HEADED = HEADING_HEIGHT[3] + CELL_GAP  # what a continuation's heading takes
# A code cell taller than a slide under a heading is squeezed, by tags the template styles: its
# code scrolls in a box at most CODE_TIER px tall ("slides-code-300"), its figures are shrunk to
# at most FIGURE_TIER px ("slides-figure-240"); the tiers are the template's.
TIERS = (180, 240, 300, 360, 420, 480, 540)
MIN_FIGURE = 240  # a figure is not shrunk below this, its code box shrinks first
OUTPUT_TAG = "slides-output"  # the outputs of a cell too tall for one slide, on their own


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _wrapped_lines(text: str, width: int) -> int:
    return sum(max(1, -(-len(line) // width)) for line in text.rstrip("\n").split("\n"))


def png_size(data: str) -> tuple[int, int]:
    """Width and height in pixels of a base64 PNG (read from its IHDR chunk)."""
    head = base64.b64decode("".join(data.split())[:44])
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def figure_height(output: dict) -> int:
    """The height in pixels one output takes on a slide."""
    data = output.get("data", {})
    if "image/png" in data:
        width, height = png_size(data["image/png"])
        meta = output.get("metadata", {}).get("image/png", {})
        width, height = meta.get("width", width), meta.get("height", height)
        scale = min(1.0, SLIDE_WIDTH / max(width, 1), FIGURE_MAX_HEIGHT / max(height, 1))
        return int(height * scale) + 8
    if output.get("output_type") == "stream":
        text = _source({"source": output.get("text", "")})
    elif "text/html" in data:
        text = _source({"source": data["text/html"]})
        return min(OUTPUT_MAX_HEIGHT, 28 * max(1, text.count("<tr")) + 20)
    else:
        text = _source({"source": data.get("text/plain", "")})
    return min(OUTPUT_MAX_HEIGHT, CODE_LINE * _wrapped_lines(text, CODE_CHARS) + 12)


def cell_height(cell: dict) -> int:
    """The estimated height in pixels of a cell on a 1280x720 slide (input and outputs)."""
    text = _source(cell)
    if cell.get("cell_type") == "markdown":
        height, fenced = 0, False
        for line in text.strip().split("\n"):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            level = len(line) - len(line.lstrip("#"))
            if not fenced and 1 <= level <= 3 and line[level : level + 1] == " ":
                height += HEADING_HEIGHT[level]
            elif fenced:
                height += CODE_LINE
            elif line.strip().startswith("$$") or line.strip().startswith("\\begin"):
                height += 2 * TEXT_LINE
            elif line.strip():
                height += TEXT_LINE * _wrapped_lines(line, TEXT_CHARS)
            else:
                height += BLANK_LINE
        return height + CELL_GAP
    if cell.get("cell_type") != "code":
        return 0
    height = CODE_LINE * _wrapped_lines(text, CODE_CHARS) + 20 if text.strip() else 0
    return height + sum(figure_height(o) for o in cell.get("outputs", [])) + CELL_GAP


def _code_height(cell: dict) -> int:
    text = _source(cell)
    return CODE_LINE * _wrapped_lines(text, CODE_CHARS) + 20 if text.strip() else 0


def _tier(tags: list[str], kind: str) -> int | None:
    for tag in tags:
        if tag.startswith(f"slides-{kind}-"):
            return int(tag.rsplit("-", 1)[1])
    return None


def slide_height(cell: dict) -> int:
    """``cell_height`` as the template shows the cell, with its squeeze tags applied."""
    if cell.get("cell_type") != "code":
        return cell_height(cell)
    tags = cell.get("metadata", {}).get("tags", [])
    code, figure = _tier(tags, "code"), _tier(tags, "figure")
    height = min(_code_height(cell), code or 10**6) + CELL_GAP
    for output in cell.get("outputs", []):
        shown = figure_height(output)
        if figure and "image/png" in output.get("data", {}):
            shown = min(shown, figure + 8)
        height += shown
    return height


def split_paragraphs(cell: dict, room: int) -> list[dict]:
    """A markdown cell taller than ``room``, cut at its blank lines (outside code and math).

    Each part is a cell of its own, so that ``fit`` can start a sub-slide between two parts.
    """
    if cell.get("cell_type") != "markdown" or cell_height(cell) <= room:
        return [cell]
    parts, current, fenced, math = [], [], False, False
    for line in _source(cell).split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if line.strip().startswith("$$") and line.strip().count("$$") == 1:
            math = not math
        if not line.strip() and not fenced and not math and any(x.strip() for x in current):
            parts.append(current)
            current = []
        elif line.strip() or current:
            current.append(line)
    if any(x.strip() for x in current):
        parts.append(current)
    cells = []
    for k, part in enumerate(parts):
        new = {
            **cell,
            "metadata": copy.deepcopy(cell.get("metadata", {})),
            "source": "\n".join(part),
        }
        if k and "id" in cell:
            new["id"] = f"{cell['id'][:60]}-p{k}"
        cells.append(new)
    return cells


def split_outputs(cell: dict, room: int) -> list[dict]:
    """A code cell whose code and outputs do not fit ``room`` together, as two cells or more.

    The first holds the code, the next (tagged ``OUTPUT_TAG``: the template hides its empty
    input) the outputs, so the result can take the next sub-slide whole; outputs that do not
    fit one slide together (four wide figures) are split into as many such cells as they need.
    """
    if cell.get("cell_type") != "code" or not cell.get("outputs") or not _source(cell).strip():
        return [cell]
    if slide_height(cell) <= room:
        return [cell]
    code = {**cell, "metadata": copy.deepcopy(cell.get("metadata", {})), "outputs": []}
    groups, height = [[]], 0  # outputs taller than a slide together: one sub-slide per group
    for output in cell["outputs"]:
        if groups[-1] and height + figure_height(output) > room - CELL_GAP:
            groups.append([])
            height = 0
        groups[-1].append(output)
        height += figure_height(output)
    results = []
    for number, outputs in enumerate(groups):
        result = {**cell, "metadata": copy.deepcopy(cell.get("metadata", {})), "source": ""}
        result["metadata"].setdefault("tags", []).append(OUTPUT_TAG)
        result["outputs"] = outputs
        if "id" in cell:
            result["id"] = f"{cell['id'][:60]}-out{number or ''}"
        results.append(result)
    return [code, *results]


def squeeze(cell: dict, room: int) -> None:
    """Tag a code cell so that it shows in ``room`` pixels (the tallest tiers that fit)."""
    if cell.get("cell_type") != "code" or slide_height(cell) <= room:
        return
    code = _code_height(cell)
    figures = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    others = sum(figure_height(o) for o in cell.get("outputs", []) if o not in figures)
    shown = sum(figure_height(o) for o in figures)
    left = room - CELL_GAP - others  # for the code and the figures
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if code + min(shown, MIN_FIGURE * len(figures)) > left:  # the code box first
        fits = [t for t in TIERS if t + MIN_FIGURE * len(figures) <= left]
        tags.append(f"slides-code-{fits[-1] if fits else TIERS[0]}")
        code = min(code, fits[-1] if fits else TIERS[0])
    if figures and code + shown > left:
        each = (left - code) // len(figures) - 8
        fits = [t for t in TIERS if t <= each]
        tags.append(f"slides-figure-{fits[-1] if fits else TIERS[0]}")


def _has_figure(cell: dict) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def _heading(cell: dict) -> str | None:
    first = _source(cell).lstrip().split("\n", 1)[0]
    return first.lstrip("#").strip() if HEADING.match(first) else None


def fit(notebook: dict) -> dict:
    """A copy of an executed notebook laid out for a 1280x720 projector (see the docstring).

    Every cell keeps its slide type from the headings (``slide_type``); a cell that would push
    its slide past ``SLIDE_HEIGHT`` starts a sub-slide headed "<section heading> (cont.)", and
    the first markdown cell without a heading after a code cell with a figure (code cells
    without a figure may come between) becomes the notes of that figure's slide.
    """
    notebook = copy.deepcopy(notebook)
    cells: list[dict] = []
    used, heading = 0, None
    figure_at = None  # where the last figure's cell is in ``cells``, while its text may follow
    room = SLIDE_HEIGHT - HEADED
    for index, original in enumerate(notebook["cells"]):
        parts = [p for part in split_at_headings(original) for p in split_paragraphs(part, room)]
        for cell in (c for part in parts for c in split_outputs(part, room)):
            kind = "slide" if index == 0 and not cells else slide_type(cell)
            meta = cell.setdefault("metadata", {})
            if kind == "skip":
                meta["slideshow"] = {"slide_type": "skip"}
                cells.append(cell)
                continue
            if kind in ("slide", "subslide"):
                used, heading, figure_at = 0, _heading(cell) or heading, None
            elif cell.get("cell_type") == "markdown" and figure_at is not None:
                # what to see: the notes of the figure's own slide (code cells that check the
                # figure may come between; the notes go right after the figure's cell)
                meta["slideshow"] = {"slide_type": "notes"}
                cells.insert(figure_at + 1, cell)
                figure_at = None
                continue
            squeeze(cell, room)  # a cell taller than a slide under a heading
            height = slide_height(cell)
            if kind == "-" and used and used + height > SLIDE_HEIGHT:
                title = f"### {heading} (cont.)" if heading else "### (cont.)"
                cells.append(
                    {
                        "cell_type": "markdown",
                        "metadata": {"slideshow": {"slide_type": "subslide"}},
                        "source": title,
                    }
                )
                used = HEADED
            meta["slideshow"] = {"slide_type": kind}
            used += height
            cells.append(cell)
            if cell.get("cell_type") == "code" and _has_figure(cell):
                figure_at = len(cells) - 1
            elif cell.get("cell_type") != "code":
                figure_at = None
    has_ids = any("id" in cell for cell in notebook["cells"])
    for number, cell in enumerate(cells):  # nbformat 4.5 wants an id on every cell
        if has_ids and "id" not in cell:
            cell["id"] = f"fit-{number}"
    notebook["cells"] = cells
    return notebook


def main(argv: list[str]) -> int:
    """Apply or check the slide metadata of the notebooks named in ``argv`` (or ``fit`` one)."""
    if argv[:1] == ["fit"]:
        source, target = Path(argv[1]), Path(argv[2])
        notebook = fit(json.loads(source.read_text(encoding="utf-8")))
        text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        target.write_text(text, encoding="utf-8")
        kinds = [c["metadata"]["slideshow"]["slide_type"] for c in notebook["cells"]]
        print(
            f"{target.name}: {kinds.count('slide')} slides, {kinds.count('subslide')} "
            f"sub-slides, {kinds.count('notes')} speaker notes"
        )
        return 0
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"]
    failed = False
    for path in paths:
        differ = apply(path, check=check)
        if differ and check:
            failed = True
            print(
                f"{path.name}: cells {differ} lack their slide metadata or have a heading "
                "below their first line; run make strip"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
