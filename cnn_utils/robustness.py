"""Evaluation: robust accuracy, epsilon sweeps, transfer matrices, loss surfaces, Lp distances.

The attacks themselves are in :mod:`cnn_utils.attacks`; this module measures what they do to a
model. The names ``lp_distance``, ``predict_labels``, ``predict_with_confidence``,
``robust_accuracy``, ``epsilon_sweep``, ``transfer_matrix`` and ``loss_surface`` also import
from :mod:`cnn_utils.attacks`, where the course introduced them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from cnn_utils import _checks
from cnn_utils.attacks import ATTACKS, fgsm, loss_gradient_fn

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
        ValueError: Unknown ``p``, or different shapes.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_adv, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x and x_adv must have the same shape. Received: {a.shape} and {b.shape}")
    if a.ndim < 1:
        raise ValueError("x must be a batch, shape (batch, ...). Received: a scalar")
    diff = (a - b).reshape(len(a), -1)
    if p in ("inf", "linf") or (isinstance(p, (int, float)) and p == np.inf):
        return np.abs(diff).max(axis=1, initial=0.0)
    if p in (1, 2) and not isinstance(p, bool):
        return np.linalg.norm(diff, ord=int(p), axis=1)
    raise ValueError(f"p must be 1, 2 or np.inf. Received: p={p!r}")


def _batches(x, batch_size: int):
    x = x if isinstance(x, tf.Tensor) else np.asarray(x, dtype=np.float32)
    return [x[i : i + batch_size] for i in range(0, len(x), batch_size)]


def predict_labels(model: Callable, x, batch_size: int = 256) -> np.ndarray:
    """The model's predicted class (argmax of the logits) for every example, in batches.

    Args:
        model: Keras model or callable returning logits.
        x: Inputs, shape (n, ...).
        batch_size: Examples per forward pass.

    Returns:
        An int64 numpy array of shape (n,).

    Raises:
        ValueError: A non-positive ``batch_size``.
    """
    batch_size = _checks.batch_size(batch_size)
    out = [
        np.asarray(tf.argmax(model(xb, training=False), axis=-1)) for xb in _batches(x, batch_size)
    ]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def predict_with_confidence(
    model: Callable, x, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class and its softmax probability for every example, in batches.

    Args:
        model: Keras model or callable returning logits.
        x: Inputs, shape (n, ...).
        batch_size: Examples per forward pass.

    Returns:
        ``(labels, confidences)``: int64 and float32 numpy arrays of shape (n,).

    Raises:
        ValueError: A non-positive ``batch_size``.
    """
    batch_size = _checks.batch_size(batch_size)
    probs = [
        np.asarray(tf.nn.softmax(tf.cast(model(xb, training=False), tf.float32)))
        for xb in _batches(x, batch_size)
    ]
    if not probs:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    probs = np.concatenate(probs)
    return probs.argmax(-1).astype(np.int64), probs.max(-1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Robust accuracy, sweeps, transfer
# ---------------------------------------------------------------------------------------------


def resolve_attack(attack) -> Callable | None:
    """An attack given by name (a key of :data:`cnn_utils.ATTACKS`), callable or None.

    Raises:
        ValueError: An unknown name.
    """
    if attack is None or callable(attack):
        return attack
    if attack in ATTACKS:
        return ATTACKS[attack]
    raise ValueError(
        f"attack must be None, a callable or one of {tuple(ATTACKS)}. Received: attack={attack!r}"
    )


def robust_accuracy(
    model: Callable,
    x,
    y,
    attack: Callable | str | None,
    batch_size: int = 256,
    *,
    verbose: int = 1,
    **attack_kwargs,
) -> float:
    """Accuracy of ``model`` on adversarial examples made by ``attack``, batch by batch.

    For each batch, ``x_adv = attack(model, x_batch, y_batch, **attack_kwargs)`` is made and
    classified; the result is the fraction of examples whose prediction on ``x_adv`` is still
    the true label. With ``attack=None`` it is the clean accuracy.

    Args:
        model: Keras model returning logits.
        x: Inputs, shape (n, ...), in the attack's clip range.
        y: True integer labels, shape (n,).
        attack: ``fgsm``, ``pgd``, ``mim`` (or their names), any callable with the same
            signature, or ``None`` for clean accuracy.
        batch_size: Examples attacked at once.
        verbose: 1 shows a progress bar, 0 is silent.
        **attack_kwargs: Passed to the attack (``epsilon``, ``num_steps``, ``norm``...).

    Returns:
        The robust accuracy, a float in [0, 1].

    Raises:
        ValueError: A bad batch size, unknown attack, labels that do not match ``x``, a
            targeted attack (robust accuracy is measured against the true labels), or any
            error of the attack itself.
    """
    attack = resolve_attack(attack)
    batch_size = _checks.batch_size(batch_size)
    if attack_kwargs.get("targeted"):
        raise ValueError(
            "robust_accuracy measures accuracy against the true labels and cannot run a "
            "targeted attack. Received: targeted=True"
        )
    n = len(x)
    labels = np.asarray(_checks.labels(y, n))
    if n == 0:
        raise ValueError("x must hold at least one example. Received: 0 examples")
    bar = keras.utils.Progbar(n, verbose=verbose, unit_name="example") if verbose else None
    correct = 0
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], labels[start : start + batch_size]
        if attack is not None:
            xb = attack(model, xb, yb, **attack_kwargs)
        correct += int(np.sum(predict_labels(model, xb, batch_size) == yb))
        if bar is not None:
            bar.add(len(yb), values=[("accuracy", correct / min(start + batch_size, n))])
    return correct / n


