"""Images that a network likes: activation maximisation, class visualisation, inversion, dreams.

Images live in [0, 1] (pixels scaled by 1/255; :func:`cnn_utils.imagenet.pixel_model` puts an
ImageNet network on that scale).

One gradient-ascent loop over the input pixels, :func:`optimize_input`, serves every method.
What it maximises is composed from small callables, as in tf-keras-vis:

* an **objective** maps the activations of some layers to one score per image:
  :class:`FilterMean`, :class:`ClassScore`, :class:`FeatureMatch`, :class:`FeatureDot`,
  :class:`LayerNorm`, :class:`StyleContent`;
* **regularisers** are penalties subtracted from the score: :class:`L2`,
  :class:`TotalVariation` (beta = 1 or 2), :class:`AlphaNorm`;
* **transforms** act on the image: :class:`Jitter` shifts the input the model sees (inside
  the gradient), while :class:`Blur`, :class:`ClipSmallValues` and
  :class:`ClipSmallGradients` modify the image after each update (Yosinski et al. 2015).

Each step is I <- I + lr * g / rms(g) with g the gradient of score - penalties (normalised per
image, so that ``learning_rate`` is in pixel units), then the image is clipped to [0, 1]. The
step runs as one ``tf.function`` traced once per call, in float32 also under a mixed precision
policy (the activations are cast to float32 before the objective).

References:
    Erhan et al. 2009, "Visualizing higher-layer features of a deep network".
    Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional networks" (classes).
    Yosinski et al. 2015, "Understanding neural networks through deep visualization".
    Mahendran & Vedaldi 2015, "Understanding deep image representations by inverting them".
    Mahendran & Vedaldi 2016, "Visualizing deep convolutional neural networks using natural
    pre-images" (caricaturisation).
    Mordvintsev, Olah & Tyka 2015, "Inceptionism: going deeper into neural networks".
    Gatys, Ecker & Bethge 2015, "A neural algorithm of artistic style".
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from cnn_utils import _checks, probe

__all__ = [
    "L2",
    "LOGITS",
    "AlphaNorm",
    "Blur",
    "ClassScore",
    "ClipSmallGradients",
    "ClipSmallValues",
    "FeatureDot",
    "FeatureMatch",
    "FilterMean",
    "Jitter",
    "LayerNorm",
    "StyleContent",
    "TotalVariation",
    "caricature",
    "deep_dream",
    "gaussian_blur",
    "gram_matrix",
    "invert_features",
    "maximize_activation",
    "optimize_input",
    "style_transfer",
    "total_variation",
    "visualize_class",
    "yosinski_regularizers",
]

_EPS = 1e-8
_VALUE_RANGE = (0.0, 1.0)  # pixels scaled to [0, 1]; every image is clipped to it
_INIT_SCALE = 0.1  # noise of the random start around grey 0.5
LOGITS = None
"""Key of the model's own output (the logits) among the activations an objective receives."""


