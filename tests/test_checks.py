"""Tests of cnn_utils._checks: one rule per kind of argument, messages that name the value."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn_utils import _checks


@pytest.mark.parametrize(
    "value, kwargs, message",
    [
        (True, {}, "must be a number"),
        ("0.1", {}, "must be a number"),
        (float("nan"), {}, "must be finite"),
        (float("inf"), {}, "must be finite"),
        (-0.1, {"minimum": 0.0}, ">= 0"),
        (0.0, {"positive": True}, "> 0"),
        (2.0, {"maximum": 1.0}, "<= 1"),
        (100.0, {"below": 100.0}, "< 100"),
        (np.array([1.0, 2.0]), {}, "single number"),
    ],
)
def test_number_refuses(value, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        _checks.number("epsilon", value, **kwargs)
    assert "Received: epsilon=" in str(info.value)


def test_number_accepts_numpy_and_tensor_scalars():
    assert _checks.number("a", np.float32(0.5)) == 0.5
    assert _checks.number("a", tf.constant(2.0), positive=True) == 2.0
    assert _checks.number("a", np.int64(3), minimum=0) == 3.0


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "3", None])
def test_positive_int_refuses(value):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        _checks.batch_size(value)


def test_positive_int_accepts_numpy_integers():
    assert _checks.batch_size(np.int64(7)) == 7
    assert isinstance(_checks.positive_int("k", np.int32(2)), int)


@pytest.mark.parametrize("value", ["no", 1, None, "True"])
def test_flag_refuses_non_booleans(value):
    with pytest.raises(ValueError, match="random_start must be True or False"):
        _checks.flag("random_start", value)


def test_flag_and_choice_accept():
    assert _checks.flag("f", np.bool_(True)) is True
    assert _checks.one_of("norm", "l2", ("linf", "l2")) == "l2"
    with pytest.raises(ValueError, match=r"norm must be one of \('linf', 'l2'\)"):
        _checks.one_of("norm", "L2", ("linf", "l2"))
    with pytest.raises(ValueError, match="norm must be one of"):
        _checks.one_of("norm", ["linf"], ("linf", "l2"))  # unhashable


def test_clip_range():
    assert _checks.clip_range(0, 1) == (0.0, 1.0)
    with pytest.raises(ValueError, match="clip_value_min must be < clip_value_max"):
        _checks.clip_range(1, 0)


def test_images_hint_for_8bit_images_and_nan():
    x = np.full((2, 4, 4, 1), 200.0, np.float32)
    with pytest.raises(ValueError, match="divide by 255"):
        _checks.images(x, value_range=(0.0, 1.0))
    x = np.zeros((2, 4, 4, 1), np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="must be finite"):
        _checks.images(x)
    with pytest.raises(ValueError, match=r"shape \(batch, H, W, C\)"):
        _checks.images(np.zeros((4, 4)), rank=4)
    with pytest.raises(ValueError, match="must hold numbers"):
        _checks.images(np.array([["a"]]))
    out = _checks.images(np.zeros((2, 3), np.uint8), value_range=(0.0, 1.0))
    assert out.dtype == tf.float32


def test_labels():
    np.testing.assert_array_equal(_checks.labels(np.array([[1], [2]], np.uint8), 2), [1, 2])
    with pytest.raises(ValueError, match=r"argmax\(-1\)"):
        _checks.labels(np.eye(3, dtype=np.float32), 3)
    with pytest.raises(ValueError, match=r"argmax\(-1\)"):
        _checks.labels(np.eye(3, dtype=np.int64), 3)  # one-hot integers
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        _checks.labels(np.array([0, 3]), 2, num_classes=3)
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        _checks.labels(np.array([-1, 0]), 2, num_classes=3)
    with pytest.raises(ValueError, match="one label per example"):
        _checks.labels(np.array([0, 1, 2]), 2)


def test_class_index():
    np.testing.assert_array_equal(_checks.class_index(1, 3, 4), [1, 1, 1])
    for bad in (2.5, True, [1, 2], 7):
        with pytest.raises(ValueError, match="class_index"):
            _checks.class_index(bad, 3, 4)


def test_logits_model_returns_classes_and_refuses_softmax(make_tiny_model):
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    assert _checks.logits_model(make_tiny_model(classes=5), x) == 5
    assert _checks.logits_model(make_tiny_model(classes=4)) == 4  # probed from input shape
    with pytest.raises(ValueError, match="applies a softmax"):
        _checks.logits_model(make_tiny_model(activation="softmax"), x)
    hidden = keras.Sequential(
        [make_tiny_model(), keras.layers.Lambda(lambda t: keras.ops.softmax(t))]
    )
    with pytest.raises(ValueError, match="probabilities"):
        _checks.logits_model(hidden, x)
    with pytest.raises(ValueError, match="callable"):
        _checks.logits_model("model", x)


def test_logits_model_refuses_two_outputs(make_tiny_model):
    inner = make_tiny_model()
    two = keras.Model(inner.inputs, [inner.outputs[0], inner.outputs[0]])
    with pytest.raises(ValueError, match="one output"):
        _checks.logits_model(two)


def test_logits_model_checks_unhashable_callables_every_time():
    class Unhashable:
        __hash__ = None

        def __call__(self, x, training=False):
            return tf.nn.softmax(tf.ones((tf.shape(x)[0], 3)) * tf.range(3.0))

    with pytest.raises(ValueError, match="probabilities"):
        _checks.logits_model(Unhashable(), np.zeros((2, 4), np.float32))


def test_logits_model_says_when_x_does_not_fit_the_model(make_tiny_model):
    with pytest.raises(ValueError, match=r"input shape \(batch, 8, 8, 1\).*\(6, 64\)"):
        _checks.logits_model(make_tiny_model(), np.zeros((6, 64), np.float32))
