"""Where the data sets live, and loading them as train / validation / test splits.

Two data sets come as directories of four IDX files ("mnist", "fashion_mnist");
any other grayscale 28 x 28 data set can be named "tfds:NAME" and is loaded through
TensorFlow Datasets (which needs the internet unless it was prepared before).

The validation split is held out of the training set by a permutation fixed by
`seed`, so every run with the same seed validates on the same images.  Arrays
are cached in-process: loading MNIST from its .gz files takes about half a second.

No TensorFlow import at module level (TFDS is imported only for "tfds:" names).
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

from tf_glimpse.config import DIGIT_SIZE, ConfigError
from tf_glimpse.data.idx import DataError, data_error, how_to_get, read_bytes, read_pair

DATA_DIR_ENV = "TF_GLIMPSE_DATA_DIR"
IDX_DATASETS = ("mnist", "fashion_mnist")
TFDS_PREFIX = "tfds:"
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
    """Train / validation / test arrays: images uint8 [n, 28, 28], labels int32 [n]."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    name: str

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
        arrays += [images, labels.astype(np.int32)]
    return tuple(_read_only(a) for a in arrays)


@functools.lru_cache(maxsize=2)
def _load_tfds_arrays(name: str) -> tuple[np.ndarray, ...]:
    """(train_images, train_labels, test_images, test_labels, num_classes) through TFDS."""
    from tf_glimpse.optional import require

    spec = f"{TFDS_PREFIX}{name}"
    tfds = require("tensorflow_datasets", f"--dataset {spec}", "tensorflow-datasets")
    try:
        builder = tfds.builder(name)
    except Exception as error:  # DatasetNotFoundError and friends
        raise DataError(f"{spec}: unknown TFDS data set ({str(error).splitlines()[0]})") from error
    features = builder.info.features
    shape = features["image"].shape if "image" in features else None
    if tuple(shape or ()) != (DIGIT_SIZE, DIGIT_SIZE, 1) or "label" not in features:
        raise DataError(f"{spec}: only grayscale 28x28 TFDS data sets with 'image' and 'label' "
                        f"are supported (this one has image shape {shape})")
    if not builder.is_prepared() and not internet_available():
        raise DataError(f"{spec}: not prepared in {builder.data_dir} and the internet is not "
                        f"reachable, so TFDS cannot download it. Only grayscale 28x28 data sets "
                        f"are supported; offline, use mnist or fashion_mnist. "
                        f"{how_to_get(None)}")
    try:
        train, test = tfds.load(name, split=["train", "test"], as_supervised=True,
                                download=True)
        (train_x, train_y), (test_x, test_y) = _stack(tfds, train), _stack(tfds, test)
    except Exception as error:
        raise DataError(f"{spec}: TFDS could not load the train and test splits "
                        f"({type(error).__name__}: {error})") from error
    num_classes = int(features["label"].num_classes)
    arrays = (train_x[..., 0], train_y.astype(np.int32), test_x[..., 0], test_y.astype(np.int32))
    return tuple(_read_only(np.asarray(a)) for a in arrays) + (num_classes,)


def _stack(tfds, dataset, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a supervised TFDS split, read in batches.

    Not `batch_size=-1`: with TFDS 4.9.10 it aborts the process (std::length_error)
    on a split of unknown size, such as those of `tfds.testing.mock_data`.
    """
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


def load_splits(dataset: str, data_dir: str | None = None, val_size: int = 5000, seed: int = 0,
                subset: int | None = None) -> Splits:
    """Train / validation / test splits of `dataset` ("mnist", "fashion_mnist" or "tfds:NAME").

    The validation set is `val_size` training images chosen by
    `numpy.random.default_rng(seed).permutation`; the rest, in their original
    order, form the training set, of which `subset` keeps the first N.  The test
    set is untouched.  All arrays are read-only (the loaded files are cached).

    Raises `DataError` (naming the file) when the data set is missing, corrupt or
    inconsistent, and `ConfigError` when `val_size` or `subset` does not fit it.
    """
    if dataset.startswith(TFDS_PREFIX) and len(dataset) > len(TFDS_PREFIX):
        *arrays, num_classes = _load_tfds_arrays(dataset[len(TFDS_PREFIX):])
    else:
        arrays = _load_idx_arrays(dataset, resolve_data_dir(dataset, data_dir))
        num_classes = 10
    train_images, train_labels, test_images, test_labels = arrays

    # ConfigError (a ValueError): the command line reports it as a bad flag (exit code 2).
    if not 0 <= val_size < len(train_images):
        raise ConfigError(f"val_size={val_size} is out of range for the {len(train_images)} "
                          f"training images of {dataset}; valid range: "
                          f"0..{len(train_images) - 1}")
    if subset is not None and subset < 1:
        raise ConfigError(f"subset={subset} is out of range; valid range: >= 1")
    order = np.random.default_rng(seed).permutation(len(train_images))
    val_index = np.sort(order[:val_size])
    train_index = np.sort(order[val_size:])[:subset]
    return Splits(
        train_images=_read_only(train_images[train_index]),
        train_labels=_read_only(train_labels[train_index]),
        val_images=_read_only(train_images[val_index]),
        val_labels=_read_only(train_labels[val_index]),
        test_images=test_images, test_labels=test_labels,
        num_classes=num_classes, name=dataset,
    )


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array
