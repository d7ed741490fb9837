"""benchmarks/robustbench_style.py evaluates in chunks that resume and sum into one table."""

import importlib.util
import json
import os
import types
from pathlib import Path
from unittest import mock

import keras
import numpy as np
import pytest

from cnn_utils import autoattack, data, shipped, training

ROOT = Path(__file__).resolve().parents[1]
with mock.patch.dict(os.environ):  # the script's environment defaults stay in the script
    spec = importlib.util.spec_from_file_location(
        "robustbench_style", ROOT / "benchmarks" / "robustbench_style.py"
    )
    rb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rb)

ARGS = types.SimpleNamespace(version="standard", steps=3, targets=2, queries=20, batch_size=8)


@pytest.fixture(scope="module")
def tiny():
    """A tiny linear classifier on 8x8 images and 12 images, a few of them misclassified."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    x = np.random.default_rng(0).uniform(0, 1, (12, 8, 8, 1)).astype("float32")
    y = model.predict(x, verbose=0).argmax(-1)
    y[:2] = (y[:2] + 1) % 3  # two clean errors
    return model, x, y


def test_chunks_resume_and_sum_into_the_table(tiny, tmp_path, monkeypatch):
    model, x, y = tiny
    folder = rb.chunk_folder("tiny", ARGS, root=tmp_path)
    first = rb.run_chunk(model, x, y, 0, 5, folder, ARGS, key="k")
    second = rb.run_chunk(model, x, y, 5, 12, folder, ARGS, key="k")
    assert first["seed"] == 0 and second["seed"] == 5
    assert len(second["robust_mask"]) == 7 and second["robust_count"] <= 7
    assert rb.todo(folder, 5, total=15) == [1, 2]  # by 5: [0, 5) done, [5, 10), [10, 15) not

    # A chunk is the protocol on its images with the chunk's seed: the same robust mask.
    again = autoattack.evaluate_robustness(
        model,
        x[5:12],
        y[5:12],
        rb.EPSILON,
        num_steps=3,
        target_classes=2,
        square_queries=20,
        batch_size=8,
        seed=5,
        verbose=0,
    )
    assert second["robust_mask"] == "".join("1" if r else "0" for r in again.robust)

    # Done chunks are skipped: the protocol does not run again.
    monkeypatch.setattr(rb, "protocol", mock.Mock(side_effect=AssertionError("ran again")))
    assert rb.run_chunk(model, x, y, 0, 5, folder, ARGS, key="k") is None

    result = rb.aggregate(folder, total=12)
    assert result["images"] == 12 and result["complete"]
    assert result["robust_count"] == first["robust_count"] + second["robust_count"]
    assert result["robust"] == pytest.approx(result["robust_count"] / 12)
    assert result["clean"] == pytest.approx((first["clean_correct"] + second["clean_correct"]) / 12)
    assert result["clean"] <= 10 / 12
    table = {row["stage"]: row for row in result["table"]}
    assert list(table)[:2] == ["clean", "apgd-ce"] and list(table)[-1] == "square"
    assert table["clean"]["accuracy"] == pytest.approx(result["clean"])
    assert table["square"]["accuracy"] == pytest.approx(result["robust"])
    accuracies = [row["accuracy"] for row in result["table"]]
    assert accuracies == sorted(accuracies, reverse=True)
    assert not rb.aggregate(folder)["complete"]  # 12 of the 10,000 test images


def test_aggregate_refuses_overlapping_or_mixed_chunks(tiny, tmp_path):
    model, x, y = tiny
    folder = tmp_path / "chunks"
    with pytest.raises(ValueError, match="no chunks"):
        rb.aggregate(folder)
    rb.run_chunk(model, x, y, 0, 6, folder, ARGS, key="k")
    chunk = json.loads(rb.chunk_path(folder, 0, 6).read_text())
    rb.chunk_path(folder, 4, 10).write_text(json.dumps({**chunk, "start": 4, "stop": 10}))
    with pytest.raises(ValueError, match="overlap"):
        rb.aggregate(folder)
    rb.chunk_path(folder, 4, 10).unlink()
    rb.chunk_path(folder, 6, 12).write_text(
        json.dumps({**chunk, "start": 6, "stop": 12, "model_key": "other"})
    )
    with pytest.raises(ValueError, match="model_key"):
        rb.aggregate(folder)


def test_the_benchmark_model_is_shipped_current_and_loads_without_training(tmp_path, monkeypatch):
    """The shipped recipe's key is in the manifest; an empty cache loads it, no training."""
    bench = rb.adversarial_training
    settings = bench.recipe()
    key = training.cache_key(bench.build_model(settings["dense_units"]), settings)
    table = shipped.read_manifest()
    entry = table.get(f"{bench.CACHE_NAME}-mnist-{key[:16]}")
    assert entry is not None and entry["key"] == key, (
        "the benchmark model's shipped weights are stale or missing: see the docstring of "
        "benchmarks/adversarial_training.py"
    )
    monkeypatch.setenv("CNN_UTILS_CACHE", str(tmp_path))
    monkeypatch.setenv("CNN_UTILS_SHIPPED", "1")
    monkeypatch.setattr(bench, "fit_recipe", mock.Mock(side_effect=AssertionError("trained")))
    model, info = bench.trained_model(verbose=0)
    assert info["shipped"] is True and info["key"] == key
    ds = data.load_dataset("mnist", subset=1, test_subset=2000, seed=1)
    accuracy = float(np.mean(model.predict(ds.x_test, verbose=0).argmax(-1) == ds.y_test))
    assert accuracy >= 0.97 and abs(accuracy - info["test_accuracy"]) < 0.02
