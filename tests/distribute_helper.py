"""Subprocess driver for tests/test_distribute.py (not a test module itself).

    python tests/distribute_helper.py mirrored-step OUT.npz DATA_DIR
        Splits the CPU into 2 logical devices (before TensorFlow initialises them), then
        runs one training step of the same global batch under the default strategy and
        under MirroredStrategy, and saves the weights and Adam slots before and after.

    python tests/distribute_helper.py worker OUT.npz [train.py flags]
        One MultiWorkerMirroredStrategy worker (TF_CONFIG from the environment): the
        `train.py` flags -> Trainer(...).fit(), then its weights and Adam slots.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

# Small layers: the tests measure agreement, not accuracy.
SMALL = dict(embedding_units=32, memory_units=32, classifier_units=32, glimpse_units=32,
             location_units=16, attention_heads=2)


def state(trainer, prefix: str) -> dict:
    """Trainable weights and optimizer variables (Adam's m and v, ...) as numpy arrays."""
    arrays = {f"{prefix}weight_{i}": v.numpy()
              for i, v in enumerate(trainer.model.trainable_variables)}
    # Keys end in the kind of slot ("momentum", "velocity", "iteration").
    arrays.update({f"{prefix}optimizer_{i}_{v.name.rsplit('_', 1)[-1]}": np.asarray(v.numpy())
                   for i, v in enumerate(trainer.optimizer.variables)})
    return arrays


def mirrored_step(out: str, data_dir: str) -> None:
    import tempfile

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_glimpse.config import GlimpseConfig
    from tf_glimpse.training.trainer import Trainer

    arrays = {}
    for strategy in ("default", "mirrored"):
        # subset == batch_size: one epoch is one step.  A small grad_clip makes the
        # per-variable clipping bite, so clipping before the cross-replica sum would show.
        # XLA on, as users run it: each replica's compiled step must read only variables
        # of its own device (it failed so for the budget's time fraction).
        config = GlimpseConfig(data_dir=data_dir, img_size=28, clutter_count=0, patch_size=8,
                               stride=4, steps=2, subset=64, val_size=64, batch_size=64,
                               grad_clip=0.05, jit_compile=True, strategy=strategy, **SMALL)
        trainer = Trainer(config, Path(tempfile.mkdtemp()) / "run", verbose=0)
        trainer.step.deterministic_episodes = True
        arrays["replicas_" + strategy] = trainer.strategy.num_replicas_in_sync
        arrays.update(state(trainer, f"{strategy}/before/"))
        means = trainer.train_epoch(0, supervised_only=True)
        arrays.update(state(trainer, f"{strategy}/after/"))
        arrays[f"{strategy}/loss"] = means["total"]
        arrays[f"{strategy}/accuracy"] = means["accuracy"]
        # The replicas' copies of every variable must agree exactly.
        arrays[f"{strategy}/copy_difference"] = max(
            float(np.max(np.abs(copy.numpy() - variable.numpy())))
            for variable in trainer.model.trainable_variables + list(trainer.optimizer.variables)
            for copy in trainer.strategy.experimental_local_results(variable))
    np.savez(out, **arrays)


def worker(out: str, flags: list[str]) -> None:
    from tf_glimpse.cli import build_parser, config_from_args

    args = build_parser().parse_args(flags)
    config = config_from_args(args)
    from tf_glimpse.training.trainer import Trainer

    trainer = Trainer(config, args.logdir, verbose=0)
    arrays = state(trainer, "before/")
    metrics = trainer.fit()
    arrays.update(state(trainer, "after/"))
    arrays["is_chief"] = trainer.is_chief
    arrays["replicas"] = trainer.strategy.num_replicas_in_sync
    arrays["val_accuracy"] = metrics["val_accuracy"]
    np.savez(out, **arrays)


if __name__ == "__main__":
    command, target = sys.argv[1], sys.argv[2]
    if command == "mirrored-step":
        mirrored_step(target, sys.argv[3])
    elif command == "worker":
        worker(target, sys.argv[3:])
    else:
        sys.exit(f"unknown command {command!r}; valid: mirrored-step, worker")
