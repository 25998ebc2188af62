"""Schedules over the training budget: the learning rate and the entropy bonus.

A run's budget is its epochs, or with `GlimpseConfig.minutes` a wall-time budget.
`BudgetProgress` is the fraction of it spent, in [0, 1]: the larger of the
fraction of optimizer steps done and the fraction of the time budget used.  The
time part is a variable the trainer sets between batches; without a time budget
it stays 0, so a run's schedules depend only on the step count (a resumed run is
bitwise the same as an uninterrupted one).

Keras' own `CosineDecay` counts steps only, and a time-budgeted run does not know
its number of steps in advance; hence this small schedule over progress.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


class BudgetProgress:
    """progress(step) = min(1, max(step / total_steps, seconds_used / budget_seconds))."""

    def __init__(self, total_steps: int, budget_seconds: float | None):
        self.total_steps = max(int(total_steps), 1)
        self.budget_seconds = budget_seconds
        self.time_fraction = tf.Variable(0.0, trainable=False, dtype=tf.float32,
                                         name="time_fraction")

    def record_time(self, seconds: float) -> None:
        """Set the time part from the training seconds used so far."""
        if self.budget_seconds:
            self.time_fraction.assign(min(1.0, seconds / self.budget_seconds))

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        """The spent fraction of the budget after `step` optimizer steps: a float32 scalar."""
        by_steps = tf.cast(step, tf.float32) / float(self.total_steps)
        return tf.minimum(1.0, tf.maximum(by_steps, self.time_fraction))


class BudgetCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(p) = initial * (alpha + (1 - alpha) * (1 + cos(pi p)) / 2), p = progress(step)."""

    def __init__(self, initial: float, progress: BudgetProgress, alpha: float = 0.05):
        self.initial = initial
        self.progress = progress
        self.alpha = alpha

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        cosine = 0.5 * (1.0 + tf.cos(math.pi * self.progress(step)))
        return self.initial * (self.alpha + (1.0 - self.alpha) * cosine)

    def get_config(self) -> dict:
        return {"initial": self.initial, "alpha": self.alpha,
                "total_steps": self.progress.total_steps,
                "budget_seconds": self.progress.budget_seconds}

    @classmethod
    def from_config(cls, config: dict) -> BudgetCosineDecay:
        """The schedule of `get_config()`, with a new `BudgetProgress` (its time part at 0)."""
        config = dict(config)
        progress = BudgetProgress(config.pop("total_steps"), config.pop("budget_seconds"))
        return cls(progress=progress, **config)


def entropy_weight(start: float, end: float, progress: tf.Tensor) -> tf.Tensor:
    """The entropy bonus's weight at `progress` in [0, 1]: linear from `start` to `end`."""
    return start + (end - start) * progress
