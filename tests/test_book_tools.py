"""Tests of tools/book_tools.py: progress output collapsed to one line per epoch."""

import importlib.util
import json
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
spec = importlib.util.spec_from_file_location("book_tools", TOOLS / "book_tools.py")
book_tools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book_tools)


def keras_progbar_text(epochs=2, steps=50):
    """What Keras 3's dynamic progress bar writes to a notebook: backspaces, returns."""
    text, width = "", 0
    for epoch in range(1, epochs + 1):
        text += f"Epoch {epoch}/{epochs}\n"
        width = 0
        for step in range(1, steps + 1):
            bar = f"{step:>3}/{steps} ━━━━━━━━━━ 0s 3ms/step - accuracy: 0.{step:04d} - loss: 1.0"
            text += "\b" * width + "\r" + bar
            width = len(bar)
        text += "\n"
    return text


def test_render_terminal_applies_returns_and_backspaces():
    assert book_tools.render_terminal("abc\rX") == "Xbc"
    assert book_tools.render_terminal("abc\b\bZ") == "aZc"
    assert book_tools.render_terminal("one\ntwo\r2") == "one\n2wo"


def test_progress_collapses_to_one_line_per_epoch():
    clean = book_tools.collapse_progress(keras_progbar_text(epochs=3, steps=40))
    lines = [line for line in clean.split("\n") if line]
    assert len(lines) == 6  # "Epoch k/3" and the final bar of each epoch
    assert lines[1].startswith(" 40/40") and "accuracy: 0.0040" in lines[1]
    assert "\b" not in clean and "\r" not in clean


def test_plain_text_is_kept():
    text = "Training 'small_cnn'...\n12/40 is not a bar\nTest accuracy 0.87\n"
    assert book_tools.collapse_progress(text) == text


@pytest.mark.parametrize("dirty", [True, False])
def test_clean_and_check_executed_notebook(tmp_path, dirty):
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "source": "",
                "metadata": {},
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": keras_progbar_text()}
                ],
            }
        ]
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(notebook))
    assert book_tools.progress_problems(path)  # per-step progress is found
    if not dirty:
        assert book_tools.clean_progress(path) > 0
        assert book_tools.progress_problems(path) == []
        assert book_tools.main(["check-progress", str(path)]) == 0
    else:
        assert book_tools.main(["check-progress", str(path)]) == 1


def test_real_keras_fit_output_cleans_to_one_line_per_epoch(tmp_path):
    """A real ``fit(verbose=1)``, stored as ipykernel does: one stream output per write.

    A TensorFlow log line on stderr between two chunks of the first epoch must not keep them
    apart; before the fix the book kept every chunk (3 bar states an epoch) and passed the check.
    """
    import contextlib
    import io

    import keras
    import numpy as np

    writes = []

    class Chunks(io.StringIO):
        def write(self, text):
            writes.append(text)
            return len(text)

    x = np.random.default_rng(0).normal(size=(96, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    with contextlib.redirect_stdout(Chunks()):
        model.fit(x, (x[:, 0] > 0).astype("int32"), epochs=2, batch_size=8, verbose=1)
    assert sum("\r" in w for w in writes) >= 4, writes  # >= 2 bar states an epoch (1/12 ...)
    outputs = [{"output_type": "stream", "name": "stdout", "text": w} for w in writes]
    log = "W0000 00:00:1795447953.565725   27456 local_rendezvous.cc:404] aborting\n"
    outputs.insert(2, {"output_type": "stream", "name": "stderr", "text": log})
    cell = {"cell_type": "code", "source": "", "metadata": {}, "outputs": outputs}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [cell]}))
    assert book_tools.progress_problems(path)
    assert book_tools.clean_progress(path) == 1
    assert book_tools.progress_problems(path) == []
    (stdout,) = json.loads(path.read_text())["cells"][0]["outputs"]
    lines = [book_tools._ANSI.sub("", line) for line in stdout["text"].split("\n") if line]
    assert len(lines) == 4, lines  # "Epoch k/2" and the final bar of each epoch
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert lines[1].startswith("12/12 ") and lines[3].startswith("12/12 ")


def test_check_alt_counts_images_without_their_own_alt(tmp_path):
    page = tmp_path / "p.html"
    page.write_text(
        '<img src="a.png" alt="Figure: loss (1 panel).">'
        '<img alt="No description has been provided for this image" src="b.png">'
        '<img src="c.png">'
    )
    assert book_tools.images_without_alt(page) == 2
    assert book_tools.main(["check-alt", str(page)]) == 1


