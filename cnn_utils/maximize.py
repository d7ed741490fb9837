"""Images that a network likes: activation maximisation, class visualisation, inversion, dreams.

One gradient-ascent loop over the input pixels, :func:`optimize_input`, serves every method.
What it maximises is composed from small callables, as in tf-keras-vis:

* an **objective** maps the activations of some layers to one score per image:
  :class:`FilterMean`, :class:`Neuron`, :class:`ClassScore`, :class:`FeatureMatch`,
  :class:`LayerNorm`, :class:`StyleContent`;
* **regularisers** are penalties subtracted from the score: :class:`L2`,
  :class:`TotalVariation`;
* **transforms** act on the image: :class:`Jitter` shifts the input the model sees (inside
  the gradient), while :class:`Blur`, :class:`ClipSmallValues` and
  :class:`ClipSmallGradients` modify the image after each update (Yosinski et al. 2015).

Each step is I <- I + lr * g / rms(g) with g the gradient of score - penalties (normalised per
image, so that ``learning_rate`` is in pixel units), then the image is clipped to
``value_range``. The step runs as one ``tf.function`` traced once per call.

References:
    Erhan et al. 2009, "Visualizing higher-layer features of a deep network".
    Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional networks" (classes).
    Yosinski et al. 2015, "Understanding neural networks through deep visualization".
    Mahendran & Vedaldi 2015, "Understanding deep image representations by inverting them".
    Mordvintsev, Olah & Tyka 2015, "Inceptionism: going deeper into neural networks".
    Gatys, Ecker & Bethge 2015, "A neural algorithm of artistic style".
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from cnn_utils.saliency import check_logits, ensure_built, get_layer, model_input

_EPS = 1e-8
LOGITS = None
"""Key of the model's own output (the logits) among the activations an objective receives."""


def _int_list(argname: str, value, batch: int | None = None) -> np.ndarray:
    array = np.atleast_1d(np.asarray(value))
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{argname} must be an integer or a sequence of integers. Received: {argname}={value!r}"
        )
    if batch is not None and array.size == 1:
        array = np.repeat(array, batch)
    return array.astype(np.int32)


