"""Named benchmark settings: flag sets over `GlimpseConfig`, with the RAM literature's numbers.

`python benchmarks/ram_benchmark.py --setting NAME` trains one of these.  A setting
only fixes the fields below; every other field keeps its `GlimpseConfig` default
(e.g. ``epochs=24``, the widths of 128) unless the command line overrides it.

Errors are test errors in PERCENT on the 10,000 MNIST test images (canvases fixed
by the seed).  ``ram_paper`` is Mnih et al. 2014 (RAM), ``best_public`` the best
public re-implementation we know of, ``target`` what we aim for (met when our
test error <= target and below the error of the CNN trained for the same budget).
``None`` means there is no reference: the setting is reported, not compared (the two
seed experiments of this project).

Strides.  RAM's locations are continuous in [-1, 1]^2; ours are the N x N cells
of a grid with stride s, N = (I - P) / s + 1 (see `tf_glimpse.model.grid`).  A stride
must divide I - P, or equal P (tiles).  We use s = 4 everywhere a divisor of
I - P allows it: neighbouring 8- or 12-pixel patches overlap by half or more, and
a centre RAM could choose is at most s / 2 = 2 pixels (per axis) from one of
ours.  Each setting's ``stride_note`` says why its stride fits.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from tf_glimpse.config import GlimpseConfig
from tf_glimpse.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Setting:
    """One benchmark: the config fields it fixes, its grid and its reference errors (%)."""

    name: str
    description: str
    flags: dict[str, Any]
    grid_size: int  # N, documented; tests check it against `GlimpseConfig.grid`
    stride_note: str
    ram_paper: float | None = None
    best_public: float | None = None
    best_public_source: str | None = None
    target: float | None = None
    # Large canvases: also train the CNN on the canvas average-pooled to this size.
    downsample_to: int | None = None

    def config(self, **overrides: Any) -> GlimpseConfig:
        """The `GlimpseConfig` of this setting, with `overrides` applied on top (validated)."""
        return GlimpseConfig(**{**self.flags, **overrides})

    def baselines(self) -> dict[str, int | None]:
        """The CNN baselines of this setting's rows, by field prefix -> the input size their
        canvas is average-pooled to: {"cnn": None} (the full canvas), and
        "downsampled_cnn": `downsample_to` for the large canvases."""
        pooled = {} if self.downsample_to is None else {"downsampled_cnn": self.downsample_to}
        return {"cnn": None, **pooled}

    def reference(self) -> dict[str, Any]:
        """The reference errors (%) as a JSON-ready dict."""
        return {"ram_paper": self.ram_paper, "best_public": self.best_public,
                "best_public_source": self.best_public_source, "target": self.target}


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting(
        name="mnist28",
        description="28x28 MNIST, 8x8 glimpses, 1 scale, 6 glimpses",
        # augment_shift=2: training digits move by up to 2 pixels.  Measured, 20 minutes on
        # the idle machine: test error 1.84% without (overfitting from epoch 30), 0.83% with.
        # encoder="mlp": the rows of this setting were measured with it (--encoder auto
        # would pick the convolutions for these 8x8 glimpses).
        flags=dict(img_size=28, clutter_count=0, patch_size=8, scales=1, steps=6, stride=4,
                   augment_shift=2, encoder="mlp"),
        grid_size=6,
        stride_note="I - P = 20; s = 4 gives a 6 x 6 grid, patches overlapping by half "
                    "(s = 2 would give 11 x 11, s = 5 a 5 x 5 grid)",
        ram_paper=1.12, best_public=1.21, best_public_source="kevinzakka, PyTorch",
        target=0.8),
    Setting(
        name="translated60",
        description="60x60 translated MNIST, 12x12 glimpses, 3 scales, 6 glimpses",
        flags=dict(img_size=60, clutter_count=0, patch_size=12, scales=3, steps=6, stride=4),
        grid_size=13,
        stride_note="I - P = 48; s = 4 gives a 13 x 13 grid (centres at most 2 px from any "
                    "continuous location); s = 3 or 6 would also divide 48",
        ram_paper=1.22, best_public=0.94, best_public_source="tfRAM, 8 glimpses",
        target=1.2),
    Setting(
        name="cluttered60",
        description="60x60 cluttered MNIST (4 pieces of 8x8), 12x12 glimpses, 3 scales, "
                    "6 glimpses",
        flags=dict(img_size=60, clutter_count=4, clutter_size=8, patch_size=12, scales=3,
                   steps=6, stride=4),
        grid_size=13,
        stride_note="I - P = 48; s = 4 gives a 13 x 13 grid, as translated60",
        ram_paper=4.08, best_public=2.63, best_public_source="tfRAM, 8 glimpses",
        target=3.0),
    Setting(
        name="cluttered100",
        description="100x100 cluttered MNIST (8 pieces of 8x8), 12x12 glimpses, 4 scales, "
                    "8 glimpses",
        flags=dict(img_size=100, clutter_count=8, clutter_size=8, patch_size=12, scales=4,
                   steps=8, stride=4, encoder="mlp"),  # as its rows ran
        grid_size=23,
        stride_note="I - P = 88 = 4 * 22, so s = 4 is valid: a 23 x 23 grid",
        ram_paper=8.11, best_public=5.9, best_public_source="tfRAM", target=5.0),
    Setting(
        name="cluttered200",
        description="200x200 cluttered MNIST (32 pieces of 8x8, cluttered100's density), "
                    "16x16 glimpses, 4 scales (16 to 128 pixels), 8 glimpses, window sensor, "
                    "saliency map",
        # The window sensor reads only the glimpse windows: its cost does not grow with the
        # canvas (the matmul sensor's does, with I^2).  A 16-pixel patch and a stride of 8
        # keep the grid at 24 x 24 = 576 cells, so the policy head stays as small as at 100.
        # The saliency map finds the digit: 8 minutes (`train.py` with these flags) gave
        # 7.16% test error and a greedy hit rate of 0.81 with it, 78.01% (0.04) without.
        flags=dict(img_size=200, clutter_count=32, clutter_size=8, patch_size=16, scales=4,
                   steps=8, stride=8, sensor_backend="window", saliency=True),
        grid_size=24,
        stride_note="I - P = 184 = 8 * 23; s = 8 gives a 24 x 24 grid, patches overlapping "
                    "by half",
        downsample_to=100),
    Setting(
        name="cluttered400",
        description="400x400 cluttered MNIST (128 pieces of 8x8, cluttered100's density), "
                    "16x16 glimpses, 4 scales (16 to 128 pixels), 8 glimpses, window sensor, "
                    "saliency map, 1 pre-training epoch on glimpses of the digit",
        # The stride grows with the canvas (16 here, 8 at 200): 25 x 25 = 625 cells, the
        # policy's cost about that of cluttered200.  Four scales, as at 200 (a fifth, of
        # 256 pixels, is untried): the saliency map on the canvas pooled to 25 x 25 sets
        # where to look.
        # The digit covers 0.5% of the canvas: with random pre-training glimpses (or none)
        # neither the classifier nor the policy learns (8 minutes of `train.py`: hit rate
        # 0.005, chance accuracy after 4 epochs, with the saliency map); one epoch of
        # glimpses around the digit first gave 14.21% test error (hit rate 0.35).
        flags=dict(img_size=400, clutter_count=128, clutter_size=8, patch_size=16, scales=4,
                   steps=8, stride=16, sensor_backend="window", saliency=True,
                   pretrain=True, pretrain_glimpses="object", pretrain_epochs=1),
        grid_size=25,
        stride_note="I - P = 384 = 16 * 24; s = 16 gives a 25 x 25 grid of tiles",
        downsample_to=100),
    Setting(
        name="seed1",
        description="seed experiment 1: 64x64, 4 clutter pieces, 8x8 glimpses, 1 scale, "
                    "6 steps, pre-training",
        flags=dict(img_size=64, clutter_count=4, patch_size=8, scales=1, steps=6, stride=4,
                   pretrain=True, pretrain_epochs=8, encoder="mlp"),  # as its rows ran
        grid_size=15,
        stride_note="I - P = 56; s = 4 gives a 15 x 15 grid (the seed's own choice)"),
    Setting(
        name="seed2",
        description="seed experiment 2: 28x28, 3x3 glimpses, 8 steps, pre-training "
                    "(the seed's command as written: default scales)",
        flags=dict(img_size=28, clutter_count=0, patch_size=3, steps=8, stride=3,
                   pretrain=True, pretrain_epochs=8, encoder="mlp"),  # as its rows ran
        grid_size=10,
        stride_note="I - P = 25 is not a multiple of 3, so s = P = 3 tiles the image: "
                    "10 x 10 centred tiles, the outermost reading one zero pixel past the "
                    "edge (the seed's own choice)"),
    Setting(
        name="scenes96",
        description="96x96 RGB generated scenes (`python -m tf_glimpse.data.scenes "
                    "data/scenes`): the colour of one small shape among grey distractors; "
                    "12x12 glimpses, 2 scales, 4 glimpses",
        # 2 scales and 4 glimpses: together they cover at most a quarter of the canvas, so
        # the agent has to search.  Measured (5 minutes): with 3 scales and 6 glimpses its
        # most frequent scan alone was within 0.2 points of the learned policy (99.00%
        # against 99.17%), the coarsest scale seeing most of the canvas.
        flags=dict(dataset="folder:data/scenes", img_size=96, clutter_count=0, patch_size=12,
                   scales=2, steps=4, stride=6, encoder="mlp"),  # as its rows ran
        grid_size=15,
        stride_note="I - P = 84; s = 6 gives a 15 x 15 grid, patches overlapping by half "
                    "(the README's folder example)"),
)}


def get_setting(name: str) -> Setting:
    """The setting called `name`; KeyError naming the valid names otherwise."""
    if name not in SETTINGS:
        raise KeyError(f"unknown setting {name!r}; valid settings: {', '.join(SETTINGS)}")
    return SETTINGS[name]


def config_from_flags(parser: argparse.ArgumentParser, args: argparse.Namespace,
                      **defaults: Any) -> GlimpseConfig:
    """`GlimpseConfig(**defaults)` with the config flags given on the command line on top.

    For benchmarks whose parser has `tf_glimpse.cli.add_config_flags(given_only=True)`:
    a bad value exits with code 2 and a message naming it and its valid range.
    """
    from tf_glimpse.cli import config_fields

    try:
        return GlimpseConfig(**{**defaults, **config_fields(args)})
    except ConfigError as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    """`python benchmarks/settings.py`: list the settings; the last line is their JSON."""
    import json

    parser = argparse.ArgumentParser(
        prog="settings.py", description="List the named benchmark settings of "
        "ram_benchmark.py: the GlimpseConfig fields each fixes and its reference errors (%%).")
    parser.parse_args(argv)
    for setting in SETTINGS.values():
        print(f"{setting.name:<13} grid {setting.grid_size:>2} x {setting.grid_size:<2} "
              f"{setting.description}")
    print(json.dumps({name: {"flags": s.flags, **s.reference()} for name, s in SETTINGS.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
