"""Adversarial training through ``model.fit``: the lecture's min-max loop as a Keras model.

Adversarial training (Madry et al. 2018, "Towards deep learning models resistant to
adversarial attacks") solves

    min_theta  E_(x, y) [ max_{x' in B_eps(x)}  l(f(x'; theta), y) ]

by approximating the inner maximum with an attack on every mini-batch and taking one optimiser
step on the result. :class:`AdversarialModel` wraps any logits classifier and overrides
``train_step`` and ``test_step`` so that ``compile``/``fit``/``evaluate`` (progress bar,
callbacks, validation, ``tf.distribute`` strategies) run that loop. The inner attack is the
graph-friendly core :func:`cnn_utils.attacks.perturb`:

* ``attack="pgd"``: PGD with a random start (Madry et al. 2018);
* ``attack="fgsm_rs"``: one FGSM step from a random start, step ``~1.25 * eps`` ("Fast is
  better than free", Wong et al. 2020);
* ``attack="fgsm"``: one FGSM step from the clean input (Goodfellow et al. 2015), kept to show
  catastrophic overfitting (Wong et al. 2020).

:class:`EpsilonRamp` is a callback that grows epsilon (and the step size with it) linearly
over the first training steps, the warm-up that makes adversarial training at a large epsilon
start reliably (Wong et al. 2020; Gowal et al. 2018). :func:`adversarially_trained` is the
whole recipe (data, wrapper, ramp, fit) behind the trained-model cache, so a notebook gets the
same robust model again without training it twice.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import keras
import tensorflow as tf

from cnn_utils import _checks, attacks, config
from cnn_utils.data import load_dataset
from cnn_utils.training import StopOnNonFinite, cached_model, compile_classifier

__all__ = [
    "INNER_ATTACKS",
    "LABEL_MODES",
    "AdversarialModel",
    "EpsilonRamp",
    "adversarially_trained",
]

INNER_ATTACKS = ("pgd", "fgsm_rs", "fgsm")
"""Inner attacks that :class:`AdversarialModel` can train with (step kinds of
:func:`cnn_utils.attacks.perturb`)."""

LABEL_MODES = ("predicted", "true")
"""Labels the inner attack moves away from: the current prediction or the true label."""


def _checks_arrays(model, x, y, x_name: str, y_name: str) -> None:
    """Refuse arrays that would train on garbage: NaN or out-of-range pixels, bad labels."""
    if not hasattr(x, "shape") or not hasattr(y, "shape") and not isinstance(y, list):
        return  # dicts and other structures: Keras reports its own errors
    lo, hi = model.clip_value_min, model.clip_value_max
    x = _checks.images(x, name=x_name, value_range=(lo, hi))
    classes = _checks.logits_model(model.classifier, x)
    _checks.labels(y, int(x.shape[0]), classes, name=y_name)


class AdversarialModel(keras.Model):
    """A Keras model that trains the classifier it wraps on clean + adversarial examples.

    Per mini-batch ``(x, y)`` the training step is the lecture's loop (Madry et al. 2018):

    1. labels for the attack: the current model's prediction ``argmax f(x)``
       (``label_mode="predicted"``, which also avoids label leaking) or the true ``y``
       (``label_mode="true"``);
    2. ``x_adv`` = an untargeted attack on those labels inside the ball ``B_eps(x)`` (PGD with
       a random start, FGSM with a random start, or plain FGSM), made with the classifier in
       inference mode and outside the gradient tape;
    3. loss = ``clean_weight * mean l(f(x), y) + adversarial_weight * mean l(f(x_adv), y)``,
       both against the true labels (plus any regularisation losses, counted once); the clean
       and adversarial halves go through the classifier as one batch in training mode (with
       ``clean_weight=0``, Madry et al.'s adversarial-only loss, only the adversarial half is
       trained on, which saves a third of the work);
    4. one optimiser step.

    ``evaluate`` (and validation during ``fit``) attacks the true labels with the same attack
    and reports the same numbers: ``loss``, each compiled metric on the clean half
    (``accuracy``) and on the adversarial batch (``adv_accuracy``). These numbers come from the
    training attack and are optimistic; for a final evaluation use
    :func:`cnn_utils.autoattack.evaluate_robustness` (AutoAttack: APGD-CE, APGD-T, FAB-T and
    Square, each on the survivors) or :func:`cnn_utils.robustness.robust_accuracy` with
    ``restarts=``.

    ``epsilon`` and ``step_size`` are non-trainable variables of the wrapper (not of the
    classifier), so a callback such as :class:`EpsilonRamp` can change them between steps
    without retracing. The trained classifier is ``self.classifier``: save and reload it on
    its own (``model.classifier.save("robust.keras")``); the wrapper itself is not meant to
    be serialised. Create the wrapper inside ``strategy.scope()`` to train with a
    ``tf.distribute`` strategy; each replica then draws its own random starts.

    Args:
        model: A Keras model (or layer) that maps images to logits (no softmax).
        epsilon: Radius of the L-infinity (or L2) ball, >= 0 (0.3 for MNIST in the papers).
        num_steps: Attack steps per mini-batch (PGD); must be 1 for ``"fgsm_rs"``/``"fgsm"``.
        step_size: Step of the attack, > 0 (PGD: about ``2.5 * epsilon / num_steps``;
            FGSM-RS: ``1.25 * epsilon``; FGSM: ``epsilon``).
        attack: ``"pgd"`` (random start), ``"fgsm_rs"`` (Wong et al. 2020) or ``"fgsm"``
            (no random start).
        label_mode: ``"predicted"`` or ``"true"``.
        clean_weight: Weight of the clean loss, >= 0.
        adversarial_weight: Weight of the adversarial loss, >= 0 (not both zero).
        norm: ``"linf"`` or ``"l2"``.
        clip_value_min: Lower end of the valid pixel range.
        clip_value_max: Upper end of the valid pixel range.
        seed: Seed of the random starts (an int), or ``None`` for a non-deterministic seed.
        **kwargs: Passed to ``keras.Model`` (e.g. ``name``).

    Raises:
        ValueError: A model that is not callable or ends in a softmax, a bad epsilon, number of
            steps, step size, weight, clip range or seed, or an unknown attack, label mode or
            norm; the message names the argument and the value.
    """

    def __init__(
        self,
        model: keras.Model,
        epsilon: float,
        num_steps: int,
        step_size: float,
        *,
        attack: str = "pgd",
        label_mode: str = "predicted",
        clean_weight: float = 1.0,
        adversarial_weight: float = 1.0,
        norm: str = "linf",
        clip_value_min: float = 0.0,
        clip_value_max: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ):
        _checks.logits_model(model)
        attack = _checks.one_of("attack", attack, INNER_ATTACKS)
        label_mode = _checks.one_of("label_mode", label_mode, LABEL_MODES)
        norm = _checks.one_of("norm", norm, attacks.NORMS)
        num_steps = _checks.integer("num_steps", num_steps, minimum=1)
        if attack != "pgd" and num_steps != 1:
            raise ValueError(
                f"num_steps must be 1 for attack={attack!r} (a single step). "
                f"Received: num_steps={num_steps!r}"
            )
        epsilon = _checks.number("epsilon", epsilon, minimum=0.0)
        step_size = _checks.number("step_size", step_size, positive=True)
        clean_weight = _checks.number("clean_weight", clean_weight, minimum=0.0)
        adversarial_weight = _checks.number("adversarial_weight", adversarial_weight, minimum=0.0)
        if clean_weight == 0 and adversarial_weight == 0:
            raise ValueError(
                "clean_weight and adversarial_weight cannot both be 0. "
                f"Received: clean_weight={clean_weight}, adversarial_weight={adversarial_weight}"
            )
        lo, hi = _checks.clip_range(clip_value_min, clip_value_max)
        seed = _checks.seed(seed)

        super().__init__(**kwargs)
        self.classifier = model
        self.attack = attack
        self.label_mode = label_mode
        self.num_steps = int(num_steps)
        self.norm = norm
        self.clean_weight = clean_weight
        self.adversarial_weight = adversarial_weight
        self.clip_value_min, self.clip_value_max = lo, hi
        self.seed = seed
        self.epsilon = keras.Variable(epsilon, trainable=False, dtype="float32", name="epsilon")
        self.step_size = keras.Variable(
            step_size, trainable=False, dtype="float32", name="step_size"
        )
        # Random starts: one generator, created once (in the strategy's scope when there is
        # one, so that every replica gets its own stream). Kept in a tuple so that Keras does
        # not try to track it as a layer attribute.
        self._rng = (
            tf.random.Generator.from_seed(seed)
            if seed is not None
            else tf.random.Generator.from_non_deterministic_state(),
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self._metric_pairs = [_metric_pair("accuracy")]

    # -- Keras plumbing ---------------------------------------------------------------------

    def call(self, inputs, training=None):
        """Logits of the wrapped classifier (no attack: prediction is on the inputs given)."""
        return self.classifier(inputs, training=training)

    @property
    def metrics(self):
        """The loss, then each metric on the clean half, then each on the adversarial half."""
        clean = [pair[0] for pair in self._metric_pairs]
        return [self.loss_tracker, *clean, *(pair[1] for pair in self._metric_pairs)]

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configure training; the loss defaults to cross-entropy from logits.

        Args:
            optimizer: A Keras optimizer or its name.
            loss: The per-example loss of both halves; ``None`` means
                ``SparseCategoricalCrossentropy(from_logits=True)``.
            metrics: Metrics as for ``keras.Model.compile`` (names such as ``"accuracy"``,
                metric objects or functions of ``(y_true, logits)``); each is reported on the
                clean half under its name and on the adversarial half as ``adv_<name>``.
                ``None`` means ``["accuracy"]`` (so ``accuracy`` and ``adv_accuracy``).
            **kwargs: Passed to ``keras.Model.compile`` (``steps_per_execution``...).

        Raises:
            ValueError: ``metrics`` that is not a list of metrics, or a nested (per-output)
                specification (the model has one output).
        """
        if metrics is None:
            metrics = ["accuracy"]
        if not isinstance(metrics, (list, tuple)):
            raise ValueError(
                f"metrics must be a list of metrics (one output). Received: metrics={metrics!r}"
            )
        with self.distribute_strategy.scope():
            self._metric_pairs = [_metric_pair(spec) for spec in metrics]
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    # -- The lecture's loop -----------------------------------------------------------------

    def adversarial_examples(self, x, y=None, *, label_mode: str | None = None):
        """Make the inner attack's examples for a batch (graph-friendly, no checks).

        Args:
            x: Clean inputs, shape (batch, ...).
            y: True integer labels, shape (batch,) (used when the label mode is ``"true"``).
            label_mode: Override of the model's label mode.

        Returns:
            The adversarial inputs, float32, a constant for any gradient tape.
        """
        mode = label_mode or self.label_mode
        return attacks.perturb(
            self.classifier,
            x,
            None if mode == "predicted" else y,
            self.epsilon,
            self.num_steps,
            self.step_size,
            norm=self.norm,
            random_start=self.attack != "fgsm",
            clip_value_min=self.clip_value_min,
            clip_value_max=self.clip_value_max,
            seed=self._rng[0],
        )

    def _halves(self, x, y, sample_weight, x_adv, training: bool):
        x = tf.cast(x, tf.float32)
        n = tf.shape(x)[0]
        y = tf.reshape(y, [-1])
        if self.clean_weight == 0:
            # Adversarial loss only (Madry et al. 2018): the clean logits are for the metric,
            # computed in inference mode and without gradient.
            clean = tf.stop_gradient(self.classifier(x, training=False))
            adv = self.classifier(x_adv, training=training)
            weights = None
            if sample_weight is not None:
                weights = self.adversarial_weight * tf.cast(
                    tf.reshape(sample_weight, [-1]), tf.float32
                )
            elif self.adversarial_weight != 1:
                weights = tf.fill([n], tf.cast(self.adversarial_weight, tf.float32))
            loss = self._compute_loss(
                x=None, y=y, y_pred=adv, sample_weight=weights, training=training
            )
            return clean, adv, loss
        logits = self.classifier(tf.concat([x, x_adv], axis=0), training=training)
        y2 = tf.concat([y, y], axis=0)
        if sample_weight is None:
            sample_weight = tf.ones([n], tf.float32)
        sample_weight = tf.cast(tf.reshape(sample_weight, [-1]), tf.float32)
        # The loss averages over the 2n rows: weights 2*w make it w-weighted sum of the means.
        weights = tf.concat(
            [
                2.0 * self.clean_weight * sample_weight,
                2.0 * self.adversarial_weight * sample_weight,
            ],
            axis=0,
        )
        loss = self._compute_loss(
            x=None, y=y2, y_pred=logits, sample_weight=weights, training=training
        )
        return logits[:n], logits[n:], loss

    def _update_metrics(self, x, y, sample_weight, clean_logits, adv_logits, loss):
        # Keras divides the loss by the number of replicas (their gradients are summed): undo
        # it for the number shown.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.loss_tracker.update_state(loss * float(replicas), sample_weight=tf.shape(x)[0])
        for clean, adversarial in self._metric_pairs:
            clean.update_state(y, clean_logits, sample_weight=sample_weight)
            adversarial.update_state(y, adv_logits, sample_weight=sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def fit(self, x=None, y=None, *args, **kwargs):
        """Keras ``fit``, after checking array inputs: pixels finite and in the clip range
        (0..255 images are refused with "divide by 255"), integer labels in range.

        Datasets and generators are passed on unchecked (their batches are not known yet).
        A :class:`~cnn_utils.training.StopOnNonFinite` callback is added (unless one is
        given): training stops with an error at the first NaN or Inf loss or weight. Epsilon
        and the step size are restored when ``fit`` ends, also when it is interrupted (Ctrl-C)
        or fails, so a ramp (:class:`EpsilonRamp`) never leaves them at a partial value.
        """  # noqa: D205
        if x is not None and y is not None and not hasattr(x, "element_spec"):
            _checks_arrays(self, x, y, "x", "y")
            validation = kwargs.get("validation_data")
            if isinstance(validation, tuple) and len(validation) >= 2:
                _checks_arrays(self, validation[0], validation[1], "validation x", "validation y")
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if not any(isinstance(c, StopOnNonFinite) for c in callbacks):
            callbacks.append(StopOnNonFinite())
        settings = (self.epsilon.numpy(), self.step_size.numpy())
        try:
            return super().fit(x, y, *args, callbacks=callbacks, **kwargs)
        finally:
            self.epsilon.assign(settings[0])
            self.step_size.assign(settings[1])

    def train_step(self, data):
        """One step of adversarial training on a mini-batch (Madry et al. 2018)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x_adv = self.adversarial_examples(x, y)  # outside the tape: the attack is not trained
        with tf.GradientTape() as tape:
            clean_logits, adv_logits, loss = self._halves(x, y, sample_weight, x_adv, True)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return self._update_metrics(x, y, sample_weight, clean_logits, adv_logits, loss)

    def test_step(self, data):
        """Clean and adversarial loss and accuracy on a batch; the attack uses the true labels."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x_adv = self.adversarial_examples(x, y, label_mode="true")
        clean_logits, adv_logits, loss = self._halves(x, y, sample_weight, x_adv, False)
        return self._update_metrics(x, y, sample_weight, clean_logits, adv_logits, loss)


def _metric_pair(spec) -> tuple[keras.metrics.Metric, keras.metrics.Metric]:
    """Two fresh copies of a metric: ``name`` for the clean half, ``adv_<name>`` for the other."""
    if spec in ("accuracy", "acc"):
        return tuple(
            keras.metrics.SparseCategoricalAccuracy(name=name)
            for name in ("accuracy", "adv_accuracy")
        )
    try:
        metric = keras.metrics.get(spec)
    except (ValueError, TypeError) as error:
        raise ValueError(f"metrics must hold Keras metrics. Received: {spec!r} ({error})") from None
    if isinstance(metric, type):
        metric = metric()
    if isinstance(metric, keras.metrics.Metric):
        config = metric.get_config()
        return tuple(
            type(metric).from_config({**config, "name": name})
            for name in (metric.name, f"adv_{metric.name}")
        )
    name = spec if isinstance(spec, str) else getattr(metric, "__name__", "metric")
    return tuple(keras.metrics.MeanMetricWrapper(metric, name=n) for n in (name, f"adv_{name}"))


class EpsilonRamp(keras.callbacks.Callback):
    """Grow an :class:`AdversarialModel`'s epsilon linearly from 0 over the first steps.

    At training step ``t`` (counted over the whole ``fit``) epsilon is
    ``final * min(1, (t + 1) / ramp_steps)``, where ``final`` is the model's epsilon when
    training starts, and the step size is scaled by the same factor, so the attack keeps its
    shape while the ball grows. Starting adversarial training at the full epsilon (0.3 on
    MNIST) often leaves the model stuck at chance; a warm-up avoids it (Gowal et al. 2018;
    Wong et al. 2020 ramp the learning rate too).

    Args:
        ramp_steps: Number of training steps (mini-batches) to reach the final epsilon, >= 1.

    Raises:
        ValueError: A bad ``ramp_steps``.
    """

    def __init__(self, ramp_steps: int):
        super().__init__()
        self.ramp_steps = _checks.integer("ramp_steps", ramp_steps, minimum=1)
        self._step = 0
        self._final = None  # (epsilon, step size), read at the start of training

    def on_train_begin(self, logs=None):
        """Read the final epsilon and step size; fail early on a wrong model.

        They are read at every ``fit`` (the model restores them when a ``fit`` ends, even an
        interrupted one), so a ramp reused after Ctrl-C ramps to the same final epsilon.
        """
        if not isinstance(self.model, AdversarialModel):
            raise ValueError(
                "EpsilonRamp needs an AdversarialModel. "
                f"Received: model={type(self.model).__name__}"
            )
        self._final = (float(self.model.epsilon.numpy()), float(self.model.step_size.numpy()))

    def on_train_batch_begin(self, batch, logs=None):
        """Set epsilon and the step size for this step."""
        factor = min(1.0, (self._step + 1) / self.ramp_steps)
        self.model.epsilon.assign(self._final[0] * factor)
        self.model.step_size.assign(self._final[1] * factor)
        self._step += 1


def adversarially_trained(
    name: str,
    build: Callable[[], keras.Model],
    dataset: str = "mnist",
    *,
    epsilon: float = 0.3,
    attack: str | None = "pgd",
    num_steps: int = 10,
    step_size: float | None = None,
    label_mode: str = "predicted",
    clean_weight: float = 1.0,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    ramp_epochs: float = 1.0,
    subset: int | None = None,
    test_subset: int | None = None,
    seed: int = config.DEFAULT_SEED,
    verbose: int = 1,
    return_info: bool = False,
):
    """A classifier trained by :class:`AdversarialModel` (or plainly), cached on first use.

    One recipe for a standard model and its robust twin: the same data (``subset`` training
    and ``test_subset`` test images of ``dataset``, seeded), architecture (``build``), Adam at
    ``learning_rate``, batch size and epochs; only the loss differs. ``attack=None`` trains on
    clean images only (the standard model); otherwise the clean + adversarial loss of
    :class:`AdversarialModel` with ``epsilon`` grown over the first ``ramp_epochs`` epochs
    (:class:`EpsilonRamp`). The test images are the validation data, so the history holds
    ``val_accuracy`` (and ``val_adv_accuracy``). The model is cached by
    :func:`cnn_utils.training.cached_model` under its architecture and every setting above,
    so a second call with the same settings loads it instead of training.

    Args:
        name: Start of the cache file name (e.g. ``"mnist_robust"``).
        build: Returns the untrained logits model (seeded by the cache with ``seed``).
        dataset: A dataset name of :mod:`cnn_utils.data`.
        epsilon: Radius of the L-infinity ball of the inner attack, >= 0.
        attack: One of :data:`INNER_ATTACKS`, or ``None`` for standard training.
        num_steps: Inner attack steps (PGD); 1 for ``"fgsm_rs"`` and ``"fgsm"``.
        step_size: Inner step; ``None`` takes ``2.5 * epsilon / num_steps`` (PGD),
            ``1.25 * epsilon`` (FGSM-RS) or ``epsilon`` (FGSM).
        label_mode: One of :data:`LABEL_MODES`.
        clean_weight: Weight of the clean loss (0: adversarial loss only, Madry et al. 2018).
        epochs: Training epochs.
        batch_size: Mini-batch size.
        learning_rate: Adam's learning rate.
        ramp_epochs: Epochs over which epsilon grows from 0 (0 for no warm-up).
        subset: Training images (``None``: all).
        test_subset: Test (validation) images (``None``: all).
        seed: Seed of the weights, the subsets, the shuffling and the random starts.
        verbose: 1 prints what happens and one line per epoch, 0 is silent.
        return_info: Also return the cache's info dict (``history``, ``train_seconds``,
            ``test_accuracy``, the settings, ``from_cache``).

    Returns:
        The trained logits classifier (not the wrapper); with ``return_info``, ``(model, info)``.

    Raises:
        ValueError: A bad setting (the message names it), or an unknown dataset.
    """
    adversarial = _adversarial_settings(
        attack, epsilon, num_steps, step_size, label_mode, clean_weight, ramp_epochs
    )
    settings = _recipe_settings(
        dataset, attack, adversarial, epochs, batch_size, learning_rate, subset, test_subset, seed
    )
    verbose = _checks.one_of("verbose", verbose, (0, 1, 2))
    fit = functools.partial(_fit_recipe, name=name, settings=settings, verbose=verbose)
    return cached_model(name, build, fit, settings, verbose=verbose, return_info=return_info)


def _adversarial_settings(
    attack, epsilon, num_steps, step_size, label_mode, clean_weight, ramp_epochs
) -> dict | None:
    """The inner attack's settings, checked, with the default step; ``None`` for ``attack=None``."""
    if attack is None:
        return None
    attack = _checks.one_of("attack", attack, INNER_ATTACKS)
    epsilon = _checks.number("epsilon", epsilon, minimum=0.0)
    num_steps = 1 if attack != "pgd" else _checks.integer("num_steps", num_steps, minimum=1)
    if step_size is None:
        step_size = {"pgd": 2.5 / num_steps, "fgsm_rs": 1.25, "fgsm": 1.0}[attack] * epsilon
    return {
        "epsilon": epsilon,
        "num_steps": num_steps,
        "step_size": _checks.number("step_size", step_size, positive=True),
        "label_mode": _checks.one_of("label_mode", label_mode, LABEL_MODES),
        "clean_weight": _checks.number("clean_weight", clean_weight, minimum=0.0),
        "ramp_epochs": _checks.number("ramp_epochs", ramp_epochs, minimum=0.0),
    }


def _recipe_settings(
    dataset, attack, adversarial, epochs, batch_size, learning_rate, subset, test_subset, seed
) -> dict:
    """Everything :func:`adversarially_trained` trains with, checked: the key of the cache."""
    return {
        "recipe": "defense.adversarially_trained",
        "dataset": dataset,
        "attack": attack,
        "adversarial": adversarial,
        "epochs": _checks.positive_int("epochs", epochs),
        "batch_size": _checks.batch_size(batch_size),
        "learning_rate": _checks.number("learning_rate", learning_rate, positive=True),
        "subset": subset,
        "test_subset": test_subset,
        "seed": _checks.seed(seed),
    }


def _trainer(model: keras.Model, settings: dict, train_size: int) -> tuple[keras.Model, list]:
    """What ``fit`` runs on: the compiled classifier, or its compiled wrapper and epsilon ramp."""
    attack, adversarial = settings["attack"], settings["adversarial"]
    if attack is None:
        return compile_classifier(model, settings["learning_rate"]), []
    options = {k: v for k, v in adversarial.items() if k != "ramp_epochs"}
    trainer = AdversarialModel(model, attack=attack, seed=settings["seed"], **options)
    trainer.compile(keras.optimizers.Adam(settings["learning_rate"]))
    ramp_steps = round(adversarial["ramp_epochs"] * -(-train_size // settings["batch_size"]))
    return trainer, [EpsilonRamp(ramp_steps)] if ramp_steps >= 1 else []


def _fit_recipe(model: keras.Model, *, name: str, settings: dict, verbose: int) -> dict:
    """Train ``model`` by the recipe ``settings``; the information the cache keeps with it."""
    dataset, epochs, batch_size = settings["dataset"], settings["epochs"], settings["batch_size"]
    ds = load_dataset(
        dataset,
        subset=settings["subset"],
        test_subset=settings["test_subset"],
        seed=settings["seed"],
    )
    trainer, callbacks = _trainer(model, settings, len(ds.x_train))
    if verbose:
        attack, adversarial = settings["attack"], settings["adversarial"]
        what = "standard" if attack is None else f"{attack} (epsilon={adversarial['epsilon']})"
        print(f"Training {name!r}: {what} on {len(ds.x_train)} {dataset} images, {epochs} epochs")
    start = time.perf_counter()
    history = trainer.fit(
        ds.x_train,
        ds.y_train,
        batch_size=batch_size,
        epochs=epochs,
        callbacks=[*callbacks, StopOnNonFinite()],
        validation_data=(ds.x_test, ds.y_test),
        verbose=2 if verbose else 0,
    )
    seconds = time.perf_counter() - start
    logits = model.predict(ds.x_test, batch_size=256, verbose=0)
    return {
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "train_seconds": seconds,
        "test_accuracy": float((logits.argmax(-1) == ds.y_test).mean()),
    }
