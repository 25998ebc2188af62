"""A quiet start: TensorFlow's C++ start-up logging off unless the user asked for it.

TensorFlow 2.21 prints its start-up notices (oneDNN, "Could not find cuda drivers",
"failed call to cuInit" on a CPU-only machine) through absl before its logging is
initialised, so TF_CPP_MIN_LOG_LEVEL does not silence them.  `quiet_tensorflow()`
therefore imports TensorFlow and lets it find its devices with the process's C-level
stderr pointed at /dev/null, and hides Python warnings that are not the user's
business (TensorFlow Probability's distutils deprecation).

A user who sets TF_CPP_MIN_LOG_LEVEL themselves gets TensorFlow's own behaviour:
nothing is silenced.  The command lines call this before anything imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings


@contextlib.contextmanager
def _stderr_silenced():
    """Point file descriptor 2 at /dev/null inside the block (C and Python writes alike)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def tensorflow_notices_silenced():
    """Silence C-level stderr inside the block, unless TF_GLIMPSE_DEBUG=1 is set.

    For the TFLite conversions only: the converter prints what it does ("fully_quantize:
    0, ...", its MLIR passes) straight to file descriptor 2, and there is no switch for
    it.  A failed conversion still raises a Python exception, which the caller reports
    once the block has ended.  Nothing else is run silenced: the graphs of the agent
    give grappler no cause for notices (see `GlimpseEncoder`), and a test checks the
    report's and the export's output for TensorFlow's log lines.
    """
    if os.environ.get("TF_GLIMPSE_DEBUG"):
        yield
        return
    with _stderr_silenced():
        yield


def quiet_tensorflow() -> bool:
    """Import TensorFlow quietly unless TF_CPP_MIN_LOG_LEVEL is set; returns whether it did.

    Safe to call more than once; does nothing when TensorFlow is already imported.
    """
    warnings.filterwarnings("ignore", category=DeprecationWarning,
                            module=r"tensorflow_probability.*")
    warnings.filterwarnings("ignore", message=r".*distutils Version classes are deprecated.*")
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    with _stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()  # Device discovery prints the CUDA notices.
    return True
