"""Your own images: a folder with one subfolder per class, and fitting images to the canvas.

The layout is that of `keras.utils.image_dataset_from_directory`::

    PATH/
      red/    a.png b.jpg ...      one subfolder per class (names sorted = class ids)
      blue/   ...
      test/   red/ ... blue/ ...   optional: a test split in the same layout

Files ending in .png, .jpg, .jpeg, .bmp or .gif (first frame) of any size are read;
other files are ignored.  Each image becomes uint8 [h, w, C] with C = 1 or 3: an alpha
channel is dropped, and when a set mixes grayscale and colour images the grayscale
ones are converted to RGB (and a note says how many).

Not `image_dataset_from_directory` itself: it resizes every image to one fixed size
before the canvas is known, and a file that is not an image stops it with a TensorFlow
error that does not name the file.  Here a bad file raises `DataError` naming it, or,
with `skip_bad`, is left out and counted.

`fit_images` then brings a set of images to one array: pasted on the canvas as
objects ("place", each at most I x I, padded to a common square) or resized to the
canvas ("fit").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tf_glimpse.config import FOLDER_PREFIX
from tf_glimpse.data.idx import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TEST_FOLDER = "test"


@dataclasses.dataclass
class FolderSplit:
    """The images of one split of a folder: a list of uint8 [h, w, C] arrays, int32 labels."""

    images: list[np.ndarray]
    labels: np.ndarray
    skipped: list[Path]


def class_names(root: Path) -> list[str]:
    """The class subfolders of `root`, sorted (the `test` folder is a split, not a class).

    Raises `DataError` when `root` is not a folder, has fewer than two classes, or a
    class folder holds no image file.
    """
    if not root.is_dir():
        raise DataError(f"{root}: folder not found (--dataset {FOLDER_PREFIX}PATH needs one "
                        f"subfolder of images per class)")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != TEST_FOLDER
                   and not p.name.startswith("."))
    if len(names) < 2:
        found = f"only the class {names[0]!r}" if names else "no class subfolders"
        raise DataError(f"{root}: {found}; a classification data set needs at least two "
                        f"class subfolders, each holding images ({', '.join(IMAGE_EXTENSIONS)})")
    for name in names:
        if not _image_files(root / name):
            raise DataError(f"{root / name}: empty class folder (no "
                            f"{', '.join(IMAGE_EXTENSIONS)} files)")
    return names


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def read_image(path: Path) -> np.ndarray:
    """One image file -> uint8 [h, w, C], C = 1 (grayscale) or 3 (colour); alpha dropped.

    Raises `DataError` naming the file when it cannot be decoded as an image.
    """
    tf = _tensorflow()
    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, OSError) as error:
        raise DataError(f"{path}: not a readable image ({_reason(error)})") from None
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise DataError(f"{path}: not a readable image (decoded shape {image.shape})")
    if image.shape[-1] in (2, 4):  # grayscale + alpha, RGBA: drop the alpha channel
        image = image[..., :-1]
    return image.astype(np.uint8)


def _tensorflow():
    """TensorFlow, imported quietly: the command lines read the data before their own import."""
    from tf_glimpse.quiet import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    return tf


def _reason(error: Exception) -> str:
    """TensorFlow's message without its op decorations: "Unknown image file format. ..."."""
    message = str(getattr(error, "message", error)).splitlines()[0]
    message = message.split("}} ", 1)[-1]  # "{{function_node ...}} Unknown image ..."
    return message.split(" [Op:", 1)[0].strip()


def read_split(root: Path, names: list[str], skip_bad: bool = False) -> FolderSplit:
    """Every image under root/<name>/ for the class names (label = index in `names`).

    A missing class folder (e.g. in test/) contributes no images.
    """
    images, labels, skipped = [], [], []
    for label, name in enumerate(names):
        folder = root / name
        for path in _image_files(folder) if folder.is_dir() else []:
            try:
                images.append(read_image(path))
            except DataError:
                if not skip_bad:
                    raise
                skipped.append(path)
                continue
            labels.append(label)
    return FolderSplit(images, np.asarray(labels, np.int32), skipped)


def common_channels(*image_sets: list[np.ndarray] | np.ndarray) -> tuple[int, str | None]:
    """(C, note): 3 if any image is in colour, else 1; the note counts converted images."""
    counts = []
    for images in image_sets:
        if isinstance(images, np.ndarray):
            counts += [images.shape[-1]] * len(images)
        else:
            counts += [image.shape[-1] for image in images]
    if 3 not in counts:
        return 1, None
    gray = counts.count(1)
    note = (f"{gray} of {len(counts)} images are grayscale; converted to RGB (the set mixes "
            f"grayscale and colour)") if gray else None
    return 3, note


def largest_side(*image_sets: list[np.ndarray] | np.ndarray) -> int:
    """The largest height or width among image arrays [n, h, w, c] or lists of [h, w, c]."""
    sides = [max(images.shape[1:3]) if isinstance(images, np.ndarray)
             else max(max(image.shape[:2]) for image in images)
             for images in image_sets if len(images)]
    return max(sides)


def resolve_resize(resize: str, side: int, img_size: int) -> str:
    """"place" or "fit": "auto" places the images when the largest side fits the canvas."""
    if resize != "auto":
        return resize
    return "place" if side <= img_size else "fit"


def fit_images(images: list[np.ndarray] | np.ndarray, img_size: int, mode: str, channels: int,
               side: int, source: str) -> np.ndarray:
    """Images (a list of uint8 [h, w, c], or one array [n, h, w, c]) -> uint8 [n, S, S, channels].

    mode "place": images keep their size, padded (zeros, bottom and right) to the square
    of `side` (the largest side of the whole data set, so that every split agrees), which
    must be at most I; the canvas pipeline pastes them at random positions.
    mode "fit": every image is resized to I x I (S = I; area-averaged when shrunk).
    Raises `ConfigError` when "place" meets a side larger than the canvas.
    """
    from tf_glimpse.config import ConfigError

    if mode == "place":
        if side > img_size:
            raise ConfigError(f"img_size={img_size} is smaller than the {side}-pixel images of "
                              f"{source}; valid range: >= {side} (or --resize fit)")
        if isinstance(images, np.ndarray) and images.shape[1:] == (side, side, channels):
            return images  # already one square array: nothing to copy
        out = np.zeros((len(images), side, side, channels), np.uint8)
        for i, image in enumerate(images):
            out[i, :image.shape[0], :image.shape[1]] = _with_channels(image, channels)
        return out
    if not len(images):
        return np.zeros((0, img_size, img_size, channels), np.uint8)
    tf = _tensorflow()

    if isinstance(images, np.ndarray):  # one size: resize in chunks, not image by image
        chunks = [images[i:i + 4096] for i in range(0, len(images), 4096)]
    else:
        chunks = [image[None] for image in images]
    out = []
    for chunk in chunks:
        shrink = max(chunk.shape[1:3]) > img_size  # area-average down, interpolate up
        resized = tf.image.resize(_with_channels(chunk, channels), [img_size, img_size],
                                  method="area" if shrink else "bilinear")
        out.append(np.clip(np.rint(resized.numpy()), 0, 255).astype(np.uint8))
    return np.concatenate(out)


def _with_channels(image: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(image, 3, axis=-1) if channels == 3 and image.shape[-1] == 1 else image
