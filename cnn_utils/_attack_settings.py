"""The settings of an attack, checked once: one object instead of a dozen arguments.

Private plumbing of :mod:`cnn_utils.attacks`: :class:`AttackSettings` validates every number,
switch and range with the shared checks and turns the numbers into tensors for the compiled
attack (so that calls with other numbers do not retrace).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from cnn_utils import _checks

NORMS = ("linf", "l2")
"""The norms of the epsilon-ball that the attacks support."""

TINY = 1e-12
"""Floor of every norm the attacks divide by (float32), so a zero gradient gives a zero step."""


@dataclasses.dataclass(frozen=True)
class AttackSettings:
    """Every setting of an attack, checked when built (``ValueError`` names the field).

    ``step_size=None`` is one full step of ``epsilon`` (FGSM); ``decay=None`` is no momentum;
    ``seed=None`` draws the random start from TensorFlow's global generator at each call.
    """

    epsilon: float
    num_steps: int = 1
    step_size: float | None = None
    norm: str = "linf"
    targeted: bool = False
    soft_label: bool = False
    random_start: bool = False
    decay: float | None = None
    clip_value_min: float = 0.0
    clip_value_max: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        eps, step, decay = self.epsilon, self.step_size, self.decay
        eps = _checks.number("epsilon", eps, minimum=0.0)
        checked = {"epsilon": eps, "seed": _checks.seed(self.seed)}
        checked["num_steps"] = _checks.integer("num_steps", self.num_steps, minimum=1)
        step = max(eps, TINY) if step is None else _checks.number("step_size", step, positive=True)
        checked["step_size"] = step
        checked["decay"] = decay if decay is None else _checks.number("decay", decay, minimum=0.0)
        checked["norm"] = _checks.one_of("norm", self.norm, NORMS)
        for name in ("targeted", "soft_label", "random_start"):
            checked[name] = _checks.flag(name, getattr(self, name))
        lo_hi = _checks.clip_range(self.clip_value_min, self.clip_value_max)
        checked["clip_value_min"], checked["clip_value_max"] = lo_hi
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        if self.targeted and self.soft_label:
            raise ValueError(
                "soft_label=True attacks the model's own prediction and cannot be targeted. "
                "Received: targeted=True, soft_label=True"
            )

    @classmethod
    def of(cls, arguments: dict) -> AttackSettings:
        """The settings among a public attack's arguments (``locals()``); defaults elsewhere."""
        return cls(
            **{f.name: arguments[f.name] for f in dataclasses.fields(cls) if f.name in arguments}
        )

    def numbers(self) -> dict[str, tf.Tensor]:
        """The numbers as tensors, with a stateless seed (drawn now if ``seed=None``)."""
        names = ("epsilon", "step_size", "clip_value_min", "clip_value_max")
        numbers = {name: tf.constant(getattr(self, name), tf.float32) for name in names}
        numbers["decay"] = tf.constant(self.decay or 0.0, tf.float32)
        numbers["num_steps"] = tf.constant(self.num_steps, tf.int32)
        if self.seed is None and self.random_start:
            numbers["seed"] = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
        else:
            numbers["seed"] = tf.constant([(self.seed or 0) % (2**31 - 1), 0], tf.int32)
        return numbers
