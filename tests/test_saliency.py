"""Tests of cnn_utils.saliency: localisation on a synthetic task, shapes, ranges, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import build_tiny_model

from cnn_utils import blocks, probe, saliency

SIZE, PATCH = 24, 6
METHODS = (
    "gradient_saliency",
    "smoothgrad",
    "occlusion",
    "grad_cam",
    "guided_backprop",
    "deconvnet",
    "guided_grad_cam",
)


def _stripes(vertical: bool) -> np.ndarray:
    line = (np.arange(PATCH) % 2).astype(np.float32)
    patch = np.tile(line, (PATCH, 1))
    return patch if vertical else patch.T


def _patch_task(n: int, seed: int):
    """Noise images with one striped patch at a random place; its orientation is the class."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.3, size=(n, SIZE, SIZE, 1)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    corners = rng.integers(0, SIZE - PATCH + 1, size=(n, 2))
    for i, (top, left) in enumerate(corners):
        x[i, top : top + PATCH, left : left + PATCH, 0] = _stripes(bool(y[i]))
    return x, y, corners


@pytest.fixture(scope="module")
def patch_model():
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 1))
    h = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = layers.MaxPooling2D(2, name="pool1")(h)
    h = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = layers.Dense(2, name="logits")(h)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, y, _ = _patch_task(600, seed=1)
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model


def _tiny_models():
    layers = keras.layers
    sequential = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(3, name="logits"),
        ]
    )
    inputs = keras.Input((8, 8, 1))
    h = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    h = blocks.ResnetBlock(4, 1, first_block=True, name="res2")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    with_blocks = keras.Model(inputs, layers.Dense(3, name="logits")(h))
    inputs = keras.Input((8, 8, 1))
    h = layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = layers.Flatten(name="flatten")(h)
    functional = keras.Model(inputs, layers.Dense(3, name="logits")(h))
    return {"sequential": sequential, "blocks": with_blocks, "functional": functional}


def _run(method, model, x, classes, **kwargs):
    if method == "smoothgrad":
        kwargs.setdefault("num_samples", 3)
        kwargs.setdefault("seed", 0)
    if method == "occlusion":
        kwargs.setdefault("patch_size", 3)
    return getattr(saliency, method)(model, x, classes, **kwargs)


def test_grad_cam_and_occlusion_peak_inside_the_patch(patch_model):
    x, y, corners = _patch_task(40, seed=7)
    accuracy = np.mean(np.argmax(patch_model(x, training=False), axis=1) == y)
    assert accuracy >= 0.9, accuracy  # the model must solve the task for the test to mean much
    maps = {
        "grad_cam": saliency.grad_cam(patch_model, x, y),
        "occlusion": saliency.occlusion(patch_model, x, y, patch_size=4, stride=2, baseline=0.0),
    }
    for name, heat in maps.items():
        peaks = [np.unravel_index(np.argmax(m), m.shape) for m in heat]
        inside = [
            top <= r < top + PATCH and left <= c < left + PATCH
            for (r, c), (top, left) in zip(peaks, corners, strict=True)
        ]
        assert np.mean(inside) >= 0.8, (name, np.mean(inside))


@pytest.mark.parametrize("kind", ["sequential", "blocks", "functional"])
@pytest.mark.parametrize("method", METHODS)
def test_shapes_and_range_on_every_kind_of_model(kind, method):
    model = _tiny_models()[kind]
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    maps = _run(method, model, x, [0, 1, 2])
    assert maps.shape == (3, 8, 8)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert maps.max() == pytest.approx(1.0)  # a non-trivial model gives a non-trivial map


def test_cam_on_gap_models_and_block_layers():
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    for kind in ("sequential", "blocks"):
        maps = saliency.cam(_tiny_models()[kind], x, 1)
        assert maps.shape == (2, 8, 8) and 0.0 <= maps.min() and maps.max() <= 1.0
    model = _tiny_models()["blocks"]
    assert probe.last_feature_layer(model) == "res2"
    assert saliency.grad_cam(model, x, 0, layer_name="conv").shape == (2, 8, 8)


def test_cam_equals_grad_cam_up_to_relu_for_a_gap_head():
    # For conv -> GAP -> Dense, alpha_k = w_kc / (H W): Grad-CAM is ReLU(CAM) up to scale.
    model = _tiny_models()["sequential"]
    x = np.random.default_rng(1).random((2, 8, 8, 1), dtype=np.float32)
    raw_cam = saliency.cam(model, x, 2, normalize=False)
    raw_grad_cam = saliency.grad_cam(model, x, 2, normalize=False)
    np.testing.assert_allclose(np.maximum(raw_cam, 0) / 64.0, raw_grad_cam, atol=1e-5)


