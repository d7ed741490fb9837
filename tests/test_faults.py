"""Faults a classroom meets: a broken manifest, a full disk, NaN training, Ctrl-C, float16.

Each test asserts the three things that matter: no data lost (a model that loaded or trained
is returned), no stale or NaN model served, and one clear message.
"""

import errno
import json
import shutil
import warnings

import keras
import numpy as np
import pytest
from test_training import Recipe, X, Y

from cnn_utils import attacks, autoattack, config, defense, doctor, robustness, shipped, training


def _cache_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, training.CacheWarning)]


# --- 1. The shipped-weights manifest -------------------------------------------------------


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """One tiny model shipped into a private folder; shipping on; a fresh, empty cache."""
    folder = tmp_path / "shipped"
    monkeypatch.setattr(shipped, "SHIPPED_DIR", folder)
    monkeypatch.setenv("CNN_UTILS_SHIPPED", "1")
    monkeypatch.setenv("CNN_UTILS_CACHE", str(tmp_path / "scratch"))
    Recipe()()
    table = training.ship_cached_models(tmp_path / "scratch", "fast", folder)
    monkeypatch.setenv("CNN_UTILS_CACHE", str(tmp_path / "fresh"))
    return folder, table


def _doctor_row(check):
    return doctor.report(verbose=0).set_index("check").loc[check]


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_text(path.read_text()[:40]),  # truncated
        lambda path: path.write_text(""),  # empty
        lambda path: path.unlink(),  # missing manifest
        lambda path: shutil.rmtree(path.parent),  # missing shipped/ folder
        lambda path: path.write_text(json.dumps({"format": 99, "models": {}})),  # foreign
    ],
    ids=["truncated", "empty", "missing", "no-folder", "foreign"],
)
def test_broken_manifest_never_stops_training_and_says_so(shipped_copy, damage):
    folder, _ = shipped_copy
    damage(folder / "manifest.json")
    manifest = shipped.load()
    assert manifest.entries == {} and manifest.error is not None
    for recipe in (Recipe(), Recipe(units=6)):  # the course's stem and a student's own model
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            model, info = recipe(return_info=True)
        messages = _cache_warnings(record)
        assert len(messages) == 1, messages  # one clear message, naming the file and the fix
        assert str(folder) in messages[0] and "git checkout cnn_utils/shipped" in messages[0]
        assert recipe.fits == 1 and info["from_cache"] is False
        assert np.all(np.isfinite(model(X)))
    row = _doctor_row("shipped weights")
    assert row["status"] == "problem" and str(folder) in row["found"]
    assert "git checkout" in row["fix"]


@pytest.mark.parametrize("field", ["file", "sha256"])
def test_entry_without_a_field_is_skipped_with_one_warning(shipped_copy, field):
    folder, table = shipped_copy
    (stem,) = table
    record = json.loads((folder / "manifest.json").read_text())
    del record["models"][stem][field]
    # A second, valid entry (the same weights under another stem) stays usable.
    good = dict(table[stem], file="other.weights.h5")
    shutil.copy(folder / table[stem]["file"], folder / "other.weights.h5")
    record["models"]["other"] = good
    (folder / "manifest.json").write_text(json.dumps(record))
    manifest = shipped.load()
    assert set(manifest.bad) == {stem} and set(manifest.entries) == {"other"}
    assert f"lacks '{field}'" in manifest.bad[stem]
    recipe = Recipe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recipe()
    (message,) = _cache_warnings(caught)
    assert stem in message and field in message and "git checkout" in message
    assert recipe.fits == 1
    row = _doctor_row("shipped weights")
    assert row["status"] == "problem" and stem in row["found"] and field in row["found"]


def test_weights_of_another_model_under_a_matching_hash_fall_back_to_training(
    shipped_copy, tmp_path, monkeypatch
):
    """The hash matches the file, but the file holds another architecture's weights."""
    folder, table = shipped_copy
    (stem,) = table
    other = Recipe(units=6).build()
    other.save_weights(folder / table[stem]["file"])  # overwritten with the wrong weights
    record = json.loads((folder / "manifest.json").read_text())
    record["models"][stem]["sha256"] = shipped.sha256(folder / table[stem]["file"])
    (folder / "manifest.json").write_text(json.dumps(record))
    recipe = Recipe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = recipe()
    (message,) = _cache_warnings(caught)
    assert "do not fit" in message and stem in message and "make weights" in message
    assert recipe.fits == 1  # trained from its own initial weights, not a half-loaded mix
    monkeypatch.setenv("CNN_UTILS_SHIPPED", "0")
    monkeypatch.setenv("CNN_UTILS_CACHE", str(tmp_path / "reference"))
    reference = Recipe()()
    np.testing.assert_allclose(model(X), reference(X), atol=1e-5)


# --- 2. A full disk ------------------------------------------------------------------------


def _disk_full(monkeypatch):
    def full(self, filepath, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(filepath))

    monkeypatch.setattr(keras.Model, "save", full)


