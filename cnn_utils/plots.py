"""Plots of arrays: image grids with titles, heatmaps, learning and robustness curves.

This module draws; it knows no model. Every function returns the matplotlib ``Figure`` so that
notebooks can save or further decorate it. Imported in IPython (Jupyter), it also makes every
figure carry alt text (its titles and axis labels, :func:`describe_figure`) in the notebook's
output metadata, which the book's HTML template turns into the image's ``alt`` attribute.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from cnn_utils import config

__all__ = [
    "ablation_grid",
    "describe_figure",
    "enable_alt_text",
    "feature_map_grid",
    "filter_grid",
    "heatmap_overlay",
    "image_grid",
    "live_control",
    "plot_accuracy_vs_epsilon",
    "plot_adversarial_examples",
    "plot_learning_curves",
    "plot_loss_surface",
]


def _as_images(images) -> np.ndarray:
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 2:  # one greyscale image
        array = array[np.newaxis]
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (3, 4)):
        raise ValueError(
            "images must be (n, H, W), (n, H, W, 1), (n, H, W, 3) or (n, H, W, 4). "
            f"Received: images with shape {np.shape(images)}"
        )
    return array


def image_grid(
    images,
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    cell_size: float = 1.6,
    suptitle: str | None = None,
    title_colors: Sequence[str] | None = None,
):
    """Show images in a grid, each with an optional title.

    Args:
        images: Array-like of shape (n, H, W), (n, H, W, 1) or (n, H, W, 3|4).
        titles: One title per image (or ``None``).
        ncols: Images per row (fewer if there are fewer images).
        cmap: Colormap for single-channel images.
        vmin: Lower end of the colour scale for single-channel images (default: per image).
        vmax: Upper end of the colour scale for single-channel images.
        cell_size: Size of one cell in inches.
        suptitle: Title of the whole figure.
        title_colors: One colour per title (e.g. green for right, red for wrong).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: Badly shaped images, or a number of titles that does not match.
    """
    array = _as_images(images)
    n = len(array)
    if n == 0:
        raise ValueError("images must hold at least one image. Received: 0 images")
    for argname, values in (("titles", titles), ("title_colors", title_colors)):
        if values is not None and len(values) != n:
            raise ValueError(
                f"{argname} must have one entry per image ({n}). Received: {len(values)}"
            )
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols <= 0:
        raise ValueError(f"ncols must be a positive integer. Received: ncols={ncols!r}")
    ncols = min(ncols, n)
    panels = []
    for index, image in enumerate(array):
        title = None if titles is None else _wrap_title(titles[index], cell_size)
        colour = None if title_colors is None else title_colors[index]
        row, col = divmod(index, ncols)
        panels.append(_image_panel(row, col, image, title, colour, cmap=cmap, vmin=vmin, vmax=vmax))
    return _panel_grid(panels, ncols, cell_size=cell_size, suptitle=suptitle)


@dataclasses.dataclass(frozen=True)
class _Panel:
    """One image of a grid: its cell, the array, ``imshow``'s colour arguments, its title."""

    row: int
    col: int
    image: np.ndarray
    style: dict
    title: str | None = None
    colour: str | None = None


def _image_panel(row, col, image, title=None, colour=None, *, cmap="gray", vmin=None, vmax=None):
    """A panel: a single-channel image drawn with ``cmap``, a colour image clipped to [0, 1]."""
    if image.ndim == 2:
        return _Panel(row, col, image, {"cmap": cmap, "vmin": vmin, "vmax": vmax}, title, colour)
    return _Panel(row, col, np.clip(image, 0.0, 1.0), {}, title, colour)


_TITLE_LINE = 8 * 1.3 / 72  # inches per line of an 8-point panel title
_GRID_GID = "cnn_utils.panel_grid"  # marks the axes of a grid: each image is one panel


