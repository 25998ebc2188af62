"""Canvases: objects pasted onto larger images, with clutter, as a tf.data pipeline.

A canvas is an I x I x C image holding one S x S object (a 28 x 28 digit, or any
image set's picture, `tf_glimpse.data.folder.fit_images`) at a uniformly random integer
position, plus `clutter_count` pieces of `clutter_size` x `clutter_size` pixels cut
at random positions out of *other* random objects and pasted at random positions
(the "cluttered translated MNIST" of recurrent attention models).  Overlaps
combine with an elementwise max, so values stay in [0, 1].  An object as large as
the canvas (S = I) is the canvas: there is nowhere to move it and no background to
clutter.

Canvases are made in TensorFlow inside `tf.data`, a whole batch at a time: every
object pixel and clutter pixel gets a flat canvas index, and one
`unsorted_segment_max` over those indices writes them all (C values each) into a zero
canvas.  This touches only the B * (S * S + k * c * c) pasted pixels instead of k + 1
full canvases per example.

Randomness is only stateless (`tf.random.stateless_*`), seeded per batch by

    batch_seed = fold_in(fold_in([0, seed], epoch), batch_index)

so a batch is a pure function of (seed, epoch, batch index): a resumed run sees
exactly the data of an uninterrupted one, and evaluation canvases (epoch=None,
no fold-in of an epoch) are identical every time they are built.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from tf_glimpse.config import DIGIT_SIZE, GlimpseConfig
from tf_glimpse.data.sources import Splits

# Seed offsets of the fixed evaluation canvases, so validation, test and training
# canvases never share a random stream.
EVAL_SEED_OFFSETS = {"val": 1_000_003, "test": 2_000_029}

# fold_in data of the shuffle seed; batch indices (>= 0) never collide with it.
_SHUFFLE_STREAM = -1

# fold_in data, into a batch's seed, of its augmentation shifts.
_SHIFT_STREAM = -2

# tf.data's autotuning is off, with fixed parallelism instead.  Measured (mnist28, 2 cores):
# with it on, deleting an epoch's iterator often blocked until the autotuner's next
# period ended, 10.24 s or 20.47 s after the iterator was made: epochs of 11-13 s of
# training took 20.6 s, about a quarter of a 20-minute run.  Without it the input still
# makes 28x28 canvases at about 100x the training step's rate and cluttered 64x64 ones at
# about 45x (570k and 165k canvases/s, against 817k and 172k with autotuning; the same
# 4k/s at 400x400).
_PARALLEL_BATCHES = 2
_PIPELINE_OPTIONS = tf.data.Options()
_PIPELINE_OPTIONS.autotune.enabled = False


def digit_boxes(images: np.ndarray) -> np.ndarray:
    """Bounding boxes [n, 4] int32 (top, left, bottom, right), half-open, of nonzero pixels.

    images [n, S, S] or [n, S, S, C].  An all-zero image gets the empty box (0, 0, 0, 0).
    """
    images = np.asarray(images)
    if images.ndim == 4:
        images = images.any(axis=-1)
    rows, cols = images.any(axis=2), images.any(axis=1)  # [n, S]: row / column has ink
    height, width = images.shape[1:]
    boxes = np.stack([
        rows.argmax(axis=1),
        cols.argmax(axis=1),
        height - rows[:, ::-1].argmax(axis=1),
        width - cols[:, ::-1].argmax(axis=1),
    ], axis=1).astype(np.int32)
    boxes[~rows.any(axis=1)] = 0
    return boxes


def sample_layout(indices: tf.Tensor, num_images: int, seed: tf.Tensor, img_size: int,
                  clutter_count: int, clutter_size: int, object_size: int = DIGIT_SIZE
                  ) -> dict[str, tf.Tensor]:
    """The random choices behind a batch of canvases, all int32.

    Returns `offset` [B, 2] (object top-left on the canvas), `clutter_source` [B, k]
    (index of another object), `clutter_crop` [B, k, 2] (top-left of the piece in
    that object, of side `object_size`) and `clutter_paste` [B, k, 2] (top-left of the piece on the canvas).
    Each comes from its own stream of `seed`, so e.g. the digit offsets do not
    depend on `clutter_count`.
    """
    batch = tf.shape(indices)[0]
    k, c = clutter_count, clutter_size
    offset_seed, source_seed, crop_seed, paste_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=4))

    def uniform(shape: list, stream_seed: tf.Tensor, maxval: int) -> tf.Tensor:
        return tf.random.stateless_uniform(shape, stream_seed, minval=0, maxval=maxval,
                                           dtype=tf.int32)

    if num_images > 1:  # skip 1..n-1 places from the digit itself: always another digit
        shift = 1 + uniform([batch, k], source_seed, num_images - 1)
        source = (indices[:, None] + shift) % num_images
    else:
        source = tf.zeros([batch, k], tf.int32)
    return {
        "offset": uniform([batch, 2], offset_seed, img_size - object_size + 1),
        "clutter_source": source,
        "clutter_crop": uniform([batch, k, 2], crop_seed, object_size - c + 1),
        "clutter_paste": uniform([batch, k, 2], paste_seed, img_size - c + 1),
    }


def make_canvases(images: tf.Tensor, boxes: tf.Tensor, indices: tf.Tensor, seed: tf.Tensor,
                  img_size: int, clutter_count: int, clutter_size: int) -> dict[str, tf.Tensor]:
    """A batch of canvases for the objects `images[indices]`.

    Args:
      images: uint8 [n, S, S, C] (or [n, S, S]: one channel), all objects (clutter is cut
        from them too).
      boxes: int32 [n, 4], `digit_boxes(images)`.
      indices: int [B], the digits to paste.
      seed: int [2], a stateless seed; equal seeds give equal canvases.
      img_size, clutter_count, clutter_size: canvas size I, pieces k, piece size c.

    Returns:
      {"image": float32 [B, I, I, C] in [0, 1], "box": int32 [B, 4]}: box is the
      object's nonzero bounding box (top, left, bottom, right) in canvas pixels.
    """
    images = tf.convert_to_tensor(images, tf.uint8)
    if images.shape.rank == 3:
        images = images[..., None]
    object_size = images.shape[1]
    if img_size < object_size:
        raise ValueError(f"img_size={img_size} is smaller than the {object_size}-pixel objects")
    if object_size == img_size:
        clutter_count = 0  # the object fills the canvas: no background to clutter
    if clutter_count > 0 and not 1 <= clutter_size <= object_size:
        raise ValueError(f"clutter_size={clutter_size} is out of range; valid range: "
                         f"1..{object_size}")
    indices = tf.cast(indices, tf.int32)
    num_images = images.shape[0]
    if num_images is None:
        raise ValueError("make_canvases needs `images` with a static number of digits")
    layout = sample_layout(indices, num_images, seed, img_size, clutter_count, clutter_size,
                           object_size)

    objects = tf.gather(images, indices)
    box = tf.gather(tf.cast(boxes, tf.int32), indices) + tf.tile(layout["offset"], [1, 2])
    if img_size == object_size:
        canvas = objects  # the object is the canvas: nothing to move or add
    else:
        canvas = _paste(images, objects, layout, img_size, clutter_count, clutter_size)
    return {"image": tf.cast(canvas, tf.float32) / 255.0, "box": box}


def _paste(images: tf.Tensor, objects: tf.Tensor, layout: dict[str, tf.Tensor], img_size: int,
           clutter_count: int, clutter_size: int) -> tf.Tensor:
    """uint8 canvases [B, I, I, C]: objects and clutter pieces combined by max on zeros."""
    batch = tf.shape(objects)[0]
    side, channels = images.shape[1], images.shape[-1]
    area = img_size * img_size
    canvas_start = tf.range(batch) * area  # flat index of each canvas's pixel (0, 0)

    def top_left(position: tf.Tensor, width: int) -> tf.Tensor:
        return position[..., 0] * width + position[..., 1]

    # Object pixel (y, x) goes to canvas pixel (oy + y, ox + x).
    object_target = (canvas_start + top_left(layout["offset"], img_size))[:, None] \
        + _block_offsets(side, img_size)[None, :]
    targets = [tf.reshape(object_target, [-1])]
    values = [tf.reshape(objects, [-1, channels])]

    if clutter_count > 0:
        # Piece pixel (y, x) comes from source pixel (cy + y, cx + x) of object s and
        # goes to canvas pixel (py + y, px + x).
        piece_source = layout["clutter_source"] * side * side \
            + top_left(layout["clutter_crop"], side)
        piece_target = canvas_start[:, None] + top_left(layout["clutter_paste"], img_size)
        source_pixels = piece_source[..., None] + _block_offsets(clutter_size, side)
        target_pixels = piece_target[..., None] + _block_offsets(clutter_size, img_size)
        values.append(tf.gather(tf.reshape(images, [-1, channels]),
                                tf.reshape(source_pixels, [-1])))
        targets.append(tf.reshape(target_pixels, [-1]))

    # A max over the values sent to each pixel; pixels that get none are 0 (uint8 lowest).
    canvas = tf.math.unsorted_segment_max(tf.concat(values, axis=0), tf.concat(targets, axis=0),
                                          num_segments=batch * area)
    return tf.reshape(canvas, [batch, img_size, img_size, channels])


def _block_offsets(size: int, row_width: int) -> tf.Tensor:
    """Flat offsets [size * size] of a size x size block in rows of `row_width` pixels."""
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return tf.constant((rows * row_width + cols).reshape(-1), tf.int32)


_BOXES_CACHE: dict[int, tuple[weakref.ref, np.ndarray]] = {}


def _cached_digit_boxes(images: np.ndarray) -> np.ndarray:
    """`digit_boxes(images)`, computed once per (read-only) image array.

    A training run builds a new dataset every epoch from the same split; measured
    0.4 s per epoch on 55,000 digits without the cache.  Entries hold a weak
    reference, so an id reused by a new array never returns stale boxes.
    """
    if images.flags.writeable:  # A caller may still change it: never cache.
        return digit_boxes(images)
    entry = _BOXES_CACHE.get(id(images))
    if entry is None or entry[0]() is not images:
        entry = (weakref.ref(images), digit_boxes(images))
        _BOXES_CACHE[id(images)] = entry
    return entry[1]


def shift_canvases(canvases: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor, max_shift: int
                   ) -> tuple[tf.Tensor, tf.Tensor]:
    """Move each canvas by a random whole-pixel offset (dy, dx), each in -max_shift..max_shift.

    canvases float32 [B, I, I, C], boxes int32 [B, 4] (top, left, bottom, right) ->
    both moved; pixels shifted in from outside are zero, boxes are clipped to the canvas.
    A data augmentation for training canvases (`GlimpseConfig.augment_shift`).
    """
    size = canvases.shape[1]
    shifts = tf.random.stateless_uniform([tf.shape(canvases)[0], 2], seed, minval=-max_shift,
                                         maxval=max_shift + 1, dtype=tf.int32)  # [B, 2]
    # Output pixel (r, c) reads input pixel (r - dy, c - dx), or zero outside the canvas.
    rows = tf.range(size)[None, :] - shifts[:, :1]  # [B, I]
    cols = tf.range(size)[None, :] - shifts[:, 1:]
    inside = (tf.cast((rows >= 0) & (rows < size), canvases.dtype)[:, :, None, None]
              * tf.cast((cols >= 0) & (cols < size), canvases.dtype)[:, None, :, None])
    moved = tf.gather(canvases, tf.clip_by_value(rows, 0, size - 1), axis=1, batch_dims=1)
    moved = tf.gather(moved, tf.clip_by_value(cols, 0, size - 1), axis=2, batch_dims=1)
    moved_boxes = tf.clip_by_value(boxes + tf.tile(shifts, [1, 2]), 0, size - 1)
    return moved * inside, moved_boxes


def canvas_dataset(images: np.ndarray, labels: np.ndarray, *, img_size: int, clutter_count: int,
                   clutter_size: int, batch_size: int, seed: int, epoch: int | None,
                   shuffle: bool, drop_remainder: bool = False,
                   augment_shift: int = 0) -> tf.data.Dataset:
    """Batches {"image", "label" int32 [B], "box"} of canvases, fully determined by the arguments.

    Training: `epoch=e, shuffle=True` gives a new order and new canvases every
    epoch, the same ones for the same (seed, epoch).  Evaluation: `epoch=None,
    shuffle=False` gives the same canvases every time.  `augment_shift` > 0 moves
    every canvas by a random offset (`shift_canvases`).
    """
    images = np.asarray(images, np.uint8)
    labels = np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    images_tensor = tf.convert_to_tensor(images)
    boxes_tensor = tf.convert_to_tensor(_cached_digit_boxes(images))
    labels_tensor = tf.convert_to_tensor(labels.astype(np.int32))

    stream_seed = tf.constant([0, seed], tf.int64)
    if epoch is not None:
        stream_seed = tf.random.experimental.stateless_fold_in(stream_seed, epoch)
    order = tf.range(len(images), dtype=tf.int32)
    if shuffle:
        shuffle_seed = tf.random.experimental.stateless_fold_in(stream_seed, _SHUFFLE_STREAM)
        order = tf.random.experimental.stateless_shuffle(order, seed=shuffle_seed)

    num_batches = len(images) // batch_size if drop_remainder else -(-len(images) // batch_size)

    def build_batch(batch_index: tf.Tensor) -> dict[str, tf.Tensor]:
        batch_indices = order[batch_index * batch_size:(batch_index + 1) * batch_size]
        if drop_remainder:
            batch_indices = tf.ensure_shape(batch_indices, [batch_size])
        batch_seed = tf.random.experimental.stateless_fold_in(stream_seed, batch_index)
        canvases = make_canvases(images_tensor, boxes_tensor, batch_indices, batch_seed,
                                 img_size, clutter_count, clutter_size)
        image, box = canvases["image"], canvases["box"]
        if augment_shift:
            image, box = shift_canvases(image, box, tf.random.experimental.stateless_fold_in(
                batch_seed, _SHIFT_STREAM), augment_shift)
        return {"image": image, "label": tf.gather(labels_tensor, batch_indices), "box": box}

    dataset = tf.data.Dataset.range(num_batches)
    dataset = dataset.map(build_batch, num_parallel_calls=_PARALLEL_BATCHES, deterministic=True)
    return dataset.prefetch(_PARALLEL_BATCHES).with_options(_PIPELINE_OPTIONS)


def split_dataset(splits: Splits, config: GlimpseConfig, split: str,
                  epoch: int | None = None, batch_size: int | None = None) -> tf.data.Dataset:
    """The canvases of one split ("train", "val" or "test") for a configuration.

    "train" needs `epoch`: shuffled, new canvases every epoch, and the last
    incomplete batch dropped (static batch shapes) unless the split is smaller
    than one batch.  "val" and "test" are fixed: same order, same canvases,
    every image once.  `batch_size` defaults to `config.batch_size`.  Only "train"
    is augmented (`config.augment_shift`).
    """
    batch_size = batch_size or config.batch_size
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r} is not supported; valid values: train, val, test")
    images, labels = getattr(splits, f"{split}_images"), getattr(splits, f"{split}_labels")
    common = dict(img_size=config.img_size, clutter_count=config.clutter_count,
                  clutter_size=config.clutter_size, batch_size=batch_size)
    if split == "train":
        if epoch is None:
            raise ValueError("split_dataset(..., 'train') needs the epoch number")
        return canvas_dataset(images, labels, **common, seed=config.seed, epoch=epoch,
                              shuffle=True, drop_remainder=len(images) >= batch_size,
                              augment_shift=config.augment_shift)
    return canvas_dataset(images, labels, **common, seed=config.seed + EVAL_SEED_OFFSETS[split],
                          epoch=None, shuffle=False)
