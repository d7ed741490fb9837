"""The weights shipped with the course: the mechanism (a tiny recipe) and the real files."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from test_training import Recipe, X

from cnn_utils import config, data, shipped, training

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def shipped_folder(tmp_path, monkeypatch):
    """An empty shipped-weights folder in place of the package's, with shipping on."""
    folder = tmp_path / "shipped"
    monkeypatch.setattr(shipped, "SHIPPED_DIR", folder)
    monkeypatch.setenv("CNN_UTILS_SHIPPED", "1")
    return folder


def _ship_one(tmp_path, monkeypatch, folder):
    """Train the tiny recipe into a scratch cache, ship it, then point at a fresh, empty cache."""
    scratch = tmp_path / "scratch_cache"
    monkeypatch.setenv("CNN_UTILS_CACHE", str(scratch))
    recipe = Recipe()
    model, info = recipe(return_info=True)
    table = training.ship_cached_models(scratch, "fast", folder)
    monkeypatch.setenv("CNN_UTILS_CACHE", str(tmp_path / "fresh_cache"))
    return recipe, model, info, table


def test_shipped_weights_load_without_training_and_fill_the_cache(
    tmp_path, monkeypatch, shipped_folder, capsys
):
    recipe, model, info, table = _ship_one(tmp_path, monkeypatch, shipped_folder)
    (stem,) = table
    assert table[stem]["key"] == info["key"] and table[stem]["mode"] == "fast"
    assert (shipped_folder / table[stem]["file"]).stat().st_size == table[stem]["bytes"]
    fresh = Recipe()
    loaded, info2 = fresh(return_info=True)
    assert fresh.fits == 0  # nothing trained: the shipped weights were used
    assert info2["shipped"] is True and info2["from_cache"] is True
    assert info2["loss"] == info["loss"]  # the training record travels with the weights
    np.testing.assert_allclose(model(X), loaded(X), atol=1e-6)
    assert loaded.compiled  # compiled as the recipe compiled it
    # It is now an ordinary cache entry: the next call loads the .keras file.
    assert (tmp_path / "fresh_cache").glob("tiny-toy-*.keras")
    _, info3 = Recipe()(return_info=True)
    assert info3["path"] == info2["path"] and info3["path"].endswith(".keras")
    training.cached_model("tiny", fresh.build, fresh.fit, fresh.settings(), verbose=1)
    assert "Loaded 'tiny'" in capsys.readouterr().out


def test_shipped_weights_of_other_settings_are_not_used(tmp_path, monkeypatch, shipped_folder):
    _ship_one(tmp_path, monkeypatch, shipped_folder)
    changed = Recipe(learning_rate=5e-3)  # another key
    changed()
    assert changed.fits == 1


def test_shipping_off_trains(tmp_path, monkeypatch, shipped_folder):
    _ship_one(tmp_path, monkeypatch, shipped_folder)
    monkeypatch.setenv("CNN_UTILS_SHIPPED", "0")
    recipe = Recipe()
    recipe()
    assert recipe.fits == 1


def test_tampered_shipped_file_is_refused_with_a_warning(tmp_path, monkeypatch, shipped_folder):
    _, _, _, table = _ship_one(tmp_path, monkeypatch, shipped_folder)
    (entry,) = table.values()
    path = shipped_folder / entry["file"]
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    recipe = Recipe()
    with pytest.warns(training.CacheWarning, match="do not match their manifest"):
        recipe()
    assert recipe.fits == 1


def test_read_only_cache_serves_shipped_weights(tmp_path, monkeypatch, shipped_folder):
    from test_training import _not_writable_os_open

    _ship_one(tmp_path, monkeypatch, shipped_folder)
    _not_writable_os_open(config.cache_dir(), monkeypatch)
    recipe = Recipe()
    _, info = recipe(return_info=True)
    assert recipe.fits == 0 and info["shipped"] is True