def _panel_grid(
    panels: Sequence[_Panel],
    ncols: int,
    *,
    cell_size: float,
    suptitle: str | None = None,
    row_labels: Sequence[str] | None = None,
    frames: bool = False,
) -> Figure:
    """Draw a table of images in one set of axes whose data units are inches.

    One axes per image costs about 7 ms to create and more to draw: a grid of 80 panels took
    over a second. Here each image is placed by its ``extent`` in a cell whose longer side is
    ``cell_size`` inches (wider than tall for wide images), under a band as tall as its row's
    longest title; ``row_labels`` go in a band on the left; ``frames`` draws a thin black frame
    around each image (where white pixels mean something). Each image keeps its title as its
    label, for the alt text.
    """
    panels = sorted(panels, key=lambda panel: (panel.row, panel.col))  # alt text reads by rows
    nrows = panels[-1].row + 1
    lines = [0] * nrows
    for panel in panels:
        if panel.title:
            lines[panel.row] = max(lines[panel.row], panel.title.count("\n") + 1)
    sides = np.array([panel.image.shape[:2] for panel in panels], dtype=float)
    cell_h, cell_w = cell_size * (sides / sides.max(axis=1, keepdims=True)).max(axis=0)
    margin, left = 0.04 * cell_size, (0.3 if row_labels else 0.0)
    bands = [count * _TITLE_LINE for count in lines]
    tops = np.cumsum([0.45 if suptitle else 0.0, *(cell_h + band for band in bands)])
    width, height = left + cell_w * ncols, float(tops[-1])
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0), gid=_GRID_GID)
    for panel, (h, w) in zip(panels, sides, strict=True):
        scale = (cell_size - 2 * margin) / max(h, w)
        x0 = left + panel.col * cell_w + (cell_w - w * scale) / 2
        y0 = tops[panel.row] + bands[panel.row] + (cell_h - h * scale) / 2
        extent = (x0, x0 + w * scale, y0 + h * scale, y0)
        shown = ax.imshow(panel.image, extent=extent, **panel.style)
        if frames:
            ax.add_patch(Rectangle((x0, y0), w * scale, h * scale, fill=False, linewidth=0.8))
        row_label = f"row: {row_labels[panel.row]}" if row_labels and panel.col == 0 else None
        shown.set_label(", ".join(t for t in (panel.title, row_label) if t))
        if panel.title:
            ax.text(x0 + w * scale / 2, y0 - margin, panel.title, ha="center", va="bottom",
                    fontsize=8, color=panel.colour)  # fmt: skip
    for row, label in enumerate(row_labels or ()):
        middle = tops[row] + bands[row] + cell_h / 2
        ax.text(left - margin, middle, str(label), rotation=90, ha="right", va="center", fontsize=9)
    ax.set_xlim(0.0, width)
    ax.set_ylim(height, 0.0)
    ax.set_aspect("auto")  # the limits are in inches: one inch is one inch both ways
    ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle, y=1.0 - 0.08 / height, va="top")
    return fig


def _wrap_title(title, cell_size: float) -> str:
    """A panel title wrapped to its panel's width (about 15 characters an inch at 8 pt).

    Long class names ("Ankle boot -> Sandal") go on more lines; none is cut.
    """
    width = max(8, int(cell_size * 15))
    lines = str(title).split("\n")
    return "\n".join(textwrap.fill(line, width, break_long_words=False) or line for line in lines)


def _history_dict(history) -> Mapping[str, Sequence[float]]:
    values = getattr(history, "history", history)
    if not isinstance(values, Mapping):
        raise ValueError(
            "history must be a keras History or a dict of metric lists. "
            f"Received: {type(history).__name__}"
        )
    return values


def plot_learning_curves(
    histories,
    metrics: Sequence[str] = ("loss", "accuracy"),
    *,
    title: str | None = None,
):
    """Plot training and validation curves, one panel per metric, one colour per run.

    Args:
        histories: A keras ``History`` (or its ``.history`` dict), or a mapping from run name
            to such, to compare several runs in the same panels.
        metrics: Metric names; ``val_<name>`` is drawn dashed beside ``<name>`` when present.
        title: Title of the figure.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: If a metric is recorded in none of the runs.
    """
    if (
        isinstance(histories, Mapping)
        and histories
        and all(not isinstance(v, (list, tuple, np.ndarray)) for v in histories.values())
    ):
        runs = {name: _history_dict(h) for name, h in histories.items()}
    else:
        runs = {"": _history_dict(histories)}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        if not any(metric in values for values in runs.values()):
            plt.close(fig)
            available = sorted({key for values in runs.values() for key in values})
            raise ValueError(f"metric {metric!r} not recorded. Available: {available}")
        for index, (name, values) in enumerate(runs.items()):
            color = f"C{index}"
            prefix = f"{name} " if name else ""
            if metric in values:
                epochs = np.arange(1, len(values[metric]) + 1)
                ax.plot(epochs, values[metric], "-o", ms=3, color=color, label=f"{prefix}train")
            if f"val_{metric}" in values:
                epochs = np.arange(1, len(values[f"val_{metric}"]) + 1)
                ax.plot(
                    epochs,
                    values[f"val_{metric}"],
                    "--s",
                    ms=3,
                    color=color,
                    label=f"{prefix}validation",
                )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Visualising CNNs (notebook 04): filters, feature maps, heatmaps, ablation grids
