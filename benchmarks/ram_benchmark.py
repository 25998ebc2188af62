"""Benchmark the glimpse agent against the RAM literature and a plain full-image CNN.

    python benchmarks/ram_benchmark.py --setting mnist28 [--epochs N] [--logdir DIR]
        [--resume] [--skip_cnn] [--results FILE] [any GlimpseConfig flag, e.g. --subset 512]

Settings (`benchmarks/settings.py`): mnist28, translated60, cluttered60, cluttered100,
seed1, seed2.  A setting fixes some `GlimpseConfig` fields; flags given here
override them, and every other field keeps its default (see ``train.py --help``).

1. The agent trains with `tf_glimpse.training.Trainer` in ``--logdir`` (default
   ``benchmarks/runs/NAME``, git-ignored): ``pretrain_epochs`` supervised epochs
   when ``pretrain``, then ``epochs`` REINFORCE epochs.  The checkpoint with the best
   greedy validation accuracy is selected (validation only), and the fixed test set
   is evaluated once, with it.
2. The CNN baseline (`benchmarks/cnn_baseline.py`) trains on the same canvases for
   the same number of epochs (epochs + pre-training epochs), selects its best
   validation epoch and evaluates the test set once.  It runs in ``LOGDIR/cnn``.
   ``--skip_cnn`` leaves it out (its fields are then null).
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
per training second.  The ``cnn_*`` fields are the same for the CNN.
``flops_per_image`` and ``cnn_flops_per_image`` are counted analytically
(`benchmarks/flops.py`: 2 x the multiply-accumulates of every matrix product and
convolution of one forward pass; ``flops_breakdown`` splits the agent's).
``pixels_per_image`` = steps * scales * P * P glimpse values, ``cnn_pixels_per_image``
= I * I.  Also: setting, epochs, commit (``git rev-parse --short HEAD``; ``dirty``
when tracked files differ from it), date (UTC), command, hardware, TensorFlow
version, reference errors, the full config.
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

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.flops import agent_flops, agent_pixels, canvas_pixels  # noqa: E402
from benchmarks.settings import SETTINGS, get_setting  # noqa: E402
from tf_glimpse.cli import (add_config_flags, check_trainable, config_fields,  # noqa: E402
                            parse_bool, start_trainer)
from tf_glimpse.config import ConfigError, GlimpseConfig  # noqa: E402

DEFAULT_RESULTS = PROJECT_ROOT / "benchmarks" / "results.jsonl"
DEFAULT_RUNS = PROJECT_ROOT / "benchmarks" / "runs"


def build_parser() -> argparse.ArgumentParser:
    """--setting and the runner's flags, plus one optional override flag per GlimpseConfig field."""
    parser = argparse.ArgumentParser(
        prog="ram_benchmark.py", description=__doc__.split("\n\n")[0],
        epilog="Every GlimpseConfig field is also a flag (see train.py --help); given flags "
               "override the setting.")
    parser.add_argument("--setting", required=True, choices=list(SETTINGS))
    parser.add_argument("--logdir", default=None,
                        help="run directory (default: benchmarks/runs/SETTING)")
    parser.add_argument("--resume", type=parse_bool, nargs="?", const=True, default=False,
                        help="continue the runs in --logdir from their last checkpoints")
    parser.add_argument("--skip_cnn", action="store_true", help="do not train the CNN baseline")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS),
                        help="JSON-lines file the result row is appended to")
    parser.add_argument("--quiet", action="store_true",
                        help="one progress line per epoch instead of progress bars")
    add_config_flags(parser.add_argument_group("GlimpseConfig overrides"), given_only=True)
    return parser


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, GlimpseConfig]:
    """Parsed flags and the setting's config with the overrides (exit 2 on a bad value)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = config_fields(args)
    try:
        config = get_setting(args.setting).config(**overrides)
        check_trainable(config)
    except ConfigError as error:
        parser.error(str(error))
    args.overrides = overrides
    return args, config


def git_commit() -> tuple[str, bool]:
    """(short HEAD, whether tracked files differ from it); ("unknown", True) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=PROJECT_ROOT, capture_output=True, text=True,
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


def percent(accuracy: float) -> float:
    """Error in percent, rounded to 1e-4 (exact for any test set of up to 10^6 images)."""
    return round(100.0 * (1.0 - accuracy), 4)


def curve(history: list[dict], phase: str | None = None) -> list[list[float]]:
    """[[wall_s, val_error %], ...] of the history entries (of one phase, if given)."""
    return [[round(h["wall_s"], 2), percent(h["val_accuracy"])] for h in history
            if phase is None or h.get("phase") == phase]


def result_row(setting: str, config: GlimpseConfig, agent: dict, cnn: dict | None,
               command: str, process_wall_s: float) -> dict[str, Any]:
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
        "commit": commit,
        "dirty": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
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
        "command": command,
        "hardware": hardware(),
        "tensorflow": agent.get("tensorflow"),
        "reference": get_setting(setting).reference(),
        "val_curve": curve(history, "reinforce"),
        "pretrain_val_curve": curve(history, "pretrain"),
        "cnn_val_curve": curve(cnn["val_history"]) if cnn else None,
        "config": config.to_dict(),
    }
    return row


def append_row(path: str | Path, row: dict) -> None:
    """Append one JSON line and make it durable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def main(argv: list[str] | None = None) -> int:
    """Train the agent, then the CNN; append and print the JSON row (the last line)."""
    args, config = parse(argv)
    command = "python benchmarks/ram_benchmark.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    logdir = Path(args.logdir) if args.logdir else DEFAULT_RUNS / args.setting
    setting = get_setting(args.setting)
    print(f"setting {setting.name}: {setting.description}; grid {config.grid.size} x "
          f"{config.grid.size}; {config.epochs} epochs"
          + (f" after {config.pretrain_epochs} pre-training epochs" if config.pretrain else "")
          + f"; run directory {logdir}", flush=True)

    import tensorflow as tf  # Heavy imports only after the flags are valid.

    from tf_glimpse.training import TrainingError

    started = time.perf_counter()
    splits, trainer = start_trainer(build_parser(), config, logdir, args.resume,
                                    2 if args.quiet else 1)
    try:
        agent = trainer.fit()
    except TrainingError as error:
        print(f"ram_benchmark.py: error: {error}", file=sys.stderr)
        return 1
    agent["params"] = int(trainer.model.count_params())
    agent["tensorflow"] = tf.__version__
    process_wall_s = time.perf_counter() - started

    cnn = None
    if not args.skip_cnn:
        from benchmarks.cnn_baseline import train_cnn

        print(f"CNN baseline: {trainer.total_epochs} epochs on the same canvases", flush=True)
        try:
            cnn = train_cnn(splits, config, trainer.total_epochs, logdir / "cnn",
                            resume=args.resume)
        except FileExistsError as error:
            print(f"ram_benchmark.py: error: {error}", file=sys.stderr)
            return 1

    row = result_row(setting.name, config, agent, cnn, command, process_wall_s)
    append_row(args.results, row)
    print(f"{setting.name}: test error {row['test_error']:.2f}% (val {row['val_error']:.2f}%)"
          + (f", CNN {row['cnn_test_error']:.2f}% (val {row['cnn_val_error']:.2f}%)" if cnn
             else "")
          + f"; FLOPs/image {row['flops_per_image']:,}"
          + (f" vs CNN {row['cnn_flops_per_image']:,}" if cnn else "")
          + f"; row appended to {args.results}", flush=True)
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
