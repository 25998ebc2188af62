"""Benchmark the glimpse agent against the RAM literature and a plain full-image CNN.

    python benchmarks/ram_benchmark.py --setting mnist28 [--epochs N | --minutes M]
        [--logdir DIR] [--resume] [--skip_cnn | --cnn_only] [--results FILE]
        [any GlimpseConfig flag, e.g. --subset 512]

(Over 300 lines: the row's fields, the CNN's stored figures and the resume logic
belong to one benchmark and are documented here together.)

Settings (`benchmarks/settings.py`): mnist28, translated60, cluttered60, cluttered100,
cluttered200, cluttered400 (both also train the CNN on the canvas pooled to 100 x 100:
the ``downsampled_cnn_*`` fields), seed1, seed2, scenes96.  A setting fixes some
`GlimpseConfig` fields; flags given here override them, and every other field keeps its
default (see ``train.py --help``).

1. The agent trains with `tf_glimpse.training.Trainer` in ``--logdir`` (default
   ``benchmarks/runs/NAME``, git-ignored): ``pretrain_epochs`` supervised epochs
   when ``pretrain``, then ``epochs`` REINFORCE epochs.  The checkpoint with the best
   greedy validation accuracy is selected (validation only), and the fixed test set
   is evaluated once, with it.
2. The CNN baseline (`benchmarks/cnn_baseline.py`) trains on the same canvases for
   the same budget: with ``--minutes``, the agent's training seconds (the agent stops
   at the first epoch end past the budget, the CNN after the first batch past those
   seconds), else the same number of epochs (epochs + pre-training epochs).  It
   selects its best validation epoch and evaluates the test set once.  It runs in
   ``LOGDIR/cnn``.  It does not change when the agent does, so it is measured once
   per (setting, budget, hardware): its figure is appended to ``--cnn_results`` (default
   ``benchmarks/cnn_results.jsonl``) and later runs of the same setting and budget
   reuse it.  ``--skip_cnn`` never trains it (its fields are null when no figure is
   stored); ``--cnn_only`` trains and stores it without the agent.
3. One JSON line is appended to ``--results`` (default ``benchmarks/results.jsonl``)
   and printed as the LAST line of the output.

``--resume`` continues both runs from their last checkpoints (a finished run is only
evaluated again).

Row fields.  All errors are in PERCENT (``"error_unit": "percent"``):
``test_error`` and ``val_error`` are 100 * (1 - accuracy) of the selected checkpoint
on the 10,000 test canvases and on the validation canvases.  ``wall_s`` is the
agent's training time in seconds (every epoch, XLA compilation and input pipeline
included, per-epoch validation and the final evaluation excluded; summed over
``--resume``d runs), the x axis of ``val_curve`` = [[wall_s, val_error], ...] (one
point per REINFORCE epoch; the pre-training epochs, validated with random glimpses,
are in ``pretrain_val_curve``).  ``process_wall_s`` is the wall-clock time of this
invocation's agent phase, evaluation included.  ``images_per_s`` = training images
per training second.  ``distinct_sequences``, ``modal_share`` and ``hit_rate_per_step``
describe the greedy policy on the test canvases; ``modal_gap`` is its test accuracy
minus that of its own most frequent sequence played on every canvas, in points (the
policy report's learned_greedy minus learned_modal).  ``test_error_sampled`` is the test
error of ``test_samples`` (default 10) sampled episodes per canvas, their class
probabilities averaged (Monte Carlo evaluation, as tfRAM's 10-sample rows; M times the
FLOPs; `python -m tf_glimpse.report RUN --samples 10` gives it for any run).  The
``cnn_*`` fields are the same for the CNN.
``flops_per_image`` and ``cnn_flops_per_image`` are counted analytically
(`benchmarks/flops.py`: 2 x the multiply-accumulates of every matrix product and
convolution of one forward pass; ``flops_breakdown`` splits the agent's).
``pixels_per_image`` = steps * scales * P * P glimpse values, ``cnn_pixels_per_image``
= I * I.  ``peak_rss_mb`` and ``cnn_peak_rss_mb``: the process's peak resident memory
while that model trained (`peak_memory_mb`; null off Linux).  Settings with
``downsample_to`` add ``downsampled_cnn_*``: the same CNN design for that size on the
canvas average-pooled to it (input size, test and validation error, epochs, wall_s,
images/s, architecture, FLOPs, peak memory, validation curve).  Also: setting, epochs,
commit (``git rev-parse --short HEAD``; ``dirty`` when tracked files other than the
benchmarks' own ``*.jsonl`` results differ from it),
date (UTC), command, hardware, cpu (family, model and the vector extensions
that pick TensorFlow's kernels), TensorFlow version, reference errors, the full config.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if not __package__:  # `python benchmarks/NAME.py`: benchmarks/ is not an installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.flops import agent_flops, agent_pixels, canvas_pixels
from benchmarks.settings import SETTINGS, get_setting
from tf_glimpse.cli import (
    add_config_flags,
    check_trainable,
    config_fields,
    load_data,
    parse_bool,
    start_trainer,
)
from tf_glimpse.config import ConfigError, GlimpseConfig
from tf_glimpse.quiet import quiet_tensorflow

PROJECT_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_RESULTS = PROJECT_ROOT / "benchmarks" / "results.jsonl"
DEFAULT_RUNS = PROJECT_ROOT / "benchmarks" / "runs"
DEFAULT_CNN_RESULTS = PROJECT_ROOT / "benchmarks" / "cnn_results.jsonl"
MAX_EPOCHS_WITH_BUDGET = 1000
# Sampled episodes per test canvas of the Monte Carlo test error (tfRAM's rows use 10).
# Measured on the 45-minute cluttered60 run: 4.19% with 10, 4.18% with 30 (greedy 4.82%).
TEST_SAMPLES = 10


def build_parser() -> argparse.ArgumentParser:
    """--setting and the runner's flags, plus one optional override flag per GlimpseConfig field."""
    parser = argparse.ArgumentParser(
        prog="ram_benchmark.py", description=__doc__.split("\n\n")[0],
        epilog="Every GlimpseConfig field is also a flag (see train.py --help); given flags "
               "override the setting.  --minutes N gives a wall-time budget (training stops "
               "at the first epoch end past N minutes; --epochs is then a maximum, "
               f"{MAX_EPOCHS_WITH_BUDGET} unless given) and the CNN baseline the same budget.")
    parser.add_argument("--setting", required=True, choices=list(SETTINGS))
    parser.add_argument("--logdir", default=None,
                        help="run directory (default: benchmarks/runs/SETTING)")
    parser.add_argument("--resume", type=parse_bool, nargs="?", const=True, default=False,
                        help="continue the runs in --logdir from their last checkpoints")
    parser.add_argument("--skip_cnn", action="store_true",
                        help="do not train the CNN baseline: reuse its stored figure for this "
                             "setting and budget (null fields when none is stored)")
    parser.add_argument("--cnn_only", action="store_true",
                        help="train and store only the CNN baseline of this setting and budget")
    parser.add_argument("--cnn_results", default=str(DEFAULT_CNN_RESULTS),
                        help="JSON-lines file of the CNN baseline's stored figures")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS),
                        help="JSON-lines file the result row is appended to")
    parser.add_argument("--quiet", action="store_true",
                        help="one progress line per epoch instead of progress bars")
    add_config_flags(parser, given_only=True)  # One group per config section, "(overrides)".
    return parser


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, GlimpseConfig]:
    """Parsed flags and the setting's config with the overrides (exit 2 on a bad value)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = config_fields(args)
    if overrides.get("minutes") is not None:
        # A wall-time budget: the epochs become a maximum the budget ends before.
        overrides.setdefault("epochs", MAX_EPOCHS_WITH_BUDGET)
    try:
        # The benchmark's own default, not a flag given: args.overrides keeps to the flags.
        config = get_setting(args.setting).config(**{"test_samples": TEST_SAMPLES,
                                                     **overrides})
        check_trainable(config)
    except ConfigError as error:
        parser.error(str(error))
    args.overrides = overrides
    return args, config


# The benchmarks' own result files: appending to them (the CNN's figure is stored before
# the agent's row is written) does not change the code a row measures.
RESULT_FILES = "benchmarks/*.jsonl"


def git_commit(root: Path = PROJECT_ROOT) -> tuple[str, bool]:
    """(short HEAD, whether tracked files other than `RESULT_FILES` differ from it);
    ("unknown", True) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                 ".", f":(exclude){RESULT_FILES}"],
                                cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        return commit, bool(status)
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True


