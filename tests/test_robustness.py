import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import build_tiny_model
from test_attacks import NUM_CLASSES, SHAPE, _templates, images, labels, train_template_model

from cnn_utils import attacks, autoattack, robustness


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


@pytest.fixture(scope="module")
def trained():
    return train_template_model()


def test_predict_with_confidence(model):
    x = images()
    labels_, confidences = robustness.predict_with_confidence(model, x, batch_size=5)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model(x)))
    np.testing.assert_array_equal(labels_, probabilities.argmax(-1))
    np.testing.assert_allclose(confidences, probabilities.max(-1), rtol=1e-5)
    np.testing.assert_array_equal(robustness.predict_labels(model, x, batch_size=3), labels_)


def test_prediction_traces_a_keras_model_once_and_leaves_other_callables_eager(model):
    x = images()
    eager = keras.ops.convert_to_numpy(model(x, training=False)).argmax(-1)
    for batch_size in (3, 5, len(x)):  # batches of several sizes share one trace
        np.testing.assert_array_equal(robustness.predict_labels(model, x, batch_size), eager)
    cache, _ = attacks.model_cache(model)
    forward = cache["forward", tuple(x.shape[1:]), tf.float32]
    assert len(forward._list_all_concrete_functions()) == 1

    class NumpyNoise:  # a callable with a NumPy draw: traced, the draw would become a constant
        def __call__(self, v, training=False):
            noise = np.random.default_rng().normal(0, 10, (len(v), NUM_CLASSES))
            return model(v, training=False) + noise.astype("float32")

    noisy = NumpyNoise()
    draws = [robustness.predict_labels(noisy, x, batch_size=len(x)) for _ in range(3)]
    assert any((draws[0] != d).any() for d in draws[1:])


def test_robust_accuracy_batches_and_progress(trained, capsys):
    model, x, y = trained
    a = robustness.robust_accuracy(model, x, y, "fgsm", batch_size=17, epsilon=0.1, verbose=0)
    assert capsys.readouterr().out == ""
    b = robustness.robust_accuracy(model, x, y, "fgsm", batch_size=100, epsilon=0.1, verbose=1)
    assert "accuracy" in capsys.readouterr().out
    assert a == pytest.approx(b)


def test_epsilon_sweep_table(trained):
    model, x, y = trained
    table = robustness.epsilon_sweep(model, x, y, [0.0, 0.1, 0.3], num_steps=5, seed=0, verbose=0)
    assert list(table.columns) == ["fgsm", "pgd", "mim"]
    assert list(table.index) == [0.0, 0.1, 0.3]
    assert table.loc[0.0].nunique() == 1  # clean accuracy for every attack
    assert (table.diff().iloc[1:] <= 1e-9).all().all()  # non-increasing in epsilon
    assert (table["pgd"] <= table["fgsm"]).all()


def test_transfer_matrix(trained):
    model, x, y = trained
    other = build_tiny_model(seed=4)
    other.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(9)
    yy = rng.integers(0, NUM_CLASSES, 300)
    xx = np.clip(_templates()[yy] + 0.25 * rng.standard_normal((300, *SHAPE)), 0, 1)
    other.fit(xx.astype("float32"), yy, epochs=10, batch_size=50, verbose=0)
    frame = robustness.transfer_matrix({"a": model, "b": other}, x, y, "fgsm", epsilon=0.2)
    assert frame.shape == (2, 2) and frame.index.name == "source"
    assert 0 < frame.attrs["n"] <= len(y)
    assert ((frame.values >= 0) & (frame.values <= 1)).all()
    assert frame.loc["a", "a"] > 0.5


def test_lp_distance_values():
    x = np.zeros((2, 2, 2))
    x_adv = np.array([[[1, -2], [0, 2]], [[0, 0], [0, 0.5]]])
    np.testing.assert_allclose(robustness.lp_distance(x, x_adv, 1), [5, 0.5])
    np.testing.assert_allclose(robustness.lp_distance(x, x_adv, 2), [3, 0.5])
    np.testing.assert_allclose(robustness.lp_distance(x, x_adv, np.inf), [2, 0.5])
    np.testing.assert_allclose(robustness.lp_distance(x, x_adv, "inf"), [2, 0.5])
    with pytest.raises(ValueError, match="p must be"):
        robustness.lp_distance(x, x_adv, 3)
    with pytest.raises(ValueError, match="same shape"):
        robustness.lp_distance(x, x_adv[:1], 2)


def test_loss_surface(trained):
    model, x, y = trained
    alphas = np.linspace(-0.2, 0.2, 5)
    surface = robustness.loss_surface(model, x[0], y[0], alphas, np.linspace(-0.1, 0.1, 3))
    assert surface["loss"].shape == (3, 5) and surface["pred"].shape == (3, 5)
    assert abs(float(np.sum(surface["g"] * surface["g_perp"]))) < 1e-3
    centre = float(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y[:1], model(x[:1]))
    )
    assert surface["loss"][1, 2] == pytest.approx(centre, rel=1e-4)
    assert surface["loss"][1, 4] > surface["loss"][1, 0]  # ascent along +g