def test_full_disk_returns_the_trained_model_once_and_keeps_it(monkeypatch):
    real_save = keras.Model.save
    _disk_full(monkeypatch)
    recipe = Recipe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = recipe(return_info=True)
    (message,) = _cache_warnings(caught)
    folder = config.cache_dir()
    assert str(folder) in message and "MB free" in message and "CNN_UTILS_CACHE" in message
    assert recipe.fits == 1 and info["path"] is None and np.all(np.isfinite(model(X)))
    assert not list(folder.glob("*.keras")) and not list(folder.glob("*.tmp-*"))
    again = recipe()  # the retry does not train again
    assert recipe.fits == 1 and again is model
    monkeypatch.setattr(keras.Model, "save", real_save)  # space freed: stored at the next call
    _, info = recipe(return_info=True)
    assert recipe.fits == 1 and info["path"] and len(list(folder.glob("*.keras"))) == 1


def test_full_disk_still_serves_the_shipped_weights(shipped_copy, monkeypatch):
    _disk_full(monkeypatch)
    recipe = Recipe()
    with pytest.warns(training.CacheWarning, match="could not be saved"):
        model, info = recipe(return_info=True)
    assert recipe.fits == 0 and info["shipped"] is True
    assert np.all(np.isfinite(model(X)))


def test_full_disk_at_the_write_probe_still_trains(monkeypatch):
    import tempfile

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", no_space)
    _disk_full(monkeypatch)
    recipe = Recipe()
    with pytest.warns(training.CacheWarning, match="CNN_UTILS_CACHE"):
        model = recipe()
    assert recipe.fits == 1 and np.all(np.isfinite(model(X)))


# --- 4. Ctrl-C during adversarial training with the epsilon ramp ---------------------------


def test_interrupted_ramp_leaves_epsilon_at_its_final_value():
    keras.utils.set_random_seed(0)
    classifier = Recipe().build()
    model = defense.AdversarialModel(classifier, 0.3, 1, 0.3, attack="fgsm", seed=0)
    model.compile(keras.optimizers.Adam(1e-3))
    x = np.clip(X, 0, 1)

    def interrupt(batch, logs):
        if batch == 1:
            raise KeyboardInterrupt

    stop = keras.callbacks.LambdaCallback(on_train_batch_end=interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, Y, batch_size=4, epochs=1, verbose=0, callbacks=[defense.EpsilonRamp(6), stop])
    assert float(model.epsilon.numpy()) == pytest.approx(0.3)  # not the partial 0.1
    assert float(model.step_size.numpy()) == pytest.approx(0.3)
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda b, logs: seen.append(float(model.epsilon.numpy()))
    )
    model.fit(x, Y, batch_size=4, epochs=1, verbose=0, callbacks=[defense.EpsilonRamp(6), record])
    np.testing.assert_allclose(seen, [0.05, 0.1, 0.15, 0.2, 0.25, 0.3], rtol=1e-5)
    assert float(model.epsilon.numpy()) == pytest.approx(0.3)


# --- 5. NaN or Inf during training, attacks and evaluation ---------------------------------


def test_training_stops_at_the_first_nan_batch_naming_it():
    x = np.array(X)
    x[13] = np.nan  # batch 2 of 3 (batch size 8)
    model = Recipe().build()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # The loss can stay finite (NaN pixels vanish in a ReLU) while the gradient poisons the
    # weights: both are watched.
    with pytest.raises(training.NonFiniteError, match=r"epoch 1, batch 2: the (loss|weight)"):
        model.fit(x, Y, batch_size=8, shuffle=False, verbose=0,
                  callbacks=[training.StopOnNonFinite()])  # fmt: skip


def test_train_classifier_stops_at_nan_by_default():
    from cnn_utils import data

    ds = data.Dataset("toy", np.full_like(X, np.nan), Y, X[:6], Y[:6], ("a", "b", "c"))
    with pytest.raises(training.NonFiniteError, match=r"epoch 1, batch 1"):
        training.train_classifier(Recipe().build(), ds, epochs=2, batch_size=8, verbose=0)


def test_nan_weights_after_training_are_never_cached():
    recipe = Recipe()

    def poisoned_fit(model):
        recipe.fit(model)
        kernel = model.layers[-1].kernel
        kernel.assign(np.full(kernel.shape, np.nan, "float32"))
        return {}

    with pytest.raises(training.NonFiniteError, match="not cached"):
        training.cached_model("tiny", recipe.build, poisoned_fit, recipe.settings(), verbose=0)
    assert not list(config.cache_dir().glob("*.keras"))
    model = recipe()  # the next call trains a good model
    assert np.all(np.isfinite(model(X)))


def test_a_cached_nan_model_is_rebuilt_not_served():
    recipe = Recipe()
    _, info = recipe(return_info=True)
    bad = keras.models.load_model(info["path"])
    bad.layers[-1].kernel.assign(np.full(bad.layers[-1].kernel.shape, np.inf, "float32"))
    sidecar = json.loads(open(info["path"][: -len(".keras")] + ".json").read())
    bad.save(info["path"])
    sidecar["sha256"] = shipped.sha256(info["path"])
    with open(info["path"][: -len(".keras")] + ".json", "w") as stream:
        json.dump(sidecar, stream)
    with pytest.warns(training.CacheWarning, match="NaN or Inf"):
        model = recipe()
    assert recipe.fits == 2 and np.all(np.isfinite(model(X)))


