"""Validation canvases for checking, calibrating and scoring exported models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tf_glimpse.config import GlimpseConfig


def validation_canvases(config: GlimpseConfig, count: int,
                        run_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` fixed validation canvases of a run: uint8 [n, I, I, C] and labels [n].

    The canvases are those of `split_dataset(..., "val")`, the ones training
    evaluated on; they are built as uint8 / 255, so rounding back to uint8 is exact.
    The run's `data_dir` is used if it exists here, else the usual search
    ($TF_GLIMPSE_DATA_DIR, data/<dataset>/).  Raises `tf_glimpse.data.DataError`
    when the data set is not found, and `tf_glimpse.training.runs.RunError` when it differs
    from the data the run `run_dir` began with.
    """
    from tf_glimpse.data import split_dataset
    from tf_glimpse.data.sources import config_splits
    from tf_glimpse.training.runs import check_data

    data_dir = config.data_dir if config.data_dir and Path(config.data_dir).is_dir() else None
    splits = config_splits(config.replace(data_dir=data_dir))
    if run_dir is not None:
        check_data(run_dir, splits, data_dir)
    images, labels, total = [], [], 0
    for batch in split_dataset(splits, config, "val"):
        images.append(np.rint(batch["image"].numpy() * 255.0).astype(np.uint8))
        labels.append(batch["label"].numpy())
        total += len(labels[-1])
        if total >= count:
            break
    if not images:
        return (np.zeros((0, config.img_size, config.img_size, 1), np.uint8),
                np.zeros((0,), np.int32))
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]


def synthetic_canvases(img_size: int, count: int, seed: int = 0, channels: int = 1
                       ) -> np.ndarray:
    """Deterministic stand-in canvases uint8 [n, I, I, C] when no data set is at hand.

    Sparse bright strokes on black, roughly like digits, so every glimpse
    location gets a varied input.
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((count, img_size, img_size, channels), np.uint8)
    for image in images:
        for _ in range(rng.integers(3, 8)):
            top, left = rng.integers(0, img_size - 4, size=2)
            height, width = rng.integers(1, 12, size=2)
            image[top:top + height, left:left + width] = rng.integers(64, 256, size=channels)
    return images
