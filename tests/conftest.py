"""Shared test setup: quiet TensorFlow, a private cache folder, and a seeded Keras home."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own CNN_UTILS_CACHE, so no test sees another's cached models."""
    monkeypatch.setenv("CNN_UTILS_CACHE", str(tmp_path / "cnn_utils_cache"))
