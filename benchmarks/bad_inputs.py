"""Audit: what every public function does with the inputs students get wrong.

Each case calls one public function with one bad (or edge-case) argument on tiny models and
records the outcome:

* ``clear``: a ``ValueError`` (or ``TypeError``) raised by cnn_utils itself (the raising frame
  is in the package) whose message says what is wrong ("must ...", "Received: ...");
* ``unclear``: any other exception (from deep inside TensorFlow or NumPy, or a message that
  does not say what was wrong);
* ``silent``: no exception for a bad input (a meaningless result);
* ``handled``: an edge case that must work (``np.int64`` batch size, uint8 (n, 1) labels,
  epsilon 0...) and did; ``broken`` if it raised.

Usage: ``python benchmarks/bad_inputs.py [--json benchmarks/results/bad_inputs.json]``. Run it
on two checkouts (``PYTHONPATH=<checkout>``) to compare before and after.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import inspect
import json
import os
import re
import sys
import traceback
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import cnn_utils  # noqa: E402
from cnn_utils import (  # noqa: E402
    attacks,
    blocks,
    config,
    data,
    defense,
    embed,
    maximize,
    models,
    robustness,
    saliency,
    shapes,
    training,
)

PACKAGE_DIR = os.path.dirname(cnn_utils.__file__)
CASES: list[tuple[str, str, str, object]] = []  # (module, description, expectation, thunk)


def case(module: str, description: str, thunk, expect: str = "error") -> None:
    """Register one call: ``expect`` is "error" (a bad input) or "ok" (an edge case)."""
    CASES.append((module, description, expect, thunk))


# --- tiny models and data -----------------------------------------------------------------


def logits_model(seed=0, classes=3):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(h)
    g = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(g))


def softmax_model():
    base = logits_model()
    return keras.Model(base.inputs, keras.layers.Softmax(name="probs")(base.outputs[0]))


def lambda_softmax_model():
    base = logits_model()
    out = keras.layers.Lambda(lambda t: keras.ops.softmax(t), name="hidden")(base.outputs[0])
    return keras.Model(base.inputs, out)


def two_output_model():
    base = logits_model()
    return keras.Model(base.inputs, [base.outputs[0], base.outputs[0]])


def constant_model():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    zero = keras.layers.Lambda(lambda t: 0.0 * t, name="zero")(h)
    g = keras.layers.GlobalAveragePooling2D(name="gap")(zero)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(g))


M = logits_model()
SOFT, LAMBDA, TWO, CONST = softmax_model(), lambda_softmax_model(), two_output_model(), None
rng = np.random.default_rng(0)
X = rng.random((6, 8, 8, 1), dtype=np.float32)
Y = rng.integers(0, 3, 6)
X_NAN = X.copy()
X_NAN[0, 0, 0, 0] = np.nan
X_255 = (X * 255).astype(np.float32)
BAD_Y = {
    "label 10 for 3 classes": np.array([10, 0, 1, 2, 0, 1]),
    "label -1": np.array([-1, 0, 1, 2, 0, 1]),
    "float labels": Y.astype(np.float32) + 0.5,
    "one-hot labels": np.eye(3, dtype=np.float32)[Y],
    "labels of the wrong length": Y[:4],
    "string labels": np.array(["a"] * 6),
}
BAD_X = {
    "NaN pixel": X_NAN,
    "image in 0..255": X_255,
    "2-D x": X[:, :, :, 0].reshape(6, -1),
    "string x": np.array([["a"]]),
}
BAD_MODELS = {
    "softmax model": SOFT,
    "softmax hidden in a Lambda": LAMBDA,
    "two-output model": TWO,
    "not a model": "model",
}


def bad_numbers(name, good, extra=()):
    values = {"nan": float("nan"), "inf": float("inf"), "string": "0.1", "bool": True}
    values.update(dict(extra))
    return {f"{name}={label}": value for label, value in values.items()}


# --- attacks and robustness -----------------------------------------------------------------


def attack_cases():
    for name in ("fgsm", "pgd", "mim"):
        fn = getattr(attacks, name)
        iterative = name != "fgsm"
        base = {"epsilon": 0.1}
        if iterative:
            base.update(num_steps=2, step_size=0.05)
        for label, y in BAD_Y.items():
            case("attacks", f"{name}: {label}", lambda fn=fn, b=base, y=y: fn(M, X, y, **b))
        for label, x in BAD_X.items():
            case("attacks", f"{name}: {label}", lambda fn=fn, b=base, x=x: fn(M, x, Y, **b))
        for label, model in BAD_MODELS.items():
            case("attacks", f"{name}: {label}", lambda fn=fn, b=base, m=model: fn(m, X, Y, **b))
        for label, value in bad_numbers("epsilon", 0.1, [("negative", -0.1)]).items():
            case(
                "attacks",
                f"{name}: {label}",
                lambda fn=fn, b=base, v=value: fn(M, X, Y, **{**b, "epsilon": v}),
            )
        checks = {
            "norm='L3'": {"norm": "L3"},
            "targeted='yes'": {"targeted": "yes"},
            "soft_label=1": {"soft_label": 1},
            "inverted clip range": {"clip_value_min": 1.0, "clip_value_max": 0.0},
            "targeted and soft_label": {"targeted": True, "soft_label": True},
        }
        if iterative:
            checks.update(
                {
                    "num_steps=0": {"num_steps": 0},
                    "num_steps=2.5": {"num_steps": 2.5},
                    "num_steps='3'": {"num_steps": "3"},
                    "step_size=0": {"step_size": 0.0},
                    "step_size=nan": {"step_size": float("nan")},
                    "random_start='no'": {"random_start": "no"},
                    "seed=-1": {"seed": -1},
                    "seed='a'": {"seed": "a"},
                    "seed=1.5": {"seed": 1.5},
                }
            )
        if name == "mim":
            checks.update({"decay=-1": {"decay": -1.0}, "decay=nan": {"decay": float("nan")}})
        for label, kwargs in checks.items():
            case(
                "attacks",
                f"{name}: {label}",
                lambda fn=fn, b=base, k=kwargs: fn(M, X, Y, **{**b, **k}),
            )
        ok = {
            "uint8 (n, 1) labels": lambda fn=fn, b=base: fn(M, X, Y.astype(np.uint8)[:, None], **b),
            "epsilon=0": lambda fn=fn, b=base: fn(M, X, Y, **{**b, "epsilon": 0.0}),
            "one image": lambda fn=fn, b=base: fn(M, X[:1], Y[:1], **b),
            "np.float64 epsilon": lambda fn=fn, b=base: fn(
                M, X, Y, **{**b, "epsilon": np.float64(0.1)}
            ),
            "y=None with soft_label": lambda fn=fn, b=base: fn(
                M, X, None, **{**b, "soft_label": True}
            ),
        }
        for label, thunk in ok.items():
            case("attacks", f"{name}: {label}", thunk, expect="ok")


def robustness_cases():
    ra = robustness.robust_accuracy
    for label, y in BAD_Y.items():
        case(
            "robustness",
            f"robust_accuracy: {label}",
            lambda y=y: ra(M, X, y, "pgd", epsilon=0.1, num_steps=2, step_size=0.05, verbose=0),
        )
    for label, model in BAD_MODELS.items():
        case(
            "robustness",
            f"robust_accuracy: {label}",
            lambda m=model: ra(m, X, Y, "fgsm", epsilon=0.1, verbose=0),
        )
    for label, value in {"0": 0, "-1": -1, "2.5": 2.5, "'8'": "8"}.items():
        case(
            "robustness",
            f"robust_accuracy: batch_size={label}",
            lambda v=value: ra(M, X, Y, None, v, verbose=0),
        )
    case("robustness", "robust_accuracy: attack='cw'", lambda: ra(M, X, Y, "cw", verbose=0))
    case(
        "robustness", "robust_accuracy: NaN pixel, clean", lambda: ra(M, X_NAN, Y, None, verbose=0)
    )
    case(
        "robustness",
        "robust_accuracy: np.int64 batch size",
        lambda: ra(M, X, Y, None, np.int64(2), verbose=0),
        "ok",
    )
    sweep = robustness.epsilon_sweep
    for label, eps in {
        "negative": [-0.1],
        "nan": [float("nan")],
        "empty": [],
        "string": ["a"],
    }.items():
        case(
            "robustness",
            f"epsilon_sweep: {label} epsilons",
            lambda e=eps: sweep(M, X, Y, e, ("fgsm",), verbose=0),
        )
    case(
        "robustness",
        "epsilon_sweep: attack 'cw'",
        lambda: sweep(M, X, Y, [0.1], ("cw",), verbose=0),
    )
    for label, y in BAD_Y.items():
        case(
            "robustness",
            f"epsilon_sweep: {label}",
            lambda y=y: sweep(M, X, y, [0.1], ("fgsm",), verbose=0),
        )
    ls = robustness.loss_surface
    grid = [-0.1, 0.0, 0.1]
    for label, y in {
        "float label": 1.5,
        "one-hot label": np.eye(3)[1],
        "label 10": 10,
        "label -1": -1,
    }.items():
        case("robustness", f"loss_surface: {label}", lambda y=y: ls(M, X[0], y, grid))
    for label, model in BAD_MODELS.items():
        case("robustness", f"loss_surface: {label}", lambda m=model: ls(m, X[0], 1, grid))
    case("robustness", "loss_surface: NaN pixel", lambda: ls(M, X_NAN[0], 1, grid))
    case("robustness", "loss_surface: empty alphas", lambda: ls(M, X[0], 1, []))
    case("robustness", "loss_surface: NaN alpha", lambda: ls(M, X[0], 1, [0.0, float("nan")]))
    case("robustness", "loss_surface: a batch of 2", lambda: ls(M, X[:2], 1, grid))
    case(
        "robustness",
        "loss_surface: output does not depend on x",
        lambda: ls(constant_model(), X[0], 1, grid),
    )
    tm = robustness.transfer_matrix
    case("robustness", "transfer_matrix: no models", lambda: tm({}, X, Y, "fgsm", epsilon=0.1))
    for label, model in BAD_MODELS.items():
        case(
            "robustness",
            f"transfer_matrix: {label}",
            lambda m=model: tm({"a": M, "b": m}, X, Y, "fgsm", epsilon=0.1),
        )
    for label, y in BAD_Y.items():
        case(
            "robustness",
            f"transfer_matrix: {label}",
            lambda y=y: tm({"a": M}, X, y, "fgsm", epsilon=0.1),
        )
    lp = robustness.lp_distance
    case("robustness", "lp_distance: shape mismatch", lambda: lp(X, X[:2]))
    case("robustness", "lp_distance: p=3", lambda: lp(X, X, 3))
    case("robustness", "lp_distance: p=True", lambda: lp(X, X, True))
    case("robustness", "predict_labels: batch_size=0", lambda: robustness.predict_labels(M, X, 0))
    case(
        "robustness",
        "predict_labels: softmax model",
        lambda: robustness.predict_labels(SOFT, X),
        "ok",
    )


# --- defense ---------------------------------------------------------------------------------


def defense_cases():
    AM = defense.AdversarialModel
    for label, kwargs in {
        "epsilon=-1": {"epsilon": -1.0},
        "epsilon=nan": {"epsilon": float("nan")},
        "epsilon='0.3'": {"epsilon": "0.3"},
        "num_steps=0": {"num_steps": 0},
        "num_steps=2.5": {"num_steps": 2.5},
        "step_size=0": {"step_size": 0.0},
        "attack='cw'": {"attack": "cw"},
        "label_mode='x'": {"label_mode": "x"},
        "clean_weight=-1": {"clean_weight": -1.0},
        "both weights 0": {"clean_weight": 0.0, "adversarial_weight": 0.0},
        "norm='L3'": {"norm": "L3"},
        "inverted clip": {"clip_value_min": 1.0, "clip_value_max": 0.0},
        "seed=-1": {"seed": -1},
        "fgsm with 3 steps": {"attack": "fgsm", "num_steps": 3},
    }.items():
        args = {"epsilon": 0.1, "num_steps": 2, "step_size": 0.05, **kwargs}
        case(
            "defense",
            f"AdversarialModel: {label}",
            lambda a=args: AM(
                logits_model(), a.pop("epsilon"), a.pop("num_steps"), a.pop("step_size"), **a
            ),
        )
    for label, model in BAD_MODELS.items():
        case("defense", f"AdversarialModel: {label}", lambda m=model: AM(m, 0.1, 2, 0.05))

    def fit(x, y):
        trainer = AM(logits_model(), 0.1, 2, 0.05)
        trainer.compile(keras.optimizers.Adam(1e-3))
        return trainer.fit(x, y, epochs=1, batch_size=3, verbose=0)

    for label, x in {"images in 0..255": X_255, "NaN pixels": X_NAN}.items():
        case("defense", f"fit: {label}", lambda x=x: fit(x, Y))
    for label, y in {
        "label 10": BAD_Y["label 10 for 3 classes"],
        "one-hot labels": BAD_Y["one-hot labels"],
    }.items():
        case("defense", f"fit: {label}", lambda y=y: fit(X, y))
    case("defense", "EpsilonRamp(0)", lambda: defense.EpsilonRamp(0))
    case("defense", "EpsilonRamp(2.5)", lambda: defense.EpsilonRamp(2.5))

    def compile_metrics():
        trainer = AM(logits_model(), 0.1, 2, 0.05)
        trainer.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        return trainer.fit(X, Y, epochs=1, batch_size=3, verbose=0)

    case("defense", "compile(metrics=['accuracy'])", compile_metrics, "ok")


# --- saliency, maximize, embed ------------------------------------------------------------------


def saliency_cases():
    fns = {
        "gradient_saliency": lambda m, x, c, **k: saliency.gradient_saliency(m, x, c, **k),
        "smoothgrad": lambda m, x, c, **k: saliency.smoothgrad(m, x, c, num_samples=2, **k),
        "occlusion": lambda m, x, c, **k: saliency.occlusion(m, x, c, patch_size=2, stride=2, **k),
        "cam": lambda m, x, c, **k: saliency.cam(m, x, c, **k),
        "grad_cam": lambda m, x, c, **k: saliency.grad_cam(m, x, c, **k),
    }
    for name, fn in fns.items():
        for label, c in {
            "class_index=2.5": 2.5,
            "class_index=-1": -1,
            "class_index=10": 10,
            "class_index=True": True,
            "class_index list of wrong length": [0, 1],
        }.items():
            case("saliency", f"{name}: {label}", lambda fn=fn, c=c: fn(M, X, c))
        for label, x in {"NaN pixel": X_NAN, "3-D x": X[0], "string x": np.array([["a"]])}.items():
            case("saliency", f"{name}: {label}", lambda fn=fn, x=x: fn(M, x, 0))
        for label, model in BAD_MODELS.items():
            case("saliency", f"{name}: {label}", lambda fn=fn, m=model: fn(m, X, 0))
        case("saliency", f"{name}: normalize='yes'", lambda fn=fn: fn(M, X, 0, normalize="yes"))
        case("saliency", f"{name}: np.int64 class", lambda fn=fn: fn(M, X, np.int64(1)), "ok")
    case(
        "saliency",
        "grad_cam: layer_name typo",
        lambda: saliency.grad_cam(M, X, 0, layer_name="conv9"),
    )
    case(
        "saliency",
        "grad_cam: a dense layer",
        lambda: saliency.grad_cam(M, X, 0, layer_name="logits"),
    )
    for label, value in {"nan": float("nan"), "-1": -1.0, "inf": float("inf")}.items():
        case(
            "saliency",
            f"smoothgrad: noise_level={label}",
            lambda v=value: saliency.smoothgrad(M, X, 0, num_samples=2, noise_level=v),
        )
    case(
        "saliency", "smoothgrad: num_samples=0", lambda: saliency.smoothgrad(M, X, 0, num_samples=0)
    )
    for label, kwargs in {
        "patch_size=0": {"patch_size": 0},
        "stride=0": {"stride": 0},
        "baseline=nan": {"baseline": float("nan")},
        "batch_size=0": {"batch_size": 0},
        "patch larger than image": {"patch_size": 20},
    }.items():
        case(
            "saliency",
            f"occlusion: {label}",
            lambda k=kwargs: saliency.occlusion(M, X, 0, **{"patch_size": 2, "stride": 2, **k}),
        )
    case(
        "saliency",
        "normalize_maps: mode='x'",
        lambda: saliency.normalize_maps(np.ones((2, 3, 3)), mode="x"),
    )


def maximize_cases():
    fast = {"steps": 2}
    ma, vc = maximize.maximize_activation, maximize.visualize_class
    case("maximize", "maximize_activation: layer typo", lambda: ma(M, "conv9", 0, **fast))
    for label, f in {
        "filter 99": 99,
        "filter -1": -1,
        "filter 2.5": 2.5,
        "filter 'a'": "a",
    }.items():
        case("maximize", f"maximize_activation: {label}", lambda f=f: ma(M, "conv1", f, **fast))
    for label, kwargs in {
        "steps=0": {"steps": 0},
        "steps=2.5": {"steps": 2.5},
        "learning_rate=inf": {"learning_rate": float("inf")},
        "learning_rate=-1": {"learning_rate": -1.0},
        "learning_rate=nan": {"learning_rate": float("nan")},
    }.items():
        case(
            "maximize",
            f"maximize_activation: {label}",
            lambda k=kwargs: ma(M, "conv1", 0, **{**fast, **k}),
        )
    for label, c in {"class 99": 99, "class 2.5": 2.5, "class -1": -1}.items():
        case("maximize", f"visualize_class: {label}", lambda c=c: vc(M, c, **fast))
    for label, model in BAD_MODELS.items():
        case("maximize", f"visualize_class: {label}", lambda m=model: vc(m, 0, **fast))
    inv = maximize.invert_features
    case("maximize", "invert_features: layer typo", lambda: inv(M, "conv9", X[:1], **fast))
    case("maximize", "invert_features: NaN image", lambda: inv(M, "conv1", X_NAN[:1], **fast))
    case("maximize", "invert_features: image in 0..255", lambda: inv(M, "conv1", X_255[:1], **fast))
    dd = maximize.deep_dream
    case("maximize", "deep_dream: image in 0..255", lambda: dd(M, "conv1", X_255[:1], **fast))
    case("maximize", "deep_dream: NaN image", lambda: dd(M, "conv1", X_NAN[:1], **fast))
    case("maximize", "deep_dream: layer typo", lambda: dd(M, "conv9", X[:1], **fast))
    case("maximize", "deep_dream: steps=0", lambda: dd(M, "conv1", X[:1], steps=0))
    st = maximize.style_transfer
    case(
        "maximize",
        "style_transfer: content layer typo",
        lambda: st(M, X[:1], X[1:2], content_layer="conv9", style_layers=["conv1"], **fast),
    )
    case(
        "maximize",
        "style_transfer: no style layers",
        lambda: st(M, X[:1], X[1:2], content_layer="conv2", style_layers=[], **fast),
    )
    case("maximize", "gaussian_blur: sigma=-1", lambda: maximize.gaussian_blur(X, -1.0))
    case("maximize", "Jitter(pixels=-1)", lambda: maximize.Jitter(-1))
    case("maximize", "TotalVariation(weight=nan)", lambda: maximize.TotalVariation(float("nan")))
    case("maximize", "maximize_activation: one step", lambda: ma(M, "conv1", 0, steps=1), "ok")


def embed_cases():
    features = (
        getattr(embed, "features", None) or __import__("cnn_utils.probe", fromlist=["x"]).features
    )
    case("embed", "features: layer typo", lambda: features(M, X, "conv9"))
    case("embed", "features: batch_size=0", lambda: features(M, X, "conv1", batch_size=0))
    case(
        "embed",
        "features: np.int64 batch size",
        lambda: features(M, X, "conv1", batch_size=np.int64(2)),
        "ok",
    )
    case("embed", "features: NaN image", lambda: features(M, X_NAN, "conv1"))
    nn = embed.nearest_neighbors
    q = rng.random((4, 5))
    case("embed", "nearest_neighbors: k=0", lambda: nn(q, q, 0))
    case("embed", "nearest_neighbors: k larger than the database", lambda: nn(q, q, 9))
    case("embed", "nearest_neighbors: different dimensions", lambda: nn(q, rng.random((4, 6)), 2))
    case("embed", "nearest_neighbors: NaN", lambda: nn(np.full((2, 5), np.nan), q, 2))
    case("embed", "tsne: perplexity=-1", lambda: embed.tsne(rng.random((20, 5)), perplexity=-1.0))
    case(
        "embed",
        "tsne: perplexity=nan",
        lambda: embed.tsne(rng.random((20, 5)), perplexity=float("nan")),
    )
    rf = getattr(embed, "measured_receptive_field", None) or embed.receptive_field
    case("embed", "receptive field: layer typo", lambda: rf(M, "conv9"))
    case(
        "embed",
        "receptive field: output does not depend on x",
        lambda: rf(constant_model(), "zero"),
    )
    tap = embed.top_activating_patches
    case("embed", "top_activating_patches: filter 99", lambda: tap(M, "conv1", 99, X))
    case("embed", "top_activating_patches: k=0", lambda: tap(M, "conv1", 0, X, k=0))
    case("embed", "top_activating_patches: layer typo", lambda: tap(M, "conv9", 0, X))


# --- the newer functions: empty lists, scalars, NaN cells, empty batches, long names ----------


def newer_function_cases():
    """Issue 27's list: the raw errors left in the newer functions."""
    gmc = robustness.gradient_masking_checks
    case("robustness", "gradient_masking_checks: empty batch", lambda: gmc(M, X[:0], Y[:0], 0.1))
    case(
        "robustness", "gradient_masking_checks: epsilons=[]", lambda: gmc(M, X, Y, 0.1, epsilons=[])
    )
    case(
        "robustness",
        "gradient_masking_checks: epsilons=0.1",
        lambda: gmc(M, X, Y, 0.1, epsilons=0.1),
    )
    case("robustness", "gradient_masking_checks: epsilon=[0.1]", lambda: gmc(M, X, Y, [0.1]))
    ts = robustness.transfer_summary
    import pandas as pd

    good = pd.DataFrame([[0.9, 0.2], [0.3, 0.8]], index=["a", "b"], columns=["a", "b"])
    nan_cell = good.copy()
    nan_cell.iloc[0, 1] = np.nan
    case("robustness", "transfer_summary: {}", lambda: ts({}))
    case("robustness", "transfer_summary: a list", lambda: ts([good]))
    case("robustness", "transfer_summary: a scalar table", lambda: ts({"fgsm": 0.5}))
    case("robustness", "transfer_summary: NaN cell", lambda: ts({"fgsm": nan_cell}))
    case("robustness", "transfer_summary: one model", lambda: ts({"fgsm": good.iloc[:1, :1]}))
    sweep = robustness.epsilon_sweep
    case(
        "robustness",
        "epsilon_sweep: epsilons=0.1",
        lambda: sweep(M, X, Y, 0.1, ("fgsm",), verbose=0),
    )
    case("robustness", "epsilon_sweep: attacks=()", lambda: sweep(M, X, Y, [0.1], (), verbose=0))
    case(
        "robustness",
        "epsilon_sweep: attacks='fgsm'",
        lambda: sweep(M, X, Y, [0.1], "fgsm", verbose=0),
    )
    case(
        "robustness",
        "epsilon_sweep: empty batch",
        lambda: sweep(M, X[:0], Y[:0], [0.1], ("fgsm",), verbose=0),
    )
    lp = robustness.lp_distance
    case("robustness", "lp_distance: scalars", lambda: lp(0.5, 0.2))
    case("robustness", "lp_distance: empty batch", lambda: lp(X[:0], X[:0]), "ok")
    case("robustness", "lp_distance: NaN", lambda: lp(X_NAN, X))
    case("robustness", "lp_distance: p='inf'", lambda: lp(X, X, "inf"), "ok")
    car = maximize.caricature
    case(
        "maximize",
        "caricature: batch of 2",
        lambda: car(M, "conv2", X[:2], steps=1, verbose=0),
        "ok",
    )
    case(
        "maximize",
        "caricature: one image without a batch axis",
        lambda: car(M, "conv2", X[0], steps=1, verbose=0),
    )
    case("maximize", "caricature: empty batch", lambda: car(M, "conv2", X[:0], steps=1, verbose=0))
    case(
        "maximize", "caricature: NaN image", lambda: car(M, "conv2", X_NAN[:1], steps=1, verbose=0)
    )
    case("maximize", "caricature: layer typo", lambda: car(M, "conv9", X[:1], steps=1, verbose=0))
    case(
        "maximize",
        "caricature: regularizers=None",
        lambda: car(M, "conv2", X[:1], steps=1, regularizers=None, verbose=0),
    )
    cm = training.cached_model

    def build():
        return logits_model()

    def fit(model):
        return {}

    case(
        "training",
        "cached_model: a 300-character name",
        lambda: cm("n" * 300, build, fit, {}, verbose=0),
    )
    case("training", "cached_model: name ''", lambda: cm("", build, fit, {}, verbose=0))
    case("training", "cached_model: settings=[]", lambda: cm("x", build, fit, [], verbose=0))
    case(
        "training",
        "cached_model: NaN setting",
        lambda: cm("x", build, fit, {"lr": float("nan")}, verbose=0),
    )
    from cnn_utils import probe

    case("probe", "features: empty batch", lambda: probe.features(M, X[:0], "conv1"), "ok")
    case("probe", "features: a scalar", lambda: probe.features(M, 0.5, "conv1"))
    case("probe", "features: a list of images", lambda: probe.features(M, list(X), "conv1"), "ok")
    nn = embed.nearest_neighbors
    q = rng.random((4, 5))
    case("embed", "nearest_neighbors: empty database", lambda: nn(q, q[:0], 1))
    case("embed", "nearest_neighbors: empty queries", lambda: nn(q[:0], q, 1), "ok")
    case("embed", "nearest_neighbors: scalar queries", lambda: nn(0.5, q, 1))
    case("embed", "nearest_neighbors: 1-D vectors", lambda: nn(q[0], q, 1))
    case(
        "embed", "nearest_neighbors: NaN in the database", lambda: nn(q, np.full((4, 5), np.nan), 1)
    )
    case("embed", "nearest_neighbors: k=2.5", lambda: nn(q, q, 2.5))
    occ = saliency.occlusion
    case("saliency", "occlusion: empty batch", lambda: occ(M, X[:0], np.zeros(0, int)))
    case(
        "saliency",
        "occlusion: patch larger than the image",
        lambda: occ(M, X[:1], 0, patch_size=20),
    )
    case("saliency", "occlusion: baseline=nan", lambda: occ(M, X[:1], 0, baseline=float("nan")))
    case("saliency", "occlusion: class_index=[]", lambda: occ(M, X[:1], []))
    case("saliency", "occlusion: NaN image", lambda: occ(M, X_NAN[:1], 0))
    ns = attacks.random_sign_noise
    case("attacks", "random_sign_noise: norm='l1'", lambda: ns(None, X, epsilon=0.1, norm="l1"))


