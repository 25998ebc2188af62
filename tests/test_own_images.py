"""Your own images: colour, any size, a folder of files or any TFDS image set (issue 22).

Everything is offline: folders of generated scenes (`tf_glimpse.data.scenes`) written
into tmp_path, and TFDS's own `tfds.testing.mock_data` for a colour data set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tf_glimpse.config import GlimpseConfig
from tf_glimpse.data import folder, scenes, sources
from tf_glimpse.data.idx import DataError

ROOT = Path(__file__).resolve().parents[1]
# Small widths and no XLA: a run of a few hundred images takes seconds.
SMALL = dict(embedding_units=16, memory_units=16, classifier_units=16, glimpse_units=16,
             location_units=8, attention_heads=2, jit_compile=False, summary_images_every=0)
SMALL_FLAGS = [token for name, value in SMALL.items() for token in (f"--{name}", str(value))]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """A command line as a user's shell runs it (TF_CPP_MIN_LOG_LEVEL not set by the tests)."""
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def message_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory) -> Path:
    """96 x 96 RGB scenes, 3 classes of 60 training and 10 test images each."""
    return scenes.write_scenes(tmp_path_factory.mktemp("scenes") / "D", per_class=60,
                               test_per_class=10, size=96)


def write_png(path: Path, image: np.ndarray) -> None:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, image)


# ------------------------------------------------------------------ loading
def test_a_folder_loads_as_colour_splits_with_its_class_names(scene_folder):
    splits = sources.load_splits(f"folder:{scene_folder}", img_size=96)
    assert splits.class_names == ("blue", "green", "red")  # sorted, as Keras orders them
    assert splits.num_classes == 3 and splits.channels == 3
    # A tenth of the 180 training images validates; test/ is the test split.
    assert len(splits.val_labels) == 18 and len(splits.train_labels) == 162
    assert splits.test_images.shape == (30, 96, 96, 3)
    assert splits.train_images.dtype == np.uint8 and not splits.train_images.flags.writeable
    assert set(np.unique(splits.train_labels)) == {0, 1, 2}


def test_images_smaller_than_the_canvas_are_placed_larger_ones_resized(tmp_path):
    for index in range(4):
        write_png(tmp_path / "D" / ("a" if index % 2 else "b") / f"{index}.png",
                  np.full((20, 16, 3), 50 * index, np.uint8))
    placed = sources.load_splits(f"folder:{tmp_path / 'D'}", val_size=1, img_size=32)
    # "auto": each fits the 32 x 32 canvas, so they keep their size, padded to a square.
    assert placed.train_images.shape[1:] == (20, 20, 3)
    fitted = sources.load_splits(f"folder:{tmp_path / 'D'}", val_size=1, img_size=32,
                                 resize="fit")
    assert fitted.train_images.shape[1:] == (32, 32, 3)
    small = sources.load_splits(f"folder:{tmp_path / 'D'}", val_size=1, img_size=12)
    assert small.train_images.shape[1:] == (12, 12, 3)  # "auto" resizes what cannot fit
    with pytest.raises(ValueError, match=r"img_size=12 is smaller than the 20-pixel images"):
        sources.load_splits(f"folder:{tmp_path / 'D'}", val_size=1, img_size=12, resize="place")


def test_mixed_grayscale_and_colour_are_converted_and_said_once(tmp_path):
    write_png(tmp_path / "D" / "a" / "0.png", np.full((8, 8), 200, np.uint8))
    write_png(tmp_path / "D" / "a" / "1.png", np.full((8, 8, 4), 90, np.uint8))  # RGBA
    write_png(tmp_path / "D" / "b" / "0.png", np.full((8, 8, 3), 30, np.uint8))
    write_png(tmp_path / "D" / "b" / "1.png", np.full((8, 8), 10, np.uint8))
    splits = sources.load_splits(f"folder:{tmp_path / 'D'}", val_size=0, img_size=8)
    assert splits.channels == 3
    assert splits.notes == ("2 of 4 images are grayscale; converted to RGB (the set mixes "
                            "grayscale and colour)",)
    everything = np.concatenate([splits.train_images, splits.test_images])
    assert {int(v) for v in np.unique(everything)} == {10, 30, 90, 200}


# ------------------------------------------------------- bad folders, end to end
def _train(data: str, logdir: Path, *extra: str) -> subprocess.CompletedProcess:
    return run("train.py", "--dataset", data, "--img_size", "32", "--patch_size", "8",
               "--stride", "8", "--steps", "2", "--epochs", "1", "--batch_size", "4",
               "--quiet", "--logdir", str(logdir), *SMALL_FLAGS, *extra)


def _small_folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for name in ("red", "blue"):
        for index in range(per_class):
            write_png(root / name / f"{index}.png",
                      rng.integers(0, 255, size=(32, 32, 3)).astype(np.uint8))
    return root


