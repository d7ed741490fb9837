"""Adversarial training and the strong evaluation run under a mixed_float16 policy (GPU default)."""

import keras
import numpy as np
from conftest import build_tiny_model

from cnn_utils import autoattack, defense, robustness


def test_adversarial_training_and_evaluation_under_mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_tiny_model(seed=4)
        rng = np.random.default_rng(0)
        x = rng.random((12, 8, 8, 1), dtype=np.float32)
        y = rng.integers(0, 3, 12)
        trainer = defense.AdversarialModel(model, 0.1, 2, 0.05)
        trainer.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        history = trainer.fit(x, y, epochs=1, batch_size=6, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        acc = robustness.robust_accuracy(
            model, x, y, "pgd", epsilon=0.1, num_steps=3, step_size=0.05, seed=0, verbose=0
        )
        report = autoattack.evaluate_robustness(
            model, x, y, 0.1, num_steps=5, target_classes=2, square_queries=20, verbose=0
        )
        assert 0.0 <= acc <= 1.0 and report is not None
    finally:
        keras.mixed_precision.set_global_policy("float32")