def test_adversarial_training_stops_at_nan_and_caches_nothing():
    def build():
        model = keras.Sequential(
            [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
        )
        kernel = model.layers[-1].kernel
        kernel.assign(np.full(kernel.shape, np.nan, "float32"))
        return model

    with pytest.raises(training.NonFiniteError, match="epoch 1, batch 1"):
        defense.adversarially_trained(
            "nan_robust", build, "mnist", epsilon=0.1, attack="fgsm", epochs=1, subset=64,
            test_subset=32, batch_size=32, ramp_epochs=0, verbose=0,
        )  # fmt: skip
    assert not list(config.cache_dir().glob("*.keras"))


@pytest.fixture
def nan_model():
    model = Recipe().build()
    model.layers[-1].bias.assign(np.array([np.nan, 0, 0], "float32"))
    return model


def test_attacks_and_evaluation_refuse_nan_logits(nan_model):
    x = np.clip(X[:4], 0, 1)
    for attack in (attacks.fgsm, attacks.pgd, attacks.mim):
        with pytest.raises(ValueError, match="non-finite logits"):
            attack(nan_model, x, Y[:4], 0.1)
    with pytest.raises(ValueError, match="non-finite logits"):
        robustness.robust_accuracy(nan_model, x, Y[:4], "fgsm", epsilon=0.1)
    with pytest.raises(ValueError, match="non-finite logits"):
        robustness.predict_labels(nan_model, x)


# --- 6. mixed_float16 -------------------------------------------------------------------------


def test_float16_overflow_in_an_attack_is_an_error_that_names_the_fix():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Flatten(),
                keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(3000.0)),
                keras.layers.Activation("linear", dtype="float32"),
            ]
        )
        x = np.full((2, 8, 8, 1), 0.9, "float32")
        with pytest.raises(ValueError, match="float16 overflow: run the attack under a float32"):
            attacks.fgsm(model, x, np.array([0, 1]), 0.1)
        with pytest.raises(ValueError, match="float16 overflow: run the attack under a float32"):
            autoattack.apgd(model, x, np.array([0, 1]), 0.1, num_steps=2)
        with pytest.raises(ValueError, match="float16 overflow: run the attack under a float32"):
            autoattack.evaluate_robustness(model, x, np.array([0, 1]), 0.1, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_float16_without_overflow_attacks_stay_in_the_ball():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = Recipe().build()
        x = np.clip(X[:4], 0, 1)
        for attack in (attacks.fgsm, attacks.pgd, attacks.mim):
            x_adv = np.asarray(attack(model, x, Y[:4], 0.1))
            assert np.all(np.isfinite(x_adv)) and np.max(np.abs(x_adv - x)) <= 0.1 + 1e-6
    finally:
        keras.mixed_precision.set_global_policy("float32")


# --- 7. The rest of the list ------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.5, 1.0])
def test_random_sign_noise_l2_has_the_l2_size(epsilon):
    x = np.full((3, 8, 8, 1), 0.5, "float32")
    noisy = np.asarray(attacks.random_sign_noise(None, x, epsilon=epsilon, norm="l2"))
    distances = np.linalg.norm((noisy - x).reshape(3, -1), axis=1)
    np.testing.assert_allclose(distances, epsilon, rtol=1e-5)
    linf = np.asarray(attacks.random_sign_noise(None, x, epsilon=0.1))
    assert np.allclose(np.abs(linf - x), 0.1, atol=1e-6)  # the L-infinity control unchanged
    with pytest.raises(ValueError, match="norm"):
        attacks.random_sign_noise(None, x, epsilon=0.1, norm="l1")


def test_pixel_model_refuses_a_missing_weights_file_even_with_stand_ins(monkeypatch, tmp_path):
    from cnn_utils import imagenet

    monkeypatch.setenv(imagenet.STANDIN_VARIABLE, "1")
    with pytest.raises(ValueError, match="no file at that path"):
        imagenet.pixel_model("mobilenet_v2", weights=str(tmp_path / "typo.weights.h5"))


def test_layer_probes_work_on_a_sequential_model_built_again():
    from cnn_utils import probe, saliency

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv3"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, name="logits"),
        ]
    )
    model.build((None, 8, 8, 1))  # as tutorials do: a second graph
    x = np.clip(X[:2], 0, 1)
    heat = np.asarray(saliency.grad_cam(model, x, np.array([0, 1]), layer_name="conv3"))
    assert heat.shape == (2, 8, 8) and np.all(np.isfinite(heat))
    both = probe.layer_model(model, ["conv1", None])(x)
    np.testing.assert_allclose(both[1], model(x), atol=1e-5)
    cam = np.asarray(saliency.cam(model, x, np.array([0, 1])))
    assert cam.shape[0] == 2 and np.all(np.isfinite(cam))