# ---------------------------------------------------------------------------------------------


def _unit_scale(array: np.ndarray) -> np.ndarray:
    """Scale an array to [0, 1] by its own minimum and maximum (constant arrays give 0.5)."""
    low, high = float(np.min(array)), float(np.max(array))
    if high - low < 1e-12:
        return np.full_like(array, 0.5, dtype=np.float32)
    return ((array - low) / (high - low)).astype(np.float32)


def filter_grid(
    kernels,
    *,
    channel: int | str | None = None,
    ncols: int = 8,
    max_filters: int = 64,
    cell_size: float = 1.0,
    title: str | None = None,
):
    """Show convolution kernels as small images, each scaled to its own range.

    Args:
        kernels: A Conv2D kernel (kh, kw, C_in, C_out). RGB inputs (C_in = 3) are drawn in
            colour; otherwise one input channel is drawn in grey.
        channel: The input channel shown when C_in != 3 (default 0, or the mean over input
            channels when ``channel="mean"``).
        ncols: Filters per row.
        max_filters: Show at most this many filters (the first ones).
        cell_size: Size of one cell in inches.
        title: Title of the figure.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: A kernel that is not 4-D, or a channel out of range.
    """
    array = np.asarray(kernels, dtype=np.float32)
    if array.ndim != 4:
        raise ValueError(
            "kernels must have shape (kh, kw, C_in, C_out). "
            f"Received: kernels with shape {array.shape}"
        )
    c_in, c_out = array.shape[2], array.shape[3]
    filters = np.moveaxis(array, -1, 0)[:max_filters]  # (n, kh, kw, C_in)
    if c_in == 3 and channel is None:
        images = np.stack([_unit_scale(f) for f in filters])
    elif channel == "mean":
        images = np.stack([_unit_scale(f.mean(axis=-1)) for f in filters])
    else:
        channel = 0 if channel is None else channel
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < c_in:
            raise ValueError(f"channel must be in [0, {c_in}). Received: channel={channel!r}")
        images = np.stack([_unit_scale(f[..., channel]) for f in filters])
    titles = [str(i) for i in range(min(c_out, max_filters))]
    return image_grid(
        images, titles, ncols=ncols, vmin=0.0, vmax=1.0, cell_size=cell_size, suptitle=title
    )


def feature_map_grid(
    activations,
    *,
    ncols: int = 8,
    max_maps: int = 32,
    cmap: str = "viridis",
    cell_size: float = 1.2,
    title: str | None = None,
):
    """Show the feature maps (channels) of one image's activations, one panel per channel.

    Args:
        activations: (H, W, C) or (1, H, W, C) activations of one image.
        ncols: Maps per row.
        max_maps: Show at most this many channels (the first ones).
        cmap: Colormap.
        cell_size: Size of one cell in inches.
        title: Title of the figure.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: Activations that are not (H, W, C).
    """
    array = np.asarray(activations, dtype=np.float32)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(
            "activations must have shape (H, W, C) or (1, H, W, C). "
            f"Received: activations with shape {np.shape(activations)}"
        )
    maps = np.moveaxis(array, -1, 0)[:max_maps]
    titles = [str(i) for i in range(len(maps))]
    return image_grid(maps, titles, ncols=ncols, cmap=cmap, cell_size=cell_size, suptitle=title)


