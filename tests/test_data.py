import os

import keras
import numpy as np
import pytest

from cnn_utils import data


@pytest.fixture(autouse=True)
def _fresh_raw_cache():
    data._load_raw.cache_clear()
    yield
    data._load_raw.cache_clear()


def test_fashion_mnist_subset_split_and_types():
    ds = data.load_dataset("fashion_mnist", subset=1000, test_subset=500, validation_split=0.2)
    assert ds.x_train.shape == (800, 28, 28, 1)
    assert ds.x_val.shape == (200, 28, 28, 1)
    assert ds.x_test.shape == (500, 28, 28, 1)
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert y.dtype == np.int64 and y.ndim == 1
    # Stratified: every class equally represented in each part.
    assert set(np.bincount(ds.y_train)) == {80}
    assert set(np.bincount(ds.y_val)) == {20}
    assert set(np.bincount(ds.y_test)) == {50}
    assert ds.class_names[9] == "Ankle boot" and ds.num_classes == 10
    assert ds.input_shape == (28, 28, 1)
    assert ds.validation_data[0] is ds.x_val
    assert "fashion_mnist" in repr(ds)


def test_full_mnist_and_scaling():
    ds = data.load_dataset("MNIST")
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0
    assert ds.x_val is None and ds.validation_data is None
    raw_x, raw_y = keras.datasets.mnist.load_data()[0]
    np.testing.assert_allclose(ds.x_train[5, ..., 0] * 255.0, raw_x[5], atol=1e-3)
    np.testing.assert_array_equal(ds.y_train, raw_y)


def test_subsets_are_seeded():
    a = data.load_dataset("mnist", subset=200, seed=1)
    b = data.load_dataset("mnist", subset=200, seed=1)
    c = data.load_dataset("mnist", subset=200, seed=2)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


def test_tiny_subset_cannot_be_stratified_but_works():
    ds = data.load_dataset("mnist", subset=5, test_subset=3)
    assert len(ds.y_train) == 5 and len(ds.y_test) == 3


def test_unknown_name_lists_choices():
    with pytest.raises(
        ValueError, match=r"name must be one of \['cifar10', 'fashion_mnist', 'mnist'\].*'imagenet'"
    ):
        data.load_dataset("imagenet")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subset": 0}, "subset must be between 1 and 60000. Received: subset=0"),
        ({"subset": 60001}, "subset=60001"),
        ({"subset": 2.5}, "subset must be an integer"),
        ({"test_subset": -3}, "test_subset=-3"),
        ({"validation_split": 1.0}, "validation_split.*1.0"),
        ({"validation_split": -0.1}, "validation_split.*-0.1"),
        ({"subset": 1, "validation_split": 0.1}, "leaves no validation"),
        ({"validation_split": float("nan")}, "validation_split=nan"),
        ({"validation_split": "0.1"}, "validation_split='0.1'"),
        ({"seed": -1}, "seed=-1"),
        ({"seed": 1.5}, "seed=1.5"),
        ({"test_subset": True}, "test_subset"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load_dataset("mnist", **kwargs)


def test_uint8_labels_become_flat_int64(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 4, 4, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=(20, 1), dtype=np.uint8)  # CIFAR-10 stores (n, 1) uint8
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((x, y), (x[:5], y[:5])))
    ds = data.load_dataset("cifar10")
    assert ds.y_train.dtype == np.int64 and ds.y_train.shape == (20,)
    np.testing.assert_array_equal(ds.y_train, y[:, 0].astype(np.int64))
    assert ds.x_train.shape == (20, 4, 4, 3) and ds.x_train.dtype == np.float32
    np.testing.assert_allclose(ds.x_train, x / 255.0, rtol=1e-6)
    assert ds.class_names[0] == "airplane"


def _fail(*args, **kwargs):
    raise Exception("URL fetch failure on https://example.invalid/mnist.npz: None -- no network")


def test_offline_error_names_dataset_file_and_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.datasets.mnist, "load_data", _fail)
    with pytest.raises(data.DatasetUnavailableError) as info:
        data.load_dataset("mnist")
    message = str(info.value)
    assert "'mnist' dataset" in message
    assert os.path.join(str(tmp_path), "datasets", "mnist.npz") in message
    assert "missing" in message
    assert "export KERAS_HOME=" in message
    assert "URL fetch failure" in message
    assert isinstance(info.value.__cause__, Exception)


