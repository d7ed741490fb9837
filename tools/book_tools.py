r"""Make the executed book clean and offline: one progress line per epoch, local math and slides.

Subcommands (used by ``make book`` and ``make slides``):

* ``clean-progress NB...``: rewrite the stream outputs of executed notebooks as a page should
  show them, so Keras' per-step progress bar leaves one line per epoch instead of every bar
  state, and drop TensorFlow's C++ start-up log lines from stderr;
* ``check-progress NB...``: fail (exit 1) if a stored output still holds per-step progress
  (control characters, or a bar line short of its last step followed by another bar line, in
  a cell's outputs read in a row, ANSI colours ignored);
* ``check-alt HTML...``: fail if an image of the HTML pages has no alt text of its own
  (nbconvert's placeholder "No description has been provided" counts as none);
* ``assets BUILD``: copy MathJax (from the ``jupyter_server_mathjax`` package) and reveal.js,
  RequireJS and jQuery (vendored in ``tools/vendor``) next to the HTML, so math and slides
  render with no network: a page requests nothing from any host (the book template leaves out
  nbconvert's RequireJS, mermaid and widget-manager scripts, see tools/nbconvert/book);
* ``check-offline HTML...``: fail if a page would load anything from a host (an ``http(s)://``
  or ``//`` address in a ``src``, a stylesheet ``href``, an ``import`` or a CSS ``url()``).

How ``clean-progress`` works (measured on a notebook executed by ``jupyter nbconvert --execute``
with a 2-epoch ``fit(verbose=1)`` of 60 steps, a 30-step ``keras.utils.Progbar`` and stderr
prints; nbconvert 7.17.2, Keras 3.15.1). ipykernel stores a bar as one stream output per
flush, each chunk ``"\b" * width + "\r" + state``: the ``fit`` cell held 10 outputs (9 on
stdout, 3 bar states an epoch, 1 on stderr), the ``Progbar`` cell 8. nbconvert's
``CoalesceStreamsPreprocessor`` does most of the work: it merges consecutive outputs of the same
stream and keeps only the text after a line's last ``\r`` (the backspaces before it go too),
which leaves the final bar of each epoch. It runs here rather than as an option of an
nbconvert step, so the stored notebook that ``check-progress`` reads is clean too (nbclient's own
``coalesce_streams`` is no config option: ``--ExecutePreprocessor.coalesce_streams=True`` left
all 10 outputs). Left by hand, because the library does not do it:

* dropping TensorFlow's C++ log lines (``I0000 00:00:... port.cc:153] oneDNN ...``) from stderr,
  *before* coalescing: the library keeps them, and a stderr output between two chunks of a
  bar keeps the chunks apart, so a state survives (`` 1/12 ━━`` stays, then the log, then
  ``12/12 ━━``); in the run measured, the cuInit error came just before ``fit``'s first chunk;
* ``render_terminal`` after it: the library leaves a backspace not followed by ``\r``
  (``"abc\b\bZ"``) and a ``\r`` before a newline (``"50%\r\n"``) in the text, which the
  check rejects; on Keras' bars it only strips the padding spaces;
* dropping the stream outputs left empty.

The hand-written merge of consecutive bar lines this replaced never fired on real output: it
worked one output at a time and its pattern missed Keras 3's ANSI-coloured bars, so the book
kept 3 states an epoch, 7 for the ``Progbar``, and the old check (same blind spots) passed them.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe,local/book"
"""The MathJax address the HTML pages use, relative to the page (see ``assets``)."""

# MathJax as packaged by jupyter_server_mathjax: the STIX web fonts only. Without this config,
# formulas that need a TeX font (\|, \mathbb, \Big) show "Math Processing Error"; the two
# styles stop the requests a page made for files that are not there (measured in Chromium):
# the hidden MathML copy for screen readers asked for MathJax_AMS and MathJax_Script (.otf) for
# \mathbb and \mathcal, and the font test for ``url('about:blank')``.
_MATHJAX_LOCAL_CONFIG = """MathJax.Hub.Config({
  "HTML-CSS": {
    availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
    styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank')"}}
  },
  styles: {".MJX_Assistive_MathML, .MJX_Assistive_MathML *": {"font-family": "serif !important"}}
});
MathJax.Ajax.loadComplete("[MathJax]/config/local/book.js");
"""

REVEAL_PREFIX = "reveal.js"
"""The reveal.js address the slides use, relative to the page."""

# A progress-bar line, once ANSI colours are dropped: " 53/60 ━━━━━━━━━━━━━━━━━━━━ 0s 1ms/step ..."
# (groups: step, steps). Keras 3 writes "\x1b[1m53/60\x1b[0m \x1b[32m━━━..."
_PROGRESS = re.compile(r"^\s*(\d+)/(\d+)\s.*(━|step|\[=*[>.]*\])")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
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


def _text(output: dict) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else text


def clean_outputs(outputs: list[dict]) -> list[dict]:
    """The outputs of one code cell with their streams cleaned (see the module docstring)."""
    import nbformat
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    kept = []
    for output in outputs:
        if output.get("output_type") == "stream":
            text = _text(output)
            if output.get("name") == "stderr":
                text = "\n".join(line for line in text.split("\n") if not _TF_LOG.match(line))
            if not text:
                continue
            output = {**output, "text": text}
        kept.append(output)
    cell = nbformat.from_dict({"cell_type": "code", "outputs": kept})
    cell, _ = CoalesceStreamsPreprocessor().preprocess_cell(cell, {}, 0)
    for output in cell.outputs:
        if output.output_type == "stream":
            output.text = render_terminal(output.text)
    return [o for o in cell.outputs if o.output_type != "stream" or o.text.strip()]


def collapse_progress(text: str) -> str:
    """What ``clean_outputs`` makes of one stdout text."""
    outputs = clean_outputs([{"output_type": "stream", "name": "stdout", "text": text}])
    return "".join(output["text"] for output in outputs)


def clean_progress(path: Path) -> int:
    """Clean the stream outputs of one executed notebook in place; return the cells changed."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    changed = 0
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code" and cell.get("outputs"):
            clean = clean_outputs(cell["outputs"])
            changed += [_text(o) for o in clean] != [_text(o) for o in cell["outputs"]]
            cell["outputs"] = clean
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def progress_problems(path: Path) -> list[str]:
    """Code cells of ``path`` whose outputs show per-step progress, described in one line each.

    A cell's outputs are read in a row, each starting a new line as on the page; a bar line
    short of its last step ("53/60") followed by another bar line is per-step progress.
    """
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = [c for c in notebook.get("cells", []) if c.get("cell_type") == "code"]
    problems = []
    for number, cell in enumerate(cells):
        outputs = cell.get("outputs", [])
        texts = [_text(o) if o.get("output_type") == "stream" else "" for o in outputs]
        if any(_CONTROL.search(text) for text in texts):
            problems.append(f"{path.name}: code cell {number} holds \\r or \\b characters")
            continue
        lines = [line for text in texts for line in _ANSI.sub("", text).rstrip("\n").split("\n")]
        bars = [_PROGRESS.match(line) for line in lines]
        if any(a and b and a[1] != a[2] for a, b in zip(bars, bars[1:], strict=False)):
            problems.append(f"{path.name}: code cell {number} has per-step progress")
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


