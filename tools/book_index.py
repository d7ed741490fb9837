"""Write build/index.html: the course title, the mode and date of the build, and the notebooks.

Per notebook (lecture order, with its title): links to its page, its executed notebook and its
slides.

Usage: ``python tools/book_index.py BUILD NOTEBOOK... [--mode FAST|default]``
"""

from __future__ import annotations

import datetime
import html
import json
import sys
from pathlib import Path

COURSE = "Advanced Convolutional Neural Networks"
MODES = {
    "FAST": "FAST mode (data subsets, fewer epochs: each section's point, quickly)",
    "default": "default mode (the full lesson)",
}
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 46rem;
       margin: 3rem auto; padding: 0 1rem; line-height: 1.5; color: #222; }
h1 { font-size: 1.9rem; margin-bottom: 0.2rem; }
p.built { color: #555; margin-top: 0; }
ol { padding-left: 1.4rem; }
li { margin: 0.7rem 0; }
li a.page { font-size: 1.15rem; font-weight: 600; text-decoration: none; }
li .more { font-size: 0.9rem; color: #555; }
"""


def title_of(notebook: Path) -> str:
    """Return the first Markdown heading of a notebook, or its file name."""
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return notebook.stem


def page(notebooks: list[Path], mode: str, built: datetime.date) -> str:
    """The index page's HTML."""
    items = []
    for path in notebooks:
        name = html.escape(path.stem)
        items.append(
            f'<li><a class="page" href="{name}.html">{html.escape(title_of(path))}</a><br>'
            f'<span class="more"><a href="{name}.ipynb">executed notebook</a> · '
            f'<a href="slides/{name}.slides.html">slides</a></span></li>'
        )
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{COURSE}</title><style>{STYLE}</style></head><body>\n"
        f"<h1>{COURSE}</h1>\n"
        f"<p class='built'>Course notebooks, executed in {html.escape(MODES.get(mode, mode))}; "
        f"built on {built.isoformat()}. The slides come from <code>make slides</code>.</p>\n"
        f"<ol>\n{chr(10).join(items)}\n</ol>\n</body></html>\n"
    )


def main(build: str, notebooks: list[str], mode: str = "default") -> None:
    """Write the index page of ``build`` for ``notebooks`` executed in ``mode``."""
    out = Path(build)
    paths = [Path(n) for n in notebooks]
    (out / "index.html").write_text(page(paths, mode, datetime.date.today()), encoding="utf-8")
    print(f"wrote {out / 'index.html'} ({len(paths)} notebooks, {mode} mode)")


if __name__ == "__main__":
    args = sys.argv[1:]
    chosen = "default"
    if "--mode" in args:
        at = args.index("--mode")
        chosen = args[at + 1]
        del args[at : at + 2]
    main(args[0], args[1:], chosen)