# --- shapes, blocks, data, models, config -----------------------------------------------------


def small_module_cases():
    cos = shapes.conv_output_size
    for label, args in {
        "size 0": (0, 3),
        "kernel 0": (28, 0),
        "strides 0": (28, 3, 0),
        "padding 'full'": (28, 3, 1, "full"),
        "padding -1": (28, 3, 1, -1),
        "size 2.5": (2.5, 3),
        "size True": (True, 3),
        "kernel larger than input": (2, 5),
    }.items():
        case("shapes", f"conv_output_size: {label}", lambda a=args: cos(*a))
    case("shapes", "conv_output_size: np.int64 size", lambda: cos(np.int64(28), 3), "ok")
    case("shapes", "pool_output_size: pool 0", lambda: shapes.pool_output_size(28, 0))
    case("shapes", "conv2d_params: kernel 0", lambda: shapes.conv2d_params(0, 3, 8))
    case("shapes", "dense_params: units 0", lambda: shapes.dense_params(10, 0))
    case("shapes", "receptive_field: no kernels", lambda: shapes.receptive_field([]))
    case(
        "shapes",
        "receptive_field: strides of another length",
        lambda: shapes.receptive_field([3], [1, 1]),
    )
    case("shapes", "shape_trace: not a model", lambda: shapes.shape_trace("model"))
    for label, thunk in {
        "Residual(0)": lambda: blocks.Residual(0),
        "Residual(-1)": lambda: blocks.Residual(-1),
        "Residual(2.5)": lambda: blocks.Residual(2.5),
        "Residual(use_skip='no')": lambda: blocks.Residual(8, use_skip="no"),
        "Residual(use_1x1conv='yes')": lambda: blocks.Residual(8, use_1x1conv="yes"),
        "Residual(strides=0)": lambda: blocks.Residual(8, strides=0),
        "ResnetBlock(8, 0)": lambda: blocks.ResnetBlock(8, 0),
        "ResnetBlock(first_block='no')": lambda: blocks.ResnetBlock(8, 1, first_block="no"),
        "Inception(0, ...)": lambda: blocks.Inception(0, (1, 2), (1, 2), 1),
        "Inception(c2=(1,))": lambda: blocks.Inception(1, (1,), (1, 2), 1),
        "Inception(c2=5)": lambda: blocks.Inception(1, 5, (1, 2), 1),
    }.items():
        case("blocks", label, thunk)
    ld = data.load_dataset
    for label, kwargs in {
        "name 'cifar100'": {"name": "cifar100"},
        "subset=-1": {"subset": -1},
        "subset=2.5": {"subset": 2.5},
        "validation_split=1.5": {"validation_split": 1.5},
        "validation_split=-0.1": {"validation_split": -0.1},
        "seed=-1": {"seed": -1},
        "test_subset=0": {"test_subset": 0},
    }.items():
        case(
            "data",
            f"load_dataset: {label}",
            lambda k=kwargs: ld(**{"name": "mnist", "subset": 100, **k}),
        )
    case(
        "data",
        "load_dataset: np.int64 subset",
        lambda: ld("mnist", subset=np.int64(100), test_subset=50),
        "ok",
    )
    for label, thunk in {
        "small_cnn(num_classes=0)": lambda: models.small_cnn(num_classes=0),
        "small_cnn(head='x')": lambda: models.small_cnn(head="x"),
        "small_cnn(filters=())": lambda: models.small_cnn(filters=()),
        "small_cnn(input_shape=(28, 28))": lambda: models.small_cnn((28, 28)),
        "resnet18(num_classes=0)": lambda: models.resnet18(num_classes=0),
        "googlenet(width=0)": lambda: models.googlenet(width=0),
        "trained('nope')": lambda: training.trained("nope"),
        "trained(epochs=0)": lambda: training.trained("small_cnn", epochs=0),
        "trained(dataset='x')": lambda: training.trained("small_cnn", dataset="x"),
    }.items():
        case("models", label, thunk)
    case("config", "set_seed(-1)", lambda: config.set_seed(-1))
    case("config", "set_seed('a')", lambda: config.set_seed("a"))


