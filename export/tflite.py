"""TFLite conversion (builtin ops only), op listing and running with LiteRT.

`tf.lite.TFLiteConverter` is still the converter in TF 2.21; the deprecated
`tf.lite.Interpreter` is not used: models run with
`ai_edge_litert.interpreter.Interpreter`.

Quantization (`--quantize`):

* ``none``    - float32 weights and activations.
* ``dynamic`` - int8 weights, float activations (no data needed).
* ``int8``    - the fully connected layers (`INT8_OPS`: every matrix product
  with a weight matrix, which is nearly all of the model's multiply-adds) run
  with int8 weights (per channel) and int8 activations, calibrated on a
  representative dataset of validation canvases; every other op stays float.
  Inputs and outputs stay as in the float model (uint8 images / float glimpses
  in, float probabilities out).  The selection is the converter's own
  (`tf.lite.experimental.QuantizationDebugger` with `denylisted_ops`).

Why not every op in int8: measured on the main command's run (64x64 cluttered,
1,000 validation canvases, one thread, XNNPACK), float 0.933 accuracy and
0.213 ms per episode.  Every op in int8: 0.902 and 0.244 ms.  The accuracy went
in the classifier's attention scores: their range is thousands (a peaked
attention), so one int8 step is about 4 logits after the 1/sqrt(d) scaling and
the softmax can no longer tell the glimpses apart (keeping the score path
alone in float gave 0.933).  The time went in int8 elementwise ops, which
XNNPACK runs slower here than float ones.  Fully connected layers alone in int8:
0.935 and 0.155 ms.
"""

from __future__ import annotations

import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from export import QUANTIZE_MODES
from export.drive_step_model import open_interpreter
from export.errors import ExportError
from export.saved_model import SIGNATURE
from tf_glimpse.quiet import tensorflow_notices_silenced

# The ops that `--quantize int8` quantizes (weights and activations); see the docstring.
INT8_OPS = frozenset({"FULLY_CONNECTED"})
_BUILTIN_NAMES = {value: name for name, value in vars(schema.BuiltinOperator).items()
                  if not name.startswith("_")}
# What int8 keeps in float: every other builtin op (a denylist naming ops the model
# lacks costs nothing, and needs no float conversion first to list the ones it has).
_FLOAT_OPS = sorted(set(_BUILTIN_NAMES.values()) - INT8_OPS)


def convert(function: tf.types.experimental.ConcreteFunction, model: keras.Model,
            quantize: str = "none",
            representative: Callable[[], Iterable[list[np.ndarray]]] | None = None,
            ) -> tuple[bytes, dict]:
    """Convert a concrete function of `model` to a TFLite flatbuffer with builtin ops only.

    Returns the model bytes and a dict describing the conversion (``quantize``,
    ``op_sets``, and for int8 ``int8_ops``).  Raises ExportError if the converter needs
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
        op_sets = ["TFLITE_BUILTINS_INT8", "TFLITE_BUILTINS"]  # Both: some ops stay float.
        flatbuffer = _convert(saved, quantize, representative, op_sets, _FLOAT_OPS)
    return flatbuffer, {"quantize": quantize, "op_sets": op_sets, "int8_ops": sorted(INT8_OPS)}


def _convert(saved: str, quantize, representative, op_sets,
             float_ops: list[str] = ()) -> bytes:
    """The TFLite model of the SavedModel `saved` with `op_sets`, checked for Flex ops.

    For int8, the ops named in `float_ops` (TFLite builtin names) stay float.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, name) for name in op_sets]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":
        converter.representative_dataset = representative
    try:
        with warnings.catch_warnings(), tensorflow_notices_silenced():
            # The int8 calibrator still uses the deprecated tf.lite.Interpreter.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            if quantize == "int8":
                # Calibrates, then quantizes all but `float_ops` (the converter's own
                # selective quantization; no debug data are needed for this).
                options = tf.lite.experimental.QuantizationDebugOptions(
                    denylisted_ops=list(float_ops))
                debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_options=options)
                model = debugger.get_nondebug_quantized_model()
            else:
                model = converter.convert()
    except Exception as error:
        raise ExportError(f"TFLite conversion with {'+'.join(op_sets)} failed: "
                          f"{str(error).strip().splitlines()[-1]}") from error
    flex = flex_ops(model)
    if flex:
        raise ExportError(f"the TFLite model needs Flex ops {flex}; only builtin ops are allowed")
    return model


# ---------------------------------------------------------------------- op lists
def _operators(model: bytes | str | Path):
    """Yield (op name, subgraph, operator) for every operator of a .tflite model.

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
    for graph_index in range(parsed.SubgraphsLength()):
        graph = parsed.Subgraphs(graph_index)
        for op_index in range(graph.OperatorsLength()):
            operator = graph.Operators(op_index)
            yield names[operator.OpcodeIndex()], graph, operator


def op_counts(model: bytes | str | Path) -> Counter:
    """How often each op occurs in a .tflite model (all subgraphs), read from the flatbuffer."""
    return Counter(name for name, _, _ in _operators(model))


def int8_op_counts(model: bytes | str | Path) -> Counter:
    """How often each op runs in int8 (has an int8 input or output), QUANTIZE/DEQUANTIZE aside."""
    return Counter(
        name for name, graph, operator in _operators(model)
        if name not in ("QUANTIZE", "DEQUANTIZE") and any(
            index >= 0 and graph.Tensors(index).Type() == schema.TensorType.INT8
            for index in [*operator.InputsAsNumpy(), *operator.OutputsAsNumpy()]))


def flex_ops(model: bytes | str | Path) -> list[str]:
    """The Flex (TF Select) ops of a .tflite model; empty for a builtin-only model."""
    return sorted(name for name in op_counts(model) if name.startswith("Flex"))


# ----------------------------------------------------------------------- running
def interpreter(model: bytes | str | Path, num_threads: int = 1) -> Interpreter:
    """A LiteRT interpreter with its tensors allocated (see `open_interpreter`)."""
    return open_interpreter(model, num_threads)


def run_full(model: bytes | str | Path | Interpreter, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run glimpse_full.tflite on uint8 images [B, I, I, C], one image at a time."""
    runner = model if isinstance(model, Interpreter) else interpreter(model)
    episode = runner.get_signature_runner()
    results = [episode(images=np.asarray(image[None], np.uint8)) for image in images]
    return {name: np.concatenate([r[name] for r in results]) for name in results[0]}
