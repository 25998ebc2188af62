"""TFLite float latency per image, at batch 1 on one thread, of a setting's CNN baselines.

    python benchmarks/cnn_latency.py --setting cluttered400 [--runs 50] [--warmup 5]

The full-canvas CNN (`benchmarks/cnn_baseline.py`) and, for the large canvases, the
same design on the canvas average-pooled to 100 x 100 are converted to TFLite
(builtin ops, `export.tflite.convert`) and invoked `--runs` times on one canvas; the
median is reported.  Latency does not depend on the weights, so the models are not
trained (seeded initial weights).  The agent's figure comes from its export:
``python benchmarks/inference_latency.py OUT``.  The last line is JSON, e.g.
{"setting": "cluttered400", "cnn_tflite_ms": 3.6, "downsampled_cnn_tflite_ms": 0.48, ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # `python benchmarks/NAME.py`: benchmarks/ is not an installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.settings import SETTINGS, get_setting
from tf_glimpse.quiet import quiet_tensorflow


def tflite_ms(img_size: int, channels: int, input_size: int | None, runs: int,
              warmup: int) -> float:
    """Median milliseconds of one TFLite invoke of the CNN on a [1, I, I, C] canvas."""
    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks.cnn_baseline import build_cnn
    from benchmarks.inference_latency import median_ms
    from export.tflite import convert, interpreter

    keras.utils.set_random_seed(0)
    model = build_cnn(img_size, 10, channels, input_size)
    function = tf.function(lambda images: model(images, training=False)).get_concrete_function(
        tf.TensorSpec([1, img_size, img_size, channels], tf.float32))
    flatbuffer, _ = convert(function, model)
    runner = interpreter(flatbuffer, num_threads=1)
    image = np.random.default_rng(0).random((1, img_size, img_size, channels), np.float32)
    index = runner.get_input_details()[0]["index"]

    def run() -> None:
        runner.set_tensor(index, image)
        runner.invoke()

    return round(median_ms(run, runs, warmup), 3)


def main(argv: list[str] | None = None) -> int:
    """Measure and print one line per model; the last line is the JSON of all of them."""
    parser = argparse.ArgumentParser(prog="cnn_latency.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", required=True, choices=list(SETTINGS))
    parser.add_argument("--runs", type=int, default=50, help="timed invokes (>= 1)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed invokes first (>= 0)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs={args.runs} is out of range; valid range: >= 1")
    if args.warmup < 0:
        parser.error(f"--warmup={args.warmup} is out of range; valid range: >= 0")
    quiet_tensorflow()
    from benchmarks.cnn_baseline import cnn_layers, describe
    from benchmarks.flops import cnn_flops

    setting = get_setting(args.setting)
    config = setting.config()
    result = {"setting": setting.name, "img_size": config.img_size}
    for name, input_size in setting.baselines().items():
        layers = cnn_layers(config.img_size, 10, input_size)
        ms = tflite_ms(config.img_size, config.channels, input_size, args.runs, args.warmup)
        result.update({f"{name}_tflite_ms": ms, f"{name}_architecture": describe(layers),
                       f"{name}_flops_per_image": cnn_flops(layers, config.img_size,
                                                            config.channels)})
        print(f"{name}: {describe(layers)}, TFLite float {ms:.3f} ms per image (batch 1, one "
              f"thread)", flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