def test_tensorflow_startup_log_is_dropped_from_stderr_only(tmp_path):
    log = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1795447953.565725   27456 port.cc:153] oneDNN custom operations are on.\n"
        "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.\n"
        "UserWarning: a real warning stays\n"
    )
    cell = {
        "cell_type": "code",
        "source": "",
        "metadata": {},
        "outputs": [
            {"output_type": "stream", "name": "stderr", "text": log},
            {"output_type": "stream", "name": "stdout", "text": log},
        ],
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [cell]}))
    book_tools.clean_progress(path)
    stderr, stdout = json.loads(path.read_text())["cells"][0]["outputs"]
    assert stderr["text"].strip() == "UserWarning: a real warning stays"  # kept, not dropped
    assert stdout["text"] == log


def makefile_config(variable, exporter):
    """The nbconvert config of one of the Makefile's option sets (``HTML_OPTS``, ``SLIDES_OPTS``).

    Template folders are resolved from the repository root, so a test exports as ``make`` does.
    """
    import re
    import shlex

    from traitlets.config import Config

    makefile = (TOOLS.parent / "Makefile").read_text()

    def value_of(name):
        block = re.search(rf"^{name} := (.*?)(?<!\\)\n", makefile, re.M | re.S).group(1)
        return block.replace("\\\n", " ")

    block = value_of(variable).replace("$(TEMPLATES)", value_of("TEMPLATES"))
    block = block.replace("$(MATHJAX_URL)", value_of("MATHJAX_URL"))
    config = Config()
    options = shlex.split(block)
    for option, value in zip(options, options[1:], strict=False):
        if option == "--template":  # the page's own template (alt text on every figure)
            config[exporter].template_name = value
    for option in options:
        if option.startswith("--TemplateExporter."):  # template folders, from the repo root
            key, value = option.removeprefix("--TemplateExporter.").split("=", 1)
            config.TemplateExporter[key] = [str(TOOLS.parent / value)]
        elif option.startswith(f"--{exporter}."):
            key, value = option.removeprefix(f"--{exporter}.").split("=", 1)
            config[exporter][key] = value == "True" if value in ("True", "False") else value
    return config


def test_slides_load_no_script_from_the_network(tmp_path):
    """The Makefile's slide options make every <script src> local (offline lecture hall)."""
    import re

    import nbformat
    from nbconvert import SlidesExporter

    config = makefile_config("SLIDES_OPTS", "SlidesExporter")
    figure = nbformat.v4.new_code_cell("plt.show()")
    figure.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
            metadata={"image/png": {"alt": "Figure: a curve (1 panel)."}},
        )
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title"), figure])
    html, _ = SlidesExporter(config=config).from_notebook_node(nb)
    assert 'alt="Figure: a curve (1 panel)."' in html  # the figure's alt text on the slide
    sources = re.findall(r'<script[^>]*\bsrc="([^"]+)"', html)
    assert sources, "the slides load no script at all?"
    assert not [s for s in sources if re.match(r"(https?:)?//", s)], sources
    # ... and book_tools.py assets copies each of them next to the slides.
    book_tools.copy_assets(tmp_path)
    for source in sources:
        assert (tmp_path / source.split("?")[0]).exists(), source
    # reveal.js itself comes through <link href> (its CSS and theme) and RequireJS (its script
    # and plugins, as paths without ".js" or with it): every one of them is copied too.
    links = re.findall(r'<link[^>]*\bhref="(reveal\.js/[^"]+)"', html)
    required = re.findall(r'"(reveal\.js/[^"]+)"', html)
    assert links and required, "the slides no longer load reveal.js from reveal.js/?"
    for path in {*links, *required}:
        path = path.split("?")[0]
        found = tmp_path / path
        assert found.exists() or found.with_name(found.name + ".js").exists(), path
    css = (tmp_path / "reveal.js" / "dist" / "theme" / "white.css").read_text()
    for font in re.findall(r"@import url\(([^)]+)\)", css):  # the theme's fonts, offline too
        assert (tmp_path / "reveal.js" / "dist" / "theme" / font).exists(), font


