"""Every command line the README and benchmarks/README.md tell a user to type runs.

Each program is run in its smallest form (a few batches, one epoch, one kill) through
its real command line on a real small run, and its exit code and its documented last
line (JSON for the benchmarks) are checked.  Programs that another test already runs
that way are listed in `RUN_ELSEWHERE` with the test that does, and the two that no
test can run here in `NOT_RUN` with the reason; the first test here fails when the
README shows a program that none of these lists covers, so a new command in the README
needs a test before it lands.

The subprocesses run with TF_CPP_MIN_LOG_LEVEL unset, as in a user's shell, so the
outputs are checked for TensorFlow's C++ log lines too.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READMES = (ROOT / "README.md", ROOT / "benchmarks" / "README.md")
# A program as a user types it: `python train.py`, `.venv/bin/python -m export`, ...
PROGRAM = re.compile(r"(?:\.venv/bin/)?python (-m [\w.]+|[\w/]+\.py)")
# TensorFlow's C++ logging (absl): "E0000 00:00:...", "W0000 ...", "I0000 ...", and
# grappler's optimizer hook, whatever the process's id and time.
TENSORFLOW_LOG_LINE = re.compile(r"^[EWIF]\d{4} \d\d:\d\d:\d\d|tfg_optimizer", re.MULTILINE)

# Programs the README shows whose smallest form another test runs through the command line.
RUN_ELSEWHERE = {
    "benchmarks/train_throughput.py":
        "test_benchmarks.py::test_train_throughput_prints_our_rate_and_the_ratio_to_the_peer",
    "benchmarks/sensor_scaling.py":
        "test_benchmarks.py::test_sensor_scaling_keeps_the_window_agents_flops_flat_and_rejects"
        "_a_grid_that_does_not_fit",
    "benchmarks/time_to_accuracy.py":
        "test_benchmarks.py::test_time_to_accuracy_reads_the_first_reinforce_epoch_under_each"
        "_threshold",
    "benchmarks/step_breakdown.py":
        "test_benchmarks.py::test_step_breakdown_times_every_part_and_the_parts_add_up_in_order",
    "benchmarks/bfloat16_matmul.py":
        "test_benchmarks.py::test_bfloat16_matmul_times_both_precisions_and_reports_their_ratio",
    "benchmarks/inference_latency.py":
        "test_export.py::test_inference_latency_benchmark_times_every_exported_model",
    "benchmarks/cnn_latency.py":
        "test_benchmarks.py::test_cnn_latency_times_both_baselines_of_a_large_canvas",
}
# Programs this file runs (the test that does, by name).
RUN_HERE = {
    "train.py": "test_main_command_trains_and_writes_its_run",
    "-m tf_glimpse.report":
        "test_report_command_writes_the_report_and_no_tensorflow_log_lines",
    "-m export": "test_export_command_writes_int8_models_that_inference_latency_times",
    "-m tf_glimpse.data.fetch": "test_fetch_command_finds_verified_files_and_copies_nothing",
    "benchmarks/data_throughput.py": "test_data_throughput_command_ends_with_its_json",
    "benchmarks/ram_benchmark.py": "test_ram_benchmark_command_appends_a_row_and_prints_it",
    "benchmarks/results_table.py": "test_results_table_command_prints_the_table_and_plots",
    "benchmarks/fault_injection.py": "test_fault_injection_command_resumes_without_loss",
    "-m tf_glimpse.data.scenes": "test_scenes_command_writes_a_folder_that_train_py_learns_from",
}

# Programs the README shows that no test runs, and why.
NOT_RUN = {
    "-m pytest": "the README's test command itself: CI (.ci/run) runs it",
    "-m pip": "installs TensorFlow's CUDA build for a GPU: a download of gigabytes, and no GPU "
              "here; the README says the GPU route was not verified",
}

# The README's main command, cut to its smallest form by the flags after it.
MAIN_COMMAND = "--pretrain True --patch_size 8 --steps 6 --img_size 64 --clutter_count 4 --stride 4"
SMALLEST = ["--pretrain_epochs", "1", "--epochs", "1", "--subset", "256", "--val_size", "256",
            "--batch_size", "64", "--jit_compile", "False", "--summary_images_every", "0",
            "--quiet"]


def shown_programs() -> set[str]:
    """Every program a `python ...` command of the READMEs runs."""
    return {match.group(1) for path in READMES for match in PROGRAM.finditer(path.read_text())}


def user_env(**extra: str) -> dict:
    """The environment of a user's shell: TensorFlow's log level not set by the tests."""
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    return dict(env, **extra)


def run(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """One command line from the project root; its output is checked for TF's log lines."""
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT, env=user_env(**env))
    output = result.stdout + result.stderr
    assert not TENSORFLOW_LOG_LINE.search(output), output[-3000:]
    return result


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_program_the_readmes_show_is_run_by_a_test():
    shown = shown_programs()
    assert {"train.py", "-m export", "-m tf_glimpse.report"} <= shown  # The parser works.
    uncovered = shown - set(RUN_ELSEWHERE) - set(RUN_HERE) - set(NOT_RUN)
    assert not uncovered, f"README commands that no test runs: {sorted(uncovered)}"
    here = {node.name for node in ast.parse(Path(__file__).read_text()).body
            if isinstance(node, ast.FunctionDef)}
    assert set(RUN_HERE.values()) <= here
    for program, test in RUN_ELSEWHERE.items():
        file_name, name = test.split("::")
        tree = ast.parse((ROOT / "tests" / file_name).read_text())
        found = [node for node in tree.body if isinstance(node, ast.FunctionDef)
                 and node.name == name]
        assert found, test
        assert program in ast.get_source_segment((ROOT / "tests" / file_name).read_text(),
                                                 found[0]), (program, test)


