"""The one configuration shared by the command line, training, export and reports.

`GlimpseConfig` is a frozen dataclass: every run directory stores it as
`config.json`, and every consumer (training, export, the policy report) rebuilds
the exact same model from it.  Invalid values raise `ConfigError` with a message
that names the bad value and the valid range; the command line turns that into
exit code 2 before anything is written.

This module imports nothing heavy (no TensorFlow) so `import tf_glimpse` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tf_glimpse.errors import ConfigError
from tf_glimpse.model.grid import ActionGrid, saliency_details

DATASETS = ("mnist", "fashion_mnist")
TFDS_PREFIX, FOLDER_PREFIX = "tfds:", "folder:"
DATASET_PREFIXES = {TFDS_PREFIX: "NAME", FOLDER_PREFIX: "PATH"}
RESIZE_MODES = ("auto", "place", "fit")
ENCODER_KINDS = ("mlp", "cnn")  # What GlimpseEncoder builds.
ENCODERS = ("auto", *ENCODER_KINDS)  # What --encoder takes.
# "auto" picks the convolutions for glimpses of at most this many pixels a side.
CNN_MAX_PATCH = 12
STRATEGIES = ("default", "mirrored", "multi_worker")
PRETRAIN_GLIMPSES = ("random", "object")
SENSOR_BACKENDS = ("matmul", "crop_and_resize", "window")
DIGIT_SIZE = 28  # MNIST and Fashion-MNIST images are 28 x 28.
MIN_IMG_SIZE = 8  # The smallest canvas; images larger than it are placed or resized to it.


def option(default: Any, section: str, help: str, **valid: Any) -> Any:
    """A `GlimpseConfig` field with everything else that is said about it, in one place:
    its `section` (the group of `train.py --help`), its `help` text and its valid values,
    which `GlimpseConfig.validate` checks and the flag table shows.

    `valid`: ``low`` / ``high`` (an integer range), ``between`` (a closed range of
    numbers), ``above`` (a number > or, with ``or_zero``, >= the bound), ``choices``
    (strings; ``prefixes`` maps each admitted prefix to what follows it, e.g.
    {"tfds:": "NAME"}), ``optional`` (None allowed); nothing
    for booleans and free text.
    """
    return dataclasses.field(default=default, metadata={"section": section, "help": help,
                                                        **valid})


@dataclasses.dataclass(frozen=True)
class GlimpseConfig:
    """Everything that defines a run: data, sensor, agent, rewards and training.

    (Over 80 lines: one `option` per field, each with its measurement where one chose it.)
    """

    # Data and canvases.
    dataset: str = option(
        "mnist", "data", "mnist, fashion_mnist, tfds:NAME (any TFDS image-classification data "
        "set; needs internet unless prepared) or folder:PATH (one subfolder of images per "
        "class, optional test/)", choices=DATASETS, prefixes=DATASET_PREFIXES)
    data_dir: str | None = option(
        None, "data", "directory with the four IDX .gz files (default: $TF_GLIMPSE_DATA_DIR, "
        "then data/<dataset>)")
    img_size: int = option(64, "data", "canvas size I (28 = plain digits; larger = translated "
                           "digit)", low=MIN_IMG_SIZE)
    # Objects smaller than the canvas are placed at random positions, as digits always
    # are; images larger than it cannot be, so "auto" resizes those to the canvas.
    resize: str = option("auto", "data", "how images meet the canvas: place (pasted at a random "
                         "position, at most I x I), fit (resized to I x I) or auto (place if "
                         "every image fits, else fit)", choices=RESIZE_MODES)
    skip_bad_images: bool = option(False, "data", "folder:PATH data sets: leave out files that "
                                   "are not readable images (and say how many) instead of "
                                   "stopping at the first")
    clutter_count: int = option(4, "data", "number of clutter pieces pasted on each canvas "
                                "(none when the images fill it)", low=0)
    clutter_size: int = option(8, "data", "side of each clutter piece in pixels", low=1,
                               high=DIGIT_SIZE)
    val_size: int | None = option(None, "data", "validation images held out from the training "
                                  "set (default: 5000, at most a tenth of them)", low=0,
                                  high=50000, optional=True)
    subset: int | None = option(None, "data", "train on the first N training images only "
                                "(quick runs)", low=1, optional=True)
    # A new offset every epoch; validation and test canvases are never shifted.
    augment_shift: int = option(0, "data", "training canvases only: shift each by up to N "
                                "pixels per axis, zero fill (0 = off; at most I/4)", low=0)
    # Set from the data set when training starts (MNIST and Fashion-MNIST: 10; a TFDS
    # data set: its own count) and stored in config.json: not a command-line flag.
    num_classes: int = option(10, "derived", "classes of the data set", low=2)
    channels: int = option(1, "derived", "colour channels of the images (1 or 3)", low=1,
                           high=3)

    # Action grid and glimpse sensor.
    patch_size: int = option(8, "sensor", "glimpse patch size P", low=1)
    stride: int = option(4, "sensor", "grid stride s; must divide I - P, or equal P (tiles)")
    # Three scales (P, 2P, 4P, each area-averaged to P x P) as RAM's retina.  Measured on
    # 28x28 MNIST, 3x3 patches, 8 random glimpses, 3,000 images, 6 epochs: validation
    # accuracy 0.63 with three scales, 0.19 (after 8 epochs) with one.
    scales: int = option(3, "sensor", "glimpse scales k (scale j covers P*2^j pixels, "
                         "resized to P)", low=1, high=6)
    steps: int = option(6, "sensor", "glimpses per episode T", low=1, high=64)
    sensor_backend: str = option(
        "matmul", "sensor", "matmul (XLA + TFLite), window (reads only the windows; XLA + "
        "TFLite) or crop_and_resize (reference)", choices=SENSOR_BACKENDS)

    # Agent.
    # Measured at equal wall time, each run alone (docs/experiments.md): with 8x8 glimpses
    # (the main command) the convolutions cost 1.9x the MLP's time per image and reach
    # 5.17% test error in 13 minutes against the MLP's 5.90% in 16.5.  With 12x12 they
    # cost 3x the time and 3.2x the FLOPs; they tied or lost in 8-minute runs, and won
    # with the final-step loss in 45 minutes on cluttered60 (2.58% against 4.82%) and
    # in 30 on translated60 (0.97% against 1.98%).
    encoder: str = option("auto", "agent", "glimpse encoder: mlp, cnn, or auto (cnn for "
                          f"glimpses of at most {CNN_MAX_PATCH}x{CNN_MAX_PATCH} pixels, else "
                          "mlp)", choices=ENCODERS)
    glimpse_units: int = option(128, "agent", "width of the encoder's \"what\" layer "
                                "(the glimpse)", low=1)
    location_units: int = option(64, "agent", "width of the encoder's \"where\" layer "
                                 "(the location)", low=1)
    # Widths of 128 measured 5x faster than 256 on 2 CPU cores (2,500 vs 540 images/s).
    embedding_units: int = option(128, "agent", "width of the glimpse embedding e_t", low=1)
    memory_units: int = option(128, "agent", "width of the LSTM memory", low=1)
    classifier_units: int = option(128, "agent", "width of the classifier's GRU", low=1)
    attention_heads: int = option(4, "agent", "heads of the classifier's causal "
                                  "self-attention (must divide embedding_units)", low=1)
    # Measured (seed experiment 2, --epochs 2 --subset 3000, 8 pre-training epochs):
    # without the mask the greedy policy re-reads cells and validation accuracy FALLS
    # from 0.59 after pre-training to 0.52; with it, it rises to 0.75.
    mask_visited: bool = option(True, "agent", "forbid looking at a cell twice")
    # A coarse view of the whole canvas sets the memory's initial state, so that even
    # the first location depends on the image (DRAM's context network).  Measured on
    # cluttered60 (8 epochs, entropy 0.05 -> 0.005): 12.63% test error with it,
    # 14.56% without.
    context: bool = option(True, "agent", "a coarse view of the whole canvas sets the "
                           "memory's initial state")
    # A policy whose every cell has its own logit must learn each cell's link to the
    # coarse view separately; a convolution learns one detector for all cells.  On
    # large canvases (hundreds of cells) the dense head alone left the first glimpse at
    # chance within 8 minutes (cluttered200: hit rate 0.04).
    saliency: bool = option(False, "agent", "a small convolutional network on the canvas "
                            "average-pooled by the stride adds a logit to every grid cell, at "
                            "every step (the same detector at every cell; needs --context)")
    # The map's input is the canvas pooled by stride / saliency_detail; stride-2
    # convolutions bring it back to one value per cell step.  Measured on cluttered400
    # (`--minutes 8`, each run alone): detail 2 raised the first glimpse's hit rate from
    # 0.789 to 0.828 but cut training from 723 to 556 images/s: 14.86% test error
    # against 13.48% with 1.
    saliency_detail: int = option(1, "agent", "the saliency map reads the canvas pooled by "
                                  "stride / N (a power of two dividing the stride): finer "
                                  "input for objects small against the stride", low=1,
                                  high=16)
    # The detector's width is most of its cost: 2 * 9 * units^2 FLOPs per pooled pixel for
    # the middle convolution (3.2 M of cluttered200's 12.0 M per image at 16).
    saliency_units: int = option(16, "agent", "channels of the saliency map's hidden "
                                 "convolutions", low=1, high=256)
    # The dense head gives every cell its own logit, so "look next to what I just saw"
    # must be learned at each cell apart.  Moves relative to the last glimpse are one
    # rule for all cells: a head on h_{t-1} scores each move of up to R cells a side, and
    # each cell within R of the last glimpse gets its move's score (0: off).
    local_moves: int = option(0, "agent", "a memory-driven logit for every move of up to R "
                              "grid cells from the last glimpse, the same at every cell (R; "
                              "0 = off)", low=0, high=8)
    # Whether the memory reads e_t with its gradient, so that REINFORCE and the memory
    # loss also train the encoder.  Off: the encoder learns only what the classifier
    # needs, and a feature that only tells WHERE to look next (e.g. a cue that names
    # the informative cell) cannot be learned (measured on the cue toy of
    # tests/test_image_dependent.py: a fixed scan, 0.26 of episodes see the cell).
    memory_trains_encoder: bool = option(False, "agent", "let REINFORCE and the memory loss "
                                         "train the glimpse encoder too")

    # Rewards and losses.
    final_reward: float = option(2.0, "rewards", "reward R: +R for a right final prediction, "
                                 "-R otherwise", above=0, or_zero=True)
    step_reward_clip: float = option(0.1, "rewards", "clip of the per-step information-gain "
                                     "reward", above=0, or_zero=True)
    gamma: float = option(1.0, "rewards", "discount of the returns", between=(0.0, 1.0))
    # The entropy bonus falls linearly from entropy_weight to entropy_final over the
    # training budget (by steps or, with a --minutes budget, by time, whichever is
    # further): exploration first, a sharp policy at the end.  Measured on cluttered60
    # (8 epochs, memory loss on): a constant 0.01 gave 15.34% test error and 140
    # distinct greedy sequences on 10,000 test canvases; 0.05 -> 0.005 gave 14.56%
    # and 964.  With the context network, 0.1 -> 0.005 beat 0.05 -> 0.005 at equal
    # time (0.878 vs 0.871 validation accuracy after about 330 s).
    entropy_weight: float = option(0.1, "rewards", "weight of the policy-entropy bonus",
                                   above=0, or_zero=True)
    entropy_final: float = option(0.005, "rewards", "entropy-bonus weight at the end (linear "
                                  "from --entropy_weight)", above=0, or_zero=True)
    reinforce_weight: float = option(1.0, "rewards", "weight of the REINFORCE "
                                     "(policy-gradient) loss", above=0, or_zero=True)
    baseline_weight: float = option(1.0, "rewards", "weight of the baseline MSE loss",
                                    above=0, or_zero=True)
    # The final prediction, the one that is scored, gets the whole classification loss;
    # the mean over steps gave it 1/T while the early steps' large cross-entropies (one or
    # two glimpses seen) pulled encoder and classifier their way.  Measured at equal wall
    # time (8 minutes each, alone; docs/experiments.md): cluttered60 6.54% test error
    # against 7.58% for the mean (6.75% with the last step weighted 5 of 10), translated60
    # 2.32% against 3.55%; validation ahead at every time in both.  The information-gain
    # rewards still read every step's prediction, which the classifier's head, shared by
    # all steps, keeps informative (cluttered60: 0.62 accuracy after one glimpse, 0.71
    # with the mean).
    step_loss: bool = option(False, "rewards", "average the classification loss over all "
                             "steps (else final step only)")
    # Weight of the memory's own classification loss: a Dense head on h_t predicts the
    # class after every step, so the memory (the policy's only input) learns what the
    # glimpses showed from the first batch on, not from REINFORCE alone.
    memory_loss_weight: float = option(1.0, "rewards", "weight of the memory's own per-step "
                                       "classification loss", above=0, or_zero=True)
    # M sampled episodes per training image; with M > 1 each episode's baseline is the
    # mean return of the other M - 1 episodes of its image (leave-one-out).
    samples_per_image: int = option(1, "rewards", "sampled episodes per training image "
                                    "(leave-one-out baseline if > 1; must divide "
                                    "batch_size)", low=1, high=64)

    # Training.  24 REINFORCE epochs after 4 pre-training ones: measured on the main
    # command (cnn encoder), 4.65% test error against 5.17% with 8 + 20, the same
    # validation accuracy at equal training time and about 2 minutes more of training
    # within the 15-minute budget (docs/experiments.md).
    epochs: int = option(24, "training", "REINFORCE epochs (after the pre-training epochs)",
                         low=1)
    # A wall-time budget: training stops at the first epoch end past this many minutes
    # of training (None: run all the epochs).
    minutes: float | None = option(None, "training", "wall-time budget: stop at the first "
                                   "epoch end past N minutes of training", above=0,
                                   optional=True)
    batch_size: int = option(128, "training", "episodes per training batch (the global "
                             "batch under --strategy)", low=1)
    # 3e-3 measured better than 1e-3 on short runs (0.48 vs 0.40 validation accuracy).
    lr: float = option(3e-3, "training", "Adam's peak learning rate", above=0)
    lr_decay: bool = option(True, "training", "cosine learning-rate decay to 5% (over epochs "
                            "or the --minutes budget)")
    grad_clip: float = option(5.0, "training", "per-variable gradient clip norm", above=0)
    pretrain: bool = option(False, "training", "first train encoder and classifier on random "
                            "glimpses (supervised)")
    # Supervised epochs on random glimpses.  Measured (seed experiment 2, 3,000 images):
    # 0.48 / 0.69 / 0.75 validation accuracy after 4 / 6 / 8 of them (+2 REINFORCE
    # epochs); on the main command the first REINFORCE epoch gains more than the last
    # four of eight pre-training epochs (0.66 -> 0.84 against 0.66 -> 0.72).
    pretrain_epochs: int = option(4, "training", "supervised epochs on random glimpses when "
                                  "--pretrain True", low=0)
    # Random glimpses seldom see a digit that covers 0.5% of a 400 x 400 canvas, so the
    # classifier learns little from them, and REINFORCE, whose reward needs a
    # classifier that recognises what a glimpse shows, gets no signal either.
    pretrain_glimpses: str = option(
        "random", "training", "pre-training glimpses: random (uniform over the cells) or "
        "object (cells around the object, from the training canvases' boxes; the policy "
        "itself never sees a box)", choices=PRETRAIN_GLIMPSES)
    jit_compile: bool = option(True, "training", "compile the train step with XLA")
    strategy: str = option("default", "training", "tf.distribute strategy: default, mirrored "
                           "or multi_worker", choices=STRATEGIES)

    # The run.
    seed: int = option(0, "run", "seed of data, weights and policy samples")
    test_samples: int = option(0, "run", "also report test accuracy averaged over M sampled "
                               "episodes", low=0)
    summary_images_every: int = option(5, "run", "write glimpse trajectories to TensorBoard "
                                       "every n epochs (0 = never)", low=0)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def encoder_kind(self) -> str:
        """The glimpse encoder built: "mlp" or "cnn" (`encoder`, with "auto" resolved)."""
        if self.encoder != "auto":
            return self.encoder
        return "cnn" if self.patch_size <= CNN_MAX_PATCH else "mlp"

    def resolved(self) -> GlimpseConfig:
        """This configuration with "auto" replaced by what it builds (`encoder_kind`).

        Run directories and saved agents store this form: what a run trained keeps
        loading when the rule behind "auto" (`CNN_MAX_PATCH`) changes.
        """
        return self.replace(encoder=self.encoder_kind)

    @property
    def grid(self):
        """The `ActionGrid` of this configuration."""
        return ActionGrid(self.img_size, self.patch_size, self.stride)

    @property
    def budget_seconds(self) -> float | None:
        """The --minutes budget in seconds of training, or None without one."""
        return None if self.minutes is None else 60.0 * self.minutes

    @property
    def num_actions(self) -> int:
        """N * N, the number of grid cells the policy chooses from."""
        return self.grid.num_actions

    # --------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ConfigError naming the first bad value and its valid range: each field's
        own range (from its `option`), then the rules between fields."""
        for field in dataclasses.fields(self):
            _check_field(field.name, getattr(self, field.name), field.metadata)
        if self.patch_size > self.img_size:
            raise ConfigError(
                f"patch_size={self.patch_size} is larger than img_size={self.img_size}; "
                f"valid range: 1..{self.img_size}"
            )
        side = ActionGrid(self.img_size, self.patch_size, self.stride).size  # or a bad stride
        if self.local_moves >= side:
            raise ConfigError(f"local_moves={self.local_moves} reaches past the {side} x {side} "
                              f"grid; valid range: 0..{min(side - 1, 8)}")
        if self.clutter_size > self.img_size:
            raise ConfigError(
                f"clutter_size={self.clutter_size} is larger than img_size={self.img_size}; "
                f"valid range: 1..{min(DIGIT_SIZE, self.img_size)}"
            )
        _check_min("augment_shift", self.augment_shift, 0, upper=self.img_size // 4)
        if self.saliency and not self.context:
            raise ConfigError("saliency=True needs context=True: the exported context model "
                              "computes the saliency map with the memory's initial state")
        detail, details = self.saliency_detail, saliency_details(self.stride)
        if detail not in details:
            most = self.__dataclass_fields__["saliency_detail"].metadata["high"]
            valid = [d for d in details if d <= most]
            raise ConfigError(f"saliency_detail={detail} is invalid for stride={self.stride}: "
                              f"it must be a power of two that divides the stride; valid "
                              f"values: {valid}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels={self.channels} is not supported; valid values: 1, 3")
        if self.embedding_units % self.attention_heads:
            raise ConfigError(
                f"attention_heads={self.attention_heads} must divide "
                f"embedding_units={self.embedding_units}"
            )
        if self.batch_size % self.samples_per_image:
            raise ConfigError(
                f"samples_per_image={self.samples_per_image} must divide "
                f"batch_size={self.batch_size} (a batch holds batch_size episodes)")

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path) -> None:
        """Write the configuration as pretty JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GlimpseConfig:
        """Build from a dict, rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {unknown}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> GlimpseConfig:
        """Read a configuration written by `to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes: Any) -> GlimpseConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# The sections of the configuration, in the order `train.py --help` shows them, from
# each field's `option` (the derived fields are not flags).
SECTIONS: dict[str, tuple[str, ...]] = {}
for _field in dataclasses.fields(GlimpseConfig):
    if _field.metadata["section"] != "derived":
        SECTIONS[_field.metadata["section"]] = (
            *SECTIONS.get(_field.metadata["section"], ()), _field.name)

# Fields that come from the data, not from the command line.
DERIVED_FIELDS = tuple(field.name for field in dataclasses.fields(GlimpseConfig)
                       if field.metadata["section"] == "derived")

# The checkpoint folders of a run directory: every epoch's, the best by validation
# accuracy, and the end of supervised pre-training.
CHECKPOINT_KINDS = ("best", "checkpoints", "pretrained")

# Fields that may differ between a run and its `--resume` without changing the model.
RESUMABLE_FIELDS = frozenset({"epochs", "minutes", "data_dir", "jit_compile", "strategy",
                              "test_samples", "summary_images_every"})


def valid_values(metadata) -> str:
    """The valid values of a field, as its `option` states them ("" when not stated)."""
    if "choices" in metadata:
        prefixes = metadata.get("prefixes", {})
        extra = "".join(f", {prefix}{what}" for prefix, what in prefixes.items())
        return ", ".join(metadata["choices"]) + extra
    if "low" in metadata:
        return (f"{metadata['low']}..{metadata['high']}" if "high" in metadata
                else f">= {metadata['low']}")
    if "between" in metadata:
        return "{:g}..{:g}".format(*metadata["between"])
    if "above" in metadata:
        return f"{'>=' if metadata.get('or_zero') else '>'} {metadata['above']}"
    return ""


def _check_field(name: str, value: Any, metadata) -> None:
    """ConfigError when `value` is outside the valid values `metadata` states."""
    if value is None and metadata.get("optional"):
        return
    if "choices" in metadata:
        _check_choice(name, value, metadata["choices"], metadata.get("prefixes", {}))
    elif "low" in metadata:
        _check_min(name, value, metadata["low"], metadata.get("high"))
    elif "between" in metadata:
        low, high = metadata["between"]
        if not low <= value <= high:  # NaN fails too.
            raise ConfigError(f"{name}={value} is out of range; valid range: {low:g}..{high:g}")
    elif "above" in metadata:
        _check_positive(name, value, allow_zero=metadata.get("or_zero", False))


def _check_choice(name: str, value: str, choices: tuple[str, ...],
                  prefixes: dict[str, str] | None = None) -> None:
    prefixes = prefixes or {}
    if value in choices or any(value.startswith(prefix) and len(value) > len(prefix)
                               for prefix in prefixes):
        return
    extra = "".join(f", {prefix}{what}" for prefix, what in prefixes.items())
    raise ConfigError(f"{name}={value!r} is not supported; "
                      f"valid values: {', '.join(choices)}{extra}")


def _check_min(name: str, value: int, lower: int, upper: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be an integer")
    if value < lower or (upper is not None and value > upper):
        valid = f"{lower}..{upper}" if upper is not None else f">= {lower}"
        raise ConfigError(f"{name}={value} is out of range; valid range: {valid}")


def _check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        valid = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value} is out of range; valid range: {valid}")
