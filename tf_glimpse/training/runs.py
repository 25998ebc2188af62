"""The run directory: what train.py writes there, how a run resumes, and reading it back.

Writing (the chief worker): ``config.json`` (checked against the saved one on
``--resume``), ``history.json`` (one line per finished epoch), ``metrics.json``,
all written atomically (`write_json`).  Saving an epoch: `EpochCheckpoints`.  Resuming:
`restore_last_good` skips damaged checkpoints, `load_history` trims the history to the
restored epoch.
Reading back: `load_config`, `latest_checkpoint`, `load_agent`, `load_keras_agent`
(``agent.keras``, the best agent in Keras' own format).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import tensorflow as tf

from tf_glimpse.config import CHECKPOINT_KINDS, RESUMABLE_FIELDS, ConfigError, GlimpseConfig
from tf_glimpse.model.agent import GlimpseAgent


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


# ------------------------------------------------------------------ writing
class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible resume, ...)."""


KERAS_FILE = "agent.keras"  # The best agent in Keras' own format, written at a run's end.


def load_keras_agent(path: str | Path) -> tuple[GlimpseConfig, GlimpseAgent]:
    """The agent of a `.keras` file (a run's agent.keras, or any `agent.save(...)`) and its
    `GlimpseConfig`; RunError naming the file when it is not a saved glimpse agent."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path} not found")
    try:
        agent = keras.models.load_model(path)
    except Exception as error:  # noqa: BLE001 - not a zip, not Keras, a wrong class...
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RunError(f"{path} does not load as a Keras model ({reason[:200]})") from error
    if not isinstance(agent, GlimpseAgent):
        raise RunError(f"{path} holds a {type(agent).__name__}, not a tf_glimpse GlimpseAgent")
    return agent.config, agent


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


class EpochCheckpoints:
    """A run's checkpoint folders (`CHECKPOINT_KINDS`), and the order an epoch is saved in.

    `commit` writes ``history.json`` (atomically), then ``best/`` when the epoch
    improved, ``pretrained/`` at the end of pre-training, and last ``checkpoints/``,
    whose state file commits the epoch: a kill before it resumes from the epoch before,
    which is then recomputed bitwise.  The agent's `Trainer` and the CNN baseline both
    save through it.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: Path,
                 kinds: tuple[str, ...] = CHECKPOINT_KINDS, keep: int = 3):
        self.checkpoint = checkpoint
        self.managers = {kind: tf.train.CheckpointManager(
            checkpoint, directory / kind, max_to_keep=keep if kind == "checkpoints" else 1)
            for kind in kinds}

    def latest(self, kind: str = "checkpoints") -> str | None:
        """The newest checkpoint of `kind`, or None."""
        return self.managers[kind].latest_checkpoint

    def resume(self, run_dir: Path, clean: bool = True) -> str | None:
        """Restore the newest loadable epoch of `run_dir/checkpoints`; with `clean`, delete
        the temporary directories of saves that a kill cut short."""
        restored = restore_last_good(self.checkpoint, run_dir / "checkpoints")
        if clean:
            for manager in self.managers.values():
                for orphan in Path(manager.directory).glob("ckpt-*_temp"):
                    shutil.rmtree(orphan, ignore_errors=True)
        return restored

    def commit(self, epoch: int, history: dict, history_path: Path | None, improved: bool,
               pretrained: bool = False) -> None:
        """Save finished epoch `epoch` (1-based); `history_path` None: write no history
        (a worker that is not the chief)."""
        if history_path is not None:
            write_json(history_path, history)
        if improved:
            self.managers["best"].save(checkpoint_number=epoch)
        if pretrained:
            self.managers["pretrained"].save(checkpoint_number=epoch)
        self.managers["checkpoints"].save(checkpoint_number=epoch)


def prepare_run_dir(logdir: Path, config: GlimpseConfig, resume: bool, splits=None) -> None:
    """Create `logdir`, write config.json and data.json; with an existing run, check it
    can be resumed.

    ConfigError when `logdir` holds a run and `resume` is False, when its
    config.json is damaged, when `config` changes a field `--resume` cannot change,
    or when the data (`splits`) differ from those the run began with.  config.json
    holds `config.resolved()`: the encoder built, not "auto".
    """
    config = config.resolved()
    config_path = logdir / "config.json"
    if config_path.exists():
        if not resume:
            raise ConfigError(f"logdir={str(logdir)!r} already holds a run; pass "
                              f"--resume to continue it or choose another --logdir")
        try:
            saved = load_config(logdir)
        except RunError as error:  # A damaged or hand-edited config.json.
            raise ConfigError(str(error)) from error
        check_resumable(saved, config)
        if splits is not None:
            try:
                check_data(logdir, splits, config.data_dir)
            except RunError as error:
                raise ConfigError(str(error)) from error
    logdir.mkdir(parents=True, exist_ok=True)
    config.to_json(config_path)
    if splits is not None and not (logdir / DATA_FILE).exists():
        record_data(logdir, splits)


def trim_history(history: dict, epochs_done: int) -> dict:
    """`history` without the epochs after `epochs_done` (those of a killed, resumed run).

    ``val_history`` keeps the epochs up to `epochs_done`; ``train_seconds`` becomes
    the wall time at its last epoch.
    """
    history["val_history"] = [h for h in history.get("val_history", [])
                              if h["epoch"] <= epochs_done]
    history["train_seconds"] = (history["val_history"][-1]["wall_s"]
                                if history["val_history"] else 0.0)
    return history


def load_history(run_dir: str | Path, epochs_done: int) -> dict:
    """history.json of `run_dir` trimmed to `epochs_done` (empty when there is none)."""
    path = Path(run_dir) / "history.json"
    if not path.exists():
        return {}
    return trim_history(json.loads(path.read_text()), epochs_done)


DATA_FILE = "data.json"  # The fingerprint of the data set a run began with.


def record_data(run_dir: Path, splits) -> None:
    """Write `run_dir/data.json`: the name, fingerprint and class names of the run's data
    (`Splits`)."""
    write_json(Path(run_dir) / DATA_FILE, {"dataset": splits.name,
                                           "fingerprint": splits.fingerprint,
                                           "class_names": list(splits.class_names)})


def recorded_class_names(run_dir: str | Path) -> list[str] | None:
    """The class names data.json recorded for the run, or None (older runs, no file)."""
    try:
        names = json.loads((Path(run_dir) / DATA_FILE).read_text()).get("class_names")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(name) for name in names] if names else None


def check_data(run_dir: str | Path, splits, data_dir: str | None) -> None:
    """RunError when the data of `splits` differ from those the run began with.

    A run started before data.json existed is not checked.  `data_dir` (the
    directory that was read, for the message) may be None.
    """
    path = Path(run_dir) / DATA_FILE
    if not path.exists():
        return
    try:
        recorded = json.loads(path.read_text())["fingerprint"]
    except (ValueError, KeyError, TypeError) as error:
        raise RunError(f"{path} is damaged ({type(error).__name__}); restore it or delete it "
                       f"to skip the data check") from error
    if recorded != splits.fingerprint:
        where = f" in {data_dir}" if data_dir else ""
        raise RunError(f"the {splits.name} data{where} differ from the data the run began with "
                       f"(fingerprint {splits.fingerprint[:12]}, recorded {recorded[:12]} in "
                       f"{path}); point --data_dir (or TF_GLIMPSE_DATA_DIR) at the original "
                       f"data, or start a new run")


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (a kill never leaves a half-written file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
