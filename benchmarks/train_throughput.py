"""Training throughput (images/s) of the REINFORCE step, with XLA on and off.

    python benchmarks/train_throughput.py            # seed experiment 1 configuration
    python benchmarks/train_throughput.py --img_size 28 --clutter_count 0 --patch_size 8 --stride 4

Times the full training step (sampled episode, losses, gradients, Adam update) fed
by the real canvas pipeline, after a warm-up that includes compilation.  Reports
the median of several timed stretches, plus the input pipeline alone, to show
whether the input is a bottleneck.  The LAST line is JSON:
{"images_per_s": ..., "images_per_s_no_xla": ..., "input_canvases_per_s": ...,
"peer_images_per_s": 5566, "peer_measured": "2026-11-25, ...", "ratio_to_peer": ...}.

The peer is kevinzakka's PyTorch RAM training step in the mnist28 setting (8x8
glimpses, 1 scale, 6 glimpses, batch 128).  It is not timed here (PyTorch is not part
of this project): the figure divided by is the one measured side by side with ours on
2026-11-25, on an idle 2-core AMD EPYC machine of this kind (4,593 and 5,566 images/s,
torch 2.14.1 on 2 threads; the better is used), and `peer_measured` says so in the
JSON.  This machine's speed differs from day to day (the same peer ran at about 7,400
images/s on another day), so a same-day ratio needs a same-day peer figure: pass it
as `--peer_images_per_s`.  The ratio compares like with like only for the mnist28
setting: ``--img_size 28 --clutter_count 0 --patch_size 8 --stride 4 --steps 6
--scales 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # `python benchmarks/NAME.py`: benchmarks/ is not an installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.settings import config_from_flags
from tf_glimpse.cli import add_config_flags
from tf_glimpse.config import GlimpseConfig
from tf_glimpse.quiet import quiet_tensorflow

# kevinzakka's PyTorch RAM, mnist28 setting, side by side with ours (see the docstring).
PEER_IMAGES_PER_S = 5566
PEER_MEASURED = "2026-11-25, idle 2-core AMD EPYC machine of this kind, torch 2.14.1"


# The configuration timed when no flag says otherwise: GlimpseConfig's defaults (seed
# experiment 1's canvases) with one scale.
DEFAULTS = dict(scales=1)


def parse_args() -> tuple[argparse.Namespace, GlimpseConfig]:
    """Flags: how long to time, and any `GlimpseConfig` field on top of `DEFAULTS`."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + f" Timed configuration: GlimpseConfig's "
        f"defaults with {DEFAULTS}, and the config flags given.")
    parser.add_argument("--batches", type=int, default=30, help="batches per timed stretch")
    parser.add_argument("--repeats", type=int, default=3, help="timed stretches (median)")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="also write a TensorFlow profiler trace of one stretch of XLA "
                             "training steps to DIR (open it with `tensorboard --logdir DIR`, "
                             "PROFILE tab)")
    parser.add_argument("--peer_images_per_s", type=float, default=None, metavar="RATE",
                        help="the peer's rate measured today on this machine (default: the "
                             f"stored {PEER_IMAGES_PER_S:,} of {PEER_MEASURED.split(',')[0]})")
    add_config_flags(parser, given_only=True)
    args = parser.parse_args()
    if args.peer_images_per_s is not None and not args.peer_images_per_s > 0:
        parser.error(f"--peer_images_per_s {args.peer_images_per_s:g}: valid range: > 0")
    for name in ("batches", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} is out of range; valid range: >= 1")
    config = config_from_flags(parser, args, **DEFAULTS)
    # Just the canvases the timed stretches read.
    return args, config.replace(subset=config.batch_size * (args.batches + 1))