@pytest.fixture(scope="module")
def main_run(tmp_path_factory, data_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """The README's main command, one pre-training and one REINFORCE epoch of 256 images."""
    logdir = tmp_path_factory.mktemp("readme") / "main"
    result = run("train.py", *MAIN_COMMAND.split(), *SMALLEST, "--logdir", str(logdir),
                 "--data_dir", data_dir)
    return logdir, result


def test_main_command_trains_and_writes_its_run(main_run):
    assert MAIN_COMMAND in (ROOT / "README.md").read_text()
    logdir, result = main_run
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert result.stdout.splitlines()[-1] == str({key: metrics[key] for key in (
        "val_accuracy", "test_accuracy", "epochs", "train_seconds")})  # The final line.
    assert not result.stderr.strip(), result.stderr[-3000:]


# The README's "Train on your own images" command, cut to its smallest form.
FOLDER_COMMAND = "--dataset folder:data/scenes --img_size 96 --patch_size 12 --stride 6"


def test_scenes_command_writes_a_folder_that_train_py_learns_from(tmp_path):
    readme = (ROOT / "README.md").read_text()
    assert "python -m tf_glimpse.data.scenes data/scenes" in readme and FOLDER_COMMAND in readme
    out = tmp_path / "scenes"
    result = run("-m", "tf_glimpse.data.scenes", str(out), "--per_class", "40",
                 "--test_per_class", "10")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1].startswith(f"wrote 150 scenes of 96x96 to {out}")
    assert len(list((out / "red").glob("*.png"))) == 40
    assert len(list((out / "test" / "blue").glob("*.png"))) == 10
    command = FOLDER_COMMAND.replace("data/scenes", str(out)).split()
    result = run("train.py", *command, "--epochs", "1", "--batch_size", "32",
                 "--jit_compile", "False", "--summary_images_every", "0", "--quiet",
                 "--logdir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert not result.stderr.strip(), result.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["channels"] == 3 and config["num_classes"] == 3


def test_report_command_writes_the_report_and_no_tensorflow_log_lines(main_run):
    logdir, _ = main_run
    result = run("-m", "tf_glimpse.report", str(logdir), "--limit", "500", "--gifs", "1",
                 "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((logdir / "report" / "report.json").read_text())
    assert report["learned_greedy"]["count"] == 500
    assert (logdir / "gifs" / "attention1.gif").stat().st_size > 0
    assert not result.stderr.strip(), result.stderr[-3000:]


def test_export_command_writes_int8_models_that_inference_latency_times(main_run, tmp_path):
    logdir, _ = main_run
    out = tmp_path / "out"
    # One epoch of training is far from converged; the accuracy bound is what export's
    # own tests check on a trained run.
    result = run("-m", "export", str(logdir), "--out", str(out), "--quantize", "int8",
                 "--eval_count", "200", "--calibration_count", "50", "--max_accuracy_drop", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    names = {path.name for path in out.iterdir()}
    assert {"saved_model", "glimpse_full.tflite", "glimpse_step_int8.tflite",
            "export_info.json"} <= names
    assert not result.stderr.strip(), result.stderr[-3000:]
    latency = last_json(run("benchmarks/inference_latency.py", str(out), "--runs", "5",
                            "--warmup", "1"))
    assert latency["tflite_ms"] > 0


def test_fetch_command_finds_verified_files_and_copies_nothing(data_dir, tmp_path):
    out = tmp_path / "mnist"
    copied = run("-m", "tf_glimpse.data.fetch", "mnist", "--out", str(out), "--from", data_dir)
    assert copied.returncode == 0, copied.stderr
    assert len(list(out.glob("*.gz"))) == 4
    again = run("-m", "tf_glimpse.data.fetch", "mnist", "--out", str(out), "--from", data_dir)
    assert again.returncode == 0 and "nothing to do" in again.stdout + again.stderr


def test_data_throughput_command_ends_with_its_json(data_dir):
    last = last_json(run("benchmarks/data_throughput.py", "--img_size", "64", "--clutter_count",
                         "4", "--batches", "5", "--repeats", "1", "--warmup", "1",
                         "--data_dir", data_dir))
    assert last["canvases_per_s"] > 0


def test_ram_benchmark_command_appends_a_row_and_prints_it(data_dir, tmp_path):
    results, cnn_results = tmp_path / "results.jsonl", tmp_path / "cnn_results.jsonl"
    last = last_json(run("benchmarks/ram_benchmark.py", "--setting", "mnist28", "--epochs", "1",
                         "--subset", "256", "--val_size", "256", "--batch_size", "64",
                         "--jit_compile", "False", "--logdir", str(tmp_path / "run"),
                         "--results", str(results), "--cnn_results", str(cnn_results),
                         "--data_dir", data_dir, "--quiet", "--test_samples", "2"))
    assert json.loads(results.read_text().splitlines()[-1]) == last
    assert last["test_samples"] == 2 and 0.0 <= last["test_error_sampled"] <= 100.0
    for key in ("test_error", "cnn_test_error", "cnn_wall_s", "distinct_sequences",
                "hit_rate_per_step", "flops_per_image", "cnn_flops_per_image", "modal_gap"):
        assert last[key] is not None, key
    assert -100.0 <= last["modal_gap"] <= 100.0
    table = run("benchmarks/results_table.py", "--results", str(results))
    assert table.returncode == 0 and "mnist28" in table.stdout, table.stderr


def test_results_table_command_prints_the_table_and_plots(tmp_path):
    table = run("benchmarks/results_table.py", "--plot", str(tmp_path / "plot.png"))
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("| setting")
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_fault_injection_command_resumes_without_loss(data_dir):
    # No --data_dir: the benchmark leaves the data to train.py, which finds it as for any
    # run (on a fresh clone after setup.sh, in data/mnist with TF_GLIMPSE_DATA_DIR unset).
    last = last_json(run("benchmarks/fault_injection.py", "--kills", "1", "--epochs", "3",
                         timeout=900, TF_GLIMPSE_DATA_DIR=data_dir))
    assert last["kills"] == 1 and last["resumed"] == 1
    assert last["corrupt_checkpoints"] == 0 and last["final_weights_match"] is True
