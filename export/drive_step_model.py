"""Drive `glimpse_step.tflite` one glimpse at a time, reading only the requested patches.

This module needs only numpy and ai_edge_litert (no TensorFlow, no tf_glimpse):
copy it next to `glimpse_step.tflite` and `export_info.json` on the device.

    import json
    import numpy as np
    from export.drive_step_model import open_interpreter, read_glimpse

    info = json.load(open("OUT_DIR/export_info.json"))
    step = open_interpreter("OUT_DIR/glimpse_step.tflite").get_signature_runner()
    state = {name: np.zeros(shape, info["step_model"]["state_dtypes"][name])
             for name, shape in info["step_model"]["state_shapes"].items()}
    action = int(np.argmax(info["initial_logits"]))  # the first cell: nothing seen yet
    for t in range(info["steps"]):
        glimpse = read_glimpse(image, action, info["grid"])  # image: uint8 [I, I]
        out = step(glimpse=glimpse, action=np.array([action], np.int32),
                   step=np.array([t], np.int32), **state)
        state.update({name: out[name] for name in state if name in out})
        action = int(np.argmax(out["next_logits"]))  # where to look next
    class_id = int(np.argmax(out["probabilities"]))

`run_episode` is that loop, also returning the actions, locations and class
probabilities after every step; the tests check it against glimpse_full.tflite.

An agent with a context network (``config.context``) chooses its first cell from a
coarse view of the whole canvas: export_info.json then names ``context_model``
(glimpse_context.tflite: ``images`` uint8 [1, I, I, C] -> ``lstm_h``, ``lstm_c``,
``next_logits``), which `first_state` runs instead of reading ``initial_logits``.
With a saliency map it also gives ``saliency``, a step-model input that stays the
same for the whole episode (the loop above keeps it: the step model does not return it).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import numpy as np

# What LiteRT prints to file descriptor 2 when it creates its default delegate, whatever
# TF_CPP_MIN_LOG_LEVEL says; `open_interpreter` drops this line and passes on the rest.
_DELEGATE_NOTICE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def _area_weights(start: float, patch: int, factor: int) -> tuple[np.ndarray, int]:
    """Weights [P, W] of the P outputs over the W pixels first..first+W-1, and `first`.

    Output i is the mean of the `factor` bilinear samples at pixel coordinates
    ``start + i * factor + u`` (the convention of `tf_glimpse.model.sensor`): exactly pixel
    start + i at factor 1, the mean of a block of `factor` pixels per axis otherwise.
    """
    positions = start + np.arange(patch)[:, None] * factor + np.arange(factor)[None, :]
    first, last = int(np.floor(positions.min())), int(np.ceil(positions.max()))
    pixels = np.arange(first, last + 1)
    weights = np.maximum(0.0, 1.0 - np.abs(positions[..., None] - pixels)).mean(axis=1)
    return weights.astype(np.float32), first


def _window(image: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """image[top:top+height, left:left+width], reading zeros outside the image."""
    size = image.shape[0]
    window = np.zeros((height, width, image.shape[-1]), np.float32)
    rows = slice(max(top, 0), min(top + height, size))
    cols = slice(max(left, 0), min(left + width, size))
    if rows.start < rows.stop and cols.start < cols.stop:
        window[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left] = \
            image[rows, cols]
    return window


def read_glimpse(image: np.ndarray, action: int, grid: dict) -> np.ndarray:
    """The glimpse [1, k, P, P, C] float32 (0..1) at grid cell `action`, as the model's sensor
    sees it.

    `image` is uint8 [I, I] or [I, I, C] (0..255) or float [I, I(, C)] already in
    0..1; `grid` is `export_info["grid"]`.  Only the pixels under the k windows
    are read: at scale 0 exactly the P x P patch.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype == np.uint8:
        pixels = image.astype(np.float32) / np.float32(255.0)
    else:
        pixels = image.astype(np.float32)
    patch, size = grid["patch_size"], grid["size"]
    row, col = divmod(int(action), size)
    top = grid["origin"] + row * grid["stride"]
    left = grid["origin"] + col * grid["stride"]
    scales = []
    for scale in range(grid["scales"]):
        factor = 2 ** scale
        margin = patch * (factor - 1.0) / 2.0
        row_weights, first_row = _area_weights(top - margin, patch, factor)
        col_weights, first_col = _area_weights(left - margin, patch, factor)
        window = _window(pixels, first_row, first_col, row_weights.shape[1],
                         col_weights.shape[1])
        scales.append(np.einsum("pl,lmc,qm->pqc", row_weights, window, col_weights))
    return np.stack(scales)[None].astype(np.float32)


def zero_state(info: dict) -> dict[str, np.ndarray]:
    """The step model's state before the first glimpse (all zeros, each of its dtype)."""
    return {name: np.zeros(shape, info["step_model"]["state_dtypes"][name])
            for name, shape in info["step_model"]["state_shapes"].items()}


