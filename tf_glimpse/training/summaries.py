"""TensorBoard summaries of a training run: its configuration, every epoch, the test result.

* `log_config`  - the configuration as text and as TensorBoard HParams (so the runs
  under runs/ compare side by side in the HPARAMS tab), at step 0.
* `log_epoch`   - loss terms, accuracies, rewards and policy entropy per step, the
  learning rate and entropy weight, training images/s, validation results.
* `log_glimpses` - greedy glimpse trajectories on a few canvases and the heat map
  of where the policy looks.
* `log_test`    - the test accuracy at the end.
"""

from __future__ import annotations

import json

import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from tf_glimpse.analysis.visualize import heatmap_image, position_counts, trajectory_images
from tf_glimpse.config import GlimpseConfig
from tf_glimpse.training.step import LOSS_TERMS


def log_config(writer, config: GlimpseConfig, trial_id: str) -> None:
    """The configuration as a text summary and as this run's HParams (trial `trial_id`)."""
    with writer.as_default(step=0):
        tf.summary.text("config", "```\n" + json.dumps(config.to_dict(), indent=2) + "\n```")
        hparams_api.hparams({name: "None" if value is None else value
                             for name, value in config.to_dict().items()}, trial_id=trial_id)


def log_epoch(writer, epoch: int, train: dict, val: dict, policy: str, images_per_s: float,
              learning_rate: float, entropy_weight: float) -> None:
    """One epoch: the training means of `Trainer.train_epoch` and the validation results
    of `policy` ("greedy", or "random" while pre-training)."""
    with writer.as_default(step=epoch):
        for name in LOSS_TERMS:
            tf.summary.scalar(f"loss/{name}" if name != "reward" else "train/reward", train[name])
        tf.summary.scalar("train/accuracy", train["accuracy"])
        tf.summary.scalar("train/policy_entropy", train["entropy"])
        tf.summary.scalar("train/images_per_s", images_per_s)
        tf.summary.scalar("train/learning_rate", learning_rate)
        tf.summary.scalar("train/entropy_weight", entropy_weight)
        for t, reward in enumerate(train["reward_per_step"]):
            tf.summary.scalar(f"reward_per_step/step_{t}", reward)
        for t, entropy in enumerate(train["entropy_per_step"]):
            tf.summary.scalar(f"policy_entropy_per_step/step_{t}", entropy)
        tf.summary.scalar(f"val/accuracy_{policy}", val["accuracy"])
        tf.summary.scalar(f"val/hit_rate_{policy}", val["hit_rate"])
        tf.summary.scalar(f"val/distinct_sequences_{policy}", val["distinct_sequences"])
        for t, rate in enumerate(val["hit_rate_per_step"]):
            tf.summary.scalar(f"val_hit_rate_per_step/step_{t}", rate)
        for t, accuracy in enumerate(val["accuracy_per_step"]):
            tf.summary.scalar(f"val_accuracy_per_step/step_{t}", accuracy)
    writer.flush()


def log_glimpses(writer, epoch: int, model, batch: dict, scales: int, count: int = 8) -> None:
    """Greedy trajectories on the first `count` canvases of `batch`, and the heat map of
    the cells the greedy policy chose on all of them."""
    outputs = model(batch["image"], mode="greedy")
    probabilities = tf.nn.softmax(outputs["step_logits"], axis=-1)
    with writer.as_default(step=epoch):
        tf.summary.image("glimpses/trajectories", trajectory_images(
            batch["image"][:count], outputs["actions"][:count], probabilities[:count],
            model.grid, scales, labels=batch["label"][:count]), max_outputs=count)
        tf.summary.image("glimpses/heatmap", heatmap_image(
            position_counts(outputs["actions"], model.grid)))


def log_test(writer, epoch: int, accuracy: float) -> None:
    """The test accuracy of the final (best) checkpoint."""
    with writer.as_default(step=epoch):
        tf.summary.scalar("test/accuracy", accuracy)
    writer.flush()
