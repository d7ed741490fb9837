"""Speed and strength of cnn_utils.autoattack against IBM's Adversarial Robustness Toolbox (ART).

On the first ``--images`` MNIST test images and notebook 06's default-mode PGD-trained MNIST
model (the model of ``robustbench_style.py``), at epsilon = 0.3 (L-infinity), one run times:

* the protocol: ``autoattack.evaluate_robustness`` (standard: APGD-CE, APGD-T, FAB-T, Square,
  each on the survivors of the previous) against the same sequence made of ART's attacks
  (``AutoProjectedGradientDescent`` with the cross-entropy, then targeted with the DLR loss
  against each target class, then ``SquareAttack``), run on the survivors the same way. ART has
  no FAB, so the comparison counts our stages without FAB-T (and reports FAB-T apart);
* Square alone: ``autoattack.square`` against ART's ``SquareAttack`` on the same images with
  the same query budget.

ART is a benchmark-only dependency (``benchmarks/requirements.txt``); its attacks run on the
Keras 3 model through ``TensorFlowV2Classifier``. Results go to
``benchmarks/results/autoattack_vs_art.json``.

Run (budgets are arguments; the defaults fit about 10 minutes on 2 CPU cores)::

    pip install -r benchmarks/requirements.txt
    KERAS_HOME=... python benchmarks/autoattack_vs_art.py --images 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CNN_UTILS_FAST", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustbench_style import EPSILON, pgd_trained_mnist, protocol  # noqa: E402

from cnn_utils import data, robustness  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "autoattack_vs_art.json"


def art_classifier(model):
    """The Keras 3 model as an ART estimator (logits, pixels in [0, 1])."""
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model=model,
        nb_classes=10,
        input_shape=(28, 28, 1),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )


def art_stages(classifier, args) -> list:
    """ART's attacks in AutoAttack's order: ``(name, attack, target rank or None)``."""
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack

    def apgd(loss, targeted):
        return AutoProjectedGradientDescent(
            classifier,
            norm=np.inf,
            eps=EPSILON,
            eps_step=EPSILON,  # ART's first step is 2 * eps_step: the paper's 2 * eps
            max_iter=args.steps,
            targeted=targeted,
            nb_random_init=1,
            batch_size=args.batch_size,
            loss_type=loss,
            verbose=False,
        )

    stages = [("apgd-ce", apgd("cross_entropy", False), None)]
    targeted = apgd("difference_logits_ratio", True)
    stages += [(f"apgd-t (target {r - 1})", targeted, r) for r in range(2, args.targets + 2)]
    square = SquareAttack(
        classifier,
        norm=np.inf,
        eps=EPSILON,
        max_iter=args.queries,
        p_init=0.8,
        nb_restarts=1,
        batch_size=args.batch_size,
        verbose=False,
    )
    return [*stages, ("square", square, None)]


def run_art(model, x, y, args) -> dict:
    """ART's attacks in sequence on the survivors, every stage timed."""
    classifier = art_classifier(model)
    logits = np.concatenate([np.asarray(model(x[i : i + 500])) for i in range(0, len(x), 500)])
    ranked = np.argsort(-logits, axis=1)
    robust = logits.argmax(1) == y
    rows = [{"stage": "clean", "accuracy": float(robust.mean()), "seconds": 0.0}]
    for name, attack, rank in art_stages(classifier, args):
        index = np.flatnonzero(robust)
        start = time.perf_counter()
        if len(index):
            labels = y[index] if rank is None else ranked[index, rank - 1]
            x_adv = attack.generate(x=x[index], y=labels)
            robust[index] = robustness.predict_labels(model, x_adv) == y[index]
        seconds = time.perf_counter() - start
        rows.append({"stage": name, "accuracy": float(robust.mean()), "seconds": seconds})
        print(f"ART {name}: accuracy {robust.mean():.4f} ({seconds:.1f} s)", flush=True)
    return {"rows": rows, "accuracy": float(robust.mean())}


def run_ours(model, x, y, args) -> dict:
    report, seconds = protocol(model, x, y, args)
    table = report.table.drop(index="final")
    fab = float(table.loc[table.index.str.startswith("fab"), "seconds"].sum())
    rows = json.loads(table.reset_index().to_json(orient="records"))
    return {"rows": rows, "accuracy": report.accuracy, "seconds": seconds, "fab_seconds": fab}


def square_alone(model, x, y, args) -> dict:
    """Our Square and ART's on the same images and budget, accuracy and time."""
    start = time.perf_counter()
    ours = robustness.robust_accuracy(
        model,
        x,
        y,
        "square",
        args.batch_size,
        epsilon=EPSILON,
        num_queries=args.queries,
        seed=0,
        verbose=0,
    )
    ours_seconds = time.perf_counter() - start
    _, attack, _ = art_stages(art_classifier(model), args)[-1]
    correct = robustness.predict_labels(model, x) == y
    start = time.perf_counter()
    x_adv = attack.generate(x=x[correct], y=y[correct])
    art_seconds = time.perf_counter() - start
    art = float((robustness.predict_labels(model, x_adv) == y[correct]).sum() / len(y))
    return {
        "ours": {"accuracy": ours, "seconds": ours_seconds},
        "art": {"accuracy": art, "seconds": art_seconds},
        "speedup": art_seconds / ours_seconds,
    }


def main() -> None:
    import art

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100, help="APGD (and FAB) iterations")
    parser.add_argument("--targets", type=int, default=9, help="target classes")
    parser.add_argument("--queries", type=int, default=5000, help="Square's query budget")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--skip-protocol", action="store_true", help="time Square alone only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    ds = data.load_dataset("mnist")
    x, y = ds.x_test[: args.images], ds.y_test[: args.images].astype(np.int64)
    model, _ = pgd_trained_mnist()
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, TensorFlow {tf.__version__}",
        "art_version": art.__version__,
        "images": len(y),
        "epsilon": EPSILON,
        "budgets": {"steps": args.steps, "targets": args.targets, "queries": args.queries},
    }
    result["square"] = square_alone(model, x, y, args)
    print("Square alone:", json.dumps(result["square"]), flush=True)
    if not args.skip_protocol:
        ours, theirs = run_ours(model, x, y, args), run_art(model, x, y, args)
        same_stages = ours["seconds"] - ours["fab_seconds"]
        art_seconds = sum(row["seconds"] for row in theirs["rows"])
        result["protocol"] = {
            "ours": ours,
            "art": theirs,
            "ours_without_fab_seconds": same_stages,
            "art_seconds": art_seconds,
            "speedup_same_stages": art_seconds / same_stages,
        }
        print(
            f"protocol: ours {ours['accuracy']:.4f} in {ours['seconds']:.0f} s "
            f"({same_stages:.0f} s without FAB-T), ART {theirs['accuracy']:.4f} in "
            f"{art_seconds:.0f} s: {art_seconds / same_stages:.2f}x"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
