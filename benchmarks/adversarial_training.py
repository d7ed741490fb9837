"""Adversarial training on full MNIST at epsilon = 0.3, evaluated with APGD-CE + APGD-T.

Trains a small CNN (two 3x3 convolutions with 32 and 64 filters, each followed by 2x2 max
pooling, a Dense hidden layer, logits) with :class:`cnn_utils.defense.AdversarialModel`
through ``model.fit`` on the 60,000 MNIST training images for a fixed number of epochs (7 by
default: about 15 minutes on this 2-core machine), then measures on the 10,000 test images:

* clean accuracy;
* FGSM accuracy (epsilon = 0.3);
* PGD-50 accuracy (the project's old protocol, kept for comparison): step 0.01, random start,
  ``--restarts`` extra random restarts, each run scored on its last iterate; an example counts
  as robust only if it survives every run;
* the strong protocol, :func:`cnn_utils.autoattack.evaluate_robustness` with
  ``version="lite"``: APGD-CE (100 iterations), then targeted APGD-DLR against
  ``--target-classes`` classes on the survivors, every iterate scored (AutoAttack without FAB
  and Square; ``benchmarks/robustbench_style.py --model benchmark`` runs the standard protocol
  on this model).

Training attack (``--attack``): ``pgd`` (default: ``--steps`` steps of size
``2.5 * eps / steps`` from a random start, adversarial loss only, Madry et al. 2018) or
``fgsm_rs`` (one step of 1.25 * eps from a random start, Wong et al. 2020). Epsilon grows
linearly over the first ``--ramp`` of the steps (:class:`cnn_utils.defense.EpsilonRamp`); Adam
with a cosine-decayed learning rate.

The trained classifier goes through :func:`cnn_utils.training.cached_model` (name
``benchmark_robust``, keyed by the architecture and every setting), so a second run loads it
instead of training, and the model of the default settings ships with the package
(``cnn_utils/shipped/``): with the shipped weights, the first run loads it in seconds too. To
ship it again after a change of recipe::

    export CNN_UTILS_CACHE=/tmp/bench_cache CNN_UTILS_SHIPPED=0
    python benchmarks/adversarial_training.py --train-only
    python tools/weights.py collect /tmp/bench_cache --mode full --source benchmarks

``--budget SECONDS`` stops training after that much time instead (the old protocol; the model
is then not cached, since a time budget trains different weights on every machine). Results go
to ``benchmarks/results/adversarial_training.json`` (``--quick`` writes to a scratch file
instead: a few thousand images, one epoch, a 1,000-image evaluation, to check the script).

Run (the shipped model loads in seconds; then about 25 minutes of evaluation on 2 CPU cores
with the defaults, 11 with ``--target-classes 3 --restarts 0``; 15 more to train without it)::

    KERAS_HOME=... python benchmarks/adversarial_training.py --target-classes 3 --restarts 0
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

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cnn_utils import attacks, autoattack, config, data, defense, models, robustness, training  # noqa: E402, E501

RESULTS = Path(__file__).resolve().parent / "results" / "adversarial_training.json"
EPSILON = 0.3
CACHE_NAME = "benchmark_robust"  # start of the cache (and shipped) file name
COSINE_ALPHA = 0.02  # the learning rate decays to 2 % of its start
PUBLISHED = {
    "Madry et al. 2018 (PGD-40 training, PGD-100 eval, 50 restarts)": {
        "clean": 0.985,
        "pgd": 0.8962,
    },
    "Madry et al. 2018 under AutoAttack (Croce & Hein 2020)": {"autoattack": 0.8850},
    "Wong et al. 2020 (FGSM-RS training, PGD-50-10 eval)": {"clean": 0.985, "pgd": 0.888},
}


class TimeBudget(keras.callbacks.Callback):
    """Stop training once ``seconds`` of wall-clock training time have passed."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.stopped_early = False

    def on_train_begin(self, logs=None):
        """Start the clock."""
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        """Stop when over budget."""
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True
            self.stopped_early = True


def build_model(dense_units: int = 256, name: str | None = "mnist_robust_cnn") -> keras.Model:
    """The benchmark's CNN: conv 32 -> pool -> conv 64 -> pool -> Dense -> logits, no BN.

    With ``dense_units=128, name=None`` it is notebook 06's ``architecture()`` (the name is
    part of the cache key, so it must match the notebook's).
    """
    options = {} if name is None else {"name": name}
    return models.small_cnn(
        (28, 28, 1),
        10,
        filters=(32, 64),
        convs_per_stage=1,
        head="flatten",
        dense_units=dense_units,
        dropout=0.0,
        batch_norm=False,
        **options,
    )


def inner_attack(attack: str, steps: int) -> tuple[int, float]:
    """The training attack's number of steps and step size."""
    if attack == "pgd":
        return steps, 2.5 * EPSILON / steps
    return 1, 1.25 * EPSILON