def test_loss_surface_clip_stays_in_the_image_range(trained):
    model, x, y = trained
    x0 = np.asarray(x[0]).copy()
    x0[:2] = 0.0  # pixels on the faces of the range, which the unclipped plane leaves
    x0[-2:] = 1.0
    alphas = np.linspace(-0.5, 0.5, 5)
    plain = robustness.loss_surface(model, x0, y[0], alphas)
    clipped = robustness.loss_surface(model, x0, y[0], alphas, clip=True)
    np.testing.assert_array_equal(plain["g"], clipped["g"])
    assert clipped["loss"][2, 2] == pytest.approx(plain["loss"][2, 2], rel=1e-6)  # the centre
    # Recompute the clipped corner by hand: the model's loss at clip(x + a g + b g_perp).
    corner = np.clip(x0 + 0.5 * clipped["g"] + 0.5 * clipped["g_perp"], 0.0, 1.0)
    expected = float(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            y[:1], model(corner[np.newaxis])
        )
    )
    assert clipped["loss"][4, 4] == pytest.approx(expected, rel=1e-4)
    assert not np.allclose(clipped["loss"], plain["loss"])  # the unclipped plane left [0, 1]
    narrow = robustness.loss_surface(
        model, x0 * 0.5 + 0.25, y[0], alphas, clip=True, clip_value_min=0.25, clip_value_max=0.75
    )
    assert np.isfinite(narrow["loss"]).all()
    with pytest.raises(ValueError, match="clip must be True or False"):
        robustness.loss_surface(model, x0, y[0], alphas, clip="yes")
    with pytest.raises(ValueError, match="clip_value_min must be < clip_value_max"):
        robustness.loss_surface(model, x0, y[0], alphas, clip=True, clip_value_min=1.0)
    with pytest.raises(ValueError):
        robustness.loss_surface(model, x0 + 2.0, y[0], alphas, clip=True)  # x outside the range


