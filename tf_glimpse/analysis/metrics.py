"""Episode metrics: accuracy after each step and glimpse hits on the target digit (TF ops),
and how image-dependent a policy's action sequences are (numpy)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_glimpse.model.grid import ActionGrid
from tf_glimpse.model.sensor import patch_top_left


def step_correct(step_logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Whether the prediction after each step is right: [B, T, C], [B] -> [B, T] float32."""
    predictions = tf.argmax(step_logits, axis=-1, output_type=tf.int32)
    return tf.cast(tf.equal(predictions, tf.cast(labels, tf.int32)[:, None]), tf.float32)


def glimpse_hits(actions: tf.Tensor, boxes: tf.Tensor, grid: ActionGrid) -> tf.Tensor:
    """Whether each glimpse's P x P patch overlaps the target box: [B, T], [B, 4] -> [B, T] float32.

    `boxes` are (top, left, bottom, right) in canvas pixels, half-open, as produced
    by the canvas pipeline.
    """
    top, left = patch_top_left(grid, actions)  # [B, T] each
    boxes = tf.cast(boxes, tf.int32)[:, None, :]
    overlap_rows = (top < boxes[..., 2]) & (top + grid.patch_size > boxes[..., 0])
    overlap_cols = (left < boxes[..., 3]) & (left + grid.patch_size > boxes[..., 1])
    return tf.cast(overlap_rows & overlap_cols, tf.float32)


def sequence_diversity(actions: np.ndarray) -> dict:
    """How image-dependent a policy is, from its action sequences [n, T].

    ``distinct_sequences``: the number of different sequences; ``modal_sequence``:
    the most frequent one (ties: the first seen); ``modal_share``: its share of n.
    """
    unique, first, counts = np.unique(actions, axis=0, return_index=True, return_counts=True)
    best = max(range(len(unique)), key=lambda i: (counts[i], -first[i]))
    return {"distinct_sequences": int(len(unique)),
            "modal_sequence": [int(a) for a in unique[best]],
            "modal_share": float(counts[best]) / len(actions)}
