import keras
import numpy as np
import pytest
from conftest import build_tiny_model
from test_attacks import NUM_CLASSES, SHAPE, _templates, images, labels, train_template_model

from cnn_utils import attacks, robustness


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


@pytest.fixture(scope="module")
def trained():
    return train_template_model()


def test_evaluation_names_still_import_from_attacks():
    from cnn_utils.attacks import robust_accuracy

    assert robust_accuracy is robustness.robust_accuracy
    for name in attacks._MOVED:
        assert getattr(attacks, name) is getattr(robustness, name)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        attacks.nonexistent  # noqa: B018


def test_predict_with_confidence(model):
    x = images()
    labels_, confidences = robustness.predict_with_confidence(model, x, batch_size=5)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model(x)))
    np.testing.assert_array_equal(labels_, probabilities.argmax(-1))
    np.testing.assert_allclose(confidences, probabilities.max(-1), rtol=1e-5)
    np.testing.assert_array_equal(robustness.predict_labels(model, x, batch_size=3), labels_)


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


def test_bad_helper_arguments(model):
    x, y = images(4), labels(4)
    with pytest.raises(ValueError, match="attack must be None, a callable or one of"):
        robustness.robust_accuracy(model, x, y, "cw")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        robustness.robust_accuracy(model, x, y, "fgsm", batch_size=0)
    with pytest.raises(ValueError, match="targeted"):
        robustness.robust_accuracy(model, x, y, "pgd", targeted=True)
    with pytest.raises(ValueError, match="epsilons must be >= 0"):
        robustness.epsilon_sweep(model, x, y, [0.1, -0.1], verbose=0)
    with pytest.raises(ValueError, match="epsilons must hold at least one"):
        robustness.epsilon_sweep(model, x, y, [], verbose=0)
