"""Training: REINFORCE with a baseline, in a custom `tf.function` + `GradientTape` loop.

`Trainer(config, logdir).fit()` runs ``pretrain_epochs`` supervised epochs on
uniformly random glimpses (when ``config.pretrain``) followed by ``epochs``
REINFORCE epochs, and leaves in the run directory:

* ``config.json``         - the `GlimpseConfig` (rebuilds the model for export/report)
* ``checkpoints/``        - `tf.train.CheckpointManager`, every epoch (model, optimizer,
                            epoch, RNG state, best validation accuracy)
* ``best/``               - the checkpoint with the best greedy validation accuracy
* ``pretrained/``         - the end of supervised pre-training on random glimpses
* ``events.out.tfevents`` - TensorBoard: loss terms, accuracies (also after each
                            step), rewards per step, entropy, learning rate, config
* ``metrics.json``        - val_accuracy, test_accuracy, epochs, train_seconds, ...

The step is written against `tf.distribute.Strategy`: per-example losses are
averaged over the global batch and metrics are summed across replicas, so the
default strategy (one device) and MirroredStrategy share the same code.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tf_glimpse.agent import GlimpseAgent
from tf_glimpse.config import RESUMABLE_FIELDS, ConfigError, GlimpseConfig
from tf_glimpse.data.canvas import split_dataset
from tf_glimpse.data.sources import Splits, load_splits
from tf_glimpse.metrics import glimpse_hits, step_correct
from tf_glimpse.rewards import agent_losses
from tf_glimpse.visualize import heatmap_image, position_counts, trajectory_images

LOSS_TERMS = ("total", "classification", "reinforce", "baseline", "entropy", "reward")


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible resume, ...)."""


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` called `name` (default, mirrored or multi_worker)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def check_resumable(saved: GlimpseConfig, config: GlimpseConfig) -> None:
    """Raise ConfigError if `config` changes a field that `--resume` cannot change."""
    changed = sorted(name for name, value in config.to_dict().items()
                     if name not in RESUMABLE_FIELDS and saved.to_dict().get(name) != value)
    if changed:
        details = ", ".join(f"{name}: saved {saved.to_dict()[name]!r}, now "
                            f"{config.to_dict()[name]!r}" for name in changed)
        raise ConfigError(f"--resume with an incompatible configuration ({details})")


class Trainer:
    """Owns the agent, its optimizer, checkpoints and summaries for one run directory."""

    def __init__(self, config: GlimpseConfig, logdir: str | Path, resume: bool = False,
                 splits: Splits | None = None, verbose: int = 1):
        self.config = config
        self.logdir = Path(logdir)
        self.verbose = verbose
        self.splits = splits or load_splits(config.dataset, config.data_dir, config.val_size,
                                            config.seed, config.subset)
        self.train_size = len(self.splits.train_labels)
        if self.train_size < config.batch_size:
            raise ConfigError(f"batch_size={config.batch_size} is larger than the "
                              f"{self.train_size} training images; valid range: "
                              f"1..{self.train_size}")
        self.steps_per_epoch = self.train_size // config.batch_size
        self.total_epochs = config.epochs + (config.pretrain_epochs if config.pretrain else 0)
        self.strategy = make_strategy(config.strategy)
        self._prepare_logdir(resume)
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self.model = GlimpseAgent.from_glimpse_config(config)
            # Per-variable clipping: a large policy gradient never shrinks the classifier's.
            self.optimizer = keras.optimizers.Adam(self._learning_rate(),
                                                   clipnorm=config.grad_clip)
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.best_val = tf.Variable(-1.0, dtype=tf.float32, trainable=False, name="best_val")
            self.rng = tf.random.Generator.from_seed(config.seed)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              epoch=self.epoch, best_val=self.best_val,
                                              rng=self.rng)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.logdir / "checkpoints",
                                                  max_to_keep=3)
        self.best_manager = tf.train.CheckpointManager(self.checkpoint, self.logdir / "best",
                                                       max_to_keep=1)
        # The classifier trained on random glimpses: the fair judge of a random policy.
        self.pretrained_manager = tf.train.CheckpointManager(
            self.checkpoint, self.logdir / "pretrained", max_to_keep=1)
        if resume and self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        self.writer = tf.summary.create_file_writer(str(self.logdir)) if self.is_chief else (
            tf.summary.create_noop_writer())
        self._train_steps = {}
        self._eval_step = tf.function(self._eval_replica, jit_compile=config.jit_compile)

    # ----------------------------------------------------------------- set-up
    @property
    def is_chief(self) -> bool:
        """Whether this worker writes checkpoints, summaries and metrics."""
        resolver = getattr(self.strategy, "cluster_resolver", None)
        return resolver is None or resolver.task_type in (None, "chief") or (
            resolver.task_type == "worker" and resolver.task_id == 0)

    def _prepare_logdir(self, resume: bool) -> None:
        config_path = self.logdir / "config.json"
        if config_path.exists():
            if not resume:
                raise ConfigError(f"logdir={str(self.logdir)!r} already holds a run; pass "
                                  f"--resume to continue it or choose another --logdir")
            check_resumable(GlimpseConfig.from_json(config_path), self.config)
        self.logdir.mkdir(parents=True, exist_ok=True)
        if self.is_chief:
            self.config.to_json(config_path)

    def _learning_rate(self):
        if not self.config.lr_decay:
            return self.config.lr
        return keras.optimizers.schedules.CosineDecay(
            self.config.lr, decay_steps=self.total_epochs * self.steps_per_epoch, alpha=0.05)

    # ------------------------------------------------------------ the steps
    def _train_replica(self, batch: dict, seed: tf.Tensor, supervised_only: bool) -> dict:
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.random.experimental.stateless_fold_in(seed, replica)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(batch["image"], mode="random" if supervised_only else "sample",
                                 seed=seed, training=True)
            terms = agent_losses(outputs, batch["label"], self.config, supervised_only)
            loss = tf.nn.compute_average_loss(terms["total"],
                                              global_batch_size=self.config.batch_size)
        gradients = tape.gradient(loss, variables)
        gradients = [tf.zeros_like(v) if g is None else g for g, v in zip(gradients, variables)]
        self.optimizer.apply_gradients(zip(gradients, variables))
        sums = {name: tf.reduce_sum(terms[name]) for name in LOSS_TERMS}
        sums["correct"] = tf.reduce_sum(step_correct(outputs["step_logits"], batch["label"])[:, -1])
        sums["step_rewards"] = tf.reduce_sum(terms["step_rewards"], axis=0)
        sums["count"] = tf.cast(tf.shape(batch["label"])[0], tf.float32)
        return sums

    def _train_step(self, supervised_only: bool):
        if supervised_only not in self._train_steps:
            replica_step = tf.function(self._train_replica, jit_compile=self.config.jit_compile)

            @tf.function
            def step(batch, seed):
                per_replica = self.strategy.run(replica_step, args=(batch, seed, supervised_only))
                return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

            self._train_steps[supervised_only] = step
        return self._train_steps[supervised_only]

    def _eval_replica(self, batch: dict, mode: str, seed: tf.Tensor) -> dict:
        outputs = self.model(batch["image"], mode=mode, seed=seed)
        correct = step_correct(outputs["step_logits"], batch["label"])
        hits = glimpse_hits(outputs["actions"], batch["box"], self.model.grid)
        return {"correct_per_step": tf.reduce_sum(correct, axis=0),
                "hits": tf.reduce_sum(hits),
                "probabilities": tf.nn.softmax(outputs["step_logits"][:, -1]),
                "count": tf.cast(tf.shape(batch["label"])[0], tf.float32)}

    # ------------------------------------------------------------- evaluation
    def evaluate(self, split: str, mode: str = "greedy", samples: int = 1) -> dict:
        """Accuracy (final and after each step) and glimpse hit rate on `split`.

        With mode="sample" and samples=M the class probabilities of M sampled
        episodes are averaged before the argmax (Monte Carlo evaluation).
        """
        dataset = split_dataset(self.splits, self.config, split)
        correct_per_step, hits, correct, count = 0.0, 0.0, 0.0, 0.0
        seed = tf.constant([self.config.seed, 7919], tf.int64)
        for index, batch in enumerate(dataset):
            probabilities = 0.0
            for sample in range(samples):
                sample_seed = tf.random.experimental.stateless_fold_in(seed, index * samples + sample)
                result = self._eval_step(batch, mode, sample_seed)
                probabilities += result["probabilities"].numpy()
                correct_per_step += result["correct_per_step"].numpy()
                hits += float(result["hits"])
            correct += float(np.sum(np.argmax(probabilities, -1) == batch["label"].numpy()))
            count += float(result["count"])
        per_step = (correct_per_step / (count * samples)).tolist()
        return {"accuracy": correct / count, "accuracy_per_step": per_step,
                "hit_rate": hits / (count * samples * self.config.steps), "count": int(count)}

    # --------------------------------------------------------------- training
    def train_epoch(self, epoch: int, supervised_only: bool) -> dict:
        """One pass over the training canvases of `epoch`; returns mean loss terms and accuracy."""
        dataset = split_dataset(self.splits, self.config, "train", epoch=epoch)
        dataset = self.strategy.experimental_distribute_dataset(dataset)
        step = self._train_step(supervised_only)
        phase = "pretrain" if supervised_only else "reinforce"
        progress = keras.utils.Progbar(self.steps_per_epoch, verbose=self.verbose,
                                       stateful_metrics=["loss", "acc", "reward"],
                                       unit_name="batch")
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.total_epochs} ({phase})")
        totals = None
        for index, batch in enumerate(dataset):
            seed = self.rng.make_seeds(1)[:, 0]
            sums = step(batch, seed)
            totals = sums if totals is None else {k: totals[k] + sums[k] for k in sums}
            if index % 10 == 0 or index == self.steps_per_epoch - 1:
                count = float(totals["count"])
                loss = float(totals["total"]) / count
                if not math.isfinite(loss):
                    raise TrainingError(f"non-finite loss {loss} at epoch {epoch + 1}, batch "
                                        f"{index + 1}; the last good checkpoint is kept in "
                                        f"{self.manager.directory}")
                progress.update(index + 1, [("loss", loss),
                                            ("acc", float(totals["correct"]) / count),
                                            ("reward", float(totals["reward"]) / count)])
        count = float(totals["count"])
        means = {name: float(totals[name]) / count for name in LOSS_TERMS}
        means["accuracy"] = float(totals["correct"]) / count
        means["reward_per_step"] = (totals["step_rewards"].numpy() / count).tolist()
        if not math.isfinite(means["total"]):
            raise TrainingError(f"non-finite loss at epoch {epoch + 1}; the last good "
                                f"checkpoint is kept in {self.manager.directory}")
        return means

    def fit(self) -> dict:
        """Train to the end (or continue a resumed run), evaluate the test set once, write metrics."""
        pretrain = self.config.pretrain_epochs if self.config.pretrain else 0
        start = int(self.epoch.numpy())
        if start == 0 and self.is_chief:
            with self.writer.as_default(step=0):
                tf.summary.text("config", "```\n" + json.dumps(self.config.to_dict(), indent=2)
                                + "\n```")
        history = self._load_history()
        train_seconds = history.get("train_seconds", 0.0)
        for epoch in range(start, self.total_epochs):
            supervised_only = epoch < pretrain
            started = time.perf_counter()
            train = self.train_epoch(epoch, supervised_only)
            elapsed = time.perf_counter() - started
            train_seconds += elapsed
            val = self.evaluate("val", "random" if supervised_only else "greedy")
            self.epoch.assign(epoch + 1)
            improved = not supervised_only and val["accuracy"] > float(self.best_val.numpy())
            if improved:
                self.best_val.assign(val["accuracy"])
            if self.is_chief:
                self._write_summaries(epoch + 1, train, val, supervised_only,
                                      self.steps_per_epoch * self.config.batch_size / elapsed)
                every = self.config.summary_images_every
                if every and ((epoch + 1) % every == 0 or epoch + 1 == self.total_epochs):
                    self._write_image_summaries(epoch + 1)
                self.manager.save(checkpoint_number=epoch + 1)
                if improved:
                    self.best_manager.save(checkpoint_number=epoch + 1)
                if epoch + 1 == pretrain:
                    self.pretrained_manager.save(checkpoint_number=epoch + 1)
            history.setdefault("val_history", []).append(
                {"epoch": epoch + 1, "phase": "pretrain" if supervised_only else "reinforce",
                 "val_accuracy": val["accuracy"], "train_accuracy": train["accuracy"],
                 "wall_s": train_seconds})
            history["train_seconds"] = train_seconds
            self._save_history(history)
            if self.verbose:
                print(f"  val accuracy ({'random' if supervised_only else 'greedy'} policy): "
                      f"{val['accuracy']:.4f}  hit rate {val['hit_rate']:.3f}  "
                      f"({elapsed:.1f} s)")
        return self.finish(history)

    def finish(self, history: dict) -> dict:
        """Restore the best checkpoint, evaluate val and test once, write `metrics.json`."""
        epochs = int(self.epoch.numpy())  # Before the best checkpoint's epoch replaces it.
        if self.best_manager.latest_checkpoint:
            self.checkpoint.restore(self.best_manager.latest_checkpoint)
        val = self.evaluate("val")
        test = self.evaluate("test")
        metrics = {
            "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"],
            "test_error": 1.0 - test["accuracy"], "val_error": 1.0 - val["accuracy"],
            "test_accuracy_per_step": test["accuracy_per_step"], "test_hit_rate": test["hit_rate"],
            "epochs": epochs, "train_seconds": history.get("train_seconds", 0.0),
            "images_per_s": (epochs * self.steps_per_epoch
                             * self.config.batch_size / max(history.get("train_seconds", 0.0), 1e-9)),
            "best_checkpoint": self.best_manager.latest_checkpoint,
            "val_history": history.get("val_history", []),
        }
        if self.config.test_samples:
            sampled = self.evaluate("test", "sample", self.config.test_samples)
            metrics["test_accuracy_sampled"] = sampled["accuracy"]
        if self.is_chief:
            _write_json(self.logdir / "metrics.json", metrics)
            with self.writer.as_default(step=epochs):
                tf.summary.scalar("test/accuracy", test["accuracy"])
            self.writer.flush()
        if self.verbose:
            print(f"best val accuracy {val['accuracy']:.4f}, test accuracy "
                  f"{test['accuracy']:.4f} (error {100 * (1 - test['accuracy']):.2f}%)")
        return metrics

    # --------------------------------------------------------------- logging
    def _write_summaries(self, step: int, train: dict, val: dict, supervised_only: bool,
                         images_per_s: float) -> None:
        with self.writer.as_default(step=step):
            for name in LOSS_TERMS:
                tf.summary.scalar(f"loss/{name}" if name != "reward" else "train/reward",
                                  train[name])
            tf.summary.scalar("train/accuracy", train["accuracy"])
            tf.summary.scalar("train/policy_entropy", train["entropy"])
            tf.summary.scalar("train/images_per_s", images_per_s)
            tf.summary.scalar("train/learning_rate", float(self.optimizer.learning_rate))
            for t, reward in enumerate(train["reward_per_step"]):
                tf.summary.scalar(f"reward_per_step/step_{t}", reward)
            policy = "random" if supervised_only else "greedy"
            tf.summary.scalar(f"val/accuracy_{policy}", val["accuracy"])
            tf.summary.scalar(f"val/hit_rate_{policy}", val["hit_rate"])
            for t, accuracy in enumerate(val["accuracy_per_step"]):
                tf.summary.scalar(f"val_accuracy_per_step/step_{t}", accuracy)
        self.writer.flush()

    def _write_image_summaries(self, step: int) -> None:
        """Greedy glimpse trajectories on a few validation canvases, and where the policy looks."""
        batch = next(iter(split_dataset(self.splits, self.config, "val")))
        outputs = self.model(batch["image"], mode="greedy")
        probabilities = tf.nn.softmax(outputs["step_logits"], axis=-1)
        with self.writer.as_default(step=step):
            tf.summary.image("glimpses/trajectories", trajectory_images(
                batch["image"][:8], outputs["actions"][:8], probabilities[:8], self.model.grid,
                self.config.scales, labels=batch["label"][:8]), max_outputs=8)
            tf.summary.image("glimpses/heatmap", heatmap_image(
                position_counts(outputs["actions"], self.model.grid)))

    def _load_history(self) -> dict:
        path = self.logdir / "history.json"
        if not path.exists():
            return {}
        history = json.loads(path.read_text())
        done = int(self.epoch.numpy())
        history["val_history"] = [h for h in history.get("val_history", []) if h["epoch"] <= done]
        if history["val_history"]:
            history["train_seconds"] = history["val_history"][-1]["wall_s"]
        return history

    def _save_history(self, history: dict) -> None:
        if self.is_chief:
            _write_json(self.logdir / "history.json", history)


def _write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (a kill never leaves a half-written file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
