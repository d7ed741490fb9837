"""Tests of cnn_utils.maximize: regulariser effects, the loop, and each method."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn_utils import blocks, maximize


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = blocks.ResnetBlock(4, 1, first_block=True, name="res2")(h)
    h = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv3")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inputs, layers.Dense(3, name="logits")(h))


def _high_frequency_energy(x):
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(x[..., 0]), axes=(1, 2))) ** 2
    h, w = spectrum.shape[1:]
    yy, xx = np.mgrid[:h, :w]
    far = np.hypot(yy - h // 2, xx - w // 2) > min(h, w) / 4
    return spectrum[:, far].sum()


def test_blur_lowers_high_frequency_energy():
    x = np.random.default_rng(0).random((2, 16, 16, 1), dtype=np.float32)
    blurred = maximize.gaussian_blur(x, 1.0).numpy()
    assert blurred.shape == x.shape
    assert _high_frequency_energy(blurred) < 0.2 * _high_frequency_energy(x)
    np.testing.assert_allclose(blurred.mean(), x.mean(), atol=0.02)  # a low-pass, not a fade


def test_blur_transform_acts_only_every_k_steps():
    x = tf.constant(np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32))
    blur = maximize.Blur(sigma=1.0, every=3)
    np.testing.assert_array_equal(blur(x, step=1).numpy(), x.numpy())
    assert not np.allclose(blur(x, step=3).numpy(), x.numpy())


def test_total_variation_regulariser_lowers_total_variation(model):
    kwargs = dict(steps=30, transforms=(), seed=0, verbose=0)
    plain = maximize.maximize_activation(model, "conv3", 0, regularizers=(), **kwargs)
    smooth = maximize.maximize_activation(
        model, "conv3", 0, regularizers=[maximize.TotalVariation(50.0)], **kwargs
    )
    assert maximize.total_variation(smooth)[0] < 0.5 * maximize.total_variation(plain)[0]


def test_l2_regulariser_lowers_the_norm(model):
    kwargs = dict(steps=30, transforms=(), seed=0, verbose=0)
    plain = maximize.visualize_class(model, 1, regularizers=(), **kwargs)
    small = maximize.visualize_class(model, 1, regularizers=[maximize.L2(50.0)], **kwargs)
    assert np.mean(small**2) < 0.5 * np.mean(plain**2)


def test_clip_small_values_and_gradients_zero_the_lowest_percentile():
    x = tf.constant(np.arange(1, 101, dtype=np.float32).reshape(1, 10, 10, 1))
    clipped = maximize.ClipSmallValues(percentile=30)(x, step=1).numpy()
    assert (clipped == 0).sum() == 30 and clipped.max() == 100
    grads = tf.constant(np.ones((1, 10, 10, 1), np.float32))
    clipped = maximize.ClipSmallGradients(percentile=50)(x, grads=grads, step=1).numpy()
    assert (clipped == 0).sum() == 50 and clipped[0, 9, 9, 0] == 100


def test_jitter_shifts_without_changing_content():
    x = tf.constant(np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32))
    shifted = maximize.Jitter(2, seed=0)(x).numpy()
    np.testing.assert_allclose(np.sort(shifted.ravel()), np.sort(x.numpy().ravel()))


def test_maximize_activation_raises_its_filter(model):
    images, history = maximize.maximize_activation(
        model, "res2", [0, 1, 2], steps=40, seed=0, verbose=0, return_history=True
    )
    assert images.shape == (3, 8, 8, 1)
    assert images.min() >= 0.0 and images.max() <= 1.0 and np.isfinite(images).all()
    assert history[-1] > history[0]


def test_visualize_class_raises_the_logit_and_is_seeded(model):
    images, history = maximize.visualize_class(
        model, [0, 2], steps=30, seed=3, verbose=0, return_history=True
    )
    assert images.shape == (2, 8, 8, 1) and history[-1] > history[0]
    again = maximize.visualize_class(model, [0, 2], steps=30, seed=3, verbose=0)
    np.testing.assert_allclose(images, again)


def test_invert_features_lowers_the_feature_distance(model):
    x = np.random.default_rng(1).random((2, 8, 8, 1), dtype=np.float32)
    target = maximize.layer_features(model, "conv1", x)
    start = np.full_like(x, 0.5)
    before = np.mean((maximize.layer_features(model, "conv1", start) - target) ** 2)
    images, history = maximize.invert_features(
        model, "conv1", x, steps=60, seed=0, verbose=0, return_history=True
    )
    after = np.mean((maximize.layer_features(model, "conv1", images) - target) ** 2)
    assert after < 0.2 * before
    assert -history[-1] < 0.2 * -history[0]


def test_deep_dream_amplifies_the_layer(model):
    image = np.random.default_rng(2).random((1, 8, 8, 1), dtype=np.float32) * 0.5
    dreamed, history = maximize.deep_dream(
        model, ["conv1", "res2"], image, steps=20, seed=0, verbose=0, return_history=True
    )
    assert dreamed.shape == image.shape and history[-1] > history[0]


def test_style_transfer_and_gram_matrices(model):
    rng = np.random.default_rng(3)
    content, style = rng.random((2, 1, 8, 8, 1), dtype=np.float32)
    gram = maximize.gram_matrix(maximize.layer_features(model, "conv1", content)).numpy()
    assert gram.shape == (1, 4, 4)
    np.testing.assert_allclose(gram, np.transpose(gram, (0, 2, 1)), rtol=1e-5)
    result, history = maximize.style_transfer(
        model,
        content,
        style,
        content_layer="res2",
        style_layers=["conv1", "res2"],
        style_weight=10.0,
        steps=30,
        verbose=0,
        return_history=True,
    )
    assert result.shape == content.shape and history[-1] > history[0]


def test_progress_is_shown_and_silenced(model, capsys):
    maximize.visualize_class(model, 0, steps=3, verbose=0)
    assert capsys.readouterr().out == ""
    maximize.visualize_class(model, 0, steps=3, verbose=1)
    assert "score" in capsys.readouterr().out


def test_sequential_model_without_input_layer():
    layers = keras.layers
    seq = keras.Sequential([layers.Conv2D(2, 3, name="conv"), layers.Flatten(), layers.Dense(2)])
    seq.build((None, 8, 8, 1))
    images = maximize.maximize_activation(seq, "conv", 1, steps=5, verbose=0)
    assert images.shape == (1, 8, 8, 1)


def test_error_paths(model):
    with pytest.raises(ValueError, match=r"layer_name must be one of.*'conv1'.*'nope'"):
        maximize.maximize_activation(model, "nope", 0, verbose=0)
    with pytest.raises(ValueError, match="filter_index must be in"):
        maximize.maximize_activation(model, "conv1", 4, verbose=0)
    with pytest.raises(ValueError, match="class_index must be in"):
        maximize.visualize_class(model, 3, verbose=0)
    with pytest.raises(ValueError, match="steps must be"):
        maximize.visualize_class(model, 0, steps=0, verbose=0)
    with pytest.raises(ValueError, match="learning_rate"):
        maximize.visualize_class(model, 0, learning_rate=0.0, verbose=0)
    with pytest.raises(ValueError, match="weight must be"):
        maximize.L2(-1.0)
    with pytest.raises(ValueError, match="every"):
        maximize.Blur(every=0)
    with pytest.raises(ValueError, match="percentile"):
        maximize.ClipSmallValues(percentile=100)
    with pytest.raises(ValueError, match="style_image"):
        maximize.style_transfer(
            model,
            np.zeros((8, 8, 1)),
            np.zeros((6, 6, 1)),
            content_layer="res2",
            style_layers=["conv1"],
            verbose=0,
        )