_FGSM_ARGS = {"epsilon", "norm", "soft_label", "clip_value_min", "clip_value_max"}


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
    left out: it is then ``2.5 * eps / num_steps`` (Madry et al. 2018), so the attack can
    reach the surface of every ball. epsilon = 0 gives the clean accuracy (no attack is run).

    Args:
        model: Keras model returning logits.
        x: Inputs, shape (n, ...).
        y: True integer labels, shape (n,).
        epsilons: Radii to try, each >= 0.
        attacks: Attack names (``"fgsm"``, ``"pgd"``, ``"mim"``), or a mapping from column
            name to attack callable.
        batch_size: Examples attacked at once.
        verbose: 1 prints one line per attack and epsilon, 0 is silent.
        **attack_kwargs: Passed to every attack (``norm``, ``num_steps``, ``seed``...); FGSM
            receives only the arguments it accepts.

    Returns:
        A pandas DataFrame indexed by epsilon with one column of accuracies per attack.

    Raises:
        ValueError: Empty or negative epsilons, an unknown attack, or a bad attack argument.
    """
    import pandas as pd

    eps_list = [_checks.number("epsilons", e, minimum=0.0) for e in epsilons]
    if not eps_list:
        raise ValueError("epsilons must hold at least one value. Received: []")
    if isinstance(attacks, Mapping):
        table = {str(name): resolve_attack(fn) for name, fn in attacks.items()}
    else:
        table = {str(name): resolve_attack(name) for name in attacks}
    step_rule = attack_kwargs.pop("step_size", None)
    num_steps = attack_kwargs.get("num_steps", 20)
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
            kwargs = dict(attack_kwargs, epsilon=eps)
            if fn is fgsm:
                kwargs = {k: v for k, v in kwargs.items() if k in _FGSM_ARGS}
            elif callable(step_rule):
                kwargs["step_size"] = float(step_rule(eps))
            elif step_rule is not None:
                kwargs["step_size"] = step_rule
            else:
                kwargs["step_size"] = 2.5 * eps / num_steps
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
    labels = np.asarray(_checks.labels(y, len(x)))
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
) -> dict[str, np.ndarray]:
    """Loss and prediction of ``model`` on the plane ``x + alpha * g + beta * g_perp``.

    ``g = sign(grad_x l(f(x), y))`` is the FGSM direction (so ``alpha`` is an L-infinity step in
    input units, and by Taylor ``l(x + h) ~ l(x) + grad^T h`` it is the steepest local ascent);
    ``g_perp`` is a random +-1 vector (seeded) with its component along ``g`` removed, so it is
    orthogonal to ``g`` and of about the same size. The inputs are not clipped to the valid
    range: this is a picture of the function around ``x``.

    Args:
        model: Keras model returning logits.
        x: One input, shape (H, W, C) or (1, H, W, C).
        y: Its integer label.
        alphas: Steps along ``g``.
        betas: Steps along ``g_perp`` (default: ``alphas``).
        seed: Seed of ``g_perp``.
        batch_size: Grid points per forward pass.

    Returns:
        A dict with ``alphas``, ``betas`` (1-D arrays), ``loss`` and ``pred`` (arrays of shape
        (len(betas), len(alphas)): cross-entropy of ``y`` and the predicted class), ``g`` and
        ``g_perp`` (the directions, shaped like one input).

    Raises:
        ValueError: A batch of more than one input, or empty alphas or betas.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim >= 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim < 1 or (x.ndim == 4):
        raise ValueError(f"x must be one input. Received: x with shape {x.shape}")
    seed = _checks.seed(seed)
    batch_size = _checks.batch_size(batch_size)
    alphas = np.asarray(alphas, dtype=np.float32).reshape(-1)
    betas = alphas if betas is None else np.asarray(betas, dtype=np.float32).reshape(-1)
    if alphas.size == 0 or betas.size == 0:
        raise ValueError("alphas and betas must not be empty.")
    label = tf.constant([int(np.asarray(y).reshape(-1)[0])], tf.int32)
    grad = loss_gradient_fn(model)(tf.constant(x[np.newaxis]), label)
    g = np.sign(np.asarray(grad[0], dtype=np.float32))
    r = np.random.default_rng(seed).choice(np.array([-1.0, 1.0], np.float32), size=x.shape)
    g_dot = float(np.sum(g * g))
    g_perp = r - (np.sum(r * g) / g_dot) * g if g_dot > 0 else r
    grid_a, grid_b = np.meshgrid(alphas, betas)
    points = (
        x[np.newaxis]
        + grid_a.reshape(-1, *([1] * x.ndim)) * g[np.newaxis]
        + grid_b.reshape(-1, *([1] * x.ndim)) * g_perp[np.newaxis]
    ).astype(np.float32)
    losses, preds = [], []
    for batch in _batches(points, batch_size):
        logits = tf.cast(model(tf.constant(batch), training=False), tf.float32)
        labels = tf.fill([tf.shape(logits)[0]], label[0])
        losses.append(np.asarray(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))
        preds.append(np.asarray(tf.argmax(logits, axis=-1)))
    shape = grid_a.shape
    return {
        "alphas": alphas,
        "betas": betas,
        "loss": np.concatenate(losses).reshape(shape),
        "pred": np.concatenate(preds).reshape(shape),
        "g": g,
        "g_perp": g_perp.astype(np.float32),
    }
