"""How the cost of training grows with the canvas, at one glimpse configuration.

    python benchmarks/sensor_scaling.py                      # window sensor, 5 x 5 grid
    python benchmarks/sensor_scaling.py --sensor_backend matmul
    python benchmarks/sensor_scaling.py --stride 4           # fixed stride: the grid grows

For canvas sizes 60, 100, 200 and 400 (4 pieces of clutter) it trains the same agent
(12 x 12 glimpses, 3 scales, 6 steps, batch 128) and reports, per size: the training
step's images/s with XLA on canvases made before the clock starts (median of
`--repeats` stretches), the input pipeline's own canvases/s beside it, and the FLOPs
per image of our agent and of the full-image CNN baseline (`benchmarks/flops.py`).

By default the action grid is the same at every size (`--grid_size` cells per axis,
the stride growing with the canvas), so that only the sensor sees a bigger image; with
`--stride S` the stride is fixed instead and the grid, with the policy head, its
softmax and the visited mask, grows as I^2.  The LAST line is JSON:
{"images_per_s": {"60": ...}, "flops_per_image": {"60": ...}, "ratio_largest_to_smallest": ...,
 ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

if not __package__:  # `python benchmarks/NAME.py`: benchmarks/ is not an installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cnn_baseline import cnn_layers
from benchmarks.flops import agent_flops, cnn_flops
from benchmarks.train_throughput import time_input, time_training
from tf_glimpse.config import SENSOR_BACKENDS, GlimpseConfig
from tf_glimpse.quiet import quiet_tensorflow


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags: the canvas sizes, the glimpse configuration and how long to time each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 100, 200, 400],
                        help="canvas sizes I (pixels per side)")
    parser.add_argument("--sensor_backend", default="window", choices=SENSOR_BACKENDS,
                        help="glimpse sensor backend")
    parser.add_argument("--patch_size", type=int, default=12)
    parser.add_argument("--scales", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--clutter_count", type=int, default=4)
    parser.add_argument("--grid_size", type=int, default=5,
                        help="cells per axis at every size (the stride is (I - P) / (N - 1))")
    parser.add_argument("--stride", type=int, default=None,
                        help="a fixed stride instead of a fixed grid (the grid grows with I)")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=20, help="batches per timed stretch")
    parser.add_argument("--repeats", type=int, default=3, help="timed stretches (median)")
    parser.add_argument("--data_dir", default=None, help="MNIST directory "
                        "(default: $TF_GLIMPSE_DATA_DIR)")
    args = parser.parse_args(argv)
    for size in args.sizes:
        span = size - args.patch_size
        if span < 0:
            parser.error(f"--sizes {size} is smaller than --patch_size {args.patch_size}; "
                         f"valid range: {args.patch_size}..")
        if args.stride is None and (args.grid_size < 2 or span % (args.grid_size - 1)):
            parser.error(f"--grid_size {args.grid_size} does not fit canvas {size}: "
                         f"{args.grid_size} - 1 must divide {size} - {args.patch_size} = {span} "
                         f"at every size (valid for these sizes: a divisor of every I - P, "
                         f"plus one)")
    return args


def config_for(args: argparse.Namespace, size: int) -> GlimpseConfig:
    """The configuration timed at canvas `size`."""
    stride = args.stride or (size - args.patch_size) // (args.grid_size - 1)
    return GlimpseConfig(img_size=size, clutter_count=args.clutter_count,
                         patch_size=args.patch_size, stride=stride, scales=args.scales,
                         steps=args.steps, batch_size=args.batch_size,
                         sensor_backend=args.sensor_backend, data_dir=args.data_dir,
                         subset=args.batch_size * (args.batches + 1))


def main(argv: list[str] | None = None) -> int:
    """Time every size; print the table and the JSON line."""
    args = parse_args(argv)
    quiet_tensorflow()
    rows = []
    for size in args.sizes:
        config = config_for(args, size)
        rates = time_training(config, args.batches, args.repeats, prepared=True)
        rows.append({"size": size, "grid": config.grid.size, "stride": config.stride,
                     "images_per_s": statistics.median(rates),
                     "input_canvases_per_s": time_input(config, 2 * args.batches),
                     "flops_per_image": agent_flops(config)["total"],
                     "sensor_flops_per_image": agent_flops(config)["sensor"],
                     "cnn_flops_per_image": cnn_flops(cnn_layers(size), size)})
    print(f"training cost against canvas size: {args.patch_size}x{args.patch_size}x{args.scales} "
          f"glimpses, {args.steps} steps, sensor {args.sensor_backend}, batch {args.batch_size}, "
          f"canvases made before timing")
    print(f"{'canvas':>7}{'grid':>9}{'stride':>7}{'train images/s':>16}{'input canvases/s':>18}"
          f"{'agent FLOPs':>13}{'sensor FLOPs':>14}{'CNN FLOPs':>12}")
    for row in rows:
        print(f"{row['size']:>7}{row['grid']:>5} x{row['grid']:>2}{row['stride']:>7}"
              f"{row['images_per_s']:>16,.0f}{row['input_canvases_per_s']:>18,.0f}"
              f"{row['flops_per_image'] / 1e6:>12.2f}M{row['sensor_flops_per_image'] / 1e6:>13.2f}M"
              f"{row['cnn_flops_per_image'] / 1e6:>11.2f}M")
    ratio = rows[-1]["images_per_s"] / rows[0]["images_per_s"]
    print(f"images/s at {rows[-1]['size']} / at {rows[0]['size']}: {ratio:.2f}")
    by_size = lambda key: {str(row["size"]): round(row[key], 1) for row in rows}  # noqa: E731
    print(json.dumps({"sensor_backend": args.sensor_backend,
                      "grid": {str(row["size"]): row["grid"] for row in rows},
                      "images_per_s": by_size("images_per_s"),
                      "input_canvases_per_s": by_size("input_canvases_per_s"),
                      "flops_per_image": {str(r["size"]): r["flops_per_image"] for r in rows},
                      "sensor_flops_per_image": {str(r["size"]): r["sensor_flops_per_image"]
                                                 for r in rows},
                      "cnn_flops_per_image": {str(r["size"]): r["cnn_flops_per_image"]
                                              for r in rows},
                      "ratio_largest_to_smallest": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
