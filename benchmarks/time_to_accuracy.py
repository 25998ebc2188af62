"""Seconds of training until the validation error first reaches 2.5%, 1.5% and 1.0%.

    python benchmarks/time_to_accuracy.py                       # mnist28, 20 minutes
    python benchmarks/time_to_accuracy.py --minutes 5 --thresholds 5 2.5
    python benchmarks/time_to_accuracy.py --run_dir RUN         # read a finished run only

Trains the agent of a RAM setting (default ``mnist28``: 28x28 MNIST, 6 glimpses of 8x8)
for a wall-time budget through `benchmarks/ram_benchmark.py` (which appends its row to
``benchmarks/results.jsonl``; the CNN baseline is not trained), then reads the run's
``history.json``: for each threshold, the training seconds (``wall_s``: compilation
and input included, per-epoch validation excluded) at the end of the first REINFORCE
epoch whose greedy validation error is at or below it, or null when the budget ended
first.  The LAST line is JSON:
{"setting": "mnist28", "minutes": 20, "seconds_to_val_error": {"2.5": ..., "1.5": ...,
"1.0": null}, "best_val_error": ..., "test_error": ..., "epochs": ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # `python benchmarks/NAME.py`: benchmarks/ is not an installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags: the setting, the budget, the thresholds, or a finished run to read."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--setting", default="mnist28", help="a setting of benchmarks/settings.py")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[2.5, 1.5, 1.0],
                        help="validation errors in percent")
    parser.add_argument("--logdir", default=None,
                        help="run directory (default: benchmarks/runs/SETTING_time_to_accuracy)")
    parser.add_argument("--run_dir", default=None,
                        help="do not train: read the history of this finished run directory")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes={args.minutes:g} is out of range; valid range: > 0")
    bad = [t for t in args.thresholds if not 0 < t < 100]
    if bad:
        parser.error(f"--thresholds {bad[0]:g} is out of range; valid range: 0 < t < 100")
    return args


def seconds_to(history: list[dict], threshold: float) -> float | None:
    """Training seconds at the first REINFORCE epoch with validation error <= threshold %."""
    for entry in history:
        if entry.get("phase", "reinforce") == "reinforce" and (
                100.0 * (1.0 - entry["val_accuracy"]) <= threshold + 1e-9):
            return round(entry["wall_s"], 1)
    return None


def summarize_run(run_dir: Path, thresholds: list[float]) -> dict:
    """The time-to-error figures of the run directory `run_dir` (history.json, metrics.json)."""
    path = run_dir / "history.json"
    if not path.exists():
        raise SystemExit(f"time_to_accuracy.py: error: {path} not found: {run_dir} is not a "
                         f"finished train.py run directory")
    history = json.loads(path.read_text()).get("val_history", [])
    reinforce = [h for h in history if h.get("phase", "reinforce") == "reinforce"]
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return {
        "seconds_to_val_error": {f"{t:.1f}": seconds_to(history, t) for t in thresholds},
        "best_val_error": (round(100.0 * (1.0 - max(h["val_accuracy"] for h in reinforce)), 2)
                           if reinforce else None),
        "test_error": (round(100.0 * metrics["test_error"], 2)
                       if "test_error" in metrics else None),
        "epochs": len(history),
        "train_seconds": round(history[-1]["wall_s"], 1) if history else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    """Train (unless --run_dir), then print the table and the JSON line."""
    args = parse_args(argv)
    if args.run_dir is None:
        from benchmarks import ram_benchmark

        run_dir = Path(args.logdir or ROOT / "benchmarks" / "runs"
                       / f"{args.setting}_time_to_accuracy")
        code = ram_benchmark.main(["--setting", args.setting, "--minutes", f"{args.minutes:g}",
                                   "--skip_cnn", "--quiet", "--logdir", str(run_dir)])
        if code:
            return code
    else:
        run_dir = Path(args.run_dir)
    result = summarize_run(run_dir, args.thresholds)
    print(f"time to validation error, {args.setting}, run {run_dir}")
    print(f"{'validation error':>18}{'training seconds':>18}")
    for threshold, seconds in result["seconds_to_val_error"].items():
        print(f"{threshold + ' %':>18}{'not reached' if seconds is None else seconds:>18}")
    print(f"best validation error {result['best_val_error']}%, test error "
          f"{result['test_error']}% after {result['epochs']} epochs "
          f"({result['train_seconds']} s of training)")
    print(json.dumps({"setting": args.setting,
                      "minutes": None if args.run_dir else args.minutes, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
