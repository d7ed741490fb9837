"""What the last layers see: features, nearest neighbours, t-SNE and top-activating patches.

References:
    Krizhevsky, Sutskever & Hinton 2012 (nearest neighbours in feature space, AlexNet Fig. 4).
    van der Maaten & Hinton 2008, "Visualizing data using t-SNE".
    Girshick et al. 2014 / Zeiler & Fergus 2014 (maximally activating patches).
"""

from __future__ import annotations

import keras
import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from cnn_utils.saliency import ensure_built, get_layer, model_input


def penultimate_layer(model: keras.Model) -> str:
    """Name of the layer that feeds the last one (the features the classifier reads).

    Dropout layers are skipped: their output equals their input at inference.
    """
    ensure_built(model)
    for layer in reversed(model.layers[:-1]):
        if not isinstance(layer, keras.layers.Dropout):
            return layer.name
    raise ValueError(f"Model {model.name!r} has a single layer: no penultimate layer.")


def features(
    model: keras.Model, x, layer_name: str | None = None, *, batch_size: int = 256
) -> np.ndarray:
    """Activations of a named layer, flattened to one vector per image (inference mode).

    Args:
        model: A built Keras model.
        x: Images (n, H, W, C).
        layer_name: The layer; ``None`` takes :func:`penultimate_layer`.
        batch_size: Images per forward pass.

    Returns:
        float32 array (n, d).

    Raises:
        ValueError: An unknown layer (the message lists the names) or a bad batch size.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"batch_size must be a positive integer. Received: batch_size={batch_size!r}"
        )
    ensure_built(model)
    layer_name = penultimate_layer(model) if layer_name is None else layer_name
    probe = keras.Model(model_input(model), get_layer(model, layer_name).output)
    x = np.asarray(x, dtype=np.float32)
    chunks = [
        keras.ops.convert_to_numpy(probe(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    out = np.concatenate(chunks)
    return out.reshape(len(out), -1)


def nearest_neighbors(queries, database, k: int = 5, *, exclude_self: bool = False) -> np.ndarray:
    """Indices of the ``k`` nearest database vectors (L2) to each query.

    Pass flattened pixels for "pixel space" and :func:`features` for "feature space".

    Args:
        queries: (n_queries, ...) arrays, flattened per row.
        database: (n, ...) arrays, flattened per row.
        k: Neighbours per query, in [1, n].
        exclude_self: The queries are database rows: drop each query's exact match (distance 0)
            by asking for one more neighbour.

    Returns:
        int array (n_queries, k), nearest first.

    Raises:
        ValueError: A bad ``k`` or mismatched dimensions.
    """
    q = np.asarray(queries, dtype=np.float32).reshape(len(queries), -1)
    db = np.asarray(database, dtype=np.float32).reshape(len(database), -1)
    if q.shape[1] != db.shape[1]:
        raise ValueError(
            "queries and database must have the same dimension. Received: "
            f"{q.shape[1]} and {db.shape[1]}"
        )
    extra = 1 if exclude_self else 0
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(db) - extra:
        raise ValueError(f"k must be in [1, {len(db) - extra}]. Received: k={k!r}")
    index = NearestNeighbors(n_neighbors=k + extra).fit(db)
    _, found = index.kneighbors(q)
    if exclude_self:
        distances = np.linalg.norm(db[found] - q[:, None, :], axis=-1)
        keep = [row[dist > 0][:k] if (dist > 0).sum() >= k else row[1:] for row, dist in
                zip(found, distances, strict=True)]  # fmt: skip
        found = np.stack(keep)
    return found


def tsne(
    vectors, *, perplexity: float = 30.0, pca_components: int | None = 50, seed: int = 0
) -> np.ndarray:
    """Two-dimensional t-SNE embedding (van der Maaten & Hinton 2008) via scikit-learn.

    Args:
        vectors: (n, d) features.
        perplexity: t-SNE's perplexity, smaller than n.
        pca_components: Reduce to this many dimensions with PCA first (faster, less noise);
            ``None`` skips it.
        seed: Seed of the PCA and t-SNE.

    Returns:
        float32 array (n, 2).

    Raises:
        ValueError: A perplexity not below the number of points.
    """
    x = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    if not 0 < perplexity < len(x):
        raise ValueError(
            f"perplexity must be in (0, {len(x)}) for {len(x)} points. "
            f"Received: perplexity={perplexity!r}"
        )
    if pca_components is not None and x.shape[1] > pca_components:
        x = PCA(n_components=min(pca_components, len(x)), random_state=seed).fit_transform(x)
    embedding = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed
    ).fit_transform(x)
    return embedding.astype(np.float32)


def receptive_field(model: keras.Model, layer_name: str) -> tuple[int, int, int, int]:
    """Receptive field and stride of a layer's units, measured by backpropagation.

    The gradient of the centre unit (summed over channels) with respect to a random input is
    non-zero exactly on the pixels that unit sees; the stride is the input size over the
    feature-map size.

    Args:
        model: A built model with a fixed input size.
        layer_name: A layer with 4-D output.

    Returns:
        ``(size_h, size_w, stride_h, stride_w)`` in input pixels.

    Raises:
        ValueError: An unknown layer or one without 4-D output.
    """
    import tensorflow as tf

    ensure_built(model)
    output = get_layer(model, layer_name).output
    if len(output.shape) != 4:
        raise ValueError(
            f"layer_name must name a layer with 4-D output. Received: layer_name={layer_name!r}"
        )
    height, width = model.inputs[0].shape[1:3]
    fh, fw = output.shape[1:3]
    probe = keras.Model(model_input(model), output)
    x = tf.constant(
        np.random.default_rng(0).random((1, *model.inputs[0].shape[1:]), dtype=np.float32)
    )
    with tf.GradientTape() as tape:
        tape.watch(x)
        a = probe(x, training=False)
        unit = tf.reduce_sum(tf.abs(a[:, fh // 2, fw // 2, :]))
    grad = np.abs(tape.gradient(unit, x).numpy()[0]).sum(axis=-1)
    rows, cols = np.nonzero(grad)
    if len(rows) == 0:
        return height, width, max(1, height // fh), max(1, width // fw)
    return (
        int(rows.max() - rows.min() + 1),
        int(cols.max() - cols.min() + 1),
        max(1, height // fh),
        max(1, width // fw),
    )


def top_activating_patches(
    model: keras.Model,
    layer_name: str,
    filter_index: int,
    x,
    *,
    k: int = 9,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input patches that activate one channel most, over many images.

    Every unit of the channel (every image and position) is ranked by its activation; the
    top ``k`` units (at most one per image) give the patch of the input they see.

    Args:
        model: A built model with a fixed input size.
        layer_name: A layer with 4-D output.
        filter_index: The channel.
        x: Images (n, H, W, C).
        k: Number of patches.
        batch_size: Images per forward pass.

    Returns:
        ``(patches, image_indices, values)``: (k, size_h, size_w, C) patches (zero-padded at
        the borders), the index of the image each comes from and the activation.

    Raises:
        ValueError: An unknown layer, a channel out of range, a bad ``k``.
    """
    ensure_built(model)
    output = get_layer(model, layer_name).output
    channels = output.shape[-1]
    if isinstance(filter_index, bool) or not 0 <= int(filter_index) < channels:
        raise ValueError(
            f"filter_index must be in [0, {channels}). Received: filter_index={filter_index!r}"
        )
    x = np.asarray(x, dtype=np.float32)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(x):
        raise ValueError(f"k must be in [1, {len(x)}]. Received: k={k!r}")
    size_h, size_w, stride_h, stride_w = receptive_field(model, layer_name)
    probe = keras.Model(model_input(model), output)
    maps = np.concatenate(
        [
            keras.ops.convert_to_numpy(probe(x[i : i + batch_size], training=False))[
                ..., int(filter_index)
            ]
            for i in range(0, len(x), batch_size)
        ]
    )
    flat = maps.reshape(len(maps), -1)
    best_position = flat.argmax(axis=1)
    best_value = flat.max(axis=1)
    order = np.argsort(-best_value, kind="stable")[:k]
    pad_h, pad_w = size_h, size_w
    padded = np.pad(x, ((0, 0), (pad_h, pad_h), (pad_w, pad_w), (0, 0)))
    patches = []
    for image_index in order:
        row, col = np.unravel_index(best_position[image_index], maps.shape[1:])
        centre_r = row * stride_h + stride_h // 2
        centre_c = col * stride_w + stride_w // 2
        top = centre_r - size_h // 2 + pad_h
        left = centre_c - size_w // 2 + pad_w
        patches.append(padded[image_index, top : top + size_h, left : left + size_w])
    return np.stack(patches), order, best_value[order]
