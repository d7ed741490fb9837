"""The slides and the book in headless Chromium at 1280x720, network blocked (skipped without it).

A synthetic lesson (no notebook is executed) goes through ``make slides``' steps: ``tools/slides.py
fit``, nbconvert with the Makefile's options, ``book_tools.py assets``. In the browser, every
slide must fit 1280x720 without scrolling, no ``pre`` may be cut at its right edge (wider than its
box only with a visible scroll bar), and no heading may change case; a book page must load
nothing but local files.
"""

import html
import importlib.util
import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs chromium (apt-get install chromium)"
)


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slides = _load("slides", ROOT / "tools" / "slides.py")
book_tools = _load("book_tools", ROOT / "tools" / "book_tools.py")
makefile_config = _load("test_book_tools", ROOT / "tests" / "test_book_tools.py").makefile_config

# Measured in the page once it has loaded: every innermost <section> shown in turn.
MEASURE = """
window.addEventListener('load', function () { setTimeout(function () {
  var slides = document.querySelector('.reveal .slides');
  var H = slides ? parseInt(slides.style.height) || 720 : 0;
  var out = {slides: 0, tall: [], cut: [], cased: []};
  var leaves = Array.prototype.filter.call(document.querySelectorAll('.reveal .slides section'),
    function (s) { return !s.querySelector('section'); });
  leaves.forEach(function (s) {
    var up = s.parentElement.tagName === 'SECTION' ? s.parentElement : null;
    if (up) up.style.display = 'block';  // a hidden stack hides its slides
    s.style.display = 'block'; s.style.height = 'auto';
    out.slides += 1;
    if (s.scrollHeight > H) out.tall.push(s.scrollHeight);
    s.querySelectorAll('pre').forEach(function (p) {
      if (p.closest('aside') || p.scrollWidth <= p.clientWidth + 1) return;
      var st = getComputedStyle(p);
      var bar = /auto|scroll/.test(st.overflowX) && p.offsetHeight - p.clientHeight > 0;
      if (!bar) out.cut.push([p.scrollWidth, p.clientWidth]);
    });
    s.querySelectorAll('h1,h2,h3,h4').forEach(function (h) {
      // the heading's own text (not MathJax's): shown as written unless a text-transform applies
      var walk = document.createTreeWalker(h, NodeFilter.SHOW_TEXT), node;
      while ((node = walk.nextNode())) {
        var parent = node.parentElement;
        if (parent.closest('.MathJax, .MathJax_Display, .MJX_Assistive_MathML, script')) continue;
        var transform = getComputedStyle(parent).textTransform;
        if (/[a-z]/i.test(node.textContent) && transform !== 'none')
          out.cased.push([h.textContent.trim().slice(0, 60), transform]);
      }
    });
  });
  var pre = document.createElement('pre'); pre.id = 'measured';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
}, 1500); });
"""


def _png(width, height):
    """A grey PNG of the given size."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\0" + b"\x80" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
    return __import__("base64").b64encode(png + chunk(b"IEND", b"")).decode()


def _lesson():
    def md(text):
        return {"cell_type": "markdown", "metadata": {}, "source": text}

    def code(source, *outputs):
        return {
            "cell_type": "code",
            "metadata": {},
            "execution_count": 1,
            "source": source,
            "outputs": list(outputs),
        }

    def figure(width, height):
        data = {"image/png": _png(width, height), "text/plain": "<Figure>"}
        meta = {"image/png": {"alt": "Figure: grey panels."}}
        return {"output_type": "display_data", "metadata": meta, "data": data}

    long_line = "result = attacks.pgd(model, x, y, epsilon=0.3, num_steps=40, step_size=0.01" + (
        ", random_start=True, seed=0, norm='linf', clip_value_min=0.0, clip_value_max=1.0)"
    )
    stream = {"output_type": "stream", "name": "stdout", "text": "| " + "x" * 220 + " |\n"}
    body = "\n".join(f"value_{k} = compute({k})  # one line of a longer cell" for k in range(14))
    cells = [
        md("# 05 — Adversarial attacks"),
        md("## 13. Beyond the ε-ball\n\n" + "A paragraph of the lesson, about robustness. " * 25),
        code(long_line + "\n" + body, stream),
        code("plot_grid()", figure(1330, 520)),
        md("What to see: the panels agree."),
        code(body),
        code("curve()", figure(900, 420)),
        md("What to see: the curve falls."),
        md("### 13.1 A sub-part with a formula $\\|\\delta\\|_\\infty \\le \\epsilon$"),
        code("\n".join(f"step_{k}()" for k in range(70))),
    ]
    for number, cell in enumerate(cells):
        cell["id"] = f"cell-{number}"
    return {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _page_requests(netlog):
    """The addresses the page itself asked the network for (not Chromium's own traffic)."""
    events = json.loads(netlog.read_text()).get("events", [])
    return sorted(
        {
            e["params"]["url"]
            for e in events
            if str(e.get("params", {}).get("network_isolation_key", "")).startswith("file://")
        }
    )


def _measure(page):
    netlog = page.with_name(page.stem + ".netlog.json")
    probe = page.with_name("measure-" + page.name)
    probe.write_text(page.read_text().replace("</body>", f"<script>{MEASURE}</script></body>"))
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # the network blocked
        "--window-size=1280,720",
        "--virtual-time-budget=15000",
        f"--log-net-log={netlog}",
        "--dump-dom",
        probe.as_uri(),
    ]
    dom = subprocess.run(args, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, "the page did not finish loading in Chromium"
    result = json.loads(html.unescape(found.group(1)))
    result["network"] = _page_requests(netlog)
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import nbformat
    from nbconvert import HTMLExporter, SlidesExporter

    out = tmp_path_factory.mktemp("book")
    executed = out / "05_adversarial_attacks.ipynb"
    executed.write_text(json.dumps(_lesson()))
    fitted = nbformat.from_dict(slides.fit(json.loads(executed.read_text())))
    resources = {"metadata": {"name": executed.stem}}
    deck, _ = SlidesExporter(
        config=makefile_config("SLIDES_OPTS", "SlidesExporter")
    ).from_notebook_node(fitted, resources=dict(resources))
    page, _ = HTMLExporter(config=makefile_config("HTML_OPTS", "HTMLExporter")).from_notebook_node(
        nbformat.from_dict(_lesson()), resources=dict(resources)
    )
    (out / "05_adversarial_attacks.html").write_text(page)
    (out / "slides").mkdir()
    (out / "slides" / "05_adversarial_attacks.slides.html").write_text(deck)
    book_tools.copy_assets(out)
    book_tools.copy_assets(out / "slides")
    return out


def test_every_slide_fits_a_projector_with_no_code_cut_and_headings_as_written(built):
    result = _measure(built / "slides" / "05_adversarial_attacks.slides.html")
    assert result["slides"] >= 4  # the section was cut into sub-slides
    assert result["tall"] == [], "slides taller than 720 px (they would scroll)"
    assert result["cut"] == [], "code cut at the right edge with no scroll bar"
    assert result["cased"] == [], "headings shown in another case"
    assert result["network"] == []


def test_a_book_page_makes_no_network_request(built):
    assert _measure(built / "05_adversarial_attacks.html")["network"] == []


def test_the_network_check_sees_a_page_request(tmp_path):
    """The check above could fail: a page with a CDN script shows that request, nothing else."""
    page = tmp_path / "remote.html"
    page.write_text(
        '<html><body><script src="https://cdn.example.com/require.js"></script></body></html>'
    )
    assert _measure(page)["network"] == ["https://cdn.example.com/require.js"]
