"""The glimpse sensor: read k small patches around a grid location.

`GlimpseSensor` maps images [B, I, I, C] (C = 1 or 3 channels) and action ids [B]
to glimpses [B, k, P, P, C] for k scales, every channel resampled alike.  Scale j
covers P * 2**j pixels around the same centre and is resized to P x P; pixels
outside the image read as zero.

Resampling convention (both backends): scale j is the window of P * 2**j pixels
that starts ``m_j = P * (2**j - 1) / 2`` pixels before the patch, area-averaged
down to P x P (a box filter, as RAM's retina and kevinzakka's `F.avg_pool2d`):
output pixel i is the mean of the 2**j samples at pixel-index coordinates
``top - m_j + i * 2**j + u`` (u = 0 .. 2**j - 1), each read bilinearly.  At scale 0
this is exactly the P x P slice; for even P every sample is an integer pixel, so
scale j is the exact mean of a 2**j x 2**j block; for odd P the window starts half
a pixel off the pixel grid and each sample is the mean of two neighbours.  (Point
sampling every 2**j-th pixel, what `crop_and_resize` alone would do, aliases: at
scale 2 it would skip three pixels in four.)

Three backends agree to float rounding:

* ``crop_and_resize``: `tf.image.crop_and_resize` of the window at full resolution
  from a zero-padded image, then `tf.nn.avg_pool2d`; the reference.  It has no XLA kernel
  and converts to TFLite only with Flex ops.
* ``matmul`` (default): the bilinear resampling is linear and separable, so each
  glimpse is ``Wy @ image @ Wx^T`` with interpolation matrices [P, I] gathered from
  a constant table by grid row / column.  Rows of the table that would read past
  the edge are simply zero.  Measured here: it compiles under XLA (about 2x faster
  training on 2 CPU cores) and converts to TFLite builtin ops (GATHER, BATCH_MATMUL).
  Its cost grows with the canvas: P*I*I + P*P*I multiply-adds per scale.
* ``window``: reads only the L x L pixels under each scale's window (L = P * 2**j,
  plus one for odd P) with two `tf.gather`s (its rows, then their columns), zeroes
  those past the edge, and averages them down to P x P: for even P each output pixel
  is the mean of a 2**j x 2**j block, an average pooling; for odd P a small constant
  [P, L] matrix on each side resamples them (P*L*L + P*P*L multiply-adds per scale).
  For one image (the TFLite episode) it reads the coarsest window alone and slices
  the others out of it (faster there; slower under XLA at training batches).
  Either way the cost does not depend on the canvas size.  Measured at 400 x 400,
  4 scales of 16: 0.81 ms a glimpse at batch 1 against 1.41 ms with one `tf.gather_nd`
  of a [L, L, 3] index and the matrix product, 29 against 52 ms at batch 128.  It
  compiles under XLA and converts to TFLite builtin ops (GATHER, AVERAGE_POOL_2D,
  BATCH_MATMUL).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_glimpse.config import SENSOR_BACKENDS
from tf_glimpse.model.grid import ActionGrid


def sample_positions(grid: ActionGrid, scale: int) -> np.ndarray:
    """Pixel-index coordinates [N, P, 2**scale] averaged into each output of each grid row."""
    factor = 2 ** scale
    margin = grid.patch_size * (factor - 1.0) / 2.0
    tops = grid.origin + np.arange(grid.size) * grid.stride - margin
    offsets = np.arange(grid.patch_size)[:, None] * factor + np.arange(factor)[None, :]
    return tops[:, None, None] + offsets[None]


def interpolation_table(grid: ActionGrid, scale: int) -> np.ndarray:
    """Area-averaging weights [N, P, I]: row n, output i, input pixel p (zero outside)."""
    positions = sample_positions(grid, scale)
    pixels = np.arange(grid.img_size)
    weights = np.maximum(0.0, 1.0 - np.abs(positions[..., None] - pixels))  # [N, P, f, I]
    return weights.mean(axis=2).astype(np.float32)


def window_weights(grid: ActionGrid, scale: int) -> tuple[np.ndarray, int]:
    """(Area-averaging weights [P, L] over the L pixels a window reads, their first offset).

    Every grid row's window starts `first` pixels from its patch's top edge (the same
    for all rows, since patch tops are whole pixels) and spans L pixels.
    """
    positions = sample_positions(grid, scale)[0] - grid.origin  # [P, f], relative to row 0's top
    first = int(np.floor(positions.min()))
    relative = positions - first
    length = int(np.ceil(relative.max())) + 1
    weights = np.maximum(0.0, 1.0 - np.abs(relative[..., None] - np.arange(length)))
    return weights.mean(axis=1).astype(np.float32), first




def block_factor(weights: np.ndarray) -> int | None:
    """f when the [P, L] resampling weights are the mean of consecutive blocks of f pixels
    (L = P * f: even P, or scale 0), so an f x f average pooling computes the glimpse;
    else None (odd P at scale j > 0 reads one pixel more, with half weights at the ends)."""
    patch, length = weights.shape
    if length % patch:
        return None
    factor = length // patch
    blocks = np.kron(np.eye(patch), np.full((1, factor), 1.0 / factor))
    return factor if np.allclose(weights, blocks, atol=1e-6) else None


def resample_window(window: tf.Tensor, weights: np.ndarray) -> tf.Tensor:
    """A scale's window [B, L, L, C] -> its glimpse [B, P, P, C] with the [P, L] `weights`:
    an average pooling where they are whole blocks (`block_factor`), else Wy @ window @ Wx^T.
    Both sides use the same weights, so a transposed window gives the transposed glimpse."""
    factor = block_factor(weights)
    if factor:
        return tf.nn.avg_pool2d(window, factor, factor, "VALID")
    return tf.einsum("pl,blmc,qm->bpqc", weights, window, weights)


def patch_top_left(grid: ActionGrid, actions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Pixel (top, left) of each action's P x P patch: actions [...] -> int32 [...] each.

    `ActionGrid.top_left` in TF ops, gathered from its table, so the grid stays the
    one place of the rule.
    """
    table = np.stack(grid.top_left(np.arange(grid.num_actions)), axis=-1).astype(np.int32)
    corners = tf.gather(tf.constant(table), tf.cast(actions, tf.int32))  # [..., 2]
    return corners[..., 0], corners[..., 1]


