"""Plots of arrays: image grids with titles and learning curves.

This module draws; it knows no model. Every function returns the matplotlib ``Figure`` so that
notebooks can save or further decorate it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np


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
            color = None if title_colors is None else title_colors[index]
            ax.set_title(str(titles[index]), fontsize=8, color=color)
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
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
