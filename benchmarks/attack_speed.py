"""How fast is cnn_utils.attacks.pgd? PGD-20 against the physical limit and the lecture's loop.

On one trained course model and one batch of Fashion-MNIST test images, in one run, this
times:

* ``pgd``: ``cnn_utils.attacks.pgd`` with 20 steps, called through its public, validated API
  (argument checks, label checks and the compiled loop: everything a user pays for);
* ``limit``: 20 calls of one compiled forward + backward pass (the gradient of the loss with
  respect to the input), the work PGD-20 cannot avoid;
* ``eager``: the lecture's reference code, a Python loop with ``tf.GradientTape`` run eagerly
  (sign step, clip to the ball, clip to [0, 1]);
* ``evaluation``: ``cnn_utils.robustness.robust_accuracy`` with PGD-20 at ``--eval-epsilon``
  (step ``2.5 * eps / 20``), which scores every iterate and stops attacking an example once it
  is misclassified: its cost against the same limit, the forward+backward passes it spent per
  attacked example (target: at most half of 20 on a standard model) and its accuracy next to
  last-iterate PGD (target: no higher).

Each is warmed up once (tracing), then the three are timed in turns, ``--repeats`` times, so
that load from other processes affects them alike; the medians are compared.
Targets: ``pgd / limit <= 1.0`` and ``eager / pgd >= 2``. Results go to
``benchmarks/results/attack_speed.json``.

Run (about a minute on 2 CPU cores, plus training the model on first use)::

    KERAS_HOME=... CNN_UTILS_FAST=1 python benchmarks/attack_speed.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cnn_utils import attacks, config, data, robustness, training  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "attack_speed.json"


def lecture_pgd(model, x, y, epsilon=0.3, num_steps=20, step_size=0.01, clip_min=0.0, clip_max=1.0):
    """The lecture's eager PGD loop (random start, sign step, clip to ball, clip to range)."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x_adv = x + tf.random.uniform(x.shape, -epsilon, epsilon)
    x_adv = tf.clip_by_value(x_adv, clip_min, clip_max)
    for _ in range(num_steps):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss = loss_fn(y, model(x_adv))
        grad = tape.gradient(loss, x_adv)
        x_adv = x_adv + step_size * tf.sign(grad)
        x_adv = tf.clip_by_value(x_adv, x - epsilon, x + epsilon)
        x_adv = tf.clip_by_value(x_adv, clip_min, clip_max)
    return x_adv


def make_forward_backward(model):
    """One compiled forward + backward pass: the gradient of the loss w.r.t. the input."""

    @tf.function(reduce_retracing=True)
    def forward_backward(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.cast(model(x, training=False), tf.float32)
            loss = tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            )
        return tape.gradient(loss, x)

    return forward_backward


def time_all(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Warm every function up (tracing), then time them in turns, so load affects all alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn", choices=training.TRAINED_MODELS)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--eval-epsilon", type=float, default=0.05)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    config.set_seed(0)
    model = training.trained(args.model, "fashion_mnist", verbose=0)
    ds = data.load_dataset("fashion_mnist", test_subset=args.batch_size)
    x = tf.constant(ds.x_test)
    y = tf.constant(ds.y_test.astype("int32"))
    eps, step = 0.3, 0.01

    forward_backward = make_forward_backward(model)

    def limit():
        for _ in range(args.steps):
            grad = forward_backward(x, y)
        return grad.numpy()

    def ours():
        return attacks.pgd(model, x, y, eps, args.steps, step, seed=0).numpy()

    def eager():
        return lecture_pgd(model, x, y, eps, args.steps, step).numpy()

    eval_eps = args.eval_epsilon
    eval_kwargs = {"epsilon": eval_eps, "num_steps": args.steps, "seed": 0, "verbose": 0}
    eval_kwargs["step_size"] = 2.5 * eval_eps / args.steps

    def evaluation():
        return robustness.robust_accuracy(
            model, x, y, "pgd", args.batch_size, return_details=True, **eval_kwargs
        )

    timings = time_all(
        {"limit": limit, "pgd": ours, "eager": eager, "evaluation": evaluation}, args.repeats
    )
    for name, values in timings.items():
        print(f"{name:>6}: median {statistics.median(values) * 1e3:8.1f} ms")
    median = {name: statistics.median(values) for name, values in timings.items()}

    # Same attack, same strength: accuracy under both implementations (sanity check).
    clean = robustness.robust_accuracy(model, x, y, None, verbose=0)
    acc_ours = float(np.mean(robustness.predict_labels(model, ours()) == ds.y_test))
    acc_eager = float(np.mean(robustness.predict_labels(model, eager()) == ds.y_test))
    best_iterate, details = evaluation()
    last_kwargs = {k: v for k, v in eval_kwargs.items() if k != "verbose"}
    last_iterate = float(
        np.mean(
            robustness.predict_labels(model, attacks.pgd(model, x, y, **last_kwargs)) == ds.y_test
        )
    )

    result = {
        "benchmark": "attack_speed",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "params": int(model.count_params()),
        "dataset": "fashion_mnist",
        "batch_size": args.batch_size,
        "input_shape": list(ds.input_shape),
        "num_steps": args.steps,
        "epsilon": eps,
        "step_size": step,
        "repeats": args.repeats,
        "fast_mode_model": config.FAST,
        "seconds_median": median,
        "seconds_all": timings,
        "ms_per_step": {name: 1e3 * value / args.steps for name, value in median.items()},
        "ratio_to_limit": median["pgd"] / median["limit"],
        "speedup_over_eager": median["eager"] / median["pgd"],
        "targets": {"ratio_to_limit_max": 1.0, "speedup_over_eager_min": 2.0},
        "accuracy": {"clean": clean, "pgd": acc_ours, "eager_pgd": acc_eager},
        "evaluation": {
            "what": "robustness.robust_accuracy, PGD with best iterate and early exit",
            "epsilon": eval_eps,
            "ratio_to_limit": median["evaluation"] / median["limit"],
            "passes_per_attacked_example": details["passes"],
            "passes_target_max": args.steps / 2,
            "accuracy_best_iterate": best_iterate,
            "accuracy_last_iterate_pgd": last_iterate,
        },
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"PGD-{args.steps} / limit = {result['ratio_to_limit']:.3f} (target <= 1.0); "
        f"speed-up over eager = {result['speedup_over_eager']:.2f}x (target >= 2). "
        f"Accuracy clean {clean:.3f}, PGD {acc_ours:.3f}, eager PGD {acc_eager:.3f}. "
        f"Evaluation at eps={eval_eps}: {details['passes']:.2f} passes per attacked example "
        f"({median['evaluation'] / median['limit']:.2f}x the limit), accuracy "
        f"{best_iterate:.3f} (best iterate) vs {last_iterate:.3f} (last). Wrote {args.output}"
    )


if __name__ == "__main__":
    main()
