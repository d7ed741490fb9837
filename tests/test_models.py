import time

import keras
import numpy as np
import pytest

from cnn_utils import blocks, models, shapes


def test_resnet18_shapes_and_parameters():
    model = models.resnet18()
    table = shapes.shape_trace(model, batch_size=1).set_index("layer")
    assert table.loc["conv1", "output_shape"] == (1, 112, 112, 64)
    assert table.loc["pool1", "output_shape"] == (1, 56, 56, 64)
    assert table.loc["res2", "output_shape"] == (1, 56, 56, 64)
    assert table.loc["res3", "output_shape"] == (1, 28, 28, 128)
    assert table.loc["res4", "output_shape"] == (1, 14, 14, 256)
    assert table.loc["res5", "output_shape"] == (1, 7, 7, 512)
    assert table.loc["logits", "output_shape"] == (1, 10)
    assert round(model.count_params() / 1e6, 2) == 11.19
    assert isinstance(model.get_layer("res3"), blocks.ResnetBlock)


def test_googlenet_shapes_and_parameters():
    model = models.googlenet()
    table = shapes.shape_trace(model, batch_size=1).set_index("layer")
    assert table.loc["conv1", "output_shape"] == (1, 112, 112, 64)
    assert table.loc["pool2", "output_shape"] == (1, 28, 28, 192)
    assert table.loc["inception_3a", "output_shape"] == (1, 28, 28, 256)
    assert table.loc["inception_4e", "output_shape"] == (1, 14, 14, 832)
    assert table.loc["inception_5b", "output_shape"] == (1, 7, 7, 1024)
    assert table.loc["logits", "output_shape"] == (1, 1000)
    assert 6.5e6 < model.count_params() < 7.5e6


def test_alexnet_parameter_count():
    assert models.alexnet().count_params() == 62_378_344


@pytest.mark.parametrize("residual", [True, False])
def test_small_resnet_and_plain_twin(residual):
    model = models.resnet(widths=(4, 8), num_residuals=(1, 2), residual=residual)
    assert model.name == f"{'resnet' if residual else 'plain'}{2 + 2 * 3}"
    out = model(np.zeros((2, 28, 28, 1), dtype="float32"))
    assert tuple(out.shape) == (2, 10)
    convs = [w for w in model.weights if w.path.endswith("/kernel")]
    skips = [w for w in convs if "skip_conv" in w.path]
    assert len(convs) - len(skips) == 2 + 2 * 3  # same depth, shortcuts only differ
    assert len(skips) == (1 if residual else 0)
    assert not any(isinstance(layer, keras.layers.Softmax) for layer in model.layers)


def test_resnet_without_batch_norm():
    model = models.resnet(widths=(4,), num_residuals=1, batch_norm=False)
    assert not any("bn" in w.path for w in model.weights)


def test_reduced_googlenet_for_28x28():
    model = models.googlenet((28, 28, 1), 10, width=0.125, stem="small", batch_norm=True)
    table = shapes.shape_trace(model, batch_size=1).set_index("layer")
    assert table.loc["inception_3a", "output_shape"][1:3] == (14, 14)
    assert table.loc["inception_5b", "output_shape"][1:3] == (4, 4)
    assert table.loc["logits", "output_shape"] == (1, 10)


def test_model_save_round_trip(tmp_path):
    model = models.resnet(widths=(4, 8), num_residuals=1)
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    model(x, training=True)
    model.save(tmp_path / "r.keras")
    loaded = keras.models.load_model(tmp_path / "r.keras")
    np.testing.assert_array_equal(model(x), loaded(x))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: models.resnet(widths=()), "widths"),
        (lambda: models.resnet(num_residuals=0), "num_residuals=0"),
        (lambda: models.resnet(num_residuals=(1, 2)), r"num_residuals=\(1, 2\)"),
        (lambda: models.resnet(stem="big"), "stem.*'big'"),
        (lambda: models.resnet18(num_classes=1), "num_classes=1"),
        (lambda: models.googlenet(width=0), "width=0"),
        (lambda: models.googlenet(dropout=1.0), "dropout=1.0"),
        (lambda: models.trained("vgg"), "name.*'vgg'"),
        (lambda: models.trained("resnet", "imagenet"), "dataset.*'imagenet'"),
        (lambda: models.trained("resnet", epochs=0), "epochs=0"),
    ],
)
def test_invalid_arguments(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_gradient_norms_and_probe():
    model = models.resnet(widths=(4,), num_residuals=1)
    models.compile_classifier(model)
    x = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)
    y = np.arange(16) % 10
    norms = models.gradient_norms(model, x, y)
    assert list(norms)[0] == "conv1/kernel"
    assert all(np.isfinite(v) and v > 0 for v in norms.values())
    probe = models.TrainingProbe(x, y, every=2)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[probe])
    assert probe.steps == [0, 2, 4]
    assert len(probe.losses) == len(probe.grad_norms) == 3


