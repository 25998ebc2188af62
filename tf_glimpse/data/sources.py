"""Where the data sets live, and loading them as train / validation / test splits.

Two data sets come as directories of four IDX files ("mnist", "fashion_mnist"); any
TensorFlow Datasets image-classification set can be named "tfds:NAME" (TFDS needs the
internet unless it was prepared before), and a folder of images "folder:PATH"
(`tf_glimpse.data.folder`).  Images of any size and 1 or 3 channels come out as one
uint8 array [n, S, S, C]: objects of side S <= I that the canvas pipeline places, or
images resized to the canvas (S = I), as `resize` says.

The validation split is held out of the training set by a permutation fixed by
`seed`, so every run with the same seed validates on the same images.  Arrays
are cached in-process: loading MNIST from its .gz files takes about half a second.

No TensorFlow import at module level (TFDS is imported only for "tfds:" names,
TensorFlow only to decode a folder's files or resize images).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import socket
import threading
from pathlib import Path

import numpy as np

from tf_glimpse.config import DIGIT_SIZE, FOLDER_PREFIX, TFDS_PREFIX, ConfigError
from tf_glimpse.data import folder
from tf_glimpse.data.idx import DataError, data_error, how_to_get, read_bytes, read_pair

DATA_DIR_ENV = "TF_GLIMPSE_DATA_DIR"
IDX_DATASETS = ("mnist", "fashion_mnist")
SYSTEM_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the parent of the tf_glimpse package


def data_root(project_root: Path = PROJECT_ROOT) -> Path:
    """Where `fetch` writes a data set and the loaders look after $TF_GLIMPSE_DATA_DIR.

    In a source checkout (pyproject.toml beside the package; `setup.sh` installs it
    editable) that is the checkout's git-ignored data/.  In an installed package it is
    the user's cache directory ($XDG_CACHE_HOME, else ~/.cache)/tf_glimpse, never a
    folder inside site-packages.
    """
    if (project_root / "pyproject.toml").is_file():
        return project_root / "data"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "tf_glimpse"

# The four files of a data set, by role; each may be stored as NAME.gz or as NAME.
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# MD5 of MNIST's decompressed files, as published by many MNIST loaders (fetch verifies
# every file against them).
MNIST_MD5 = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}

# MD5 of the decompressed training labels: tells MNIST and Fashion-MNIST apart when a
# directory is given for one of them (the file names are the same for both).
_TRAIN_LABELS_MD5 = {
    MNIST_MD5["train_labels"]: "mnist",
    "9018921c3c673c538a1fc5bad174d6f9": "fashion_mnist",
}



@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
    """Train / validation / test arrays: images uint8 [n, S, S, C], labels int32 [n].

    `class_names` name the labels 0..num_classes-1; `notes` are things the loader
    did that a user should hear once (e.g. images converted to RGB, files skipped).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    name: str
    class_names: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        """C: 1 (grayscale) or 3 (colour); images [n, S, S] built by hand have one."""
        return 1 if self.train_images.ndim == 3 else int(self.train_images.shape[-1])

    @functools.cached_property
    def fingerprint(self) -> str:
        """MD5 of the training and validation arrays, the data a run learns and selects its
        checkpoint on: tells whether they changed since the run began."""
        digest = hashlib.md5()
        for array in (self.train_images, self.train_labels, self.val_images, self.val_labels):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


# ---------------------------------------------------------------- IDX directories
def find_file(directory: Path, role: str) -> Path | None:
    """The file for `role` (e.g. "train_images") in `directory`, .gz preferred, or None."""
    for candidate in (directory / (FILE_NAMES[role] + ".gz"), directory / FILE_NAMES[role]):
        if candidate.is_file():
            return candidate
    return None


def missing_files(directory: Path) -> list[str]:
    """The standard file names (.gz) of the roles that `directory` lacks."""
    return [FILE_NAMES[role] + ".gz" for role in FILE_NAMES if find_file(directory, role) is None]


def identify(directory: Path) -> str | None:
    """"mnist" or "fashion_mnist" if the directory's training labels are a known file."""
    labels = find_file(directory, "train_labels")
    if labels is None:
        return None
    try:
        return _TRAIN_LABELS_MD5.get(hashlib.md5(read_bytes(labels)).hexdigest())
    except DataError:
        return None  # corrupt files are reported when they are read


