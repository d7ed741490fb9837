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
start reliably (Wong et al. 2020; Gowal et al. 2018).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cnn_utils import attacks

ATTACKS = ("pgd", "fgsm_rs", "fgsm")
"""Inner attacks that :class:`AdversarialModel` can train with."""

LABEL_MODES = ("predicted", "true")
"""Labels the inner attack moves away from: the current prediction or the true label."""


def _number(name: str, value, *, minimum: float = 0.0, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number. Received: {name}={value!r}")
    value = float(value)
    if not np.isfinite(value) or value < minimum or (positive and value <= 0):
        bound = f"> {minimum:g}" if positive else f">= {minimum:g}"
        raise ValueError(f"{name} must be {bound}. Received: {name}={value!r}")
    return value


def _is_softmax_output(model) -> bool:
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    activation = getattr(layers[-1], "activation", None)
    return getattr(activation, "__name__", "") == "softmax" or type(layers[-1]).__name__ == (
        "Softmax"
    )


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
    and reports the same three numbers: ``loss``, ``accuracy`` (clean) and ``adv_accuracy``
    (on the adversarial batch). For a final, stronger evaluation use
    :func:`cnn_utils.attacks.robust_accuracy` with many PGD steps and restarts.

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
        if not callable(model):
            raise ValueError(f"model must be a Keras model returning logits. Received: {model!r}")
        if _is_softmax_output(model):
            raise ValueError(
                "model must return logits, but its last layer is a softmax. Rebuild it without "
                "the activation (e.g. keras.layers.Dense(num_classes)). "
                f"Received: model={getattr(model, 'name', model)!r}"
            )
        if attack not in ATTACKS:
            raise ValueError(f"attack must be one of {ATTACKS}. Received: attack={attack!r}")
        if label_mode not in LABEL_MODES:
            raise ValueError(
                f"label_mode must be one of {LABEL_MODES}. Received: label_mode={label_mode!r}"
            )
        if norm not in attacks.NORMS:
            raise ValueError(f"norm must be one of {attacks.NORMS}. Received: norm={norm!r}")
        if (
            isinstance(num_steps, bool)
            or not isinstance(num_steps, (int, np.integer))
            or num_steps < 1
        ):
            raise ValueError(
                f"num_steps must be an integer >= 1. Received: num_steps={num_steps!r}"
            )
        if attack != "pgd" and num_steps != 1:
            raise ValueError(
                f"num_steps must be 1 for attack={attack!r} (a single step). "
                f"Received: num_steps={num_steps!r}"
            )
        epsilon = _number("epsilon", epsilon)
        step_size = _number("step_size", step_size, positive=True)
        clean_weight = _number("clean_weight", clean_weight)
        adversarial_weight = _number("adversarial_weight", adversarial_weight)
        if clean_weight == 0 and adversarial_weight == 0:
            raise ValueError(
                "clean_weight and adversarial_weight cannot both be 0. "
                f"Received: clean_weight={clean_weight}, adversarial_weight={adversarial_weight}"
            )
        lo = _number("clip_value_min", clip_value_min, minimum=-np.inf)
        hi = _number("clip_value_max", clip_value_max, minimum=-np.inf)
        if not lo < hi:
            raise ValueError(
                "clip_value_min must be < clip_value_max. "
                f"Received: clip_value_min={lo}, clip_value_max={hi}"
            )
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
        ):
            raise ValueError(
                f"seed must be None or a non-negative integer. Received: seed={seed!r}"
            )

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
        self.clean_accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.adversarial_accuracy = keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy")

    # -- Keras plumbing ---------------------------------------------------------------------

    def call(self, inputs, training=None):
        """Logits of the wrapped classifier (no attack: prediction is on the inputs given)."""
        return self.classifier(inputs, training=training)

    @property
    def metrics(self):
        """Loss, clean accuracy and adversarial accuracy, reset by Keras at each epoch."""
        return [self.loss_tracker, self.clean_accuracy, self.adversarial_accuracy]

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configure training; the loss defaults to cross-entropy from logits.

        Args:
            optimizer: A Keras optimizer or its name.
            loss: The per-example loss of both halves; ``None`` means
                ``SparseCategoricalCrossentropy(from_logits=True)``.
            metrics: Must be ``None``: the model tracks its own loss, ``accuracy`` and
                ``adv_accuracy``.
            **kwargs: Passed to ``keras.Model.compile`` (``steps_per_execution``...).

        Raises:
            ValueError: ``metrics`` given.
        """
        if metrics:
            raise ValueError(
                "AdversarialModel tracks loss, accuracy and adv_accuracy itself; compile it "
                f"without metrics. Received: metrics={metrics!r}"
            )
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
        self.clean_accuracy.update_state(y, clean_logits, sample_weight=sample_weight)
        self.adversarial_accuracy.update_state(y, adv_logits, sample_weight=sample_weight)
        return {m.name: m.result() for m in self.metrics}

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


class EpsilonRamp(keras.callbacks.Callback):
    """Grow an :class:`AdversarialModel`'s epsilon linearly from 0 over the first steps.

    At training step ``t`` (counted over the whole ``fit``) epsilon is
    ``final_epsilon * min(1, (t + 1) / ramp_steps)`` and the step size is scaled by the same
    factor, so the attack keeps the same shape while the ball grows. Starting adversarial
    training at the full epsilon (0.3 on MNIST) often leaves the model stuck at chance; a
    warm-up avoids it (Gowal et al. 2018; Wong et al. 2020 ramp the learning rate too).

    Args:
        ramp_steps: Number of training steps (mini-batches) to reach the final epsilon, >= 1.
        final_epsilon: Target epsilon; ``None`` takes the model's epsilon at the start of
            training.

    Raises:
        ValueError: A bad ``ramp_steps`` or ``final_epsilon``.
    """

    def __init__(self, ramp_steps: int, final_epsilon: float | None = None):
        super().__init__()
        if (
            isinstance(ramp_steps, bool)
            or not isinstance(ramp_steps, (int, np.integer))
            or ramp_steps < 1
        ):
            raise ValueError(
                f"ramp_steps must be an integer >= 1. Received: ramp_steps={ramp_steps!r}"
            )
        self.ramp_steps = int(ramp_steps)
        self.final_epsilon = None if final_epsilon is None else _number("epsilon", final_epsilon)
        self._step = 0
        self._final_step_size = None

    def on_train_begin(self, logs=None):
        """Remember the final epsilon and step size; fail early on a wrong model."""
        if not isinstance(self.model, AdversarialModel):
            raise ValueError(
                "EpsilonRamp needs an AdversarialModel. "
                f"Received: model={type(self.model).__name__}"
            )
        if self.final_epsilon is None:
            self.final_epsilon = float(self.model.epsilon.numpy())
        if self._final_step_size is None:
            self._final_step_size = float(self.model.step_size.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        """Set epsilon and the step size for this step."""
        factor = min(1.0, (self._step + 1) / self.ramp_steps)
        self.model.epsilon.assign(self.final_epsilon * factor)
        self.model.step_size.assign(self._final_step_size * factor)
        self._step += 1