def hardware() -> str:
    """'N CPU cores, MODEL' (the cores this process may use)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cores} CPU cores, {model}"


# Vector extensions that choose TensorFlow's CPU kernels (oneDNN, Eigen): two machines
# with one model name but different extensions train the same seed along different
# float roundings, so the same command's error differs between them.
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")


def cpu_details(cpuinfo: str | None = None) -> str:
    """'family F model M, flags a b c' of the first CPU in /proc/cpuinfo (`VECTOR_FLAGS`
    it has), or 'unknown' where it cannot be read.  Recorded beside `hardware()`, which
    names the model only (and keys the stored CNN figures)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "unknown"
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # The first processor's block ends at its blank line.
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    if "cpu family" not in fields:
        return "unknown"
    flags = set(fields.get("flags", "").split())
    present = " ".join(flag for flag in VECTOR_FLAGS if flag in flags) or "none"
    return f"family {fields['cpu family']} model {fields.get('model', '?')}, flags {present}"


def percent(accuracy: float) -> float:
    """Error in percent, rounded to 1e-4 (exact for any test set of up to 10^6 images)."""
    return round(100.0 * (1.0 - accuracy), 4)


def curve(history: list[dict], phase: str | None = None) -> list[list[float]]:
    """[[wall_s, val_error %], ...] of the history entries (of one phase, if given)."""
    return [[round(h["wall_s"], 2), percent(h["val_accuracy"])] for h in history
            if phase is None or h.get("phase") == phase]


