"""Tests of cnn_utils.embed: features, neighbours, t-SNE, receptive fields, top patches."""

import keras
import numpy as np
import pytest
from conftest import build_named_model

from cnn_utils import embed, probe, shapes


@pytest.fixture(scope="module")
def model():
    """conv1 -> conv2 -> pool -> flatten -> fc -> drop -> logits (the shared named model)."""
    return build_named_model()


def test_features_default_to_the_penultimate_layer(model):
    x = np.random.default_rng(0).random((7, 8, 8, 1), dtype=np.float32)
    assert probe.penultimate_layer(model) == "fc"  # dropout skipped
    assert probe.features(model, x, batch_size=3).shape == (7, 5)
    assert probe.features(model, x, batch_size=np.int64(3)).shape == (7, 5)
    assert probe.features(model, x, "conv2").shape == (7, 8 * 8 * 4)
    with pytest.raises(ValueError, match=r"layer_name must be one of.*'fc'"):
        probe.features(model, x, "nope")


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


def test_measured_receptive_field_of_two_3x3_convolutions(model):
    assert embed.measured_receptive_field(model, "conv1")[:2] == (3, 3)
    assert embed.measured_receptive_field(model, "conv2") == (5, 5, 1, 1)
    assert embed.measured_receptive_field(model, "pool")[2:] == (2, 2)
    (size, _, _, _), mask = embed.measured_receptive_field(model, "conv2", return_mask=True)
    assert mask.shape == (8, 8) and mask.sum() == 25 and size == shapes.receptive_field([3, 3])
    with pytest.raises(ValueError, match="4-D output"):
        embed.measured_receptive_field(model, "fc")
    with pytest.raises(ValueError, match="layer_name must be one of"):
        embed.measured_receptive_field(model, "nope")


def test_measured_receptive_field_of_a_disconnected_layer_is_a_clear_error():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    cut = keras.layers.Lambda(lambda t: keras.ops.stop_gradient(t), name="cut")(h)
    model = keras.Model(inputs, cut)
    with pytest.raises(ValueError, match="gradient of layer 'cut'.* is None"):
        embed.measured_receptive_field(model, "cut")
    zero = keras.layers.Lambda(lambda t: 0.0 * t, name="zero")(h)
    model = keras.Model(inputs, zero)
    with pytest.raises(ValueError, match="zero on every pixel"):
        embed.measured_receptive_field(model, "zero")


def test_top_activating_patches(model):
    x = np.random.default_rng(1).random((20, 8, 8, 1), dtype=np.float32)
    patches, indices, values = embed.top_activating_patches(model, "conv2", 1, x, k=4)
    assert patches.shape == (4, 5, 5, 1)
    assert len(set(indices.tolist())) == 4 and np.all(np.diff(values) <= 0)
    activations = keras.Model(model.inputs[0], model.get_layer("conv2").output)(x).numpy()
    assert values[0] == pytest.approx(activations[..., 1].max(), rel=1e-5)
    with pytest.raises(ValueError, match="filter_index"):
        embed.top_activating_patches(model, "conv2", 4, x)


_DB = np.random.default_rng(0).random((6, 4), dtype=np.float32)
_NAN = _DB.copy()
_NAN[1, 1] = np.nan


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, x: probe.features(m, x, batch_size=0), "batch_size must be a positive"),
        (lambda m, x: probe.features(m, x, batch_size=1.5), "batch_size must be a positive"),
        (lambda m, x: probe.features(m, np.full_like(x, np.nan)), "x must be finite"),
        (lambda m, x: embed.nearest_neighbors(_NAN, _DB), "queries must be finite"),
        (lambda m, x: embed.nearest_neighbors(_DB, _NAN), "database must be finite"),
        (lambda m, x: embed.nearest_neighbors(_DB, _DB, k=2.0), "k must be in"),
        (lambda m, x: embed.nearest_neighbors(_DB, _DB, k=0), "k must be in"),
        (lambda m, x: embed.nearest_neighbors(_DB, _DB, exclude_self=1), "exclude_self must"),
        (lambda m, x: embed.tsne(_NAN, perplexity=2), "vectors must be finite"),
        (lambda m, x: embed.tsne(_DB, perplexity=float("nan")), "perplexity must be finite"),
        (lambda m, x: embed.tsne(_DB, perplexity=0), "perplexity must be > 0"),
        (lambda m, x: embed.tsne(_DB, perplexity=2, seed=-1), "seed must be >= 0"),
        (lambda m, x: embed.measured_receptive_field(m, "conv1", return_mask="y"), "return_mask"),
        (lambda m, x: embed.top_activating_patches(m, "conv2", 1.0, x), "filter_index must be"),
        (lambda m, x: embed.top_activating_patches(m, "conv2", -1, x), "filter_index must be"),
        (lambda m, x: embed.top_activating_patches(m, "nope", 0, x), "layer_name must be one"),
        (lambda m, x: embed.top_activating_patches(m, "conv2", 0, x, k=0), "k must be in"),
        (lambda m, x: embed.top_activating_patches(m, "conv2", 0, x[0]), "x must be a batch"),
    ],
)
def test_bad_inputs_give_clear_errors(model, call, message):
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        call(model, x)


