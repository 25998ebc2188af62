"""Canvases per second of the training input pipeline.

    python benchmarks/data_throughput.py --img_size 64 --clutter_count 4 [--batch_size 128]
        [--batches 300] [--repeats 3] [--dataset mnist] [--data_dir DIR]

Builds the training `canvas_dataset` (shuffled, epoch 0, repeated), runs a
warm-up, then times `--repeats` stretches of `--batches` batches and reports the
median rate.  The data directory is found like everywhere else (--data_dir,
$TF_GLIMPSE_DATA_DIR, data/<dataset>/).  The last line printed is JSON:
{"canvases_per_s": ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from tf_glimpse.data.idx import DataError
from tf_glimpse.quiet import quiet_tensorflow


def parse_args() -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(description="Measure canvases/s of the training pipeline.")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--img_size", type=int, default=64)
    parser.add_argument("--clutter_count", type=int, default=4)
    parser.add_argument("--clutter_size", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=300, help="batches per timed stretch")
    parser.add_argument("--repeats", type=int, default=3, help="timed stretches (median taken)")
    parser.add_argument("--warmup", type=int, default=30, help="batches before timing")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def measure(args: argparse.Namespace) -> list[float]:
    """Canvases/s of each timed stretch."""
    from tf_glimpse.data.canvas import canvas_dataset  # TensorFlow, after the flags.
    from tf_glimpse.data.sources import load_splits

    splits = load_splits(args.dataset, args.data_dir, img_size=args.img_size)
    dataset = canvas_dataset(
        splits.train_images, splits.train_labels, img_size=args.img_size,
        clutter_count=args.clutter_count, clutter_size=args.clutter_size,
        batch_size=args.batch_size, seed=args.seed, epoch=0, shuffle=True, drop_remainder=True,
    ).repeat()
    batches = iter(dataset)
    for _ in range(args.warmup):
        next(batches)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.batches):
            next(batches)
        rates.append(args.batches * args.batch_size / (time.perf_counter() - start))
    return rates


def main() -> int:
    """Run the benchmark and print the table and the JSON line."""
    args = parse_args()
    quiet_tensorflow()
    try:
        rates = measure(args)
    except DataError as error:
        print(f"data_throughput: {error}", file=sys.stderr)
        return 1
    median = statistics.median(rates)
    setting = (f"{args.dataset} img_size={args.img_size} clutter={args.clutter_count}x"
               f"{args.clutter_size}")
    print(f"{'setting':<40} {'batch':>6} {'canvases/s':>12}")
    print(f"{setting:<40} {args.batch_size:>6} {median:>12.0f}")
    print(f"(stretches of {args.batches} batches: {', '.join(f'{r:.0f}' for r in rates)})")
    print(json.dumps({"canvases_per_s": round(median, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