def test_offline_error_flags_read_only_keras_home(monkeypatch, tmp_path):
    # Keras ignores a KERAS_HOME it cannot write to; the error must say so. os.access is
    # patched because the tests may run as root, who can write anywhere.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(data.os, "access", lambda path, mode: str(path) != str(tmp_path))
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", _fail)
    with pytest.raises(data.DatasetUnavailableError, match="read-only"):
        data.load_dataset("fashion_mnist")


def test_expected_files(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    files = data.expected_files("fashion-mnist")
    assert len(files) == 4 and all(f.startswith(str(tmp_path)) for f in files)


@pytest.fixture
def keras_home_copy(monkeypatch, tmp_path):
    """A private copy of the dataset cache, which Keras and cnn_utils both read.

    Keras reads KERAS_HOME once, at import, so its private copy of the folder is patched too.
    The shared /tmp/keras_home is never modified.
    """
    import shutil

    from keras.src.backend import config as keras_config

    source = data.config.keras_home() / "datasets"
    home = tmp_path / "keras_home"
    shutil.copytree(source, home / "datasets")
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))
    return home


def _offline(*args, **kwargs):
    import urllib.error

    raise urllib.error.URLError("no network (simulated)")


@pytest.fixture
def offline(monkeypatch):
    """Downloads fail as they do without internet (also where CI has a network)."""
    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "urlretrieve", _offline)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:100],  # truncated inside the header
        lambda b: b"\0" * len(b),  # overwritten
        lambda b: b"",  # empty
    ],
    ids=["truncated", "header", "overwritten", "empty"],
)
def test_corrupted_fashion_mnist_archive_is_reported_with_the_file_to_delete(
    keras_home_copy, offline, damage
):
    path = keras_home_copy / "datasets" / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(data.DatasetCorruptedError) as info:
        data.load_dataset("fashion_mnist")
    message = str(info.value)
    # Fetched with its published hash (keras.utils.get_file): Keras deletes the damaged file.
    assert "corrupted" in message and str(path) in message and "deleted by Keras" in message
    assert "could not download" not in message and "missing" not in message
    others = [f for f in data.DATASETS["fashion_mnist"].files if not str(path).endswith(f)]
    assert len(others) == 3 and not any(f.split("/")[-1] in message for f in others)  # only it
    assert isinstance(info.value, data.DatasetUnavailableError)  # old except clauses still work


def test_truncated_mnist_is_reported_as_corrupted(keras_home_copy, offline):
    """Keras deletes a file whose hash differs before it fails: the damage is found first."""
    path = keras_home_copy / "datasets" / "mnist.npz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(data.DatasetCorruptedError) as info:
        data.load_dataset("mnist")
    assert "mnist.npz" in str(info.value) and "corrupted" in str(info.value)


def test_fashion_mnist_download_is_checked_against_its_published_hash(keras_home_copy, monkeypatch):
    """Every Fashion-MNIST file goes through keras.utils.get_file with its sha256."""
    import keras

    seen = []
    real = keras.utils.get_file

    def recording(fname, *args, **kwargs):
        seen.append((fname, kwargs.get("file_hash")))
        return real(fname, *args, **kwargs)

    monkeypatch.setattr(keras.utils, "get_file", recording)
    data.load_dataset("fashion_mnist", subset=10, test_subset=10)
    hashes = dict(seen)
    assert len(hashes) == 4 and all(len(h) == 64 for h in hashes.values())
    assert hashes == dict(zip((f.split("/")[-1] for f in data.DATASETS["fashion_mnist"].files),
                              data.DATASETS["fashion_mnist"].sha256, strict=True))  # fmt: skip


def test_intact_copy_loads(keras_home_copy):
    ds = data.load_dataset("fashion_mnist", subset=100, test_subset=50)
    assert ds.x_train.shape == (100, 28, 28, 1)


def test_empty_keras_home_offline_keeps_one_clear_error(monkeypatch, tmp_path, offline):
    from keras.src.backend import config as keras_config

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    with pytest.raises(data.DatasetUnavailableError) as info:
        data.load_dataset("fashion_mnist")
    message = str(info.value)
    assert not isinstance(info.value, data.DatasetCorruptedError)
    assert "could not download it" in message and message.count("(missing)") == 4
    assert "no network (simulated)" in message
    assert "export KERAS_HOME=" in message
