"""Evaluation: robust accuracy, epsilon sweeps, transfer matrices, loss surfaces, masking checks.

The attacks themselves are in :mod:`cnn_utils.attacks` (the lecture's) and
:mod:`cnn_utils.autoattack` (APGD, FAB, Square and the AutoAttack protocol); this module
measures what they do to a model: robust accuracy with every iterate scored (the PGD with early
exit behind :func:`robust_accuracy` lives here), sweeps over epsilon, transfer between models,
loss surfaces, Lp distances, and the checks for gradient masking
(:func:`gradient_masking_checks`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from cnn_utils import _checks
from cnn_utils._attack_settings import AttackSettings
from cnn_utils.attacks import (
    ATTACKS,
    loss_gradient_fn,
    model_cache,
    pgd,
    project,
    random_in_ball,
    steepest_step,
)
from cnn_utils.autoattack import (
    Outcome,
    Result,
    apgd,
    apgd_settings,
    bad_gradient,
    checked_batch,
    compiled,
    evaluate_robustness,
    loop,
    loss_gradient,
    misclassified,
    new_outcome,
    record,
    run_apgd,
    run_square,
    shrink,
    square,
    square_images,
    square_settings,
    stateless_seed,
)

__all__ = [
    "epsilon_sweep",
    "gradient_masking_checks",
    "loss_surface",
    "lp_distance",
    "predict_labels",
    "predict_with_confidence",
    "resolve_attack",
    "robust_accuracy",
    "transfer_matrix",
    "transfer_summary",
]

# ---------------------------------------------------------------------------------------------
# Distances and predictions
# ---------------------------------------------------------------------------------------------


def lp_distance(x, x_adv, p=2) -> np.ndarray:
    """Distance between each pair of examples in the L1, L2 or L-infinity norm.

    ``||x - x_adv||_p`` over all pixels and channels of each example (axis 0 is the batch).

    Args:
        x: Inputs, shape (batch, ...), numpy or tensor.
        x_adv: Inputs of the same shape.
        p: 1, 2, or ``np.inf`` (also ``"inf"`` or ``"linf"``).

    Returns:
        A float64 numpy array of shape (batch,).

    Raises:
        ValueError: Unknown ``p``, different shapes, scalars or non-finite values.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_adv, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x and x_adv must have the same shape. Received: {a.shape} and {b.shape}")
    if a.ndim < 1:
        raise ValueError("x must be a batch, shape (batch, ...). Received: a scalar")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("x and x_adv must be finite. Received: NaN or Inf values")
    diff = (a - b).reshape(len(a), int(np.prod(a.shape[1:], dtype=np.int64)))
    if p in ("inf", "linf") or (isinstance(p, (int, float)) and p == np.inf):
        return np.abs(diff).max(axis=1, initial=0.0)
    if p in (1, 2) and not isinstance(p, bool):
        return np.linalg.norm(diff, ord=int(p), axis=1)
    raise ValueError(f"p must be 1, 2 or np.inf. Received: p={p!r}")


def _batches(x, batch_size: int):
    x = x if isinstance(x, tf.Tensor) else np.asarray(x, dtype=np.float32)
    return [x[i : i + batch_size] for i in range(0, len(x), batch_size)]


def _forward(model: Callable, x) -> tf.Tensor:
    """``model(x, training=False)``; a Keras model runs it compiled, once traced per input shape.

    Prediction calls a model many times (every batch, every attack, every model of a transfer
    matrix); a traced forward pass is 2-3x faster on CPU than an eager one. Only Keras models
    are traced: any other callable is called as it is, since tracing would turn NumPy code in
    it (a NumPy random draw, say) into a constant.
    """
    if not isinstance(model, keras.Model):
        return model(x, training=False)
    x = tf.convert_to_tensor(x)
    key = ("forward", tuple(x.shape[1:]), x.dtype)
    cache, ref = model_cache(model)
    if key not in cache:
        spec = tf.TensorSpec([None, *x.shape[1:]], x.dtype)
        # A partial, not a closure: TensorFlow counts retracing per code object (attacks.py).
        cache[key] = tf.function(functools.partial(_call, ref), input_signature=[spec])
    return cache[key](x)


def _call(model_ref, x):
    return model_ref()(x, training=False)


