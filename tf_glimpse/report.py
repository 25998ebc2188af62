"""`python -m tf_glimpse.report RUN`: the policy report's command line.

Checks the flags and RUN (exit 2 when bad; 1 for a data error or a missing package),
then `tf_glimpse.analysis.report.build_report` writes RUN/report/ and RUN/gifs/, and a
table of every policy's accuracy and hit rate is printed.  TensorFlow is imported
(quietly) only after the flags are checked, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tf_glimpse.config import CHECKPOINT_KINDS


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``python -m tf_glimpse.report``."""
    parser = argparse.ArgumentParser(
        prog="python -m tf_glimpse.report",
        description="Compare the learned glimpse policy with random and fixed ones on the "
                    "test set; write RUN_DIR/report/ and RUN_DIR/gifs/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", help="a train.py run directory")
    parser.add_argument("--gifs", type=int, default=5, help="attention GIFs to write (0 = none)")
    parser.add_argument("--data_dir", default=None,
                        help="MNIST directory (default: the run's, then $TF_GLIMPSE_DATA_DIR)")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first N test canvases (faster)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled/random policies")
    parser.add_argument("--samples", type=int, default=1,
                        help="sampled episodes per canvas whose class probabilities "
                             "learned_sampled averages (Monte Carlo evaluation)")
    # Not "pretrained": that checkpoint is the judge of random glimpses, not a learned policy.
    parser.add_argument("--checkpoint", default="best",
                        choices=[kind for kind in CHECKPOINT_KINDS if kind != "pretrained"],
                        help="which trained checkpoint judges and plays the learned policy")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Check the arguments and RUN_DIR (exit 2 when bad), then build the report."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.gifs < 0:
        parser.error(f"--gifs={args.gifs} is out of range; valid range: >= 0")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit={args.limit} is out of range; valid range: >= 1")
    if args.samples < 1:
        parser.error(f"--samples={args.samples} is out of range; valid range: >= 1")

    from tf_glimpse.quiet import quiet_tensorflow

    quiet_tensorflow()  # Before tf_glimpse.training.runs, which imports TensorFlow.

    from tf_glimpse.config import ConfigError
    from tf_glimpse.training.runs import RunError, latest_checkpoint, load_config

    run_dir = Path(args.run_dir)
    try:
        if not run_dir.is_dir():
            raise RunError(f"{run_dir} is not a directory")
        load_config(run_dir)
        latest_checkpoint(run_dir, args.checkpoint)
    except (RunError, ConfigError) as error:
        print(f"report: error: {error}", file=sys.stderr)
        return 2

    from tf_glimpse.analysis.report import build_report
    from tf_glimpse.data.idx import DataError
    from tf_glimpse.optional import MissingDependency

    command = shlex.join(["python", "-m", "tf_glimpse.report", *argv])
    try:
        report = build_report(run_dir, args.data_dir, args.limit, args.gifs, args.seed,
                              args.checkpoint, command, verbose=0 if args.quiet else 1,
                              samples=args.samples)
    except (DataError, MissingDependency) as error:
        print(f"report: error: {error}", file=sys.stderr)
        return 1
    except (ConfigError, RunError) as error:  # e.g. val_size does not fit, the data changed.
        print(f"report: error: {error}", file=sys.stderr)
        return 2
    print(f"{'policy':<25} {'accuracy':>9} {'hit rate':>9}")
    for name in report["policies"]:
        result = report[name]
        print(f"{name:<25} {result['accuracy']:>9.4f} {result['hit_rate']:>9.3f}")
    for name, hint in report["unavailable"].items():
        print(f"{name:<25} unavailable: {hint}")
    print(f"wrote {run_dir / 'report' / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
