"""Export a trained glimpse agent for serving: SavedModel and TFLite.

    python -m export RUN_DIR --out OUT_DIR [--quantize none|dynamic|int8] [--overwrite]

writes

* ``OUT_DIR/saved_model/1/``        signature ``serving_default``: ``images`` uint8
  [B, I, I, C] (pixel values 0..255; C = 1 or 3) -> ``probabilities`` [B, C], ``class_ids`` [B],
  ``locations`` [B, T, 2] (normalised patch centres x, y), ``action_ids`` [B, T],
  ``step_probabilities`` [B, T, C]; greedy policy, so deterministic.
* ``OUT_DIR/glimpse_full.tflite``   the whole episode for one image: uint8 [1, I, I, C]
  in, the same five outputs (signature ``serving_default``).
* ``OUT_DIR/glimpse_step.tflite``   one glimpse step with explicit state, for sensors
  that read only the requested patch (`export.step_model`, driven by
  `export.drive_step_model`).
* ``OUT_DIR/glimpse_{full,step}_{dynamic,int8}.tflite`` with ``--quantize``.
* ``OUT_DIR/export_info.json``      grid, T, the first cell's ``initial_logits``, the
  step model's state shapes, the checks that were run, sizes, op lists and the
  quantized models' accuracy change.

All TFLite models use builtin ops only (no Flex).  Modules: `episode` (the
tf.Module of one episode), `saved_model`, `step_model`, `tflite` (conversion, op
lists), `drive_step_model` (the step loop, numpy + LiteRT only), `pipeline`
(`export_run`).
"""

from export.errors import ExportError

# The --quantize modes (defined here, without TensorFlow, for the command line's --help).
QUANTIZE_MODES = ("none", "dynamic", "int8")

__all__ = ["QUANTIZE_MODES", "ExportError", "export_run"]


def export_run(*args, **kwargs) -> dict:
    """`export.pipeline.export_run` (imported on first use: it pulls in TensorFlow)."""
    from export.pipeline import export_run as run

    return run(*args, **kwargs)