def time_training(config: GlimpseConfig, batches: int, repeats: int,
                  prepared: bool = False, profile_dir: str | None = None) -> list[float]:
    """Images/s of `repeats` stretches of `batches` training steps (after a warm-up).

    The canvases come from the real input pipeline, running beside the step;
    with `prepared` they are made before the clock starts and held in memory, so
    the figure is the training step's alone.  With `profile_dir`, the last stretch
    runs under the TensorFlow profiler (`tf.profiler.experimental`), which writes
    its trace there; that stretch's rate includes the profiler's overhead.
    """
    import tensorflow as tf

    from tf_glimpse.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as logdir:
        trainer = Trainer(config, logdir, verbose=0)
        step = trainer.train_step(supervised_only=False)
        rates = []
        for repeat in range(repeats + 1):  # The first stretch compiles and warms up.
            dataset = _train_batches(trainer, repeat, batches)
            iterator = iter(list(dataset) if prepared else
                            trainer.strategy.experimental_distribute_dataset(dataset))
            next_batch = next(iterator)
            profiling = profile_dir is not None and repeat == repeats
            if profiling:
                tf.profiler.experimental.start(profile_dir)
            started = time.perf_counter()
            for index in range(batches):
                with tf.profiler.experimental.Trace("train", step_num=index):
                    result = step(next_batch, trainer.rng.make_seeds(1)[:, 0])
                next_batch = next(iterator, next_batch)
            float(result["count"])  # Wait for the last step.
            if profiling:
                tf.profiler.experimental.stop()
            if repeat:
                rates.append(batches * config.batch_size / (time.perf_counter() - started))
        return rates


def _train_batches(trainer, epoch: int, batches: int):
    from tf_glimpse.data.canvas import split_dataset

    return split_dataset(trainer.splits, trainer.config, "train", epoch=epoch).repeat().take(
        batches + 1)


def time_input(config: GlimpseConfig, batches: int) -> float:
    """Canvases/s of the training input pipeline alone."""
    from tf_glimpse.data.canvas import split_dataset
    from tf_glimpse.data.sources import config_splits

    splits = config_splits(config)
    dataset = split_dataset(splits, config, "train", epoch=0).repeat().take(batches)
    for _ in dataset.take(5):
        pass
    started = time.perf_counter()
    count = sum(1 for _ in dataset)
    return count * config.batch_size / (time.perf_counter() - started)


def main() -> None:
    """Time XLA on and off and the input alone; print a table and the JSON line."""
    args, base = parse_args()
    quiet_tensorflow()
    xla = time_training(base, args.batches, args.repeats, profile_dir=args.profile)
    no_xla = time_training(base.replace(jit_compile=False), args.batches, args.repeats)
    input_rate = time_input(base, 4 * args.batches)
    setting = (f"{base.img_size}x{base.img_size}, clutter {base.clutter_count}, "
               f"{base.patch_size}x{base.patch_size}x{base.scales}, stride {base.stride}, "
               f"{base.steps} steps, batch {base.batch_size}, sensor {base.sensor_backend}")
    print(f"training throughput on {os.cpu_count()} CPU cores: {setting}")
    print(f"{'what':<28}{'median images/s':>18}{'all stretches':>32}")
    for name, rates in (("train step, XLA", xla), ("train step, no XLA", no_xla),
                        ("input pipeline alone", [input_rate])):
        print(f"{name:<28}{statistics.median(rates):>18.0f}"
              f"{', '.join(f'{r:.0f}' for r in rates):>32}")
    peer, measured = PEER_IMAGES_PER_S, PEER_MEASURED
    if args.peer_images_per_s is not None:
        peer, measured = args.peer_images_per_s, "given on the command line"
    ratio = statistics.median(xla) / peer
    print(f"ratio to the peer's {peer:,.0f} images/s (kevinzakka RAM, mnist28 setting; "
          f"measured {measured}, not in this run): {ratio:.2f}x")
    if args.profile:
        print(f"profiler trace of the last XLA stretch: {args.profile} "
              f"(tensorboard --logdir {args.profile}, PROFILE tab)")
    print(json.dumps({"images_per_s": round(statistics.median(xla), 1),
                      "images_per_s_no_xla": round(statistics.median(no_xla), 1),
                      "input_canvases_per_s": round(input_rate, 1),
                      "peer_images_per_s": peer, "peer_measured": measured,
                      "ratio_to_peer": round(ratio, 3)}))


if __name__ == "__main__":
    main()
