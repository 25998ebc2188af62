"""Read and write IDX files, the format MNIST and Fashion-MNIST ship in.

An IDX file is a 4-byte big-endian magic number, one big-endian uint32 per
dimension, then the payload.  The magic's low byte is the number of dimensions
and its third byte the element type (0x08 = uint8), so uint8 images
[n, 28, 28] have magic 0x00000803 = 2051 and uint8 labels [n] have 0x00000801 = 2049.
Files may be gzip-compressed (detected from the gzip signature, not the name).

Every problem with a file (missing, truncated, corrupt, wrong shape) raises
`DataError` with a message that names the file and says how to get the data.

Pure numpy: no TensorFlow import.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 2051  # uint8, 3 dimensions
LABELS_MAGIC = 2049  # uint8, 1 dimension
_UINT8 = 0x08
_GZIP_SIGNATURE = b"\x1f\x8b"


class DataError(RuntimeError):
    """A data set is missing, incomplete or corrupt (the message says how to fix it)."""


def how_to_get(dataset: str | None = None) -> str:
    """The advice appended to every `DataError`: where the data comes from."""
    mnist = "get MNIST with `python -m tf_glimpse.data.fetch mnist`"
    fashion = "get Fashion-MNIST with `apt-get install dataset-fashion-mnist`"
    where = ("or point TF_GLIMPSE_DATA_DIR (or --data_dir) at a directory holding the "
             "four IDX files")
    if dataset == "mnist":
        return f"To fix: {mnist}, {where}."
    if dataset == "fashion_mnist":
        return f"To fix: {fashion}, {where}."
    return f"To fix: {mnist}; {fashion}; {where}."


def data_error(path: str | Path, problem: str, dataset: str | None = None) -> DataError:
    """A `DataError` for one file: '<path>: <problem>. To fix: ...'."""
    return DataError(f"{path}: {problem}. {how_to_get(dataset)}")


def read_bytes(path: str | Path, dataset: str | None = None) -> bytes:
    """The (decompressed) content of a raw or gzip-compressed file."""
    path = Path(path)
    if not path.is_file():
        raise data_error(path, "file not found", dataset)
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_SIGNATURE:
            return gzip.decompress(raw)
        return raw
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise data_error(path, f"cannot read or decompress ({error})", dataset) from error


def parse_idx(content: bytes, path: str | Path = "<bytes>", dataset: str | None = None,
              expected_magic: int | None = None) -> np.ndarray:
    """Decode the bytes of an IDX file into a uint8 array, checking header and length."""
    if len(content) < 4:
        raise data_error(path, f"too short for an IDX header ({len(content)} bytes)", dataset)
    magic = int.from_bytes(content[:4], "big")
    ndim, dtype_code = magic & 0xFF, (magic >> 8) & 0xFF
    if expected_magic is not None and magic != expected_magic:
        raise data_error(path, f"bad magic number {magic} (expected {expected_magic}); "
                               f"not an IDX file of the expected kind", dataset)
    if magic >> 16 != 0 or dtype_code != _UINT8 or ndim < 1:
        raise data_error(path, f"bad magic number {magic}; not a uint8 IDX file", dataset)
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise data_error(path, f"truncated header ({len(content)} of {header_size} bytes)",
                         dataset)
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header_size + int(np.prod(shape, dtype=np.int64))
    if len(content) != expected:
        problem = "truncated" if len(content) < expected else "has trailing bytes"
        raise data_error(path, f"payload {problem}: {len(content)} bytes, but the header "
                               f"{shape} needs {expected}", dataset)
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


def read_images(path: str | Path, dataset: str | None = None) -> np.ndarray:
    """uint8 images [n, rows, cols] from an IDX image file (magic 2051)."""
    return parse_idx(read_bytes(path, dataset), path, dataset, IMAGES_MAGIC)


def read_labels(path: str | Path, dataset: str | None = None) -> np.ndarray:
    """uint8 labels [n] from an IDX label file (magic 2049)."""
    return parse_idx(read_bytes(path, dataset), path, dataset, LABELS_MAGIC)


def read_pair(images_path: str | Path, labels_path: str | Path,
              dataset: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split, checking that their counts agree."""
    images = read_images(images_path, dataset)
    labels = read_labels(labels_path, dataset)
    if len(images) != len(labels):
        raise data_error(labels_path, f"holds {len(labels)} labels but {images_path} holds "
                                      f"{len(images)} images", dataset)
    return images, labels


def encode_idx(array: np.ndarray) -> bytes:
    """The bytes of an IDX file holding a uint8 array (the inverse of `parse_idx`)."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or array.ndim < 1:
        raise ValueError(f"IDX encoding needs a uint8 array with >= 1 dimension, "
                         f"got {array.dtype} with shape {array.shape}")
    header = ((_UINT8 << 8) | array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()
