"""`export_run`: a train.py run directory -> SavedModel + TFLite models + export_info.json.

Everything is written to a temporary directory beside OUT_DIR and renamed to
OUT_DIR only once every model has been written *and checked*:

1. the SavedModel, reloaded from disk, against the Keras model (1e-5);
2. glimpse_full.tflite against the Keras model (identical ids, 1e-4);
3. glimpse_step.tflite, driven glimpse by glimpse, against glimpse_full.tflite
   (identical actions and classes, 1e-4);
4. no model contains a Flex op.

The checks run on validation canvases of the run when its data set is found
(`TF_GLIMPSE_DATA_DIR`), else on synthetic canvases.  Any failure raises and
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from export.errors import ExportError

FULL_MODEL = "glimpse_full.tflite"
STEP_MODEL = "glimpse_step.tflite"
CONTEXT_MODEL = "glimpse_context.tflite"  # Only for agents with a context network.
INFO_FILE = "export_info.json"
# TensorFlow Serving's layout: a model base path (OUT/saved_model) holding numbered versions.
SAVED_MODEL = "saved_model/1"
CLASS_NAMES_FILE = "class_names.txt"  # One name per line, line i = class id i.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")


def class_names(config, run_dir: str | Path | None = None) -> list[str]:
    """The names of the classes, by class id: those the run's data.json recorded (a folder's
    subfolders, a TFDS set's labels), Fashion-MNIST's, else the ids themselves."""
    from tf_glimpse.training.runs import recorded_class_names

    names = recorded_class_names(run_dir) if run_dir is not None else None
    if names and len(names) == config.num_classes:
        return names
    if config.dataset == "fashion_mnist":
        return list(FASHION_MNIST_CLASSES)
    return [str(index) for index in range(config.num_classes)]


def quantized_name(model_file: str, quantize: str) -> str:
    """glimpse_full.tflite -> glimpse_full_int8.tflite (or _dynamic)."""
    stem = model_file[: -len(".tflite")]
    return f"{stem}_{quantize}.tflite"


def export_run(run_dir: str | Path, out_dir: str | Path, quantize: str = "none",
               overwrite: bool = False, verify_count: int = 64, eval_count: int = 1000,
               calibration_count: int = 200, kind: str = "best",
               log: Callable[[str], None] = print, max_accuracy_drop: float = 0.01) -> dict:
    """Export the trained agent of `run_dir` to `out_dir`; returns the export_info dict.

    `run_dir` is a train.py run directory (its `kind` checkpoint), or a `.keras` file
    (a run's agent.keras, or any saved `GlimpseAgent`).

    A quantized model that loses more than `max_accuracy_drop` (a fraction: 0.01 is
    one point) of the float model's accuracy on the scored validation canvases fails
    the export with ExportError.

    Raises `tf_glimpse.training.runs.RunError` for a missing or checkpoint-less run,
    `ExportError` for a model that fails a check, `FileExistsError` if
    `out_dir` exists and `overwrite` is False.  Nothing is left in `out_dir`
    unless the whole export succeeds.
    """
    from export import QUANTIZE_MODES

    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize={quantize!r}; valid values: {', '.join(QUANTIZE_MODES)}")
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass --overwrite to replace it")

    from tf_glimpse.training.runs import latest_checkpoint, load_agent, load_keras_agent

    if Path(run_dir).suffix == ".keras":  # The data check reads the run beside it, if any.
        (config, agent), checkpoint = load_keras_agent(run_dir), Path(run_dir)
        run_dir = Path(run_dir).parent
    else:
        config, agent = load_agent(run_dir, kind)  # RunError before anything is written.
        checkpoint = latest_checkpoint(run_dir, kind)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        info = _write_all(config, agent, staging, quantize, verify_count, eval_count,
                          calibration_count, log, max_accuracy_drop, Path(run_dir))
        info.update(run_dir=str(Path(run_dir).resolve()), checkpoint=str(checkpoint))
        names = class_names(config, run_dir)
        (staging / CLASS_NAMES_FILE).write_text("\n".join(names) + "\n")
        info["class_names"] = names
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        _replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info


def _replace_dir(staging: Path, out_dir: Path) -> None:
    """Move `staging` to `out_dir`, replacing an old export only after the new one is complete."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, old / "export")
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _check_images(config, count: int, log, run_dir: Path
                  ) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Validation canvases (with labels) if the data set is found, else synthetic ones."""
    from export.data import synthetic_canvases, validation_canvases
    from tf_glimpse.data import DataError

    try:
        images, labels = validation_canvases(config, count, run_dir)
        if len(images):
            return images, labels, "validation canvases"
    except DataError as error:
        log(f"  data set not found ({str(error).splitlines()[0]}); checking on synthetic canvases")
    return (synthetic_canvases(config.img_size, count, channels=config.channels), None,
            "synthetic canvases")


def _write_all(config, agent, out: Path, quantize: str, verify_count: int, eval_count: int,
               calibration_count: int, log, max_accuracy_drop: float, run_dir: Path) -> dict:
    import tensorflow as tf

    from export import saved_model, tflite
    from export.drive_step_model import run_episodes
    from export.step_model import ContextModule, StepModule, initial_logits, state_shapes

    started = time.perf_counter()
    scored = max(verify_count, eval_count)
    extra = calibration_count if quantize == "int8" else 0
    images, labels, source = _check_images(config, scored + extra, log, run_dir)
    if quantize == "int8" and labels is None:
        raise ExportError("--quantize int8 calibrates on validation canvases: set "
                          "TF_GLIMPSE_DATA_DIR (or the run's data_dir) to the data set")
    # Calibrate on canvases that are not scored, unless the validation set is too small.
    calibration = images[scored:] if len(images) > scored else images[-calibration_count:]
    images = images[:scored]
    labels = None if labels is None else labels[:scored]
    check_images = images[:verify_count]
    first_logits = initial_logits(agent)
    info = _describe(config, agent, None if first_logits is None else first_logits.numpy(),
                     state_shapes(agent))

    log(f"writing {SAVED_MODEL}/")
    episode = saved_model.save(agent, out / SAVED_MODEL)
    keras_outputs = {k: v.numpy() for k, v in episode.episode(tf.constant(check_images)).items()}
    saved_error = saved_model.verify(out / SAVED_MODEL, episode, check_images)

    log(f"writing {FULL_MODEL} (the whole episode)")
    full_model, _ = tflite.convert(episode.single_image_function(), agent)
    (out / FULL_MODEL).write_bytes(full_model)
    full_outputs = tflite.run_full(full_model, check_images)
    full_error = saved_model.compare(keras_outputs, full_outputs, 1e-4, FULL_MODEL)

    if agent.context is not None:
        log(f"writing {CONTEXT_MODEL} (the memory's initial state from the whole canvas)")
        starter = ContextModule(agent)
        context_model, _ = tflite.convert(starter.start_function(), agent)
        (out / CONTEXT_MODEL).write_bytes(context_model)
        info["context_model"] = CONTEXT_MODEL
    log(f"writing {STEP_MODEL} (one glimpse step)")
    stepper = StepModule(agent)
    step_model, _ = tflite.convert(stepper.step_function(), agent)
    (out / STEP_MODEL).write_bytes(step_model)
    step_outputs = run_episodes(out / STEP_MODEL, check_images, info)
    step_error = saved_model.compare(full_outputs, step_outputs, 1e-4,
                                     f"{STEP_MODEL} driven step by step")

    log(f"  checked on {len(check_images)} {source}: SavedModel {saved_error:.1e}, "
        f"full TFLite {full_error:.1e}, step TFLite {step_error:.1e} (max abs error)")
    info["verification"] = {
        "images": f"{len(check_images)} {source}",
        "saved_model_vs_keras_max_abs_error": saved_error,
        "full_tflite_vs_keras_max_abs_error": full_error,
        "step_tflite_vs_full_tflite_max_abs_error": step_error,
    }
    info["files"] = {SAVED_MODEL: _size(out / SAVED_MODEL), FULL_MODEL: len(full_model),
                     STEP_MODEL: len(step_model)}
    info["ops"] = {FULL_MODEL: dict(tflite.op_counts(full_model)),
                   STEP_MODEL: dict(tflite.op_counts(step_model))}
    if agent.context is not None:
        info["files"][CONTEXT_MODEL] = len(context_model)
        info["ops"][CONTEXT_MODEL] = dict(tflite.op_counts(context_model))

    if quantize != "none":
        info["quantization"] = _quantize(episode, stepper, out, quantize, images, labels,
                                         source, calibration, info, log, max_accuracy_drop)
        for name in (quantized_name(FULL_MODEL, quantize), quantized_name(STEP_MODEL, quantize)):
            info["files"][name] = (out / name).stat().st_size
            info["ops"][name] = dict(tflite.op_counts(out / name))
    info["export_seconds"] = round(time.perf_counter() - started, 1)
    return info


def _quantize(episode, stepper, out: Path, quantize: str, images: np.ndarray,
              labels: np.ndarray | None, source: str, calibration: np.ndarray, info: dict,
              log, max_accuracy_drop: float) -> dict:
    """Write the quantized full and step models; compare their accuracy with the float ones.

    int8 calibrates the full model on `calibration` canvases and the step model on
    the inputs its float version sees at every step of their episodes.
    """
    from export import tflite
    from export.drive_step_model import context_runner, run_episode, run_episodes

    representative_full = representative_step = None
    if quantize == "int8":
        step_inputs: list[dict] = []
        float_step = tflite.interpreter(out / STEP_MODEL).get_signature_runner()
        context = context_runner(out / STEP_MODEL, info)
        for image in calibration:
            run_episode(float_step, image, info, record=step_inputs, context_runner=context)

        # Keyed by input name: the flatbuffer's input order is not the function's.
        def representative_full():
            for image in calibration:
                yield {"images": image[None]}

        def representative_step():
            yield from step_inputs

    full_file = quantized_name(FULL_MODEL, quantize)
    step_file = quantized_name(STEP_MODEL, quantize)
    log(f"writing {full_file} and {step_file}")
    agent = episode.agent
    full_model, full_details = tflite.convert(episode.single_image_function(), agent, quantize,
                                              representative_full)
    (out / full_file).write_bytes(full_model)
    step_model, step_details = tflite.convert(stepper.step_function(), agent, quantize,
                                              representative_step)
    (out / step_file).write_bytes(step_model)

    report = {"mode": quantize, "op_sets": {full_file: full_details["op_sets"],
                                            step_file: step_details["op_sets"]}}
    if quantize == "int8":
        report["calibration"] = f"{len(calibration)} {source}"
        report["int8_ops"] = full_details["int8_ops"]  # The rest stays float (export/tflite.py).
        # What the flatbuffers hold: per model, the ops that run in int8.
        report["ops_in_int8"] = {full_file: dict(tflite.int8_op_counts(full_model)),
                                 step_file: dict(tflite.int8_op_counts(step_model))}
    if labels is None:
        report["accuracy"] = "not measured (no data set)"
        return report
    float_full = tflite.run_full(out / FULL_MODEL, images)
    quant_full = tflite.run_full(out / full_file, images)
    quant_step = run_episodes(out / step_file, images, info)
    float_accuracy = float(np.mean(float_full["class_ids"] == labels))
    report.update({
        "images": f"{len(images)} {source}",
        "float_accuracy": float_accuracy,
        "full_accuracy": float(np.mean(quant_full["class_ids"] == labels)),
        "step_accuracy": float(np.mean(quant_step["class_ids"] == labels)),
        "full_agreement_with_float": float(np.mean(quant_full["class_ids"]
                                                   == float_full["class_ids"])),
        "full_same_actions_as_float": float(np.mean(np.all(
            quant_full["action_ids"] == float_full["action_ids"], axis=1))),
    })
    report["full_accuracy_change"] = report["full_accuracy"] - float_accuracy
    report["step_accuracy_change"] = report["step_accuracy"] - float_accuracy
    log(f"  accuracy on {len(images)} {source}: float {float_accuracy:.4f}, {quantize} full "
        f"{report['full_accuracy']:.4f}, {quantize} step {report['step_accuracy']:.4f}")
    worst = -min(report["full_accuracy_change"], report["step_accuracy_change"])
    if worst > max_accuracy_drop:
        raise ExportError(
            f"--quantize {quantize} loses {100 * worst:.1f} points of accuracy on {len(images)} "
            f"{source} (float {float_accuracy:.4f}, {quantize} full "
            f"{report['full_accuracy']:.4f}, step {report['step_accuracy']:.4f}), more than "
            f"--max_accuracy_drop {max_accuracy_drop:g}; nothing was written. Use --quantize "
            f"dynamic, or allow a larger drop")
    return report


def _describe(config, agent, initial: np.ndarray | None, shapes: dict) -> dict:
    """The export_info.json fields that describe the models' interfaces."""
    from export.step_model import STATE_DTYPES

    grid = agent.grid
    image_shape = [grid.img_size, grid.img_size, config.channels]
    glimpse_shape = [config.scales, grid.patch_size, grid.patch_size, config.channels]
    return {
        "format_version": 1,
        "config": config.to_dict(),
        "steps": config.steps,
        "num_classes": config.num_classes,
        "grid": {"img_size": grid.img_size, "patch_size": grid.patch_size,
                 "stride": grid.stride, "scales": config.scales, "size": grid.size,
                 "origin": grid.origin, "num_actions": grid.num_actions,
                 "centres": grid.centres().tolist()},
        # None for an agent with a context network: its first cell depends on the image.
        "initial_logits": None if initial is None else [float(v) for v in initial],
        "initial_action": None if initial is None else int(np.argmax(initial)),
        "images_input": {"name": "images", "dtype": "uint8", "shape": [None, *image_shape],
                         "range": "0..255 (the model divides by 255)"},
        # Every TFLite model's inputs: name -> dtype and shape (batch size 1).
        "tflite_inputs": {
            FULL_MODEL: {"images": {"dtype": "uint8", "shape": [1, *image_shape]}},
            STEP_MODEL: {
                "glimpse": {"dtype": "float32",
                            "shape": [1, *glimpse_shape]},
                "action": {"dtype": "int32", "shape": [1]},
                "step": {"dtype": "int32", "shape": [1]},
                **{name: {"dtype": STATE_DTYPES.get(name, "float32"), "shape": shape}
                   for name, shape in shapes.items()}},
            **({CONTEXT_MODEL: {"images": {"dtype": "uint8", "shape": [1, *image_shape]}}}
               if config.context else {}),
        },
        "step_model": {
            "inputs": {"glimpse": [1, *glimpse_shape],
                       "action": [1], "step": [1], **shapes},
            # Every state tensor comes back but the saliency map, the same at every step.
            "outputs": ["next_logits", "probabilities",
                        *(name for name in shapes if name != "saliency")],
            "state_shapes": shapes,
            "state_dtypes": {name: STATE_DTYPES.get(name, "float32") for name in shapes},
        },
    }


def _size(path: Path) -> int:
    """Total bytes of the files under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
