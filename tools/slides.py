"""Give every notebook cell its slide metadata, from the notebook's own headings.

``#`` and ``##`` headings start a slide, ``###`` headings a sub-slide (below it, in reveal.js),
and every other cell continues the current one. The same metadata drives RISE in JupyterLab
(present and run the cells live) and ``make slides`` (reveal.js HTML). Run by ``make strip``,
so a notebook is committed with it; ``--check`` only reports cells without it (exit 1).

Usage: ``python tools/slides.py [--check] NOTEBOOK...``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


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


def apply(path: Path, *, check: bool = False) -> list[int]:
    """Set (or with ``check``, compare) every cell's slide type; return the cells that differ."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    differ = []
    for index, cell in enumerate(notebook["cells"]):
        wanted = slide_type(cell)
        if index == 0:
            wanted = "slide"
        meta = cell.setdefault("metadata", {})
        if meta.get("slideshow", {}).get("slide_type") != wanted:
            differ.append(index)
            meta["slideshow"] = {"slide_type": wanted}
    if differ and not check:
        text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        path.write_text(text, encoding="utf-8")
    return differ


def main(argv: list[str]) -> int:
    """Apply or check the slide metadata of the notebooks named in ``argv``."""
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"]
    failed = False
    for path in paths:
        differ = apply(path, check=check)
        if differ and check:
            failed = True
            print(f"{path.name}: cells {differ} lack their slide metadata; run make strip")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
