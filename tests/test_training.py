import json
import os
import warnings
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------
# The cache survives faults
# ---------------------------------------------------------------------------------------------


def _files(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def _valid_other_model_file(tmp_path):
    other = tmp_path / "other.keras"
    build_tiny_model(seed=5).save(other)
    return other.read_bytes()


@pytest.mark.parametrize(
    ("target", "damage"),
    [
        ("keras", lambda b, tmp: b[: len(b) // 2]),
        ("keras", lambda b, tmp: b""),
        ("keras", lambda b, tmp: b"\0" * len(b)),
        ("keras", lambda b, tmp: _valid_other_model_file(tmp)),
        ("json", lambda b, tmp: b[: len(b) // 2]),
        ("json", lambda b, tmp: b""),
        ("json", lambda b, tmp: b"[1, 2]"),
        ("json", lambda b, tmp: b.replace(b'"format": 1', b'"format": 0')),
        ("json", lambda b, tmp: b"\xff\xfe\x00"),
        ("json", None),
        ("keras", None),
    ],
    ids=[
        "keras-truncated",
        "keras-empty",
        "keras-overwritten",
        "keras-other-model",
        "json-truncated",
        "json-empty",
        "json-list",
        "json-old-format",
        "json-binary",
        "json-missing",
        "keras-missing",
    ],
)
def test_damaged_cache_entry_is_rebuilt_with_one_warning(tmp_path, target, damage):
    recipe = Recipe()
    _, info = recipe(return_info=True)
    path = Path(info["path"]) if target == "keras" else Path(info["path"]).with_suffix(".json")
    if damage is None:
        path.unlink()
    else:
        path.write_bytes(damage(path.read_bytes(), tmp_path))
    with pytest.warns(training.CacheWarning) as caught:
        model, info2 = recipe(return_info=True)
    caught = [w for w in caught if issubclass(w.category, training.CacheWarning)]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message and Path(info["path"]).name in message and "again" in message
    assert recipe.fits == 2 and info2["from_cache"] is False
    assert np.all(np.isfinite(model(X)))
    _, info3 = recipe(return_info=True)  # the rebuilt entry is valid
    assert recipe.fits == 2 and info3["from_cache"] is True
    assert not [name for name in _files(path.parent) if ".tmp-" in name]


def test_failed_save_leaves_no_file_and_no_temporary(monkeypatch):
    recipe = Recipe()
    real_save = keras.Model.save

    def broken_save(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    with pytest.warns(training.CacheWarning, match="No space left"):
        model = recipe()  # returned all the same (tests/test_faults.py: the full disk)
    assert np.all(np.isfinite(model(X)))
    folder = config.cache_dir()
    assert _files(folder) == []  # nothing a later call would trust, no temporaries
    training._UNSAVED.clear()  # a new session
    monkeypatch.setattr(keras.Model, "save", real_save)
    _, info = recipe(return_info=True)
    assert info["from_cache"] is False and recipe.fits == 2


def test_stale_temporaries_of_dead_processes_are_removed(monkeypatch):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    folder = config.cache_dir()
    stale = folder / f"another-model-0123456789abcdef.tmp-{dead}-a1b2c3d4.keras"
    stale_json = stale.with_suffix(".json")
    alive = folder / f"another-model-0123456789abcdef.tmp-{os.getppid()}-a1b2c3d4.keras"
    for path in (stale, stale_json, alive):
        path.write_bytes(b"partial")
    Recipe()()
    assert not stale.exists() and not stale_json.exists()
    assert alive.exists()  # a save of a running process is left alone


def _not_writable_os_open(folder, monkeypatch):
    """Make every file creation in ``folder`` fail as on a read-only file system.

    The tests run as root, who can write into a chmod 0o555 folder, so the failure is simulated
    at the system-call level (``os.open``, which ``tempfile`` and the lock file use).
    """
    import errno

    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writing and Path(path).resolve().parent == folder:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)


def test_read_only_cache_fails_before_training_and_names_the_fix(monkeypatch):
    folder = config.cache_dir()
    _not_writable_os_open(folder, monkeypatch)
    recipe = Recipe()
    with pytest.raises(PermissionError) as info:
        recipe()
    message = str(info.value)
    assert str(folder) in message and "CNN_UTILS_CACHE" in message and "'tiny'" in message
    assert recipe.fits == 0  # before any training


def test_read_only_cache_still_serves_what_it_holds(monkeypatch):
    recipe = Recipe()
    recipe()
    _not_writable_os_open(config.cache_dir(), monkeypatch)
    _, info = recipe(return_info=True)
    assert info["from_cache"] is True and recipe.fits == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_really(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    monkeypatch.setenv("CNN_UTILS_CACHE", str(folder))
    recipe = Recipe()
    with pytest.raises(PermissionError, match="CNN_UTILS_CACHE"):
        recipe()
    assert recipe.fits == 0


def test_cache_folder_that_cannot_be_created(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CNN_UTILS_CACHE", str(blocker / "cache"))
    recipe = Recipe()
    with pytest.raises(PermissionError, match=r"a_file/cache.*CNN_UTILS_CACHE"):
        recipe()
    assert recipe.fits == 0


# A process that asks for the tiny model; the fault it suffers is chosen by its argument.
CHILD = """
import os, signal, sys, time
sys.path.insert(0, {tests!r})
import keras
from test_training import Recipe
from cnn_utils import training

mode = sys.argv[1]
recipe = Recipe()
if mode == "slow":
    fit = recipe.fit
    def slow_fit(model):
        with open(os.path.join(os.environ["CNN_UTILS_CACHE"], "..", "fits.log"), "a") as log:
            log.write(f"{{os.getpid()}}\\n")
        time.sleep(3)
        return fit(model)
    recipe.fit = slow_fit
elif mode == "kill-in-save":
    def dying_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as stream:
            stream.write(b"PK\\x03\\x04 half a zip")
        os.kill(os.getpid(), signal.SIGKILL)
    keras.Model.save = dying_save
elif mode == "kill-between-renames":
    real_replace, calls = os.replace, []
    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the model is in place, its sidecar not yet
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    os.replace = dying_replace
model, info = recipe(return_info=True)
print("RESULT", info["from_cache"], float(keras.ops.sum(model(keras.ops.ones((1, 8, 8, 1))))))
"""


def _child(tmp_path, mode):
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, str(script), mode], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_processes_at_once_train_once_and_share_one_file(tmp_path):
    first, second = _child(tmp_path, "slow"), _child(tmp_path, "slow")
    outputs = [process.communicate(timeout=240) for process in (first, second)]
    for process, (_out, err) in zip((first, second), outputs, strict=True):
        assert process.returncode == 0, err[-2000:]
    results = sorted(line.split()[1] for out, _ in outputs for line in out.splitlines()
                     if line.startswith("RESULT"))  # fmt: skip
    assert results == ["False", "True"]  # one trained, the other waited and loaded
    assert len((tmp_path / "cnn_utils_cache" / ".." / "fits.log").read_text().split()) == 1
    names = _files(config.cache_dir())
    assert len(names) == 2 and {Path(n).suffix for n in names} == {".keras", ".json"}
    _, info = Recipe()(return_info=True)  # and the file is valid
    assert info["from_cache"] is True


@pytest.mark.parametrize("mode", ["kill-in-save", "kill-between-renames"])
def test_process_killed_mid_save_leaves_nothing_trusted(tmp_path, mode):
    import signal

    process = _child(tmp_path, mode)
    process.communicate(timeout=240)
    assert process.returncode == -signal.SIGKILL
    folder = config.cache_dir()
    assert any(".tmp-" in name for name in _files(folder))  # the dead process's leftovers
    recipe = Recipe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, info = recipe(return_info=True)
    assert info["from_cache"] is False and recipe.fits == 1  # not trusted: trained again
    cache_warnings = [w for w in caught if issubclass(w.category, training.CacheWarning)]
    assert len(cache_warnings) == (1 if mode == "kill-between-renames" else 0)
    assert not [name for name in _files(folder) if ".tmp-" in name]  # temporaries cleaned
    assert len(_files(folder)) == 2