def heatmap_overlay(
    images,
    heatmaps,
    titles: Sequence[str] | None = None,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
    ncols: int = 8,
    cell_size: float = 1.6,
    title: str | None = None,
):
    """Draw heatmaps in [0, 1] over their images (saliency, occlusion, CAM, Grad-CAM).

    Args:
        images: (n, H, W), (n, H, W, 1) or (n, H, W, 3) images in [0, 1].
        heatmaps: (n, H, W) maps in [0, 1], one per image.
        titles: One title per image.
        alpha: Opacity of the heatmap, in [0, 1].
        cmap: Colormap of the heatmap.
        ncols: Images per row.
        cell_size: Size of one cell in inches.
        title: Title of the figure.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: Mismatched shapes or an opacity outside [0, 1].
    """
    pictures = _as_images(images)
    maps = np.asarray(heatmaps, dtype=np.float32)
    if maps.ndim == 2:
        maps = maps[np.newaxis]
    if maps.shape != pictures.shape[:3]:
        raise ValueError(
            "heatmaps must have shape (n, H, W) matching the images. Received: heatmaps with "
            f"shape {np.shape(heatmaps)} for images with shape {np.shape(images)}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}")
    if pictures.ndim == 3:
        pictures = np.repeat(pictures[..., np.newaxis], 3, axis=-1)
    colours = plt.get_cmap(cmap)(np.clip(maps, 0.0, 1.0))[..., :3]
    blended = (1.0 - alpha) * np.clip(pictures[..., :3], 0.0, 1.0) + alpha * colours
    return image_grid(blended, titles, ncols=ncols, cell_size=cell_size, suptitle=title)


def ablation_grid(
    rows: Mapping[str, object],
    column_titles: Sequence[str] | None = None,
    *,
    cmap: str = "gray",
    cell_size: float = 1.3,
    title: str | None = None,
):
    """A table of images: one row per setting, one column per target.

    Used for the regulariser ablation (none / L2 / blur / jitter / TV / all, one column per
    class) and to compare heatmaps of several methods on the same images. Each image is
    scaled to [0, 1] by its own range, so that faint results stay visible.

    Args:
        rows: Mapping from the row label to its images, (n, H, W), (n, H, W, 1) or
            (n, H, W, 3); every row holds the same number of images.
        column_titles: One title per column, shown above the first row.
        cmap: Colormap of single-channel images.
        cell_size: Size of one cell in inches.
        title: Title of the figure.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: No rows, rows of different lengths, or a wrong number of column titles.
    """
    if not rows:
        raise ValueError("rows must hold at least one row. Received: rows={}")
    arrays = {label: _as_images(images) for label, images in rows.items()}
    lengths = {label: len(images) for label, images in arrays.items()}
    ncols = next(iter(lengths.values()))
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every row must hold the same number of images. Received: {lengths}")
    if column_titles is not None and len(column_titles) != ncols:
        raise ValueError(
            f"column_titles must have one entry per column ({ncols}). "
            f"Received: {len(column_titles)}"
        )
    panels = []
    for r, images in enumerate(arrays.values()):
        for c in range(ncols):
            heading = str(column_titles[c]) if r == 0 and column_titles is not None else None
            image = _unit_scale(images[c])
            panels.append(_image_panel(r, c, image, heading, cmap=cmap, vmin=0.0, vmax=1.0))
    return _panel_grid(
        panels, ncols, cell_size=cell_size, suptitle=title, row_labels=list(arrays), frames=True
    )


