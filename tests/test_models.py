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
    ],
)
def test_invalid_arguments(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


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


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: models.small_cnn((28, 28)), r"input_shape.*\(28, 28\)"),
        (lambda: models.small_cnn((28, 28, 0)), "input_shape=0"),
        (lambda: models.small_cnn("28x28x1"), "input_shape='28x28x1'"),
        (lambda: models.small_cnn(num_classes=10.0), "num_classes=10.0"),
        (lambda: models.small_cnn(filters=(8, -1)), r"filters=\(8, -1\)"),
        (lambda: models.small_cnn(filters=8), "filters=8"),
        (lambda: models.small_cnn(dense_units=0), "dense_units=0"),
        (lambda: models.small_cnn(dropout=float("nan")), "dropout=nan"),
        (lambda: models.small_cnn(batch_norm="yes"), "batch_norm='yes'"),
        (lambda: models.small_cnn(name=3), "name=3"),
        (lambda: models.resnet(widths=(4, 2.5)), r"widths=\(4, 2.5\)"),
        (lambda: models.resnet(widths=(4,), num_residuals=True), "num_residuals=True"),
        (lambda: models.resnet(widths=(4,), residual="no"), "residual='no'"),
        (lambda: models.resnet(widths=(4,), bn_momentum=1.5), "bn_momentum=1.5"),
        (lambda: models.resnet(widths=(4,), name=""), "name=''"),
        (lambda: models.resnet18((224, 224)), r"input_shape=\(224, 224\)"),
        (lambda: models.googlenet(width=float("inf")), "width=inf"),
        (lambda: models.googlenet(batch_norm=1), "batch_norm=1"),
        (lambda: models.googlenet(num_classes=True), "num_classes=True"),
        (lambda: models.alexnet(num_classes=0), "num_classes=0"),
        (lambda: models.alexnet((227, 227, -3)), "input_shape=-3"),
    ],
)
def test_bad_calls_get_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
