import json

import keras
import numpy as np
import pytest
from conftest import build_tiny_model

from cnn_utils import config, data, models, training

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


# ---------------------------------------------------------------------------------------------
# Training helpers
# ---------------------------------------------------------------------------------------------


def test_gradient_norms_and_probe():
    model = models.resnet(widths=(4,), num_residuals=1)
    training.compile_classifier(model)
    x = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)
    y = np.arange(16) % 10
    norms = training.gradient_norms(model, x, y)
    assert list(norms)[0] == "conv1/kernel"
    assert all(np.isfinite(v) and v > 0 for v in norms.values())
    probe = training.TrainingProbe(x, y, every=2)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[probe])
    assert probe.steps == [0, 2, 4]
    assert len(probe.losses) == len(probe.grad_norms) == 3


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: training.gradient_norms(m, X, Y + 3), r"labels in \[0, 3\)"),
        (lambda m: training.gradient_norms(m, X, np.eye(3)[Y]), "argmax"),
        (lambda m: training.gradient_norms(m, X * np.nan, Y), "finite"),
        (lambda m: training.gradient_norms(m, X, Y, training="yes"), "training='yes'"),
        (lambda m: training.TrainingProbe(X, Y, every=0), "every=0"),
        (lambda m: training.TrainingProbe(X, Y[:3]), "one label per example"),
        (lambda m: training.TrainingProbe(X, Y, layer_name=3), "layer_name=3"),
        (lambda m: training.compile_classifier(m, learning_rate=-1), "learning_rate=-1"),
        (lambda m: training.compile_classifier("model"), "model='model'"),
        (lambda m: training.cosine_schedule(1e-3, 0), "decay_steps=0"),
    ],
)
def test_training_helpers_reject_bad_arguments(tiny_model, call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny_model)


def test_train_classifier_learns_and_reports():
    config.set_seed(0)
    ds = data.load_dataset("mnist", subset=600, test_subset=200, validation_split=0.2)
    model = models.small_cnn(
        filters=(8,), convs_per_stage=1, head="flatten", dropout=0.0, batch_norm=False
    )
    history, seconds, accuracy = training.train_classifier(
        model, ds, epochs=2, batch_size=32, learning_rate=3e-3, verbose=0
    )
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    assert seconds > 0 and 0.2 < accuracy <= 1.0  # clearly better than chance (0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs=0"),
        ({"epochs": 1, "batch_size": -2}, "batch_size=-2"),
        ({"epochs": 1, "learning_rate": float("inf")}, "learning_rate"),
        ({"epochs": 1, "verbose": 5}, "verbose=5"),
    ],
)
def test_train_classifier_rejects_bad_sizes(kwargs, match):
    ds = data.load_dataset("mnist", subset=20, test_subset=10)
    with pytest.raises(ValueError, match=match):
        training.train_classifier(models.small_cnn(filters=(4,)), ds, **kwargs)


def test_train_classifier_rejects_arrays_for_a_dataset():
    with pytest.raises(ValueError, match="load_dataset"):
        training.train_classifier(models.small_cnn(filters=(4,)), (X, Y), epochs=1)


# ---------------------------------------------------------------------------------------------
# The trained course models
# ---------------------------------------------------------------------------------------------

SMALL = {"subset": 300, "epochs": 1, "test_subset": 200}


@pytest.fixture
def count_training(monkeypatch):
    """Count calls of train_classifier (the real one runs)."""
    calls = []
    real = training.train_classifier

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_classifier", counting)
    return calls


def test_trained_caches_and_second_call_loads(capsys, count_training):
    model, info = training.trained("small_cnn", verbose=0, return_info=True, **SMALL)
    assert capsys.readouterr().out == ""  # verbose=0 is silent
    path = training.trained_settings("small_cnn", **SMALL)["path"]
    assert info["path"] == path and info["from_cache"] is False
    assert path.endswith(".keras") and path.split("/")[-1].startswith("small_cnn-fashion_mnist-")
    assert 0.0 <= info["test_accuracy"] <= 1.0 and info["params"] == model.count_params()
    assert info["epochs"] == 1 and info["subset"] == 300 and len(info["history"]["loss"]) == 1
    again, info2 = training.trained("small_cnn", verbose=1, return_info=True, **SMALL)
    assert len(count_training) == 1  # the same recipe reuses the file: nothing trained
    assert info2["from_cache"] is True and info2["test_accuracy"] == info["test_accuracy"]
    assert "Loaded" in capsys.readouterr().out
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(model(x), again(x), atol=1e-6)
    other = training.trained_settings("small_cnn", subset=300, epochs=2, test_subset=200)
    assert other["path"] != path


@pytest.mark.parametrize("change", ["learning_rate", "dropout"])
def test_trained_retrains_when_the_recipe_changes(monkeypatch, count_training, change):
    training.trained("small_cnn", verbose=0, **SMALL)
    old_path = training.trained_settings("small_cnn", **SMALL)["path"]
    real = training._recipes

    def changed():
        recipes = real()
        recipe = recipes["small_cnn"]
        if change == "learning_rate":
            recipe["learning_rate"] = 5e-4
        else:
            build = recipe["build"]
            recipe["build"] = lambda shape, n: models.small_cnn(
                shape, n, filters=(32, 64, 128), convs_per_stage=1, head="flatten", dropout=0.3,
                name="small_cnn",
            )  # fmt: skip
            assert (
                build((28, 28, 1), 10).count_params()
                == recipe["build"]((28, 28, 1), 10).count_params()
            )  # same weights, only the dropout rate differs
        return recipes

    monkeypatch.setattr(training, "_recipes", changed)
    _, info = training.trained("small_cnn", verbose=0, return_info=True, **SMALL)
    assert len(count_training) == 2 and info["from_cache"] is False  # the old file is not reused
    assert info["path"] != old_path


def test_trained_settings_depend_on_mode(monkeypatch):
    monkeypatch.setattr(config, "FAST", True)
    fast = training.trained_settings("resnet")
    monkeypatch.setattr(config, "FAST", False)
    full = training.trained_settings("resnet")
    assert fast["subset"] is not None and full["subset"] is None
    assert fast["epochs"] < full["epochs"]
    assert fast["path"] != full["path"]
    assert {"epochs", "subset", "batch_size", "learning_rate"} <= set(fast)  # notebook 01


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "vgg"}, "name.*'vgg'"),
        ({"name": "resnet", "dataset": "imagenet"}, "dataset.*'imagenet'"),
        ({"name": "resnet", "epochs": 0}, "epochs=0"),
        ({"name": "resnet", "subset": -5}, "subset=-5"),
        ({"name": "resnet", "test_subset": 2.5}, "test_subset=2.5"),
        ({"name": "resnet", "seed": "1"}, "seed='1'"),
        ({"name": "resnet", "verbose": True}, "verbose=True"),
    ],
)
def test_trained_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.trained(**kwargs)
