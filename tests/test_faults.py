"""Surviving faults: stop and resume, kill -9, kills during checkpoint writes, NaN losses."""

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf_glimpse import cli
from tf_glimpse.config import GlimpseConfig
from tf_glimpse.data.sources import config_splits
from tf_glimpse.training import step as train_step
from tf_glimpse.training.runs import TrainingError, restore_last_good
from tf_glimpse.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
# 256 training images in batches of 64: 4 steps per epoch.  XLA off: compiling costs more
# than these few steps.
TINY = dict(img_size=28, clutter_count=0, patch_size=8, stride=4, steps=2, subset=256,
            val_size=256, batch_size=64, memory_units=32, embedding_units=32,
            classifier_units=32, glimpse_units=32, location_units=16, attention_heads=2,
            jit_compile=False, summary_images_every=0, seed=3)
TINY_FLAGS = [arg for name, value in TINY.items() for arg in (f"--{name}", str(value))]


def tensors(checkpoint_path: str) -> dict:
    """Every tensor of a checkpoint (reading them all checks each one's checksum)."""
    reader = tf.train.load_checkpoint(checkpoint_path)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}


def epochs_in(run: Path) -> list[int]:
    history = json.loads((run / "history.json").read_text())
    return [entry["epoch"] for entry in history["val_history"]]


# ----------------------------------------------------------- stop and resume
class StopAfter(Trainer):
    """Raises KeyboardInterrupt when epoch `stop_at` (0-based) would start."""

    stop_at = 1

    def train_epoch(self, epoch, supervised_only, seconds_before=0.0):
        if epoch == self.stop_at:
            raise KeyboardInterrupt
        return super().train_epoch(epoch, supervised_only, seconds_before)


