"""Notebook 04's thinner margins, re-measured on other data than the notebook's own.

The notebook asserts each claim once, on its first test images (and one draw of 100 MNIST
labels). Where the margin is modest, these tests measure the same quantity with the notebook's
settings on other images or another draw, so that the notebook's threshold is not the luck of
one draw: the transfer ranking of frozen codes, the first-layer filters against the same layer
re-initialised (over 400 initialiser seeds), the top patches' selectivity, the class sensitivity
of guided backprop against Grad-CAM, the t-SNE map's neighbourhoods against the features' and
PCA's, the pre-images against another image's code, and the
effects of the TV and alpha priors on pre-images (an earlier claim, more flat regions with
beta = 1, failed here and was dropped).
They use the trained course CNN (``training.trained``, cached), so they run only when
``CNN_UTILS_CLAIMS=1`` (``make claims``).
"""

import os

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from cnn_utils import data, embed, maximize, probe, saliency, training

pytestmark = pytest.mark.skipif(
    os.environ.get("CNN_UTILS_CLAIMS") != "1",
    reason="claim checks load the course CNN and run optimisations; set CNN_UTILS_CLAIMS=1",
)


@pytest.fixture(scope="module")
def cnn():
    return training.trained("small_cnn", verbose=0)


@pytest.fixture(scope="module")
def fashion():
    return data.load_dataset("fashion_mnist", subset=2000, test_subset=2000, seed=1)


@pytest.mark.parametrize("seed", [1, 2])
def test_middle_codes_transfer_better_than_the_last_hidden_layer(cnn, seed):
    digits = data.load_dataset("mnist", subset=100, test_subset=1000, seed=seed)
    accuracy = {}
    for layer in ("pool1", "pool3", "fc"):
        softmax = LogisticRegression(max_iter=1000).fit(
            probe.features(cnn, digits.x_train, layer), digits.y_train
        )
        accuracy[layer] = softmax.score(probe.features(cnn, digits.x_test, layer), digits.y_test)
    pixels = LogisticRegression(max_iter=1000).fit(digits.x_train.reshape(100, -1), digits.y_train)
    accuracy["pixels"] = pixels.score(digits.x_test.reshape(-1, 784), digits.y_test)
    for mode, epochs in (("finetune", 10), ("scratch", 20)):  # the notebook's settings
        new_model = embed.transfer_model(cnn, 10, mode=mode, seed=0)
        training.compile_classifier(new_model, 1e-3)
        new_model.fit(digits.x_train, digits.y_train, epochs=epochs, batch_size=32, verbose=0)
        accuracy[mode] = new_model.evaluate(digits.x_test, digits.y_test, verbose=0)[1]
    # measured (seeds 0, 1, 2), FAST: pool1 .78-.80, pool3 .87-.89, fc .74-.77, pixels .74-.77,
    # finetune .83-.85, scratch .83-.86; default: fc .64-.71, finetune .75-.78, the rest alike
    assert accuracy["pool3"] > accuracy["fc"] + 0.05, accuracy
    assert accuracy["fc"] < accuracy["pixels"] + 0.03, accuracy
    assert accuracy["fc"] < accuracy["pool1"] < accuracy["pool3"], accuracy
    assert min(accuracy["pool3"], accuracy["scratch"]) > accuracy["pixels"] + 0.05, accuracy
    assert accuracy["finetune"] < accuracy["pool3"] - 0.01, accuracy
    assert accuracy["finetune"] < accuracy["scratch"] + 0.01, accuracy


def test_top_patches_are_selective_on_other_images(cnn, fashion):
    x = fashion.x_test[1000:2000]
    relu3 = probe.features(cnn, x, "relu3_1", flatten=False).max(axis=(1, 2))
    for channel in (0, 5, 9, 17):
        _, _, values = embed.top_activating_patches(cnn, "relu3_1", channel, x, k=8)
        # notebook: ratios 1.6 to 3.0, asserted > 1.5
        assert values[-1] > 1.5 * np.median(relu3[:, channel]), channel


@pytest.mark.parametrize(("start", "seed"), [(0, 1), (800, 0), (1200, 2)])
def test_tsne_keeps_label_neighbourhoods_and_pca_does_not(cnn, fashion, start, seed):
    x, y = fashion.x_test[start : start + 800], fashion.y_test[start : start + 800]
    features = probe.features(cnn, x)

    def agreement(space):
        nearest = embed.nearest_neighbors(space, space, k=5, exclude_self=True)
        return (y[nearest] == y[:, None]).mean()

    tsne = agreement(embed.tsne(features, perplexity=30, seed=seed))
    pca = agreement(PCA(n_components=2).fit_transform(features))
    # measured before the notebook asserted it (two draws of 800 test images, t-SNE seeds 0 and
    # 1): t-SNE minus features -0.010 to +0.001, t-SNE minus PCA 0.15 to 0.17 in FAST mode; the
    # default mode's model on 1,000 images: -0.002 to +0.001 and 0.20 to 0.21
    assert tsne > agreement(features) - 0.03, (tsne, agreement(features))
    assert tsne > pca + 0.1, (tsne, pca)