def first_state(info: dict, image: np.ndarray,
                context_runner=None) -> tuple[dict[str, np.ndarray], int]:
    """(The step model's state before the first glimpse, the first cell to look at).

    Without a context model: zeros and the argmax of ``initial_logits``.  With one,
    `context_runner` (its signature runner) reads the whole canvas `image` (uint8
    [I, I] or [I, I, C]) and sets the memory and the first cell.
    """
    state = zero_state(info)
    if not info.get("context_model"):
        return state, int(np.argmax(info["initial_logits"]))
    if context_runner is None:
        raise ValueError(f"this agent chooses its first cell from the whole canvas: pass "
                         f"context_runner, the signature runner of {info['context_model']}")
    image = np.asarray(image, np.uint8)
    image = (image[..., None] if image.ndim == 2 else image)[None]
    out = context_runner(images=image)
    state.update({name: out[name] for name in state if name in out})
    return state, int(np.argmax(out["next_logits"][0]))


def run_episode(step_runner, image: np.ndarray, info: dict,
                record: list | None = None, context_runner=None) -> dict[str, np.ndarray]:
    """One greedy episode with the step model: what glimpse_full.tflite computes in one call.

    Args:
      step_runner: `open_interpreter(...).get_signature_runner()` of glimpse_step.tflite.
      image: the canvas, uint8 [I, I] or [I, I, C].
      info: the parsed export_info.json.
      record: if given, the inputs of every step call are appended to it (as dicts).
      context_runner: the signature runner of the context model, when info names one.

    Returns:
      ``action_ids`` [T], ``locations`` [T, 2], ``step_probabilities`` [T, C],
      ``probabilities`` [C] and ``class_id``.
    """
    state, action = first_state(info, image, context_runner)
    actions, step_probabilities = [], []
    for t in range(info["steps"]):
        inputs = dict(glimpse=read_glimpse(image, action, info["grid"]),
                      action=np.array([action], np.int32), step=np.array([t], np.int32),
                      **state)
        if record is not None:
            record.append(inputs)
        out = step_runner(**inputs)
        state.update({name: out[name] for name in state if name in out})
        actions.append(action)
        step_probabilities.append(out["probabilities"][0])
        action = int(np.argmax(out["next_logits"][0]))
    centres = np.asarray(info["grid"]["centres"], np.float32)
    probabilities = step_probabilities[-1]
    return {
        "action_ids": np.asarray(actions, np.int32),
        "locations": centres[actions],
        "step_probabilities": np.stack(step_probabilities),
        "probabilities": probabilities,
        "class_id": int(np.argmax(probabilities)),
    }


def open_interpreter(model, num_threads: int = 1):
    """A LiteRT interpreter (model: a path or the model's bytes) with its tensors allocated.

    Measured here: the XNNPACK delegate fails to prepare some int8 models (seed
    experiment 1's: "failed to create XNNPACK runtime"); those run on the builtin
    kernels without the default delegates instead.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    source = ({"model_content": bytes(model)} if isinstance(model, (bytes, bytearray))
              else {"model_path": str(model)})
    with _without_delegate_notice():
        try:
            runner = Interpreter(**source, num_threads=num_threads)
            runner.allocate_tensors()
        except RuntimeError:
            runner = Interpreter(**source, num_threads=num_threads,
                                 experimental_op_resolver_type=(
                                     OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
            runner.allocate_tensors()
    return runner


@contextlib.contextmanager
def _without_delegate_notice():
    """Collect what the block writes to file descriptor 2 and pass it on afterwards, all
    but LiteRT's delegate notice (an error message, say, still reaches the user)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile("w+") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured if line.strip() != _DELEGATE_NOTICE]
            sys.stderr.write("".join(kept))


def context_runner(step_model_path, info: dict):
    """The signature runner of the context model beside the step model, or None."""
    if not info.get("context_model"):
        return None
    from pathlib import Path

    path = Path(step_model_path).parent / info["context_model"]
    return open_interpreter(path).get_signature_runner()


def run_episodes(model_path: str, images: np.ndarray, info: dict) -> dict[str, np.ndarray]:
    """`run_episode` for each of the uint8 images [B, I, I(, 1)], stacked like the full model's."""
    runner = open_interpreter(model_path).get_signature_runner()
    context = context_runner(model_path, info)
    episodes = [run_episode(runner, image, info, context_runner=context) for image in images]
    return {
        "action_ids": np.stack([e["action_ids"] for e in episodes]),
        "locations": np.stack([e["locations"] for e in episodes]),
        "step_probabilities": np.stack([e["step_probabilities"] for e in episodes]),
        "probabilities": np.stack([e["probabilities"] for e in episodes]),
        "class_ids": np.asarray([e["class_id"] for e in episodes], np.int32),
    }