# What makes a browser fetch from a host: an absolute address in a src, a stylesheet's href,
# a module import, a CSS url() or a RequireJS path.
_REMOTE = re.compile(
    r"""(?:\bsrc\s*=\s*|<link\b[^>]*\bhref\s*=\s*|\bimport\s*\(?\s*|\burl\(\s*)"""
    r"""["']?((?:https?:)?//[^"')\s>]+)""",
    re.I,
)


def remote_requests(path: Path) -> list[str]:
    """The addresses on other hosts that an HTML page would load (none for an offline page)."""
    return _REMOTE.findall(path.read_text(encoding="utf-8"))


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
    usage = __doc__.split("\n\nHow ")[0]
    if len(argv) < 2:
        print(usage)
        return 2
    command, args = argv[0], [Path(a) for a in argv[1:]]
    if command == "clean-progress":
        for path in args:
            print(f"{path.name}: stream outputs cleaned in {clean_progress(path)} cells")
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
    if command == "check-offline":
        remote = {path.name: remote_requests(path) for path in args}
        bad = {name: urls for name, urls in remote.items() if urls}
        ok = f"{len(args)} pages load nothing from another host"
        print(f"requests to other hosts: {bad}" if bad else ok)
        return 1 if bad else 0
    if command == "assets":
        copy_assets(args[0])
        return 0
    print(usage)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