def test_guided_backprop_is_class_insensitive_on_other_images(cnn, fashion):
    x, y = fashion.x_test[32:64], fashion.y_test[32:64]
    logits = np.array(cnn(x, training=False))
    logits[np.arange(len(y)), y] = -np.inf
    runner_up = logits.argmax(axis=1)
    rho = {}
    for method, kwargs in {
        "gradient_saliency": {},
        "deconvnet": {},
        "guided_backprop": {},
        "grad_cam": {"layer_name": "relu3_1"},
    }.items():
        fn = getattr(saliency, method)
        a, b = fn(cnn, x, y, **kwargs), fn(cnn, x, runner_up, **kwargs)
        rho[method] = np.nanmean(
            [spearmanr(p.ravel(), q.ravel())[0] for p, q in zip(a, b, strict=True)]
        )
    # notebook: gradient 0.32, deconvnet 0.77, guided 0.91, Grad-CAM 0.18
    assert rho["guided_backprop"] > 0.8, rho
    assert rho["deconvnet"] > rho["gradient_saliency"] + 0.3, rho
    assert rho["grad_cam"] < rho["guided_backprop"] - 0.2, rho


def test_tv_and_alpha_priors_on_other_images(cnn, fashion):
    x = fashion.x_test[6:12]
    settings = {
        "TV2 + alpha": dict(tv_weight=0.5, tv_beta=2.0, alpha_weight=1.0),
        "TV2 only": dict(tv_weight=0.5, tv_beta=2.0, alpha_weight=0.0),
        "no prior": dict(tv_weight=0.0, alpha_weight=0.0),
    }
    big, extreme = {}, {}
    for label, setting in settings.items():
        images = maximize.invert_features(
            cnn, "relu3_1", x, steps=200, seed=0, verbose=0, **setting
        )
        big[label] = float((np.abs(np.diff(images, axis=2)) > 0.3).mean())
        extreme[label] = float(np.mean((images < 0.02) | (images > 0.98)))
    # the notebook's asserts, on x_test[:6] there
    assert big["TV2 + alpha"] < big["no prior"], big
    assert extreme["TV2 + alpha"] < extreme["TV2 only"] - 0.03, extreme


def _cancellation(kernel):
    """Median over filters of |sum w| / sum |w|: 0 for a difference operator, 1 for one sign."""
    w = np.asarray(kernel).reshape(-1, np.shape(kernel)[-1])
    return np.median(np.abs(w.sum(axis=0)) / np.abs(w).sum(axis=0))


def test_first_layer_filters_cancel_more_than_the_layer_reinitialised(cnn):
    layer = cnn.get_layer("conv1_1")
    kernel = layer.kernel.numpy()
    init, config_0 = layer.kernel_initializer, layer.kernel_initializer.get_config()
    controls = [
        _cancellation(type(init).from_config({**config_0, "seed": s})(kernel.shape))
        for s in range(20, 420)
    ]
    trained = _cancellation(kernel)
    # the notebook: trained < 0.5 * the median of 20 re-initialisations (seeds 0-19); here 20
    # other groups of 20 seeds, and every single one of the 400 re-initialisations
    groups = np.median(np.reshape(controls, (20, 20)), axis=1)
    assert (trained < 0.5 * groups).all(), (trained, groups.round(3))
    assert trained < min(controls), (trained, min(controls))


def test_pre_images_match_their_own_code_better_than_another_image(cnn, fashion):
    x = fashion.x_test[6:12]
    for layer in ("relu3_1", "fc"):
        images = maximize.invert_features(
            cnn, layer, x, steps=150, seed=0, verbose=0,
            tv_weight=0.05, tv_beta=2.0, alpha_weight=1.0, alpha=6.0,
        )  # fmt: skip
        code_0 = probe.features(cnn, x, layer)
        own = probe.features(cnn, images, layer)
        other = probe.features(cnn, np.roll(x, 1, axis=0), layer)

        def relative(codes, code_0=code_0):
            return ((codes - code_0) ** 2).sum(axis=1) / (code_0**2).sum(axis=1)

        # the notebook asserts own < 0.5 * other for every image, on x_test[:6]
        own, other = relative(own), relative(other)
        assert (own < 0.5 * other).all(), (layer, own, other)
