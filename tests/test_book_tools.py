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


def test_slides_load_no_script_from_the_network(tmp_path):
    """The Makefile's slide options make every <script src> local (offline lecture hall)."""
    import re
    import shlex

    import nbformat
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    makefile = (TOOLS.parent / "Makefile").read_text()

    def variable(name):
        block = re.search(rf"^{name} := (.*?)(?<!\\)\n", makefile, re.M | re.S).group(1)
        return block.replace("\\\n", " ")

    block = variable("SLIDES_OPTS").replace("$(TEMPLATES)", variable("TEMPLATES"))
    block = block.replace("$(MATHJAX_URL)", variable("MATHJAX_URL"))
    config = Config()
    options = shlex.split(block)
    for option, value in zip(options, options[1:], strict=False):
        if option == "--template":  # the slides' own template (alt text on every figure)
            config.SlidesExporter.template_name = value
    for option in options:
        if option.startswith("--TemplateExporter."):  # template folders, from the repo root
            key, value = option.removeprefix("--TemplateExporter.").split("=", 1)
            config.TemplateExporter[key] = [str(TOOLS.parent / value)]
        elif option.startswith("--SlidesExporter."):
            key, value = option.removeprefix("--SlidesExporter.").split("=", 1)
            config.SlidesExporter[key] = value == "True" if value in ("True", "False") else value
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
