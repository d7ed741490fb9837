"""The AutoAttack table that RobustBench prints: clean, robust and per-stage accuracy.

On the MNIST test images and the adversarially trained MNIST model of notebook 06 (its
default-mode model, PGD-7 training at epsilon = 0.3, loaded from the shipped weights), this runs
``cnn_utils.autoattack.evaluate_robustness`` (``--version``, standard by default: APGD-CE,
APGD-T, FAB-T and Square on the survivors of each other) and prints what RobustBench's
``benchmark`` prints: the clean accuracy, the robust accuracy, and the accuracy after each stage
with its time. Results go to ``benchmarks/results/robustbench_style.json``.

Run (about 10 minutes on 2 CPU cores for 1,000 images with the standard budgets)::

    KERAS_HOME=... python benchmarks/robustbench_style.py --images 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CNN_UTILS_FAST", "0")  # the default-mode model, not FAST mode's

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cnn_utils import autoattack, data, defense, models  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "robustbench_style.json"
EPSILON = 0.3


def architecture():
    """Notebook 06's small CNN (its ``architecture()`` cell)."""
    return models.small_cnn(
        (28, 28, 1),
        10,
        filters=(32, 64),
        convs_per_stage=1,
        head="flatten",
        dense_units=128,
        dropout=0.0,
        batch_norm=False,
    )


def pgd_trained_mnist():
    """Notebook 06's default-mode robust MNIST model (shipped weights; trained if absent)."""
    return defense.adversarially_trained(
        "nb06_robust",
        architecture,
        "mnist",
        epsilon=EPSILON,
        attack="pgd",
        num_steps=7,
        label_mode="predicted",
        epochs=4,
        batch_size=128,
        learning_rate=1e-3,
        subset=None,
        test_subset=2000,
        seed=6,
        verbose=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="first N MNIST test images")
    parser.add_argument("--version", default="standard", choices=autoattack.VERSIONS)
    parser.add_argument("--steps", type=int, default=100, help="APGD and FAB iterations")
    parser.add_argument("--targets", type=int, default=9, help="target classes")
    parser.add_argument("--queries", type=int, default=5000, help="Square's query budget")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    ds = data.load_dataset("mnist")
    x, y = ds.x_test[: args.images], ds.y_test[: args.images]
    model = pgd_trained_mnist()
    start = time.perf_counter()
    report = autoattack.evaluate_robustness(
        model,
        x,
        y,
        EPSILON,
        version=args.version,
        num_steps=args.steps,
        target_classes=args.targets,
        square_queries=args.queries,
        batch_size=args.batch_size,
        seed=0,
    )
    seconds = time.perf_counter() - start
    table = report.table
    clean = float(table.loc["clean", "accuracy"])
    print(f"\nclean accuracy: {100 * clean:.2f}%")
    print(f"robust accuracy: {100 * report.accuracy:.2f}% (eps = {EPSILON}, Linf, {len(y)} images)")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"examples with a zero gradient: {int(report.zero_gradient.sum())}")
    print(f"total: {seconds:.0f} s")
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, TensorFlow {tf.__version__}",
        "model": "notebook 06's default-mode PGD-trained MNIST model (nb06_robust, shipped)",
        "images": len(y),
        "epsilon": EPSILON,
        "version": args.version,
        "budgets": {"steps": args.steps, "targets": args.targets, "queries": args.queries},
        "clean": clean,
        "robust": report.accuracy,
        "zero_gradient_examples": int(report.zero_gradient.sum()),
        "seconds": seconds,
        "table": json.loads(table.reset_index().to_json(orient="records")),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
