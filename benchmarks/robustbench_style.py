"""The AutoAttack table that RobustBench prints: clean, robust and per-stage accuracy.

On the MNIST test images, at epsilon = 0.3 (L-infinity), this runs
``cnn_utils.autoattack.evaluate_robustness`` (``--version``, standard by default: APGD-CE,
APGD-T, FAB-T and Square on the survivors of each other) and prints what RobustBench's
``benchmark`` prints: the clean accuracy, the robust accuracy, and the accuracy after each stage
with its time. The model (``--model``), loaded from the shipped weights:

* ``nb06``: notebook 06's default-mode model (PGD-7 training, Dense 128);
* ``benchmark``: the model of ``benchmarks/adversarial_training.py`` (PGD-10 training,
  adversarial loss only, 7 epochs, Dense 256).

One run (``--images N``: the first N test images) writes ``benchmarks/results/
robustbench_style.json`` (nb06) or ``robustbench_style_benchmark.json``. The full test set takes
about 100 CPU-minutes with the standard budgets, so it runs in chunks that resume:
``--chunk K`` evaluates images ``[K * size, (K + 1) * size)`` (``--chunk-size``, 1,000 by
default) with seed ``K * size`` (chunk 0 is the 1,000-image run), ``--next N`` the next N chunks
not yet done; each chunk writes one JSON (per-stage counts, per-image robust mask, zero-gradient
count, seconds) under ``benchmarks/results/robustbench_chunks/<model>-<budgets>/`` and a chunk
already there is skipped. After every chunk (or with ``--aggregate``) the chunks done are summed
into the table, written with the number of images it covers (``"complete": false`` until all
10,000 are done) to ``robustbench_style_<model>_chunks.json``.

Run (about 10 minutes on 2 CPU cores per 1,000 images with the standard budgets)::

    KERAS_HOME=... python benchmarks/robustbench_style.py --images 1000
    KERAS_HOME=... python benchmarks/robustbench_style.py --model benchmark --next 1  # resumes
    KERAS_HOME=... python benchmarks/robustbench_style.py --model benchmark --aggregate
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
os.environ.setdefault("CNN_UTILS_FAST", "0")  # the default-mode model, not FAST mode's

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adversarial_training  # noqa: E402

from cnn_utils import autoattack, data, defense  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS = RESULTS_DIR / "robustbench_style.json"
CHUNKS = RESULTS_DIR / "robustbench_chunks"
EPSILON = 0.3
TEST_IMAGES = 10_000
MODELS = {
    "nb06": "notebook 06's default-mode PGD-trained MNIST model (nb06_robust, shipped)",
    "benchmark": "benchmarks/adversarial_training.py's PGD-10-trained MNIST model "
    "(benchmark_robust, shipped)",
}


def architecture():
    """Notebook 06's small CNN (its ``architecture()`` cell)."""
    return adversarial_training.build_model(128, name=None)


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
        return_info=True,
    )


def load_model(name: str):
    """``(model, info)`` of ``--model``: from the cache or the shipped weights."""
    if name == "nb06":
        return pgd_trained_mnist()
    return adversarial_training.trained_model(verbose=0)


def protocol(model, x, y, args, seed: int = 0, verbose: int = 1):
    """``evaluate_robustness`` with the budgets of ``args``: the report and its seconds."""
    start = time.perf_counter()
    report = autoattack.evaluate_robustness(
        model,
        x,
        y,
        EPSILON,
        version=getattr(args, "version", "standard"),
        num_steps=args.steps,
        target_classes=args.targets,
        square_queries=args.queries,
        batch_size=args.batch_size,
        seed=seed,
        verbose=verbose,
    )
    return report, time.perf_counter() - start


def budgets(args) -> dict:
    """The settings that change the result (and name the chunk folder)."""
    return {"steps": args.steps, "targets": args.targets, "queries": args.queries}


def chunk_folder(model_name: str, args, root: Path = CHUNKS) -> Path:
    """Where the chunks of one model, version and budget go."""
    b = budgets(args)
    tag = f"{args.version}-steps{b['steps']}-targets{b['targets']}-queries{b['queries']}"
    return root / f"{model_name}-{tag}"


def chunk_path(folder: Path, start: int, stop: int) -> Path:
    """The JSON of images ``[start, stop)``."""
    return folder / f"images_{start:05d}-{stop:05d}.json"


