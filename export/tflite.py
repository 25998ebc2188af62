"""TFLite conversion (builtin ops only), op listing and running with LiteRT.

`tf.lite.TFLiteConverter` is still the converter in TF 2.21; the deprecated
`tf.lite.Interpreter` is not used: models run with
`ai_edge_litert.interpreter.Interpreter`.

Quantization (`--quantize`):

* ``none``    - float32 weights and activations.
* ``dynamic`` - int8 weights, float activations (no data needed).
* ``int8``    - int8 weights and activations, calibrated on a representative
  dataset of validation canvases; inputs and outputs stay as in the float model
  (uint8 images / float glimpses in, float probabilities out).  Ops without an
  int8 kernel would stay float (TFLITE_BUILTINS next to TFLITE_BUILTINS_INT8);
  `convert` first tries int8 only and records which set it needed.
"""

from __future__ import annotations

import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import keras
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from export import QUANTIZE_MODES
from export.drive_step_model import open_interpreter
from export.errors import ExportError
from export.saved_model import SIGNATURE
_BUILTIN_NAMES = {value: name for name, value in vars(schema.BuiltinOperator).items()
                  if not name.startswith("_")}


def convert(function: tf.types.experimental.ConcreteFunction, model: keras.Model,
            quantize: str = "none",
            representative: Callable[[], Iterable[list[np.ndarray]]] | None = None,
            ) -> tuple[bytes, dict]:
    """Convert a concrete function of `model` to a TFLite flatbuffer with builtin ops only.

    Returns the model bytes and a dict describing the conversion
    (``quantize``, ``op_sets``).  Raises ExportError if the converter needs
    anything but builtin ops (e.g. Flex TensorList ops of a `GRU(unroll=False)`).
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize={quantize!r}; valid values: {', '.join(QUANTIZE_MODES)}")
    if quantize == "int8" and representative is None:
        raise ValueError("quantize='int8' needs a representative dataset")
    # Through a SavedModel written by keras.export.ExportArchive, which tracks the
    # model's Keras 3 variables (`from_concrete_functions` of a tf.Module does not see
    # them, and would convert NaN weights).  Written once, for every attempt below.
    with tempfile.TemporaryDirectory() as saved:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(SIGNATURE, function,
                             input_signature=list(function.structured_input_signature[0]))
        archive.write_out(saved, verbose=False)
        if quantize != "int8":
            return _convert(saved, quantize, None, ["TFLITE_BUILTINS"]), {
                "quantize": quantize, "op_sets": ["TFLITE_BUILTINS"]}
        try:
            op_sets = ["TFLITE_BUILTINS_INT8"]
            flatbuffer = _convert(saved, quantize, representative, op_sets)
        except Exception:  # Some op has no int8 kernel: keep it in float.
            op_sets = ["TFLITE_BUILTINS_INT8", "TFLITE_BUILTINS"]
            flatbuffer = _convert(saved, quantize, representative, op_sets)
    return flatbuffer, {"quantize": quantize, "op_sets": op_sets}


def _convert(saved: str, quantize, representative, op_sets) -> bytes:
    """The TFLite model of the SavedModel `saved` with `op_sets`, checked for Flex ops."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, name) for name in op_sets]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":
        converter.representative_dataset = representative
    try:
        with warnings.catch_warnings():  # The int8 calibrator still uses tf.lite.Interpreter.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            model = converter.convert()
    except Exception as error:
        raise ExportError(f"TFLite conversion with {'+'.join(op_sets)} failed: "
                          f"{str(error).strip().splitlines()[-1]}") from error
    flex = flex_ops(model)
    if flex:
        raise ExportError(f"the TFLite model needs Flex ops {flex}; only builtin ops are allowed")
    return model


# ---------------------------------------------------------------------- op lists
def op_counts(model: bytes | str | Path) -> Counter:
    """How often each op occurs in a .tflite model (all subgraphs), read from the flatbuffer.

    Builtin ops are named as in the TFLite schema (``FULLY_CONNECTED``); custom
    ops by their custom code, so Flex (TF Select) ops show as ``FlexXxx``.
    """
    buffer = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    parsed = schema.Model.GetRootAs(buffer, 0)
    names = []
    for index in range(parsed.OperatorCodesLength()):
        code = parsed.OperatorCodes(index)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append(code.CustomCode().decode())
        else:
            names.append(_BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}"))
    counts = Counter()
    for graph_index in range(parsed.SubgraphsLength()):
        graph = parsed.Subgraphs(graph_index)
        for op_index in range(graph.OperatorsLength()):
            counts[names[graph.Operators(op_index).OpcodeIndex()]] += 1
    return counts


def flex_ops(model: bytes | str | Path) -> list[str]:
    """The Flex (TF Select) ops of a .tflite model; empty for a builtin-only model."""
    return sorted(name for name in op_counts(model) if name.startswith("Flex"))


# ----------------------------------------------------------------------- running
def interpreter(model: bytes | str | Path, num_threads: int = 1) -> Interpreter:
    """A LiteRT interpreter with its tensors allocated (see `open_interpreter`)."""
    return open_interpreter(model, num_threads)


def run_full(model: bytes | str | Path | Interpreter, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run glimpse_full.tflite on uint8 images [B, I, I, 1], one image at a time."""
    runner = model if isinstance(model, Interpreter) else interpreter(model)
    episode = runner.get_signature_runner()
    results = [episode(images=np.asarray(image[None], np.uint8)) for image in images]
    return {name: np.concatenate([r[name] for r in results]) for name in results[0]}