@keras.saving.register_keras_serializable(package="tf_glimpse")
class GlimpseSensor(keras.layers.Layer):
    """Keras layer: (images [B, I, I, C], actions [B]) -> glimpses [B, k, P, P, C].

    (Over 80 lines: three backends of one sensor, which must agree to 1e-5.)
    """

    def __init__(self, img_size: int, patch_size: int, stride: int, scales: int = 1,
                 backend: str = "matmul", **kwargs):
        super().__init__(**kwargs)
        if backend not in SENSOR_BACKENDS:
            raise ValueError(f"backend={backend!r}; valid values: {', '.join(SENSOR_BACKENDS)}")
        self.grid = ActionGrid(img_size, patch_size, stride)
        self.scales = scales
        self.backend = backend
        # [N, k, P, I]: per grid row (or column), the interpolation matrix of every scale.
        self._table = tf.constant(
            np.stack([interpolation_table(self.grid, j) for j in range(scales)], axis=1))
        # Per scale: the small [P, L] weights of the window backend and the window's offset.
        self._windows = [window_weights(self.grid, j) for j in range(scales)]

    def call(self, images: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        actions = tf.cast(actions, tf.int32)
        if self.backend == "matmul":
            return self._matmul_glimpses(images, actions)
        if self.backend == "window":
            return self._window_glimpses(images, actions)
        return self._crop_and_resize_glimpses(images, actions)

    def _window_glimpses(self, images: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        top, left = patch_top_left(self.grid, actions)  # [B] each
        if images.shape[0] == 1:
            return self._one_window_glimpses(images, top, left)
        # A window per scale: XLA fuses each read with its pooling.  Measured on
        # cluttered400 (batch 128, `benchmarks/train_throughput.py`): 554 training
        # images/s, against 408 to 473 when the scales are slices of one window.
        glimpses = []
        for weights, first in self._windows:
            window = self._read_window(images, top, left, first, weights.shape[1])
            glimpses.append(resample_window(window, weights))
        return tf.stack(glimpses, axis=1)

    def _one_window_glimpses(self, images: tf.Tensor, top: tf.Tensor,
                             left: tf.Tensor) -> tf.Tensor:
        """The window backend for one image (the TFLite episode): the same glimpses.

        The scales' windows are concentric pixel ranges, so the coarsest one holds
        them all: it is read once, transposed (see `_read_window`), and every scale
        is a static slice of it.  Measured on cluttered400 (4 scales of 16, TFLite, one
        thread): 8 glimpses in 0.51 ms, against 1.81 ms with a read per scale.
        """
        start = min(first for _, first in self._windows)
        length = max(first + weights.shape[1] for weights, first in self._windows) - start
        window = self._read_window(images, top, left, start, length, transposed=True)
        glimpses = []  # Each [B, P columns, P rows, C].
        for weights, first in self._windows:
            offset, span = first - start, weights.shape[1]
            scale = window[:, offset:offset + span, offset:offset + span, :]
            glimpses.append(resample_window(scale, weights))  # Transposed in, transposed out.
        return tf.transpose(tf.stack(glimpses, axis=1), [0, 1, 3, 2, 4])

    def _read_window(self, images: tf.Tensor, top: tf.Tensor, left: tf.Tensor, first: int,
                     length: int, transposed: bool = False) -> tf.Tensor:
        """The L x L pixels from `first` pixels past each patch's top-left corner (top,
        left [B]), 0 past the edge: [B, L, L, C], or [B, L columns, L rows, C] when
        `transposed`, which reads the columns as rows of the transposed rows (TFLite's
        GATHER copies whole rows fast and single values slowly: 0.02 against 0.06 to
        0.11 ms for a 128 x 128 window of a 400 x 400 canvas)."""
        size = self.grid.img_size
        rows = top[:, None] + first + tf.range(length)  # [B, L]
        cols = left[:, None] + first + tf.range(length)
        row_inside = tf.cast((rows >= 0) & (rows < size), tf.float32)
        col_inside = tf.cast((cols >= 0) & (cols < size), tf.float32)
        rows, cols = tf.clip_by_value(rows, 0, size - 1), tf.clip_by_value(cols, 0, size - 1)
        window = tf.gather(images, rows, axis=1, batch_dims=1)  # [B, L, I, C]
        if transposed:
            window = tf.transpose(window, [0, 2, 1, 3])  # [B, I, L, C]
            window = tf.gather(window, cols, axis=1, batch_dims=1)  # [B, L, L, C]
            inside = col_inside[:, :, None] * row_inside[:, None, :]
        else:
            window = tf.gather(window, cols, axis=2, batch_dims=1)  # [B, L, L, C]
            inside = row_inside[:, :, None] * col_inside[:, None, :]
        return window * inside[..., None]

    def _matmul_glimpses(self, images: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        n = self.grid.size
        rows = tf.gather(self._table, actions // n)  # [B, k, P, I]
        cols = tf.gather(self._table, actions % n)  # [B, k, P, I]
        size, channels = self.grid.img_size, images.shape[-1]
        # Wy @ image: [B, k, P, I * C] (the channels ride along with the columns), then
        # (.) @ Wx^T per channel: [B, k, P, P, C].  For C = 1 the reshapes are free and
        # the products are those of a grayscale sensor.
        flat = tf.reshape(images, [-1, size, size * channels])
        partial = tf.einsum("bkpi,bix->bkpx", rows, flat)
        partial = tf.reshape(partial, [-1, self.scales, self.grid.patch_size, size, channels])
        return tf.einsum("bkpjc,bkqj->bkpqc", partial, cols)

    def _crop_and_resize_glimpses(self, images: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        p, size = self.grid.patch_size, self.grid.img_size
        pad = int(np.ceil(p * (2 ** (self.scales - 1) - 1) / 2.0)) + p + 1
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        extent = float(size + 2 * pad - 1)
        top, left = (tf.cast(corner + pad, tf.float32)
                     for corner in patch_top_left(self.grid, actions))
        batch = tf.shape(images)[0]
        glimpses = []
        for j in range(self.scales):
            factor = 2 ** j
            first = -p * (factor - 1.0) / 2.0
            last = first + p * factor - 1.0
            boxes = tf.stack([top + first, left + first, top + last, left + last], axis=1) / extent
            window = tf.image.crop_and_resize(padded, boxes, tf.range(batch),
                                              [p * factor, p * factor])
            crops = tf.nn.avg_pool2d(window, factor, factor, "VALID")
            glimpses.append(crops)
        return tf.stack(glimpses, axis=1)

    def compute_output_shape(self, input_shape):
        images_shape = input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape
        p = self.grid.patch_size
        return (images_shape[0], self.scales, p, p, images_shape[-1])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(img_size=self.grid.img_size, patch_size=self.grid.patch_size,
                      stride=self.grid.stride, scales=self.scales, backend=self.backend)
        return config