def resolve_data_dir(dataset: str, data_dir: str | None) -> Path:
    """The directory holding the four IDX files of `dataset`.

    Searched in order: the explicit `data_dir`, the environment variable
    TF_GLIMPSE_DATA_DIR, `data_root()/<dataset>/` (the checkout's data/), and for fashion_mnist the
    Debian package's /usr/share/datasets/fashion-mnist.  `data_dir` and the
    environment variable may name the data set's directory itself or a parent
    holding `<dataset>/`.  An explicit `data_dir` must hold the files; the
    environment variable is skipped when it holds another data set.
    """
    if dataset not in IDX_DATASETS:
        raise DataError(f"{dataset!r} is not an IDX data set; valid values: "
                        f"{', '.join(IDX_DATASETS)} (or {TFDS_PREFIX}NAME for load_splits)")
    if data_dir is not None:
        return _check_explicit_dir(dataset, Path(data_dir).expanduser())

    searched: list[Path] = []
    env_dir = os.environ.get(DATA_DIR_ENV)
    candidates: list[Path] = []
    if env_dir:
        candidates += [Path(env_dir).expanduser() / dataset, Path(env_dir).expanduser()]
    candidates.append(data_root() / dataset)
    if dataset in SYSTEM_DIRS:
        candidates.append(SYSTEM_DIRS[dataset])
    for directory in candidates:
        searched.append(directory)
        if not missing_files(directory) and identify(directory) in (None, dataset):
            return directory
    raise DataError(f"{dataset} not found; searched {', '.join(str(d) for d in searched)} for "
                    f"{', '.join(n + '.gz' for n in FILE_NAMES.values())}. {how_to_get(dataset)}")


def _check_explicit_dir(dataset: str, directory: Path) -> Path:
    for candidate in (directory / dataset, directory):
        if not missing_files(candidate):
            found = identify(candidate)
            if found not in (None, dataset):
                raise data_error(candidate, f"holds {found}, not {dataset}", dataset)
            return candidate
    if not directory.is_dir():
        raise data_error(directory, "data directory not found", dataset)
    missing = ", ".join(str(directory / name) for name in missing_files(directory))
    raise data_error(directory, f"missing IDX files: {missing}", dataset)


# ---------------------------------------------------------------------- loading
def _file_stamps(directory: Path) -> tuple:
    """(name, size, mtime) of the files of `directory`: a cache key that changes with them."""
    if not directory.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                        for p in directory.iterdir() if p.is_file()))


def _load_idx_arrays(dataset: str, directory: Path) -> tuple[np.ndarray, ...]:
    """(train_images, train_labels, test_images, test_labels) of an IDX directory, read-only.

    Cached while the directory's files stay the same (a file rewritten in place is read
    again).
    """
    return _load_idx_arrays_cached(dataset, directory, _file_stamps(directory))


@functools.lru_cache(maxsize=4)
def _load_idx_arrays_cached(dataset: str, directory: Path, stamps: tuple) -> tuple[np.ndarray, ...]:
    """`_load_idx_arrays`, cached by (dataset, directory, the files' sizes and times)."""
    arrays = []
    for split in ("train", "test"):
        images_path = find_file(directory, f"{split}_images")
        labels_path = find_file(directory, f"{split}_labels")
        if images_path is None or labels_path is None:
            raise data_error(directory, f"missing the {split} files", dataset)
        images, labels = read_pair(images_path, labels_path, dataset)
        if images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
            raise data_error(images_path, f"images are {images.shape[1:]}, expected "
                                          f"({DIGIT_SIZE}, {DIGIT_SIZE})", dataset)
        if labels.size and labels.max() >= 10:
            raise data_error(labels_path, f"label {labels.max()} is out of range 0..9", dataset)
        arrays += [images[..., None], labels.astype(np.int32)]
    return tuple(_read_only(a) for a in arrays)


