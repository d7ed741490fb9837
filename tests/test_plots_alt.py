"""Tests of the figures' alt text (cnn_utils.plots.describe_figure and the IPython formatter)."""

import base64

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cnn_utils import plots  # noqa: E402


def test_describe_figure_names_title_panels_and_labels():
    fig, axes = plt.subplots(1, 2)
    fig.suptitle("Accuracy against $\\epsilon$")
    axes[0].set_title("FGSM")
    axes[0].set_xlabel("epsilon")
    axes[0].set_ylabel("accuracy")
    axes[1].set_title("PGD")
    text = plots.describe_figure(fig)
    plt.close(fig)
    assert text.startswith("Figure: Accuracy against epsilon (2 panels)")
    assert "FGSM, accuracy against epsilon" in text and "PGD" in text


def test_every_figure_gets_a_description():
    fig = plt.figure()
    assert plots.describe_figure(fig) == "Figure (0 panels)."
    plt.close(fig)
    fig = plots.image_grid([[[0.0, 1.0], [1.0, 0.0]]] * 10, ncols=5)
    text = plots.describe_figure(fig, max_panels=3)
    plt.close(fig)
    assert "(10 panels)" in text and "and 7 more" not in text  # untitled panels are skipped


def test_png_formatter_returns_png_and_alt():
    fig, ax = plt.subplots()
    ax.set_title("loss")
    data, metadata = plots._png_with_alt(fig)
    plt.close(fig)
    assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert metadata == {"alt": "Figure (1 panel). Panels: loss."}


def test_enable_alt_text_outside_ipython_is_a_no_op():
    assert plots.enable_alt_text() is False
