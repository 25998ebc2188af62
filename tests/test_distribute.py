"""Training under tf.distribute: MirroredStrategy on 2 logical CPUs, and 2 workers of
MultiWorkerMirroredStrategy on loopback.

Both run in subprocesses (tests/distribute_helper.py): logical devices and the
collective ops of MultiWorkerMirroredStrategy must be configured before TensorFlow
initialises its runtime, which this pytest process may already have done.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HELPER = str(ROOT / "tests" / "distribute_helper.py")
GRAD_CLIP = 0.05  # tests/distribute_helper.py mirrored_step
ADAM_BETA_1 = 0.9  # Keras default: after one step, momentum = (1 - beta_1) * gradient


def run_helper(*args: str, timeout: float = 300) -> None:
    result = subprocess.run([sys.executable, HELPER, *args], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]


def test_mirrored_step_matches_default_strategy(tmp_path, data_dir):
    """One MirroredStrategy step on 2 replicas == one default-strategy step, same batch of 64.

    The episodes are greedy (`TrainStep.deterministic_episodes`) and the step is a
    supervised one, so the episode of every example is the same whichever replica
    runs it (sampled episodes use a per-replica seed).  Then the two strategies
    differ only in float summation order, and we require:

    * weights after the step equal within atol 1e-5 (measured: 4e-8 to 3e-7; Adam's
      first step moves each weight by up to lr = 1e-3);
    * Adam's momentum and velocity equal within rtol 1e-4 (+ atol 1e-9): these are
      proportional to the gradient and to its square, so unlike the weights (Adam's
      first step is about lr * sign(gradient)) they expose a wrongly scaled gradient,
      e.g. a loss averaged over the per-replica batch (2x) or gradients not summed
      across replicas;
    * with grad_clip = 0.05 some gradients are clipped: the clipped norm is at most
      0.05, which fails if each replica's half-gradient were clipped before the sum.
    """
    out = tmp_path / "step.npz"
    run_helper("mirrored-step", str(out), data_dir)
    arrays = np.load(out)
    assert int(arrays["replicas_default"]) == 1 and int(arrays["replicas_mirrored"]) == 2
    assert float(arrays["mirrored/copy_difference"]) == 0.0  # Replicas stay in sync.
    np.testing.assert_allclose(arrays["mirrored/loss"], arrays["default/loss"], rtol=1e-5)
    assert float(arrays["mirrored/accuracy"]) == float(arrays["default/accuracy"])

    names = sorted(key.split("/", 2)[2] for key in arrays if key.startswith("default/after/"))
    moved = 0
    for name in names:
        default, mirrored = arrays["default/after/" + name], arrays["mirrored/after/" + name]
        np.testing.assert_array_equal(arrays["default/before/" + name],
                                      arrays["mirrored/before/" + name])  # Same start.
        if name.startswith("weight_"):
            np.testing.assert_allclose(mirrored, default, rtol=0, atol=1e-5, err_msg=name)
            moved += bool(np.any(default != arrays["default/before/" + name]))
        else:
            np.testing.assert_allclose(mirrored, default, rtol=1e-4, atol=1e-9, err_msg=name)
    assert moved >= 10, moved  # The step did train (the policy weights get no gradient).

    norms = [np.linalg.norm(arrays[f"{strategy}/after/" + name]) / (1 - ADAM_BETA_1)
             for strategy in ("default", "mirrored") for name in names
             if name.endswith("_momentum")]
    assert max(norms) <= GRAD_CLIP * (1 + 1e-4), max(norms)
    assert sum(norm > GRAD_CLIP * (1 - 1e-4) for norm in norms) >= 2  # Clipped ...
    assert sum(0 < norm < GRAD_CLIP / 2 for norm in norms) >= 2  # ... and not clipped.


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_train_in_sync_and_only_the_chief_writes(tmp_path, data_dir):
    """Two MultiWorkerMirroredStrategy workers (TF_CONFIG, 127.0.0.1) train one epoch.

    Both must end with the same weights and Adam state (measured: bitwise equal; the
    tolerance 1e-6 allows for nothing but float noise), different from where they
    started, so each worker's update used the gradient summed over both workers.
    Only the chief (worker 0) leaves files; worker 1's checkpoints go to a temporary
    directory that is deleted at the end.
    """
    ports = free_ports(2)
    flags = ["--img_size", "28", "--clutter_count", "0", "--patch_size", "8", "--stride", "4",
             "--steps", "2", "--subset", "256", "--val_size", "64", "--batch_size", "64",
             "--epochs", "1", "--jit_compile", "False", "--strategy", "multi_worker",
             "--data_dir", data_dir, "--summary_images_every", "1",
             "--embedding_units", "32", "--memory_units", "32", "--classifier_units", "32",
             "--glimpse_units", "32", "--location_units", "16", "--attention_heads", "2"]
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index}}))
        log = open(tmp_path / f"worker{index}.log", "w")  # noqa: SIM115 - closed below
        workers.append((subprocess.Popen(
            [sys.executable, HELPER, "worker", str(tmp_path / f"worker{index}.npz"), *flags,
             "--logdir", str(tmp_path / f"run{index}")], env=env, stdout=log, stderr=log), log))
    try:
        for process, _ in workers:
            process.wait(timeout=300)
    finally:
        for process, log in workers:
            if process.poll() is None:
                process.kill()
            log.close()
    for index, (process, _) in enumerate(workers):
        log = (tmp_path / f"worker{index}.log").read_text()
        assert process.returncode == 0, log[-3000:]

    chief, other = (np.load(tmp_path / f"worker{index}.npz") for index in range(2))
    assert bool(chief["is_chief"]) and not bool(other["is_chief"])
    assert int(chief["replicas"]) == 2
    assert float(chief["val_accuracy"]) == float(other["val_accuracy"])
    after = [key for key in chief if key.startswith("after/")]
    assert len(after) > 10
    changed = 0
    for key in after:
        np.testing.assert_allclose(other[key], chief[key], rtol=0, atol=1e-6, err_msg=key)
        before = chief["before/" + key.split("/", 1)[1]]
        changed += bool(np.any(before != chief[key]))
    assert changed >= 10, changed

    run = tmp_path / "run0"
    for name in ("config.json", "metrics.json", "history.json", "checkpoints/checkpoint",
                 "best/checkpoint"):
        assert (run / name).exists(), name
    assert list(run.glob("events.out.tfevents.*"))
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1
    assert not list(run.glob("workertemp_*"))
    assert not (tmp_path / "run1").exists() or not any((tmp_path / "run1").iterdir())