def predict_labels(model: Callable, x, batch_size: int = 256) -> np.ndarray:
    """The model's predicted class (argmax of the logits) for every example, in batches.

    Args:
        model: Keras model (its forward pass traced once per input shape) or callable
            returning logits (called as it is).
        x: Inputs, shape (n, ...).
        batch_size: Examples per forward pass.

    Returns:
        An int64 numpy array of shape (n,).

    Raises:
        ValueError: A non-positive ``batch_size``, or non-finite (NaN or Inf) logits.
    """
    batch_size = _checks.batch_size(batch_size)
    out = [
        np.asarray(tf.argmax(_checks.finite_logits(_forward(model, xb)), axis=-1))
        for xb in _batches(x, batch_size)
    ]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def predict_with_confidence(
    model: Callable, x, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class and its softmax probability for every example, in batches.

    Args:
        model: Keras model (its forward pass traced once per input shape) or callable
            returning logits (called as it is).
        x: Inputs, shape (n, ...).
        batch_size: Examples per forward pass.

    Returns:
        ``(labels, confidences)``: int64 and float32 numpy arrays of shape (n,).

    Raises:
        ValueError: A non-positive ``batch_size``, or non-finite (NaN or Inf) logits.
    """
    batch_size = _checks.batch_size(batch_size)
    probs = [
        np.asarray(tf.nn.softmax(tf.cast(_checks.finite_logits(_forward(model, xb)), tf.float32)))
        for xb in _batches(x, batch_size)
    ]
    if not probs:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    probs = np.concatenate(probs)
    return probs.argmax(-1).astype(np.int64), probs.max(-1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# PGD that tracks every iterate (best iterate, early exit); APGD and Square are in autoattack
# ---------------------------------------------------------------------------------------------


class _PgdWalk(NamedTuple):
    """The working set of the tracked PGD: the examples not yet broken and their iterates."""

    idx: tf.Tensor
    x: tf.Tensor
    y: tf.Tensor
    x_adv: tf.Tensor


class _PgdState(NamedTuple):
    """The tracked PGD's loop state: the step counter, model passes, outcome and working set."""

    i: tf.Tensor
    work: tf.Tensor
    out: Outcome
    walk: _PgdWalk
    SHRINKING = ("walk",)


def _pgd_tracked_core(
    model_ref, norm, random_start, x, y, epsilon, num_steps, step_size, lo, hi, seed
):
    """PGD that scores every iterate and stops attacking an example once it is misclassified."""
    grad_fn = loss_gradient(model_ref(), "ce")
    start = x + random_in_ball(x, epsilon, norm, seed) if random_start else x
    n = tf.shape(x)[0]
    walk = _PgdWalk(tf.range(n), x, y, tf.clip_by_value(start, lo, hi))
    state = _PgdState(tf.constant(0), tf.constant(0), new_outcome(x), walk)

    def body(s: _PgdState):
        w = s.walk
        logits, _, grad = grad_fn(w.x_adv, w.y, w.y)
        fooled = misclassified(logits, w.y)
        out = record(s.out, w.idx, fooled, w.x_adv, bad_gradient(grad))
        x_new = w.x_adv + step_size * steepest_step(grad, norm)
        x_new = tf.clip_by_value(project(x_new, w.x, epsilon, norm), lo, hi)
        s = _PgdState(s.i + 1, s.work + tf.size(w.idx), out, w._replace(x_adv=x_new))
        return shrink(s, tf.logical_not(fooled))

    s = loop(lambda s: s.i < num_steps, body, state)
    # The last iterate needs a forward pass only (none on an empty batch: oneDNN refuses it).
    w = s.walk
    fooled = tf.cond(
        tf.size(w.idx) > 0,
        lambda: misclassified(tf.cast(model_ref()(w.x_adv, training=False), tf.float32), w.y),
        lambda: tf.zeros([0], tf.bool),
    )
    out = record(s.out, w.idx, fooled, w.x_adv)
    x_out = tf.tensor_scatter_nd_update(out.x_out, w.idx[:, None], w.x_adv)
    return out._replace(x_out=x_out), s.work


# ---------------------------------------------------------------------------------------------
# Robust accuracy, sweeps, transfer
# ---------------------------------------------------------------------------------------------


_NAMED = {**ATTACKS, "apgd": apgd, "square": square}
"""The attacks by name: the lecture's (:data:`cnn_utils.attacks.ATTACKS`) and AutoAttack's."""


def resolve_attack(attack, name: str = "attack") -> Callable | None:
    """An attack given by name (``"fgsm"``, ``"pgd"``, ``"mim"``, ``"apgd"``, ``"square"``).

    A callable or ``None`` is returned as it is. ``name`` is the caller's argument, for the
    message (``"attacks"`` in :func:`epsilon_sweep`).

    Raises:
        ValueError: An unknown name.
    """
    if attack is None or callable(attack):
        return attack
    if attack in _NAMED:
        return _NAMED[attack]
    raise ValueError(
        f"{name} must be None, a callable or one of {tuple(_NAMED)}. Received: {name}={attack!r}"
    )


def _arguments(attack: Callable, kwargs: dict) -> dict:
    """Every argument of ``attack(model, x, y, **kwargs)``, its own defaults filled in.

    Raises:
        ValueError: An argument that ``attack`` does not take.
    """
    name = getattr(attack, "__name__", "attack")
    signature = inspect.signature(attack)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    unknown = sorted(set(kwargs) - set(signature.parameters))
    if unknown and not takes_any:
        raise ValueError(f"{name} has no argument {unknown[0]!r}. Received: {kwargs!r}")
    try:
        bound = signature.bind(None, None, None, **kwargs)
    except TypeError as error:
        message = f"{name} cannot take these arguments ({error}). Received: {kwargs!r}"
        raise ValueError(message) from None
    bound.apply_defaults()
    arguments = dict(list(bound.arguments.items())[3:])
    for key, value in inspect.signature(attack).parameters.items():
        if value.kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(arguments.pop(key, {}))
    return arguments


def _run_pgd(model, x, labels, a: dict, run: int) -> Result:
    """PGD scored on every iterate (only correctly classified inputs: untargeted, true labels)."""
    settings = AttackSettings.of(dict(a, targeted=False, soft_label=False))
    x, labels = checked_batch(model, x, labels, settings)
    key = ("pgd_tracked", settings.norm, settings.random_start)
    numbers = settings.numbers()
    outcome, work = compiled(model, key, _pgd_tracked_core)(
        x,
        labels,
        numbers["epsilon"],
        numbers["num_steps"],
        numbers["step_size"],
        numbers["clip_value_min"],
        numbers["clip_value_max"],
        stateless_seed(settings.seed, run),
    )
    return Result(*(np.asarray(t) for t in outcome), int(work))


def _run_apgd(model, x, labels, a: dict, run: int) -> Result:
    lo, hi = a["clip_value_min"], a["clip_value_max"]
    names = ("epsilon", "num_steps", "loss", "target_rank", "rho", "eot", "norm")
    settings, loss, rank, rho, eot = apgd_settings(*(a[k] for k in names), lo, hi, a["seed"])
    x, labels = checked_batch(model, x, labels, settings, loss, rank)
    return run_apgd(model, x, labels, settings, loss, rank, rho, run, eot)


def _run_square(model, x, labels, a: dict, run: int) -> Result:
    names = ("epsilon", "num_queries", "p_init", "norm", "clip_value_min", "clip_value_max")
    settings, p_init = square_settings(*(a[k] for k in names), a["seed"])
    x, labels = checked_batch(model, x, labels, settings)
    square_images(x)
    return run_square(model, x, labels, settings, p_init, run)


_TRACKED = {pgd: _run_pgd, apgd: _run_apgd, square: _run_square}
"""Attacks scored on every iterate, each with its runner on the arguments it was given."""


def _broken(model, x, labels, attack, kwargs: dict, run: int) -> Result:
    """Which examples ``attack`` breaks (any iterate for PGD, APGD and Square), and the passes.

    The arguments are bound to the attack's own signature (its defaults, its names); an
    attack scored on every iterate runs its tracking core, any other is scored on its output.
    """
    arguments = _arguments(attack, kwargs)
    if attack in _TRACKED:
        if arguments["epsilon"] == 0.0 or len(labels) == 0:
            none = np.zeros(len(labels), bool)
            return Result(none, np.asarray(x), none, 0)
        return _TRACKED[attack](model, x, labels, arguments, run)
    if run and arguments.get("seed") is not None:
        kwargs = dict(kwargs, seed=arguments["seed"] + 7919 * run)
    x_adv = attack(model, x, labels, **kwargs)
    broken = predict_labels(model, x_adv, len(labels) or 1) != np.asarray(labels)
    return Result(broken, np.asarray(x_adv), np.zeros(len(labels), bool), 0)


def _checked_labels(model, x, y, name: str = "model") -> np.ndarray:
    """Labels checked against ``model`` (logits, one output) and ``x`` (finite, fits it)."""
    x = _checks.images(x)
    classes = _checks.logits_model(model, x, name)
    return np.asarray(_checks.labels(y, int(x.shape[0]), classes))


def robust_accuracy(
    model: Callable,
    x,
    y,
    attack: Callable | str | None,
    batch_size: int = 256,
    *,
    restarts: int = 0,
    verbose: int = 1,
    return_details: bool = False,
    **attack_kwargs,
):
    """Accuracy of ``model`` under ``attack``, counting an example as broken by any iterate.

    Only the examples the model classifies correctly are attacked. For PGD, APGD and Square
    every iterate is scored, as AutoAttack does: an example is broken as soon as any iterate is
    misclassified, and it then leaves the batch (early exit). Each of the ``restarts`` extra
    runs attacks the survivors again from a new random start. Any other attack (``"fgsm"``,
    ``"mim"``, a callable with their signature) is scored on the input it returns. With
    ``attack=None`` it is the clean accuracy.

    Args:
        model: Keras model returning logits.
        x: Inputs, shape (n, ...), in the attack's clip range.
        y: True integer labels, shape (n,).
        attack: ``fgsm``, ``pgd``, ``mim``, ``apgd``, ``square`` (or their names), any callable
            with the same signature, or ``None`` for clean accuracy.
        batch_size: Examples attacked at once.
        restarts: Extra runs on the survivors, >= 0 (each from a new random start; with a
            ``seed``, run ``r`` uses ``seed + 7919 * r``).
        verbose: 1 shows a progress bar per run, 0 is silent.
        return_details: Also return a dict with ``robust`` (a bool per example), ``passes``
            (model passes of PGD/APGD/Square per attacked example), ``per_run`` (the accuracy
            after each run) and ``zero_gradient`` (a bool per example: PGD or APGD saw an
            all-zero or non-finite input gradient on it, a sign of gradient masking).
        **attack_kwargs: Passed to the attack (``epsilon``, ``num_steps``, ``norm``...).

    Returns:
        The robust accuracy, a float in [0, 1]; with ``return_details``, ``(accuracy, details)``.

    Raises:
        ValueError: A bad batch size or number of restarts, an unknown attack, labels that do
            not match ``x``, a targeted attack (robust accuracy is measured against the true
            labels), or any error of the attack itself.
    """
    attack = resolve_attack(attack)
    batch_size = _checks.batch_size(batch_size)
    restarts = _checks.integer("restarts", restarts, minimum=0)
    if attack_kwargs.get("targeted"):
        raise ValueError(
            "robust_accuracy measures accuracy against the true labels and cannot run a "
            "targeted attack. Received: targeted=True"
        )
    labels = _checked_labels(model, x, y)
    if len(x) == 0:
        raise ValueError("x must hold at least one example. Received: 0 examples")
    robust = predict_labels(model, x, batch_size) == labels
    zero = np.zeros(len(x), bool)
    attacked, work, per_run = int(robust.sum()), 0, []
    for run in range(1 + restarts if attack is not None else 0):
        index = np.flatnonzero(robust)
        bar = keras.utils.Progbar(len(index), verbose=verbose, unit_name="example")
        for start in range(0, len(index), batch_size):
            chunk = index[start : start + batch_size]
            result = _broken(
                model, _take(x, chunk), labels[chunk], attack, dict(attack_kwargs), run
            )
            robust[chunk[result.broken]] = False
            zero[chunk[result.masked]] = True
            work += result.work
            if verbose:
                bar.add(len(chunk), values=[("accuracy", robust.mean())])
        per_run.append(float(robust.mean()))
    accuracy = float(robust.mean())
    if not return_details:
        return accuracy
    passes = work / max(attacked, 1)
    return accuracy, dict(robust=robust, passes=passes, per_run=per_run, zero_gradient=zero)


def _take(x, index: np.ndarray):
    return tf.gather(x, index) if isinstance(x, tf.Tensor) else np.asarray(x)[index]


def _sweep_arguments(attack: Callable, kwargs: dict, step_rule) -> dict:
    """The arguments of ``kwargs`` that ``attack``'s signature takes, and its step size.

    The step size is ``step_rule`` (a number or ``eps -> step``), or by default
    ``2.5 * eps / num_steps``, with the attack's own default ``num_steps`` if none is given.
    """
    parameters = inspect.signature(attack).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in parameters}
    if "step_size" not in parameters:
        return kwargs
    if callable(step_rule):
        return dict(kwargs, step_size=float(step_rule(kwargs["epsilon"])))
    if step_rule is not None:
        return dict(kwargs, step_size=step_rule)
    num_steps = kwargs.get("num_steps", parameters["num_steps"].default)
    return dict(kwargs, step_size=2.5 * kwargs["epsilon"] / num_steps)


