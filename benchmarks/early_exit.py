"""What does early exit save? Best-iterate PGD evaluation across epsilon, against k passes.

``cnn_utils.robustness.robust_accuracy`` scores every PGD iterate and stops attacking an
example once it is misclassified (and never attacks one the model already gets wrong). Its
cost therefore depends on how many examples survive: an example that survives all ``k`` steps
costs ``k`` forward+backward passes whatever the evaluation does, so with a fraction ``s`` of
survivors no early exit can cost less than ``s * k`` passes per example. This script measures,
on one trained course model and one batch of Fashion-MNIST test images, for several radii:

* the time of ``k`` compiled forward+backward passes over the batch (the limit, what
  last-iterate PGD-k cannot avoid) and of the early-exit evaluation, in turns;
* the passes the evaluation spent per example of the batch, and the bound ``s * k``;
* the accuracy it reports next to last-iterate PGD-k from the same random start (no higher).

Results go to ``benchmarks/results/early_exit.json``.

Run (a few minutes on 2 CPU cores)::

    KERAS_HOME=... CNN_UTILS_FAST=1 python benchmarks/early_exit.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from attack_speed import make_forward_backward, time_all  # noqa: E402

from cnn_utils import attacks, config, data, robustness, training  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "early_exit.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn", choices=training.TRAINED_MODELS)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    config.set_seed(0)
    model = training.trained(args.model, "fashion_mnist", verbose=0)
    ds = data.load_dataset("fashion_mnist", test_subset=args.batch_size)
    x = tf.constant(ds.x_test)
    y = tf.constant(ds.y_test.astype("int32"))
    n, k = len(ds.x_test), args.steps
    forward_backward = make_forward_backward(model)
    clean = float(robustness.robust_accuracy(model, x, y, None, verbose=0))

    def limit():
        for _ in range(k):
            grad = forward_backward(x, y)
        return grad.numpy()

    rows = []
    for eps in args.epsilons:
        kwargs = {"epsilon": eps, "num_steps": k, "step_size": 2.5 * eps / k, "seed": 0}

        def evaluation(kwargs=kwargs):
            return robustness.robust_accuracy(
                model, x, y, "pgd", args.batch_size, return_details=True, verbose=0, **kwargs
            )

        timings = time_all({"limit": limit, "evaluation": evaluation}, args.repeats)
        median = {name: statistics.median(values) for name, values in timings.items()}
        accuracy, details = evaluation()
        attacked = int(round(clean * n))
        passes_per_example = details["passes"] * attacked / n
        x_last = attacks.pgd(model, x, y, **kwargs)
        last = float(np.mean(robustness.predict_labels(model, x_last) == ds.y_test))
        row = {
            "epsilon": eps,
            "seconds_limit": median["limit"],
            "seconds_evaluation": median["evaluation"],
            "time_ratio_to_limit": median["evaluation"] / median["limit"],
            "passes_per_example": passes_per_example,
            "passes_per_attacked_example": details["passes"],
            "pass_ratio": passes_per_example / k,
            "survivors": accuracy,
            "lower_bound_pass_ratio": accuracy,
            "accuracy_best_iterate": accuracy,
            "accuracy_last_iterate": last,
        }
        rows.append(row)
        print(
            f"eps={eps:<5} accuracy {accuracy:.3f} (last iterate {last:.3f}); "
            f"{passes_per_example:5.2f} of {k} passes per example ({row['pass_ratio']:.2f}, "
            f"bound {accuracy:.2f}); time {row['time_ratio_to_limit']:.2f}x the limit"
        )

    result = {
        "benchmark": "early_exit",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "fast_mode_model": config.FAST,
        "dataset": "fashion_mnist",
        "examples": n,
        "num_steps": k,
        "repeats": args.repeats,
        "clean_accuracy": clean,
        "rows": rows,
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