# --- running ----------------------------------------------------------------------------------


def _foreign_name(module: str, description: str, error: Exception) -> str | None:
    """The argument a "<name> must ..." message names when the called function has no such one.

    A message must name the caller's argument (``layer_names``), not an internal one
    (``layer_name`` of a helper). The function is the description's first word, looked up in
    ``cnn_utils.<module>``; a class, or a name the message does not start with, is not judged.
    """
    named = re.match(r"([a-z_][a-z0-9_]*)(\[[^\]]*\])? must\b", str(error))
    function = getattr(
        importlib.import_module(f"cnn_utils.{module}"), description.split(":")[0], None
    )
    if named is None or not inspect.isfunction(function):
        return None
    parameters = inspect.signature(function).parameters
    if named.group(1) in parameters:
        return None
    return named.group(1)


def classify(expect: str, thunk, module: str = "", description: str = "") -> tuple[str, str]:
    try:
        result = thunk()
    except Exception as error:  # noqa: BLE001 - classifying every failure is the point
        frames = traceback.extract_tb(error.__traceback__)
        ours = bool(frames) and frames[-1].filename.startswith(PACKAGE_DIR)
        message = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        if expect == "ok":
            return "broken", message
        says = "must" in str(error) or "Received" in str(error)
        foreign = _foreign_name(module, description, error) if module else None
        if isinstance(error, (ValueError, TypeError)) and ours and says and foreign is None:
            return "clear", message
        if foreign is not None:
            return "unclear", f"names {foreign!r}, not an argument of the function: {message}"
        return "unclear", message
    if expect == "ok":
        return "handled", ""
    return "silent", f"returned {type(result).__name__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the per-case results here")
    parser.add_argument("--only", help="run only the case builder of this name (e.g. newer)")
    args = parser.parse_args()
    for build in (
        attack_cases,
        robustness_cases,
        defense_cases,
        saliency_cases,
        maximize_cases,
        embed_cases,
        newer_function_cases,
        small_module_cases,
    ):
        if not args.only or args.only in build.__name__:
            build()
    table = collections.defaultdict(collections.Counter)
    rows = []
    for module, description, expect, thunk in CASES:
        outcome, detail = classify(expect, thunk, module, description)
        table[module][outcome] += 1
        rows.append({"module": module, "case": description, "outcome": outcome, "detail": detail})
    kinds = ("clear", "unclear", "silent", "handled", "broken")
    print(f"| module | {' | '.join(kinds)} | total |")
    print("|---" * (len(kinds) + 2) + "|")
    total = collections.Counter()
    for module, counts in table.items():
        total.update(counts)
        print(
            f"| {module} | "
            + " | ".join(str(counts[k]) for k in kinds)
            + f" | {sum(counts.values())} |"
        )
    print("| all | " + " | ".join(str(total[k]) for k in kinds) + f" | {sum(total.values())} |")
    for row in rows:
        if row["outcome"] in ("unclear", "silent", "broken"):
            print(f"  {row['outcome']:8} {row['module']:10} {row['case']}: {row['detail']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"table": {m: dict(c) for m, c in table.items()}, "cases": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