def test_never_called_sequential_model_is_built_on_demand():
    layers = keras.layers
    model = keras.Sequential(
        [layers.Conv2D(2, 3, name="conv"), layers.GlobalAveragePooling2D(), layers.Dense(2)]
    )
    with pytest.raises(ValueError, match="never been called"):
        saliency.grad_cam(model, np.zeros((1, 8, 8, 1), np.float32), 0)
    probe.ensure_built(model, (8, 8, 1))
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    assert saliency.grad_cam(model, x, 0).shape == (2, 8, 8)


@pytest.mark.parametrize("method", [*METHODS, "cam"])
def test_zero_gradient_model_gives_finite_maps(method):
    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    h = layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inputs, layers.Dense(2, kernel_initializer="zeros", name="logits")(h))
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    maps = _run(method, model, x, 0) if method != "cam" else saliency.cam(model, x, 0)
    assert maps.shape == (2, 8, 8)
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0


def test_class_index_int_equals_per_image_list():
    model = _tiny_models()["functional"]
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(
        saliency.gradient_saliency(model, x, 1), saliency.gradient_saliency(model, x, [1, 1, 1])
    )
    different = saliency.gradient_saliency(model, x, [0, 1, 2])
    assert not np.allclose(different, saliency.gradient_saliency(model, x, 1))


def test_error_paths():
    model = _tiny_models()["functional"]
    x = np.zeros((2, 8, 8, 1), np.float32)
    with pytest.raises(
        ValueError, match=r"layer_name must be one of.*'conv'.*Received: layer_name='nope'"
    ):
        saliency.grad_cam(model, x, 0, layer_name="nope")
    with pytest.raises(ValueError, match="4-D feature maps"):
        saliency.grad_cam(model, x, 0, layer_name="flatten")
    with pytest.raises(ValueError, match=r"class_index must hold labels in \[0, 3\)"):
        saliency.gradient_saliency(model, x, 3)
    with pytest.raises(ValueError, match="one integer per image"):
        saliency.gradient_saliency(model, x, [0, 1, 2])
    with pytest.raises(ValueError, match="batch of images"):
        saliency.gradient_saliency(model, x[0], 0)
    with pytest.raises(ValueError, match="GlobalAveragePooling2D"):
        saliency.cam(model, x, 0)
    with pytest.raises(ValueError, match="patch_size"):
        saliency.occlusion(model, x, 0, patch_size=9)
    with pytest.raises(ValueError, match="stride"):
        saliency.occlusion(model, x, 0, stride=0)
    with pytest.raises(ValueError, match="noise_level"):
        saliency.smoothgrad(model, x, 0, noise_level=-1.0)
    softmax = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    with pytest.raises(ValueError, match="softmax"):
        saliency.gradient_saliency(softmax, x, 0)


def test_normalize_maps_handles_constant_maps():
    maps = saliency.normalize_maps(np.zeros((2, 4, 4)))
    assert np.isfinite(maps).all() and maps.max() == 0.0
    scaled = saliency.normalize_maps(np.array([[[1.0, 3.0]]]), mode="minmax")
    np.testing.assert_allclose(scaled, [[[0.0, 1.0]]])


# ---------------------------------------------------------------------------------------------
# Bad inputs: one clear ValueError each, naming the argument
# ---------------------------------------------------------------------------------------------

_X = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
_NAN = _X.copy()
_NAN[0, 0, 0, 0] = np.nan


def _softmax_in_a_lambda():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(3)(h)
    return keras.Model(inputs, keras.layers.Lambda(lambda t: keras.ops.softmax(t))(h))


