import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from conftest import build_tiny_model

from cnn_utils import attacks, defense, robustness

SHAPE = (8, 8, 1)
EPS = 0.2


def task(n=600, seed=0):
    """Two classes told apart by which half of an 8x8 image is brighter (margin 0.5)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = 0.4 * rng.random((n, *SHAPE), dtype=np.float32)
    x[y == 0, :, :4] += 0.5
    x[y == 1, :, 4:] += 0.5
    return x.astype("float32"), y


def tiny_classifier(seed=0, activation=None):
    return build_tiny_model(seed, activation, shape=SHAPE, classes=2)


def pgd_accuracy(model, x, y):
    return robustness.robust_accuracy(
        model, x, y, "pgd", epsilon=EPS, num_steps=10, step_size=0.05, seed=1, verbose=0
    )


@pytest.mark.parametrize(
    "attack, label_mode, num_steps, step_size",
    [
        ("pgd", "predicted", 5, 0.1),
        ("pgd", "true", 5, 0.1),
        ("fgsm_rs", "predicted", 1, 1.25 * EPS),
        ("fgsm_rs", "true", 1, 1.25 * EPS),
    ],
)
def test_fit_raises_robust_accuracy(attack, label_mode, num_steps, step_size):
    x, y = task()
    classifier = tiny_classifier()
    before = pgd_accuracy(classifier, x[500:], y[500:])
    model = defense.AdversarialModel(
        classifier, EPS, num_steps, step_size, attack=attack, label_mode=label_mode, seed=0
    )
    model.compile(keras.optimizers.Adam(0.01))
    history = model.fit(
        x[:500], y[:500], epochs=3, batch_size=50, validation_data=(x[500:], y[500:]), verbose=0
    )
    after = pgd_accuracy(classifier, x[500:], y[500:])
    assert before < 0.6
    assert after >= 0.9, (before, after)
    for key in ("loss", "accuracy", "adv_accuracy", "val_loss", "val_accuracy"):
        assert key in history.history and np.all(np.isfinite(history.history[key]))
    # The adversarial accuracy is the lower one, and training improved it.
    assert history.history["adv_accuracy"][-1] > history.history["adv_accuracy"][0]
    assert history.history["adv_accuracy"][-1] <= history.history["accuracy"][-1]
    results = model.evaluate(x[500:], y[500:], verbose=0, return_dict=True)
    assert results["adv_accuracy"] >= 0.9


def test_loss_is_weighted_sum_of_clean_and_adversarial_means():
    x, y = task(64)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for clean_weight, adversarial_weight in [(1.0, 1.0), (0.0, 1.0), (0.5, 2.0)]:
        classifier = tiny_classifier()
        model = defense.AdversarialModel(
            classifier,
            EPS,
            3,
            0.1,
            clean_weight=clean_weight,
            adversarial_weight=adversarial_weight,
            label_mode="true",
            seed=0,
        )
        model.compile("sgd")
        x_adv = model.adversarial_examples(x, y)
        _, _, loss = model._halves(x, y, None, x_adv, False)
        expected = clean_weight * loss_fn(y, classifier(x)) + adversarial_weight * loss_fn(
            y, classifier(x_adv)
        )
        np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
        assert float(np.max(np.abs(np.asarray(x_adv) - x))) <= EPS + 1e-6


def test_predicted_labels_attack_the_prediction_and_fgsm_has_no_random_start():
    x, y = task(32)
    wrong = 1 - y  # with true labels the attack would move towards the predicted class
    classifier = tiny_classifier()
    predicted = defense.AdversarialModel(classifier, EPS, 1, EPS, attack="fgsm", seed=0)
    x_pred = np.asarray(predicted.adversarial_examples(x, wrong))
    soft = np.asarray(attacks.fgsm(classifier, x, wrong, EPS, soft_label=True))
    np.testing.assert_allclose(x_pred, soft, atol=1e-6)  # y ignored, deterministic
    true = defense.AdversarialModel(classifier, EPS, 1, EPS, attack="fgsm", label_mode="true")
    np.testing.assert_allclose(
        np.asarray(true.adversarial_examples(x, wrong)),
        np.asarray(attacks.fgsm(classifier, x, wrong, EPS)),
        atol=1e-6,
    )


def test_epsilon_ramp_and_classifier_saves_alone(tmp_path):
    x, y = task(200)
    classifier = tiny_classifier()
    model = defense.AdversarialModel(classifier, EPS, 2, 0.1, seed=0)
    model.compile(keras.optimizers.Adam(0.01))
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: seen.append(float(model.epsilon.numpy()))
    )
    model.fit(x, y, epochs=1, batch_size=50, verbose=0, callbacks=[defense.EpsilonRamp(2), record])
    np.testing.assert_allclose(seen, [EPS / 2, EPS, EPS, EPS], rtol=1e-6)
    assert float(model.step_size.numpy()) == pytest.approx(0.1)
    assert not any("epsilon" in w.path for w in model.classifier.weights)
    path = tmp_path / "robust.keras"
    model.classifier.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), 1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epsilon": -0.1}, "epsilon=-0.1"),
        ({"epsilon": "big"}, "epsilon='big'"),
        ({"num_steps": 0}, "num_steps=0"),
        ({"num_steps": 2.5}, "num_steps=2.5"),
        ({"step_size": 0.0}, "step_size=0.0"),
        ({"attack": "mim"}, "attack='mim'"),
        ({"attack": "fgsm_rs"}, "num_steps=3"),
        ({"label_mode": "soft"}, "label_mode='soft'"),
        ({"norm": "l1"}, "norm='l1'"),
        ({"clean_weight": -1.0}, "clean_weight=-1.0"),
        ({"clean_weight": 0.0, "adversarial_weight": 0.0}, "both be 0"),
        ({"clip_value_min": 1.0, "clip_value_max": 0.0}, "clip_value_min=1.0"),
        ({"seed": -3}, "seed=-3"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    args = {"epsilon": EPS, "num_steps": 3, "step_size": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        defense.AdversarialModel(
            tiny_classifier(),
            args.pop("epsilon"),
            args.pop("num_steps"),
            args.pop("step_size"),
            **args,
        )


def test_bad_model_metrics_and_ramp_raise():
    with pytest.raises(ValueError, match="softmax"):
        defense.AdversarialModel(tiny_classifier(activation="softmax"), EPS, 3, 0.1)
    with pytest.raises(ValueError, match="model must be"):
        defense.AdversarialModel("not a model", EPS, 3, 0.1)
    model = defense.AdversarialModel(tiny_classifier(), EPS, 3, 0.1)
    with pytest.raises(ValueError, match="metrics must be a list"):
        model.compile("adam", metrics={"out": "accuracy"})
    with pytest.raises(ValueError, match="metrics must hold Keras metrics"):
        model.compile("adam", metrics=["no_such_metric"])
    with pytest.raises(ValueError, match="ramp_steps=0"):
        defense.EpsilonRamp(0)
    plain = tiny_classifier()
    plain.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = task(20)
    with pytest.raises(ValueError, match="AdversarialModel"):
        plain.fit(x, y, epochs=1, verbose=0, callbacks=[defense.EpsilonRamp(2)])


def test_compile_metrics_are_reported_on_both_halves():
    x, y = task(200)
    model = defense.AdversarialModel(tiny_classifier(), EPS, 2, 0.1, label_mode="true", seed=0)
    top1 = keras.metrics.SparseTopKCategoricalAccuracy(k=1, name="top1")
    model.compile(keras.optimizers.Adam(0.01), metrics=["accuracy", top1])
    history = model.fit(x, y, epochs=2, batch_size=50, verbose=0, validation_data=(x, y))
    for key in ("accuracy", "adv_accuracy", "top1", "adv_top1"):
        assert key in history.history and f"val_{key}" in history.history
    # top-1 accuracy is accuracy: the copies see the same halves.
    np.testing.assert_allclose(history.history["top1"], history.history["accuracy"], rtol=1e-6)
    np.testing.assert_allclose(history.history["adv_top1"], history.history["adv_accuracy"])
    results = model.evaluate(x, y, verbose=0, return_dict=True)
    x_adv = model.adversarial_examples(x, y, label_mode="true")
    classifier = model.classifier
    expected_adv = np.mean(robustness.predict_labels(classifier, x_adv) == y)
    assert results["adv_accuracy"] == pytest.approx(expected_adv, abs=0.02)  # fresh random start
    assert results["accuracy"] == pytest.approx(
        np.mean(robustness.predict_labels(classifier, x) == y)
    )
    assert results["adv_accuracy"] < results["accuracy"]


def test_adversarially_trained_is_cached_and_keyed_by_the_recipe():
    def build():
        return build_tiny_model(shape=(28, 28, 1), classes=10)

    common = {"epochs": 1, "subset": 300, "test_subset": 100, "batch_size": 100, "verbose": 0}
    robust, info = defense.adversarially_trained(
        "tiny_robust", build, "mnist", epsilon=0.1, num_steps=2, return_info=True, **common
    )
    assert not info["from_cache"] and info["adversarial"]["step_size"] == pytest.approx(0.125)
    assert "val_adv_accuracy" in info["history"]
    again, info2 = defense.adversarially_trained(
        "tiny_robust", build, "mnist", epsilon=0.1, num_steps=2, return_info=True, **common
    )
    assert info2["from_cache"] and info2["key"] == info["key"]
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(again.predict(x, verbose=0), robust.predict(x, verbose=0), 1e-5)
    _, other = defense.adversarially_trained(
        "tiny_robust", build, "mnist", epsilon=0.2, num_steps=2, return_info=True, **common
    )
    _, standard = defense.adversarially_trained(
        "tiny_robust", build, "mnist", attack=None, return_info=True, **common
    )
    assert not other["from_cache"] and not standard["from_cache"]
    assert len({info["key"], other["key"], standard["key"]}) == 3
    assert "val_accuracy" in standard["history"] and "adv_accuracy" not in standard["history"]
    with pytest.raises(ValueError, match="attack must be one of"):
        defense.adversarially_trained("tiny_robust", build, "mnist", attack="mim", **common)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import sys
    sys.path.insert(0, "tests")
    from cnn_utils import defense
    from test_defense import task, tiny_classifier, pgd_accuracy

    x, y = task()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        classifier = tiny_classifier()
        model = defense.AdversarialModel(classifier, 0.2, 5, 0.1, seed=0)
        model.compile(keras.optimizers.Adam(0.01), metrics=["accuracy"])
    before = pgd_accuracy(classifier, x[500:], y[500:])
    history = model.fit(x[:500], y[:500], epochs=3, batch_size=50, verbose=0,
                        validation_data=(x[500:], y[500:]))
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "before": before,
        "after": pgd_accuracy(classifier, x[500:], y[500:]),
        "loss": history.history["loss"],
        "keys": sorted(history.history),
    }))
    """
)


def test_trains_under_mirrored_strategy_on_two_logical_cpus():
    root = str(__import__("pathlib").Path(__file__).resolve().parent.parent)
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert np.all(np.isfinite(report["loss"]))
    assert report["loss"][-1] < report["loss"][0]
    assert report["before"] < 0.6 and report["after"] >= 0.9, report
    for key in ("accuracy", "adv_accuracy", "val_accuracy", "val_adv_accuracy"):
        assert key in report["keys"]
