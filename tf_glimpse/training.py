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
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from tf_glimpse.agent import GlimpseAgent
from tf_glimpse.config import RESUMABLE_FIELDS, ConfigError, GlimpseConfig
from tf_glimpse.data.canvas import split_dataset
from tf_glimpse.data.sources import Splits, load_splits
from tf_glimpse.evaluation import episode_function, evaluate
from tf_glimpse.metrics import step_correct
from tf_glimpse.progress import progress_bar
from tf_glimpse.rewards import agent_losses
from tf_glimpse.runs import RunError, load_config
from tf_glimpse.schedules import BudgetCosineDecay, BudgetProgress, entropy_weight
from tf_glimpse.visualize import heatmap_image, position_counts, trajectory_images

LOSS_TERMS = ("total", "classification", "memory", "reinforce", "baseline", "entropy", "reward")


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


def restore_last_good(checkpoint: tf.train.Checkpoint, directory: str | Path) -> str | None:
    """Restore the newest checkpoint of the CheckpointManager `directory` that loads.

    Returns its path, or None when the directory holds no checkpoint yet.
    CheckpointManager writes a checkpoint's files first and only then replaces the
    `checkpoint` state file (atomically), so a kill during a save leaves the
    previous checkpoint as the latest.  A checkpoint damaged later (a truncated or
    deleted file) is skipped with a message on stderr, and the one before it is
    restored; TrainingError if none loads.
    """
    state = tf.train.get_checkpoint_state(str(directory))
    if state is None or not state.model_checkpoint_path:
        return None
    latest = state.model_checkpoint_path
    candidates = [latest] + [path for path in reversed(state.all_model_checkpoint_paths)
                             if path != latest]
    for path in candidates:
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
            return path
        except Exception as error:  # noqa: BLE001 - e.g. OpError, IndexError (truncated file)
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            print(f"warning: checkpoint {path} does not load ({reason}); "
                  f"trying an older one", file=sys.stderr)
    raise TrainingError(f"no checkpoint in {directory} loads (tried {', '.join(candidates)})")