def _int_list(argname: str, value, limit: int | None = None) -> np.ndarray:
    """One integer or a non-empty sequence of integers, in ``[0, limit)`` when given."""
    array = np.atleast_1d(np.asarray(value))
    if (
        isinstance(value, bool)
        or array.ndim != 1
        or array.size == 0
        or not np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(
            f"{argname} must be an integer or a sequence of integers. Received: {argname}={value!r}"
        )
    if limit is not None and (array.min() < 0 or array.max() >= limit):
        raise ValueError(f"{argname} must be in [0, {limit}). Received: {argname}={value!r}")
    return array.astype(np.int32)


def _check_weight(argname: str, value: float) -> float:
    return _checks.number(argname, value, minimum=0)


def _batch_of_maps(x, name: str) -> tf.Tensor:
    """A float32 tensor of rank 4 (batch, H, W, C); works on symbolic tensors inside the loop."""
    x = (
        tf.cast(x, tf.float32)
        if isinstance(x, tf.Tensor)
        else tf.constant(np.asarray(x, "float32"))
    )
    if x.shape.rank != 4:
        raise ValueError(
            f"{name} must be a batch of images or feature maps, shape (batch, H, W, C). "
            f"Received: {name} with shape {tuple(x.shape)}"
        )
    return x


def _pixels(x, name: str) -> np.ndarray:
    """A batch of finite images in [0, 1] (a 0..255 image is told to divide by 255)."""
    return _checks.images(x, name=name, rank=4, value_range=_VALUE_RANGE).numpy()


# ---------------------------------------------------------------------------------------------
# Objectives: activations -> one score per image
# ---------------------------------------------------------------------------------------------


class FilterMean:
    """Mean activation of one channel, A(I) = mean_{h,w} f_k(I) (Erhan et al. 2009).

    Args:
        layer_name: The layer.
        filter_index: The channel, or one channel per image (a batch of filters at once).
    """

    def __init__(self, layer_name: str, filter_index: int | Sequence[int]):
        self.layer_names = (layer_name,)
        self.filter_index = _int_list("filter_index", filter_index)

    def __call__(self, activations: dict) -> tf.Tensor:
        """Return the score of each image."""
        a = activations[self.layer_names[0]]
        if a.shape.rank == 4:
            a = tf.reduce_mean(a, axis=(1, 2))
        index = tf.broadcast_to(tf.constant(self.filter_index), tf.shape(a)[:1])
        return tf.gather(a, index, axis=1, batch_dims=1)


class ClassScore:
    """The class score S_c before the softmax (Simonyan et al. 2014), or the probability.

    Maximising the probability p_c = exp(S_c) / sum_j exp(S_j) can succeed by pushing the
    other scores down rather than S_c up, so the logit gives cleaner pictures.

    Args:
        class_index: The class, or one class per image.
        probability: Maximise the softmax probability instead of the logit.
    """

    def __init__(self, class_index: int | Sequence[int], *, probability: bool = False):
        self.layer_names = (LOGITS,)
        self.class_index = _int_list("class_index", class_index)
        self.probability = _checks.flag("probability", probability)

    def __call__(self, activations: dict) -> tf.Tensor:
        """Return the score of each image."""
        logits = activations[LOGITS]
        values = tf.nn.softmax(logits, axis=-1) if self.probability else logits
        index = tf.broadcast_to(tf.constant(self.class_index), tf.shape(values)[:1])
        return tf.gather(values, index, axis=1, batch_dims=1)


def _mean_square(a: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.reshape(tf.square(a), (tf.shape(a)[0], -1)), axis=1)


class FeatureMatch:
    """Minus the relative feature distance ||Phi(I) - Phi_0||^2 / ||Phi_0||^2.

    Maximising it reconstructs an image from its representation (Mahendran & Vedaldi 2015).

    Args:
        layer_name: The layer Phi.
        target: The target features Phi_0, shape (batch, ...) of the layer's output.
    """

    def __init__(self, layer_name: str, target):
        self.layer_names = (layer_name,)
        self.target = tf.constant(np.asarray(target, dtype=np.float32))

    def __call__(self, activations: dict) -> tf.Tensor:
        """Return the score of each image (0 is a perfect match)."""
        a = activations[self.layer_names[0]]
        return -_mean_square(a - self.target) / (_mean_square(self.target) + _EPS)


class FeatureDot:
    """The caricature objective <Phi_0, Phi(I)> / ||Phi_0||^2 (Mahendran & Vedaldi 2016).

    Started from the image x_0 with Phi_0 = Phi(x_0), the ascent strengthens exactly what the
    layer saw in x_0 (the direction Phi_0), where DeepDream's ||Phi(I)||^2 amplifies whatever
    is active. The value is 1 at I = x_0.

    Args:
        layer_name: The layer Phi.
        target: The features Phi_0, shape (batch, ...) of the layer's output.
    """

    def __init__(self, layer_name: str, target):
        self.layer_names = (layer_name,)
        self.target = tf.constant(np.asarray(target, dtype=np.float32))

    def __call__(self, activations: dict) -> tf.Tensor:
        """Return the normalised inner product of each image's features with its target."""
        a = activations[self.layer_names[0]]
        batch = tf.shape(a)[0]
        dot = tf.reduce_sum(tf.reshape(a * self.target, (batch, -1)), axis=1)
        norm = tf.reduce_sum(tf.reshape(tf.square(self.target), (batch, -1)), axis=1)
        return dot / (norm + _EPS)


class LayerNorm:
    """Mean squared activation of whole layers: amplify whatever they detect (DeepDream).

    Args:
        layer_names: One or several layers; their scores add up.
    """

    def __init__(self, layer_names: str | Sequence[str]):
        names = (layer_names,) if isinstance(layer_names, str) else tuple(layer_names)
        if not names:
            raise ValueError(f"layer_names must not be empty. Received: layer_names={names!r}")
        self.layer_names = names

    def __call__(self, activations: dict) -> tf.Tensor:
        """Return the score of each image."""
        return tf.add_n([_mean_square(activations[name]) for name in self.layer_names])


def gram_matrix(features) -> tf.Tensor:
    """Gram matrices G = F^T F / (H W) of feature maps (Gatys et al. 2015).

    Args:
        features: (batch, H, W, C) activations.

    Returns:
        (batch, C, C): the channel correlations, which keep the texture and lose the layout.
    """
    features = _batch_of_maps(features, "features")
    size = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], tf.float32)
    return tf.einsum("bhwc,bhwd->bcd", features, features) / size