def test_trained_caches_and_second_call_loads(monkeypatch, capsys):
    settings = {"subset": 300, "epochs": 1, "test_subset": 200}
    model, info = models.trained("small_cnn", verbose=0, return_info=True, **settings)
    assert capsys.readouterr().out == ""  # verbose=0 is silent
    path = models.trained_settings("small_cnn", **settings)["path"]
    assert info["path"] == path and info["from_cache"] is False
    assert path.endswith(".keras") and "small_cnn-fashion_mnist-e1-n300-s42" in path
    assert 0.0 <= info["test_accuracy"] <= 1.0 and info["params"] == model.count_params()

    def no_fit(*args, **kwargs):
        raise AssertionError("the cached model must not be trained again")

    monkeypatch.setattr(keras.Model, "fit", no_fit)
    start = time.perf_counter()
    again, info2 = models.trained("small_cnn", verbose=1, return_info=True, **settings)
    assert time.perf_counter() - start < 10
    assert info2["from_cache"] is True and info2["test_accuracy"] == info["test_accuracy"]
    assert "Loaded" in capsys.readouterr().out
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(model(x), again(x), atol=1e-6)
    other = models.trained_settings("small_cnn", subset=300, epochs=2, test_subset=200)
    assert other["path"] != path


def test_trained_settings_depend_on_mode(monkeypatch):
    from cnn_utils import config

    monkeypatch.setattr(config, "FAST", True)
    fast = models.trained_settings("resnet")
    monkeypatch.setattr(config, "FAST", False)
    full = models.trained_settings("resnet")
    assert fast["subset"] is not None and full["subset"] is None
    assert fast["epochs"] < full["epochs"]
    assert fast["path"] != full["path"]


def test_train_classifier_learns_and_reports(monkeypatch):
    from cnn_utils import config as cfg
    from cnn_utils import data as data_mod

    cfg.set_seed(0)
    ds = data_mod.load_dataset("mnist", subset=600, test_subset=200, validation_split=0.2)
    model = models.small_cnn(
        filters=(8,), convs_per_stage=1, head="flatten", dropout=0.0, batch_norm=False
    )
    history, seconds, accuracy = models.train_classifier(
        model, ds, epochs=2, batch_size=32, learning_rate=3e-3, verbose=0
    )
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    assert seconds > 0 and 0.2 < accuracy <= 1.0  # clearly better than chance (0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"epochs": 0}, "epochs=0"), ({"epochs": 1, "batch_size": -2}, "batch_size=-2")],
)
def test_train_classifier_rejects_bad_sizes(kwargs, match):
    from cnn_utils import data as data_mod

    ds = data_mod.load_dataset("mnist", subset=20, test_subset=10)
    with pytest.raises(ValueError, match=match):
        models.train_classifier(models.small_cnn(filters=(4,)), ds, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"head": "attention"}, "head.*'attention'"),
        ({"filters": ()}, "filters"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"convs_per_stage": 0}, "convs_per_stage=0"),
        ({"num_classes": 1}, "num_classes=1"),
    ],
)
def test_small_cnn_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.small_cnn(**kwargs)


def test_small_cnn_heads_and_names():
    gap = models.small_cnn(filters=(8, 16), head="gap")
    flat = models.small_cnn(filters=(8, 16), head="flatten", dense_units=32)
    assert gap.output_shape == flat.output_shape == (None, 10)
    assert gap.get_layer("conv2_2").filters == 16 and gap.get_layer("gap") is not None
    assert flat.get_layer("fc").units == 32
    assert gap.layers[-1].get_config()["activation"] == "linear"  # logits, no softmax
