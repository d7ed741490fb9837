"""Tests of the visualisation plots of cnn_utils.plots (filters, maps, heatmaps, ablations)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cnn_utils import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _images_shown(fig):
    return sum(len(ax.images) for ax in fig.axes)


def test_filter_grid_rgb_and_single_channel():
    rng = np.random.default_rng(0)
    fig = plots.filter_grid(rng.normal(size=(7, 7, 3, 10)), ncols=5)
    assert _images_shown(fig) == 10
    assert fig.axes[0].images[0].get_array().shape == (7, 7, 3)
    fig = plots.filter_grid(rng.normal(size=(3, 3, 16, 40)), channel=2, max_filters=12)
    assert _images_shown(fig) == 12
    with pytest.raises(ValueError, match="channel must be in"):
        plots.filter_grid(rng.normal(size=(3, 3, 16, 4)), channel=16)
    with pytest.raises(ValueError, match="kernels must have shape"):
        plots.filter_grid(rng.normal(size=(3, 3, 4)))


def test_feature_map_grid():
    fig = plots.feature_map_grid(np.random.default_rng(0).random((1, 6, 6, 5)), ncols=3)
    assert _images_shown(fig) == 5
    with pytest.raises(ValueError, match="activations must have shape"):
        plots.feature_map_grid(np.zeros((2, 6, 6, 5)))


def test_heatmap_overlay_blends_into_rgb():
    images = np.zeros((3, 8, 8, 1))
    heat = np.random.default_rng(0).random((3, 8, 8))
    fig = plots.heatmap_overlay(images, heat, ["a", "b", "c"], alpha=0.5)
    assert _images_shown(fig) == 3
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (8, 8, 3) and 0.0 <= shown.min() and shown.max() <= 0.5 + 1e-6
    with pytest.raises(ValueError, match="heatmaps must have shape"):
        plots.heatmap_overlay(images, heat[:2])
    with pytest.raises(ValueError, match="alpha"):
        plots.heatmap_overlay(images, heat, alpha=2.0)


def test_ablation_grid_rows_and_columns():
    rng = np.random.default_rng(0)
    rows = {name: rng.random((4, 8, 8, 1)) for name in ("none", "L2", "all")}
    fig = plots.ablation_grid(rows, ["0", "1", "2", "3"], title="ablation")
    assert _images_shown(fig) == 12
    # Row labels on the left, top to bottom in the rows' order, each at the height of its row.
    labels = sorted(fig.axes[0].texts, key=lambda t: t.get_position()[1])
    labels = [t for t in labels if t.get_rotation() == 90]
    assert [t.get_text() for t in labels] == ["none", "L2", "all"]
    for r, label in enumerate(labels):
        top, bottom = fig.axes[0].images[4 * r].get_extent()[3:1:-1]
        assert top < label.get_position()[1] < bottom
        assert label.get_position()[0] < fig.axes[0].images[4 * r].get_extent()[0]
    assert "Panels: 0, row: none; 1; 2; 3; row: L2; and 6 more" in plots.describe_figure(fig)
    with pytest.raises(ValueError, match="same number of images"):
        plots.ablation_grid({"a": rng.random((2, 8, 8)), "b": rng.random((3, 8, 8))})
    with pytest.raises(ValueError, match="column_titles"):
        plots.ablation_grid(rows, ["x"])


def test_grid_panels_do_not_overlap_and_keep_their_shape():
    rng = np.random.default_rng(0)
    titles = ["Ankle boot -> Sandal (0.97)", "b", "c", "d", "e"]
    fig = plots.image_grid(rng.random((5, 20, 40, 3)), titles, ncols=2, suptitle="wide")
    ax = fig.axes[0]
    boxes = [image.get_extent() for image in ax.images]  # (left, right, bottom, top) in inches
    for left, right, bottom, top in boxes:
        assert (right - left) / (bottom - top) == pytest.approx(2.0)  # 40 wide, 20 high
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart = a[1] <= b[0] or b[1] <= a[0] or a[2] <= b[3] or b[2] <= a[3]
            assert apart, (a, b)
    # Each title sits above its own image, below the previous row's images.
    for image, text in zip(ax.images, ax.texts, strict=True):
        left, right, bottom, top = image.get_extent()
        x, y = text.get_position()
        assert left < x < right and y < top and text.get_text() == image.get_label()
    assert min(t.get_position()[1] for t in ax.texts[2:4]) > boxes[0][2]
    width, height = fig.get_size_inches()
    assert ax.get_xlim() == (0.0, width) and ax.get_ylim() == (height, 0.0)
