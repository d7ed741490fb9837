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


def test_receptive_field_of_the_deeper_cnn_and_typical_errors():
    # conv, conv, pool 2, conv, conv, pool 2, conv: 1 + 2 + 2 + 1 + 4 + 4 + 2 + 8 = 24.
    assert ex04.receptive_field(24, verbose=0).status == CORRECT
    assert ex04.receptive_field(..., verbose=0).status == NOT_ATTEMPTED
    cases = {11: "poolings", 13: "strides", 16: "one layer early", 30: "too large"}
    for answer, hint in cases.items():
        feedback = ex04.receptive_field(answer, verbose=0)
        assert feedback.status == WRONG and hint in _message(feedback), (answer, feedback)
    assert ex04.receptive_field("24", verbose=0).status == WRONG
    assert ex04.receptive_field(24.5, verbose=0).status == WRONG
    assert ex04.receptive_field(18, verbose=0).status == WRONG  # the notebook's measured 18


# 4.2 ------------------------------------------------------------------------------------------


def _saliency(model, x, c, *, probability=False, signed=False, keep_channels=False):
    x = tf.constant(x)
    c = np.broadcast_to(np.asarray(c).reshape(-1), (x.shape[0],))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = model(x, training=False)
        out = tf.nn.softmax(out) if probability else out
        score = tf.reduce_sum(tf.gather(out, c, axis=1, batch_dims=1))
    g = tape.gradient(score, x).numpy()
    if keep_channels:
        return np.abs(g)
    return g.max(axis=-1) if signed else np.abs(g).max(axis=-1)


def test_saliency_function_accepts_raw_and_normalised_maps(model):
    x = _x()
    assert ex04.saliency_function(_saliency, model, x, 1, verbose=0).correct

    def normalised(m, images, c):
        maps = _saliency(m, images, c)
        return maps / maps.max(axis=(1, 2), keepdims=True)

    assert ex04.saliency_function(normalised, model, x, 1, verbose=0).correct


def test_saliency_function_calling_the_package_is_not_yet(model):
    def package(m, images, c):
        return saliency.gradient_saliency(m, images, c)

    feedback = ex04.saliency_function(package, model, _x(), 1, verbose=0)
    assert feedback.status == WRONG and "gradient_saliency" in feedback.message
    assert saliency.gradient_saliency(model, _x(), 1).shape == (4, 8, 8)  # restored


def test_saliency_function_mean_over_channels_is_not_yet(model):
    # The notebook's images are grey (one channel): the check also runs on colour images.
    def channel_mean(m, images, c):
        x = tf.constant(images)
        c = np.broadcast_to(np.asarray(c).reshape(-1), (x.shape[0],))
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(tf.gather(m(x, training=False), c, axis=1, batch_dims=1))
        return np.abs(tape.gradient(score, x).numpy()).mean(axis=-1)

    assert ex04.saliency_function(channel_mean, model, _x(), 1, verbose=0).status == WRONG
    feedback = ex04.saliency_function(channel_mean, model, _x(), 1, verbose=0)
    assert "colour" in feedback.message and "maximum" in feedback.message


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
    c = np.broadcast_to(np.asarray(c).reshape(-1), (len(x),))
    with tf.GradientTape() as tape:
        features, logits = both(tf.constant(x), training=False)
        out = tf.nn.softmax(logits) if probability else logits
        score = tf.reduce_sum(tf.gather(out, c, axis=1, batch_dims=1))
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


def _occlusion(model, image, label, size, stride, *, sign=1.0, transpose=False, baseline=0.5):
    h, w = image.shape[:2]
    tops, lefts = range(0, h - size + 1, stride), range(0, w - size + 1, stride)
    batch = [image]
    for top in tops:
        for left in lefts:
            occluded = image.copy()
            occluded[top : top + size, left : left + size] = baseline
            batch.append(occluded)
    p = tf.nn.softmax(model(np.stack(batch), training=False)).numpy()[:, label]
    drops = sign * (p[0] - p[1:]).reshape(len(tops), len(lefts))
    return drops.T if transpose else drops


@pytest.fixture(scope="module")
def occlusion_data():
    return _x(6, (28, 28, 1), seed=5), np.array([0, 1, 2, 0, 1, 2])


def test_occlusion_function_accepts_the_loop_and_rejects_errors(staged, occlusion_data):
    x, y = occlusion_data
    check = ex04.occlusion_function
    assert check(_occlusion, staged, x, y, verbose=0).correct
    flipped = check(lambda *a: _occlusion(*a, sign=-1.0), staged, x, y, verbose=0)
    assert flipped.status == WRONG and "sign" in _message(flipped)
    black = check(lambda *a: _occlusion(*a, baseline=0.0), staged, x, y, verbose=0)
    assert black.status == WRONG

    def fixed_grid(model, image, label, size, stride):  # the notebook's 6x6 / 2 only
        return _occlusion(model, image, label, 6, 2)

    assert "shape" in _message(check(fixed_grid, staged, x, y, verbose=0))

    def skeleton(*args):
        raise NotImplementedError

    assert check(skeleton, staged, x, y, verbose=0).status == NOT_ATTEMPTED


def test_occlusion_function_calling_the_package_is_not_yet(staged, occlusion_data):
    x, y = occlusion_data

    def package(model, image, label, size, stride):
        maps = saliency.occlusion(model, image[None], label, patch_size=size, stride=stride)
        return maps[0, ::stride, ::stride]

    feedback = ex04.occlusion_function(package, staged, x, y, verbose=0)
    assert feedback.status == WRONG and "occlusion" in feedback.message


def test_nothing_public_in_ex04_returns_the_occlusion_answer():
    assert not hasattr(ex04, "occlusion_drops") and "occlusion_drops" not in ex04.__all__
    assert "occlusion_position" not in ex04.__all__


def test_occlusion_agrees_checks_the_decision_without_the_value(staged, occlusion_data):
    x, y = occlusion_data
    results = {a: ex04.occlusion_agrees(a, staged, x, y, verbose=0) for a in (True, False)}
    assert sorted(f.status for f in results.values()) == sorted([CORRECT, WRONG])
    assert ex04.occlusion_agrees(None, staged, x, y, verbose=0).status == NOT_ATTEMPTED
    assert ex04.occlusion_agrees("yes", staged, x, y, verbose=0).status == WRONG
    wrong = next(f for f in results.values() if f.status == WRONG)
    assert not any(ch.isdigit() for ch in wrong.message)  # a direction, never the numbers