def epsilon_sweep(
    model: Callable,
    x,
    y,
    epsilons: Sequence[float],
    attacks: Sequence[str] | Mapping[str, Callable] = ("fgsm", "pgd", "mim"),
    *,
    batch_size: int = 256,
    verbose: int = 1,
    **attack_kwargs,
):
    """Robust accuracy for every epsilon of a list and every attack, in one call.

    For the iterative attacks, ``step_size`` may be a number, a callable ``eps -> step``, or
    left out: it is then ``2.5 * eps / num_steps`` (a rule of thumb, not Madry et al.'s own
    setting), so the attack can reach the surface of every ball. epsilon = 0 gives the clean
    accuracy (no attack is run).

    Args:
        model: Keras model returning logits.
        x: Inputs, shape (n, ...).
        y: True integer labels, shape (n,).
        epsilons: Radii to try, each >= 0.
        attacks: Attack names (``"fgsm"``, ``"pgd"``, ``"mim"``), or a mapping from column
            name to attack callable.
        batch_size: Examples attacked at once.
        verbose: 1 prints one line per attack and epsilon, 0 is silent.
        **attack_kwargs: Passed to every attack (``norm``, ``num_steps``, ``seed``...); each
            attack receives the ones its signature takes (FGSM takes no ``num_steps``), and
            one that no attack takes is an error.

    Returns:
        A pandas DataFrame indexed by epsilon with one column of accuracies per attack.

    Raises:
        ValueError: Empty or negative epsilons, an unknown attack, or a bad attack argument.
    """
    import pandas as pd

    eps_list = _checks.numbers("epsilons", epsilons, minimum=0.0)
    if isinstance(attacks, (str, bytes)) or not attacks:
        raise ValueError(
            "attacks must be a non-empty list of attack names or a mapping name -> attack, "
            f"e.g. ('fgsm', 'pgd'). Received: attacks={attacks!r}"
        )
    if isinstance(attacks, Mapping):
        table = {str(k): resolve_attack(fn, f"attacks[{k!r}]") for k, fn in attacks.items()}
    else:
        table = {str(a): resolve_attack(a, f"attacks[{i}]") for i, a in enumerate(attacks)}
    step_rule = attack_kwargs.pop("step_size", None)
    taken = set().union(*(inspect.signature(fn).parameters for fn in table.values()))
    unknown = sorted(set(attack_kwargs) - taken)
    if unknown and "kwargs" not in taken:
        raise ValueError(
            f"No attack of the sweep has an argument {unknown[0]!r}. Received: {attack_kwargs!r}"
        )
    clean = None
    results: dict[str, list[float]] = {}
    for name, fn in table.items():
        column = []
        for eps in eps_list:
            if eps == 0.0:
                if clean is None:
                    clean = robust_accuracy(model, x, y, None, batch_size, verbose=0)
                column.append(clean)
                continue
            kwargs = _sweep_arguments(fn, dict(attack_kwargs, epsilon=eps), step_rule)
            accuracy = robust_accuracy(model, x, y, fn, batch_size, verbose=0, **kwargs)
            if verbose:
                print(f"{name:>6}  eps={eps:<8g} accuracy={accuracy:.4f}")
            column.append(accuracy)
        results[name] = column
    return pd.DataFrame(results, index=pd.Index(eps_list, name="epsilon"))