def test_features_and_receptive_field_under_mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_named_model()
        x = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
        out = probe.features(model, x, "conv2", batch_size=2)
        assert out.dtype == np.float32 and out.shape == (5, 256) and np.isfinite(out).all()
        assert embed.measured_receptive_field(model, "conv2") == (5, 5, 1, 1)
        patches, _, _ = embed.top_activating_patches(model, "conv2", 0, x, k=2)
        assert patches.shape == (2, 5, 5, 1)
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ---------------------------------------------------------------------------------------------
# Transfer learning
# ---------------------------------------------------------------------------------------------


def _fit_briefly(new_model):
    rng = np.random.default_rng(9)
    x, y = rng.random((32, 8, 8, 1), dtype=np.float32), rng.integers(0, 4, 32)
    new_model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    new_model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return x


def _trunk_weights(new_model):
    return [w.numpy().copy() for w in new_model.layers[1].weights]


def test_transfer_frozen_trains_only_the_new_head_and_keeps_the_source():
    source = build_named_model()
    source_weights = [w.copy() for w in source.get_weights()]
    new_model = embed.transfer_model(source, 4, mode="frozen")
    assert new_model.output.shape[-1] == 4 and new_model.layers[-1].name == "new_logits"
    assert len(new_model.trainable_weights) == 2  # the new Dense kernel and bias
    trunk_before = _trunk_weights(new_model)
    x = _fit_briefly(new_model)
    for before, after in zip(trunk_before, _trunk_weights(new_model), strict=True):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(source_weights, source.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    # The frozen trunk computes the source's own penultimate features ("CNN codes").
    codes = new_model.layers[1](x, training=False)  # the chopped trunk
    np.testing.assert_allclose(codes, probe.features(source, x), rtol=1e-5, atol=1e-6)


def test_transfer_finetune_starts_from_the_source_and_scratch_does_not():
    source = build_named_model()
    source_weights = [w.copy() for w in source.get_weights()]
    tuned = embed.transfer_model(source, 4, mode="finetune")
    start = _trunk_weights(tuned)
    for a, b in zip(start, source_weights[: len(start)], strict=True):
        np.testing.assert_array_equal(a, b)
    _fit_briefly(tuned)
    assert any(not np.allclose(a, b) for a, b in zip(start, _trunk_weights(tuned), strict=True))
    for before, after in zip(source_weights, source.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)  # the source is never trained
    scratch = embed.transfer_model(source, 4, mode="scratch", seed=1)
    kernel = scratch.layers[1].get_layer("conv1").kernel.numpy()
    assert not np.allclose(kernel, source.get_layer("conv1").kernel.numpy())
    again = embed.transfer_model(source, 4, mode="scratch", seed=1)
    np.testing.assert_array_equal(again.layers[1].get_layer("conv1").kernel.numpy(), kernel)


def test_transfer_from_a_convolutional_layer_flattens(model):
    new_model = embed.transfer_model(model, 3, layer_name="conv2")
    assert new_model.get_layer("new_flatten").output.shape[-1] == 8 * 8 * 4
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    assert new_model(x).shape == (2, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes must be"),
        ({"num_classes": 3, "mode": "linear"}, "mode must be one of"),
        ({"num_classes": 3, "layer_name": "nope"}, "layer_name must be one of"),
        ({"num_classes": 3, "seed": -2}, "seed must be >= 0"),
    ],
)
def test_transfer_model_bad_inputs(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        embed.transfer_model(model, **kwargs)
