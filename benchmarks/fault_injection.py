"""Fault injection: kill -9 `train.py` again and again, resume it, compare with a clean run.

    python benchmarks/fault_injection.py                 # 10 kills, a 16-epoch tiny run
    python benchmarks/fault_injection.py --kills 4 --epochs 8 --seed 1

(Over 300 lines: the two kill modes, the checks after each kill and the final
comparison are one experiment.)

First an uninterrupted reference run, then the same configuration and seed in
another run directory, started with `--resume True` and killed with SIGKILL
`--kills` times, alternately

* "save": once the process has committed an epoch, at the moment the temporary
  directory of its next checkpoint write appears (plus 0-4 ms, so the kill lands
  in different phases of the write: data, index, state file);
* "random": a random delay after the process printed its first "Epoch" line,
  uniform over its first 2.5 epochs (as timed in the reference run).

After every kill the latest checkpoint (the `checkpoint` state file) is read in
full, which checks every tensor's checksum; one that fails counts as corrupt.
Epochs lost = epochs completed before the kill (the last epoch in history.json,
written just before the epoch's checkpoint, when the killed process wrote it)
minus the epoch the latest checkpoint holds;
the next process must start at the epoch after it (its first "Epoch" line).
After the last kill the run goes on to the end, and its final checkpoint (weights,
Adam slots, iterations, RNG state) is compared with the reference run's.

Everything happens in a temporary directory, removed at the end.  The LAST line
is JSON: {"kills", "resumed", "corrupt_checkpoints", "epochs_lost_max",
"final_weights_match"}; the table above it says whether the match is bitwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tf_glimpse.config import CHECKPOINT_KINDS
from tf_glimpse.quiet import quiet_tensorflow

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-6
# The object graph holds names, not values; it is the one entry allowed to differ.
OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"


def parse_args() -> argparse.Namespace:
    """Flags: how many kills, and the (small) configuration to train."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=16,
                        help="epochs of the run (enough to leave some after the kills)")
    parser.add_argument("--seed", type=int, default=0, help="training seed and kill schedule")
    parser.add_argument("--subset", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--val_size", type=int, default=256)
    parser.add_argument("--jit_compile", default="False",
                        help="XLA for the training step (True costs a compile per restart)")
    parser.add_argument("--data_dir", default=None,
                        help="MNIST IDX directory (default: where train.py finds it, "
                        "$TF_GLIMPSE_DATA_DIR, then data/mnist)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds before a process that never reaches a kill point fails")
    return parser.parse_args()


def train_command(args: argparse.Namespace, logdir: Path, saved: Path | None = None) -> list[str]:
    """The train.py command line.  `saved` (the reference run's config.json) goes to
    train.py's own `--config`, which pins every field, defaults included, and knows which
    fields are derived from the data (num_classes): no flag list here to drift from it."""
    command = [sys.executable, str(ROOT / "train.py"), "--logdir", str(logdir), "--resume", "True"]
    if saved is not None:  # The reference run's exact configuration.
        return command + ["--config", str(saved)]
    flags = {"img_size": 28, "clutter_count": 0, "patch_size": 8, "stride": 4, "steps": 2,
             "subset": args.subset, "val_size": args.val_size, "batch_size": args.batch_size,
             "memory_units": 32, "embedding_units": 32, "classifier_units": 32,
             "glimpse_units": 32, "location_units": 16, "attention_heads": 2,
             "summary_images_every": 0, "epochs": args.epochs, "seed": args.seed,
             "jit_compile": args.jit_compile}
    if args.data_dir:
        flags["data_dir"] = args.data_dir
    for name, value in flags.items():
        command += [f"--{name}", str(value)]
    return command


class Run:
    """One train.py process; a thread collects its stdout (the "Epoch k/N" lines)."""

    def __init__(self, command: list[str], stderr_path: Path):
        self.stderr_file = stderr_path.open("w")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.stderr_file,
                                        text=True, cwd=ROOT,
                                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        self.started = time.monotonic()
        self.started_at = time.time()
        self.epochs: list[int] = []
        self.first_epoch = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            for epoch in re.findall(r"Epoch (\d+)/\d+", line):
                self.epochs.append(int(epoch))
                self.first_epoch.set()

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.stderr_file.close()

    def wait(self) -> int:
        code = self.process.wait()
        self.stderr_file.close()
        return code


def committed_epoch(directory: Path) -> int:
    """The number of the checkpoint the `checkpoint` state file names (0 if none)."""
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(str(directory))
    if state is None or not state.model_checkpoint_path:
        return 0
    return int(state.model_checkpoint_path.rsplit("-", 1)[1])


def uncommitted_files(run: Path) -> list[str]:
    """Files or temporary directories of saves that never reached the state file."""
    found = []
    for name in CHECKPOINT_KINDS:
        directory = run / name
        if not directory.is_dir():
            continue
        latest = committed_epoch(directory)
        for entry in os.listdir(directory):
            match = re.match(r"ckpt-(\d+)(_temp$|\.)", entry)
            if match and (match.group(2) == "_temp" or int(match.group(1)) > latest):
                found.append(f"{name}/{entry}")
    return sorted(found)


def read_checkpoint(path: str) -> dict:
    """Every tensor of a checkpoint; raises if any is missing, truncated or fails its checksum."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(path)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}


def excerpt(path: Path) -> str:
    """The start and the end of a (maybe long) stderr file."""
    text = path.read_text()
    return text if len(text) < 4000 else f"{text[:2000]}\n...\n{text[-2000:]}"


def history_epochs(run: Path) -> list[dict]:
    path = run / "history.json"
    return json.loads(path.read_text())["val_history"] if path.exists() else []


def wait_until(condition, run: Run, timeout: float, poll: float = 0.001) -> bool:
    """Poll `condition` until it holds (True) or the process ends (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if not run.alive():
            return False
        if time.monotonic() > deadline:
            run.kill()
            raise SystemExit(f"fault_injection: a train.py process made no progress in "
                             f"{timeout:.0f} s")
        if poll:
            time.sleep(poll)
    return True


def compare(reference: dict, resumed: dict) -> tuple[bool, float]:
    """(bitwise equal, max |difference|) over every checkpoint tensor."""
    import numpy as np

    if reference.keys() != resumed.keys():
        return False, float("inf")
    bitwise, worst = True, 0.0
    for key, expected in reference.items():
        if key == OBJECT_GRAPH:
            continue
        actual = resumed[key]
        if np.array_equal(expected, actual):
            continue
        bitwise = False
        if expected.dtype.kind in "fiu" and expected.shape == actual.shape:
            worst = max(worst, float(np.max(np.abs(expected.astype(np.float64)
                                                   - actual.astype(np.float64)))))
        else:
            worst = float("inf")
    return bitwise, worst


def main() -> None:
    """Reference run, kill/resume cycles, final comparison; print the table and the JSON line.

    (Over 80 lines: one experiment, read top to bottom; see the module's docstring.)
    """
    args = parse_args()
    quiet_tensorflow()  # The checkpoint checks below import TensorFlow.
    rng = random.Random(args.seed)
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="fault_injection_"))
    try:
        # ------------------------------------------------------ reference run
        reference_dir = work / "reference"
        run = Run(train_command(args, reference_dir) + ["--quiet"], work / "reference.err")
        if run.wait() != 0:
            raise SystemExit(f"fault_injection: the reference run failed:\n"
                             f"{excerpt(work / 'reference.err')}")
        reference_seconds = time.monotonic() - run.started
        saved = reference_dir / "config.json"
        walls = [entry["wall_s"] for entry in history_epochs(reference_dir)]
        epoch_seconds = 1.5 * (walls[-1] - walls[0]) / max(len(walls) - 1, 1)  # + validation
        first_epoch_seconds = walls[0] + epoch_seconds  # With the tracing of the steps.

        # ------------------------------------------------------ kill / resume
        faulty = work / "faulty"
        checkpoints = faulty / "checkpoints"
        rows, runs = [], []
        corrupt = 0
        for kill in range(args.kills):
            start_epoch = committed_epoch(checkpoints)
            run = Run(train_command(args, faulty, saved), work / f"run{kill}.err")
            runs.append((run, start_epoch))
            mode = "save" if kill % 2 == 0 else "random"
            if mode == "save":
                # One epoch committed by this process, then the start of the next write.
                ready = wait_until(lambda start=start_epoch: committed_epoch(checkpoints) > start,
                                   run, args.timeout, poll=0.01)
                writing = lambda: any(faulty.glob("*/ckpt-*_temp"))  # noqa: E731
                ready = ready and wait_until(writing, run, args.timeout, poll=0.0)
                delay = rng.uniform(0.0, 0.004)
            else:
                ready = wait_until(run.first_epoch.is_set, run, args.timeout, poll=0.01)
                delay = rng.uniform(0.0, first_epoch_seconds + 1.5 * epoch_seconds)
            if ready:
                time.sleep(delay)
            if not run.alive():  # It finished first: no more kills to make.
                runs.pop()
                break
            run.kill()
            alive = time.monotonic() - run.started
            completed = start_epoch  # history.json, if this process has written it.
            history = faulty / "history.json"
            if history.exists() and history.stat().st_mtime >= run.started_at:
                completed = max(entry["epoch"] for entry in history_epochs(faulty))
            partial = uncommitted_files(faulty)
            latest = committed_epoch(checkpoints)
            loads = True
            if latest:
                try:
                    state = read_checkpoint(str(checkpoints / f"ckpt-{latest}"))
                    loads = int(state["epoch/.ATTRIBUTES/VARIABLE_VALUE"]) == latest
                except Exception:  # noqa: BLE001 - any failure to read counts as corrupt
                    loads = False
            corrupt += not loads
            rows.append({"kill": kill + 1, "mode": mode, "alive_s": alive,
                         "start": start_epoch, "completed": completed, "latest": latest,
                         "lost": completed - latest, "in_write": bool(partial), "loads": loads})

        final = Run(train_command(args, faulty, saved), work / "final.err")
        runs.append((final, committed_epoch(checkpoints)))
        final_code = final.wait()
        if final_code != 0:
            raise SystemExit(f"fault_injection: the final resumed run failed:\n"
                             f"{excerpt(work / 'final.err')}")

        # Did each process after a kill start at the epoch after the latest checkpoint?
        resumed = 0
        for (run, start_epoch), row in zip(runs[1:], rows):
            first = run.epochs[0] if run.epochs else None
            row["next_starts"] = first
            resumed += first == row["latest"] + 1 and start_epoch == row["latest"]
        fallbacks = sum(path.read_text().count("warning: checkpoint")
                        for path in work.glob("*.err"))

        last = f"ckpt-{args.epochs}"
        bitwise, worst = compare(read_checkpoint(str(reference_dir / "checkpoints" / last)),
                                 read_checkpoint(str(checkpoints / last)))
        match = bitwise or worst <= TOLERANCE
        strip = lambda run: [{k: v for k, v in entry.items() if k != "wall_s"}  # noqa: E731
                             for entry in history_epochs(run)]
        history_match = strip(reference_dir) == strip(faulty)
        metrics = [json.loads((path / "metrics.json").read_text())
                   for path in (reference_dir, faulty)]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # ------------------------------------------------------------- report
    print(f"fault injection: {len(rows)} kills of train.py ({args.epochs} epochs of "
          f"{args.subset} images, batch {args.batch_size}, seed {args.seed}, "
          f"jit_compile {args.jit_compile}) on {os.cpu_count()} CPU cores")
    header = (f"{'kill':>4} {'mode':<7}{'alive s':>8}{'from':>6}{'done':>6}{'latest':>8}"
              f"{'lost':>6}  {'in write':<9}{'loads':<7}{'next starts at':>14}")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['kill']:>4} {row['mode']:<7}{row['alive_s']:>8.1f}{row['start']:>6}"
              f"{row['completed']:>6}{row['latest']:>8}{row['lost']:>6}  "
              f"{'yes' if row['in_write'] else 'no':<9}{'yes' if row['loads'] else 'NO':<7}"
              f"{row['next_starts'] if row['next_starts'] is not None else '-':>14}")
    print("-" * len(header))
    print("from: epoch committed when the process started; done: epochs in history.json at "
          "the kill; latest: epoch of the latest checkpoint; in write: files of an "
          "uncommitted save were on disk")
    print(f"kills inside a checkpoint write: {sum(row['in_write'] for row in rows)}; "
          f"fallbacks to an older checkpoint: {fallbacks}")
    if bitwise:
        verdict = "bitwise identical"
    else:
        within = "within" if match else "NOT within"
        verdict = f"max |difference| {worst:.3g} ({within} {TOLERANCE})"
    print(f"final checkpoint vs the uninterrupted run: {verdict}; history.json "
          f"{'identical' if history_match else 'DIFFERENT'} (wall times aside); test accuracy "
          f"{metrics[0]['test_accuracy']:.4f} vs {metrics[1]['test_accuracy']:.4f}")
    print(f"reference run {reference_seconds:.1f} s; whole benchmark "
          f"{time.monotonic() - began:.1f} s")
    print(json.dumps({"kills": len(rows), "resumed": resumed, "corrupt_checkpoints": corrupt,
                      "epochs_lost_max": max((row["lost"] for row in rows), default=0),
                      "final_weights_match": match}))


if __name__ == "__main__":
    main()