def transfer_matrix(
    models: Mapping[str, Callable],
    x,
    y,
    attack: Callable | str,
    *,
    batch_size: int = 256,
    verbose: int = 0,
    **attack_kwargs,
):
    """Black-box transfer: success of examples made on one model (rows) against another (columns).

    The examples are made with ``attack`` on each source model (white-box), then classified
    by every target model. Only examples that every model classifies correctly are used, so
    that every cell counts the same examples; a cell is the fraction of them that the target
    misclassifies. The diagonal is the white-box success rate.

    Args:
        models: Mapping from a display name to a model returning logits (at least one).
        x: Inputs, shape (n, ...).
        y: True integer labels, shape (n,).
        attack: ``fgsm``, ``pgd``, ``mim`` (or their names), or a callable with their signature.
        batch_size: Examples attacked at once.
        verbose: 1 prints progress, 0 is silent.
        **attack_kwargs: Passed to the attack.

    Returns:
        A pandas DataFrame of success rates in [0, 1], index ``source``, columns ``target``;
        ``attrs["n"]`` is the number of examples used.

    Raises:
        ValueError: No models, no example that all models classify correctly, or a bad
            attack argument.
    """
    import pandas as pd

    attack = resolve_attack(attack)
    if attack is None or not models:
        raise ValueError("models must be a non-empty mapping and attack must not be None.")
    batch_size = _checks.batch_size(batch_size)
    for model_name, model in models.items():
        labels = _checked_labels(model, x, y, f"models[{model_name!r}]")
    x = np.asarray(x, dtype=np.float32)
    keep = np.ones(len(labels), bool)
    for model in models.values():
        keep &= predict_labels(model, x, batch_size) == labels
    if not keep.any():
        raise ValueError("No example is classified correctly by every model: nothing to attack.")
    x, labels = x[keep], labels[keep]
    rows = {}
    for source_name, source in models.items():
        if verbose:
            print(f"attacking {source_name} ({len(labels)} examples)")
        x_adv = np.concatenate(
            [
                np.asarray(attack(source, xb, labels[i : i + batch_size], **attack_kwargs))
                for i, xb in zip(
                    range(0, len(labels), batch_size), _batches(x, batch_size), strict=True
                )
            ]
        )
        rows[source_name] = {
            target_name: float(np.mean(predict_labels(target, x_adv, batch_size) != labels))
            for target_name, target in models.items()
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name, frame.columns.name = "source", "target"
    frame.attrs["n"] = int(len(labels))
    return frame


def transfer_summary(matrices: Mapping):
    """White-box and transfer success of several attacks, from their ``transfer_matrix`` tables.

    For each attack, the mean of the diagonal (each model attacked white-box) and the mean of
    the off-diagonal cells (examples made on one model, classified by another).

    Args:
        matrices: Mapping from an attack's display name to its ``transfer_matrix`` result
            (square, the same models as rows and columns, at least two models).

    Returns:
        A pandas DataFrame, index ``["white-box success", "transfer success"]``, one column per
        attack.

    Raises:
        ValueError: No matrices, or a matrix that is not square over the same models with at
            least two of them.
    """
    import pandas as pd

    if not isinstance(matrices, Mapping) or not matrices:
        raise ValueError(
            "matrices must be a non-empty mapping of transfer_matrix results, e.g. "
            f"{{'FGSM': transfer_matrix(...)}}. Received: matrices={matrices!r}"
        )
    columns = {}
    for name, frame in matrices.items():
        values = np.asarray(frame, dtype=float)
        if values.ndim != 2 or values.shape[0] != values.shape[1] or values.shape[0] < 2:
            raise ValueError(
                f"matrices[{name!r}] must be a square transfer matrix over at least two models. "
                f"Received: shape {values.shape}"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"matrices[{name!r}] must hold finite success rates. Received: NaN or Inf cells"
            )
        if list(getattr(frame, "index", [])) != list(getattr(frame, "columns", [None])):
            raise ValueError(
                f"matrices[{name!r}] must have the same models as rows and columns, got "
                f"{list(frame.index)} and {list(frame.columns)}."
            )
        off_diagonal = ~np.eye(len(values), dtype=bool)
        columns[name] = {
            "white-box success": float(np.diag(values).mean()),
            "transfer success": float(values[off_diagonal].mean()),
        }
    return pd.DataFrame(columns)


# ---------------------------------------------------------------------------------------------
# Loss surface
# ---------------------------------------------------------------------------------------------


def loss_surface(
    model: Callable,
    x,
    y,
    alphas: Sequence[float],
    betas: Sequence[float] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 512,
    clip: bool = False,
    clip_value_min: float = 0.0,
    clip_value_max: float = 1.0,
) -> dict[str, np.ndarray]:
    """Loss and prediction of ``model`` on the plane ``x + alpha * g + beta * g_perp``.

    ``g = sign(grad_x l(f(x), y))`` is the FGSM direction (so ``alpha`` is an L-infinity step in
    input units, and by Taylor ``l(x + h) ~ l(x) + grad^T h`` it is the steepest local ascent);
    ``g_perp`` is a random +-1 vector (seeded) with its component along ``g`` removed, so it is
    orthogonal to ``g`` and of about the same size. By default the inputs are not clipped to the
    valid range: this is a picture of the function around ``x``, partly off the image domain
    (at ``alpha = 0.25`` a black MNIST background pixel with ``g < 0`` sits at -0.25). With
    ``clip=True`` every point is clipped to ``[clip_value_min, clip_value_max]``: the surface
    over the images an attack can actually reach (the plane bends at the range's faces).

    Args:
        model: Keras model returning logits.
        x: One input, shape (H, W, C) or (1, H, W, C).
        y: Its integer label.
        alphas: Steps along ``g``.
        betas: Steps along ``g_perp`` (default: ``alphas``).
        seed: Seed of ``g_perp``.
        batch_size: Grid points per forward pass.
        clip: Clip every point of the plane to ``[clip_value_min, clip_value_max]``.
        clip_value_min: Lower end of the valid input range (used with ``clip=True``).
        clip_value_max: Upper end of the valid input range (used with ``clip=True``).

    Returns:
        A dict with ``alphas``, ``betas`` (1-D arrays), ``loss`` and ``pred`` (arrays of shape
        (len(betas), len(alphas)): cross-entropy of ``y`` and the predicted class), ``g`` and
        ``g_perp`` (the directions, shaped like one input).

    Raises:
        ValueError: A batch of more than one input; empty or non-finite alphas or betas; a
            label that is not one integer in range; non-finite pixels (or, with ``clip=True``,
            pixels outside the clip range, or a bad range); a model that does not return
            logits; or a loss whose gradient at ``x`` is zero everywhere.
    """
    x = _one_input(x)
    seed = _checks.seed(seed)
    batch_size = _checks.batch_size(batch_size)
    alphas, betas = _surface_axes(alphas, betas)
    clip = _checks.flag("clip", clip)
    lo, hi = _checks.clip_range(clip_value_min, clip_value_max)
    batch_x = _checks.images(x[np.newaxis], value_range=(lo, hi) if clip else None)
    classes = _checks.logits_model(model, batch_x)
    label = _checks.class_index(y, 1, classes, name="y")
    g, g_perp = _surface_directions(model, batch_x, label, seed)
    grid_a, grid_b = np.meshgrid(alphas, betas)
    points = (
        x[np.newaxis]
        + grid_a.reshape(-1, *([1] * x.ndim)) * g[np.newaxis]
        + grid_b.reshape(-1, *([1] * x.ndim)) * g_perp[np.newaxis]
    ).astype(np.float32)
    if clip:
        points = np.clip(points, lo, hi)
    loss, pred = _losses_and_predictions(model, points, label[0], batch_size)
    return {
        "alphas": alphas,
        "betas": betas,
        "loss": loss.reshape(grid_a.shape),
        "pred": pred.reshape(grid_a.shape),
        "g": g,
        "g_perp": g_perp.astype(np.float32),
    }


def _one_input(x) -> np.ndarray:
    """``x`` as one float32 input without a batch axis (a batch of one is unwrapped)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim >= 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim < 1 or (x.ndim == 4):
        raise ValueError(f"x must be one input. Received: x with shape {x.shape}")
    return x


def _surface_axes(alphas, betas) -> tuple[np.ndarray, np.ndarray]:
    """The steps along ``g`` and ``g_perp``, float32 vectors (``betas`` defaults to ``alphas``)."""
    alphas = np.asarray(alphas, dtype=np.float32).reshape(-1)
    betas = alphas if betas is None else np.asarray(betas, dtype=np.float32).reshape(-1)
    if alphas.size == 0 or betas.size == 0:
        raise ValueError("alphas and betas must not be empty.")
    if not (np.all(np.isfinite(alphas)) and np.all(np.isfinite(betas))):
        raise ValueError("alphas and betas must be finite. Received: NaN or Inf values")
    return alphas, betas


def _surface_directions(model, batch_x, label, seed) -> tuple[np.ndarray, np.ndarray]:
    """The plane's directions: ``g`` (FGSM's sign of the gradient) and ``g_perp`` (random, ⟂ g)."""
    grad = loss_gradient_fn(model)(batch_x, label)
    g = np.sign(np.asarray(grad[0], dtype=np.float32))
    if not g.any():
        raise ValueError(
            "The loss gradient at x is zero everywhere (does the model's output depend on "
            "its input?), so there is no attack direction to draw. Received: a model whose "
            "loss does not change with x at this input"
        )
    r = np.random.default_rng(seed).choice(np.array([-1.0, 1.0], np.float32), size=g.shape)
    g_dot = float(np.sum(g * g))
    g_perp = r - (np.sum(r * g) / g_dot) * g if g_dot > 0 else r
    return g, g_perp


def _losses_and_predictions(model, points, label, batch_size) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy of ``label`` and the predicted class at every point, a batch at a time."""
    losses, preds = [], []
    for batch in _batches(points, batch_size):
        logits = tf.cast(_forward(model, tf.constant(batch)), tf.float32)
        labels = tf.fill([tf.shape(logits)[0]], label)
        losses.append(np.asarray(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))
        preds.append(np.asarray(tf.argmax(logits, axis=-1)))
    return np.concatenate(losses), np.concatenate(preds)