def recipe(
    *,
    attack: str = "pgd",
    steps: int = 10,
    epochs: int = 7,
    batch_size: int = 128,
    dense_units: int = 256,
    learning_rate: float = 1e-3,
    ramp: float = 0.15,
    clean_weight: float = 0.0,
    seed: int = 0,
    quick: bool = False,
) -> dict:
    """Every setting that changes the trained weights: the cache key (with the architecture).

    The defaults are the shipped model's recipe.
    """
    num_steps, step_size = inner_attack(attack, steps)
    return {
        "recipe": "benchmarks/adversarial_training.py",
        "dataset": "mnist",
        "subset": 6000 if quick else None,
        "dense_units": dense_units,
        "attack": attack,
        "epsilon": EPSILON,
        "num_steps": num_steps,
        "step_size": step_size,
        "label_mode": "true",
        "clean_weight": clean_weight,
        "epochs": 1 if quick else epochs,
        "batch_size": batch_size,
        "optimizer": "adam",
        "learning_rate": learning_rate,
        "schedule": {"name": "cosine", "alpha": COSINE_ALPHA, "over": "all steps"},
        "epsilon_ramp_fraction": ramp,
        "seed": seed,
    }


def fit_recipe(classifier: keras.Model, settings: dict, budget: float | None = None) -> dict:
    """Train ``classifier`` in place by ``settings`` (see :func:`recipe`); what the cache keeps."""
    ds = data.load_dataset("mnist", subset=settings["subset"], seed=settings["seed"])
    model = defense.AdversarialModel(
        classifier,
        settings["epsilon"],
        settings["num_steps"],
        settings["step_size"],
        attack=settings["attack"],
        label_mode=settings["label_mode"],
        clean_weight=settings["clean_weight"],
        seed=settings["seed"],
    )
    epochs, batch_size = settings["epochs"], settings["batch_size"]
    total_steps = -(-len(ds.x_train) // batch_size) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        settings["learning_rate"], total_steps, alpha=settings["schedule"]["alpha"]
    )
    model.compile(keras.optimizers.Adam(schedule))
    ramp = defense.EpsilonRamp(max(1, round(settings["epsilon_ramp_fraction"] * total_steps)))
    callbacks = [ramp, training.StopOnNonFinite()]
    if budget is not None:
        callbacks.append(TimeBudget(budget))
    print(
        f"Training on {len(ds.x_train)} MNIST images, {epochs} epochs, "
        f"attack={settings['attack']} ({settings['num_steps']} steps of "
        f"{settings['step_size']:.4f}), {classifier.count_params():,} parameters"
    )
    start = time.perf_counter()
    history = model.fit(
        ds.x_train, ds.y_train, batch_size=batch_size, epochs=epochs, callbacks=callbacks, verbose=2
    )
    seconds = time.perf_counter() - start
    logits = classifier.predict(ds.x_test, batch_size=500, verbose=0)
    return {
        "history": {k: [round(float(v), 4) for v in vs] for k, vs in history.history.items()},
        "train_seconds": round(seconds, 1),
        "epochs_run": len(history.history["loss"]),
        "stopped_by_budget": budget is not None and callbacks[-1].stopped_early,
        "test_accuracy": float((logits.argmax(-1) == ds.y_test).mean()),
    }


def trained_model(settings: dict | None = None, *, verbose: int = 1) -> tuple[keras.Model, dict]:
    """The benchmark's classifier and its info: cached (or shipped), else trained and cached.

    ``settings`` defaults to the shipped recipe (:func:`recipe` with its defaults), which loads
    from ``cnn_utils/shipped/`` in seconds.
    """
    settings = recipe() if settings is None else settings
    return training.cached_model(
        CACHE_NAME,
        lambda: build_model(settings["dense_units"]),
        lambda classifier: fit_recipe(classifier, settings),
        settings,
        verbose=verbose,
        return_info=True,
    )


def pgd_with_restarts(model, x, y, *, num_steps, step_size, restarts, batch_size, seed):
    """PGD accuracy, worst case over ``1 + restarts`` random starts (survivors re-attacked)."""
    robust = robustness.predict_labels(model, x, batch_size) == y
    per_run = []
    for run in range(1 + restarts):
        index = np.flatnonzero(robust)
        for start in range(0, len(index), batch_size):
            chunk = index[start : start + batch_size]
            x_adv = attacks.pgd(
                model,
                x[chunk],
                y[chunk],
                EPSILON,
                num_steps=num_steps,
                step_size=step_size,
                random_start=True,
                seed=seed + 1000 * run + start,
            )
            robust[chunk] &= robustness.predict_labels(model, x_adv, batch_size) == y[chunk]
        per_run.append(float(robust.mean()))
        print(
            f"  PGD-{num_steps} run {run + 1}/{1 + restarts}: robust accuracy {robust.mean():.4f}"
        )
    return float(robust.mean()), per_run, robust