def test_stop_and_resume_at_an_epoch_boundary_ends_with_the_same_weights(tmp_path, data_dir):
    config = GlimpseConfig(data_dir=data_dir, epochs=2, **TINY)
    splits = config_splits(config, data_dir)
    splits = dataclasses.replace(splits, test_images=splits.test_images[:256],
                                 test_labels=splits.test_labels[:256])
    whole = Trainer(config, tmp_path / "whole", splits=splits, verbose=0)
    whole.fit()
    with pytest.raises(KeyboardInterrupt):
        StopAfter(config, tmp_path / "stopped", splits=splits, verbose=0).fit()
    assert epochs_in(tmp_path / "stopped") == [1]
    resumed = Trainer(config, tmp_path / "stopped", resume=True, splits=splits, verbose=0)
    assert int(resumed.epoch.numpy()) == 1 and int(resumed.optimizer.iterations.numpy()) == 4
    resumed.fit()

    expected = tensors(str(tmp_path / "whole" / "checkpoints" / "ckpt-2"))
    actual = tensors(str(tmp_path / "stopped" / "checkpoints" / "ckpt-2"))
    assert expected.keys() == actual.keys()
    # The object graph (names, not values) is the only entry allowed to differ.
    different = [key for key in expected if not np.array_equal(expected[key], actual[key])
                 and key != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert not different, different  # Bitwise: weights, Adam slots, iterations, RNG state.
    history = [json.loads((tmp_path / run / "history.json").read_text())
               for run in ("whole", "stopped")]
    for run in history:
        for entry in run["val_history"]:
            entry.pop("wall_s")
        assert run.pop("train_seconds") > 0
    assert history[0] == history[1]
    assert json.loads((tmp_path / "stopped" / "metrics.json").read_text())["epochs"] == 2


# -------------------------------------------------------------- kill -9
def wait_for(condition, process: subprocess.Popen, timeout: float = 240.0,
             poll: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended (code {process.returncode}) before the "
                                 f"kill: {process.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll)


def latest_epoch(directory: Path) -> int:
    state = tf.train.get_checkpoint_state(str(directory))
    return int(state.model_checkpoint_path.rsplit("-", 1)[1]) if state else 0


def test_kill_9_during_training_then_resume_completes(tmp_path, data_dir):
    run = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), *TINY_FLAGS, "--epochs", "4",
               "--data_dir", data_dir, "--logdir", str(run), "--resume", "True"]
    process = subprocess.Popen([*command, "--quiet"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_for(lambda: latest_epoch(run / "checkpoints") >= 1, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = latest_epoch(run / "checkpoints")
    assert 1 <= killed_at < 4
    assert tensors(str(run / "checkpoints" / f"ckpt-{killed_at}"))  # The latest one loads.

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    started = [int(epoch) for epoch in re.findall(r"Epoch (\d+)/4", resumed.stdout)]
    assert started == list(range(killed_at + 1, 5)), resumed.stdout[-2000:]
    assert "warning: checkpoint" not in resumed.stderr
    assert epochs_in(run) == [1, 2, 3, 4]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 4


# ----------------------------------------------- kills during checkpoint writes
SAVER = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
# 16 MB of variables, so that a save takes a while; every save n writes the value n.
weights = [tf.Variable(tf.zeros([1_000_000])) for _ in range(4)]
epoch = tf.Variable(0, dtype=tf.int64)
checkpoint = tf.train.Checkpoint(weights=weights, epoch=epoch)
manager = tf.train.CheckpointManager(checkpoint, sys.argv[1], max_to_keep=3)
if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint)
print("ready", flush=True)
n = int(epoch.numpy())
while True:
    n += 1
    for weight in weights:
        weight.assign(tf.fill(weight.shape, float(n)))
    epoch.assign(n)
    manager.save(checkpoint_number=n)
"""


def files_of(directory: Path, number: int) -> list[str]:
    """The files (and the temporary directory) of checkpoint `number`."""
    return [name for name in os.listdir(directory)
            if name.startswith(f"ckpt-{number}.") or name == f"ckpt-{number}_temp"]


def writing(directory: Path, at_least: int) -> bool:
    """Whether the temporary directory of a save numbered >= `at_least` exists."""
    return any(int(path.name[5:-5]) >= at_least for path in directory.glob("ckpt-*_temp"))


def consistent_restore(directory: Path, size: int = 1_000_000,
                       count: int = 4) -> tuple[str, int]:
    """Restore like a resumed run does; check the values are those of one save."""
    weights = [tf.Variable(tf.zeros([size])) for _ in range(count)]
    epoch = tf.Variable(0, dtype=tf.int64)
    path = restore_last_good(tf.train.Checkpoint(weights=weights, epoch=epoch), directory)
    n = int(epoch.numpy())
    assert all(np.all(weight.numpy() == n) for weight in weights), (path, n)
    return path, n


def test_a_kill_during_a_checkpoint_write_never_leaves_a_checkpoint_that_fails_to_load(tmp_path):
    directory = tmp_path / "checkpoints"
    rng = random.Random(0)
    in_write, previous = 0, 0
    for _ in range(4):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(directory)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=ROOT)
        try:
            assert saver.stdout.readline() == "ready\n", saver.stderr.read()
            # Let a save or two commit, then kill at a random moment of a later one.
            wait_for(lambda done=previous: latest_epoch(directory) >= done + 2, saver)
            target = latest_epoch(directory) + 1
            wait_for(lambda epoch=target: writing(directory, epoch), saver, poll=0.001)
            time.sleep(rng.uniform(0.0, 0.03))
        finally:
            saver.send_signal(signal.SIGKILL)
            saver.wait()
        latest = tf.train.get_checkpoint_state(str(directory)).model_checkpoint_path
        # Files of the next checkpoint: killed after its write began, before it committed.
        in_write += bool(files_of(directory, latest_epoch(directory) + 1))
        path, previous = consistent_restore(directory)
        assert path == latest  # The latest checkpoint itself loads: no fallback needed.
        assert previous == latest_epoch(directory) >= target - 1
    assert in_write >= 1  # At least one kill really landed inside a write.


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    directory = tmp_path / "checkpoints"
    weights = [tf.Variable(tf.zeros([1000])) for _ in range(2)]
    epoch = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(weights=weights, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=3)
    for n in (1, 2, 3):
        for weight in weights:
            weight.assign(tf.fill([1000], float(n)))
        epoch.assign(n)
        manager.save(checkpoint_number=n)
    data = directory / "ckpt-3.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:4000])  # Truncated, e.g. by a full disk.

    path, n = consistent_restore(directory, size=1000, count=2)
    assert (Path(path).name, n) == ("ckpt-2", 2)
    assert "warning: checkpoint" in capsys.readouterr().err
    for name in ("ckpt-1", "ckpt-2"):
        (directory / f"{name}.index").unlink()
    with pytest.raises(TrainingError, match="no checkpoint"):
        consistent_restore(directory, size=1000, count=2)


# ------------------------------------------------------------------ NaN
@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_a_non_finite_loss_or_update_stops_the_run_and_keeps_the_last_good_checkpoint(
        tmp_path, data_dir, monkeypatch, capsys, kind):
    """From step 5 (the first of epoch 2) the loss is NaN ("loss"), or at step 8 (the last
    of epoch 2) only the gradient is ("gradient"): the loss stays finite, but the update
    makes the weights NaN.  Either way the optimizer has applied the NaN update."""
    steps = tf.Variable(0)
    original = train_step.agent_losses

    @tf.custom_gradient
    def nan_gradient(x, poison):  # The identity, but its gradient is NaN when poison > 0.
        return tf.identity(x), lambda dy: (dy + tf.where(poison > 0, np.nan, 0.0),
                                           tf.zeros_like(poison))

    def poisoned_losses(outputs, labels, config, supervised_only, *schedule):
        terms = dict(original(outputs, labels, config, supervised_only, *schedule))
        step = steps.assign_add(1)
        if kind == "loss":
            terms["total"] = terms["total"] + tf.where(step >= 5, np.nan, 0.0)
        else:
            terms["total"] = nan_gradient(terms["total"], tf.cast(step == 8, tf.float32))
        return terms

    monkeypatch.setattr(train_step, "agent_losses", poisoned_losses)
    run = tmp_path / "run"
    code = cli.main([*TINY_FLAGS, "--epochs", "3", "--data_dir", data_dir, "--logdir", str(run),
                     "--quiet"])
    errors = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith("train.py:")]
    assert code == 1
    assert len(errors) == 1 and errors[0].startswith("train.py: error: non-finite"), errors
    assert "ckpt-1" in errors[0] and "epoch 2" in errors[0]
    assert int(steps.numpy()) >= (8 if kind == "gradient" else 5)

    checkpoints = run / "checkpoints"
    assert Path(tf.train.latest_checkpoint(str(checkpoints))).name == "ckpt-1"
    assert not [name for name in os.listdir(checkpoints) if name.startswith("ckpt-2")]
    saved = tensors(str(checkpoints / "ckpt-1"))
    assert all(np.all(np.isfinite(value)) for value in saved.values()
               if np.issubdtype(np.asarray(value).dtype, np.floating))
    assert epochs_in(run) == [1]
    assert not (run / "metrics.json").exists()


# ------------------------------------------------------------- run-time failures
@pytest.mark.parametrize("where", ["history", "checkpoint"])
def test_a_full_disk_stops_the_run_with_one_line_and_the_resume_command(
        tmp_path, data_dir, monkeypatch, capsys, where):
    """The disk fills up in epoch 2: writing history.json (an OSError) or the checkpoint
    (TensorFlow's own error).  Epoch 1 stays saved, and --resume finishes the run."""
    import errno

    from tf_glimpse.training import runs

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run"))
    if where == "history":
        original, calls = runs.write_json, []

        def write_json(path, payload):  # EpochCheckpoints.commit writes history.json.
            if Path(path).name == "history.json":
                calls.append(path)
                if len(calls) == 2:  # history.json of epoch 2.
                    raise full
            original(path, payload)

        monkeypatch.setattr(runs, "write_json", write_json)
    else:
        original_save, saves = tf.train.CheckpointManager.save, []

        def save(manager, *args, **kwargs):
            if Path(manager.directory).name == "checkpoints":
                saves.append(manager.directory)
                if len(saves) == 2:  # The checkpoint that would commit epoch 2.
                    raise tf.errors.ResourceExhaustedError(None, None, os.strerror(errno.ENOSPC))
            return original_save(manager, *args, **kwargs)

        monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    run = tmp_path / "run"
    flags = [*TINY_FLAGS, "--epochs", "2", "--data_dir", data_dir, "--logdir", str(run),
             "--quiet"]
    assert cli.main(flags) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("train.py: error: the run stopped in "
                                                   "epoch 2"), lines
    assert os.strerror(errno.ENOSPC) in lines[0] and "--resume" in lines[0]
    assert Path(tf.train.latest_checkpoint(str(run / "checkpoints"))).name == "ckpt-1"
    # history.json is written before the checkpoint that commits the epoch; --resume
    # trims it back to the checkpoint.
    assert epochs_in(run) == ([1] if where == "history" else [1, 2])
    monkeypatch.undo()
    assert cli.main([*flags, "--resume"]) == 0
    assert epochs_in(run) == [1, 2] and (run / "metrics.json").exists()


def test_resume_report_and_export_refuse_data_that_changed_since_the_run_began(
        tmp_path, data_dir, capsys):
    """A run records its data's fingerprint (data.json).  When the files in its data
    directory change afterwards (here 300 training labels), --resume, the report and the
    export refuse them with one line and exit 2, and nothing of the run changes."""
    import gzip
    import shutil

    from export.__main__ import main as export_main
    from tf_glimpse import report as report_cli

    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    run = tmp_path / "run"
    flags = [*TINY_FLAGS, "--data_dir", str(data), "--logdir", str(run), "--quiet"]
    assert cli.main([*flags, "--epochs", "1"]) == 0
    assert json.loads((run / "data.json").read_text())["dataset"] == "mnist"
    labels = data / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8:8 + 300] = bytes((value + 1) % 10 for value in raw[8:8 + 300])
    labels.write_bytes(gzip.compress(bytes(raw)))
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    capsys.readouterr()

    with pytest.raises(SystemExit) as exit_info:  # argparse's exit for a bad command line.
        cli.main([*flags, "--epochs", "2", "--resume"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "differ from the data the run began with" in message and str(data) in message
    assert report_cli.main([str(run), "--quiet", "--gifs", "0"]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("report: error: ") and "data.json" in message
    assert export_main([str(run), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: ") and "data.json" in message
    assert not (tmp_path / "out").exists()
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == before


def test_a_missing_package_is_named_with_how_to_install_it_and_nothing_is_written(tmp_path,
                                                                                   data_dir):
    """The report without matplotlib, run through its real command line in a Python whose
    import of matplotlib fails: exit 1, one line naming the package, no report/ written."""
    run = tmp_path / "run"
    assert cli.main([*TINY_FLAGS, "--epochs", "1", "--data_dir", data_dir, "--logdir", str(run),
                     "--quiet"]) == 0
    before = sorted(p.name for p in run.iterdir())
    script = ("import sys; sys.modules['matplotlib'] = None; "
              "from tf_glimpse.report import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", script, str(run), "--quiet"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    lines = [line for line in result.stderr.splitlines() if line.startswith("report:")]
    assert result.returncode == 1, result.stderr[-2000:]
    assert len(lines) == 1 and "needs the package matplotlib" in lines[0]
    assert "pip install" in lines[0] and "Traceback" not in result.stderr
    assert sorted(p.name for p in run.iterdir()) == before  # No report/, no gifs/.


def test_an_epoch_is_committed_last_after_history_best_and_pretrained(tmp_path, monkeypatch):
    # The order that makes a kill at any point resumable: history.json, best/,
    # pretrained/, and only then checkpoints/ (whose state file commits the epoch).
    from tf_glimpse.training import runs

    variable = tf.Variable(1.0)
    checkpoints = runs.EpochCheckpoints(tf.train.Checkpoint(v=variable), tmp_path)
    order = []
    monkeypatch.setattr(runs, "write_json", lambda path, payload: order.append(path.name))
    for kind, manager in checkpoints.managers.items():
        save = manager.save
        monkeypatch.setattr(manager, "save", lambda save=save, kind=kind, **kw: (
            order.append(kind), save(**kw))[1])
    checkpoints.commit(1, {"val_history": []}, tmp_path / "history.json", improved=True,
                       pretrained=True)
    assert order == ["history.json", "best", "pretrained", "checkpoints"]
    assert checkpoints.latest().endswith("ckpt-1") and checkpoints.latest("best")
    order.clear()
    checkpoints.commit(2, {}, None, improved=False)  # A worker that is not the chief.
    assert order == ["checkpoints"]
