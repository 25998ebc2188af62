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
from tf_glimpse.grid import ActionGrid

DATASETS = ("mnist", "fashion_mnist")
ENCODERS = ("mlp", "cnn")
STRATEGIES = ("default", "mirrored", "multi_worker")
SENSOR_BACKENDS = ("matmul", "crop_and_resize", "window")
DIGIT_SIZE = 28  # MNIST and Fashion-MNIST images are 28 x 28.


@dataclasses.dataclass(frozen=True)
class GlimpseConfig:
    """Everything that defines a run: data, sensor, agent, rewards and training."""

    # Data and canvases.
    dataset: str = "mnist"
    data_dir: str | None = None
    img_size: int = 64
    clutter_count: int = 4
    clutter_size: int = 8
    val_size: int = 5000
    subset: int | None = None
    # Training canvases only: move each by a random whole-pixel offset of up to this many
    # pixels per axis (zero fill), a new offset every epoch.  0 = off.
    augment_shift: int = 0
    # Set from the data set when training starts (MNIST and Fashion-MNIST: 10; a TFDS
    # data set: its own count) and stored in config.json: not a command-line flag.
    num_classes: int = 10

    # Action grid and glimpse sensor.
    patch_size: int = 8
    stride: int = 4
    # Three scales (P, 2P, 4P, each area-averaged to P x P) as RAM's retina.  Measured on
    # 28x28 MNIST, 3x3 patches, 8 random glimpses, 3,000 images, 6 epochs: validation
    # accuracy 0.63 with three scales, 0.19 (after 8 epochs) with one.
    scales: int = 3
    steps: int = 6
    sensor_backend: str = "matmul"

    # Agent.
    encoder: str = "mlp"
    glimpse_units: int = 128
    location_units: int = 64
    # Widths of 128 measured 5x faster than 256 on 2 CPU cores (2,500 vs 540 images/s).
    embedding_units: int = 128
    memory_units: int = 128
    classifier_units: int = 128
    attention_heads: int = 4
    # Measured (seed experiment 2, --epochs 2 --subset 3000, 8 pre-training epochs):
    # without the mask the greedy policy re-reads cells and validation accuracy FALLS
    # from 0.59 after pre-training to 0.52; with it, it rises to 0.75.
    mask_visited: bool = True

    # Rewards and losses.
    final_reward: float = 2.0
    step_reward_clip: float = 0.1
    gamma: float = 1.0
    # The entropy bonus falls linearly from entropy_weight to entropy_final over the
    # training budget (by steps or, with a --minutes budget, by time, whichever is
    # further): exploration first, a sharp policy at the end.  Measured on cluttered60
    # (8 epochs, memory loss on): a constant 0.01 gave 15.34% test error and 140
    # distinct greedy sequences on 10,000 test canvases; 0.05 -> 0.005 gave 14.56%
    # and 964.  With the context network, 0.1 -> 0.005 beat 0.05 -> 0.005 at equal
    # time (0.878 vs 0.871 validation accuracy after about 330 s).
    entropy_weight: float = 0.1
    entropy_final: float = 0.005
    reinforce_weight: float = 1.0
    baseline_weight: float = 1.0
    # Train the prediction after every step: the information-gain rewards need them to be
    # meaningful.
    step_loss: bool = True
    # Weight of the memory's own classification loss: a Dense head on h_t predicts the
    # class after every step, so the memory (the policy's only input) learns what the
    # glimpses showed from the first batch on, not from REINFORCE alone.
    memory_loss_weight: float = 1.0
    # Whether the memory reads e_t with its gradient, so that REINFORCE and the memory
    # loss also train the encoder.  Off: the encoder learns only what the classifier
    # needs, and a feature that only tells WHERE to look next (e.g. a cue that names
    # the informative cell) cannot be learned (measured on the cue toy of
    # tests/test_image_dependent.py: a fixed scan, 0.26 of episodes see the cell).
    memory_trains_encoder: bool = False
    # M sampled episodes per training image; with M > 1 each episode's baseline is the
    # mean return of the other M - 1 episodes of its image (leave-one-out).
    samples_per_image: int = 1
    # A coarse view of the whole canvas sets the memory's initial state, so that even
    # the first location depends on the image (DRAM's context network).  Measured on
    # cluttered60 (8 epochs, entropy 0.05 -> 0.005): 12.63% test error with it,
    # 14.56% without.
    context: bool = True

    # Training.
    epochs: int = 20
    # A wall-time budget: training stops at the first epoch end past this many minutes
    # of training (None: run all the epochs).
    minutes: float | None = None
    batch_size: int = 128
    # 3e-3 measured better than 1e-3 on short runs (0.48 vs 0.40 validation accuracy).
    lr: float = 3e-3
    lr_decay: bool = True
    grad_clip: float = 5.0
    pretrain: bool = False
    # Supervised epochs on random glimpses are cheap; measured 0.48 / 0.69 / 0.75
    # validation accuracy after 4 / 6 / 8 of them (+2 REINFORCE epochs, 3,000 images).
    pretrain_epochs: int = 8
    jit_compile: bool = True
    seed: int = 0
    test_samples: int = 0
    strategy: str = "default"
    summary_images_every: int = 5

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived
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
        """Raise ConfigError naming the first bad value and its valid range."""
        _check_choice("dataset", self.dataset, DATASETS, allow_prefix="tfds:")
        _check_choice("encoder", self.encoder, ENCODERS)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("sensor_backend", self.sensor_backend, SENSOR_BACKENDS)
        _check_min("img_size", self.img_size, DIGIT_SIZE)
        _check_min("patch_size", self.patch_size, 1)
        if self.patch_size > self.img_size:
            raise ConfigError(
                f"patch_size={self.patch_size} is larger than img_size={self.img_size}; "
                f"valid range: 1..{self.img_size}"
            )
        ActionGrid(self.img_size, self.patch_size, self.stride)  # ConfigError: a bad stride.
        _check_min("scales", self.scales, 1, upper=6)
        _check_min("steps", self.steps, 1, upper=64)
        _check_min("clutter_count", self.clutter_count, 0)
        _check_min("clutter_size", self.clutter_size, 1, upper=DIGIT_SIZE)
        if self.clutter_size > self.img_size:
            raise ConfigError(
                f"clutter_size={self.clutter_size} is larger than img_size={self.img_size}; "
                f"valid range: 1..{min(DIGIT_SIZE, self.img_size)}"
            )
        _check_min("val_size", self.val_size, 0, upper=50000)
        _check_min("augment_shift", self.augment_shift, 0, upper=self.img_size // 4)
        _check_min("num_classes", self.num_classes, 2)
        if self.subset is not None:
            _check_min("subset", self.subset, 1)
        for name in ("glimpse_units", "location_units", "embedding_units", "memory_units",
                     "classifier_units", "attention_heads"):
            _check_min(name, getattr(self, name), 1)
        if self.embedding_units % self.attention_heads:
            raise ConfigError(
                f"attention_heads={self.attention_heads} must divide "
                f"embedding_units={self.embedding_units}"
            )
        _check_min("epochs", self.epochs, 1)
        _check_min("samples_per_image", self.samples_per_image, 1, upper=64)
        if self.batch_size % self.samples_per_image:
            raise ConfigError(
                f"samples_per_image={self.samples_per_image} must divide "
                f"batch_size={self.batch_size} (a batch holds batch_size episodes)")
        if self.minutes is not None:
            _check_positive("minutes", self.minutes)
        _check_positive("entropy_final", self.entropy_final, allow_zero=True)
        _check_positive("memory_loss_weight", self.memory_loss_weight, allow_zero=True)
        _check_min("batch_size", self.batch_size, 1)
        _check_min("pretrain_epochs", self.pretrain_epochs, 0)
        _check_min("test_samples", self.test_samples, 0)
        _check_min("summary_images_every", self.summary_images_every, 0)
        _check_positive("lr", self.lr)
        _check_positive("grad_clip", self.grad_clip)
        _check_positive("final_reward", self.final_reward, allow_zero=True)
        _check_positive("step_reward_clip", self.step_reward_clip, allow_zero=True)
        _check_positive("entropy_weight", self.entropy_weight, allow_zero=True)
        _check_positive("reinforce_weight", self.reinforce_weight, allow_zero=True)
        _check_positive("baseline_weight", self.baseline_weight, allow_zero=True)
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma={self.gamma} is out of range; valid range: 0..1")

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


# The sections of the configuration, in the order `train.py --help` shows them.
SECTIONS = {
    "data": ("dataset", "data_dir", "img_size", "clutter_count", "clutter_size", "val_size",
             "subset", "augment_shift"),
    "sensor": ("patch_size", "stride", "scales", "steps", "sensor_backend"),
    "agent": ("encoder", "glimpse_units", "location_units", "embedding_units", "memory_units",
              "classifier_units", "attention_heads", "mask_visited", "context",
              "memory_trains_encoder"),
    "rewards": ("final_reward", "step_reward_clip", "gamma", "entropy_weight", "entropy_final",
                "reinforce_weight", "baseline_weight", "step_loss", "memory_loss_weight",
                "samples_per_image"),
    "training": ("epochs", "minutes", "batch_size", "lr", "lr_decay", "grad_clip", "pretrain",
                 "pretrain_epochs", "jit_compile", "strategy"),
    "run": ("seed", "test_samples", "summary_images_every"),
}

# Fields that come from the data, not from the command line.
DERIVED_FIELDS = ("num_classes",)

# Fields that may differ between a run and its `--resume` without changing the model.
RESUMABLE_FIELDS = frozenset({"epochs", "minutes", "data_dir", "jit_compile", "strategy",
                              "test_samples", "summary_images_every"})


def _check_choice(name: str, value: str, choices: tuple[str, ...], allow_prefix: str = "") -> None:
    if value in choices or (allow_prefix and value.startswith(allow_prefix)
                            and len(value) > len(allow_prefix)):
        return
    extra = f" or {allow_prefix}NAME" if allow_prefix else ""
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
