"""Tests of cnn_utils.maximize: regulariser effects, the loop, and each method."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn_utils import blocks, maximize, probe


def _build():
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = blocks.ResnetBlock(4, 1, first_block=True, name="res2")(h)
    h = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv3")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inputs, layers.Dense(3, name="logits")(h))


@pytest.fixture(scope="module")
def model():
    return _build()


def _features(model, layer_name, x):
    return probe.features(model, x, layer_name, flatten=False)


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
    target = _features(model, "conv1", x)
    start = np.full_like(x, 0.5)
    before = np.mean((_features(model, "conv1", start) - target) ** 2)
    images, history = maximize.invert_features(
        model, "conv1", x, steps=60, seed=0, verbose=0, return_history=True
    )
    after = np.mean((_features(model, "conv1", images) - target) ** 2)
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
    gram = maximize.gram_matrix(_features(model, "conv1", content)).numpy()
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
    with pytest.raises(ValueError, match=r"class_index must be in \[0, 3\)"):
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


_X = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)


def _nan_image():
    x = _X.copy()
    x[0, 0, 0, 0] = np.nan
    return x


BAD_CALLS = [
    (lambda m: maximize.maximize_activation(m, "conv1", 0.5), "filter_index must be an integer"),
    (lambda m: maximize.maximize_activation(m, "conv1", True), "filter_index must be an integer"),
    (lambda m: maximize.maximize_activation(m, "conv1", -1), r"filter_index must be in \[0, 4\)"),
    (lambda m: maximize.maximize_activation(m, "conv1", []), "filter_index must be an integer"),
    (lambda m: maximize.maximize_activation(m, 3, 0), "layer_name must be one of"),
    (lambda m: maximize.maximize_activation(m, "conv1", 0, steps=2.0), "steps must be a positive"),
    (lambda m: maximize.maximize_activation(m, "conv1", 0, steps=True), "steps must be a positive"),
    (
        lambda m: maximize.maximize_activation(m, "conv1", 0, learning_rate=float("inf")),
        "learning_rate must be finite",
    ),
    (
        lambda m: maximize.maximize_activation(m, "conv1", 0, learning_rate=float("nan")),
        "learning_rate must be finite",
    ),
    (
        lambda m: maximize.maximize_activation(m, "conv1", 0, learning_rate=-1),
        "learning_rate must be > 0",
    ),
    (lambda m: maximize.maximize_activation(m, "conv1", 0, seed=1.5), "seed must be an integer"),
    (lambda m: maximize.maximize_activation(m, "conv1", 0, verbose=3), "verbose must be one of"),
    (
        lambda m: maximize.maximize_activation(m, "conv1", 0, return_history="yes"),
        "return_history must be True or False",
    ),
    (lambda m: maximize.maximize_activation(m, "conv1", 0, init=_X * 255), "divide by 255"),
    (lambda m: maximize.maximize_activation(m, "conv1", 0, init=_nan_image()), "init must be fin"),
    (lambda m: maximize.visualize_class(m, 2.5), "class_index must be an integer"),
    (lambda m: maximize.visualize_class(m, [0, 3]), r"class_index must be in \[0, 3\)"),
    (lambda m: maximize.visualize_class(m, 0, probability="no"), "probability must be True"),
    (lambda m: maximize.invert_features(m, "conv1", _X * 255), "divide by 255"),
    (lambda m: maximize.invert_features(m, "conv1", _nan_image()), "x must be finite"),
    (lambda m: maximize.invert_features(m, "conv1", _X, tv_weight=-1), "weight must be >= 0"),
    (lambda m: maximize.invert_features(m, "nope", _X), "layer_name must be one of"),
    (lambda m: maximize.deep_dream(m, "conv1", _X * 255), "divide by 255"),
    (lambda m: maximize.deep_dream(m, "conv1", _X - 1), r"image must lie in \[0, 1\]"),
    (lambda m: maximize.deep_dream(m, "nope", _X), "layer_names must be one of"),
    (lambda m: maximize.deep_dream(m, ["conv1", "nope"], _X), "layer_names must be one of"),
    (
        lambda m: maximize.style_transfer(
            m, _X[:1], _X[1:], content_layer="nope", style_layers=["conv1"]
        ),
        "content_layer must be one of",
    ),
    (
        lambda m: maximize.style_transfer(
            m, _X[:1], _X[1:], content_layer="res2", style_layers=["conv1", "nope"]
        ),
        "style_layers must be one of",
    ),
    (lambda m: maximize.deep_dream(m, [], _X), "layer_names must not be empty"),
    (
        lambda m: maximize.style_transfer(
            m, _X[:1] * 255, _X[1:], content_layer="res2", style_layers=["conv1"]
        ),
        "content_image must lie in",
    ),
    (
        lambda m: maximize.style_transfer(
            m, _X[:1], _X[1:], content_layer="res2", style_layers=["conv1"], style_weight=-1
        ),
        "style_weight must be >= 0",
    ),
    (
        lambda m: maximize.style_transfer(m, _X[:1], _X[1:], content_layer="res2", style_layers=[]),
        "style_layers must name at least one layer",
    ),
    (lambda m: maximize.optimize_input(m, object(), verbose=0), "objective must be a callable"),
    (lambda m: maximize.L2(float("nan")), "weight must be finite"),
    (lambda m: maximize.TotalVariation("1"), "weight must be a number"),
    (lambda m: maximize.Jitter(1.5), "pixels must be an integer"),
    (lambda m: maximize.Blur(sigma=0), "sigma must be > 0"),
    (lambda m: maximize.Blur(every=2.0), "every must be a positive integer"),
    (lambda m: maximize.ClipSmallValues(percentile=float("nan")), "percentile must be finite"),
    (lambda m: maximize.ClipSmallGradients(percentile=-1), "percentile must be >= 0"),
    (lambda m: maximize.gaussian_blur(_X, sigma=float("inf")), "sigma must be finite"),
    (lambda m: maximize.gaussian_blur(_X[0]), "x must be a batch of images"),
    (lambda m: maximize.total_variation(_X[0, ..., 0]), "x must be a batch of images"),
    (lambda m: maximize.gram_matrix(_X[0]), "features must be a batch of images or feature"),
]


@pytest.mark.parametrize(("call", "message"), BAD_CALLS, ids=[c[1][:40] for c in BAD_CALLS])
def test_bad_inputs_give_clear_errors(model, call, message):
    with pytest.raises(ValueError, match=message):
        call(model)


@pytest.mark.parametrize("kind", ["dense_softmax", "lambda_softmax"])
def test_visualize_class_refuses_probability_models(kind, make_tiny_model):
    model = make_tiny_model(activation="softmax" if kind == "dense_softmax" else None)
    if kind == "lambda_softmax":
        model = keras.Model(model.inputs, keras.layers.Lambda(keras.ops.softmax)(model.outputs[0]))
    with pytest.raises(ValueError, match="must return logits"):
        maximize.visualize_class(model, 0, steps=1, verbose=0)


def test_objective_that_ignores_the_image_is_a_clear_error():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    cut = keras.layers.Lambda(lambda t: keras.ops.stop_gradient(t), name="cut")(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(cut)))
    with pytest.raises(ValueError, match="gradient of the objective .* is None"):
        maximize.maximize_activation(model, "cut", 0, steps=2, verbose=0)


def test_every_method_works_under_mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _build()
        assert model.get_layer("conv1").compute_dtype == "float16"
        kwargs = dict(steps=3, verbose=0, return_history=True)
        results = {
            "maximize_activation": maximize.maximize_activation(model, "conv3", [0, 1], **kwargs),
            "visualize_class": maximize.visualize_class(model, [0, 2], **kwargs),
            "invert_features": maximize.invert_features(model, "conv1", _X, **kwargs),
            "deep_dream": maximize.deep_dream(model, ["conv1", "res2"], _X, **kwargs),
            "style_transfer": maximize.style_transfer(
                model, _X[:1], _X[1:], content_layer="res2", style_layers=["conv1"], **kwargs
            ),
        }
        for name, (images, history) in results.items():
            assert images.dtype == np.float32, name
            assert np.isfinite(images).all() and 0.0 <= images.min() <= images.max() <= 1.0, name
            assert np.isfinite(history).all() and len(history) == 3, name
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ---------------------------------------------------------------------------------------------
# Pre-image priors (TV^beta, alpha-norm) and caricaturisation
# ---------------------------------------------------------------------------------------------


def test_total_variation_beta_1_is_the_coupled_form_by_hand():
    x = np.random.default_rng(5).random((2, 6, 7, 1)).astype(np.float32)
    dy, dx = np.diff(x, axis=1)[:, :, :-1], np.diff(x, axis=2)[:, :-1]
    expected = np.sqrt(dy**2 + dx**2 + 1e-8).reshape(2, -1).mean(axis=1)
    np.testing.assert_allclose(maximize.total_variation(x, beta=1.0), expected, rtol=1e-5)
    beta2 = (np.diff(x, axis=1) ** 2).reshape(2, -1).mean(1) + (np.diff(x, axis=2) ** 2).reshape(
        2, -1
    ).mean(1)
    np.testing.assert_allclose(maximize.total_variation(x), beta2, rtol=1e-5)


def test_beta_2_prefers_a_ramp_to_a_step_and_beta_1_does_not():
    columns = np.arange(16, dtype=np.float32)
    step = np.broadcast_to((columns >= 8).astype(np.float32), (16, 16))
    ramp = np.broadcast_to(np.clip((columns - 4) / 8, 0, 1).astype(np.float32), (16, 16))
    images = np.stack([step, ramp])[..., None]
    tv1 = maximize.total_variation(images, beta=1.0).numpy()
    tv2 = maximize.total_variation(images, beta=2.0).numpy()
    assert tv2[1] < 0.2 * tv2[0]  # squared differences: spreading the edge over 8 pixels pays
    assert abs(tv1[1] - tv1[0]) < 0.05 * tv1[0]  # beta = 1: an edge costs its height


def test_alpha_norm_by_hand_and_it_pulls_extreme_pixels_in(model):
    x = np.random.default_rng(6).random((2, 8, 8, 1)).astype(np.float32)
    expected = 3.0 * (np.abs(x - 0.5) ** 6).reshape(2, -1).mean(axis=1)
    np.testing.assert_allclose(
        maximize.AlphaNorm(3.0, alpha=6)(tf.constant(x)), expected, rtol=1e-4
    )
    plain = maximize.invert_features(model, "conv1", x, steps=40, tv_weight=0.0, seed=0, verbose=0)
    prior = maximize.invert_features(
        model, "conv1", x, steps=40, tv_weight=0.0, alpha_weight=1e4, seed=0, verbose=0
    )
    assert np.abs(prior - 0.5).max() < np.abs(plain - 0.5).max()


def test_invert_features_with_tv_beta_1_still_matches_the_features(model):
    x = np.random.default_rng(7).random((2, 8, 8, 1), dtype=np.float32)
    _, history = maximize.invert_features(
        model,
        "conv1",
        x,
        steps=60,
        tv_beta=1.0,
        alpha_weight=1.0,
        seed=0,
        verbose=0,
        return_history=True,
    )
    assert -history[-1] < 0.3 * -history[0]


def test_caricature_strengthens_the_start_images_own_features(model):
    image = np.random.default_rng(8).random((2, 8, 8, 1), dtype=np.float32) * 0.6 + 0.2
    target = _features(model, "res2", image)
    assert np.allclose(maximize.FeatureDot("res2", target)({"res2": tf.constant(target)}), 1.0)
    images, history = maximize.caricature(
        model, "res2", image, steps=20, transforms=(), seed=0, verbose=0, return_history=True
    )
    assert abs(history[0] - 1.0) < 1e-4 and history[-1] > 1.5
    after = _features(model, "res2", images).reshape(2, -1)
    flat = target.reshape(2, -1)
    cosine = (after * flat).sum(1) / np.linalg.norm(after, axis=1) / np.linalg.norm(flat, axis=1)
    assert cosine.min() > 0.5  # more of the same pattern, not a different one