def _lesson(title="# 13. Beyond the ε-ball"):
    import nbformat

    figure = nbformat.v4.new_code_cell("plt.show()")
    figure.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
            metadata={"image/png": {"alt": "Figure: a curve (1 panel)."}},
        )
    ]
    math = nbformat.v4.new_markdown_cell(r"$\|x\|_\infty \le \epsilon$ in $\mathbb{R}^n$")
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(title), math, figure])


def test_book_pages_load_nothing_from_another_host(tmp_path):
    """The book's template drops nbconvert's CDN scripts (RequireJS, mermaid, widgets)."""
    import re

    from nbconvert import HTMLExporter

    nb = _lesson()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    html, _ = HTMLExporter(config=makefile_config("HTML_OPTS", "HTMLExporter")).from_notebook_node(
        nb, resources={"metadata": {"name": "05_adversarial_attacks"}}
    )
    page = tmp_path / "page.html"
    page.write_text(html)
    assert book_tools.remote_requests(page) == []
    assert "require.js" not in html and "mermaid" not in html.lower()
    assert 'alt="Figure: a curve (1 panel)."' in html
    assert re.search(r'src="mathjax/MathJax\.js\?config=[^"]*local/book"', html)  # local math


def test_the_tab_title_is_the_first_level_one_heading():
    from nbconvert import HTMLExporter, SlidesExporter

    nb = _lesson("intro text\n\n# 05 — Adversarial `attacks`\n\n## 1. Part")
    resources = {"metadata": {"name": "05_adversarial_attacks"}}
    html, _ = HTMLExporter(config=makefile_config("HTML_OPTS", "HTMLExporter")).from_notebook_node(
        nb, resources=dict(resources)
    )
    assert "<title>05 — Adversarial attacks</title>" in html
    slides, _ = SlidesExporter(
        config=makefile_config("SLIDES_OPTS", "SlidesExporter")
    ).from_notebook_node(nb, resources=dict(resources))
    assert "<title>05 — Adversarial attacks slides</title>" in slides
    untitled = _lesson("## no level-one heading")
    html, _ = HTMLExporter(config=makefile_config("HTML_OPTS", "HTMLExporter")).from_notebook_node(
        untitled, resources=dict(resources)
    )
    assert "<title>05_adversarial_attacks</title>" in html  # the file name, as a fallback


def test_remote_requests_finds_every_kind_of_remote_load(tmp_path):
    page = tmp_path / "p.html"
    page.write_text(
        '<script src="https://cdn.example/require.js"></script>'
        '<link rel="stylesheet" href="//fonts.example/a.css">'
        '<script type="module">const m = await import("https://cdn.example/mermaid.mjs");</script>'
        "<style>@font-face { src: url('http://fonts.example/x.woff') }</style>"
        '<a href="https://example.org/paper.pdf">a link is not a request</a>'
        '<script src="mathjax/MathJax.js?config=x"></script><img src="data:image/png;base64,AA">'
    )
    assert book_tools.remote_requests(page) == [
        "https://cdn.example/require.js",
        "//fonts.example/a.css",
        "https://cdn.example/mermaid.mjs",
        "http://fonts.example/x.woff",
    ]
    assert book_tools.main(["check-offline", str(page)]) == 1


def test_mathjax_config_requests_no_font_that_is_not_shipped(tmp_path):
    """The local config keeps MathJax off the TeX fonts the package does not ship."""
    book_tools.copy_assets(tmp_path)
    config = (tmp_path / "mathjax" / "config" / "local" / "book.js").read_text()
    assert 'webFont: "STIX-Web"' in config
    assert ".MJX_Assistive_MathML" in config  # no MathJax_AMS / MathJax_Script .otf request
    assert "about:blank" not in config
    assert (tmp_path / "mathjax" / "fonts" / "HTML-CSS" / "STIX-Web").is_dir()
    assert not (tmp_path / "mathjax" / "fonts" / "HTML-CSS" / "TeX").exists()


def test_make_lab_starts_quiet_with_this_clones_kernel():
    """The kernel is installed into .venv (two clones never share it), with the log level set."""
    import re

    makefile = (TOOLS.parent / "Makefile").read_text()
    assert "$(BIN)/python tools/kernelspec.py" in makefile  # sys.prefix: this clone's venv
    assert "ipykernel install --user" not in makefile
    lab = re.search(r"^lab: setup\n\t(.*)$", makefile, re.M).group(1)
    assert lab.startswith("TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/jupyter lab")  # the venv's jupyter