def test_bad_helper_arguments(model):
    x, y = images(4), labels(4)
    with pytest.raises(ValueError, match="attack must be None, a callable or one of"):
        robustness.robust_accuracy(model, x, y, "cw")
    # each message names the caller's own argument
    with pytest.raises(ValueError, match=r"attacks\[1\] must be None, a callable or one of"):
        robustness.epsilon_sweep(model, x, y, [0.1], ["fgsm", "cw"], verbose=0)
    with pytest.raises(ValueError, match=r"attacks\['mine'\] must be None, a callable"):
        robustness.epsilon_sweep(model, x, y, [0.1], {"mine": "cw"}, verbose=0)
    softmax = keras.Sequential(
        [keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(NUM_CLASSES, "softmax")]
    )
    with pytest.raises(ValueError, match=r"models\['probs'\] must return logits"):
        robustness.transfer_matrix({"a": model, "probs": softmax}, x, y, "fgsm", epsilon=0.1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        robustness.robust_accuracy(model, x, y, "fgsm", batch_size=0)
    with pytest.raises(ValueError, match="targeted"):
        robustness.robust_accuracy(model, x, y, "pgd", targeted=True)
    with pytest.raises(ValueError, match="epsilons must be >= 0"):
        robustness.epsilon_sweep(model, x, y, [0.1, -0.1], verbose=0)
    with pytest.raises(ValueError, match="epsilons must hold at least one"):
        robustness.epsilon_sweep(model, x, y, [], verbose=0)


# ---------------------------------------------------------------------------------------------
# Best iterate, restarts, APGD, the protocol, gradient-masking checks
# ---------------------------------------------------------------------------------------------


def _last_iterate_pgd(model, x, y, **kwargs):
    return attacks.pgd(model, x, y, **kwargs)  # a plain callable: scored on its last iterate


def test_best_iterate_pgd_is_at_least_as_strong_and_exits_early(trained):
    model, x, y = trained
    kwargs = {"epsilon": 0.2, "num_steps": 10, "step_size": 0.05, "seed": 0, "verbose": 0}
    last = robustness.robust_accuracy(model, x, y, _last_iterate_pgd, **kwargs)
    best, details = robustness.robust_accuracy(model, x, y, "pgd", return_details=True, **kwargs)
    assert best <= last
    assert details["passes"] < 10  # broken examples stop being attacked
    np.testing.assert_array_equal(details["robust"].mean(), best)
    more, more_details = robustness.robust_accuracy(
        model, x, y, "pgd", restarts=2, return_details=True, **kwargs
    )
    assert more <= best and len(more_details["per_run"]) == 3
    assert more_details["per_run"] == sorted(more_details["per_run"], reverse=True)
    with pytest.raises(ValueError, match="restarts must be >= 0"):
        robustness.robust_accuracy(model, x, y, "pgd", restarts=-1, verbose=0)
    with pytest.raises(ValueError, match="pgd has no argument 'num_step'"):
        robustness.robust_accuracy(model, x, y, "pgd", num_step=3, verbose=0)


@pytest.mark.parametrize("loss", autoattack.LOSSES)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_stays_in_ball_and_clip_range(trained, norm, loss):
    model, x, y = trained
    x = x[:40] * 1.5 - 0.5  # in [-0.5, 1]
    eps = 0.1 if norm == "linf" else 0.8
    x_adv = autoattack.apgd(
        model, x, y[:40], eps, 8, loss=loss, norm=norm, clip_value_min=-0.5, seed=1
    ).numpy()
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape and np.all(np.isfinite(x_adv))
    p = np.inf if norm == "linf" else 2
    assert robustness.lp_distance(x, x_adv, p).max() <= eps * (1 + 1e-5) + 1e-6
    assert x_adv.min() >= -0.5 and x_adv.max() <= 1.0


def test_apgd_zero_gradient_gives_no_nan():
    from test_attacks import ConstantModel

    x = images(6)
    for loss in autoattack.LOSSES:
        for connected in (True, False):
            x_adv = autoattack.apgd(ConstantModel(connected), x, labels(6), 0.2, 5, loss=loss)
            assert np.all(np.isfinite(x_adv.numpy()))


def test_apgd_at_least_as_strong_as_pgd_with_the_same_budget(trained):
    model, x, y = trained
    for eps in (0.1, 0.15, 0.2):
        pgd_acc = robustness.robust_accuracy(
            model, x, y, "pgd", epsilon=eps, num_steps=10, step_size=eps / 4, seed=0, verbose=0
        )
        apgd_acc = robustness.robust_accuracy(
            model, x, y, autoattack.apgd, epsilon=eps, num_steps=10, seed=0, verbose=0
        )
        assert apgd_acc <= pgd_acc + 0.02, (eps, apgd_acc, pgd_acc)


def test_apgd_does_not_retrace_when_numbers_change(trained):
    model, x, y = trained
    autoattack.apgd(model, x[:20], y[:20], 0.1, 5, seed=0)
    fn = attacks._COMPILED[model][("apgd", "linf", "ce", 1)]
    before = fn.experimental_get_tracing_count()
    autoattack.apgd(model, x[:20], y[:20], 0.2, 9, seed=3, rho=0.5)
    autoattack.apgd(model, x[:20], y[:20], 0.05, 3, clip_value_min=-1.0)
    assert fn.experimental_get_tracing_count() == before


def test_apgd_bad_arguments(model):
    with pytest.raises(ValueError, match="loss must be one of"):
        autoattack.apgd(model, images(4), labels(4), loss="cw")
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        autoattack.apgd(model, images(4), labels(4), -0.1)
    with pytest.raises(ValueError, match="at least 4 classes"):
        autoattack.apgd(model, images(4), labels(4), loss="dlr_targeted", target_rank=4)


def test_evaluate_robustness_table_and_worst_case(trained, capsys):
    model, x, y = trained
    report = autoattack.evaluate_robustness(
        model, x, y, 0.15, version="lite", num_steps=10, target_classes=2
    )
    assert list(report.table.index) == [
        "clean",
        "apgd-ce",
        "apgd-t (target 1)",
        "apgd-t (target 2)",
        "final",
    ]
    out = capsys.readouterr().out
    assert out.count("\n") == 4 and "apgd-ce" in out
    assert report.accuracy == pytest.approx(report.table.loc["final", "accuracy"])
    assert (report.table["accuracy"].diff().iloc[1:] <= 1e-12).all()
    # Every example counted as broken is misclassified at its worst case.
    wrong = robustness.predict_labels(model, report.x_adv) != y
    assert np.all(wrong[~report.robust]) and np.all(report.robust == (report.broken_by == ""))
    assert robustness.lp_distance(x, report.x_adv, np.inf).max() <= 0.15 + 1e-6
    pgd_acc = robustness.robust_accuracy(
        model, x, y, "pgd", epsilon=0.15, num_steps=10, step_size=0.04, seed=0, verbose=0
    )
    assert report.accuracy <= pgd_acc
    autoattack.evaluate_robustness(model, x, y, 0.15, version="lite", num_steps=5, verbose=0)
    assert capsys.readouterr().out == ""


def test_gradient_masking_checks_pass_on_a_plain_model(trained):
    model, x, y = trained
    other = build_tiny_model(seed=4)
    table = robustness.gradient_masking_checks(
        model, x, y, 0.15, source_model=other, num_steps=10, epsilons=[0.0, 0.1, 0.15, 0.3, 1.0]
    )
    assert list(table.index) == [
        "iterative <= single step",
        "white-box <= transfer",
        "accuracy -> 0 as eps grows",
        "accuracy monotone in eps",
        "white-box <= black-box",
        "zero gradients",
        "deterministic forward pass",
    ]
    assert table["passed"].all(), table
    skipped = robustness.gradient_masking_checks(
        model, x[:30], y[:30], 0.15, num_steps=5, square_queries=0
    )
    assert skipped.loc["white-box <= black-box", "passed"] is None
    assert skipped.loc["white-box <= transfer", "passed"] is None


def test_gradient_masking_checks_strong_protocol_and_restarts(trained):
    model, x, y = trained
    x, y = x[:40], y[:40]
    kwargs = dict(num_steps=5, epsilons=[0.0, 0.15, 1.0], seed=1, tolerance=0.0, square_queries=0)
    plain = robustness.gradient_masking_checks(model, x, y, 0.15, **kwargs)
    strong = robustness.gradient_masking_checks(
        model,
        x,
        y,
        0.15,
        restarts=2,
        strong=True,
        strong_steps=10,
        target_classes=2,
        version="lite",
        **kwargs,
    )
    assert "PGD vs the strong protocol" not in plain.index and plain.attrs["strong"] is None
    assert strong.index[4] == "PGD vs the strong protocol"
    numbers = strong.attrs
    # The white-box number is the per-example worst case: at most each attack's own accuracy.
    assert numbers["white_box"] <= min(numbers["pgd"], numbers["strong"]) + 1e-12
    assert numbers["pgd"] <= plain.attrs["pgd"] + 1e-12  # restarts only remove examples
    report = autoattack.evaluate_robustness(
        model, x, y, 0.15, version="lite", num_steps=10, target_classes=2, seed=1, verbose=0
    )
    assert numbers["strong"] == pytest.approx(report.accuracy)
    assert strong.loc["PGD vs the strong protocol", "passed"] == (
        numbers["pgd"] - numbers["white_box"] <= 0.03
    )
    assert numbers["sweep"][0.15] == numbers["pgd"]  # the sweep stays one attack (PGD)
    assert numbers["robust"].shape == (40,) and numbers["robust"].mean() == numbers["white_box"]
    with pytest.raises(ValueError, match="strong must be True or False"):
        robustness.gradient_masking_checks(model, x, y, 0.15, strong=1)
    with pytest.raises(ValueError, match="restarts"):
        robustness.gradient_masking_checks(model, x, y, 0.15, restarts=-1)
    with pytest.raises(ValueError, match="strong_gap"):
        robustness.gradient_masking_checks(model, x, y, 0.15, strong_gap=-0.1)


def test_gradient_masking_checks_catch_a_masked_model(trained):
    """A model that hides its gradient (a large constant times the logits: saturated
    softmax, the cross-entropy gradient underflows) fails the iterative <= single-step row or
    the transfer row, while its predictions are the plain model's."""
    model, x, y = trained

    class Saturated(keras.Model):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, inputs, training=False):
            logits = self.inner(inputs, training=training)
            return 1e4 * logits

    masked = Saturated(model)
    np.testing.assert_array_equal(
        robustness.predict_labels(masked, x), robustness.predict_labels(model, x)
    )
    table = robustness.gradient_masking_checks(
        masked, x, y, 0.15, source_model=model, num_steps=10, epsilons=[0.0, 0.15, 1.0]
    )
    assert not table["passed"].dropna().all(), table


def test_transfer_summary_averages_the_diagonal_and_the_rest():
    import pandas as pd

    names = ["a", "b", "c"]
    frame = pd.DataFrame(
        [[0.9, 0.3, 0.1], [0.2, 0.8, 0.4], [0.0, 0.6, 1.0]], index=names, columns=names
    )
    other = pd.DataFrame([[1.0, 0.0], [0.5, 0.5]], index=names[:2], columns=names[:2])
    summary = robustness.transfer_summary({"x": frame, "y": other})
    assert list(summary.columns) == ["x", "y"]
    assert summary.loc["white-box success", "x"] == pytest.approx(0.9)
    assert summary.loc["transfer success", "x"] == pytest.approx(1.6 / 6)
    assert summary.loc["white-box success", "y"] == pytest.approx(0.75)
    assert summary.loc["transfer success", "y"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="non-empty"):
        robustness.transfer_summary({})
    with pytest.raises(ValueError, match=r"matrices\['z'\] must be a square"):
        robustness.transfer_summary({"z": frame.iloc[:2]})
    with pytest.raises(ValueError, match="same models"):
        robustness.transfer_summary({"z": frame.set_axis(["c", "b", "a"], axis=0)})