# ---------------------------------------------------------------------------------------------
# The standard protocol and the gradient-masking checks
# ---------------------------------------------------------------------------------------------


def gradient_masking_checks(
    model: Callable,
    x,
    y,
    epsilon: float,
    *,
    source_model: Callable | None = None,
    epsilons: Sequence[float] | None = None,
    norm: str = "linf",
    num_steps: int = 20,
    batch_size: int = 500,
    seed: int = 0,
    tolerance: float = 0.01,
    restarts: int = 0,
    strong: bool = False,
    strong_steps: int = 100,
    target_classes: int = 9,
    strong_gap: float = 0.03,
    version: str = "standard",
    square_queries: int = 1000,
):
    """The symptoms of gradient masking (Athalye et al. 2018; Carlini et al. 2019), as a table.

    Rows: (1) *iterative <= single step*, white-box accuracy at ``epsilon`` at most FGSM's;
    (2) *white-box <= transfer*, at most that left by PGD examples made on ``source_model``;
    (3) *accuracy -> 0 as eps grows* (at most 5 % at the largest radius); (4) *accuracy
    monotone in eps*; (5) *white-box <= black-box*, the gradient attacks' at most that left by
    :func:`~cnn_utils.autoattack.square`, which needs no gradient; (6) *zero gradients*: no
    attacked example had an all-zero or non-finite input gradient; (7) *deterministic forward
    pass*: two passes give the same logits (else the gradients are stochastic: evaluate with
    ``version="rand"``). A failed row says the number is not to be trusted (it proves no
    masking; passing proves no robustness). PGD: ``num_steps`` steps of ``2.5 * eps /
    num_steps``, every iterate scored. With ``strong=True`` the white-box accuracy is the
    per-example worst case of PGD and :func:`~cnn_utils.autoattack.evaluate_robustness`, and a
    row *PGD vs the strong protocol* (after row 4) passes when the protocol removes at most
    ``strong_gap`` more than PGD (else trust the lower number).

    Args:
        model: Keras model returning logits.
        x: Inputs, shape (n, ...), in [0, 1].
        y: True integer labels, shape (n,).
        epsilon: The radius the robustness is claimed for.
        source_model: Another model (returning logits) for the transfer check, or ``None``.
        epsilons: Radii of the sweep; default ``epsilon`` times 0, 0.25, 0.5, 1, 1.5, 2, and 1.0.
        norm: ``"linf"`` or ``"l2"``.
        num_steps: PGD steps.
        batch_size: Examples attacked at once.
        seed: Seed of the random starts.
        tolerance: Slack of the comparisons (accuracy on a finite sample), >= 0.
        restarts: Extra PGD runs from new random starts in every white-box evaluation, >= 0.
        strong: Also run the AutoAttack protocol at ``epsilon`` (see above).
        strong_steps: APGD and FAB iterations per run of the strong protocol.
        target_classes: Target classes of the strong protocol's targeted stages.
        strong_gap: Largest accuracy the protocol may remove beyond PGD's, >= 0.
        version: The strong protocol's version (``"standard"``, ``"lite"`` or ``"rand"``).
        square_queries: Square's query budget (row 5 and the protocol), >= 0; 0 skips row 5.

    Returns:
        A pandas DataFrame indexed by check with columns ``passed`` (bool, or ``None`` when
        skipped) and ``numbers``. ``attrs``: ``"pgd"``, ``"fgsm"``, ``"transfer"`` (or
        ``None``), ``"white_box"`` (the number the rows compare), ``"strong"`` (or ``None``),
        ``"black_box"`` (Square's, or ``None``) accuracies, ``"sweep"`` (epsilon -> PGD
        accuracy), ``"robust"`` (a bool per example: not broken by the white-box attacks) and
        ``"zero_gradient"`` (a bool per example).

    Raises:
        ValueError: A bad argument (the message names it).
    """
    epsilon, tolerance, restarts, strong, strong_gap, epsilons, square_queries = _masking_arguments(
        epsilon, tolerance, restarts, strong, strong_gap, epsilons, square_queries
    )
    suite = _MaskingAttacks(model, x, y, norm, num_steps, batch_size, seed, restarts)
    protocol = dict(steps=strong_steps, targets=target_classes, version=version)
    white = suite.white_box(epsilon, strong, dict(protocol, queries=square_queries))
    single = suite.fgsm(epsilon)
    transfer = None if source_model is None else suite.pgd(epsilon, source=source_model)
    black = suite.square(epsilon, square_queries) if square_queries else None
    sweep = suite.sweep(epsilons, epsilon, white.pgd)
    table = _masking_table(white, single, transfer, sweep, tolerance, strong_gap)
    return _masking_rows(table, white, black, suite.deterministic(), tolerance)


