"""Per-image latency of one full greedy episode: Keras, SavedModel and TFLite, on one thread.

    python benchmarks/inference_latency.py OUT_DIR [--runs 300] [--run_dir RUN_DIR]

OUT_DIR is what ``python -m export`` wrote.  Every engine gets one image
[1, I, I, 1], one thread, a warm-up, then `--runs` timed episodes; the median is
reported.  Engines: the Keras agent in a `tf.function` (needs the run directory,
recorded in export_info.json), the SavedModel's `serving_default`,
glimpse_full.tflite and any quantized full models beside it, and the step model
driven glimpse by glimpse (T invokes plus reading the patches in numpy and the
signature runner's Python glue; `tflite_step_invoke` is one bare step invoke).

Also printed: model sizes, and the pixels an episode reads (T * k * P * P) next
to the pixels of the canvas (I * I).  The last line is JSON, e.g.
{"tflite_ms": 0.4, "tflite_int8_ms": 0.3, "saved_model_ms": 2.1, "tflite_bytes": 1800000, ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from export.pipeline import SAVED_MODEL
from tf_glimpse.quiet import quiet_tensorflow


def parse_args() -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(description="Per-image latency of exported glimpse models.")
    parser.add_argument("out_dir", help="directory written by python -m export")
    parser.add_argument("--runs", type=int, default=300, help="timed episodes per engine (>= 1)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed episodes first")
    parser.add_argument("--run_dir", default=None,
                        help="run directory for the Keras timing (default: from export_info.json)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs={args.runs} is out of range; valid range: >= 1")
    return args


def median_ms(run: Callable[[], object], runs: int, warmup: int) -> float:
    """Median wall time of `run()` in milliseconds."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)


def tflite_episode(path: Path, image: np.ndarray) -> Callable[[], np.ndarray]:
    """One invoke of a full-episode model on `image`, reading back the class probabilities."""
    from export.tflite import interpreter

    runner = interpreter(path, num_threads=1)
    # Tensor indices behind the signature names (the signature runner's public details):
    # set/invoke/get without the runner's per-call overhead.
    signature = runner.get_signature_runner("serving_default")
    input_index = signature.get_input_details()["images"]["index"]
    output_index = signature.get_output_details()["probabilities"]["index"]

    def run() -> np.ndarray:
        runner.set_tensor(input_index, image)
        runner.invoke()
        return runner.get_tensor(output_index)

    return run


def step_episode(path: Path, image: np.ndarray, info: dict) -> Callable[[], dict]:
    """One episode of the step model, glimpse by glimpse (`export.drive_step_model`)."""
    from export.drive_step_model import context_runner, open_interpreter, run_episode

    runner = open_interpreter(path).get_signature_runner()
    context = context_runner(path, info)
    return lambda: run_episode(runner, image[0], info, context_runner=context)


def step_invoke(path: Path) -> Callable[[], None]:
    """One bare invoke of the step model on zero inputs: its cost without the Python glue."""
    from export.tflite import interpreter

    runner = interpreter(path, num_threads=1)
    for detail in runner.get_input_details():
        runner.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return runner.invoke


def main() -> int:
    args = parse_args()
    quiet_tensorflow()
    out_dir = Path(args.out_dir)
    info_path = out_dir / "export_info.json"
    if not info_path.exists():
        print(f"error: {info_path} not found: {out_dir} is not an export directory",
              file=sys.stderr)
        return 1
    info = json.loads(info_path.read_text())

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from export.data import synthetic_canvases

    grid = info["grid"]
    image = synthetic_canvases(grid["img_size"], 1, seed=1,
                               channels=info["config"].get("channels", 1))  # uint8 [1, I, I, C]
    timings: dict[str, float] = {}

    run_dir = args.run_dir or info.get("run_dir")
    if run_dir and Path(run_dir).is_dir():
        from tf_glimpse.training.runs import load_agent

        _, agent = load_agent(run_dir)
        episode = tf.function(lambda x: agent(x, mode="greedy")["step_logits"])
        pixels = tf.constant(image.astype(np.float32) / 255.0)
        timings["keras_ms"] = median_ms(lambda: episode(pixels).numpy(), args.runs, args.warmup)
    else:
        print(f"(no run directory {run_dir!r}: Keras timing skipped)")

    serving = tf.saved_model.load(str(out_dir / SAVED_MODEL)).signatures["serving_default"]
    images = tf.constant(image)
    timings["saved_model_ms"] = median_ms(lambda: serving(images=images)["probabilities"].numpy(),
                                          args.runs, args.warmup)

    sizes = {"saved_model_bytes": sum(f.stat().st_size for f in
                                      (out_dir / SAVED_MODEL).rglob("*") if f.is_file())}
    for variant in ("", "_dynamic", "_int8"):
        path = out_dir / f"glimpse_full{variant}.tflite"
        if path.exists():
            timings[f"tflite{variant}_ms"] = median_ms(tflite_episode(path, image), args.runs,
                                                       args.warmup)
            sizes[f"tflite{variant}_bytes"] = path.stat().st_size
    step_path = out_dir / "glimpse_step.tflite"
    if step_path.exists():
        timings["tflite_step_episode_ms"] = median_ms(step_episode(step_path, image, info),
                                                      args.runs, args.warmup)
        timings["tflite_step_invoke_ms"] = median_ms(step_invoke(step_path), args.runs,
                                                     args.warmup)
        sizes["tflite_step_bytes"] = step_path.stat().st_size

    steps, scales, patch = info["steps"], grid["scales"], grid["patch_size"]
    pixels_read = steps * scales * patch * patch
    canvas_pixels = grid["img_size"] ** 2
    print(f"one greedy episode, one image, one thread, median of {args.runs} runs "
          f"(T={steps}, I={grid['img_size']}, P={patch}, k={scales}, {grid['num_actions']} cells)")
    print(f"{'engine':<28}{'ms / image':>12}")
    for name, value in timings.items():
        note = "  (one step, bare invoke)" if name == "tflite_step_invoke_ms" else ""
        print(f"{name[:-3]:<28}{value:>12.3f}{note}")
    print(f"{'model':<28}{'bytes':>12}")
    for name, value in sizes.items():
        print(f"{name[:-6]:<28}{value:>12,d}")
    print(f"pixels read per image: {pixels_read} of {canvas_pixels} "
          f"({100.0 * pixels_read / canvas_pixels:.1f}% of the canvas)")
    result = {name: round(value, 4) for name, value in timings.items()}
    result.update(sizes, pixels_read=pixels_read, canvas_pixels=canvas_pixels,
                  runs=args.runs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