def test_a_file_that_is_not_an_image_is_named_in_one_line_or_skipped(tmp_path):
    data = _small_folder(tmp_path / "D")
    bad = data / "red" / "broken.png"
    bad.write_text("this is not a PNG")
    result = _train(f"folder:{data}", tmp_path / "run")
    assert result.returncode == 1, result.stderr
    lines = message_lines(result.stderr)
    assert len(lines) == 1 and str(bad) in lines[0] and "not a readable image" in lines[0], \
        result.stderr
    assert not (tmp_path / "run").exists()

    result = _train(f"folder:{data}", tmp_path / "run", "--skip_bad_images", "True")
    assert result.returncode == 0, result.stderr
    assert f"note: skipped 1 files that are not readable images (first: {bad})" \
        in result.stderr


@pytest.mark.parametrize("case", ["empty_class", "one_class", "missing"])
def test_a_bad_folder_layout_exits_1_in_one_line(tmp_path, case):
    data = tmp_path / "D"
    if case == "empty_class":
        _small_folder(data)
        (data / "green").mkdir()
        words = [str(data / "green"), "empty class folder"]
    elif case == "one_class":
        _small_folder(data)
        for path in (data / "blue").iterdir():
            path.unlink()
        (data / "blue").rmdir()
        words = [str(data), "only the class 'red'", "at least two"]
    else:
        words = [str(data), "folder not found"]
    result = _train(f"folder:{data}", tmp_path / "run")
    assert result.returncode == 1, result.stderr
    lines = message_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


def test_images_too_large_to_place_exit_2_naming_the_range(tmp_path):
    data = _small_folder(tmp_path / "D")
    result = _train(f"folder:{data}", tmp_path / "run", "--img_size", "16", "--resize", "place")
    assert result.returncode == 2, result.stderr
    assert "img_size=16 is smaller than the 32-pixel images" in result.stderr
    assert "valid range: >= 32 (or --resize fit)" in result.stderr
    assert not (tmp_path / "run").exists()