def _masking_arguments(epsilon, tolerance, restarts, strong, strong_gap, epsilons, queries):
    """The numbers of :func:`gradient_masking_checks`, checked; the default sweep filled in."""
    epsilon = _checks.number("epsilon", epsilon, positive=True)
    tolerance = _checks.number("tolerance", tolerance, minimum=0.0)
    restarts = _checks.integer("restarts", restarts, minimum=0)
    strong = _checks.flag("strong", strong)
    strong_gap = _checks.number("strong_gap", strong_gap, minimum=0.0)
    queries = _checks.integer("square_queries", queries, minimum=0)
    if epsilons is None:
        epsilons = [epsilon * f for f in (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)] + [1.0]
    epsilons = sorted(set(_checks.numbers("epsilons", epsilons, minimum=0.0)))
    return epsilon, tolerance, restarts, strong, strong_gap, epsilons, queries


class _WhiteBox(NamedTuple):
    """The white-box accuracy at the claimed radius, as :func:`gradient_masking_checks` has it."""

    pgd: float  # PGD alone
    accuracy: float  # the number the rows compare: PGD's, or the worst case with the protocol
    strong: float | None  # evaluate_robustness's accuracy, or None without strong=True
    name: str  # what ``accuracy`` is, for the table
    robust: np.ndarray  # a bool per example: not broken by any white-box attack
    zero_gradient: np.ndarray  # a bool per example: a gradient attack saw a zero gradient
    gradient: float  # the gradient attacks' worst case (without the protocol's Square stage)