def test_ship_replaces_only_its_mode_and_checks_the_budget(tmp_path, monkeypatch, shipped_folder):
    _, _, _, table = _ship_one(tmp_path, monkeypatch, shipped_folder)
    (stem,) = table
    full = training.ship_cached_models(tmp_path / "scratch_cache", "full", shipped_folder)
    assert full[stem]["mode"] == "full"  # the same stem re-shipped under the other mode
    with pytest.raises(ValueError, match="mode"):
        training.ship_cached_models(tmp_path / "scratch_cache", "medium", shipped_folder)
    with pytest.raises(ValueError, match="no cached models"):
        training.ship_cached_models(tmp_path / "nothing", "fast", shipped_folder)
    other = tmp_path / "other_cache"  # one more model, trained alone
    monkeypatch.setenv("CNN_UTILS_CACHE", str(other))
    Recipe(learning_rate=5e-3)()
    added = training.ship_cached_models(other, "full", shipped_folder, keep=True)
    assert stem in added and len(added) == 2  # kept
    replaced = training.ship_cached_models(other, "full", shipped_folder)
    assert stem not in replaced and len(replaced) == 1  # the mode's other entries removed
    assert len(list(shipped_folder.glob("*.weights.h5"))) == 1
    (kept,) = replaced  # a benchmark's model, shipped under the same mode...
    bench = training.ship_cached_models(
        tmp_path / "scratch_cache", "full", shipped_folder, source="benchmarks"
    )
    assert bench[stem]["source"] == "benchmarks" and bench[kept]["source"] == "notebooks"
    again = training.ship_cached_models(other, "full", shipped_folder)  # ...survives make weights
    assert set(again) == {stem, kept} and again[stem]["source"] == "benchmarks"
    assert len(list(shipped_folder.glob("*.weights.h5"))) == 2
    with pytest.raises(ValueError, match="source"):
        training.ship_cached_models(other, "full", shipped_folder, source="slides")
    monkeypatch.setattr(shipped, "SHIPPED_BUDGET_BYTES", 10)
    with pytest.raises(ValueError, match="over the budget"):
        training.ship_cached_models(tmp_path / "scratch_cache", "fast", shipped_folder)


# --- The real shipped files -------------------------------------------------------------------

MANIFEST = shipped.read_manifest()

# The test accuracy each notebook asserts for the course model it loads (FAST mode): 01 asserts
# >= 0.84 for the small CNN, 03 >= 0.87 for the ResNet, 02 > 5 x chance (0.5) for the reduced
# GoogLeNet (and more than a small CNN on the same budget, which it trains itself).
NOTEBOOK_ACCURACY = {
    ("small_cnn", "fast"): 0.84,
    ("small_cnn_gap", "fast"): 0.79,  # notebook 01: within 5 points of small_cnn (>= 0.84)
    ("resnet", "fast"): 0.87,
    ("googlenet", "fast"): 0.5,
}


def test_shipped_files_match_their_manifest_and_budget():
    assert MANIFEST, "no shipped weights: run `make weights FAST=1`"
    total = 0
    for stem, entry in MANIFEST.items():
        path = shipped.SHIPPED_DIR / entry["file"]
        assert path.exists(), stem
        assert shipped.sha256(path) == entry["sha256"], f"{stem}: hash differs from manifest"
        assert path.stat().st_size == entry["bytes"]
        assert entry["mode"] in ("fast", "full") and len(entry["key"]) == 64
        # make weights replaces only the notebooks' entries: the benchmark's model is marked
        expected = "benchmarks" if stem.startswith("benchmark_") else "notebooks"
        assert entry["source"] == expected, stem
        total += entry["bytes"]
    assert total <= shipped.SHIPPED_BUDGET_BYTES
    # No stray weights files that the manifest does not list.
    files = {p.name for p in shipped.SHIPPED_DIR.glob("*.weights.h5")}
    assert files == {entry["file"] for entry in MANIFEST.values()}


def test_weights_check_reports_what_the_doctor_reports(tmp_path, monkeypatch, capsys):
    """tools/weights.py check lists the manifest's problems (shipped.problems), exit code 1."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("weights_tool", ROOT / "tools" / "weights.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    folder = tmp_path / "shipped"
    shutil.copytree(shipped.SHIPPED_DIR, folder)
    monkeypatch.setattr(shipped, "SHIPPED_DIR", folder)
    assert tool.check() == 0  # the real folder, copied: no problem
    (folder / "manifest.json").write_text('{"a":')  # truncated
    assert tool.check() == 1
    err = capsys.readouterr().err
    assert "truncated" in err and err.count("problem:") == len(shipped.problems())


@pytest.mark.parametrize("name", sorted(training.TRAINED_MODELS))
def test_shipped_course_model_is_current_and_reaches_its_notebook_accuracy(name, monkeypatch):
    """The FAST recipe's key is shipped (else `make weights` is due), and it is accurate."""
    assert config.FAST, "the test suite runs in FAST mode (CNN_UTILS_FAST=1)"
    settings = training.trained_settings(name)
    shipped = {e["key"]: e for e in MANIFEST.values() if e["mode"] == "fast"}
    assert settings["key"] in shipped, (
        f"the shipped weights of {name!r} are stale (recipe changed): run `make weights FAST=1`"
    )
    monkeypatch.setenv("CNN_UTILS_SHIPPED", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no cache or Keras loading warning
        model, info = training.trained(name, verbose=0, return_info=True)
    assert info["shipped"] is True and info["from_cache"] is True
    ds = data.load_dataset(settings["dataset"], subset=1, test_subset=2000, seed=1)
    logits = model.predict(ds.x_test, batch_size=500, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == ds.y_test))
    assert accuracy >= NOTEBOOK_ACCURACY[(name, "fast")], (name, accuracy)
    assert abs(accuracy - info["test_accuracy"]) < 0.03  # the record tells the truth
    _, evaluated = model.evaluate(ds.x_test, ds.y_test, verbose=0, batch_size=500)
    assert evaluated == pytest.approx(accuracy, abs=1e-6)  # compiled with metrics=["accuracy"]