def result_row(setting: str, config: GlimpseConfig, agent: dict, cnn: dict | None,
               command: str, process_wall_s: float,
               downsampled: dict | None = None) -> dict[str, Any]:
    """The JSON row of one finished setting (see the module docstring)."""
    commit, dirty = git_commit()
    flops = agent_flops(config)
    history = agent["val_history"]
    row = {
        "setting": setting,
        "error_unit": "percent",
        "test_error": percent(agent["test_accuracy"]),
        "val_error": percent(agent["val_accuracy"]),
        "epochs": agent["epochs"],
        "pretrain_epochs": config.pretrain_epochs if config.pretrain else 0,
        "wall_s": round(agent["train_seconds"], 2),
        "process_wall_s": round(process_wall_s, 2),
        "images_per_s": round(agent["images_per_s"], 1),
        "test_hit_rate": round(agent["test_hit_rate"], 4),
        # Image dependence of the greedy policy on the fixed test canvases.
        "hit_rate_per_step": [round(rate, 4) for rate in agent["test_hit_rate_per_step"]],
        "distinct_sequences": agent["test_distinct_sequences"],
        "modal_share": round(agent["test_modal_share"], 4),
        # learned_greedy minus learned_modal, in points (the policy report's modal gap).
        "modal_gap": (round(100.0 * (agent["test_accuracy"] - agent["test_modal_accuracy"]), 2)
                      if "test_modal_accuracy" in agent else None),
        "test_error_sampled": (percent(agent["test_accuracy_sampled"])
                               if "test_accuracy_sampled" in agent else None),
        "test_samples": config.test_samples,
        "budget": budget_of(config),
        "commit": commit,
        "dirty": dirty,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cnn_test_error": percent(cnn["test_accuracy"]) if cnn else None,
        "cnn_val_error": percent(cnn["val_accuracy"]) if cnn else None,
        "cnn_epochs": cnn["epochs"] if cnn else None,
        "cnn_wall_s": round(cnn["train_seconds"], 2) if cnn else None,
        "cnn_images_per_s": round(cnn["images_per_s"], 1) if cnn else None,
        "cnn_params": cnn["params"] if cnn else None,
        "cnn_architecture": cnn["architecture"] if cnn else None,
        "cnn_optimizer": cnn["optimizer"] if cnn else None,
        "flops_per_image": flops["total"],
        "cnn_flops_per_image": cnn["flops_per_image"] if cnn else None,
        "flops_breakdown": {k: v for k, v in flops.items() if k != "total"},
        "flops_method": "analytic: 2 x multiply-accumulates of matmuls and convolutions "
                        "(benchmarks/flops.py)",
        "pixels_per_image": agent_pixels(config),
        "cnn_pixels_per_image": canvas_pixels(config),
        "params": agent.get("params"),
        # Peak resident memory of the process while each model trained (MiB; Linux only).
        "peak_rss_mb": agent.get("peak_rss_mb"),
        "cnn_peak_rss_mb": cnn.get("peak_rss_mb") if cnn else None,
        "command": command,
        "hardware": hardware(),
        "cpu": cpu_details(),
        "tensorflow": agent.get("tensorflow"),
        "reference": get_setting(setting).reference(),
        "val_curve": curve(history, "reinforce"),
        "pretrain_val_curve": curve(history, "pretrain"),
        "cnn_val_curve": curve(cnn["val_history"]) if cnn else None,
        "config": config.to_dict(),
    }
    if get_setting(setting).downsample_to is not None:  # The large canvases' third model.
        pooled = downsampled or {}
        row.update({
            "downsampled_cnn_input_size": get_setting(setting).downsample_to,
            "downsampled_cnn_test_error": percent(pooled["test_accuracy"]) if pooled else None,
            "downsampled_cnn_val_error": percent(pooled["val_accuracy"]) if pooled else None,
            "downsampled_cnn_epochs": pooled.get("epochs"),
            "downsampled_cnn_wall_s": round(pooled["train_seconds"], 2) if pooled else None,
            "downsampled_cnn_images_per_s": round(pooled["images_per_s"], 1) if pooled else None,
            "downsampled_cnn_architecture": pooled.get("architecture"),
            "downsampled_cnn_flops_per_image": pooled.get("flops_per_image"),
            "downsampled_cnn_peak_rss_mb": pooled.get("peak_rss_mb"),
            "downsampled_cnn_val_curve": curve(pooled["val_history"]) if pooled else None,
        })
    return row