@dataclasses.dataclass
class _MaskingAttacks:
    """The attacks of :func:`gradient_masking_checks`, all on the same examples and settings."""

    model: Callable
    x: object
    y: object
    norm: str
    num_steps: int
    batch_size: int
    seed: int
    restarts: int
    labels: np.ndarray = dataclasses.field(init=False)
    common: dict = dataclasses.field(init=False)

    def __post_init__(self):
        """Check the batch size and the labels; the options every call shares."""
        self.batch_size = _checks.batch_size(self.batch_size)
        self.labels = np.asarray(_checks.labels(self.y, len(self.x)))
        self.common = {"norm": self.norm, "batch_size": self.batch_size, "verbose": 0}

    def pgd(self, eps, source=None, details=False):
        """PGD accuracy at ``eps``: white-box, or of examples made on ``source`` (transfer)."""
        step_size = 2.5 * eps / self.num_steps
        kwargs = dict(epsilon=eps, num_steps=self.num_steps, step_size=step_size, seed=self.seed)
        if source is None or source is self.model:
            return robust_accuracy(
                self.model,
                self.x,
                self.y,
                "pgd",
                restarts=self.restarts,
                return_details=details,
                **self.common,
                **kwargs,
            )
        label_batches = [
            self.labels[i : i + self.batch_size]
            for i in range(0, len(self.labels), self.batch_size)
        ]
        batches = zip(_batches(self.x, self.batch_size), label_batches, strict=True)
        x_adv = np.concatenate(
            [np.asarray(pgd(source, xb, yb, norm=self.norm, **kwargs)) for xb, yb in batches]
        )
        return float(np.mean(predict_labels(self.model, x_adv, self.batch_size) == self.labels))

    def deterministic(self) -> bool:
        """Do two forward passes of the first batch give the same logits (no test-time noise)?"""
        x = _batches(self.x, self.batch_size)[0]
        first, second = (np.asarray(self.model(x, training=False)) for _ in range(2))
        return bool(np.array_equal(first, second))

    def clean(self) -> float:
        """The clean accuracy."""
        return robust_accuracy(self.model, self.x, self.y, None, **self.common)

    def fgsm(self, eps) -> float:
        """FGSM accuracy at ``eps``."""
        return robust_accuracy(self.model, self.x, self.y, "fgsm", epsilon=eps, **self.common)

    def white_box(self, epsilon, strong: bool, protocol: dict) -> _WhiteBox:
        """PGD at ``epsilon``; with ``strong``, also the worst case with the strong protocol."""
        pgd_white, details = self.pgd(epsilon, details=True)
        zero = details["zero_gradient"]
        if not strong:
            return _WhiteBox(pgd_white, pgd_white, None, "PGD", details["robust"], zero, pgd_white)
        report = evaluate_robustness(
            self.model,
            self.x,
            self.y,
            epsilon,
            self.norm,
            version=protocol["version"],
            num_steps=protocol["steps"],
            target_classes=protocol["targets"],
            square_queries=max(protocol["queries"], 1),
            batch_size=self.batch_size,
            seed=self.seed,
            verbose=0,
        )
        robust = details["robust"] & report.robust
        name = "worst of PGD and the protocol"
        worst = float(np.mean(robust))
        zero = zero | report.zero_gradient
        by_gradient = details["robust"] & (report.robust | (report.broken_by == "square"))
        gradient = float(np.mean(by_gradient))
        return _WhiteBox(pgd_white, worst, report.accuracy, name, robust, zero, gradient)

    def square(self, eps, queries: int) -> float:
        """Accuracy under the Square attack (no gradient) at ``eps``."""
        return robust_accuracy(
            self.model,
            self.x,
            self.y,
            "square",
            epsilon=eps,
            num_queries=queries,
            seed=self.seed,
            **self.common,
        )

    def sweep(self, epsilons, epsilon, at_epsilon: float) -> dict:
        """PGD accuracy at every radius (the clean accuracy at 0, ``at_epsilon`` at ``epsilon``)."""
        accuracies = {}
        for e in epsilons:
            if e == epsilon:
                accuracies[e] = at_epsilon
            elif e > 0:
                accuracies[e] = self.pgd(e)
            else:
                accuracies[e] = self.clean()
        return accuracies