@functools.lru_cache(maxsize=2)
def _load_tfds_arrays(name: str) -> tuple:
    """(train_images, train_labels, test_images, test_labels, class_names) through TFDS.

    Images are uint8 [n, h, w, c] arrays when the data set's images have one size,
    else lists of uint8 [h, w, c].  Any data set with an 'image' and a 'label'
    (ClassLabel) feature and train and test splits.
    """
    from tf_glimpse.optional import require

    spec = f"{TFDS_PREFIX}{name}"
    tfds = require("tensorflow_datasets", f"--dataset {spec}", "tensorflow-datasets")
    try:
        builder = tfds.builder(name)
    except Exception as error:  # DatasetNotFoundError and friends
        raise DataError(f"{spec}: unknown TFDS data set ({str(error).splitlines()[0]})") from error
    features = builder.info.features
    if "image" not in features or "label" not in features \
            or not hasattr(features["label"], "num_classes"):
        raise DataError(f"{spec}: not an image-classification data set (it needs an 'image' "
                        f"and a class 'label' feature; it has {', '.join(features.keys())})")
    shape = tuple(features["image"].shape)
    if shape[-1] not in (1, 3):
        raise DataError(f"{spec}: images have {shape[-1]} channels; supported: 1 or 3")
    if not builder.is_prepared() and not internet_available():
        raise DataError(f"{spec}: not prepared in {builder.data_dir} and the internet is not "
                        f"reachable, so TFDS cannot download it; offline, use mnist, "
                        f"fashion_mnist or {FOLDER_PREFIX}PATH. {how_to_get(None)}")
    fixed = None not in shape
    try:
        train, test = tfds.load(name, split=["train", "test"], as_supervised=True,
                                download=True)
        (train_x, train_y), (test_x, test_y) = (_stack(tfds, train, fixed),
                                                _stack(tfds, test, fixed))
    except Exception as error:
        raise DataError(f"{spec}: TFDS could not load the train and test splits "
                        f"({type(error).__name__}: {error})") from error
    names = tuple(features["label"].names)
    images = [_read_only(np.asarray(x)) if fixed else x for x in (train_x, test_x)]
    return (images[0], _read_only(train_y.astype(np.int32)), images[1],
            _read_only(test_y.astype(np.int32)), names)


def _stack(tfds, dataset, fixed: bool, batch_size: int = 8192) -> tuple:
    """(images, labels) of a supervised TFDS split: images one array if `fixed` (one image
    size; read in batches), else a list of [h, w, c] arrays.

    Not `batch_size=-1`: with TFDS 4.9.10 it aborts the process (std::length_error)
    on a split of unknown size, such as those of `tfds.testing.mock_data`.
    """
    if not fixed:
        pairs = list(tfds.as_numpy(dataset))
        return [image for image, _ in pairs], np.asarray([label for _, label in pairs])
    images, labels = [], []
    for image, label in tfds.as_numpy(dataset.batch(batch_size)):
        images.append(image)
        labels.append(label)
    return np.concatenate(images), np.concatenate(labels)


def internet_available(host: str = "storage.googleapis.com", port: int = 443,
                       timeout: float = 3.0) -> bool:
    """True if a TCP connection to host:port succeeds within `timeout` s (DNS included)."""
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)  # bounds a slow DNS look-up too
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _load_folder_arrays(root: Path, skip_bad: bool) -> tuple:
    """(train_images, train_labels, test_images, test_labels, class_names, skipped files) of a
    folder; test is None when it has no test/ subfolder."""
    names = folder.class_names(root)
    train = folder.read_split(root, names, skip_bad)
    test = (folder.read_split(root / folder.TEST_FOLDER, names, skip_bad)
            if (root / folder.TEST_FOLDER).is_dir() else None)
    skipped = train.skipped + (test.skipped if test else [])
    if test is None:
        return train.images, train.labels, None, None, tuple(names), skipped
    return train.images, train.labels, test.images, test.labels, tuple(names), skipped


