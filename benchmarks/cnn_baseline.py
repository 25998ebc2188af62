"""The plain full-image CNN a user would otherwise pick, trained on the agent's canvases.

Architecture, up to 100 x 100: the keras-io "Simple MNIST convnet" (Conv32 -> MaxPool
-> Conv64 -> MaxPool -> Dropout -> Dense10, 99% on MNIST), with "same" padding,
adapted to the canvas size I:

    Conv32 3x3 -> MaxPool 2f -> Conv64 3x3 -> MaxPool 2 -> Flatten -> Dropout 0.5 -> Dense10

f is the smallest power of two with I / f <= 32 (28: 1, 60 and 64: 2, 100: 4), so the
64-channel convolution always runs on a map of at most 16 x 16.  A first version
with two more 64-channel convolutions at full resolution (44.6 MFLOPs at 28x28)
trained at 156 images/s here; this one costs 7.7 MFLOPs at 28x28.

Above 100 x 100 (cluttered200, cluttered400) that design would max-pool a 28-pixel
digit to a pixel or two after one convolution, so large canvases get the design
used for large images: 3x3 convolutions of stride 2 (16, 32, then 64 filters) until
the map is at most 16 x 16, global max pooling (the digit may be anywhere), Dense10.
Its receptive field (63 pixels at 400) holds a digit.

The downsampled baseline (``input_size``, e.g. 100): the canvas is average-pooled by
I / input_size first, then the design of that size runs on it.

`train_cnn` trains it on the SAME canvases as the agent: `split_dataset` of the same
splits and config, the training canvases of epoch e for epoch e, with Adam
(learning rate 1e-3, no decay), for a given number of epochs.  It keeps the epoch
with the best validation accuracy and evaluates the test set once, with those
weights.  It checkpoints every epoch into ``DIR`` and, with ``resume=True``,
continues from the last one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if not __package__:  # `python benchmarks/NAME.py`: benchmarks/ is not an installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.flops import cnn_flops

LEARNING_RATE = 1e-3


def pool_factor(img_size: int) -> int:
    """The smallest power of two f with img_size / f <= 32."""
    factor = 1
    while img_size / factor > 32:
        factor *= 2
    return factor


LARGE_CANVAS = 100  # Above this size: strided convolutions and global pooling.
STRIDED_MAP = 16  # The strided design convolves until the map is at most this size.


def cnn_layers(img_size: int, num_classes: int = 10,
               input_size: int | None = None) -> list[dict[str, Any]]:
    """The layer list of the baseline for I x I canvases (read by `build_cnn` and `cnn_flops`).

    `input_size` (a divisor of I, below it): average-pool the canvas to that size
    first, then the layers of that size (the downsampled baseline).
    """
    if input_size is not None and input_size != img_size:
        if input_size > img_size or img_size % input_size:
            raise ValueError(f"input_size={input_size} must divide img_size={img_size}")
        return [{"kind": "avgpool", "factor": img_size // input_size},
                *cnn_layers(input_size, num_classes)]
    if img_size > LARGE_CANVAS:
        layers: list[dict[str, Any]] = []
        size = img_size
        while size > STRIDED_MAP:
            layers.append({"kind": "conv", "filters": min(64, 16 * 2 ** len(layers)),
                           "kernel": 3, "stride": 2})
            size = -(-size // 2)  # "same" padding: ceil(size / 2)
        return [*layers, {"kind": "global_pool"}, {"kind": "dense", "units": num_classes}]
    layers = [
        {"kind": "conv", "filters": 32, "kernel": 3},
        {"kind": "pool", "factor": 2 * pool_factor(img_size)},
        {"kind": "conv", "filters": 64, "kernel": 3},
        {"kind": "pool", "factor": 2},
        {"kind": "flatten"},
        {"kind": "dropout", "rate": 0.5},
        {"kind": "dense", "units": num_classes},
    ]
    return layers


def describe(layers: list[dict[str, Any]]) -> str:
    """A one-line description, e.g. 'Conv32-MaxPool2-Conv64-...-Dense10'."""
    names = {"conv": lambda spec: f"Conv{spec['filters']}"
             + (f"s{spec['stride']}" if spec.get("stride", 1) > 1 else ""),
             "pool": lambda spec: f"MaxPool{spec['factor']}",
             "avgpool": lambda spec: f"AvgPool{spec['factor']}",
             "global_pool": lambda spec: "GlobalMaxPool",
             "dropout": lambda spec: f"Dropout{spec['rate']}", "flatten": lambda spec: "Flatten",
             "dense": lambda spec: f"Dense{spec['units']}"}
    return "-".join(names[layer["kind"]](layer) for layer in layers)


def build_cnn(img_size: int, num_classes: int = 10, channels: int = 1,
              input_size: int | None = None):
    """The Keras model of `cnn_layers`: images [B, I, I, C] in [0, 1] -> logits [B, classes]."""
    import keras

    built = [keras.Input((img_size, img_size, channels))]
    for layer in cnn_layers(img_size, num_classes, input_size):
        kind = layer["kind"]
        if kind == "conv":
            built.append(keras.layers.Conv2D(layer["filters"], layer["kernel"],
                                             strides=layer.get("stride", 1), padding="same",
                                             activation="relu"))
        elif kind == "pool":
            built.append(keras.layers.MaxPooling2D(layer["factor"]))
        elif kind == "avgpool":
            built.append(keras.layers.AveragePooling2D(layer["factor"]))
        elif kind == "global_pool":
            built.append(keras.layers.GlobalMaxPooling2D())
        elif kind == "dropout":
            built.append(keras.layers.Dropout(layer["rate"]))
        elif kind == "flatten":
            built.append(keras.layers.Flatten())
        else:
            built.append(keras.layers.Dense(layer["units"], activation=layer.get("activation")))
    return keras.Sequential(built, name="cnn_baseline")


def budget_callback(seconds_left: float | None):
    """A Keras callback that stops `fit` after the first batch past `seconds_left` and counts
    the batches trained (``.batches``): at 400 x 400 an epoch of the CNN outlasts a
    short budget, so the budget is kept batch by batch, not only at epoch ends."""
    import keras

    class TimeBudget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started, self.batches = time.perf_counter(), 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            if seconds_left is not None and time.perf_counter() - self.started >= seconds_left:
                self.model.stop_training = True

    return TimeBudget()


def _pairs(dataset):
    return dataset.map(lambda batch: (batch["image"], batch["label"]))


def train_cnn(splits, config, epochs: int, directory: str | Path, resume: bool = False,
              verbose: bool = True, seconds: float | None = None,
              input_size: int | None = None) -> dict[str, Any]:
    """Train the baseline for `epochs` epochs on the agent's canvases; returns its metrics.

    (Over 80 lines: the model, the epoch loop and the final evaluation of one baseline
    run; its checkpoints are saved and resumed by `runs.EpochCheckpoints`, as the agent's.)

    With `seconds`, training also stops at the first epoch end past that many seconds of
    training (the agent's wall-time budget, so both get the same time).  With
    `input_size`, the CNN sees the canvas average-pooled to that size (`cnn_layers`).

    Metrics: ``val_accuracy`` and ``test_accuracy`` of the best validation epoch,
    ``epochs``, ``best_epoch``, ``train_seconds`` (training only, summed over resumed
    runs), ``images_per_s``, ``params``, ``flops_per_image``, ``architecture`` and
    ``val_history`` [{epoch, val_accuracy, train_accuracy, wall_s}].
    """
    import keras
    import tensorflow as tf

    from tf_glimpse.analysis.evaluation import FULL_IMAGE, episode_function, evaluate
    from tf_glimpse.data.canvas import split_dataset
    from tf_glimpse.training.runs import EpochCheckpoints, load_history, write_json

    # The class and channel counts come from the data, as the agent's `Trainer` takes them.
    config = config.replace(num_classes=splits.num_classes, channels=splits.channels)
    directory = Path(directory)
    history_path = directory / "history.json"
    if history_path.exists() and not resume:
        raise FileExistsError(f"{directory} already holds a CNN run; pass --resume to continue it")
    directory.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    model = build_cnn(config.img_size, config.num_classes, config.channels, input_size)
    name = "CNN" if input_size in (None, config.img_size) else f"CNN on {input_size}x{input_size}"
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    optimizer.build(model.trainable_variables)
    # No XLA for the CNN: measured on these 2 cores, XLA's CPU convolutions train it at
    # 433 images/s (28x28) and 220 (60x60), TensorFlow's own kernels at 994 and 491.
    model.compile(optimizer=optimizer, jit_compile=False,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    best_val = tf.Variable(-1.0, dtype=tf.float32, trainable=False)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch,
                                     best_val=best_val)
    # The agent's checkpoint folders and save order (no pre-training: no pretrained/).
    checkpoints = EpochCheckpoints(checkpoint, directory, kinds=("best", "checkpoints"), keep=2)
    history: dict[str, Any] = {"val_history": [], "train_seconds": 0.0, "train_images": 0}
    if resume and checkpoints.resume(directory):
        history.update(load_history(directory, int(epoch.numpy())))
        done = history["val_history"]  # The images of the epochs kept (trimmed) so far.
        history["train_images"] = done[-1].get("train_images", 0) if done else 0

    episode = episode_function(model)  # Traced once, for every evaluation below.

    def accuracy(split: str) -> float:
        return evaluate(model, split_dataset(splits, config, split), FULL_IMAGE,
                        episode=episode)["accuracy"]

    steps_per_epoch = len(splits.train_labels) // config.batch_size
    for e in range(int(epoch.numpy()), epochs):
        if seconds is not None and history["train_seconds"] >= seconds:
            break
        started = time.perf_counter()
        budget = budget_callback(None if seconds is None else seconds - history["train_seconds"])
        fit = model.fit(_pairs(split_dataset(splits, config, "train", epoch=e)), epochs=1,
                        shuffle=False, verbose=0, callbacks=[budget])  # Shuffled by the pipeline.
        elapsed = time.perf_counter() - started
        history["train_seconds"] += elapsed
        history["train_images"] += budget.batches * config.batch_size
        val = accuracy("val")
        epoch.assign(e + 1)
        improved = val > float(best_val.numpy())
        if improved:
            best_val.assign(val)
        history["val_history"].append({"epoch": e + 1, "val_accuracy": val,
                                       "train_accuracy": float(fit.history["accuracy"][-1]),
                                       "wall_s": history["train_seconds"],
                                       "train_images": history["train_images"]})
        checkpoints.commit(e + 1, history, history_path, improved)
        if verbose:
            partial = ("" if budget.batches == steps_per_epoch else
                       f", budget spent after {budget.batches} of {steps_per_epoch} batches")
            print(f"{name} epoch {e + 1}{'' if seconds else f'/{epochs}'}: train accuracy "
                  f"{fit.history['accuracy'][-1]:.4f}  val accuracy {val:.4f}  "
                  f"({elapsed:.1f} s, {budget.batches * config.batch_size / elapsed:.0f} "
                  f"images/s{partial})", flush=True)
    trained = int(epoch.numpy())
    best = max(history["val_history"], key=lambda h: h["val_accuracy"])  # first best wins
    if checkpoints.latest("best"):
        checkpoint.restore(checkpoints.latest("best"))
    val, test = accuracy("val"), accuracy("test")
    layers = cnn_layers(config.img_size, config.num_classes, input_size)
    metrics = {
        "val_accuracy": val, "test_accuracy": test, "epochs": trained,
        "best_epoch": best["epoch"], "train_seconds": history["train_seconds"],
        "images_per_s": history["train_images"] / max(history["train_seconds"], 1e-9),
        "params": int(model.count_params()),
        "flops_per_image": cnn_flops(layers, config.img_size, config.channels),
        "architecture": describe(layers), "optimizer": f"Adam({LEARNING_RATE:g})",
        "val_history": history["val_history"],
    }
    write_json(directory / "metrics.json", metrics)
    if verbose:
        print(f"{name}: best val accuracy {val:.4f} (epoch {best['epoch']}), test accuracy "
              f"{test:.4f} (error {100 * (1 - test):.2f}%)", flush=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """`python benchmarks/cnn_baseline.py --setting NAME (--epochs N | --minutes M)`.

    Trains only the CNN baseline of a setting and stores its figure, as
    ``ram_benchmark.py --cnn_only`` (which it runs).
    """
    import sys

    from benchmarks import ram_benchmark

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(__doc__.split("\n\n")[0])
        print("\nusage: cnn_baseline.py --setting NAME [--epochs N | --minutes M] [--logdir DIR] "
              "[--resume]\n\nTrains the CNN baseline alone and appends its figure to "
              "benchmarks/cnn_results.jsonl: the same as `ram_benchmark.py --cnn_only` (see "
              "`python benchmarks/ram_benchmark.py --help` for every flag).")
        return 0
    return ram_benchmark.main(["--cnn_only", *argv])


if __name__ == "__main__":
    raise SystemExit(main())
