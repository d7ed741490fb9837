"""Tests of cnn_utils.exercises: every check accepts a solution and rejects typical mistakes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn_utils import attacks, exercises
from cnn_utils.exercises import ex05


def status(feedback):
    return feedback.status


# ---------------------------------------------------------------------------------------------
# The mechanism
# ---------------------------------------------------------------------------------------------


def test_report_statuses_and_printing(capsys):
    def right():
        return None

    def wrong():
        raise exercises.Wrong("shape (28, 28) but expected one map per image")

    def untouched():
        raise NotImplementedError

    def crashes():
        raise KeyError("x")

    assert exercises.report("1.1", right).correct
    fb = exercises.report("1.2", wrong)
    assert fb.status == exercises.WRONG and "one map per image" in str(fb) and not fb
    assert exercises.report("1.3", untouched).status == exercises.NOT_ATTEMPTED
    crash = exercises.report("1.4", crashes)  # outside the student's code: the check's fault
    assert crash.status == exercises.ERROR and "check itself failed" in crash.message
    assert "KeyError" in crash.message and "[check error]" in str(crash)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and printed[0].startswith("Exercise 1.1 [correct]")
    exercises.report("1.5", right, verbose=0)
    assert capsys.readouterr().out == ""


def test_student_errors_and_check_errors_are_told_apart():
    def student_fails():
        with exercises.student_code():
            raise ZeroDivisionError("division by zero")

    fb = exercises.report("1.4", student_fails, verbose=0)
    assert fb.status == exercises.WRONG and fb.message.startswith("your code raised")

    def check_fails():
        raise RuntimeError("no data")

    fb = exercises.report("1.4", check_fails, verbose=0)
    assert fb.status == exercises.ERROR and "your code" not in fb.message


def test_forbid_blocks_and_restores():
    import math

    with exercises.forbid((math, "sqrt"), reason="write it yourself."):
        with pytest.raises(exercises.Wrong, match="sqrt: write it yourself"):
            math.sqrt(4.0)
    assert math.sqrt(4.0) == 2.0


def test_as_int_refuses_non_integers():
    assert exercises.as_int(3) == 3 and exercises.as_int(np.int64(3)) == 3
    assert exercises.as_int(3.0) == 3
    for bad in (30.9, 14.2, 14.99, "3", True):
        with pytest.raises(exercises.Wrong):
            exercises.as_int(bad)


def test_helpers_refuse_bad_answers():
    for bad in ("3", True, [1, 2], float("nan")):
        with pytest.raises(exercises.Wrong):
            exercises.as_number(bad)
    with pytest.raises(exercises.Wrong, match=r"shape \(28, 28\) but shape \(2, 28, 28\)"):
        exercises.as_array(np.zeros((28, 28)), (2, 28, 28))


# ---------------------------------------------------------------------------------------------
# Notebook 05
# ---------------------------------------------------------------------------------------------

W = np.array([-1, -1, 1, -1, 1, -1, 1, 1, -1, 1], dtype=np.float64)


def test_ex05_linear_shift():
    assert ex05.linear_shift(0.1 * np.abs(W).sum(), W, 0.1, verbose=0).correct
    assert status(ex05.linear_shift(..., W, 0.1, verbose=0)) == exercises.NOT_ATTEMPTED
    l2 = ex05.linear_shift(0.1 * np.linalg.norm(W), W, 0.1, verbose=0)
    assert not l2 and "L2" in l2.message
    signs = ex05.linear_shift(0.1 * W.sum(), W, 0.1, verbose=0)
    assert not signs and "signs" in signs.message
    assert not ex05.linear_shift("1.0", W, 0.1, verbose=0)


def test_ex05_linear_step():
    assert ex05.linear_step(0.1 * np.sign(W), W, 0.1, verbose=0).correct
    assert not ex05.linear_step(0.2 * np.sign(W), W, 0.1, verbose=0)  # outside the ball
    assert not ex05.linear_step(0.1 * np.ones_like(W), W, 0.1, verbose=0)  # ignores signs
    assert not ex05.linear_step(np.zeros(3), W, 0.1, verbose=0)  # wrong shape


@pytest.fixture(scope="module")
def trained():
    """A tiny model trained on three noisy templates (clean accuracy near 1)."""
    rng = np.random.default_rng(2)
    templates = rng.random((3, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 3, 400)
    x = np.clip(templates[y] + 0.25 * rng.standard_normal((400, 8, 8, 1)), 0, 1)
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x[:300].astype("float32"), y[:300], epochs=10, batch_size=50, verbose=0)
    return model, x[300:].astype("float32"), y[300:]


def solution_fgsm(model, x, y, epsilon):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
    return tf.clip_by_value(x + epsilon * tf.sign(tape.gradient(loss, x)), 0.0, 1.0)


def test_ex05_fgsm_accepts_the_solution_and_rejects_mistakes(trained):
    model, x, y = trained
    assert ex05.fgsm_function(solution_fgsm, model, x[:32], y[:32], verbose=0).correct
    x_before = x[:32].copy()

    def vandal(model, images, labels, eps):
        out = solution_fgsm(model, images, labels, eps)
        images[...] = 0.5  # writes into its input: the check passed a copy
        return out

    assert ex05.fgsm_function(vandal, model, x[:32], y[:32], verbose=0).correct
    np.testing.assert_array_equal(x[:32], x_before)

    def no_clip(model, x, y, eps):
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
        return x + eps * tf.sign(tape.gradient(loss, x))

    def descends(model, x, y, eps):
        return tf.clip_by_value(2 * x - solution_fgsm(model, x, y, eps), 0.0, 1.0)

    def raw_gradient(model, x, y, eps):
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
        g = tape.gradient(loss, x)
        return tf.clip_by_value(x + eps * g / tf.reduce_max(tf.abs(g)), 0.0, 1.0)

    def skeleton(model, x, y, eps):
        raise NotImplementedError

    messages = {}
    for fn in (no_clip, descends, raw_gradient):
        feedback = ex05.fgsm_function(fn, model, x[:32], y[:32], verbose=0)
        assert feedback.status == exercises.WRONG, fn.__name__
        messages[fn.__name__] = feedback.message
    assert "clip" in messages["no_clip"]
    assert "went down" in messages["descends"]
    assert "full step" in messages["raw_gradient"] or "sign" in messages["raw_gradient"]
    assert status(ex05.fgsm_function(skeleton, model, x, y, verbose=0)) == exercises.NOT_ATTEMPTED


def solution_fgm_l2(model, x, y, epsilon):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
    g = tape.gradient(loss, x)
    norms = tf.sqrt(tf.reduce_sum(g**2, axis=[1, 2, 3], keepdims=True))
    return tf.clip_by_value(x + epsilon * g / tf.maximum(norms, 1e-12), 0.0, 1.0)


def test_ex05_l2_fast_gradient(trained):
    model, x, y = trained
    args = (model, x[:32], y[:32], 0.5, "l2")
    assert ex05.fgsm_function(solution_fgm_l2, *args, verbose=0).correct
    signed = ex05.fgsm_function(solution_fgsm, *args, verbose=0)  # the L-inf step
    assert not signed and "stay in the ball" in signed.message

    def batch_norm(model, x, y, epsilon):  # one norm for the whole batch
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
        g = tape.gradient(loss, x)
        return tf.clip_by_value(x + epsilon * g / tf.norm(g), 0.0, 1.0)

    shared = ex05.fgsm_function(batch_norm, *args, verbose=0)
    assert not shared and ("shorter" in shared.message or "image by image" in shared.message)


def test_ex05_fast_gradient_calling_the_package_is_not_yet(trained):
    model, x, y = trained

    def package(model, images, labels, eps):
        return attacks.fgsm(model, images, labels, eps, norm="l2")

    feedback = ex05.fgsm_function(package, model, x[:32], y[:32], 0.5, "l2", verbose=0)
    assert feedback.status == exercises.WRONG and "fgsm" in feedback.message
    assert np.asarray(attacks.fgsm(model, x[:2], y[:2], 0.1)).shape == x[:2].shape  # restored


def test_ex05_fast_gradient_for_one_radius_only_is_not_yet(trained):
    model, x, y = trained

    def fixed_radius(model, images, labels, eps):  # ignores eps: the notebook's 0.5 only
        return solution_fgm_l2(model, images, labels, 0.5)

    feedback = ex05.fgsm_function(fixed_radius, model, x[:32], y[:32], 0.5, "l2", verbose=0)
    assert feedback.status == exercises.WRONG


def test_ex05_smallest_epsilon(trained):
    model, x, y = trained
    xi, yi = x[:1], y[:1]
    eps = ex05.GRID_STEP
    while not ex05.fooled(model, xi, yi, eps):
        eps = round(eps + ex05.GRID_STEP, 6)
        assert eps < 1.0
    assert ex05.smallest_epsilon(eps, model, xi, yi, verbose=0).correct
    too_big = ex05.smallest_epsilon(round(eps + 5 * ex05.GRID_STEP, 6), model, xi, yi, verbose=0)
    if not too_big:  # the attack need not be monotone in eps, but usually is
        assert "already changes" in too_big.message
    assert not ex05.smallest_epsilon(round(eps - ex05.GRID_STEP, 6), model, xi, yi, verbose=0)
    assert not ex05.smallest_epsilon(eps + 0.0007, model, xi, yi, verbose=0)  # off the grid
    assert status(ex05.smallest_epsilon(None, model, xi, yi, verbose=0)) == exercises.NOT_ATTEMPTED


def test_ex05_targeted(trained):
    model, x, y = trained
    xs, target = x[:8], (y[:8] + 1) % 3
    adv = attacks.pgd(model, xs, target, 0.5, 40, 0.05, targeted=True, seed=0)
    assert ex05.targeted(adv, model, xs, target, 0.5, verbose=0).correct
    unchanged = ex05.targeted(xs + 0.0, model, xs, target, 0.5, verbose=0)
    assert not unchanged and "did not change" in unchanged.message
    outside = ex05.targeted(np.clip(xs + 0.7, 0, 1), model, xs, target, 0.5, verbose=0)
    assert not outside and "outside the eps-ball" in outside.message
    untargeted = attacks.pgd(model, xs, y[:8], 0.5, 40, 0.05, seed=0)
    wrong_class = ex05.targeted(untargeted, model, xs, (y[:8] + 2) % 3, 0.5, verbose=0)
    assert not wrong_class


def _noise_case(model, x, y, eps, noise):
    adv = np.asarray(attacks.fgsm(model, x, y, eps))
    fgsm_acc = float(np.mean(np.argmax(model(adv), -1) == y))
    noisy = np.clip(x + noise, 0, 1).astype(np.float32)
    noise_acc = float(np.mean(np.argmax(model(noisy), -1) == y))
    return noisy, noise_acc, fgsm_acc


def test_ex05_noise_control(trained):
    model, x, y = trained
    eps = 0.2
    sign = np.random.default_rng(123).choice([-1.0, 1.0], size=x.shape)
    noisy, noise_acc, fgsm_acc = _noise_case(model, x, y, eps, eps * sign)
    check = ex05.noise_control
    assert check(noisy, noise_acc, fgsm_acc, model, x, y, eps, verbose=0).correct
    assert not check(noisy, noise_acc, noise_acc, model, x, y, eps, verbose=0)  # swapped
    assert not check(noisy, fgsm_acc, fgsm_acc, model, x, y, eps, verbose=0)
    assert not check(noisy, noise_acc * 100, fgsm_acc, model, x, y, eps, verbose=0)
    assert check(..., noise_acc, fgsm_acc, model, x, y, eps, verbose=0).status == (
        exercises.NOT_ATTEMPTED
    )


def test_ex05_noise_control_without_noise_is_not_yet(trained):
    # Reporting the clean accuracy as the noise accuracy (no noise at all) is caught even when
    # the noise would not change the accuracy: the images themselves are checked.
    model, x, y = trained
    clean, clean_acc, fgsm_acc = _noise_case(model, x, y, 0.2, 0.0)
    feedback = ex05.noise_control(clean, clean_acc, fgsm_acc, model, x, y, 0.2, verbose=0)
    assert feedback.status == exercises.WRONG and "clean images" in feedback.message


@pytest.mark.parametrize("kind", ["uniform", "gaussian"])
def test_ex05_noise_control_uniform_or_gaussian_is_not_yet(trained, kind):
    model, x, y = trained
    rng = np.random.default_rng(7)
    noise = rng.uniform(-0.2, 0.2, x.shape) if kind == "uniform" else rng.normal(0, 0.2, x.shape)
    noisy, noise_acc, fgsm_acc = _noise_case(model, x, y, 0.2, noise)
    feedback = ex05.noise_control(noisy, noise_acc, fgsm_acc, model, x, y, 0.2, verbose=0)
    assert feedback.status == exercises.WRONG and "exactly eps" in feedback.message


def test_ex05_noise_control_gradient_signs_or_one_sign_are_not_yet(trained):
    model, x, y = trained
    eps = 0.2
    up, up_acc, fgsm_acc = _noise_case(model, x, y, eps, eps * np.ones(x.shape))
    feedback = ex05.noise_control(up, up_acc, fgsm_acc, model, x, y, eps, verbose=0)
    assert feedback.status == exercises.WRONG and "random" in feedback.message
    adv = np.asarray(attacks.fgsm(model, x, y, eps))
    adv_acc = float(np.mean(np.argmax(model(adv), -1) == y))
    feedback = ex05.noise_control(adv, adv_acc, fgsm_acc, model, x, y, eps, verbose=0)
    assert feedback.status == exercises.WRONG  # FGSM itself is no control


# Tools a student may call (they compute the problem, or a fact about the student's own answer)
TOOLS = {
    "ex01": {"place", "detectors", "face_parts"},
    "ex02": {"small_cnn_mult_adds", "googlenet_mult_adds"},
    "ex03": {"toy_gradient"},
    "ex04": {"occlusion_image"},
    "ex05": {"fooled", "attack_at"},
    "ex06": {"accuracy_at", "saturated", "colleagues_model"},
}


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_nothing_public_returns_an_answer(name):
    import importlib
    import inspect
    import typing

    module = importlib.import_module(f"cnn_utils.exercises.{name}")
    public = {
        key: value
        for key, value in vars(module).items()
        if not key.startswith("_")
        and inspect.isfunction(value)
        and value.__module__ == module.__name__
    }
    for key, function in public.items():
        returns = typing.get_type_hints(function).get("return")
        assert returns is exercises.Feedback or key in TOOLS[name], (
            f"{name}.{key} is public and returns {returns}: a check returns Feedback"
        )
