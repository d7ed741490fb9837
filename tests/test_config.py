import importlib
import random

import numpy as np
import pytest

from cnn_utils import config


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False), (None, False)]
)
def test_fast_flag_parses_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("CNN_UTILS_FAST", raising=False)
    else:
        monkeypatch.setenv("CNN_UTILS_FAST", value)
    try:
        assert importlib.reload(config).FAST is expected
        assert config.by_mode(fast="f", full="F") == ("f" if expected else "F")
    finally:
        monkeypatch.undo()
        importlib.reload(config)


def test_fast_flag_rejects_garbage():
    with pytest.raises(ValueError, match="CNN_UTILS_FAST.*'maybe'"):
        config._parse_flag("CNN_UTILS_FAST", "maybe")


def test_set_seed_makes_python_numpy_and_keras_repeatable():
    import keras

    def draw():
        return random.random(), np.random.rand(), float(keras.random.uniform(()))

    config.set_seed(7)
    first = draw()
    config.set_seed(7)
    assert draw() == first
    config.set_seed(8)
    assert draw() != first


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_set_seed_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        config.set_seed(seed)


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    target = tmp_path / "somewhere" / "cache"
    monkeypatch.setenv("CNN_UTILS_CACHE", str(target))
    assert config.cache_dir() == target.resolve()
    assert target.is_dir()


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("CNN_UTILS_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.cache_dir(create=False) == (tmp_path / ".cache" / "cnn_utils").resolve()


def test_keras_home_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert config.keras_home() == tmp_path.resolve()
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.keras_home() == (tmp_path / ".keras").resolve()


def test_cache_dir_rejects_a_non_boolean_create():
    with pytest.raises(ValueError, match="create='no'"):
        config.cache_dir(create="no")