class StyleContent:
    """Neural style transfer's objective (Gatys et al. 2015), as minus a weighted loss.

    Content loss: relative squared distance of the ``content_layer`` features to the content
    image's; style loss: relative squared distance of the Gram matrices of the
    ``style_layers`` to the style image's, averaged over layers.

    Args:
        content_layer: Layer whose features carry the content (a deep one).
        content_target: Its features on the content image.
        style_layers: Layers whose Gram matrices carry the style.
        style_targets: Their Gram matrices on the style image, in the same order.
        content_weight: Weight of the content loss, >= 0.
        style_weight: Weight of the style loss, >= 0.
    """

    def __init__(
        self,
        content_layer: str,
        content_target,
        style_layers: Sequence[str],
        style_targets: Sequence,
        *,
        content_weight: float = 1.0,
        style_weight: float = 1.0,
    ):
        self.content = FeatureMatch(content_layer, content_target)
        self.style_layers = tuple(style_layers)
        if not self.style_layers or len(self.style_layers) != len(style_targets):
            raise ValueError(
                "style_layers must name at least one layer, with one style target each. "
                f"Received: style_layers={style_layers!r} and {len(style_targets)} targets"
            )
        self.style_targets = [tf.constant(np.asarray(g, np.float32)) for g in style_targets]
        self.content_weight = _check_weight("content_weight", content_weight)
        self.style_weight = _check_weight("style_weight", style_weight)
        self.layer_names = (content_layer, *self.style_layers)

    def style_loss(self, activations: dict) -> tf.Tensor:
        """Mean relative Gram distance over the style layers, per image."""
        losses = [
            _mean_square(gram_matrix(activations[name]) - target) / (_mean_square(target) + _EPS)
            for name, target in zip(self.style_layers, self.style_targets, strict=True)
        ]
        return tf.add_n(losses) / len(losses)

    def __call__(self, activations: dict) -> tf.Tensor:
        """Return minus the weighted content and style losses."""
        content = -self.content(activations)
        return -(self.content_weight * content + self.style_weight * self.style_loss(activations))


# ---------------------------------------------------------------------------------------------
# Regularisers (penalties) and transforms
# ---------------------------------------------------------------------------------------------


class L2:
    """Penalty weight * mean(I^2): keeps pixels small (Simonyan et al. 2014's lambda ||I||^2).

    Args:
        weight: The penalty's weight, >= 0.
    """

    def __init__(self, weight: float = 0.01):
        self.weight = _check_weight("weight", weight)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Return the penalty of each image."""
        return self.weight * _mean_square(x)


def total_variation(x, beta: float = 2.0) -> tf.Tensor:
    """Total variation R_{V^beta} per image (Mahendran & Vedaldi 2015), as a mean.

    ``beta = 2`` (the default) is the mean squared difference between vertical neighbours
    plus that between horizontal neighbours. Any other ``beta`` is the paper's coupled form,
    mean over pixels of ((x_{i,j+1} - x_{i,j})^2 + (x_{i+1,j} - x_{i,j})^2)^(beta / 2) on the
    (H-1) x (W-1) grid (a tiny constant inside the root keeps beta < 2 differentiable at 0):
    beta = 1 penalises an edge by its height, not its square, so it keeps sharp edges and
    removes small wiggles; beta = 2 prefers smooth ramps to steps.

    Args:
        x: Images (batch, H, W, C).
        beta: The exponent, > 0.

    Returns:
        (batch,) total variation.

    Raises:
        ValueError: A beta <= 0 or x that is not a batch of images.
    """
    beta = _checks.number("beta", beta, positive=True)
    x = _batch_of_maps(x, "x")
    dy = x[:, 1:, :, :] - x[:, :-1, :, :]
    dx = x[:, :, 1:, :] - x[:, :, :-1, :]
    if beta == 2.0:
        return _mean_square(dy) + _mean_square(dx)
    squared = tf.square(dy[:, :, :-1, :]) + tf.square(dx[:, :-1, :, :])
    values = tf.pow(squared + _EPS, beta / 2.0)
    return tf.reduce_mean(tf.reshape(values, (tf.shape(x)[0], -1)), axis=1)


class TotalVariation:
    """Penalty weight * total variation: favours piecewise-smooth images (Mahendran & Vedaldi).

    Args:
        weight: The penalty's weight, >= 0.
        beta: The exponent of :func:`total_variation` (2: squared differences; 1: edges
            cost their height).
    """

    def __init__(self, weight: float = 0.1, beta: float = 2.0):
        self.weight = _check_weight("weight", weight)
        self.beta = _checks.number("beta", beta, positive=True)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Return the penalty of each image."""
        return self.weight * total_variation(x, self.beta)