class Trainer:
    """Owns the agent, its optimizer, checkpoints and summaries for one run directory."""

    # Tests only: greedy training episodes (see `_episode_mode`).
    deterministic_episodes = False

    def __init__(self, config: GlimpseConfig, logdir: str | Path, resume: bool = False,
                 splits: Splits | None = None, verbose: int = 1):
        self.logdir = Path(logdir)
        self.verbose = verbose
        self.splits = splits or load_splits(config.dataset, config.data_dir, config.val_size,
                                            config.seed, config.subset)
        # The number of classes comes from the data (config.json stores it).
        self.config = config = config.replace(num_classes=self.splits.num_classes)
        self.train_size = len(self.splits.train_labels)
        # A batch holds batch_size episodes: samples_per_image episodes of each of
        # images_per_batch images.
        self.images_per_batch = config.batch_size // config.samples_per_image
        if self.train_size < self.images_per_batch:
            raise ConfigError(f"batch_size={config.batch_size} needs {self.images_per_batch} "
                              f"training images per batch, more than the {self.train_size} "
                              f"there are; valid range: 1..{self.train_size}")
        self.steps_per_epoch = self.train_size // self.images_per_batch
        self.total_epochs = config.epochs + (config.pretrain_epochs if config.pretrain else 0)
        # The strategy first: MultiWorkerMirroredStrategy must exist before any variable.
        self.strategy = make_strategy(config.strategy)
        self.progress = BudgetProgress(self.total_epochs * self.steps_per_epoch,
                                       config.budget_seconds)
        # Where this worker saves checkpoints.  Under MultiWorkerMirroredStrategy every
        # worker must take part in a save; the non-chief ones save into a directory of
        # their own, deleted at the end of `finish`.
        self.write_dir = self.logdir if self.is_chief else (
            self.logdir / f"workertemp_{self.strategy.cluster_resolver.task_id}")
        self._prepare_logdir(resume)
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self.model = GlimpseAgent.from_glimpse_config(config)
            # Per-variable clipping (a large policy gradient never shrinks the classifier's)
            # happens in `_apply_gradients`, after the replicas' gradients are summed.
            self.optimizer = keras.optimizers.Adam(self._learning_rate())
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.best_val = tf.Variable(-1.0, dtype=tf.float32, trainable=False, name="best_val")
            self.rng = tf.random.Generator.from_seed(config.seed)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              epoch=self.epoch, best_val=self.best_val,
                                              rng=self.rng)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_dir / "checkpoints",
                                                  max_to_keep=3)
        self.best_manager = tf.train.CheckpointManager(self.checkpoint, self.write_dir / "best",
                                                       max_to_keep=1)
        # The classifier trained on random glimpses: the fair judge of a random policy.
        self.pretrained_manager = tf.train.CheckpointManager(
            self.checkpoint, self.write_dir / "pretrained", max_to_keep=1)
        # Every worker resumes from the chief's checkpoints.
        if resume:
            restore_last_good(self.checkpoint, self.logdir / "checkpoints")
            if self.is_chief:  # The temporary directories of saves cut short by a kill.
                for manager in (self.manager, self.best_manager, self.pretrained_manager):
                    for orphan in Path(manager.directory).glob("ckpt-*_temp"):
                        shutil.rmtree(orphan, ignore_errors=True)
        self.writer = tf.summary.create_file_writer(str(self.logdir)) if self.is_chief else (
            tf.summary.create_noop_writer())
        self._train_steps = {}
        # Compiled once: every evaluation (each epoch's validation, the test) reuses it.
        self._episode = episode_function(self.model, config.jit_compile)

    # ----------------------------------------------------------------- set-up
    @property
    def is_chief(self) -> bool:
        """Whether this worker writes the run directory: checkpoints, summaries and metrics.

        True except for MultiWorkerMirroredStrategy workers other than the chief
        (the "chief" task of TF_CONFIG, or else worker 0).
        """
        return self.strategy.extended.should_checkpoint

    def _prepare_logdir(self, resume: bool) -> None:
        if not self.is_chief:  # The chief checks and writes the (maybe shared) run directory.
            self.write_dir.mkdir(parents=True, exist_ok=True)
            return
        config_path = self.logdir / "config.json"
        if config_path.exists():
            if not resume:
                raise ConfigError(f"logdir={str(self.logdir)!r} already holds a run; pass "
                                  f"--resume to continue it or choose another --logdir")
            try:
                saved = load_config(self.logdir)
            except RunError as error:  # A damaged or hand-edited config.json.
                raise ConfigError(str(error)) from error
            check_resumable(saved, self.config)
        self.logdir.mkdir(parents=True, exist_ok=True)
        if self.is_chief:
            self.config.to_json(config_path)

    def _learning_rate(self):
        if not self.config.lr_decay:
            return self.config.lr
        return BudgetCosineDecay(self.config.lr, self.progress, alpha=0.05)

    def entropy_weight(self) -> tf.Tensor:
        """The entropy bonus's weight now (it follows the budget's progress)."""
        return entropy_weight(self.config.entropy_weight, self.config.entropy_final,
                              self.progress(self.optimizer.iterations))

    # ------------------------------------------------------------ the steps
    def _replica_gradients(self, batch: dict, seed: tf.Tensor,
                           supervised_only: bool) -> tuple[list, dict]:
        """One replica's episode: its gradients and its sums of the loss terms.

        The loss is averaged over the *global* batch, so the replicas' gradients
        add up to the gradient of the global batch.  No cross-replica
        communication happens here, so XLA can compile it under any strategy.
        """
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.random.experimental.stateless_fold_in(seed, replica)
        variables = self.model.trainable_variables
        # M consecutive episodes of every image (for the leave-one-out baseline).
        images = tf.repeat(batch["image"], self.config.samples_per_image, axis=0)
        labels = tf.repeat(batch["label"], self.config.samples_per_image, axis=0)
        with tf.GradientTape() as tape:
            outputs = self.model(images, mode=self._episode_mode(supervised_only),
                                 seed=seed, training=True)
            terms = agent_losses(outputs, labels, self.config, supervised_only,
                                 self.entropy_weight())
            loss = tf.nn.compute_average_loss(terms["total"],
                                              global_batch_size=self.config.batch_size)
        gradients = tape.gradient(loss, variables)
        gradients = [tf.zeros_like(v) if g is None else g for g, v in zip(gradients, variables)]
        sums = {name: tf.reduce_sum(terms[name]) for name in LOSS_TERMS}
        sums["correct"] = tf.reduce_sum(step_correct(outputs["step_logits"], labels)[:, -1])
        sums["step_rewards"] = tf.reduce_sum(terms["step_rewards"], axis=0)
        sums["step_entropies"] = tf.reduce_sum(outputs["entropies"], axis=0)
        sums["count"] = tf.cast(tf.shape(labels)[0], tf.float32)
        return gradients, sums

    def _episode_mode(self, supervised_only: bool) -> str:
        """The policy of the training episodes: random glimpses (pre-training) or sampled.

        `deterministic_episodes` (for tests only) makes it greedy, so that an
        episode depends neither on the seeds nor on how the batch is split
        across replicas.
        """
        if self.deterministic_episodes:
            return "greedy"
        return "random" if supervised_only else "sample"

    def _apply_gradients(self, gradients: list) -> None:
        """Sum the replicas' gradients, clip each variable's to grad_clip, take an Adam step.

        The clipping is done here, after the sum: Keras (clipnorm) would clip
        each replica's partial gradient before its own cross-replica sum.
        """
        replicas = self.strategy.num_replicas_in_sync
        if replicas > 1:
            gradients = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, gradients)
        if self.config.grad_clip:
            gradients = [tf.clip_by_norm(g, self.config.grad_clip) for g in gradients]
        if replicas > 1:
            # Every replica now holds the whole sum, and Keras sums the replicas'
            # gradients once more: hand it 1/replicas of it (exact for 2 replicas).
            gradients = [g / replicas for g in gradients]
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))

    def _train_replica(self, batch: dict, seed: tf.Tensor, supervised_only: bool) -> dict:
        gradients, sums = self._replica_gradients(batch, seed, supervised_only)
        self._apply_gradients(gradients)
        return sums

    def train_step(self, supervised_only: bool):
        """The compiled, distributed training step: (batch, seed [2]) -> summed loss terms.

        One per phase (pre-training on random glimpses, or REINFORCE), built on first use.
        """
        if supervised_only not in self._train_steps:
            if self.config.strategy == "default":
                # One XLA program: the episode, its gradients and the update.
                replica_step = tf.function(self._train_replica,
                                           jit_compile=self.config.jit_compile)
            else:
                # XLA compiles the episode and its gradients.  The update synchronises
                # the replicas (all-reduce, merge_call), which cannot run inside XLA.
                gradients_fn = tf.function(self._replica_gradients,
                                           jit_compile=self.config.jit_compile)

                def replica_step(batch, seed, supervised_only):
                    gradients, sums = gradients_fn(batch, seed, supervised_only)
                    self._apply_gradients(gradients)
                    return sums

            @tf.function
            def step(batch, seed):
                per_replica = self.strategy.run(replica_step, args=(batch, seed, supervised_only))
                # One tensor at a time: MultiWorkerMirroredStrategy cannot reduce a dict.
                return {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                        for name, value in per_replica.items()}

            self._train_steps[supervised_only] = step
        return self._train_steps[supervised_only]

    # ------------------------------------------------------------- evaluation
    def evaluate(self, split: str, policy: str = "greedy", samples: int = 1) -> dict:
        """`tf_glimpse.evaluation.evaluate` of the agent on `split` with the run's seed.

        Keys: ``accuracy``, ``accuracy_per_step`` [T], ``hit_rate``,
        ``hit_rate_per_step`` [T], ``entropy_per_step`` [T] (the policy's entropy in
        nats), ``distinct_sequences``, ``modal_sequence``, ``modal_share`` and
        ``count``.  With policy="sample" and samples=M the class probabilities of M
        sampled episodes are averaged before the argmax (Monte Carlo evaluation).
        """
        return evaluate(self.model, split_dataset(self.splits, self.config, split), policy,
                        self.config.seed, samples=samples, episode=self._episode)

    # --------------------------------------------------------------- training
    def train_epoch(self, epoch: int, supervised_only: bool, seconds_before: float = 0.0) -> dict:
        """One pass over the training canvases of `epoch`; returns mean loss terms and accuracy.

        `seconds_before` (training seconds of the earlier epochs) moves the
        budget's progress during the epoch when there is a time budget.
        """
        dataset = split_dataset(self.splits, self.config, "train", epoch=epoch,
                                batch_size=self.images_per_batch)
        # Global batches (all full), split into equal per-replica shares; every worker
        # builds the same batches and keeps its own share (DATA sharding).
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        dataset = self.strategy.experimental_distribute_dataset(dataset.with_options(options))
        step = self.train_step(supervised_only)
        phase = "pretrain" if supervised_only else "reinforce"
        progress = progress_bar(self.steps_per_epoch, self.verbose,
                                       stateful_metrics=["loss", "acc", "reward"],
                                       unit_name="batch")
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.total_epochs} ({phase})")
        totals, started = None, time.perf_counter()
        for index, batch in enumerate(dataset):
            seed = self.rng.make_seeds(1)[:, 0]
            sums = step(batch, seed)
            totals = sums if totals is None else {k: totals[k] + sums[k] for k in sums}
            if index % 10 == 0 or index == self.steps_per_epoch - 1:
                self.progress.record_time(seconds_before + time.perf_counter() - started)
                count = float(totals["count"])
                loss = float(totals["total"]) / count
                if not math.isfinite(loss):
                    raise TrainingError(f"non-finite loss {loss} at epoch {epoch + 1}, batch "
                                        f"{index + 1}; {self._kept_checkpoint()}")
                progress.update(index + 1, [("loss", loss),
                                            ("acc", float(totals["correct"]) / count),
                                            ("reward", float(totals["reward"]) / count)])
        count = float(totals["count"])
        means = {name: float(totals[name]) / count for name in LOSS_TERMS}
        means["accuracy"] = float(totals["correct"]) / count
        means["reward_per_step"] = (totals["step_rewards"].numpy() / count).tolist()
        means["entropy_per_step"] = (totals["step_entropies"].numpy() / count).tolist()
        if not math.isfinite(means["total"]):
            raise TrainingError(f"non-finite loss at epoch {epoch + 1}; "
                                f"{self._kept_checkpoint()}")
        return means

    def _kept_checkpoint(self) -> str:
        """The end of a non-finite error message: which checkpoint the run can resume from."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            return "stopped before any checkpoint was written"
        return f"stopped without saving this epoch; the last good checkpoint is {latest}"

    def _check_finite_state(self, epoch: int) -> None:
        """Raise TrainingError if a weight or an optimizer variable is NaN or inf.

        The loss is checked during the epoch, but a non-finite gradient can corrupt
        the weights while the loss stays finite (e.g. at the last step), so this
        check runs before the epoch's checkpoints are written.
        """
        bad = [variable.path for variable in self.model.weights + self.optimizer.variables
               if not np.all(np.isfinite(variable.numpy()))]
        if bad:
            raise TrainingError(f"non-finite values in {len(bad)} variables ({bad[0]}, ...) "
                                f"after epoch {epoch + 1}; {self._kept_checkpoint()}")

    def fit(self) -> dict:
        """Train to the end (or continue a resumed run), evaluate the test set once, write metrics."""
        pretrain = self.config.pretrain_epochs if self.config.pretrain else 0
        start = int(self.epoch.numpy())
        if start == 0 and self.is_chief:
            with self.writer.as_default(step=0):
                tf.summary.text("config", "```\n" + json.dumps(self.config.to_dict(), indent=2)
                                + "\n```")
                # TensorBoard's HPARAMS tab: this run's configuration beside its metrics
                # (val/... and test/accuracy scalars), runs under runs/ side by side.
                hparams_api.hparams({name: "None" if value is None else value
                                     for name, value in self.config.to_dict().items()},
                                    trial_id=self.logdir.name)
        history = self._load_history()
        train_seconds = history.get("train_seconds", 0.0)
        for epoch in range(start, self.total_epochs):
            if self.budget_spent(train_seconds, epoch):
                break
            supervised_only = epoch < pretrain
            started = time.perf_counter()
            train = self.train_epoch(epoch, supervised_only, train_seconds)
            self._check_finite_state(epoch)  # Before anything of this epoch is saved.
            elapsed = time.perf_counter() - started
            train_seconds += elapsed
            val = self.evaluate("val", "random" if supervised_only else "greedy")
            self.epoch.assign(epoch + 1)
            improved = not supervised_only and val["accuracy"] > float(self.best_val.numpy())
            if improved:
                self.best_val.assign(val["accuracy"])
            if self.is_chief:
                self._write_summaries(epoch + 1, train, val, supervised_only,
                                      self.steps_per_epoch * self.images_per_batch / elapsed)
                every = self.config.summary_images_every
                if every and ((epoch + 1) % every == 0 or epoch + 1 == self.total_epochs):
                    self._write_image_summaries(epoch + 1)
            # The epoch's checkpoint is written last: it commits the epoch.  A kill before
            # it resumes from the previous epoch, which trims history.json to that epoch
            # and writes best/ and pretrained/ again (a resumed epoch is bitwise the same).
            history.setdefault("val_history", []).append(
                {"epoch": epoch + 1, "phase": "pretrain" if supervised_only else "reinforce",
                 "val_accuracy": val["accuracy"], "train_accuracy": train["accuracy"],
                 "wall_s": train_seconds})
            history["train_seconds"] = train_seconds
            self._save_history(history)
            # Every worker saves (see `write_dir`); every worker's `improved` is the same,
            # since the workers hold the same weights and evaluate the same canvases.
            if improved:
                self.best_manager.save(checkpoint_number=epoch + 1)
            if epoch + 1 == pretrain:
                self.pretrained_manager.save(checkpoint_number=epoch + 1)
            self.manager.save(checkpoint_number=epoch + 1)
            if self.verbose:
                print(f"  val accuracy ({'random' if supervised_only else 'greedy'} policy): "
                      f"{val['accuracy']:.4f}  hit rate {val['hit_rate']:.3f}  "
                      f"distinct sequences {val['distinct_sequences']}/{val['count']}  "
                      f"({elapsed:.1f} s)")
        return self.finish(history)

    def budget_spent(self, train_seconds: float, epoch: int) -> bool:
        """Whether the --minutes budget is used up before `epoch` (0-based) starts."""
        budget = self.config.budget_seconds
        if budget is None or train_seconds < budget:
            return False
        if self.verbose:
            print(f"time budget of {self.config.minutes:g} min spent after {epoch} epochs "
                  f"({train_seconds:.0f} s of training)")
        return True

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
            "test_hit_rate_per_step": test["hit_rate_per_step"],
            "test_distinct_sequences": test["distinct_sequences"],
            "test_modal_share": test["modal_share"],
            "epochs": epochs, "train_seconds": history.get("train_seconds", 0.0),
            "images_per_s": (epochs * self.steps_per_epoch
                             * self.images_per_batch / max(history.get("train_seconds", 0.0), 1e-9)),
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
        else:
            shutil.rmtree(self.write_dir, ignore_errors=True)
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
            tf.summary.scalar("train/entropy_weight", float(self.entropy_weight()))
            for t, reward in enumerate(train["reward_per_step"]):
                tf.summary.scalar(f"reward_per_step/step_{t}", reward)
            for t, entropy in enumerate(train["entropy_per_step"]):
                tf.summary.scalar(f"policy_entropy_per_step/step_{t}", entropy)
            policy = "random" if supervised_only else "greedy"
            tf.summary.scalar(f"val/accuracy_{policy}", val["accuracy"])
            tf.summary.scalar(f"val/hit_rate_{policy}", val["hit_rate"])
            tf.summary.scalar(f"val/distinct_sequences_{policy}", val["distinct_sequences"])
            for t, rate in enumerate(val["hit_rate_per_step"]):
                tf.summary.scalar(f"val_hit_rate_per_step/step_{t}", rate)
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
