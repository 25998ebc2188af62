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
* ``agent.keras``         - the best agent in Keras' own format (keras.models.load_model)

The step is written against `tf.distribute.Strategy`: per-example losses are
averaged over the global batch and metrics are summed across replicas, so the
default strategy (one device) and MirroredStrategy share the same code.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tf_glimpse.analysis.evaluation import episode_function, evaluate
from tf_glimpse.config import GlimpseConfig
from tf_glimpse.data.canvas import split_dataset
from tf_glimpse.data.sources import Splits, config_splits
from tf_glimpse.model.agent import GlimpseAgent
from tf_glimpse.progress import progress_bar
from tf_glimpse.training import summaries
from tf_glimpse.training.runs import (
    KERAS_FILE,
    EpochCheckpoints,
    TrainingError,
    load_history,
    prepare_run_dir,
    write_json,
)
from tf_glimpse.training.schedules import BudgetCosineDecay, BudgetProgress, entropy_weight
from tf_glimpse.training.step import LOSS_TERMS, TrainStep, make_strategy


class Trainer:
    """Owns the agent, its optimizer, checkpoints and summaries for one run directory.

    (Over 80 lines: set-up, one epoch, the epoch loop `fit` and the final `finish` share
    the state of one run; the saving order lives in `runs.EpochCheckpoints`, the step in
    `step.TrainStep`, the evaluation in `analysis.evaluation`.)
    """

    def __init__(self, config: GlimpseConfig, logdir: str | Path, resume: bool = False,
                 splits: Splits | None = None, verbose: int = 1):
        self.logdir = Path(logdir)
        self.verbose = verbose
        self.splits = splits or config_splits(config)
        # The number of classes and channels come from the data (config.json stores them).
        self.config = config = config.replace(num_classes=self.splits.num_classes,
                                              channels=self.splits.channels)
        self.train_size = len(self.splits.train_labels)
        # A batch holds batch_size episodes: samples_per_image episodes of each of
        # images_per_batch images.
        self.images_per_batch = config.batch_size // config.samples_per_image
        if self.train_size < self.images_per_batch:
            # A small data set (a folder of a few dozen images): one batch per epoch holds
            # them all, rather than an error; config.json records the batch size used.
            smaller = self.train_size * config.samples_per_image
            print(f"note: batch_size={config.batch_size} needs {self.images_per_batch} training "
                  f"images, more than the {self.train_size} there are; using "
                  f"batch_size={smaller}", file=sys.stderr)
            self.config = config = config.replace(batch_size=smaller)
            self.images_per_batch = self.train_size
        self.steps_per_epoch = self.train_size // self.images_per_batch
        self.total_epochs = config.epochs + (config.pretrain_epochs if config.pretrain else 0)
        # The strategy first: MultiWorkerMirroredStrategy must exist before any variable.
        self.strategy = make_strategy(config.strategy)
        # Where this worker saves checkpoints.  Under MultiWorkerMirroredStrategy every
        # worker must take part in a save; the non-chief ones save into a directory of
        # their own, deleted at the end of `finish`.
        self.write_dir = self.logdir if self.is_chief else (
            self.logdir / f"workertemp_{self.strategy.cluster_resolver.task_id}")
        # The chief checks and writes the (maybe shared) run directory.
        if self.is_chief:
            prepare_run_dir(self.logdir, config, resume, self.splits)
        else:
            self.write_dir.mkdir(parents=True, exist_ok=True)
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            # Made in the scope, so that every replica reads its own copy of the time
            # fraction (an XLA-compiled replica cannot read another device's variable).
            self.progress = BudgetProgress(self.total_epochs * self.steps_per_epoch,
                                           config.budget_seconds)
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
        # Every epoch, the best by validation accuracy, and the classifier trained on
        # random glimpses (pretrained/: the fair judge of a random policy).
        self.checkpoints = EpochCheckpoints(self.checkpoint, self.write_dir)
        if resume:  # Every worker resumes from the chief's checkpoints.
            self.checkpoints.resume(self.logdir, clean=self.is_chief)
        self.writer = tf.summary.create_file_writer(str(self.logdir)) if self.is_chief else (
            tf.summary.create_noop_writer())
        self.step = TrainStep(self.model, self.optimizer, config, self.strategy,
                              self.entropy_weight)
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

    def _learning_rate(self):
        if not self.config.lr_decay:
            return self.config.lr
        return BudgetCosineDecay(self.config.lr, self.progress, alpha=0.05)

    def entropy_weight(self) -> tf.Tensor:
        """The entropy bonus's weight now (it follows the budget's progress)."""
        return entropy_weight(self.config.entropy_weight, self.config.entropy_final,
                              self.progress(self.optimizer.iterations))

    def train_step(self, supervised_only: bool):
        """The compiled, distributed training step: (batch, seed [2]) -> summed loss terms."""
        return self.step(supervised_only)

    # ------------------------------------------------------------- evaluation
    def evaluate(self, split: str, policy: str = "greedy", samples: int = 1) -> dict:
        """`tf_glimpse.analysis.evaluation.evaluate` of the agent on `split` with the run's seed.

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
        latest = self.checkpoints.latest()
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
        """Train to the end (or continue a resumed run), evaluate the test set once, write
        metrics."""
        pretrain = self.config.pretrain_epochs if self.config.pretrain else 0
        start = int(self.epoch.numpy())
        if start == 0 and self.is_chief:
            summaries.log_config(self.writer, self.config, trial_id=self.logdir.name)
        history = load_history(self.logdir, start)
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
            policy = "random" if supervised_only else "greedy"
            val = self.evaluate("val", policy)
            self.epoch.assign(epoch + 1)
            improved = not supervised_only and val["accuracy"] > float(self.best_val.numpy())
            if improved:
                self.best_val.assign(val["accuracy"])
            if self.is_chief:
                self._log_epoch(epoch, train, val, policy, elapsed)
            history.setdefault("val_history", []).append(
                {"epoch": epoch + 1, "phase": "pretrain" if supervised_only else "reinforce",
                 "val_accuracy": val["accuracy"], "train_accuracy": train["accuracy"],
                 "wall_s": train_seconds})
            history["train_seconds"] = train_seconds
            # Every worker saves (see `write_dir`); every worker's `improved` is the same,
            # since the workers hold the same weights and evaluate the same canvases.
            self.checkpoints.commit(epoch + 1, history,
                                    self.logdir / "history.json" if self.is_chief else None,
                                    improved, pretrained=epoch + 1 == pretrain)
            if self.verbose:
                print(f"  val accuracy ({policy} policy): "
                      f"{val['accuracy']:.4f}  hit rate {val['hit_rate']:.3f}  "
                      f"distinct sequences {val['distinct_sequences']}/{val['count']}  "
                      f"({elapsed:.1f} s)")
        return self.finish(history)

    def _log_epoch(self, epoch: int, train: dict, val: dict, policy: str,
                   elapsed: float) -> None:
        """TensorBoard: the epoch's scalars, and every `summary_images_every` epochs (and
        at the last) the glimpse trajectories of a validation batch."""
        summaries.log_epoch(self.writer, epoch + 1, train, val, policy,
                            images_per_s=self.steps_per_epoch * self.images_per_batch / elapsed,
                            learning_rate=float(self.optimizer.learning_rate),
                            entropy_weight=float(self.entropy_weight()))
        every = self.config.summary_images_every
        if every and ((epoch + 1) % every == 0 or epoch + 1 == self.total_epochs):
            batch = next(iter(split_dataset(self.splits, self.config, "val")))
            summaries.log_glimpses(self.writer, epoch + 1, self.model, batch,
                                   self.config.scales)

    @property
    def saved_epochs(self) -> int:
        """Epochs committed by a checkpoint: what `--resume` continues from."""
        latest = self.checkpoints.latest()  # ".../ckpt-E", E = epochs done.
        return int(latest.rsplit("-", 1)[1]) if latest else 0

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
        if self.checkpoints.latest("best"):
            self.checkpoint.restore(self.checkpoints.latest("best"))
        val = self.evaluate("val")
        test = self.evaluate("test")
        metrics = {
            "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"],
            "test_error": 1.0 - test["accuracy"], "val_error": 1.0 - val["accuracy"],
            "test_accuracy_per_step": test["accuracy_per_step"], "test_hit_rate": test["hit_rate"],
            "test_hit_rate_per_step": test["hit_rate_per_step"],
            "test_distinct_sequences": test["distinct_sequences"],
            "test_modal_share": test["modal_share"],
            "test_modal_sequence": test["modal_sequence"],
            "epochs": epochs, "train_seconds": history.get("train_seconds", 0.0),
            "images_per_s": (epochs * self.steps_per_epoch * self.images_per_batch
                             / max(history.get("train_seconds", 0.0), 1e-9)),
            "best_checkpoint": self.checkpoints.latest("best"),
            "val_history": history.get("val_history", []),
        }
        if self.config.test_samples:
            sampled = self.evaluate("test", "sample", self.config.test_samples)
            metrics["test_accuracy_sampled"] = sampled["accuracy"]
        if self.is_chief:
            # The best agent in Keras' own format: keras.models.load_model(RUN/agent.keras).
            self.model.save(self.logdir / KERAS_FILE)
            write_json(self.logdir / "metrics.json", metrics)
            summaries.log_test(self.writer, epochs, test["accuracy"])
        else:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        if self.verbose:
            print(f"best val accuracy {val['accuracy']:.4f}, test accuracy "
                  f"{test['accuracy']:.4f} (error {100 * (1 - test['accuracy']):.2f}%)")
        return metrics
