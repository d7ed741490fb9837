"""Tests of cnn_utils.exercises.ex04: each check accepts the solution and rejects typical errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import build_named_model

from cnn_utils import probe, saliency
from cnn_utils.exercises import CORRECT, NOT_ATTEMPTED, WRONG, ex04


@pytest.fixture(scope="module")
def model():
    """conv1 -> conv2 -> pool -> flatten -> fc -> drop -> logits (2 classes)."""
    return build_named_model()


@pytest.fixture(scope="module")
def staged():
    """conv 3x3 -> pool 2 -> conv 3x3 -> pool 2 -> conv 3x3 on 28x28 (the course CNN's stack)."""
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((28, 28, 1))
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1_1")(inputs)
    h = layers.MaxPooling2D(2, name="pool1")(h)
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2_1")(h)
    h = layers.MaxPooling2D(2, name="pool2")(h)
    h = layers.Conv2D(4, 3, padding="same", name="conv3_1")(h)
    h = layers.ReLU(name="relu3_1")(h)
    h = layers.Flatten(name="flatten")(h)
    return keras.Model(inputs, layers.Dense(3, name="logits")(h))


def _x(n=4, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def _message(feedback):
    return feedback.message.lower()


# 4.1 ------------------------------------------------------------------------------------------


def test_receptive_field_accepts_18_and_explains_typical_errors(staged):
    assert ex04.receptive_field(18, staged, "relu3_1", verbose=0).status == CORRECT
    # The trained course CNN's relu3_1 measures 18 by backpropagation too (notebook 04, sec. 5).
    assert ex04.receptive_field(..., staged, "relu3_1", verbose=0).status == NOT_ATTEMPTED
    cases = {7: "poolings", 9: "strides", 10: "one layer early", 19: "receptive field of this"}
    for answer, hint in cases.items():
        feedback = ex04.receptive_field(answer, staged, "relu3_1", verbose=0)
        assert feedback.status == WRONG and hint in _message(feedback), (answer, feedback)
    assert ex04.receptive_field("18", staged, "relu3_1", verbose=0).status == WRONG


# 4.2 ------------------------------------------------------------------------------------------


def _saliency(model, x, c, *, probability=False, signed=False, keep_channels=False):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = model(x, training=False)
        out = tf.nn.softmax(out) if probability else out
        score = tf.reduce_sum(out[:, c])
    g = tape.gradient(score, x).numpy()
    if keep_channels:
        return np.abs(g)
    return g.max(axis=-1) if signed else np.abs(g).max(axis=-1)


def test_saliency_function_accepts_raw_and_normalised_maps(model):
    x = _x()
    assert ex04.saliency_function(_saliency, model, x, 1, verbose=0).correct

    def normalised(m, images, c):
        return saliency.gradient_saliency(m, images, c)

    assert ex04.saliency_function(normalised, model, x, 1, verbose=0).correct


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"probability": True}, "softmax"),
        ({"signed": True}, "absolute"),
        ({"keep_channels": True}, "channel"),
    ],
)
def test_saliency_function_rejects_typical_errors(model, kwargs, hint):
    def wrong(m, images, c):
        return _saliency(m, images, c, **kwargs)

    feedback = ex04.saliency_function(wrong, model, _x(), 1, verbose=0)
    assert feedback.status == WRONG and hint in _message(feedback), feedback


def test_saliency_function_other_class_and_skeleton(model):
    def other_class(m, images, c):
        return _saliency(m, images, 1 - c)

    assert ex04.saliency_function(other_class, model, _x(), 1, verbose=0).status == WRONG

    def skeleton(m, images, c):
        raise NotImplementedError

    assert ex04.saliency_function(skeleton, model, _x(), 1, verbose=0).status == NOT_ATTEMPTED


# 4.3 ------------------------------------------------------------------------------------------


def _grad_cam(model, x, c, layer, *, reduce="mean", relu=True, probability=False, scale=1.0):
    both = probe.layer_model(model, [layer, None])
    with tf.GradientTape() as tape:
        features, logits = both(tf.constant(x), training=False)
        out = tf.nn.softmax(logits) if probability else logits
        score = tf.reduce_sum(out[:, c])
    grads = tape.gradient(score, features)
    alpha = getattr(tf, f"reduce_{reduce}")(grads, axis=(1, 2))
    maps = tf.einsum("bhwk,bk->bhw", features, alpha)
    maps = tf.nn.relu(maps) if relu else maps
    return alpha.numpy(), maps.numpy() * scale


def test_grad_cam_function_accepts_the_solution_and_matches_the_package(model):
    x = _x()
    assert ex04.grad_cam_function(_grad_cam, model, x, 1, "conv2", verbose=0).correct
    # The same map as saliency.grad_cam before its resize (8x8 here, so no resize at all).
    _, maps = _grad_cam(model, x, 1, "conv2")
    np.testing.assert_allclose(
        maps, saliency.grad_cam(model, x, 1, "conv2", normalize=False), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"reduce": "sum"}, "sum"),
        ({"reduce": "max"}, "maximum"),
        ({"probability": True}, "softmax"),
        ({"relu": False}, "relu"),
        ({"scale": 3.0}, "normalisation"),
    ],
)
def test_grad_cam_function_rejects_typical_errors(model, kwargs, hint):
    def wrong(m, images, c, layer):
        return _grad_cam(m, images, c, layer, **kwargs)

    x = _x(6, seed=3)
    # A class whose map sum_k alpha_k A_k has negative values somewhere (else ReLU is a no-op).
    c = next(c for c in (0, 1) if _grad_cam(model, x, c, "conv2", relu=False)[1].min() < -1e-4)
    feedback = ex04.grad_cam_function(wrong, model, x, c, "conv2", verbose=0)
    assert feedback.status == WRONG and hint in _message(feedback), feedback


# 4.4 ------------------------------------------------------------------------------------------


def test_occlusion_position_accepts_the_best_corner_and_explains_errors(staged):
    image, label = _x(1, (28, 28, 1), seed=5)[0], 2
    drops = ex04.occlusion_drops(staged, image, label, 6, 2)
    best = max(drops, key=drops.get)
    worst = min(drops, key=drops.get)
    check = ex04.occlusion_position
    assert check(best, staged, image, label, verbose=0).correct
    assert check(list(best), staged, image, label, verbose=0).correct
    assert check(None, staged, image, label, verbose=0).status == NOT_ATTEMPTED
    assert "least" in _message(check(worst, staged, image, label, verbose=0))
    assert "grid" in _message(check((1, 3), staged, image, label, verbose=0))
    assert "pair" in _message(check(5, staged, image, label, verbose=0))
    if best[0] != best[1] and drops[best[::-1]] < drops[best] - 1e-6:
        assert "swapped" in _message(check(best[::-1], staged, image, label, verbose=0))
    second = sorted(drops, key=drops.get)[-2]
    if drops[second] < drops[best] - 1e-6 and second[::-1] != best:
        assert check(second, staged, image, label, verbose=0).status == WRONG


def test_occlusion_drops_match_the_package_on_one_patch(staged):
    image, label = _x(1, (28, 28, 1), seed=6), 0
    drops = ex04.occlusion_drops(staged, image[0], label, 28, 1)  # one patch: the whole image
    raw = saliency.occlusion(staged, image, label, patch_size=28, stride=1, normalize=False)
    np.testing.assert_allclose(raw[0, 0, 0], drops[(0, 0)], rtol=1e-5, atol=1e-6)
