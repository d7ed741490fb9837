"""What the last layers see: nearest neighbours, t-SNE, receptive fields and top patches.

Also the network as a reusable feature extractor ("CNN codes"): :func:`transfer_model` chops
the classifier off and puts a new softmax layer on top, frozen, fine-tuned or from scratch.

Features come from :func:`cnn_utils.probe.features`, with
:func:`cnn_utils.probe.penultimate_layer` as the default layer.

References:
    Krizhevsky, Sutskever & Hinton 2012 (nearest neighbours in feature space, AlexNet Fig. 4).
    van der Maaten & Hinton 2008, "Visualizing data using t-SNE".
    Girshick et al. 2014 / Zeiler & Fergus 2014 (maximally activating patches).
    Razavian et al. 2014, "CNN features off-the-shelf: an astounding baseline for
    recognition"; Yosinski et al. 2014, "How transferable are features in deep neural
    networks?" (transfer learning).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from cnn_utils import _checks, probe

__all__ = [
    "TRANSFER_MODES",
    "measured_receptive_field",
    "nearest_neighbors",
    "top_activating_patches",
    "transfer_model",
    "tsne",
]

TRANSFER_MODES = ("frozen", "finetune", "scratch")
"""How :func:`transfer_model` treats the chopped network: fixed features ("CNN codes"),
trained on together with the new head from the old weights, or the same architecture from
fresh random weights (the control)."""

_PCA_COMPONENTS = 50  # t-SNE runs on at most this many PCA dimensions (faster, less noise)


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
    exclude_self = _checks.flag("exclude_self", exclude_self)
    q = _checks.images(queries, name="queries").numpy()
    db = _checks.images(database, name="database").numpy()
    if len(db) == 0:
        raise ValueError("database must hold at least one vector. Received: 0 vectors")
    q = q.reshape(len(q), int(np.prod(q.shape[1:])))  # also for 0 queries
    db = db.reshape(len(db), int(np.prod(db.shape[1:])))
    if q.shape[1] != db.shape[1]:
        raise ValueError(
            "queries and database must have the same dimension. Received: "
            f"{q.shape[1]} and {db.shape[1]}"
        )
    extra = 1 if exclude_self else 0
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(db) - extra:
        raise ValueError(f"k must be in [1, {len(db) - extra}]. Received: k={k!r}")
    if len(q) == 0:
        return np.zeros((0, int(k)), dtype=np.int64)
    index = NearestNeighbors(n_neighbors=k + extra).fit(db)
    _, found = index.kneighbors(q)
    if exclude_self:
        distances = np.linalg.norm(db[found] - q[:, None, :], axis=-1)
        keep = [row[dist > 0][:k] if (dist > 0).sum() >= k else row[1:] for row, dist in
                zip(found, distances, strict=True)]  # fmt: skip
        found = np.stack(keep)
    return found


def tsne(vectors, *, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """Two-dimensional t-SNE embedding (van der Maaten & Hinton 2008) via scikit-learn.

    Vectors with more than 50 dimensions are first reduced to 50 with PCA (faster, less noise).

    Args:
        vectors: (n, d) finite features.
        perplexity: t-SNE's perplexity, smaller than n.
        seed: Seed of the PCA and t-SNE.

    Returns:
        float32 array (n, 2).

    Raises:
        ValueError: A perplexity not below the number of points.
    """
    x = _checks.images(vectors, name="vectors").numpy()
    x = x.reshape(len(x), -1)
    perplexity = _checks.number("perplexity", perplexity, positive=True)
    seed = _checks.integer("seed", seed, minimum=0)
    if not perplexity < len(x):
        raise ValueError(
            f"perplexity must be in (0, {len(x)}) for {len(x)} points. "
            f"Received: perplexity={perplexity!r}"
        )
    if x.shape[1] > _PCA_COMPONENTS:
        x = PCA(n_components=min(_PCA_COMPONENTS, len(x)), random_state=seed).fit_transform(x)
    embedding = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed
    ).fit_transform(x)
    return embedding.astype(np.float32)


def measured_receptive_field(
    model: keras.Model, layer_name: str, *, return_mask: bool = False
) -> tuple[int, int, int, int] | tuple[tuple[int, int, int, int], np.ndarray]:
    """Receptive field and stride of a layer's units, *measured* by backpropagation.

    The gradient of the centre unit (summed over channels) with respect to a random input is
    non-zero exactly on the pixels that unit sees; the stride is the input size over the
    feature-map size. :func:`cnn_utils.shapes.receptive_field` computes the same size from the
    kernel sizes and strides; this one reads it off any built model.

    Args:
        model: A built model with a fixed input size.
        layer_name: A layer with 4-D output.
        return_mask: Also return the (H, W) boolean mask of the pixels the unit sees.

    Returns:
        ``(size_h, size_w, stride_h, stride_w)`` in input pixels; with ``return_mask``, the
        pair ``(sizes, mask)``.

    Raises:
        ValueError: An unknown layer, one without 4-D output, or a layer whose output does
            not depend on the input (a disconnected graph or a zero gradient).
    """
    return_mask = _checks.flag("return_mask", return_mask)
    probe.ensure_built(model)
    output = probe.layer(model, layer_name).output
    if len(output.shape) != 4:
        raise ValueError(
            f"layer_name must name a layer with 4-D output. Received: layer_name={layer_name!r} "
            f"with output shape {tuple(output.shape)}"
        )
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"model must have a fixed input size to measure a receptive field. Received: a "
            f"model with input shape {shape}"
        )
    height, width = shape[:2]
    fh, fw = output.shape[1:3]
    unit_model = probe.layer_model(model, layer_name)
    x = tf.constant(np.random.default_rng(0).random((1, *shape), dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        a = tf.cast(unit_model(x, training=False), tf.float32)
        unit = tf.reduce_sum(tf.abs(a[:, fh // 2, fw // 2, :]))
    what = f"layer {layer_name!r} with respect to the input"
    grad = probe.gradient(tape, unit, x, what=what)
    mask = np.abs(keras.ops.convert_to_numpy(tf.cast(grad, tf.float32))[0]).sum(axis=-1) > 0
    rows, cols = np.nonzero(mask)
    if not len(rows):
        raise ValueError(
            f"layer_name must name a layer whose units depend on the input, but the gradient of "
            f"the centre unit of {layer_name!r} is zero on every pixel (e.g. weights that are "
            f"all zero or a layer that multiplies by 0). Received: layer_name={layer_name!r}"
        )
    sizes = (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
    result = (*sizes, max(1, height // fh), max(1, width // fw))
    return (result, mask) if return_mask else result


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
    probe.ensure_built(model)
    output = probe.layer(model, layer_name).output
    channels = output.shape[-1]
    filter_index = _checks.integer("filter_index", filter_index, minimum=0)
    if filter_index >= channels:
        raise ValueError(
            f"filter_index must be in [0, {channels}). Received: filter_index={filter_index!r}"
        )
    x = _checks.images(x, rank=4).numpy()
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(x):
        raise ValueError(f"k must be in [1, {len(x)}]. Received: k={k!r}")
    size_h, size_w, stride_h, stride_w = measured_receptive_field(model, layer_name)
    maps = probe.features(model, x, layer_name, batch_size=batch_size, flatten=False)
    maps = maps[..., filter_index]
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


def transfer_model(
    model: keras.Model,
    num_classes: int,
    *,
    mode: str = "frozen",
    layer_name: str | None = None,
    seed: int = 0,
) -> keras.Model:
    """The network up to ``layer_name`` with a new softmax layer (logits) for a new task.

    The source model is never changed: the trunk is a clone (with the source's weights for
    ``"frozen"`` and ``"finetune"``, fresh seeded weights for ``"scratch"``). With
    ``"frozen"`` the trunk is not trainable (batch normalisation then stays in inference
    mode), so training fits a linear softmax classifier on the fixed features ("CNN codes",
    CS231n's name; Razavian et al. 2014 trained a linear SVM on such features). The model is
    returned uncompiled (e.g.
    :func:`cnn_utils.training.compile_classifier`).

    Args:
        model: A built Keras model (functional or Sequential).
        num_classes: Classes of the new task, >= 2.
        mode: ``"frozen"``, ``"finetune"`` or ``"scratch"`` (:data:`TRANSFER_MODES`).
        layer_name: The last layer kept; ``None`` takes :func:`penultimate_layer` (the
            classifier alone is chopped off).
        seed: Seed of the new head (and of the trunk for ``"scratch"``).

    Returns:
        An uncompiled ``keras.Model`` from the source's input to ``num_classes`` logits; its
        last layer is a Dense named ``"new_logits"``.

    Raises:
        ValueError: A bad class count, mode or seed, or an unknown layer (the message lists
            the names).
    """
    num_classes = _checks.integer("num_classes", num_classes, minimum=2)
    _checks.one_of("mode", mode, TRANSFER_MODES)
    seed = _checks.seed(seed)
    probe.ensure_built(model)
    layer_name = probe.penultimate_layer(model) if layer_name is None else layer_name
    probe.layer(model, layer_name)  # a clear error for an unknown name
    if seed is not None:
        keras.utils.set_random_seed(seed)
    clone = keras.models.clone_model(model)
    probe.ensure_built(clone)
    if mode != "scratch":
        clone.set_weights(model.get_weights())
    trunk = probe.layer_model(clone, layer_name)
    trunk.trainable = mode != "frozen"
    inputs = keras.Input(tuple(model.inputs[0].shape[1:]))
    h = trunk(inputs, training=False) if mode == "frozen" else trunk(inputs)
    if len(h.shape) > 2:
        h = keras.layers.Flatten(name="new_flatten")(h)
    initializer = keras.initializers.GlorotUniform(seed=seed)
    logits = keras.layers.Dense(num_classes, kernel_initializer=initializer, name="new_logits")(h)
    return keras.Model(inputs, logits, name=f"{model.name}_{mode}")