def default_val_size(train_count: int) -> int:
    """The validation images held out when `val_size` is None: 5000, at most a tenth."""
    return min(5000, train_count // 10)


def load_splits(dataset: str, data_dir: str | None = None, val_size: int | None = None,
                seed: int = 0, subset: int | None = None, *, img_size: int | None = None,
                resize: str = "auto", skip_bad_images: bool = False) -> Splits:
    """Train / validation / test splits of `dataset` ("mnist", "fashion_mnist", "tfds:NAME" or
    "folder:PATH").

    The validation set is `val_size` training images (None: `default_val_size`) chosen
    by `numpy.random.default_rng(seed).permutation`; the rest, in their original
    order, form the training set, of which `subset` keeps the first N.  The test set
    is the data set's own (a folder without test/: as many more images of the
    permutation as the validation set).  Images are brought to the canvas of side
    `img_size` as `resize` ("auto", "place", "fit") says (`folder.fit_images`); without
    `img_size` they stay as they are (one size only).  All arrays are read-only.

    Raises `DataError` (naming the file) when the data set is missing, corrupt or
    inconsistent, and `ConfigError` when `val_size`, `subset` or `img_size` does not fit it.
    """
    notes, test_images, test_labels = [], None, None
    names: tuple[str, ...] = ()
    if dataset.startswith(TFDS_PREFIX) and len(dataset) > len(TFDS_PREFIX):
        train_images, train_labels, test_images, test_labels, names = \
            _load_tfds_arrays(dataset[len(TFDS_PREFIX):])
    elif dataset.startswith(FOLDER_PREFIX) and len(dataset) > len(FOLDER_PREFIX):
        root = Path(dataset[len(FOLDER_PREFIX):]).expanduser()
        train_images, train_labels, test_images, test_labels, names, skipped = \
            _load_folder_arrays(root, skip_bad_images)
        if skipped:
            notes.append(f"skipped {len(skipped)} files that are not readable images "
                         f"(first: {skipped[0]})")
    else:
        train_images, train_labels, test_images, test_labels = _load_idx_arrays(
            dataset, resolve_data_dir(dataset, data_dir))
        names = tuple(str(label) for label in range(10))

    # ConfigError (a ValueError): the command line reports it as a bad flag (exit code 2).
    held_out = default_val_size(len(train_images)) if val_size is None else val_size
    test_count = held_out if test_images is None else 0
    if not 0 <= held_out < len(train_images) - test_count:
        raise ConfigError(f"val_size={held_out} is out of range for the {len(train_images)} "
                          f"training images of {dataset}; valid range: "
                          f"0..{len(train_images) - test_count - 1}")
    if subset is not None and subset < 1:
        raise ConfigError(f"subset={subset} is out of range; valid range: >= 1")
    order = np.random.default_rng(seed).permutation(len(train_images))
    if test_images is None:  # a folder without test/: hold a test split out too
        test_index = np.sort(order[held_out:2 * held_out])
        test_images = [train_images[i] for i in test_index]
        test_labels = np.asarray(train_labels)[test_index]
        order = np.concatenate([order[:held_out], order[2 * held_out:]])
    val_index = np.sort(order[:held_out])
    train_index = np.sort(order[held_out:])[:subset]

    channels, note = folder.common_channels(train_images, test_images)
    if note:
        notes.append(note)

    side = folder.largest_side(train_images, test_images)
    mode = None if img_size is None else folder.resolve_resize(resize, side, img_size)

    def take(images, index=None) -> np.ndarray:
        chosen = images if index is None else (
            images[index] if isinstance(images, np.ndarray) else [images[i] for i in index])
        if mode is None:
            return _read_only(np.asarray(chosen))
        return _read_only(folder.fit_images(chosen, img_size, mode, channels, side, dataset))

    return Splits(
        train_images=take(train_images, train_index),
        train_labels=_read_only(np.asarray(train_labels)[train_index]),
        val_images=take(train_images, val_index),
        val_labels=_read_only(np.asarray(train_labels)[val_index]),
        test_images=take(test_images), test_labels=_read_only(np.asarray(test_labels)),
        num_classes=len(names), name=dataset, class_names=names, notes=tuple(notes),
    )


def config_splits(config, data_dir: str | None = None) -> Splits:
    """The `Splits` of a `GlimpseConfig` (its data set, split, canvas and resize mode);
    `data_dir` overrides `config.data_dir`."""
    return load_splits(config.dataset, data_dir or config.data_dir, config.val_size,
                       config.seed, config.subset, img_size=config.img_size,
                       resize=config.resize, skip_bad_images=config.skip_bad_images)


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array
