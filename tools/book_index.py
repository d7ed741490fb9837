"""Write build/index.html: the executed notebooks in lecture order, with their titles."""

import html
import json
import sys
from pathlib import Path


def title_of(notebook: Path) -> str:
    """Return the first Markdown heading of a notebook, or its file name."""
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return notebook.stem


def main(build: str, notebooks: list[str]) -> None:
    """Write the index page linking each notebook's HTML and executed .ipynb."""
    out = Path(build)
    items = []
    for path in map(Path, notebooks):
        name = html.escape(path.stem)
        items.append(
            f'<li><a href="{name}.html">{html.escape(title_of(path))}</a> '
            f'<small>(<a href="{name}.ipynb">executed notebook</a>)</small></li>'
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<title>Advanced Convolutional Neural Networks</title></head><body>"
        "<h1>Advanced Convolutional Neural Networks: course notebooks</h1>"
        f"<ol>{''.join(items)}</ol></body></html>\n"
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    print(f"wrote {out / 'index.html'} ({len(items)} notebooks)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
