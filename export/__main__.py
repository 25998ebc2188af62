"""Command line: ``python -m export RUN_DIR --out OUT_DIR [--quantize none|dynamic|int8]``.

Exit codes, as for train.py and `python -m tf_glimpse.report`: 0 success; 1 the
export failed (a model that fails its checks, a data error with --quantize int8, a
missing package); 2 a bad command line: bad arguments, RUN_DIR not a train.py run
directory or without a checkpoint (the one-line message names it), data that differ
from those the run began with (RUN_DIR/data.json), or an existing OUT_DIR without
--overwrite.  On any failure nothing is left in OUT_DIR, nor its parent
directories created.
"""

from __future__ import annotations

import argparse
import os
import sys

from export import QUANTIZE_MODES
from tf_glimpse.config import CHECKPOINT_KINDS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a train.py run to a SavedModel and TFLite models (builtin ops only).")
    parser.add_argument("run_dir", help="run directory written by train.py (--logdir), or a "
                        ".keras file of the agent (RUN/agent.keras)")
    parser.add_argument("--out", required=True, help="output directory (must not exist)")
    parser.add_argument("--quantize", choices=QUANTIZE_MODES, default="none",
                        help="also write quantized TFLite models: dynamic (int8 weights) or "
                             "int8 (int8 weights and activations, calibrated on validation "
                             "canvases; needs the data set)")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_KINDS,
                        default="best", help="which checkpoint of the run to export")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    parser.add_argument("--verify_count", type=int, default=64,
                        help="canvases the exported models are checked on")
    parser.add_argument("--eval_count", type=int, default=1000,
                        help="validation canvases the quantized models are scored on")
    parser.add_argument("--calibration_count", type=int, default=200,
                        help="validation canvases (not among the scored ones) that calibrate int8")
    parser.add_argument("--max_accuracy_drop", type=float, default=0.01,
                        help="fail, writing nothing, when a quantized model loses more than "
                             "this fraction of accuracy on the scored canvases (0.01 = 1 point)")
    parser.add_argument("--quiet", action="store_true", help="print only errors")
    args = parser.parse_args(argv)
    if not 0.0 <= args.max_accuracy_drop <= 1.0:
        parser.error(f"--max_accuracy_drop={args.max_accuracy_drop} is out of range; "
                     f"valid range: 0..1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the export; returns the exit code."""
    args = parse_args(argv)
    if not (os.path.isdir(args.run_dir) or args.run_dir.endswith(".keras")):
        print(f"error: run directory {args.run_dir} not found", file=sys.stderr)
        return 2
    if os.path.exists(args.out) and not args.overwrite:
        print(f"error: {args.out} already exists; pass --overwrite to replace it",
              file=sys.stderr)
        return 2
    from tf_glimpse.quiet import quiet_tensorflow

    quiet_tensorflow()

    from export.errors import ExportError
    from export.pipeline import export_run
    from tf_glimpse.config import ConfigError
    from tf_glimpse.data import DataError
    from tf_glimpse.optional import MissingDependency
    from tf_glimpse.training.runs import RunError

    log = (lambda message: None) if args.quiet else print
    try:
        info = export_run(args.run_dir, args.out, args.quantize, overwrite=args.overwrite,
                          verify_count=args.verify_count, eval_count=args.eval_count,
                          calibration_count=args.calibration_count,
                          kind=args.checkpoint, log=log,
                          max_accuracy_drop=args.max_accuracy_drop)
    except (RunError, ConfigError, FileExistsError) as error:  # RUN_DIR or OUT_DIR unusable.
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ExportError, DataError, MissingDependency) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    log(f"exported to {args.out}: " + ", ".join(f"{name} {size / 1e6:.2f} MB"
                                               for name, size in info["files"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
