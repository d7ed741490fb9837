"""Tests of cnn_utils.embed: features, neighbours, t-SNE, receptive fields, top patches."""

import keras
import numpy as np
import pytest

from cnn_utils import embed


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    h = layers.Conv2D(3, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(h)
    h = layers.MaxPooling2D(2, name="pool")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(5, activation="relu", name="fc")(h)
    h = layers.Dropout(0.5, name="drop")(h)
    return keras.Model(inputs, layers.Dense(2, name="logits")(h))


def test_features_default_to_the_penultimate_layer(model):
    x = np.random.default_rng(0).random((7, 8, 8, 1), dtype=np.float32)
    assert embed.penultimate_layer(model) == "fc"  # dropout skipped
    assert embed.features(model, x, batch_size=3).shape == (7, 5)
    assert embed.features(model, x, "conv2").shape == (7, 8 * 8 * 4)
    with pytest.raises(ValueError, match=r"layer_name must be one of.*'fc'"):
        embed.features(model, x, "nope")


def test_nearest_neighbors():
    database = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [0.0, 1.2]])
    found = embed.nearest_neighbors(np.array([[0.1, 0.0]]), database, k=3)
    np.testing.assert_array_equal(found, [[0, 1, 3]])
    no_self = embed.nearest_neighbors(database[:2], database, k=1, exclude_self=True)
    np.testing.assert_array_equal(no_self, [[1], [0]])
    with pytest.raises(ValueError, match="k must be in"):
        embed.nearest_neighbors(database, database, k=5)
    with pytest.raises(ValueError, match="same dimension"):
        embed.nearest_neighbors(np.zeros((1, 3)), database)


def test_tsne_separates_clusters():
    rng = np.random.default_rng(0)
    vectors = np.concatenate([rng.normal(0, 1, (30, 10)), rng.normal(20, 1, (30, 10))])
    embedding = embed.tsne(vectors, perplexity=10, seed=0)
    assert embedding.shape == (60, 2) and np.isfinite(embedding).all()
    gap = np.linalg.norm(embedding[:30].mean(0) - embedding[30:].mean(0))
    assert gap > 3 * embedding[:30].std(0).max()
    with pytest.raises(ValueError, match="perplexity"):
        embed.tsne(vectors, perplexity=100)


def test_receptive_field_of_two_3x3_convolutions(model):
    assert embed.receptive_field(model, "conv1")[:2] == (3, 3)
    assert embed.receptive_field(model, "conv2") == (5, 5, 1, 1)
    assert embed.receptive_field(model, "pool")[2:] == (2, 2)


def test_top_activating_patches(model):
    x = np.random.default_rng(1).random((20, 8, 8, 1), dtype=np.float32)
    patches, indices, values = embed.top_activating_patches(model, "conv2", 1, x, k=4)
    assert patches.shape == (4, 5, 5, 1)
    assert len(set(indices.tolist())) == 4 and np.all(np.diff(values) <= 0)
    activations = keras.Model(model.inputs[0], model.get_layer("conv2").output)(x).numpy()
    assert values[0] == pytest.approx(activations[..., 1].max(), rel=1e-5)
    with pytest.raises(ValueError, match="filter_index"):
        embed.top_activating_patches(model, "conv2", 4, x)
