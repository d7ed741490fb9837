"""AutoAttack: Square and FAB-T stay in the ball, are seeded, break a linear model where the
closed form says they must; the standard protocol sees through three masked models."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_attacks import train_template_model

from cnn_utils import autoattack, robustness

EPS = {"linf": 0.15, "l2": 1.0}
P = {"linf": np.inf, "l2": 2}


@pytest.fixture(scope="module")
def trained():
    return train_template_model()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", ["square", "fab"])
def test_in_ball_clip_range_and_seeded(trained, attack, norm):
    model, x, y = trained
    x, y = x[:40], y[:40]
    lo, hi = 0.1, 0.9
    x = np.clip(x, lo, hi)
    budget = {"square": 150, "fab": 10}[attack]
    fn = getattr(autoattack, attack)
    kwargs = dict(norm=norm, clip_value_min=lo, clip_value_max=hi)
    x_adv = np.asarray(fn(model, x, y, EPS[norm], budget, seed=0, **kwargs))
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.isfinite(x_adv).all()
    assert robustness.lp_distance(x, x_adv, P[norm]).max() <= EPS[norm] + 1e-5
    assert x_adv.min() >= lo - 1e-7 and x_adv.max() <= hi + 1e-7
    again = np.asarray(fn(model, x, y, EPS[norm], budget, seed=0, **kwargs))
    np.testing.assert_array_equal(x_adv, again)
    broken = robustness.predict_labels(model, x_adv) != y
    assert broken.any()  # both attacks find something on the template model
    if attack == "square":  # another seed, another search
        other = np.asarray(fn(model, x, y, EPS[norm], budget, seed=1, **kwargs))
        assert not np.array_equal(x_adv, other)
    if attack == "fab":  # an example FAB cannot break within epsilon is returned as it was
        np.testing.assert_array_equal(x_adv[~broken], x[~broken])


class Linear(keras.Model):
    """Logits ``[0, w . x + b, -100]``: class 1 wins where ``w . x + b > 0``; class 2 never."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = tf.constant(w.reshape(-1, 1), tf.float32), float(b)

    def call(self, inputs, training=False):
        flat = tf.reshape(inputs, [tf.shape(inputs)[0], -1])
        z1 = flat @ self.w + self.b
        return tf.concat([tf.zeros_like(z1), z1, tf.zeros_like(z1) - 100.0], axis=1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_a_linear_model_falls_exactly_where_the_closed_form_says(norm):
    """Inside the box the closest point of the boundary is at ``|w . x + b| / ||w||_q`` (q the
    dual norm). Both attacks break every example at 1.5 times that distance and, the control,
    none at 0.9 times it (no attack can: the bound is exact)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(64).astype(np.float32)
    x = np.full((12, 8, 8, 1), 0.5, np.float32) + rng.uniform(-0.05, 0.05, (12, 8, 8, 1))
    x = x.astype(np.float32)
    dual = np.abs(w).sum() if norm == "linf" else np.linalg.norm(w)
    margin = x.reshape(12, -1) @ w
    b = -float(np.max(margin)) - 0.02 * dual  # every example in class 0, at most 0.2 away
    model = Linear(w, b)
    y = np.zeros(12, np.int64)
    closest = -(margin + b) / dual
    assert (robustness.predict_labels(model, x) == 0).all() and closest.max() <= 0.2
    for attack, budget in (("square", 1000), ("fab", 20)):
        fn = getattr(autoattack, attack)
        for scale, expected in ((1.5, True), (0.9, False)):
            eps = float(scale * closest.max()) if expected else float(scale * closest.min())
            x_adv = fn(model, x, y, eps, budget, norm=norm, seed=0)
            broken = robustness.predict_labels(model, x_adv) != y
            assert broken.all() if expected else not broken.any(), (attack, scale, broken)
    # FAB finds the closest point itself: within 10 % of the closed form.
    x_fab = autoattack.fab(model, x, y, 1.0, 20, norm=norm)
    found = robustness.lp_distance(x, x_fab, P[norm])
    np.testing.assert_allclose(found, closest, rtol=0.1)


class Masked(keras.Model):
    """The template model behind one of three masks (its decisions are the model's)."""

    def __init__(self, inner, kind):
        super().__init__()
        self.inner, self.kind = inner, kind

    def call(self, inputs, training=False):
        if self.kind == "quantised":  # round to 1/16: the gradient is exactly zero
            inputs = tf.stop_gradient(tf.round(inputs * 16.0) / 16.0)
        if self.kind == "noise":  # random noise at test time: a stochastic gradient
            inputs = inputs + 0.05 * tf.random.normal(tf.shape(inputs))
        logits = self.inner(inputs, training=training)
        return 1e4 * logits if self.kind == "saturated" else logits


BUDGET = dict(num_steps=10, target_classes=2, square_queries=300, seed=0, verbose=0)
CHECKS = dict(num_steps=10, epsilons=[0.0, 0.15, 1.0], strong=True, strong_steps=10)
SYMPTOM = {
    "saturated": "zero gradients",
    "quantised": "white-box <= black-box",
    "noise": "deterministic forward pass",
}


def _checks(model, x, y):
    """The masking checks with the standard protocol: its accuracy, Square's, and the rows."""
    return robustness.gradient_masking_checks(
        model, x, y, 0.15, target_classes=2, square_queries=300, seed=0, **CHECKS
    )


@pytest.mark.parametrize("kind", ["saturated", "quantised", "noise"])
def test_the_standard_protocol_and_the_checks_see_through_masking(trained, kind):
    model, x, y = trained
    x, y = x[:40], y[:40]
    masked = Masked(model, kind)
    checks = _checks(masked, x, y)
    protocol, black_box = checks.attrs["strong"], checks.attrs["black_box"]
    assert protocol <= black_box + 0.01, checks  # Square alone finds nothing the protocol missed
    assert not checks.loc[SYMPTOM[kind], "passed"], checks
    if kind != "noise":  # the gradient was zero on every example, and the checks say so
        assert checks.attrs["zero_gradient"].all()
    if kind == "quantised":  # the control: without Square the protocol is fooled
        lite = autoattack.evaluate_robustness(masked, x, y, 0.15, version="lite", **BUDGET)
        assert lite.accuracy == 1.0 and lite.accuracy >= black_box + 0.1
        assert lite.zero_gradient.all() and lite.table.loc["apgd-ce", "zero_gradients"] == 40


def test_the_plain_model_passes_and_is_not_flagged(trained):
    """The control of the masked models: the same model unmasked shows no zero gradient, and
    the black-box and determinism rows pass."""
    model, x, y = trained
    checks = _checks(model, x[:40], y[:40])
    assert not checks.attrs["zero_gradient"].any()
    assert checks.loc[list(SYMPTOM.values()), "passed"].all(), checks


def test_versions_stages_and_eot(trained):
    model, x, y = trained
    x, y = x[:30], y[:30]
    stages = {
        version: list(
            autoattack.evaluate_robustness(
                model, x, y, 0.1, version=version, eot=2, **BUDGET
            ).table.index
        )
        for version in autoattack.VERSIONS
    }
    assert stages["lite"] == ["clean", "apgd-ce", "apgd-t (target 1)", "apgd-t (target 2)", "final"]
    assert stages["rand"] == ["clean", "apgd-ce", "apgd-dlr", "final"]
    assert stages["standard"][-3:] == ["fab-t (target 2)", "square", "final"]
    with pytest.raises(ValueError, match="version must be one of"):
        autoattack.evaluate_robustness(model, x, y, 0.1, version="plus")
    with pytest.raises(ValueError, match="num_queries"):
        autoattack.square(model, x, y, 0.1, 0)
    small = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    with pytest.raises(ValueError, match="5 x 5"):
        autoattack.square(small, x[:, :4, :4], y, 0.1, 10)