BAD_CALLS = [
    # (method, model kind or None for the GAP model, x, class_index, kwargs, message)
    ("gradient_saliency", _X, 2.5, {}, "class_index must be one integer"),
    ("gradient_saliency", _X, True, {}, "class_index must be one integer"),
    ("gradient_saliency", _X, -1, {}, r"class_index must hold labels in \[0, 3\)"),
    ("gradient_saliency", _X, [[0, 1, 0]], {}, "class_index must be one integer"),
    ("gradient_saliency", _NAN, 0, {}, "x must be finite"),
    ("gradient_saliency", _X[0], 0, {}, "x must be a batch of images"),
    ("gradient_saliency", _X.astype(str), 0, {}, "x must hold numbers"),
    ("gradient_saliency", _X, 0, {"normalize": "yes"}, "normalize must be True or False"),
    ("smoothgrad", _X, 0, {"noise_level": float("nan")}, "noise_level must be finite"),
    ("smoothgrad", _X, 0, {"noise_level": -0.1}, "noise_level must be >= 0"),
    ("smoothgrad", _X, 0, {"num_samples": 0}, "num_samples must be a positive integer"),
    ("smoothgrad", _X, 0, {"num_samples": 2.0}, "num_samples must be a positive integer"),
    ("smoothgrad", _X, 0, {"seed": -1}, "seed must be >= 0"),
    ("smoothgrad", _NAN, 0, {}, "x must be finite"),
    ("occlusion", _X, 0, {"patch_size": 0}, "patch_size must be a positive integer"),
    ("occlusion", _X, 0, {"patch_size": 9}, r"patch_size must be in \[1, 8\]"),
    ("occlusion", _X, 0, {"stride": 1.5}, "stride must be a positive integer"),
    ("occlusion", _X, 0, {"baseline": float("nan")}, "baseline must be finite"),
    ("occlusion", _X, 0, {"batch_size": 0}, "batch_size must be a positive integer"),
    ("occlusion", _X, 5, {}, "class_index must hold labels"),
    ("occlusion", _NAN, 0, {}, "x must be finite"),
    ("cam", _X, 3, {}, "class_index must hold labels"),
    ("cam", _NAN, 0, {}, "x must be finite"),
    ("cam", _X, 0, {"normalize": 1}, "normalize must be True or False"),
    ("grad_cam", _X, 0, {"layer_name": "nope"}, r"layer_name must be one of .*'conv'"),
    ("grad_cam", _X, 0, {"layer_name": "gap"}, "4-D feature maps"),
    ("grad_cam", _X, np.array([0, 1, 2]), {}, "one integer per image"),
    ("grad_cam", _NAN, 0, {}, "x must be finite"),
]


@pytest.mark.parametrize(
    ("method", "x", "class_index", "kwargs", "message"),
    BAD_CALLS,
    ids=[f"{c[0]}-{c[-1][:30]}" for c in BAD_CALLS],
)
def test_bad_inputs_give_clear_errors(method, x, class_index, kwargs, message):
    model = _tiny_models()["sequential"]
    with pytest.raises(ValueError, match=message):
        getattr(saliency, method)(model, x, class_index, **kwargs)


@pytest.mark.parametrize("method", [*METHODS, "cam"])
@pytest.mark.parametrize("kind", ["dense_softmax", "lambda_softmax"])
def test_probability_models_are_refused_with_the_logits_hint(method, kind, make_tiny_model):
    model = make_tiny_model(activation="softmax") if kind == "dense_softmax" else None
    model = _softmax_in_a_lambda() if model is None else model
    with pytest.raises(ValueError, match="must return logits.*classifier_activation=None"):
        _run(method, model, _X, 0) if method != "cam" else saliency.cam(model, _X, 0)


@pytest.mark.parametrize("method", ["gradient_saliency", "smoothgrad", "grad_cam"])
def test_output_that_ignores_the_input_is_a_clear_error(method):
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    h = keras.layers.Lambda(lambda t: keras.ops.stop_gradient(t), name="cut")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    kwargs = {"layer_name": "conv"} if method == "grad_cam" else {}
    with pytest.raises(ValueError, match="gradient of the class score .* is None"):
        _run(method, model, _X, 0, **kwargs)


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("method", [*METHODS, "cam"])
def test_every_method_works_under_mixed_float16(mixed_precision, method):
    model = _tiny_models()["sequential"]
    assert model.layers[0].compute_dtype == "float16"
    maps = _run(method, model, _X, [0, 2]) if method != "cam" else saliency.cam(model, _X, [0, 2])
    assert maps.shape == (2, 8, 8) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and 0.0 <= maps.min() and maps.max() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Deconvnet, guided backpropagation and Guided Grad-CAM
# ---------------------------------------------------------------------------------------------