def _rows(table) -> list[dict]:
    return json.loads(table.reset_index().to_json(orient="records"))


def run_chunk(model, x, y, start: int, stop: int, folder: Path, args, key=None) -> dict | None:
    """Evaluate images ``[start, stop)`` of ``x, y`` (seed ``start``); ``None`` if done before.

    Writes the chunk's JSON (per-stage rows, per-image robust mask, zero-gradient count,
    seconds) to ``folder`` atomically, so an interrupted chunk leaves nothing behind.
    """
    path = chunk_path(folder, start, stop)
    if path.exists():
        print(f"chunk [{start}, {stop}) done before: {path.name}")
        return None
    report, seconds = protocol(model, x[start:stop], y[start:stop], args, seed=start)
    table = report.table.drop(index="final")
    chunk = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, TensorFlow {tf.__version__}",
        "model_key": key,
        "start": start,
        "stop": stop,
        "seed": start,
        "epsilon": EPSILON,
        "version": args.version,
        "budgets": budgets(args),
        "batch_size": args.batch_size,
        "clean_correct": stop - start - int(table.loc["clean", "broken"]),
        "robust_count": int(report.robust.sum()),
        "robust_mask": "".join("1" if r else "0" for r in report.robust),
        "zero_gradient_examples": int(report.zero_gradient.sum()),
        "seconds": round(seconds, 2),
        "stages": _rows(table),
    }
    folder.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(chunk, indent=1) + "\n")
    temporary.replace(path)
    print(
        f"chunk [{start}, {stop}): robust {chunk['robust_count']}/{stop - start}, "
        f"{seconds:.0f} s -> {path}"
    )
    return chunk


def aggregate(folder: Path, total: int = TEST_IMAGES) -> dict:
    """Sum the chunks of ``folder`` into RobustBench's table (clean, robust, per stage, time).

    Raises:
        ValueError: No chunks, chunks that overlap, or chunks of different models or budgets.
    """
    chunks = [json.loads(p.read_text()) for p in sorted(folder.glob("images_*.json"))]
    if not chunks:
        raise ValueError(f"folder holds no chunks. Received: {folder}")
    chunks.sort(key=lambda c: c["start"])
    for before, after in zip(chunks, chunks[1:], strict=False):
        if after["start"] < before["stop"]:
            raise ValueError(
                f"chunks overlap: [{before['start']}, {before['stop']}) and "
                f"[{after['start']}, {after['stop']}). Received: {folder}"
            )
    for field in ("model_key", "version", "budgets", "epsilon"):
        if len({json.dumps(c[field]) for c in chunks}) > 1:
            raise ValueError(f"chunks of different {field} in one folder. Received: {folder}")
    images = sum(c["stop"] - c["start"] for c in chunks)
    clean = sum(c["clean_correct"] for c in chunks)
    robust = sum(c["robust_count"] for c in chunks)
    if robust != sum(c["robust_mask"].count("1") for c in chunks):
        raise ValueError(f"a chunk's robust count differs from its mask. Received: {folder}")
    stages = [row["stage"] for row in chunks[0]["stages"]]
    table, correct = [], images
    for stage in stages:
        rows = [next(r for r in c["stages"] if r["stage"] == stage) for c in chunks]
        broken = sum(int(r["broken"]) for r in rows)
        correct -= broken
        table.append(
            {
                "stage": stage,
                "accuracy": correct / images,
                "broken": broken,
                "seconds": round(sum(float(r["seconds"]) for r in rows), 2),
                "zero_gradients": sum(int(r.get("zero_gradients") or 0) for r in rows),
            }
        )
    if correct != robust:
        raise ValueError(f"the stages' counts do not add up to the robust count in {folder}")
    done = [[c["start"], c["stop"]] for c in chunks]
    return {
        "images": images,
        "complete": images == total and done[0][0] == 0,
        "chunks_done": done,
        "total_images": total,
        "model_key": chunks[0]["model_key"],
        "epsilon": chunks[0]["epsilon"],
        "version": chunks[0]["version"],
        "budgets": chunks[0]["budgets"],
        "clean": clean / images,
        "robust": robust / images,
        "robust_count": robust,
        "zero_gradient_examples": sum(c["zero_gradient_examples"] for c in chunks),
        "seconds": round(sum(c["seconds"] for c in chunks), 1),
        "table": table,
    }


