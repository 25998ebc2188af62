"""Where the time of one training step goes: its parts timed alone, each compiled by XLA.

    python benchmarks/step_breakdown.py            # mnist28: 28x28, 8x8, 1 scale, 6 glimpses
    python benchmarks/step_breakdown.py --img_size 60 --clutter_count 4 --patch_size 12 --scales 3

Times, on one batch held in memory (no input pipeline), the median milliseconds of:

* ``sensor``      - the T glimpses alone (`GlimpseSensor` at T sampled cells);
* ``encoder``     - the glimpse encoder ("what" and "where") on T glimpses;
* ``memory``      - T steps of the LSTM memory over T embeddings;
* ``policy``      - T choices of the location policy (its head, masking and the
                    `Categorical` sample, log-probability and entropy);
* ``context``     - the context network's view of the whole canvas (0 without one);
* ``classifier``  - the causal attention + GRU classifier over T embeddings;
* ``episode``     - the whole sampled episode, forward only (policy, sensor, encoder,
                    memory, baseline, classifier);
* ``losses``      - the episode plus rewards and the loss terms;
* ``gradients``   - the same plus the backward pass (`GradientTape.gradient`);
* ``train_step``  - the real training step: all of it plus clipping and the Adam update.

The differences give the backward pass (gradients - losses), the update
(train_step - gradients) and the episode's glue (episode minus its parts: gathers,
stacking, the baseline and memory heads).  A profiler trace of the same step, for TensorBoard's
profile tab, comes from ``benchmarks/train_throughput.py --profile DIR``.  The LAST
line is JSON: {"ms": {"sensor": ..., ...}, "call_overhead_ms": ..., "share_of_step": {...},
"images_per_s": ...}; every time is net of the call overhead, and images_per_s is the
batch over the net time of the training step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if not __package__:  # `python benchmarks/NAME.py`: benchmarks/ is not an installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.settings import config_from_flags, get_setting
from tf_glimpse.cli import add_config_flags
from tf_glimpse.config import GlimpseConfig
from tf_glimpse.quiet import quiet_tensorflow

PARTS = ("sensor", "encoder", "memory", "policy", "context", "classifier", "episode", "losses",
         "gradients", "train_step")
# The parts of the forward episode that `PARTS` times alone.
EPISODE_PARTS = PARTS[:6]


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, GlimpseConfig]:
    """Flags: how long to time each part, and any `GlimpseConfig` field on top of mnist28."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Timed configuration: the mnist28 setting "
        "(benchmarks/settings.py) and the config flags given.")
    parser.add_argument("--calls", type=int, default=50,
                        help="timed calls per part, interleaved (median; default: %(default)s)")
    add_config_flags(parser, given_only=True)
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error(f"--calls={args.calls} is out of range; valid range: >= 1")
    config = config_from_flags(parser, args, **get_setting("mnist28").flags)
    return args, config.replace(subset=config.batch_size)  # One batch is all it reads.


