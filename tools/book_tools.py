"""Make the executed book clean and offline: one progress line per epoch, local math and slides.

Subcommands (used by ``make book`` and ``make slides``):

* ``clean-progress NB...``: rewrite the stream outputs of executed notebooks as a terminal
  would show them (carriage returns and backspaces applied), so Keras' per-step progress bar
  leaves one line per epoch instead of hundreds of overwritten ones, and drop TensorFlow's
  C++ start-up log lines from stderr;
* ``check-progress NB...``: fail (exit 1) if a stored output still holds per-step progress
  (control characters, or several progress-bar lines in a row without an epoch between);
* ``check-alt HTML...``: fail if an image of the HTML pages has no alt text of its own
  (nbconvert's placeholder "No description has been provided" counts as none);
* ``assets BUILD``: copy MathJax (from the ``jupyter_server_mathjax`` package) and reveal.js
  (vendored in ``tools/vendor/reveal.js``) next to the HTML, so math and slides render with no
  network.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe,local/book"
"""The MathJax address the HTML pages use, relative to the page (see ``assets``)."""

_MATHJAX_LOCAL_CONFIG = """MathJax.Hub.Config({
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null}
});
MathJax.Ajax.loadComplete("[MathJax]/config/local/book.js");
"""

REVEAL_PREFIX = "reveal.js"
"""The reveal.js address the slides use, relative to the page."""

_PROGRESS = re.compile(r"^\s*\d+/\d+\s.*(━|step|\[=*[>.]*\])")
_CONTROL = re.compile(r"[\b\r]")
# TensorFlow's C++ start-up log (absl format, e.g. "I0000 00:00:... port.cc:153] oneDNN ..."),
# written to stderr before TF_CPP_MIN_LOG_LEVEL is read: noise in a book, not a lesson.
_TF_LOG = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called .*"
    r"|[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*"
    # the second line of cpu_feature_guard's message ("This TensorFlow binary is optimized...")
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler "
    r"flags\.)$"
)


def render_terminal(text: str) -> str:
    """Apply carriage returns and backspaces as a terminal does; return the visible lines."""
    lines: list[str] = []
    for raw in text.split("\n"):
        line: list[str] = []
        col = 0
        for char in raw:
            if char == "\r":
                col = 0
            elif char == "\b":
                col = max(col - 1, 0)
            else:
                if col < len(line):
                    line[col] = char
                else:
                    line.append(char)
                col += 1
        lines.append("".join(line).rstrip())
    return "\n".join(lines)


def collapse_progress(text: str) -> str:
    """Render ``text`` and keep only the last of consecutive progress-bar lines."""
    kept: list[str] = []
    for line in render_terminal(text).split("\n"):
        if kept and _PROGRESS.match(line) and _PROGRESS.match(kept[-1]):
            kept[-1] = line
        else:
            kept.append(line)
    return "\n".join(kept)


def _streams(notebook: dict):
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") == "stream":
                yield output


def clean_progress(path: Path) -> int:
    """Collapse the progress output of one executed notebook in place; return outputs changed."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    changed = 0
    for output in _streams(notebook):
        text = "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
        clean = collapse_progress(text)
        if output.get("name") == "stderr":
            clean = "\n".join(line for line in clean.split("\n") if not _TF_LOG.match(line))
        changed += clean != text
        output["text"] = clean
    for cell in notebook.get("cells", []):  # drop stream outputs left empty
        if "outputs" in cell:
            cell["outputs"] = [
                o for o in cell["outputs"] if o.get("output_type") != "stream" or o["text"].strip()
            ]
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def progress_problems(path: Path) -> list[str]:
    """Stored outputs of ``path`` that hold per-step progress, described in one line each."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    for number, output in enumerate(_streams(notebook)):
        text = "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
        if _CONTROL.search(text):
            problems.append(f"{path.name}: stream output {number} holds \\r or \\b characters")
            continue
        lines = text.split("\n")
        for a, b in zip(lines, lines[1:], strict=False):
            if _PROGRESS.match(a) and _PROGRESS.match(b):
                problems.append(f"{path.name}: stream output {number} has per-step progress")
                break
    return problems


_IMG = re.compile(r"<img\b[^>]*>", re.S)
_ALT = re.compile(r'\balt="([^"]*)"')
_PLACEHOLDER = "No description has been provided"


def images_without_alt(path: Path) -> int:
    """How many images of an HTML page have no alt text of their own."""
    missing = 0
    for tag in _IMG.findall(path.read_text(encoding="utf-8")):
        match = _ALT.search(tag)
        if match is None or not match.group(1).strip() or _PLACEHOLDER in match.group(1):
            missing += 1
    return missing


def copy_assets(build: Path) -> None:
    """Copy MathJax and reveal.js into ``build`` for offline pages and slides."""
    import jupyter_server_mathjax

    build.mkdir(parents=True, exist_ok=True)
    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    shutil.copytree(mathjax, build / "mathjax", dirs_exist_ok=True)
    # The packaged MathJax carries the STIX web fonts only: without this, formulas that need a
    # TeX font (\\|, \\mathbb, \\Big) show "Math Processing Error".
    local = build / "mathjax" / "config" / "local"
    local.mkdir(parents=True, exist_ok=True)
    (local / "book.js").write_text(_MATHJAX_LOCAL_CONFIG, encoding="utf-8")
    vendor = Path(__file__).parent / "vendor"
    shutil.copytree(vendor / "reveal.js", build / REVEAL_PREFIX, dirs_exist_ok=True)
    # The slides template loads reveal.js through RequireJS and uses jQuery: local copies, or a
    # page opened offline stays blank.
    for name in ("requirejs", "jquery"):
        shutil.copytree(vendor / name, build / name, dirs_exist_ok=True)


def main(argv: list[str]) -> int:
    """Run one subcommand; return the exit code."""
    if len(argv) < 2:
        print(__doc__)
        return 2
    command, args = argv[0], [Path(a) for a in argv[1:]]
    if command == "clean-progress":
        for path in args:
            print(f"{path.name}: {clean_progress(path)} outputs with progress bars collapsed")
        return 0
    if command == "check-progress":
        problems = [p for path in args for p in progress_problems(path)]
        print("\n".join(problems) or f"no per-step progress in {len(args)} notebooks")
        return 1 if problems else 0
    if command == "check-alt":
        counts = {path.name: images_without_alt(path) for path in args}
        bad = {name: n for name, n in counts.items() if n}
        print(f"images without alt text: {bad}" if bad else f"alt text on all {len(args)} pages")
        return 1 if bad else 0
    if command == "assets":
        copy_assets(args[0])
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