def print_table(result: dict) -> None:
    """What RobustBench prints."""
    n = result["images"]
    print(f"\nclean accuracy: {100 * result['clean']:.2f}%")
    print(f"robust accuracy: {100 * result['robust']:.2f}% (eps = {EPSILON}, Linf, {n} images)")
    for row in result["table"]:
        print(
            f"  {row['stage']:<20} {row['accuracy']:.4f}  broken {row['broken']:>5}  "
            f"{row['seconds']:8.1f} s"
        )
    print(f"examples with a zero gradient: {result['zero_gradient_examples']}")
    print(f"total: {result['seconds']:.0f} s")


def write_aggregate(model_name: str, args) -> dict:
    """Aggregate the chunks done into ``robustbench_style_<model>_chunks.json``."""
    result = {"model": MODELS[model_name], **aggregate(chunk_folder(model_name, args))}
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    print_table(result)
    if not result["complete"]:
        print(f"PARTIAL: {result['images']} of {result['total_images']} test images")
    out = RESULTS_DIR / f"robustbench_style_{model_name}_chunks.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return result


def todo(folder: Path, size: int, total: int = TEST_IMAGES) -> list[int]:
    """The chunk numbers not done yet, in order."""
    count = -(-total // size)
    return [
        k
        for k in range(count)
        if not chunk_path(folder, k * size, min(total, (k + 1) * size)).exists()
    ]


def run_chunks(args) -> None:
    """``--chunk`` / ``--next``: evaluate chunks not done yet, then aggregate."""
    folder = chunk_folder(args.model, args)
    size = args.chunk_size
    chunks = [args.chunk] if args.chunk is not None else todo(folder, size)[: args.next]
    if chunks:
        model, info = load_model(args.model)
        ds = data.load_dataset("mnist")
        for k in chunks:
            start, stop = k * size, min(TEST_IMAGES, (k + 1) * size)
            run_chunk(model, ds.x_test, ds.y_test, start, stop, folder, args, info.get("key"))
    else:
        print("every chunk is done")
    write_aggregate(args.model, args)


def run_once(args) -> None:
    """``--images N``: the first N test images in one run (seed 0)."""
    ds = data.load_dataset("mnist")
    x, y = ds.x_test[: args.images], ds.y_test[: args.images]
    model, info = load_model(args.model)
    report, seconds = protocol(model, x, y, args)
    table = report.table
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, TensorFlow {tf.__version__}",
        "model": MODELS[args.model],
        "model_key": info.get("key"),
        "images": len(y),
        "epsilon": EPSILON,
        "version": args.version,
        "budgets": budgets(args),
        "batch_size": args.batch_size,
        "clean": float(table.loc["clean", "accuracy"]),
        "robust": report.accuracy,
        "zero_gradient_examples": int(report.zero_gradient.sum()),
        "seconds": seconds,
        "table": _rows(table),
    }
    print(f"\nclean accuracy: {100 * result['clean']:.2f}%")
    print(f"robust accuracy: {100 * report.accuracy:.2f}% (eps = {EPSILON}, Linf, {len(y)} images)")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"examples with a zero gradient: {result['zero_gradient_examples']}")
    print(f"total: {seconds:.0f} s")
    out = args.out or (
        RESULTS if args.model == "nb06" else RESULTS_DIR / f"robustbench_style_{args.model}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


def main() -> None:
    """Parse the command line; one run, chunks, or the aggregate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nb06", choices=tuple(MODELS))
    parser.add_argument("--images", type=int, default=1000, help="first N MNIST test images")
    parser.add_argument("--version", default="standard", choices=autoattack.VERSIONS)
    parser.add_argument("--steps", type=int, default=100, help="APGD and FAB iterations")
    parser.add_argument("--targets", type=int, default=9, help="target classes")
    parser.add_argument("--queries", type=int, default=5000, help="Square's query budget")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None, help="result of a one-run evaluation")
    chunked = parser.add_mutually_exclusive_group()
    chunked.add_argument("--chunk", type=int, default=None, help="evaluate chunk K only")
    chunked.add_argument("--next", type=int, default=None, help="evaluate the next N chunks")
    chunked.add_argument("--aggregate", action="store_true", help="sum the chunks done")
    parser.add_argument("--chunk-size", type=int, default=1000)
    args = parser.parse_args()
    if args.aggregate:
        write_aggregate(args.model, args)
    elif args.chunk is not None or args.next is not None:
        run_chunks(args)
    else:
        run_once(args)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
