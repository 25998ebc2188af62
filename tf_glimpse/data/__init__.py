"""The data layer: IDX files, data set splits and the canvases the agent looks at.

Importing this package is light (numpy only).  The TensorFlow canvas pipeline
lives in `tf_glimpse.data.canvas`; its main names are also reachable from here
and import TensorFlow on first use.
"""

from __future__ import annotations

from typing import Any

from tf_glimpse.data.idx import DataError
from tf_glimpse.data.sources import Splits, load_splits, resolve_data_dir

_CANVAS_NAMES = ("canvas_dataset", "digit_boxes", "make_canvases", "split_dataset")

__all__ = ["DataError", "Splits", "load_splits", "resolve_data_dir", *_CANVAS_NAMES]


def __getattr__(name: str) -> Any:
    """Import the TensorFlow canvas module only when one of its names is used."""
    if name in _CANVAS_NAMES:
        from tf_glimpse.data import canvas

        return getattr(canvas, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
