"""Plots of arrays: image grids with titles and learning curves.

This module draws; it knows no model. Every function returns the matplotlib ``Figure`` so that
notebooks can save or further decorate it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator


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
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(cell_size * ncols, cell_size * nrows + (0.4 if suptitle else 0)),
        squeeze=False,
    )
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= n:
            continue
        image = array[index]
        if image.ndim == 2:
            ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
        else:
            ax.imshow(np.clip(image, 0.0, 1.0))
        if titles is not None:
            style = {} if title_colors is None else {"color": title_colors[index]}
            ax.set_title(str(titles[index]), fontsize=8, **style)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


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
    nrows = len(arrays)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(cell_size * ncols + 1.0, cell_size * nrows + (0.4 if title else 0)),
        squeeze=False,
    )
    for r, (label, images) in enumerate(arrays.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            image = _unit_scale(images[c])
            if image.ndim == 2:
                ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0)
            else:
                ax.imshow(image)
            if c == 0:
                ax.set_ylabel(str(label), fontsize=9)
            if r == 0 and column_titles is not None:
                ax.set_title(str(column_titles[c]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