def main() -> None:
    """Train, evaluate, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack", choices=("pgd", "fgsm_rs"), default="pgd")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps during training")
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dense-units", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--ramp", type=float, default=0.15, help="fraction of steps to ramp eps")
    parser.add_argument("--clean-weight", type=float, default=0.0)
    parser.add_argument(
        "--budget", type=float, default=None, help="training seconds at most (not cached)"
    )
    parser.add_argument("--restarts", type=int, default=2, help="extra PGD-50 random restarts")
    parser.add_argument("--target-classes", type=int, default=9, help="APGD-T target classes")
    parser.add_argument("--apgd-steps", type=int, default=100, help="APGD iterations per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    parser.add_argument("--train-only", action="store_true", help="train (or load), then stop")
    parser.add_argument("--save", type=Path, default=None, help="save the trained classifier")
    args = parser.parse_args()

    config.set_seed(args.seed)
    settings = recipe(
        attack=args.attack,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        dense_units=args.dense_units,
        learning_rate=args.learning_rate,
        ramp=args.ramp,
        clean_weight=args.clean_weight,
        seed=args.seed,
        quick=args.quick,
    )
    start = time.perf_counter()
    if args.budget is None:
        classifier, info = trained_model(settings)
    else:  # a time budget: different weights on every machine, so nothing is cached
        config.set_seed(args.seed)
        classifier = build_model(args.dense_units)
        info = {**settings, **fit_recipe(classifier, settings, args.budget), "from_cache": False}
    load_seconds = time.perf_counter() - start
    print(
        f"{'loaded' if info.get('from_cache') else 'trained'} in {load_seconds:.1f} s "
        f"(test accuracy {info['test_accuracy']:.4f})"
    )
    if args.save is not None:
        classifier.save(args.save)  # reload with keras.models.load_model to attack it further
    if args.train_only:
        return

    ds = data.load_dataset("mnist", test_subset=1000 if args.quick else None, seed=args.seed)
    x, y = ds.x_test, ds.y_test
    start = time.perf_counter()
    clean = robustness.robust_accuracy(classifier, x, y, None, 500, verbose=0)
    fgsm = robustness.robust_accuracy(classifier, x, y, "fgsm", 500, verbose=0, epsilon=EPSILON)
    print(f"clean {clean:.4f}  FGSM {fgsm:.4f}")
    pgd, per_run, pgd_robust = pgd_with_restarts(
        classifier,
        x,
        y,
        num_steps=10 if args.quick else 50,
        step_size=0.01 if not args.quick else 0.05,
        restarts=args.restarts,
        batch_size=500,
        seed=args.seed + 1,
    )
    eval_seconds = time.perf_counter() - start
    report = autoattack.evaluate_robustness(
        classifier,
        x,
        y,
        EPSILON,
        version="lite",
        num_steps=10 if args.quick else args.apgd_steps,
        target_classes=args.target_classes,
        seed=args.seed + 2,
    )
    print(report.table.to_string())
    strong = report.accuracy
    worst = float(np.mean(report.robust & pgd_robust))
    strong_seconds = float(report.table.loc["final", "seconds"])

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "quick": args.quick,
        "dataset": "mnist",
        "train_examples": 6000 if args.quick else 60000,
        "test_examples": int(len(y)),
        "epsilon": EPSILON,
        "model": {"name": classifier.name, "params": int(classifier.count_params())},
        "training": {
            "cache_name": CACHE_NAME,
            "key": info.get("key"),
            "settings": settings,
            "from_cache": bool(info.get("from_cache")),
            "shipped": bool(info.get("shipped")),
            "load_or_train_seconds": round(load_seconds, 1),
            "budget_seconds": args.budget,
            "epochs_run": info.get("epochs_run"),
            "stopped_by_budget": info.get("stopped_by_budget"),
            "seconds": info.get("train_seconds"),
            "history": info.get("history"),
        },
        "evaluation": {
            "clean_accuracy": clean,
            "fgsm_accuracy": fgsm,
            "pgd_accuracy": pgd,
            "pgd_steps": 10 if args.quick else 50,
            "pgd_step_size": 0.05 if args.quick else 0.01,
            "pgd_runs": 1 + args.restarts,
            "pgd_accuracy_per_run": per_run,
            "seconds": round(eval_seconds, 1),
            "strong_protocol": "APGD-CE then targeted APGD-DLR on the survivors "
            "(autoattack.evaluate_robustness, version='lite'; no FAB, no Square)",
            "strong_accuracy": strong,
            "strong_apgd_steps": 10 if args.quick else args.apgd_steps,
            "strong_target_classes": args.target_classes,
            "strong_table": {
                stage: {k: (None if v != v else float(v)) for k, v in row.items()}
                for stage, row in report.table.to_dict("index").items()
            },
            "strong_seconds": round(strong_seconds, 1),
            "worst_case_over_both_protocols": worst,
        },
        "published": PUBLISHED,
        "targets": {"strong_accuracy": 0.89, "train_seconds": 900},
    }
    path = Path("/tmp/adversarial_training_quick.json") if args.quick else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(
        f"clean {clean:.4f}  FGSM {fgsm:.4f}  PGD-50x{1 + args.restarts} {pgd:.4f}  "
        f"APGD-CE + APGD-T {strong:.4f}  worst case {worst:.4f}  (training "
        f"{info.get('train_seconds')} s, evaluation {eval_seconds + strong_seconds:.0f} s) "
        f"-> {path}"
    )


if __name__ == "__main__":
    main()