def append_row(path: str | Path, row: dict) -> None:
    """Append one JSON line and make it durable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def budget_of(config: GlimpseConfig) -> dict[str, float]:
    """The training budget a row states: {"minutes": M} or {"epochs": pre-training + REINFORCE}."""
    if config.minutes is not None:
        return {"minutes": config.minutes}
    return {"epochs": config.epochs + (config.pretrain_epochs if config.pretrain else 0)}


def reset_peak_memory() -> bool:
    """Start a phase: clear the kernel's high-water mark of this process's resident set
    (``echo 5 > /proc/self/clear_refs``, Linux 4.0 and later), so that `peak_memory_mb`
    gives the agent's and each CNN's training a peak of its own in one process.  False
    where the system cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory_mb() -> float | None:
    """The process's peak resident set (``VmHWM``) since `reset_peak_memory`, in MiB: the
    data in memory, TensorFlow's runtime and the model, as `top` shows it; None off Linux."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)  # kB
    return None


def baseline_name(input_size: int | None) -> str:
    """The stored name of a CNN baseline: "cnn", or "cnn_on_100" for the canvas pooled to 100."""
    return "cnn" if input_size is None else f"cnn_on_{input_size}"


def stored_cnn(path: str | Path, setting: str, budget: dict, machine: str,
               input_size: int | None = None) -> dict | None:
    """The newest stored figure of the CNN baseline (full canvas, or pooled to `input_size`)
    for (setting, budget, hardware), or None.  Figures stored without a model name are of
    the full-canvas CNN."""
    path = Path(path)
    if not path.exists():
        return None
    found, wanted = None, (setting, budget, machine, baseline_name(input_size))
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            if (entry["setting"], entry["budget"], entry["hardware"],
                    entry.get("model", "cnn")) == wanted:
                found = entry
    return found


def train_and_store_cnn(args: argparse.Namespace, config: GlimpseConfig, splits, logdir: Path,
                        command: str, input_size: int | None = None,
                        seconds: float | None = None) -> dict:
    """Train a CNN baseline (on the canvas pooled to `input_size` if given) for the budget of
    `config`, append its figure to --cnn_results.  With a --minutes budget the CNN trains
    for `seconds` (the agent's training time, which ends at an epoch end past the budget)
    or else the budget itself, stopping after the first batch past it."""
    from benchmarks.cnn_baseline import train_cnn

    budget = budget_of(config)
    name = baseline_name(input_size)
    print(f"CNN baseline{f' on {input_size}x{input_size}' if input_size else ''}: {budget} on "
          f"the same canvases", flush=True)
    seconds = None if config.budget_seconds is None else seconds or config.budget_seconds
    epochs = MAX_EPOCHS_WITH_BUDGET if seconds else int(budget["epochs"])
    reset_peak_memory()
    cnn = train_cnn(splits, config, epochs, logdir / name, resume=args.resume, seconds=seconds,
                    input_size=input_size)
    cnn["peak_rss_mb"] = peak_memory_mb()
    entry = {"setting": args.setting, "model": name, "budget": budget, "hardware": hardware(),
             "cpu": cpu_details(),
             "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
             "command": command, **cnn}
    append_row(args.cnn_results, entry)
    return entry


def baselines(args: argparse.Namespace, config: GlimpseConfig, splits, logdir: Path,
              command: str, seconds: float | None = None) -> dict[str, dict | None]:
    """The figures of the setting's CNN baselines (`Setting.baselines`): {"cnn": ...}, and
    "downsampled_cnn" on the large canvases; a figure is None when none is stored and
    --skip_cnn is given.

    Each is the stored figure of this setting, budget and hardware when there is one, else
    trained now (not with --skip_cnn) for `seconds` under a --minutes budget (the agent's
    training time)."""
    setting, budget = get_setting(args.setting), budget_of(config)
    found: dict[str, dict | None] = {}
    for key, size in setting.baselines().items():
        # Looked up after training: a --cnn_only run of the same budget may have run alongside.
        entry = stored_cnn(args.cnn_results, setting.name, budget, hardware(), size)
        if entry is not None:
            print(f"CNN baseline {baseline_name(size)}: the stored figure for {budget} from "
                  f"{entry['date']} ({args.cnn_results})", flush=True)
        elif not args.skip_cnn:
            entry = train_and_store_cnn(args, config, splits, logdir, command, size, seconds)
        found[key] = entry
    return found


def main(argv: list[str] | None = None) -> int:
    """Train the agent, then the CNN (or reuse its stored figure); append and print the row."""
    args, config = parse(argv)
    command = "python benchmarks/ram_benchmark.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    logdir = Path(args.logdir) if args.logdir else DEFAULT_RUNS / args.setting
    setting = get_setting(args.setting)
    budget = budget_of(config)
    print(f"setting {setting.name}: {setting.description}; grid {config.grid.size} x "
          f"{config.grid.size}; budget {budget}"
          + (f" ({config.pretrain_epochs} pre-training epochs first)" if config.pretrain else "")
          + f"; run directory {logdir}", flush=True)
    if args.cnn_only:
        quiet_tensorflow()
        splits = load_data(build_parser(), config)
        try:
            entry = train_and_store_cnn(args, config, splits, logdir, command)
            if setting.downsample_to is not None:
                pooled = train_and_store_cnn(args, config, splits, logdir, command,
                                             setting.downsample_to)
                entry = {**entry, "downsampled": {key: value for key, value in pooled.items()
                                                  if key != "val_history"}}
        except FileExistsError as error:
            print(f"ram_benchmark.py: error: {error}", file=sys.stderr)
            return 1
        print(json.dumps({key: value for key, value in entry.items()
                          if key != "val_history"}), flush=True)
        return 0

    quiet_tensorflow()
    import tensorflow as tf  # Heavy imports only after the flags are valid.

    from tf_glimpse.analysis.evaluation import constant_policy
    from tf_glimpse.training.runs import TrainingError

    started = time.perf_counter()
    reset_peak_memory()
    splits, trainer = start_trainer(build_parser(), config, logdir, args.resume,
                                    2 if args.quiet else 1)
    try:
        agent = trainer.fit()
    except TrainingError as error:
        print(f"ram_benchmark.py: error: {error}", file=sys.stderr)
        return 1
    config = trainer.config  # with the counts the data set gives (classes, channels)
    # Image dependence: the greedy policy's own most frequent sequence on every test canvas.
    modal = trainer.evaluate("test", constant_policy(agent["test_modal_sequence"]))
    agent["test_modal_accuracy"] = modal["accuracy"]
    agent["params"] = int(trainer.model.count_params())
    agent["tensorflow"] = tf.__version__
    agent["peak_rss_mb"] = peak_memory_mb()
    process_wall_s = time.perf_counter() - started

    try:
        found = baselines(args, config, splits, logdir, command, agent["train_seconds"])
    except FileExistsError as error:
        print(f"ram_benchmark.py: error: {error}", file=sys.stderr)
        return 1
    cnn = found["cnn"]

    pooled = found.get("downsampled_cnn")
    row = result_row(setting.name, config, agent, cnn, command, process_wall_s, pooled)
    append_row(args.results, row)
    print(f"{setting.name}: test error {row['test_error']:.2f}% (val {row['val_error']:.2f}%)"
          + (f", CNN {row['cnn_test_error']:.2f}% (val {row['cnn_val_error']:.2f}%)" if cnn
             else "")
          + (f", CNN on {setting.downsample_to}x{setting.downsample_to} "
             f"{row['downsampled_cnn_test_error']:.2f}%" if pooled else "")
          + f"; FLOPs/image {row['flops_per_image']:,}"
          + (f" vs CNN {row['cnn_flops_per_image']:,}" if cnn else "")
          + f"; row appended to {args.results}", flush=True)
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
