"""Reading a finished (or interrupted) run directory back: its config and trained agent."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from tf_glimpse.agent import GlimpseAgent
from tf_glimpse.config import GlimpseConfig

CHECKPOINT_KINDS = ("best", "checkpoints", "pretrained")


class RunError(RuntimeError):
    """A run directory is missing, incomplete, or has no checkpoint of the asked kind."""


def load_config(run_dir: str | Path) -> GlimpseConfig:
    """The `GlimpseConfig` stored in `run_dir/config.json`."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise RunError(f"{path} not found: {run_dir} is not a train.py run directory")
    try:
        return GlimpseConfig.from_json(path)
    except (ValueError, TypeError) as error:  # Not JSON, an unknown key, a bad value.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RunError(f"{path} is damaged ({reason}); restore it from the run's copy or "
                       f"train again") from error


def latest_checkpoint(run_dir: str | Path, kind: str = "best") -> str:
    """Path prefix of the newest checkpoint of `kind`.

    kind: "best" (best validation accuracy, falling back to the newest epoch),
    "checkpoints" (the newest epoch) or "pretrained" (the end of supervised pre-training).
    """
    if kind not in CHECKPOINT_KINDS:
        raise ValueError(f"kind={kind!r}; valid values: {', '.join(CHECKPOINT_KINDS)}")
    order = ("best", "checkpoints") if kind == "best" else (kind,)
    for name in order:
        found = tf.train.latest_checkpoint(str(Path(run_dir) / name))
        if found:
            return found
    raise RunError(f"no checkpoint in {Path(run_dir) / order[0]}: the run has not finished "
                   f"an epoch{' of pre-training' if kind == 'pretrained' else ''} yet")


def load_agent(run_dir: str | Path, kind: str = "best") -> tuple[GlimpseConfig, GlimpseAgent]:
    """Rebuild the agent of a run from its config and restore its trained weights."""
    config = load_config(run_dir)
    checkpoint_path = latest_checkpoint(run_dir, kind)
    agent = GlimpseAgent.from_glimpse_config(config)
    status = tf.train.Checkpoint(model=agent).restore(checkpoint_path)
    status.expect_partial().assert_existing_objects_matched()
    return config, agent