def _masking_table(white: _WhiteBox, single, transfer, sweep: dict, tolerance, strong_gap):
    """The checks' table: one row per symptom (a fifth with the strong protocol), and attrs."""
    import pandas as pd

    rows = {
        "iterative <= single step": (
            white.accuracy <= single + tolerance,
            f"{white.name} {white.accuracy:.4f} vs FGSM {single:.4f}",
        )
    }
    if transfer is None:
        rows["white-box <= transfer"] = (None, "skipped: no source_model")
    else:
        rows["white-box <= transfer"] = (
            white.accuracy <= transfer + tolerance,
            f"white-box {white.accuracy:.4f} vs transfer {transfer:.4f}",
        )
    epsilons, accuracies = list(sweep), list(sweep.values())
    rows["accuracy -> 0 as eps grows"] = (
        accuracies[-1] <= 0.05,
        f"PGD {accuracies[-1]:.4f} at eps={epsilons[-1]:g}",
    )
    rises = [b - a for a, b in zip(accuracies[:-1], accuracies[1:], strict=True)]
    text = ", ".join(f"{e:g}: {a:.4f}" for e, a in sweep.items())
    rows["accuracy monotone in eps"] = (max(rises, default=0.0) <= tolerance, text)
    if white.strong is not None:
        rows["PGD vs the strong protocol"] = (
            white.pgd - white.accuracy <= strong_gap,
            f"PGD {white.pgd:.4f}, protocol {white.strong:.4f}, worst case {white.accuracy:.4f}",
        )
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["passed", "numbers"])
    frame.index.name = "check"
    frame.attrs.update(
        pgd=white.pgd,
        fgsm=single,
        transfer=transfer,
        white_box=white.accuracy,
        strong=white.strong,
        sweep=sweep,
        robust=white.robust,
    )
    return frame


def _masking_rows(table, white: _WhiteBox, black, deterministic: bool, tolerance):
    """The table with the black-box, zero-gradient and determinism rows (5 to 7) appended."""
    import pandas as pd

    rows = {}
    if black is None:
        rows["white-box <= black-box"] = (None, "skipped: square_queries=0")
    else:
        rows["white-box <= black-box"] = (
            white.gradient <= black + tolerance,
            f"gradient attacks {white.gradient:.4f} vs Square {black:.4f}",
        )
    zero = int(white.zero_gradient.sum())
    rows["zero gradients"] = (
        zero == 0,
        f"{zero} of {len(white.zero_gradient)} examples had an all-zero or non-finite gradient",
    )
    rows["deterministic forward pass"] = (
        deterministic,
        "same logits twice" if deterministic else "randomised: evaluate with version='rand'",
    )
    extra = pd.DataFrame.from_dict(rows, orient="index", columns=["passed", "numbers"])
    frame = pd.concat([table, extra])
    frame.index.name = "check"
    frame.attrs = dict(table.attrs, black_box=black, zero_gradient=white.zero_gradient)
    return frame
