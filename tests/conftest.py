"""Shared test setup: quiet TensorFlow, a private cache folder, and the tiny test models.

Fixtures every module's tests use:

* ``make_tiny_model(seed=0, activation=None, shape=(8, 8, 1), classes=3)``: a factory for a
  Sequential conv -> flatten -> dense logits model (``activation="softmax"`` gives the wrong
  kind of model, for the error tests);
* ``tiny_model``: one such model (module scope is not possible with a factory; this one is
  cheap);
* ``named_model``: a functional 8x8x1 model with named layers ``conv1``, ``conv2``, ``pool``,
  ``flatten``, ``fc``, ``drop``, ``logits`` (2 classes), for layer-addressing code.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own CNN_UTILS_CACHE, so no test sees another's cached models.

    The shipped weights are off too (tests that count training must see it happen);
    tests/test_shipped.py turns them on where it tests them.
    """
    monkeypatch.setenv("CNN_UTILS_CACHE", str(tmp_path / "cnn_utils_cache"))
    monkeypatch.setenv("CNN_UTILS_SHIPPED", "0")


def build_tiny_model(seed=0, activation=None, shape=(8, 8, 1), classes=3):
    """Conv(4, 3x3, relu) -> Flatten -> Dense(classes): a logits model unless ``activation``."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(classes, activation=activation),
        ]
    )


def build_named_model(seed=0):
    """A functional 8x8x1 -> 2 logits model whose layers have stable names."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    h = layers.Conv2D(3, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(h)
    h = layers.MaxPooling2D(2, name="pool")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(5, activation="relu", name="fc")(h)
    h = layers.Dropout(0.5, name="drop")(h)
    return keras.Model(inputs, layers.Dense(2, name="logits")(h))


@pytest.fixture
def make_tiny_model():
    """The factory :func:`build_tiny_model`."""
    return build_tiny_model


@pytest.fixture(scope="module")
def tiny_model():
    """One tiny 8x8x1 -> 3 logits model (seed 0), shared by a test module."""
    return build_tiny_model()


@pytest.fixture(scope="module")
def named_model():
    """One functional model with named layers (seed 0), shared by a test module."""
    return build_named_model()
