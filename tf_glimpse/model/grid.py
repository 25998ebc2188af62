"""The action grid: which patches the agent can look at, and where they are.

For image size I, patch size P and stride s there are N = (I - P) / s + 1 patch
positions per axis and N * N actions.  Action id ``a`` is row-major:

    a = row * N + col,    the patch covers pixels [o + row*s, o + row*s + P) x [o + col*s, ...)

and its normalised centre is ``(x, y) = ((o + col*s + P/2) / I, (o + row*s + P/2) / I)``
in [0, 1]^2 (x to the right, y down, as in image coordinates).

The origin ``o`` is 0 whenever s divides I - P.  One more case is valid: with
s == P the patches tile the image (N = ceil(I / P)); when P does not divide I the
tiles are centred on the image, so the outermost tiles read a few zero pixels past
the edge (o < 0).  This is how the seed's 28x28 / 3x3 / stride 3 experiment
covers every pixel with a 10 x 10 grid.

Pure numpy (no TensorFlow import): cheap to import; TF code reads its tables as constants,
and `action_id` is plain arithmetic that tensors go through too.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import numpy as np

from tf_glimpse.errors import ConfigError

Array = TypeVar("Array")  # A numpy array, a TF tensor or an int.


def valid_strides(img_size: int, patch_size: int) -> list[int]:
    """All strides s >= 1 for which (img_size - patch_size) is divisible by s."""
    span = img_size - patch_size
    if span < 0:
        return []
    if span == 0:
        return [1]
    return [s for s in range(1, span + 1) if span % s == 0]


def stride_error(img_size: int, patch_size: int, stride: int) -> str:
    """The message for a stride that does not fit the image and patch sizes."""
    span = img_size - patch_size
    return (f"stride={stride} is invalid for img_size={img_size}, patch_size={patch_size}: "
            f"it must divide img_size - patch_size = {span} or equal patch_size "
            f"(non-overlapping tiles); valid strides: "
            f"{sorted(set(valid_strides(img_size, patch_size)) | {patch_size})}")


def saliency_details(stride: int) -> list[int]:
    """The saliency map's valid `detail` values for a grid stride: the powers of two that
    divide it (one pooled pixel is stride / detail canvas pixels)."""
    return [2 ** k for k in range(max(stride, 1).bit_length()) if stride % 2 ** k == 0]


def row_col(action: np.ndarray | int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Action ids -> (row, col) on a grid of `size` positions per axis.  With `action_id`,
    the one place the row-major numbering is written (the policy's move scores and the
    object pre-training glimpses use them too)."""
    action = np.asarray(action)
    return action // size, action % size


def action_id(row: Array, col: Array, size: int) -> Array:
    """(row, col) -> action ids on a grid of `size` positions per axis: numpy arrays or
    TF tensors alike (plain arithmetic, so XLA steps can call it)."""
    return row * size + col


@dataclasses.dataclass(frozen=True)
class ActionGrid:
    """Maps action ids <-> (row, col) <-> normalised patch centres (x, y).

    (Over 80 lines: the stride rule and every mapping of one grid.)
    """

    img_size: int
    patch_size: int
    stride: int

    def __post_init__(self) -> None:
        span = self.img_size - self.patch_size
        if self.patch_size < 1 or span < 0:
            raise ConfigError(
                f"patch_size={self.patch_size} does not fit img_size={self.img_size}; "
                f"valid range: 1..{self.img_size}"
            )
        if self.stride < 1 or (span % self.stride and self.stride != self.patch_size):
            raise ConfigError(stride_error(self.img_size, self.patch_size, self.stride))

    @property
    def tiles(self) -> bool:
        """True when the patches tile the image without dividing it evenly (s == P)."""
        return (self.img_size - self.patch_size) % self.stride != 0

    @property
    def size(self) -> int:
        """N, positions per axis."""
        if self.tiles:
            return -(-self.img_size // self.patch_size)
        return (self.img_size - self.patch_size) // self.stride + 1

    @property
    def origin(self) -> int:
        """Pixel offset o of the first patch (0, or negative for centred tiles)."""
        return -((self.size * self.patch_size - self.img_size) // 2) if self.tiles else 0

    @property
    def num_actions(self) -> int:
        """N * N."""
        return self.size * self.size

    def to_row_col(self, action: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Action ids -> (row, col) grid indices."""
        action = np.asarray(action)
        self._check_actions(action)
        return row_col(action, self.size)

    def to_action(self, row: np.ndarray | int, col: np.ndarray | int) -> np.ndarray:
        """(row, col) grid indices -> action ids."""
        row, col = np.asarray(row), np.asarray(col)
        if np.any((row < 0) | (row >= self.size) | (col < 0) | (col >= self.size)):
            raise ValueError(f"row/col out of range; valid range: 0..{self.size - 1}")
        return action_id(row, col, self.size)

    def top_left(self, action: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Action ids -> pixel (top, left) of the scale-1 patch."""
        row, col = self.to_row_col(action)
        return self.origin + row * self.stride, self.origin + col * self.stride

    def centres(self, action: np.ndarray | int | None = None) -> np.ndarray:
        """Normalised patch centres (x, y) in [0, 1]; all N*N of them if `action` is None."""
        if action is None:
            action = np.arange(self.num_actions)
        top, left = self.top_left(action)
        half = self.patch_size / 2.0
        return np.stack([(left + half) / self.img_size, (top + half) / self.img_size],
                        axis=-1).astype(np.float32)

    def from_centre(self, xy: np.ndarray) -> np.ndarray:
        """Normalised centres (x, y) -> the nearest action ids (inverse of `centres`)."""
        xy = np.asarray(xy, dtype=np.float64)
        pos = xy * self.img_size - self.patch_size / 2.0 - self.origin
        col = np.clip(np.rint(pos[..., 0] / self.stride), 0, self.size - 1).astype(np.int64)
        row = np.clip(np.rint(pos[..., 1] / self.stride), 0, self.size - 1).astype(np.int64)
        return self.to_action(row, col)

    def box(self, action: np.ndarray | int, scale: int = 0) -> np.ndarray:
        """Pixel box [top, left, bottom, right) of the glimpse at `scale` (0 = P x P).

        Scale j covers P * 2**j pixels around the same centre and may extend past
        the image edge (those pixels read as zero).
        """
        top, left = self.top_left(action)
        margin = self.patch_size * (2 ** scale - 1) / 2.0
        width = self.patch_size * 2 ** scale
        return np.stack([top - margin, left - margin, top - margin + width, left - margin + width],
                        axis=-1)

    def _check_actions(self, action: np.ndarray) -> None:
        if np.any((action < 0) | (action >= self.num_actions)):
            raise ValueError(f"action id out of range; valid range: 0..{self.num_actions - 1}")