def plot_accuracy_vs_epsilon(
    epsilons: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    *,
    title: str | None = None,
    xlabel: str = "ε",
    ylabel: str = "accuracy",
    ax=None,
):
    """Accuracy (or any rate) against the attack radius ε, one line per attack or model.

    Args:
        epsilons: The radii, shared by every curve.
        curves: Mapping from a label to one value per epsilon (e.g.
            ``table.to_dict("list")`` of :func:`cnn_utils.robustness.epsilon_sweep`).
        title: Title of the axes.
        xlabel: Label of the x axis.
        ylabel: Label of the y axis.
        ax: Axes to draw into (default: a new figure).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: No curves, or a curve whose length differs from ``epsilons``.
    """
    eps = np.asarray(epsilons, dtype=float).reshape(-1)
    if not curves:
        raise ValueError("curves must hold at least one curve. Received: 0 curves")
    for name, values in curves.items():
        if len(values) != len(eps):
            raise ValueError(
                f"curve {name!r} must have one value per epsilon ({len(eps)}). "
                f"Received: {len(values)}"
            )
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.4))
    else:
        fig = ax.figure
    markers = "osd^vx*+"
    for index, (name, values) in enumerate(curves.items()):
        ax.plot(eps, values, marker=markers[index % len(markers)], ms=4, label=str(name))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_loss_surface(
    alphas: Sequence[float],
    betas: Sequence[float],
    loss,
    *,
    pred=None,
    true_label: int | None = None,
    class_names: Sequence[str] | None = None,
    xlabel: str = "α (along g)",
    ylabel: str = "β (along g⊥)",
    title: str | None = None,
):
    """A loss surface on a 2-D slice of input space: contour, 3-D surface, decision regions.

    Args:
        alphas: Coordinates along the first direction (columns of ``loss``).
        betas: Coordinates along the second direction (rows of ``loss``).
        loss: Array of shape (len(betas), len(alphas)).
        pred: Optional predicted class at every grid point, same shape: adds a panel of
            decision regions.
        true_label: Class of the centre, marked in the decision-region legend.
        class_names: Names of the classes for that legend.
        xlabel: Label of the first direction.
        ylabel: Label of the second direction.
        title: Title of the figure.

    Returns:
        The matplotlib Figure (contour, 3-D surface, and decision regions if ``pred``).

    Raises:
        ValueError: Shapes that do not match.
    """
    a = np.asarray(alphas, dtype=float).reshape(-1)
    b = np.asarray(betas, dtype=float).reshape(-1)
    z = np.asarray(loss, dtype=float)
    if z.shape != (len(b), len(a)):
        raise ValueError(
            f"loss must have shape (len(betas), len(alphas)) = {(len(b), len(a))}. "
            f"Received: {z.shape}"
        )
    if pred is not None and np.shape(pred) != z.shape:
        raise ValueError(f"pred must have shape {z.shape}. Received: {np.shape(pred)}")
    grid_a, grid_b = np.meshgrid(a, b)
    ncols = 3 if pred is not None else 2
    fig = plt.figure(figsize=(4.6 * ncols, 3.8))
    _loss_contour(fig.add_subplot(1, ncols, 1), grid_a, grid_b, z, xlabel, ylabel)
    _loss_3d(fig.add_subplot(1, ncols, 2, projection="3d"), grid_a, grid_b, z, xlabel, ylabel)
    if pred is not None:
        axp = fig.add_subplot(1, ncols, 3)
        _decision_regions(axp, a, b, np.asarray(pred), true_label, class_names, xlabel, ylabel)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _loss_contour(ax, grid_a, grid_b, z, xlabel: str, ylabel: str) -> None:
    """The loss as filled contours with a colour bar, the centre marked by a red star."""
    filled = ax.contourf(grid_a, grid_b, z, levels=20, cmap="viridis")
    ax.figure.colorbar(filled, ax=ax, label="loss")
    ax.plot(0, 0, "r*", ms=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("loss (contour)")


def _loss_3d(ax3, grid_a, grid_b, z, xlabel: str, ylabel: str) -> None:
    """The loss as a 3-D surface."""
    ax3.plot_surface(grid_a, grid_b, z, cmap="viridis", linewidth=0, antialiased=True)
    ax3.set_xlabel(xlabel)
    ax3.set_ylabel(ylabel)
    ax3.set_zlabel("loss")
    ax3.set_title("loss (3-D)")


def _decision_regions(axp, a, b, labels, true_label, class_names, xlabel, ylabel) -> None:
    """The predicted class at every grid point, one tab10 colour per class, with a legend."""
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10")
    index = np.searchsorted(classes, labels)
    colours = np.array([cmap(int(c) % 10) for c in classes])
    axp.imshow(
        colours[index],
        origin="lower",
        extent=(a[0], a[-1], b[0], b[-1]),
        aspect="auto",
        interpolation="nearest",
    )
    for c, colour in zip(classes, colours, strict=True):
        name = class_names[int(c)] if class_names is not None else str(int(c))
        if true_label is not None and int(c) == int(true_label):
            name += " (true)"
        axp.plot([], [], "s", color=colour, label=name)
    axp.plot(0, 0, "k*", ms=10)
    axp.legend(fontsize=7, loc="upper left", framealpha=0.8)
    axp.set_xlabel(xlabel)
    axp.set_ylabel(ylabel)
    axp.set_title("decision regions")


def plot_adversarial_examples(
    clean,
    adversarial,
    *,
    clean_titles: Sequence[str] | None = None,
    adversarial_titles: Sequence[str] | None = None,
    title_colors: Sequence[str] | None = None,
    amplify: float | None = None,
    cell_size: float = 1.7,
    suptitle: str | None = None,
):
    """Three rows: clean images, adversarial images, and the perturbation, amplified.

    The perturbation ``adversarial - clean`` is drawn with a diverging colour map centred on
    zero (red up, blue down), scaled by ``amplify`` (default: so that the largest change of
    each image fills the colour range).

    Args:
        clean: Clean images, (n, H, W), (n, H, W, 1) or (n, H, W, 3).
        adversarial: Adversarial images, same shape.
        clean_titles: One title per clean image (e.g. prediction and confidence).
        adversarial_titles: One title per adversarial image.
        title_colors: One colour per adversarial title (e.g. red when the attack succeeded).
        amplify: Factor applied to the perturbation before display; the colour range is
            [-1, 1] after it.
        cell_size: Size of one cell in inches.
        suptitle: Title of the figure.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: Different shapes, or a number of titles that does not match.
    """
    x = _as_images(clean)
    x_adv = _as_images(adversarial)
    if x.shape != x_adv.shape:
        raise ValueError(
            f"clean and adversarial must have the same shape. Received: {x.shape} and {x_adv.shape}"
        )
    n = len(x)
    _check_one_per_image(
        n,
        clean_titles=clean_titles,
        adversarial_titles=adversarial_titles,
        title_colors=title_colors,
    )
    panels = []
    for i in range(n):
        for row, (shown, titles) in enumerate(
            ((x[i], clean_titles), (x_adv[i], adversarial_titles))
        ):
            title = None if titles is None else _wrap_title(titles[i], cell_size)
            colour = title_colors[i] if row == 1 and title_colors is not None else None
            panels.append(_image_panel(row, i, shown, title, colour, vmin=0.0, vmax=1.0))
        delta = x_adv[i] - x[i]
        d = delta if delta.ndim == 2 else delta.mean(axis=-1)
        scale = amplify if amplify is not None else 1.0 / max(float(np.abs(d).max()), 1e-12)
        title = None if amplify is None else f"×{amplify:g}"
        panels.append(_image_panel(2, i, d * scale, title, cmap="seismic", vmin=-1.0, vmax=1.0))
    rows = ["clean", "adversarial", "perturbation"]
    return _panel_grid(
        panels, n, cell_size=cell_size, suptitle=suptitle, row_labels=rows, frames=True
    )


def _check_one_per_image(n: int, **sequences) -> None:
    """Refuse a sequence of titles or colours whose length is not the number of images."""
    for argname, values in sequences.items():
        if values is not None and len(values) != n:
            raise ValueError(
                f"{argname} must have one entry per image ({n}). Received: {len(values)}"
            )


# ---------------------------------------------------------------------------------------------
# Live controls after their static twins
# ---------------------------------------------------------------------------------------------


def live_control(function, **controls):
    """An ``ipywidgets.interact`` control for a figure function, or ``None`` where none can show.

    The notebooks draw every widget's *static twin* first (the same function called for a few
    fixed values, a figure that any rendering shows: nbconvert HTML, GitHub, slides); this adds
    the live control after it. No control is made when ``ipywidgets`` is not installed, when no
    IPython kernel is running (a plain script), or when ``CNN_UTILS_WIDGETS=0`` (``make book``:
    a static page has no widget front-end); the function then says in one line that the figure
    above is the static twin.

    Only the named controls appear: every other parameter of ``function`` keeps its default.

    Args:
        function: Draws one figure from keyword arguments (e.g. ``epsilon=0.1``).
        **controls: One per parameter to control: a list or tuple of values (a slider over
            them, starting at the first), or any ``ipywidgets`` widget.

    Returns:
        The ``ipywidgets`` interactive object, or ``None``.

    Raises:
        ValueError: ``function`` is not callable, or no control was given.
    """
    if not callable(function):
        raise ValueError(f"function must be callable. Received: function={function!r}")
    if not controls:
        raise ValueError("live_control needs at least one control, e.g. epsilon=[0.1, 0.2]")
    for name, value in controls.items():
        if isinstance(value, (list, tuple)) and not value:
            raise ValueError(f"{name} must list at least one value. Received: {name}={value!r}")
    reason = None
    try:
        import ipywidgets
    except ImportError:
        ipywidgets, reason = None, "ipywidgets is not installed"
    if reason is None and not config.use_widgets():
        reason = "CNN_UTILS_WIDGETS=0"
    if reason is None:
        try:
            from IPython import get_ipython
        except ImportError:
            get_ipython = None
        if get_ipython is None or get_ipython() is None:
            reason = "no Jupyter kernel"
    if reason is not None:
        print(
            f"The live control runs in a Jupyter notebook ({reason}): "
            "the figure above is its static twin."
        )
        return None
    import inspect

    widgets = {
        name: ipywidgets.SelectionSlider(options=list(value), value=value[0], description=name)
        if isinstance(value, (list, tuple))
        else value
        for name, value in controls.items()
    }
    for name, parameter in inspect.signature(function).parameters.items():
        if name not in widgets and parameter.default is not inspect.Parameter.empty:
            widgets[name] = ipywidgets.fixed(parameter.default)
    return ipywidgets.interact(function, **widgets)


# ---------------------------------------------------------------------------------------------
# Alt text for figures shown in Jupyter
# ---------------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    return " ".join(text.replace("$", "").replace("\\", "").split())


def describe_figure(fig: Figure, *, max_panels: int = 6) -> str:
    """A one-paragraph description of a figure from its texts, for the image's alt text.

    It names the figure's title (``suptitle``), the number of panels, and the titles and axis
    labels of the first ``max_panels`` panels. Every figure gets a non-empty description.

    Args:
        fig: A matplotlib figure.
        max_panels: How many panels to describe one by one.

    Returns:
        The description.
    """
    title = _clean(fig._suptitle.get_text()) if fig._suptitle is not None else ""
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    panels = []  # the text of each panel; a grid's axes holds one panel per image
    for ax in axes:
        if ax.get_gid() == _GRID_GID:
            panels += [_clean(image.get_label()) for image in ax.images]
            continue
        bits = [_clean(ax.get_title())]
        xlabel, ylabel = _clean(ax.get_xlabel()), _clean(ax.get_ylabel())
        if xlabel and ylabel:
            bits.append(f"{ylabel} against {xlabel}")
        elif xlabel or ylabel:
            bits.append(f"axis: {xlabel or ylabel}")
        panels.append(", ".join(b for b in bits if b))
    parts = [text for text in panels[:max_panels] if text]
    count = f"{len(panels)} panel{'s' if len(panels) != 1 else ''}"
    text = f"Figure: {title}" if title else "Figure"
    text += f" ({count})"
    if parts:
        text += ". Panels: " + "; ".join(parts)
        if len(panels) > max_panels:
            text += f"; and {len(panels) - max_panels} more"
    return text + "."


def _png_with_alt(fig: Figure):
    """IPython PNG formatter: the inline backend's PNG plus ``{"alt": describe_figure(fig)}``."""
    from IPython.core.pylabtools import print_figure

    png = print_figure(fig, "png", base64=True, bbox_inches="tight")
    return png, {"alt": describe_figure(fig)}


def _register_alt_text(shell) -> None:
    formatter = shell.display_formatter.formatters["image/png"]
    if formatter.type_printers.get(Figure) is not _png_with_alt:
        formatter.for_type(Figure, _png_with_alt)


def enable_alt_text() -> bool:
    """Make IPython store alt text with every figure's PNG; return whether IPython is running.

    The inline backend registers its own PNG formatter when it is loaded, which happens at the
    first figure: so the backend is loaded first (when no figure is open yet), and the
    formatter is registered again after every cell, before the cell's figures are shown.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    if not plt.get_fignums():  # load the backend now; switching would close open figures
        plt.switch_backend(plt.get_backend())
    _register_alt_text(shell)
    if not getattr(shell, "_cnn_utils_alt_text", False):
        shell.events.register("post_execute", lambda: _register_alt_text(shell))
        shell._cnn_utils_alt_text = True
    return True


enable_alt_text()