def _by_hand(model, x, c, rule):
    """dS_c/dx of conv(relu) -> flatten -> dense with the ReLU rule applied by hand."""
    conv, dense = model.layers[0], model.layers[-1]
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = tf.nn.conv2d(x, conv.kernel, 1, "VALID") + conv.bias  # pre-activation
    g = tf.broadcast_to(tf.reshape(dense.kernel[:, c], (1, *z.shape[1:])), z.shape)
    positive_g, open_gate = tf.maximum(g, 0.0), tf.cast(z > 0, tf.float32)
    g_z = {"standard": g * open_gate, "deconvnet": positive_g, "guided": positive_g * open_gate}
    return tape.gradient(z, x, output_gradients=g_z[rule]).numpy()


@pytest.mark.parametrize("rule", saliency.RELU_RULES)
def test_relu_rules_match_the_backward_pass_by_hand(rule):
    model = build_tiny_model(seed=3)
    x = np.random.default_rng(0).normal(0.5, 0.5, (4, 8, 8, 1)).astype(np.float32)
    got = saliency.backprop_gradients(model, x, 1, rule=rule)
    np.testing.assert_allclose(got, _by_hand(model, x, 1, rule), rtol=1e-5, atol=1e-6)
    # Some units are off and some weights negative, so the three rules really differ here.
    assert not np.allclose(got, _by_hand(model, x, 1, "guided" if rule != "guided" else "standard"))


def test_standard_rule_is_the_plain_gradient_and_relu_is_restored():
    model = build_tiny_model(seed=3)
    x = np.random.default_rng(1).random((2, 8, 8, 1), dtype=np.float32)
    plain = saliency.gradient_saliency(model, x, 0, normalize=False)
    standard = np.abs(saliency.backprop_gradients(model, x, 0, rule="standard")).max(-1)
    np.testing.assert_allclose(standard, plain, rtol=1e-6)
    original = tf.nn.relu
    with pytest.raises(RuntimeError), saliency.relu_backward("guided"):
        assert tf.nn.relu is not original
        raise RuntimeError("an error inside the block")
    assert tf.nn.relu is original  # restored even after an error
    np.testing.assert_allclose(saliency.gradient_saliency(model, x, 0, normalize=False), plain)


def test_deconvnet_ignores_the_forward_mask_and_guided_uses_it():
    # Shift the conv bias: the units switched on change, the dense weights do not.
    model = build_tiny_model(seed=3)
    x = np.random.default_rng(2).random((2, 8, 8, 1), dtype=np.float32)
    before = {r: saliency.backprop_gradients(model, x, 2, rule=r) for r in ("deconvnet", "guided")}
    conv = model.layers[0]
    conv.bias.assign(conv.bias - 0.3)
    after = {r: saliency.backprop_gradients(model, x, 2, rule=r) for r in ("deconvnet", "guided")}
    np.testing.assert_allclose(after["deconvnet"], before["deconvnet"], rtol=1e-6)
    assert not np.allclose(after["guided"], before["guided"])


def test_guided_signal_is_non_negative_at_every_relu():
    # With an identity first layer the input gradient IS the signal at the first ReLU's output.
    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    h = layers.ReLU(name="relu0")(inputs)
    h = layers.Conv2D(4, 3, activation="relu", name="conv")(h)
    h = layers.Flatten(name="flatten")(h)
    model = keras.Model(inputs, layers.Dense(3, name="logits")(h))
    x = np.random.default_rng(3).normal(0.0, 1.0, (3, 8, 8, 1)).astype(np.float32)
    guided = saliency.backprop_gradients(model, x, 0, rule="guided")
    standard = saliency.backprop_gradients(model, x, 0, rule="standard")
    assert guided.min() >= 0.0 and np.all(guided[x <= 0] == 0.0)  # gated by sign and by mask
    assert standard.min() < 0.0  # the true gradient has negative parts here


def test_guided_grad_cam_is_guided_backprop_times_grad_cam():
    model = _tiny_models()["blocks"]
    x = np.random.default_rng(4).random((3, 8, 8, 1), dtype=np.float32)
    guided = saliency.guided_backprop(model, x, [0, 1, 2], normalize=False)
    cam_maps = saliency.grad_cam(model, x, [0, 1, 2])
    got = saliency.guided_grad_cam(model, x, [0, 1, 2])
    np.testing.assert_allclose(got, saliency.normalize_maps(guided * cam_maps), atol=1e-6)
    assert got.shape == (3, 8, 8)


def test_unknown_relu_rule_is_a_clear_error(tiny_model):
    x = np.zeros((1, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="rule"):
        saliency.backprop_gradients(tiny_model, x, 0, rule="zeiler")
