"""Generated colour scenes: a folder data set made offline, for trying `--dataset folder:PATH`.

    python -m tf_glimpse.data.scenes data/scenes    # 3 x (1000 + 200) RGB PNGs of 96 x 96
    python train.py --dataset folder:data/scenes --img_size 96 --patch_size 12 --stride 6

Each scene is a dark, noisy RGB background with grey distractor shapes and one small
coloured square, disc or diamond at a random position; the class is the colour of that
shape (red, green or blue).  The shape covers about 1% of the picture, so a glimpse has
to find it: a model that reads the whole canvas at low resolution sees only a faint tint.
Written in the layout of `keras.utils.image_dataset_from_directory`
(PATH/<class>/NNNNN.png, and PATH/test/<class>/ for the test split).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

CLASS_COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 230)}


def _shape_mask(kind: int, side: int) -> np.ndarray:
    """A boolean side x side mask: 0 square, 1 disc, 2 diamond."""
    centre = (side - 1) / 2.0
    rows, cols = np.mgrid[:side, :side] - centre
    if kind == 1:
        return rows ** 2 + cols ** 2 <= (side / 2.0) ** 2
    if kind == 2:
        return np.abs(rows) + np.abs(cols) <= side / 2.0
    return np.ones((side, side), bool)


def draw_scene(rng: np.random.Generator, colour: tuple[int, int, int], size: int = 96,
               distractors: int = 4) -> np.ndarray:
    """One scene, uint8 [size, size, 3]: noise, grey distractors, one shape of `colour`."""
    scene = rng.integers(0, 40, size=(size, size, 3)).astype(np.uint8)
    low, high = max(4, size // 16), max(6, size // 8)
    for index in range(distractors + 1):
        side = int(rng.integers(low, high + 1))
        top, left = rng.integers(0, size - side + 1, size=2)
        mask = _shape_mask(int(rng.integers(3)), side)
        if index < distractors:
            shade = int(rng.integers(90, 200))
            paint = np.array([shade, shade, shade], np.uint8)
        else:  # the target, drawn last so that no distractor hides it
            paint = np.clip(np.array(colour) + rng.integers(-20, 21, size=3), 0, 255)
        scene[top:top + side, left:left + side][mask] = paint.astype(np.uint8)
    return scene


def write_scenes(out: str | Path, per_class: int = 1000, test_per_class: int = 200,
                 size: int = 96, distractors: int = 4, seed: int = 0) -> Path:
    """Write the folder data set: out/<class>/*.png and out/test/<class>/*.png."""
    from tf_glimpse.optional import require

    iio = require("imageio.v3", "writing the scenes", "imageio")
    out = Path(out)
    rng = np.random.default_rng(seed)
    for split, count in (("", per_class), ("test", test_per_class)):
        for name, colour in CLASS_COLOURS.items():
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                iio.imwrite(folder / f"{index:05d}.png", draw_scene(rng, colour, size,
                                                                   distractors))
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m tf_glimpse.data.scenes OUT [--per_class N] [--size I] ...`."""
    parser = argparse.ArgumentParser(prog="python -m tf_glimpse.data.scenes",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write (created; class subfolders inside)")
    parser.add_argument("--per_class", type=int, default=1000, help="training images per class")
    parser.add_argument("--test_per_class", type=int, default=200, help="test images per class")
    parser.add_argument("--size", type=int, default=96, help="side of each scene in pixels")
    parser.add_argument("--distractors", type=int, default=4, help="grey shapes per scene")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("per_class", "test_per_class", "size", "distractors"):
        low = {"size": 16, "distractors": 0}.get(name, 1)
        if getattr(args, name) < low:
            parser.error(f"--{name} {getattr(args, name)} is out of range; valid range: >= {low}")
    out = write_scenes(args.out, args.per_class, args.test_per_class, args.size,
                       args.distractors, args.seed)
    total = len(CLASS_COLOURS) * (args.per_class + args.test_per_class)
    print(f"wrote {total} scenes of {args.size}x{args.size} to {out} "
          f"({', '.join(CLASS_COLOURS)}; test/ holds {args.test_per_class} per class)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
