"""Give every notebook cell its slide metadata, from the notebook's own headings.

``#`` and ``##`` headings start a slide, ``###`` headings a sub-slide (below it, in reveal.js),
and every other cell continues the current one. A heading can only start a slide from the first
line of its cell, so a markdown cell with a heading further down is first split in two at that
heading (the text before it ends the previous slide). The same metadata drives RISE in JupyterLab
(present and run the cells live) and ``make slides`` (reveal.js HTML). Run by ``make strip``,
so a notebook is committed with it; ``--check`` only reports cells without it (exit 1).

Usage: ``python tools/slides.py [--check] NOTEBOOK...``
"""

from __future__ import annotations

import json
import re
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


def main(argv: list[str]) -> int:
    """Apply or check the slide metadata of the notebooks named in ``argv``."""
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