# --------------------------------------------- the acceptance commands (issue 22)
def test_a_colour_folder_trains_exports_to_uint8_rgb_and_loads_as_keras(scene_folder, tmp_path):
    """train.py on folder:D (96x96 RGB), `python -m export`, the SavedModel's signature and
    `keras.models.load_model` on RUN/agent.keras, through the command lines."""
    logdir, out = tmp_path / "run", tmp_path / "export"
    result = run("train.py", "--dataset", f"folder:{scene_folder}", "--img_size", "96",
                 "--patch_size", "12", "--stride", "6", "--epochs", "1", "--quiet",
                 "--batch_size", "32", "--logdir", str(logdir), *SMALL_FLAGS)
    assert result.returncode == 0, result.stderr
    saved = GlimpseConfig.from_json(logdir / "config.json")
    assert saved.channels == 3 and saved.num_classes == 3
    result = run("-m", "export", str(logdir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    check = run("-c", f"""
import tensorflow as tf, numpy as np, keras, tf_glimpse
m = tf.saved_model.load({str(out / 'saved_model' / '1')!r})
spec = m.signatures['serving_default'].structured_input_signature[1]['images']
print(spec.dtype.name)
out = m.signatures['serving_default'](images=tf.zeros([2, 96, 96, 3], tf.uint8))
print(tuple(out['probabilities'].shape))
try:
    m.signatures['serving_default'](images=tf.zeros([2, 96, 96, 1], tf.uint8))
except Exception as error:
    print('rejected', 'images must be uint8 [batch, 96, 96, 3]' in str(error))
agent = keras.models.load_model({str(logdir / 'agent.keras')!r})
print(type(agent).__name__, agent.config.channels)
""")
    assert check.returncode == 0, check.stderr
    assert check.stdout.split("\n")[:4] == ["uint8", "(2, 3)", "rejected True",
                                            "GlimpseAgent 3"], check.stdout


def test_a_colour_tfds_data_set_trains_exports_and_reports(tmp_path, monkeypatch):
    """CIFAR-10 (32x32x3) from TFDS's offline mock, placed on 48x48 canvases: training,
    the SavedModel (uint8 [B, 48, 48, 3]), the TFLite models and the policy report."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow as tf

    from export.pipeline import export_run
    from tf_glimpse.analysis.report import build_report
    from tf_glimpse.training.trainer import Trainer

    monkeypatch.setattr(sources, "internet_available", lambda *args, **kwargs: True)
    sources._load_tfds_arrays.cache_clear()
    config = GlimpseConfig(dataset="tfds:cifar10", img_size=48, clutter_count=2, patch_size=8,
                           stride=8, steps=2, batch_size=16, epochs=1, val_size=16, **SMALL)
    try:
        with tfds.testing.mock_data(num_examples=64):
            trainer = Trainer(config, tmp_path / "run", verbose=0)
            metrics = trainer.fit()
            assert trainer.splits.channels == 3 and trainer.splits.num_classes == 10
            label_names = tuple(tfds.builder("cifar10").info.features["label"].names)
            assert trainer.splits.class_names == label_names and len(label_names) == 10
            export_run(tmp_path / "run", tmp_path / "export", log=lambda line: None)
            report = build_report(tmp_path / "run", limit=32, gifs=1, verbose=0)
    finally:
        sources._load_tfds_arrays.cache_clear()
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    served = tf.saved_model.load(str(tmp_path / "export" / "saved_model" / "1"))
    outputs = served.signatures["serving_default"](images=tf.zeros([3, 48, 48, 3], tf.uint8))
    assert outputs["probabilities"].shape == (3, 10)
    assert (tmp_path / "export" / "glimpse_full.tflite").is_file()
    names = (tmp_path / "export" / "class_names.txt").read_text().splitlines()
    assert tuple(names) == label_names
    gif = tmp_path / "run" / "gifs" / "attention1.gif"
    assert gif.is_file() and report["learned_greedy"]["accuracy"] is not None
    import imageio.v3 as iio

    frame = iio.imread(gif, index=1)
    assert frame.ndim == 3 and frame.shape[-1] in (3, 4)


def test_folder_errors_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        folder.class_names(tmp_path / "nowhere")


# ------------------------------------------------- a folder the policy must search
def test_on_a_folder_of_scenes_the_policy_searches_and_beats_a_fixed_scan(tmp_path):
    """48x48 scenes, 2 glimpses of 8 (and 16) pixels: the class is the colour of one small
    shape among grey distractors, so a scan that does not find it guesses (1/3).  The
    saliency map (one detector at every cell) learns to point the first glimpse at it."""
    from tf_glimpse.analysis.report import fixed_actions
    from tf_glimpse.training.trainer import Trainer

    data = scenes.write_scenes(tmp_path / "scenes", per_class=1500, test_per_class=100,
                               size=48, distractors=2, seed=1)
    # The MLP encoder: the bars below were measured with it (auto would pick the cnn).
    config = GlimpseConfig(dataset=f"folder:{data}", img_size=48, clutter_count=0,
                           encoder="mlp",
                           patch_size=8, stride=4, scales=2, steps=2, batch_size=64, epochs=20,
                           lr=3e-3, saliency=True,
                           **{**SMALL, "jit_compile": True, "embedding_units": 32,
                              "memory_units": 32, "classifier_units": 32, "glimpse_units": 32})
    trainer = Trainer(config, tmp_path / "run", verbose=0)
    trainer.fit()
    images = trainer.splits.test_images.astype(np.float32) / 255.0
    labels = trainer.splits.test_labels
    greedy = trainer.model(images, mode="greedy")
    greedy_accuracy = float(np.mean(np.argmax(greedy["step_logits"][:, -1], -1) == labels))
    fixed = np.repeat(fixed_actions(config.grid, config.steps)[None], len(images), axis=0)
    scanned = trainer.model(images, mode="given", actions=fixed)
    fixed_accuracy = float(np.mean(np.argmax(scanned["step_logits"][:, -1], -1) == labels))
    distinct = len(np.unique(greedy["actions"].numpy(), axis=0))
    # Measured with seeds 0-2 (Intel Xeon, 2 cores, about 40 s each): greedy 1.000, the
    # fixed scan 0.457-0.463, 195-220 distinct sequences on the 300 test scenes.  Without
    # the saliency map the dense policy head is at the mercy of the trajectory within 20
    # epochs (seeds 0-5 on the same machine: greedy 0.53-0.62 against fixed 0.48-0.56).
    # Bars well inside the measured margins.
    assert greedy_accuracy >= 0.85, (greedy_accuracy, fixed_accuracy)  # chance: 1/3
    assert greedy_accuracy >= fixed_accuracy + 0.25, (greedy_accuracy, fixed_accuracy)
    assert distinct >= 50, distinct  # a fixed scan has one


def test_the_cnn_baseline_trains_on_colour_canvases(scene_folder, tmp_path):
    """The full-image CNN takes its channel and class counts from the data, as the agent."""
    from benchmarks.cnn_baseline import train_cnn
    from benchmarks.flops import agent_flops

    config = GlimpseConfig(dataset=f"folder:{scene_folder}", img_size=96, patch_size=12,
                           stride=6, batch_size=32, **SMALL)
    splits = sources.config_splits(config)
    metrics = train_cnn(splits, config, 1, tmp_path / "cnn", verbose=False)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    gray = GlimpseConfig(img_size=96, patch_size=12, stride=6, **SMALL)
    colour = gray.replace(channels=3)
    # Three colour planes: three times the CNN's first convolution and the agent's sensor.
    assert agent_flops(colour)["sensor"] == 3 * agent_flops(gray)["sensor"]
    assert metrics["flops_per_image"] > 0


def test_a_folder_smaller_than_one_batch_trains_with_one_batch_per_epoch(tmp_path):
    data = _small_folder(tmp_path / "D")  # 12 images: 10 train, 1 validation, 1 test
    result = run("train.py", "--dataset", f"folder:{data}", "--img_size", "32", "--patch_size",
                 "8", "--stride", "8", "--steps", "2", "--epochs", "1", "--quiet", "--logdir",
                 str(tmp_path / "run"), *SMALL_FLAGS)
    assert result.returncode == 0, result.stderr
    assert "note: batch_size=128 needs 128 training images, more than the 10 there are; " \
           "using batch_size=10" in result.stderr
    assert GlimpseConfig.from_json(tmp_path / "run" / "config.json").batch_size == 10