# What notebooks 01, 03 and 02 assert in full mode (01: GAP within 5 points of 0.91; 02: five
# times chance, for both networks).
FULL_ACCURACY = {"small_cnn": 0.91, "small_cnn_gap": 0.86, "resnet": 0.92, "googlenet": 0.5}


@pytest.mark.parametrize("name", sorted(FULL_ACCURACY))
def test_shipped_full_mode_model_is_current_and_reaches_its_notebook_accuracy(name, monkeypatch):
    """Full-mode weights are shipped, current, and reach the accuracy the notebook asserts."""
    full = {e["info"]["name"]: e for e in MANIFEST.values() if e["mode"] == "full"}
    assert name in full, f"no full-mode weights shipped for {name!r}: run `make weights`"
    monkeypatch.setattr(config, "FAST", False)
    settings = training.trained_settings(name)
    assert full[name]["key"] == settings["key"], (
        f"the shipped full-mode weights of {name!r} are stale: run `make weights`"
    )
    monkeypatch.setenv("CNN_UTILS_SHIPPED", "1")
    model, info = training.trained(name, verbose=0, return_info=True)
    assert info["shipped"] is True
    ds = data.load_dataset(settings["dataset"], subset=1, test_subset=2000, seed=1)
    accuracy = float(np.mean(np.argmax(model.predict(ds.x_test, verbose=0), 1) == ds.y_test))
    assert accuracy >= FULL_ACCURACY[name], (name, accuracy)
    assert abs(accuracy - info["test_accuracy"]) < 0.03  # the record tells the truth


def _setup_code(notebook: str) -> str:
    """The code of a notebook's setup cells (before its first numbered section)."""
    import importlib.util
    from pathlib import Path

    tools = Path(__file__).resolve().parents[1] / "tools"
    spec = importlib.util.spec_from_file_location("jump_in", tools / "jump_in.py")
    jump_in = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(jump_in)
    setup = jump_in.sections(tools.parent / "notebooks" / notebook)[0][1]
    return "\n".join(line for s in setup for line in s.splitlines() if not line.startswith("%"))


def test_notebook_06_default_mode_loads_its_models_without_training(monkeypatch):
    """Default mode: the setup cell of notebook 06 finds all four of its models shipped.

    Any call to ``fit`` fails the test, so a recipe changed without ``make weights`` (another
    cache key) shows here instead of as an hour of training in a lecture.
    """
    full = [e for e in MANIFEST.values() if e["mode"] == "full" and "nb06" in e["info"]["name"]]
    assert len(full) == 4, "notebook 06's four full-mode models are not all shipped"
    import keras

    def no_training(*args, **kwargs):
        raise AssertionError("notebook 06 trained a model in default mode: run `make weights`")

    monkeypatch.setattr(config, "FAST", False)
    monkeypatch.setenv("CNN_UTILS_SHIPPED", "1")
    monkeypatch.setattr(keras.Model, "fit", no_training)
    namespace = {}
    exec(compile(_setup_code("06_adversarial_training.ipynb"), "nb06-setup", "exec"), namespace)
    assert namespace["EPOCHS"] > 3 and namespace["SUBSET"] is None  # the default-mode recipe
    assert set(namespace["robust"]) == {"mnist", "fashion_mnist"}
    for name, ds in namespace["datasets"].items():  # robust and accurate, as the notebook asserts
        model = namespace["robust"][name]
        accuracy = float(np.mean(np.argmax(model.predict(ds.x_test, verbose=0), 1) == ds.y_test))
        assert accuracy > 0.7, (name, accuracy)