class AlphaNorm:
    """Penalty weight * mean |I - center|^alpha: the alpha-norm prior R_alpha (Mahendran & Vedaldi).

    Mahendran & Vedaldi (2015) use alpha = 6 on the mean-subtracted image: a large
    alpha leaves moderate pixels almost free and stops a few pixels from running away to
    extreme values. Our pixels live in [0, 1], so the image is centred at grey 0.5.

    Args:
        weight: The penalty's weight, >= 0.
        alpha: The exponent, >= 1.
        center: The value the image is centred at.
    """

    def __init__(self, weight: float = 1.0, alpha: float = 6.0, center: float = 0.5):
        self.weight = _check_weight("weight", weight)
        self.alpha = _checks.number("alpha", alpha, minimum=1)
        self.center = _checks.number("center", center)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Return the penalty of each image."""
        values = tf.pow(tf.abs(x - self.center) + _EPS, self.alpha)
        return self.weight * tf.reduce_mean(tf.reshape(values, (tf.shape(x)[0], -1)), axis=1)


class Jitter:
    """Shift the image the model sees by a random offset every step (Mordvintsev et al. 2015).

    Applied inside the gradient, so the image must please the network at every shift, which
    suppresses high-frequency patterns tied to exact pixel positions.

    Args:
        pixels: Largest shift in each direction, >= 0.
        seed: Seed of the shifts.
    """

    stage = "before"

    def __init__(self, pixels: int = 2, seed: int | None = None):
        self.pixels = _checks.integer("pixels", pixels, minimum=0)
        seed = _checks.seed(seed)
        self.generator = tf.random.Generator.from_seed(0 if seed is None else seed)

    def __call__(self, x: tf.Tensor, step=None) -> tf.Tensor:
        """Return x rolled by a random offset."""
        shift = self.generator.uniform((2,), -self.pixels, self.pixels + 1, dtype=tf.int32)
        return tf.roll(x, shift, axis=(1, 2))


def gaussian_blur(x, sigma: float = 0.5) -> tf.Tensor:
    """Blur each channel with a Gaussian of standard deviation ``sigma`` pixels.

    Args:
        x: Images (batch, H, W, C).
        sigma: Standard deviation, > 0.

    Returns:
        The blurred images (reflect padding at the borders), same shape.
    """
    sigma = _checks.number("sigma", sigma, positive=True)
    x = _batch_of_maps(x, "x")
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    channels = x.shape[-1]
    padded = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    vertical = tf.constant(np.tile(taps[:, None, None, None], (1, 1, channels, 1)))
    horizontal = tf.constant(np.tile(taps[None, :, None, None], (1, 1, channels, 1)))
    y = tf.nn.depthwise_conv2d(padded, vertical, (1, 1, 1, 1), "VALID")
    return tf.nn.depthwise_conv2d(y, horizontal, (1, 1, 1, 1), "VALID")


class _Every:
    """A transform applied to the image after the update, every ``every`` steps."""

    stage = "after"

    def __init__(self, every: int):
        self.every = _checks.positive_int("every", every)

    def apply(self, x: tf.Tensor, grads: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def __call__(self, x: tf.Tensor, grads=None, step=0) -> tf.Tensor:
        """Apply the transform if ``step`` is a multiple of ``every``."""
        grads = tf.zeros_like(x) if grads is None else grads
        step = tf.convert_to_tensor(step, tf.int32)
        return tf.cond(
            tf.equal(step % self.every, 0), lambda: self.apply(x, grads), lambda: tf.identity(x)
        )


class Blur(_Every):
    """Gaussian blur every ``every`` steps (Yosinski et al. 2015): removes high frequencies.

    Args:
        sigma: Standard deviation in pixels, > 0.
        every: Blur every this many steps.
    """

    def __init__(self, sigma: float = 0.5, every: int = 4):
        super().__init__(every)
        self.sigma = _checks.number("sigma", sigma, positive=True)

    def apply(self, x, grads):
        """Blur x."""
        return gaussian_blur(x, self.sigma)


def _below_percentile(values: tf.Tensor, percentile: float) -> tf.Tensor:
    """Mask (batch, H, W) of the values below each image's percentile."""
    flat = tf.reshape(values, (tf.shape(values)[0], -1))
    count = tf.shape(flat)[1]
    k = tf.cast(tf.floor(percentile / 100.0 * tf.cast(count, tf.float32)), tf.int32)
    k = tf.minimum(k, count - 1)
    threshold = tf.gather(tf.sort(flat, axis=1), k, axis=1)
    return values < threshold[:, None, None]


class ClipSmallValues(_Every):
    """Set the pixels of smallest norm (over channels) to 0 (Yosinski et al. 2015).

    Args:
        percentile: Pixels whose norm is below this percentile of the image are zeroed.
        every: Apply every this many steps.
    """

    def __init__(self, percentile: float = 10.0, every: int = 1):
        super().__init__(every)
        self.percentile = _checks.number("percentile", percentile, minimum=0, below=100)

    def apply(self, x, grads):
        """Zero the small pixels of x."""
        mask = _below_percentile(tf.norm(x, axis=-1), self.percentile)
        return tf.where(mask[..., None], tf.zeros_like(x), x)


class ClipSmallGradients(_Every):
    """Zero the pixels that contribute least, |sum_c I * dA/dI| (Yosinski et al. 2015).

    Args:
        percentile: Pixels whose contribution is below this percentile are zeroed.
        every: Apply every this many steps.
    """

    def __init__(self, percentile: float = 10.0, every: int = 1):
        super().__init__(every)
        self.percentile = _checks.number("percentile", percentile, minimum=0, below=100)

    def apply(self, x, grads):
        """Zero the pixels of x with the smallest contribution."""
        contribution = tf.abs(tf.reduce_sum(x * grads, axis=-1))
        mask = _below_percentile(contribution, self.percentile)
        return tf.where(mask[..., None], tf.zeros_like(x), x)