def interleaved_ms(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median milliseconds of each call (result read back), net of the cost of any call.

    After 3 warm-up calls each, every round times each call once, in turn, so that the
    machine's drift (measured: 20% between runs) touches all parts alike.  The median
    time of a compiled call that does nothing (dispatch and read-back, reported as
    ``call_overhead``) is subtracted from every part.
    """
    import tensorflow as tf

    calls = {"call_overhead": tf.function(lambda: tf.constant(0.0), jit_compile=True),
             **calls}
    runs = {name: (lambda call=call: tf.nest.map_structure(lambda t: t.numpy(), call()))
            for name, call in calls.items()}
    for run in runs.values():
        for _ in range(3):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(1000.0 * (time.perf_counter() - started))
    medians = {name: statistics.median(values) for name, values in times.items()}
    overhead = medians.pop("call_overhead")
    # A part too small to tell from the overhead's noise reads 0, not a negative time.
    return {**{name: max(0.0, value - overhead) for name, value in medians.items()},
            "call_overhead": overhead}


def time_parts(config: GlimpseConfig, calls: int) -> dict[str, float]:
    """Median milliseconds of every part of `PARTS` on one training batch, and the call overhead."""
    import tensorflow as tf

    from tf_glimpse.data.canvas import split_dataset
    from tf_glimpse.training.rewards import agent_losses
    from tf_glimpse.training.trainer import Trainer

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
        glimpses = tf.random.stateless_uniform(
            [config.batch_size, config.scales, config.patch_size, config.patch_size], [7, 8])
        locations = tf.gather(model.centres, actions)  # [B, T, 2]
        hidden = tf.random.stateless_normal([config.batch_size, config.memory_units], [9, 10])
        step_seeds = tf.random.experimental.stateless_split(seed, config.steps)
        compiled = lambda fn: tf.function(fn, jit_compile=True)  # noqa: E731

        def losses():
            outputs = model(images, mode="sample", seed=seed, training=True)
            return agent_losses(outputs, labels, config, False, trainer.entropy_weight())["total"]

        def gradients():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(losses())
            return tape.gradient(loss, model.trainable_variables)

        def memory():
            state = [tf.zeros([config.batch_size, config.memory_units])] * 2
            for t in range(config.steps):
                _, state = model.memory(embeddings[:, t], state)
            return state[0]

        def policy():
            visited = model.policy.no_visits(config.batch_size)
            chosen, previous = [], None
            for t in range(config.steps):
                choice = model.policy(hidden, step=t, visited=visited, mode="sample",
                                      seed=tf.cast(step_seeds[t], tf.int32), previous=previous)
                visited = model.policy.visit(visited, choice["action"])
                previous = choice["action"]
                chosen += [choice["log_prob"], choice["entropy"]]
            return chosen

        parts = {
            "sensor": compiled(lambda: [model.sensor(images, actions[:, t])
                                        for t in range(config.steps)]),
            "encoder": compiled(lambda: [model.encoder(glimpses, locations[:, t])
                                         for t in range(config.steps)]),
            "memory": compiled(memory),
            "policy": compiled(policy),
            "context": compiled(lambda: model.initial_state(images)[0]),
            "classifier": compiled(lambda: model.classifier(embeddings)),
            "episode": compiled(lambda: model(images, mode="sample", seed=seed)["step_logits"]),
            "losses": compiled(lambda: tf.reduce_sum(losses())),
            # One number out, so that reading every gradient back is not timed.
            "gradients": compiled(lambda: tf.add_n([tf.reduce_sum(g) for g in gradients()
                                                    if g is not None])),
        }
        step = trainer.train_step(supervised_only=False)
        parts["train_step"] = lambda: step(batch, seed)["count"]
        return interleaved_ms(parts, calls)


def main(argv: list[str] | None = None) -> int:
    """Time every part; print the table and the JSON line."""
    args, config = parse_args(argv)
    quiet_tensorflow()
    ms = time_parts(config, args.calls)
    overhead = ms.pop("call_overhead")
    step = ms["train_step"]
    derived = {"backward": ms["gradients"] - ms["losses"], "update": step - ms["gradients"],
               "episode_glue": ms["episode"] - sum(ms[part] for part in EPISODE_PARTS)}
    print(f"one training step, batch {config.batch_size}: {config.img_size}x{config.img_size}, "
          f"{config.patch_size}x{config.patch_size}x{config.scales}, {config.steps} glimpses, "
          f"{config.grid.size}x{config.grid.size} grid; XLA; median of {args.calls} calls, "
          f"each net of {overhead:.2f} ms for calling and reading back")
    print(f"{'part':<40}{'ms':>9}{'share of the step':>20}")
    every = {**ms, **derived}  # The parts in the order of PARTS, then the differences.
    for name, value in every.items():
        print(f"{name:<40}{value:>9.2f}{100 * value / step:>19.0f}%")
    print(json.dumps({"ms": {k: round(v, 3) for k, v in every.items()},
                      "call_overhead_ms": round(overhead, 3),
                      "share_of_step": {k: round(v / step, 3) for k, v in every.items()},
                      "images_per_s": round(1000.0 * config.batch_size / step, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
