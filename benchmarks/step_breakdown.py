"""Where the time of one training step goes: its parts timed alone, each compiled by XLA.

    python benchmarks/step_breakdown.py            # mnist28: 28x28, 8x8, 1 scale, 6 glimpses
    python benchmarks/step_breakdown.py --img_size 60 --clutter_count 4 --patch_size 12 --scales 3

Times, on one batch held in memory (no input pipeline), the median milliseconds of:

* ``sensor``      - the T glimpses alone (`GlimpseSensor` at T sampled cells);
* ``classifier``  - the causal attention + GRU classifier over T embeddings;
* ``episode``     - the whole sampled episode, forward only (policy, sensor, encoder,
                    memory, baseline, classifier);
* ``losses``      - the episode plus rewards and the loss terms;
* ``gradients``   - the same plus the backward pass (`GradientTape.gradient`);
* ``train_step``  - the real training step: all of it plus clipping and the Adam update.

The differences give the backward pass (gradients - losses) and the update
(train_step - gradients).  A profiler trace of the same step, for TensorBoard's
profile tab, comes from ``benchmarks/train_throughput.py --profile DIR``.  The LAST
line is JSON: {"ms": {"sensor": ..., ...}, "share_of_step": {...}, "images_per_s": ...}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from typing import Callable

from benchmarks.inference_latency import median_ms
from benchmarks.settings import config_from_flags, get_setting
from tf_glimpse.cli import add_config_flags
from tf_glimpse.config import GlimpseConfig
from tf_glimpse.quiet import quiet_tensorflow

PARTS = ("sensor", "classifier", "episode", "losses", "gradients", "train_step")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, GlimpseConfig]:
    """Flags: how long to time each part, and any `GlimpseConfig` field on top of mnist28."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Timed configuration: the mnist28 setting "
        "(benchmarks/settings.py) and the config flags given.")
    parser.add_argument("--calls", type=int, default=50,
                        help="timed calls per part (median; default: %(default)s)")
    add_config_flags(parser, given_only=True)
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error(f"--calls={args.calls} is out of range; valid range: >= 1")
    config = config_from_flags(parser, args, **get_setting("mnist28").flags)
    return args, config.replace(subset=config.batch_size)  # One batch is all it reads.


def part_ms(call: Callable[[], object], calls: int) -> float:
    """Median milliseconds of `call()` with its result read back, after 3 warm-up calls."""
    import tensorflow as tf

    return median_ms(lambda: tf.nest.map_structure(lambda t: t.numpy(), call()), calls,
                     warmup=3)


def time_parts(config: GlimpseConfig, calls: int) -> dict[str, float]:
    """Median milliseconds of every part of `PARTS` on one training batch."""
    import tensorflow as tf

    from tf_glimpse.data.canvas import split_dataset
    from tf_glimpse.rewards import agent_losses
    from tf_glimpse.training import Trainer

    with tempfile.TemporaryDirectory() as logdir:
        trainer = Trainer(config, logdir, verbose=0)
        model = trainer.model
        batch = next(iter(split_dataset(trainer.splits, config, "train", epoch=0)))
        seed = tf.constant([1, 2], tf.int64)
        images, labels = batch["image"], batch["label"]
        actions = tf.random.stateless_uniform([config.batch_size, config.steps], [3, 4],
                                              maxval=model.num_actions, dtype=tf.int32)
        embeddings = tf.random.stateless_normal(
            [config.batch_size, config.steps, config.embedding_units], [5, 6])
        compiled = lambda fn: tf.function(fn, jit_compile=True)  # noqa: E731

        def losses():
            outputs = model(images, mode="sample", seed=seed, training=True)
            return agent_losses(outputs, labels, config, False, trainer.entropy_weight())["total"]

        def gradients():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(losses())
            return tape.gradient(loss, model.trainable_variables)

        parts = {
            "sensor": compiled(lambda: [model.sensor(images, actions[:, t])
                                        for t in range(config.steps)]),
            "classifier": compiled(lambda: model.classifier(embeddings)),
            "episode": compiled(lambda: model(images, mode="sample", seed=seed)["step_logits"]),
            "losses": compiled(lambda: tf.reduce_sum(losses())),
            # One number out, so that reading every gradient back is not timed.
            "gradients": compiled(lambda: tf.add_n([tf.reduce_sum(g) for g in gradients()
                                                    if g is not None])),
        }
        step = trainer.train_step(supervised_only=False)
        result = {name: part_ms(fn, calls) for name, fn in parts.items()}
        result["train_step"] = part_ms(lambda: step(batch, seed)["count"], calls)
        return result


def main(argv: list[str] | None = None) -> int:
    """Time every part; print the table and the JSON line."""
    args, config = parse_args(argv)
    quiet_tensorflow()
    ms = time_parts(config, args.calls)
    step = ms["train_step"]
    derived = {"backward": ms["gradients"] - ms["losses"], "update": step - ms["gradients"],
               "episode_without_sensor_and_classifier":
                   ms["episode"] - ms["sensor"] - ms["classifier"]}
    print(f"one training step, batch {config.batch_size}: {config.img_size}x{config.img_size}, "
          f"{config.patch_size}x{config.patch_size}x{config.scales}, {config.steps} glimpses, "
          f"{config.grid.size}x{config.grid.size} grid; XLA; median of {args.calls} calls")
    print(f"{'part':<40}{'ms':>9}{'share of the step':>20}")
    every = {**ms, **derived}  # The parts in the order of PARTS, then the differences.
    for name, value in every.items():
        print(f"{name:<40}{value:>9.2f}{100 * value / step:>19.0f}%")
    print(json.dumps({"ms": {k: round(v, 3) for k, v in every.items()},
                      "share_of_step": {k: round(v / step, 3) for k, v in every.items()},
                      "images_per_s": round(1000.0 * config.batch_size / step, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