def yosinski_regularizers(
    *,
    l2: float = 0.01,
    blur_sigma: float = 0.5,
    blur_every: int = 4,
    jitter: int = 1,
    tv: float = 0.05,
    seed: int | None = None,
) -> tuple[list, list]:
    """A good default combination: L2, TV, jitter and periodic blur (Yosinski et al. 2015).

    Returns:
        ``(regularizers, transforms)`` for :func:`optimize_input`.
    """
    regularizers = [L2(l2), TotalVariation(tv)]
    transforms = [Jitter(jitter, seed=seed), Blur(blur_sigma, blur_every)]
    return regularizers, transforms


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def _start(model: keras.Model, init, num_images: int, seed: int | None) -> np.ndarray:
    """The starting images: ``init`` checked, or grey 0.5 plus seeded Gaussian noise."""
    if init is not None:
        return _pixels(init, "init")
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"Model {model.name!r} accepts images of any size {shape}: pass init images. "
            "Received: init=None"
        )
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((num_images, *shape))
    return np.clip(0.5 + _INIT_SCALE * noise, *_VALUE_RANGE).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class _Ascent:
    """What one ascent step needs: the probe, the objective, the penalties, the transforms."""

    activations_model: keras.Model
    keys: list
    objective: Callable
    regularizers: tuple
    before: list
    after: list

    def scores(self, seen: tf.Tensor) -> tf.Tensor:
        """The objective of each image, computed in float32."""
        values = self.activations_model(seen, training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        values = [tf.cast(v, tf.float32) for v in values]  # float16 under mixed precision
        return self.objective(dict(zip(self.keys, values, strict=True)))


def _ascent_step(ascent: _Ascent, x: tf.Tensor, t: tf.Tensor, lr: tf.Tensor):
    """One step I <- clip(I + lr * g / rms(g)), then the after-step transforms: (I, score)."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        seen = x
        for transform in ascent.before:
            seen = transform(seen, step=t)
        score = ascent.scores(seen)
        total = score
        for regularizer in ascent.regularizers:
            total = total - regularizer(x)
        total, score_sum = tf.reduce_sum(total), tf.reduce_sum(score)
    # Checked when the step is traced: a score that ignores the image (a disconnected graph) is
    # an error even when the penalties alone would give a gradient. The graph never uses this
    # gradient, so TensorFlow prunes it: the check costs no computation.
    probe.gradient(tape, score_sum, x, what="the objective with respect to the image")
    grads = probe.gradient(tape, total, x, what="the objective with respect to the image")
    rms = tf.sqrt(tf.reduce_mean(tf.square(grads), axis=(1, 2, 3), keepdims=True))
    grads = grads / tf.maximum(rms, _EPS)
    x = x + lr * grads
    for transform in ascent.after:
        x = transform(x, grads=grads, step=t)
    return tf.clip_by_value(x, *_VALUE_RANGE), tf.reduce_mean(score)


def optimize_input(
    model: keras.Model,
    objective,
    *,
    num_images: int = 1,
    init=None,
    regularizers: Sequence = (),
    transforms: Sequence = (),
    steps: int = 100,
    learning_rate: float = 0.05,
    seed: int | None = None,
    verbose: int = 1,
    return_history: bool = False,
):
    """Gradient ascent on the input pixels: I* = argmax_I objective(I) - sum of penalties.

    Args:
        model: A built Keras model (Sequential, functional, with course blocks) on [0, 1]
            pixels.
        objective: A callable mapping ``{layer_name: activations}`` (``None`` for the
            logits) to one score per image, with a ``layer_names`` attribute.
        num_images: Images optimised at once when ``init`` is None.
        init: Starting images (batch, H, W, C) in [0, 1]; ``None`` starts from grey 0.5 plus
            Gaussian noise of standard deviation 0.1.
        regularizers: Penalties ``r(x) -> (batch,)`` subtracted from the score.
        transforms: :class:`Jitter` (before the model) and after-step transforms.
        steps: Number of ascent steps, >= 1.
        learning_rate: Step size in pixel units (the gradient is RMS-normalised), > 0.
        seed: Seed of the random start.
        verbose: 1 shows a progress bar with the score; 0 is silent.
        return_history: Also return the mean objective of every step.

    Returns:
        float32 array (batch, H, W, C) in [0, 1]; with ``return_history`` a pair
        ``(images, scores)``.

    Raises:
        ValueError: Bad steps, learning rate, seed or start images, an unknown layer name, or
            an objective that does not depend on the input.
    """
    probe.ensure_built(model)
    steps = _checks.positive_int("steps", steps)
    learning_rate = _checks.number("learning_rate", learning_rate, positive=True)
    num_images = _checks.positive_int("num_images", num_images)
    seed = _checks.seed(seed)
    _checks.one_of("verbose", verbose, (0, 1))
    return_history = _checks.flag("return_history", return_history)
    keys = list(getattr(objective, "layer_names", ()))
    if not callable(objective) or not keys:
        raise ValueError(
            "objective must be a callable with a non-empty layer_names attribute (e.g. "
            f"FilterMean, ClassScore). Received: objective={objective!r}"
        )
    activations_model = probe.layer_model(model, keys)
    x = tf.constant(_start(model, init, num_images, seed))
    before = [t for t in transforms if getattr(t, "stage", "after") == "before"]
    after = [t for t in transforms if getattr(t, "stage", "after") != "before"]
    ascent = _Ascent(activations_model, keys, objective, tuple(regularizers), before, after)
    # A partial, not a closure: TensorFlow counts retracing per code object, so one closure per
    # call would warn about "retracing" when a notebook calls the loop many times.
    step = tf.function(functools.partial(_ascent_step, ascent), reduce_retracing=True)

    bar = keras.utils.Progbar(steps, stateful_metrics=["score"]) if verbose else None
    lr = tf.constant(learning_rate, tf.float32)
    history = []
    for t in range(steps):
        x, score = step(x, tf.constant(t + 1), lr)
        history.append(float(score))
        if bar is not None:
            bar.update(t + 1, values=[("score", history[-1])])
    images = x.numpy()
    return (images, history) if return_history else images


# ---------------------------------------------------------------------------------------------
# The methods
# ---------------------------------------------------------------------------------------------


def maximize_activation(
    model: keras.Model,
    layer_name: str,
    filter_index: int | Sequence[int],
    *,
    steps: int = 100,
    learning_rate: float = 0.05,
    regularizers: Sequence | None = None,
    transforms: Sequence | None = None,
    init=None,
    seed: int | None = None,
    verbose: int = 1,
    return_history: bool = False,
) -> np.ndarray:
    """Visualise filters by gradient ascent: I* = argmax_I mean(f_k(I)) - alpha * Omega(I).

    Erhan et al. 2009; the regularisers of Yosinski et al. 2015 by default
    (:func:`yosinski_regularizers`).

    Args:
        model: A built Keras model on [0, 1] pixels.
        layer_name: The layer.
        filter_index: One channel, or several (one image each, optimised together).
        steps: Ascent steps.
        learning_rate: Step size in pixel units.
        regularizers: Penalties; ``None`` takes the default set, ``()`` none.
        transforms: Transforms; ``None`` takes the default set, ``()`` none.
        init: Starting images in [0, 1]; ``None`` is seeded noise.
        seed: Seed of the start and of the jitter.
        verbose: 1 shows progress, 0 is silent.
        return_history: Also return the mean objective of every step.

    Returns:
        float32 images (n_filters, H, W, C) (with ``return_history``, also the history).

    Raises:
        ValueError: An unknown layer (the message lists the names), a filter out of range, or
            a bad setting of :func:`optimize_input`.
    """
    probe.ensure_built(model)
    channels = probe.layer(model, layer_name).output.shape[-1]
    indices = _int_list("filter_index", filter_index, channels)
    seed = _checks.seed(seed)
    default_regs, default_transforms = yosinski_regularizers(seed=seed)
    return optimize_input(
        model,
        FilterMean(layer_name, indices),
        num_images=len(indices),
        init=init,
        regularizers=default_regs if regularizers is None else regularizers,
        transforms=default_transforms if transforms is None else transforms,
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        verbose=verbose,
        return_history=return_history,
    )


def visualize_class(
    model: keras.Model,
    class_index: int | Sequence[int],
    *,
    steps: int = 100,
    learning_rate: float = 0.05,
    regularizers: Sequence | None = None,
    transforms: Sequence | None = None,
    probability: bool = False,
    init=None,
    seed: int | None = None,
    verbose: int = 1,
    return_history: bool = False,
) -> np.ndarray:
    """Class model visualisation (Simonyan et al. 2014): I* = argmax_I S_c(I) - lambda ||I||^2.

    ``S_c`` is the logit; ``probability=True`` maximises the softmax output instead, which can
    also be raised by lowering the other classes' scores. With ``regularizers=None`` the
    default set of :func:`yosinski_regularizers` is used.

    Args:
        model: A model on [0, 1] pixels that outputs logits.
        class_index: One class, or several (one image each).
        steps: Ascent steps.
        learning_rate: Step size in pixel units.
        regularizers: Penalties; ``None`` takes the default set, ``()`` none.
        transforms: Transforms; ``None`` takes the default set, ``()`` none.
        probability: Maximise p_c rather than S_c.
        init: Starting images in [0, 1]; ``None`` is seeded noise.
        seed: Seed of the start and of the jitter.
        verbose: 1 shows progress, 0 is silent.
        return_history: Also return the mean objective of every step.

    Returns:
        float32 images (n_classes, H, W, C) (with ``return_history``, also the history).

    Raises:
        ValueError: A model that outputs probabilities, a class out of range, or a bad setting
            of :func:`optimize_input`.
    """
    probe.ensure_built(model)
    num_classes = _checks.logits_model(model, None if init is None else _pixels(init, "init"))
    if num_classes is None:
        num_classes = model.outputs[0].shape[-1]
    indices = _int_list("class_index", class_index, num_classes)
    seed = _checks.seed(seed)
    default_regs, default_transforms = yosinski_regularizers(seed=seed)
    return optimize_input(
        model,
        ClassScore(indices, probability=probability),
        num_images=len(indices),
        init=init,
        regularizers=default_regs if regularizers is None else regularizers,
        transforms=default_transforms if transforms is None else transforms,
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        verbose=verbose,
        return_history=return_history,
    )


def invert_features(
    model: keras.Model,
    layer_name: str,
    x,
    *,
    steps: int = 200,
    learning_rate: float = 0.05,
    tv_weight: float = 0.05,
    tv_beta: float = 2.0,
    alpha_weight: float = 0.0,
    alpha: float = 6.0,
    transforms: Sequence = (),
    seed: int | None = None,
    verbose: int = 1,
    return_history: bool = False,
):
    """Pre-image (Mahendran & Vedaldi 2015): min_I ||Phi(I) - Phi_0||^2 / ||Phi_0||^2 + R(I).

    Starts from seeded noise and matches the features Phi_0 = Phi(x) of the layer, with the
    paper's two priors: R = tv_weight * R_{V^beta} (:class:`TotalVariation`) +
    alpha_weight * R_alpha (:class:`AlphaNorm`, off by default).

    Args:
        model: A built Keras model on [0, 1] pixels.
        layer_name: The layer Phi.
        x: The images to invert (batch, H, W, C), in [0, 1].
        steps: Ascent steps.
        learning_rate: Step size in pixel units.
        tv_weight: Weight of the total-variation prior, >= 0.
        tv_beta: Its exponent beta, > 0 (1 keeps edges sharp, 2 prefers smooth ramps).
        alpha_weight: Weight of the alpha-norm prior, >= 0 (0: not used).
        alpha: Its exponent, >= 1 (the paper uses 6).
        transforms: Extra transforms.
        seed: Seed of the start.
        verbose: 1 shows progress, 0 is silent.
        return_history: Also return minus the relative feature distance of every step.

    Returns:
        float32 reconstructions shaped like x (with ``return_history``, also the history).

    Raises:
        ValueError: An unknown layer, images outside [0, 1], or a bad setting of
            :func:`optimize_input`.
    """
    x = _pixels(x, "x")
    target = probe.features(model, x, layer_name, flatten=False)
    return optimize_input(
        model,
        FeatureMatch(layer_name, target),
        num_images=len(x),
        regularizers=[TotalVariation(tv_weight, tv_beta), AlphaNorm(alpha_weight, alpha)],
        transforms=transforms,
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        verbose=verbose,
        return_history=return_history,
    )


def deep_dream(
    model: keras.Model,
    layer_names: str | Sequence[str],
    image,
    *,
    steps: int = 50,
    learning_rate: float = 0.02,
    regularizers: Sequence = (),
    transforms: Sequence | None = None,
    seed: int | None = None,
    verbose: int = 1,
    return_history: bool = False,
) -> np.ndarray:
    """DeepDream (Mordvintsev et al. 2015): start from an image, amplify what layers detect.

    Maximises the mean squared activation of ``layer_names`` (:class:`LayerNorm`); with
    ``transforms=None`` a jitter of 1 pixel is applied.

    Args:
        model: A built Keras model on [0, 1] pixels.
        layer_names: One layer or several.
        image: Starting images (batch, H, W, C), in [0, 1].
        steps: Ascent steps.
        learning_rate: Step size in pixel units.
        regularizers: Penalties (none by default).
        transforms: Transforms; ``None`` is a 1-pixel jitter.
        seed: Seed of the jitter.
        verbose: 1 shows progress, 0 is silent.
        return_history: Also return the mean objective of every step.

    Returns:
        The dreamed images, float32, shaped like ``image`` (with ``return_history``, also the
        history).

    Raises:
        ValueError: An unknown layer, an image outside [0, 1], or a bad setting of
            :func:`optimize_input`.
    """
    image = _pixels(image, "image")
    seed = _checks.seed(seed)
    objective = LayerNorm(layer_names)
    probe.ensure_built(model)
    for each in objective.layer_names:
        probe.layer(model, each, name="layer_names")
    return optimize_input(
        model,
        objective,
        init=image,
        regularizers=regularizers,
        transforms=[Jitter(1, seed=seed)] if transforms is None else transforms,
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        verbose=verbose,
        return_history=return_history,
    )


def caricature(
    model: keras.Model,
    layer_name: str,
    image,
    *,
    steps: int = 50,
    learning_rate: float = 0.02,
    regularizers: Sequence = (),
    transforms: Sequence | None = None,
    seed: int | None = None,
    verbose: int = 1,
    return_history: bool = False,
) -> np.ndarray:
    """Caricaturisation (Mahendran & Vedaldi 2016): maximise <Phi(x_0), Phi(I)> from I = x_0.

    The objective (:class:`FeatureDot`) rewards more of exactly the pattern the layer saw in
    the starting image, so the caricature exaggerates that image's own features; DeepDream
    (:func:`deep_dream`) instead maximises ||Phi(I)||^2 and amplifies whatever responds. With
    ``transforms=None`` a jitter of 1 pixel is applied.

    Args:
        model: A built Keras model on [0, 1] pixels.
        layer_name: The layer Phi.
        image: The images x_0 (batch, H, W, C), in [0, 1]; also the start.
        steps: Ascent steps.
        learning_rate: Step size in pixel units.
        regularizers: Penalties (none by default).
        transforms: Transforms; ``None`` is a 1-pixel jitter.
        seed: Seed of the jitter.
        verbose: 1 shows progress, 0 is silent.
        return_history: Also return the mean objective of every step (1 at the start).

    Returns:
        float32 images shaped like ``image`` (with ``return_history``, also the history).

    Raises:
        ValueError: An unknown layer, an image outside [0, 1], or a bad setting of
            :func:`optimize_input`.
    """
    image = _pixels(image, "image")
    if len(image) == 0:
        raise ValueError("image must hold at least one image. Received: 0 images")
    if isinstance(regularizers, (str, bytes)) or not isinstance(regularizers, (list, tuple)):
        raise ValueError(
            "regularizers must be a list of regularisers, e.g. [L2(1e-3)], or [] for none. "
            f"Received: regularizers={regularizers!r}"
        )
    seed = _checks.seed(seed)
    target = probe.features(model, image, layer_name, flatten=False)
    return optimize_input(
        model,
        FeatureDot(layer_name, target),
        init=image,
        regularizers=regularizers,
        transforms=[Jitter(1, seed=seed)] if transforms is None else transforms,
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        verbose=verbose,
        return_history=return_history,
    )


def _style_layers(model: keras.Model, content_layer, style_layers) -> list:
    """The style layers as a list, every layer name checked against ``model`` by its argument."""
    style_layers = [style_layers] if isinstance(style_layers, str) else list(style_layers)
    probe.ensure_built(model)
    probe.layer(model, content_layer, name="content_layer")
    for each in style_layers:
        probe.layer(model, each, name="style_layers")
    return style_layers


def style_transfer(
    model: keras.Model,
    content_image,
    style_image,
    *,
    content_layer: str,
    style_layers: Sequence[str],
    content_weight: float = 1.0,
    style_weight: float = 1.0,
    tv_weight: float = 0.01,
    steps: int = 200,
    learning_rate: float = 0.02,
    verbose: int = 1,
    return_history: bool = False,
) -> np.ndarray:
    """Neural style transfer (Gatys et al. 2015): optimise the pixels of the content image.

    Content from one deep layer, style as Gram matrices F^T F of several layers
    (:class:`StyleContent`), plus a total-variation prior. Deterministic: it starts from the
    content image and uses no jitter.

    Args:
        model: A built Keras model on [0, 1] pixels (e.g. :func:`cnn_utils.imagenet.pixel_model`).
        content_image: (1, H, W, C) or (H, W, C), in [0, 1].
        style_image: Same shape as the content image.
        content_layer: The content layer.
        style_layers: The style layers.
        content_weight: Weight of the content loss.
        style_weight: Weight of the style loss.
        tv_weight: Weight of the total-variation prior.
        steps: Ascent steps.
        learning_rate: Step size in pixel units.
        verbose: 1 shows progress, 0 is silent.
        return_history: Also return the objective of every step.

    Returns:
        float32 image(s) (1, H, W, C) (with ``return_history``, also the history).

    Raises:
        ValueError: Images of different shapes or outside [0, 1], unknown layers, or a bad
            setting of :func:`optimize_input`.
    """

    def one_image(image, name: str) -> np.ndarray:
        image = image[None] if np.ndim(image) == 3 else image
        return _pixels(image, name)

    content = one_image(content_image, "content_image")
    style = one_image(style_image, "style_image")
    if content.shape != style.shape:
        raise ValueError(
            "style_image must have the content image's shape. Received: "
            f"content_image shape {content.shape}, style_image shape {style.shape}"
        )
    style_layers = _style_layers(model, content_layer, style_layers)
    names = [content_layer, *style_layers]
    activations = probe.layer_model(model, names)
    content_target = tf.cast(activations(content, training=False)[0], tf.float32)
    style_grams = [
        gram_matrix(tf.cast(a, tf.float32)) for a in activations(style, training=False)[1:]
    ]
    objective = StyleContent(
        content_layer,
        content_target,
        style_layers,
        style_grams,
        content_weight=content_weight,
        style_weight=style_weight,
    )
    return optimize_input(
        model,
        objective,
        init=content,
        regularizers=[TotalVariation(tv_weight)],
        steps=steps,
        learning_rate=learning_rate,
        verbose=verbose,
        return_history=return_history,
    )
