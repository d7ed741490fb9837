import json

import keras
import numpy as np
import pytest
from conftest import build_tiny_model

from cnn_utils import config, training

X = np.random.default_rng(0).random((24, 8, 8, 1), dtype=np.float32)
Y = np.arange(24) % 3


class Recipe:
    """A tiny build/fit pair that counts how often it trains."""

    def __init__(self, units=4, learning_rate=1e-2):
        self.units, self.learning_rate, self.fits = units, learning_rate, 0

    def build(self):
        return keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Conv2D(self.units, 3, activation="relu"),
                keras.layers.Flatten(),
                keras.layers.Dense(3),
            ]
        )

    def fit(self, model):
        self.fits += 1
        model.compile(
            keras.optimizers.Adam(self.learning_rate),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
        return {"loss": history.history["loss"]}

    def settings(self):
        return {"dataset": "toy", "epochs": 1, "learning_rate": self.learning_rate, "seed": 3}

    def __call__(self, **kwargs):
        return training.cached_model(
            "tiny", self.build, self.fit, self.settings(), verbose=0, **kwargs
        )


def test_cached_model_trains_once_then_loads(capsys):
    recipe = Recipe()
    model, info = recipe(return_info=True)
    assert recipe.fits == 1 and info["from_cache"] is False
    path = info["path"]
    assert path.endswith(".keras") and path.split("/")[-1].startswith("tiny-toy-")
    assert info["key"][:16] in path and len(info["key"]) == 64
    assert info["epochs"] == 1 and info["params"] == model.count_params()
    again, info2 = recipe(return_info=True)
    assert recipe.fits == 1  # the second call trains nothing
    assert info2["from_cache"] is True and info2["path"] == path and info2["key"] == info["key"]
    assert info2["loss"] == info["loss"]
    np.testing.assert_allclose(model(X), again(X), atol=1e-6)
    assert capsys.readouterr().out == ""  # verbose=0
    training.cached_model("tiny", recipe.build, recipe.fit, recipe.settings(), verbose=1)
    assert "Loaded 'tiny' from the cache" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change", [{"learning_rate": 5e-3}, {"units": 5}], ids=["recipe", "architecture"]
)
def test_any_change_gives_a_new_file(change):
    first = Recipe()
    _, info = first(return_info=True)
    changed = Recipe(**change)
    _, info2 = changed(return_info=True)
    assert changed.fits == 1 and info2["from_cache"] is False
    assert info2["path"] != info["path"]


def test_key_ignores_keras_default_names_but_not_real_names():
    a = build_tiny_model()
    for _ in range(3):
        keras.layers.Dense(2)  # advances Keras' name counters
    b = build_tiny_model()
    assert [layer.name for layer in a.layers] != [layer.name for layer in b.layers]
    assert training.cache_key(a, {}) == training.cache_key(b, {})
    assert training.cache_key(a, {}) != training.cache_key(a, {"epochs": 2})
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="first")(inputs)
    named = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="second")(inputs)
    renamed = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    assert training.cache_key(named, {}) != training.cache_key(renamed, {})


def test_key_sees_nested_blocks():
    from cnn_utils import models

    a = models.resnet(widths=(4,), num_residuals=1)
    b = models.resnet(widths=(4,), num_residuals=1, residual=False)  # same layers but a block
    assert training.cache_key(a, {}) != training.cache_key(b, {})


def test_cached_model_seeds_the_build():
    recipe = Recipe()
    _, info = recipe(return_info=True)
    config.set_seed(0)  # whatever the global state, the build is seeded from settings
    assert training.cache_key(recipe.build(), recipe.settings()) == info["key"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "a/b"}, "name='a/b'"),
        ({"name": ""}, "name=''"),
        ({"build": None}, "build=None"),
        ({"fit": "train"}, "fit='train'"),
        ({"settings": [1]}, r"settings=\[1\]"),
        ({"settings": {"f": float("nan")}}, "settings="),
        ({"settings": {"x": object()}}, "JSON"),
        ({"settings": {"seed": -1}}, r"settings\['seed'\]"),
        ({"verbose": "yes"}, "verbose='yes'"),
        ({"return_info": "no"}, "return_info='no'"),
        ({"build": lambda: "model"}, "build must return a keras.Model"),
        ({"fit": lambda model: [1]}, "fit must return a dict"),
    ],
)
def test_cached_model_rejects_bad_arguments(kwargs, match):
    recipe = Recipe()
    arguments = {
        "name": "tiny",
        "build": recipe.build,
        "fit": lambda model: {},
        "settings": {},
        "verbose": 0,
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        training.cached_model(**arguments)


def test_sidecar_records_checksum_and_info():
    recipe = Recipe()
    _, info = recipe(return_info=True)
    record = json.loads(open(info["path"].replace(".keras", ".json")).read())
    assert record["key"] == info["key"] and len(record["sha256"]) == 64
    assert record["info"]["loss"] == info["loss"]