def _check_weight(argname: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{argname} must be a number >= 0. Received: {argname}={value!r}")
    return float(value)


def _check_every(every: int) -> int:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer. Received: every={every!r}")
    return every


def _check_percentile(percentile: float) -> float:
    if not 0 <= percentile < 100:
        raise ValueError(f"percentile must be in [0, 100). Received: percentile={percentile!r}")
    return float(percentile)


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


class Neuron:
    """One unit: the activation of channel k at one position (default: the centre).

    Args:
        layer_name: The layer.
        filter_index: The channel (or Dense unit), or one per image.
        position: (row, column) in the feature map; ``None`` is the centre.
    """

    def __init__(
        self,
        layer_name: str,
        filter_index: int | Sequence[int],
        position: tuple[int, int] | None = None,
    ):
        self.layer_names = (layer_name,)
        self.filter_index = _int_list("filter_index", filter_index)
        self.position = position

    def __call__(self, activations: dict) -> tf.Tensor:
        """Return the score of each image."""
        a = activations[self.layer_names[0]]
        if a.shape.rank == 4:
            row, col = self.position or (a.shape[1] // 2, a.shape[2] // 2)
            a = a[:, row, col, :]
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
        self.probability = bool(probability)

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
    features = tf.convert_to_tensor(features, dtype=tf.float32)
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


def total_variation(x) -> tf.Tensor:
    """Mean squared difference between neighbouring pixels, per image (Mahendran & Vedaldi).

    Args:
        x: Images (batch, H, W, C).

    Returns:
        (batch,) total variation (the beta = 2 version: squared differences).
    """
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    dy = x[:, 1:, :, :] - x[:, :-1, :, :]
    dx = x[:, :, 1:, :] - x[:, :, :-1, :]
    return _mean_square(dy) + _mean_square(dx)


class TotalVariation:
    """Penalty weight * total variation: favours piecewise-smooth images (Mahendran & Vedaldi).

    Args:
        weight: The penalty's weight, >= 0.
    """

    def __init__(self, weight: float = 0.1):
        self.weight = _check_weight("weight", weight)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Return the penalty of each image."""
        return self.weight * total_variation(x)


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
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 0:
            raise ValueError(f"pixels must be an integer >= 0. Received: pixels={pixels!r}")
        self.pixels = pixels
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
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0. Received: sigma={sigma!r}")
    x = tf.convert_to_tensor(x, dtype=tf.float32)
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
        self.every = _check_every(every)

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
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0. Received: sigma={sigma!r}")
        self.sigma = float(sigma)

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
        self.percentile = _check_percentile(percentile)

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
        self.percentile = _check_percentile(percentile)

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


def _input_shape(model: keras.Model, init) -> tuple[int, ...]:
    if init is not None:
        return tuple(np.shape(init)[1:])
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"Model {model.name!r} accepts images of any size {shape}: pass init images. "
            "Received: init=None"
        )
    return shape


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
    value_range: tuple[float, float] | None = (0.0, 1.0),
    init_scale: float = 0.1,
    seed: int | None = None,
    verbose: int = 1,
    return_history: bool = False,
):
    """Gradient ascent on the input pixels: I* = argmax_I objective(I) - sum of penalties.

    Args:
        model: A built Keras model (Sequential, functional, with course blocks).
        objective: A callable mapping ``{layer_name: activations}`` (``None`` for the
            logits) to one score per image, with a ``layer_names`` attribute.
        num_images: Images optimised at once when ``init`` is None.
        init: Starting images (batch, H, W, C); ``None`` starts from grey 0.5 plus Gaussian
            noise of standard deviation ``init_scale``.
        regularizers: Penalties ``r(x) -> (batch,)`` subtracted from the score.
        transforms: :class:`Jitter` (before the model) and after-step transforms.
        steps: Number of ascent steps, >= 1.
        learning_rate: Step size in pixel units (the gradient is RMS-normalised), > 0.
        value_range: Clip the image to (low, high) after each step; ``None`` does not clip.
        init_scale: Noise level of the random start.
        seed: Seed of the random start.
        verbose: 1 shows a progress bar with the score; 0 is silent.
        return_history: Also return the mean objective of every step.

    Returns:
        float32 array (batch, H, W, C); with ``return_history`` a pair ``(images, scores)``.

    Raises:
        ValueError: Bad steps or learning rate, an unknown layer name.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer. Received: steps={steps!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0. Received: learning_rate={learning_rate!r}")
    ensure_built(model)
    keys = list(objective.layer_names)
    outputs = [model.outputs[0] if k is LOGITS else get_layer(model, k).output for k in keys]
    probe = keras.Model(model_input(model), outputs)
    shape = _input_shape(model, init)
    if init is None:
        rng = np.random.default_rng(seed)
        init = 0.5 + init_scale * rng.standard_normal((num_images, *shape))
    x = tf.constant(np.asarray(init, dtype=np.float32))
    before = [t for t in transforms if getattr(t, "stage", "after") == "before"]
    after = [t for t in transforms if getattr(t, "stage", "after") != "before"]
    low, high = value_range if value_range is not None else (None, None)

    @tf.function(reduce_retracing=True)
    def step(x, t, lr):
        with tf.GradientTape() as tape:
            tape.watch(x)
            seen = x
            for transform in before:
                seen = transform(seen, step=t)
            values = probe(seen, training=False)
            values = values if isinstance(values, (list, tuple)) else [values]
            score = objective(dict(zip(keys, values, strict=True)))
            total = score
            for regularizer in regularizers:
                total = total - regularizer(x)
            total = tf.reduce_sum(total)
        grads = tape.gradient(total, x)
        grads = tf.zeros_like(x) if grads is None else grads
        rms = tf.sqrt(tf.reduce_mean(tf.square(grads), axis=(1, 2, 3), keepdims=True))
        grads = grads / tf.maximum(rms, _EPS)
        x = x + lr * grads
        for transform in after:
            x = transform(x, grads=grads, step=t)
        if low is not None:
            x = tf.clip_by_value(x, low, high)
        return x, tf.reduce_mean(score)

    bar = keras.utils.Progbar(steps, stateful_metrics=["score"]) if verbose else None
    lr = tf.constant(float(learning_rate))
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


def _check_filters(model: keras.Model, layer_name: str, filter_index) -> np.ndarray:
    indices = _int_list("filter_index", filter_index)
    channels = get_layer(model, layer_name).output.shape[-1]
    if indices.min() < 0 or indices.max() >= channels:
        raise ValueError(
            f"filter_index must be in [0, {channels}) for layer {layer_name!r}. "
            f"Received: filter_index={filter_index!r}"
        )
    return indices


def maximize_activation(
    model: keras.Model,
    layer_name: str,
    filter_index: int | Sequence[int],
    *,
    steps: int = 100,
    learning_rate: float = 0.05,
    regularizers: Sequence | None = None,
    transforms: Sequence | None = None,
    neuron: bool = False,
    init=None,
    seed: int | None = None,
    verbose: int = 1,
    **kwargs,
) -> np.ndarray:
    """Visualise filters by gradient ascent: I* = argmax_I mean(f_k(I)) - alpha * Omega(I).

    Erhan et al. 2009; the regularisers of Yosinski et al. 2015 by default
    (:func:`yosinski_regularizers`).

    Args:
        model: A built Keras model.
        layer_name: The layer.
        filter_index: One channel, or several (one image each, optimised together).
        steps: Ascent steps.
        learning_rate: Step size in pixel units.
        regularizers: Penalties; ``None`` takes the default set, ``()`` none.
        transforms: Transforms; ``None`` takes the default set, ``()`` none.
        neuron: Maximise the centre unit of the channel (:class:`Neuron`) instead of its mean.
        init: Starting images; ``None`` is seeded noise.
        seed: Seed of the start and of the jitter.
        verbose: 1 shows progress, 0 is silent.
        **kwargs: Passed to :func:`optimize_input` (``value_range``, ``return_history``...).

    Returns:
        float32 images (n_filters, H, W, C).

    Raises:
        ValueError: An unknown layer (the message lists the names) or a filter out of range.
    """
    ensure_built(model)
    indices = _check_filters(model, layer_name, filter_index)
    default_regs, default_transforms = yosinski_regularizers(seed=seed)
    objective = (Neuron if neuron else FilterMean)(layer_name, indices)
    return optimize_input(
        model,
        objective,
        num_images=len(indices),
        init=init,
        regularizers=default_regs if regularizers is None else regularizers,
        transforms=default_transforms if transforms is None else transforms,
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        verbose=verbose,
        **kwargs,
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
    **kwargs,
) -> np.ndarray:
    """Class model visualisation (Simonyan et al. 2014): I* = argmax_I S_c(I) - lambda ||I||^2.

    ``S_c`` is the logit; ``probability=True`` maximises the softmax output instead, which can
    also be raised by lowering the other classes' scores. With ``regularizers=None`` the
    default set of :func:`yosinski_regularizers` is used.

    Args:
        model: A model that outputs logits.
        class_index: One class, or several (one image each).
        steps: Ascent steps.
        learning_rate: Step size in pixel units.
        regularizers: Penalties; ``None`` takes the default set, ``()`` none.
        transforms: Transforms; ``None`` takes the default set, ``()`` none.
        probability: Maximise p_c rather than S_c.
        init: Starting images; ``None`` is seeded noise.
        seed: Seed of the start and of the jitter.
        verbose: 1 shows progress, 0 is silent.
        **kwargs: Passed to :func:`optimize_input`.

    Returns:
        float32 images (n_classes, H, W, C).

    Raises:
        ValueError: A softmax output or a class out of range.
    """
    ensure_built(model)
    check_logits(model)
    indices = _int_list("class_index", class_index)
    num_classes = model.outputs[0].shape[-1]
    if indices.min() < 0 or indices.max() >= num_classes:
        raise ValueError(
            f"class_index must be in [0, {num_classes}). Received: class_index={class_index!r}"
        )
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
        **kwargs,
    )


def layer_features(model: keras.Model, layer_name: str, x) -> np.ndarray:
    """Activations of ``layer_name`` on images ``x`` (inference mode)."""
    ensure_built(model)
    probe = keras.Model(model_input(model), get_layer(model, layer_name).output)
    return keras.ops.convert_to_numpy(probe(np.asarray(x, np.float32), training=False))


def invert_features(
    model: keras.Model,
    layer_name: str,
    x,
    *,
    steps: int = 200,
    learning_rate: float = 0.05,
    tv_weight: float = 0.05,
    l2_weight: float = 0.0,
    transforms: Sequence = (),
    seed: int | None = None,
    verbose: int = 1,
    **kwargs,
):
    """Pre-image (Mahendran & Vedaldi 2015): min_I ||Phi(I) - Phi_0||^2 + R_TV(I) + R_alpha(I).

    Starts from seeded noise and matches the features Phi_0 = Phi(x) of the layer.

    Args:
        model: A built Keras model.
        layer_name: The layer Phi.
        x: The images to invert (batch, H, W, C).
        steps: Ascent steps.
        learning_rate: Step size in pixel units.
        tv_weight: Weight of the total-variation prior.
        l2_weight: Weight of the L2 (alpha-norm with alpha = 2) prior.
        transforms: Extra transforms.
        seed: Seed of the start.
        verbose: 1 shows progress, 0 is silent.
        **kwargs: Passed to :func:`optimize_input` (``return_history``...).

    Returns:
        float32 reconstructions shaped like x (with ``return_history``, also the history of
        minus the relative feature distance).

    Raises:
        ValueError: An unknown layer.
    """
    x = np.asarray(x, dtype=np.float32)
    target = layer_features(model, layer_name, x)
    regularizers = [TotalVariation(tv_weight)] + ([L2(l2_weight)] if l2_weight else [])
    return optimize_input(
        model,
        FeatureMatch(layer_name, target),
        num_images=len(x),
        regularizers=regularizers,
        transforms=transforms,
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        verbose=verbose,
        **kwargs,
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
    **kwargs,
) -> np.ndarray:
    """DeepDream (Mordvintsev et al. 2015): start from an image, amplify what layers detect.

    Maximises the mean squared activation of ``layer_names`` (:class:`LayerNorm`); with
    ``transforms=None`` a jitter of 1 pixel is applied.

    Args:
        model: A built Keras model.
        layer_names: One layer or several.
        image: Starting images (batch, H, W, C).
        steps: Ascent steps.
        learning_rate: Step size in pixel units.
        regularizers: Penalties (none by default).
        transforms: Transforms; ``None`` is a 1-pixel jitter.
        seed: Seed of the jitter.
        verbose: 1 shows progress, 0 is silent.
        **kwargs: Passed to :func:`optimize_input`.

    Returns:
        The dreamed images, float32, shaped like ``image``.

    Raises:
        ValueError: An unknown layer.
    """
    image = np.asarray(image, dtype=np.float32)
    return optimize_input(
        model,
        LayerNorm(layer_names),
        init=image,
        regularizers=regularizers,
        transforms=[Jitter(1, seed=seed)] if transforms is None else transforms,
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        verbose=verbose,
        **kwargs,
    )


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
    seed: int | None = None,
    verbose: int = 1,
    **kwargs,
) -> np.ndarray:
    """Neural style transfer (Gatys et al. 2015): optimise the pixels of the content image.

    Content from one deep layer, style as Gram matrices F^T F of several layers
    (:class:`StyleContent`), plus a total-variation prior.

    Args:
        model: A built Keras model (e.g. VGG16 without its top).
        content_image: (1, H, W, C) or (H, W, C).
        style_image: Same shape as the content image.
        content_layer: The content layer.
        style_layers: The style layers.
        content_weight: Weight of the content loss.
        style_weight: Weight of the style loss.
        tv_weight: Weight of the total-variation prior.
        steps: Ascent steps.
        learning_rate: Step size in pixel units.
        seed: Seed (unused by the deterministic loop; kept for symmetry).
        verbose: 1 shows progress, 0 is silent.
        **kwargs: Passed to :func:`optimize_input` (``value_range`` for other pixel scales).

    Returns:
        float32 image(s) (1, H, W, C).

    Raises:
        ValueError: Images of different shapes or unknown layers.
    """
    content = np.asarray(content_image, dtype=np.float32)
    style = np.asarray(style_image, dtype=np.float32)
    content = content[None] if content.ndim == 3 else content
    style = style[None] if style.ndim == 3 else style
    if content.shape != style.shape:
        raise ValueError(
            "style_image must have the content image's shape. Received: "
            f"content_image shape {content.shape}, style_image shape {style.shape}"
        )
    ensure_built(model)
    names = [content_layer, *style_layers]
    probe = keras.Model(model_input(model), [get_layer(model, n).output for n in names])
    content_target = probe(content, training=False)[0]
    style_grams = [gram_matrix(a) for a in probe(style, training=False)[1:]]
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
        seed=seed,
        verbose=verbose,
        **kwargs,
    )
