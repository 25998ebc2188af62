"""Pictures of where the agent looks: animated GIFs, TensorBoard images and heat maps.

Everything here is numpy on arrays the agent already produced (canvases, action
ids, class probabilities): no TensorFlow, no matplotlib, so it is cheap to call
from the training loop.  (Over 300 lines because it draws its own text: a 3 x 5 pixel
font keeps the GIFs free of a font or plotting dependency.)

A frame is the canvas upscaled by nearest neighbour (``upscale`` x, 4 for a 64 x 64
canvas, chosen by `default_upscale`) with a strip of text and probability bars below:

* the glimpse boxes of the current step, one colour per scale (`SCALE_COLOURS`:
  scale 0 yellow, 1 orange, 2 magenta, ...; larger scales may extend past the
  canvas edge and are clipped);
* the scale-0 boxes of earlier steps in dim yellow, each numbered 1..T at its
  top-left corner;
* the path so far: cyan lines between consecutive glimpse centres, a dot at each;
* the text ``STEP t/T  PRED c  pp%`` (green when right, red when wrong, white when
  the label is unknown), ``TRUE y``, and one bar per class for the predicted
  probabilities after the step.

Text uses a built-in 3 x 5 pixel font (digits, upper-case letters, a few signs).

GIFs (`attention_gif_frames`, `write_gif`): one frame per step; with
``title_frame=True`` (the default) a first frame shows the bare canvas and its
label before any glimpse, so a GIF of T steps has T + 1 frames.

TensorBoard: `trajectory_images` (one image per canvas with the whole episode)
and `heatmap_image` of `position_counts` (how often each grid cell was looked at)
return uint8 arrays ready for ``tf.summary.image``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tf_glimpse.model.grid import ActionGrid

Colour = tuple[int, int, int]

BACKGROUND: Colour = (18, 22, 38)      # Canvas value 0 (dark navy).
FOREGROUND: Colour = (235, 235, 235)   # Canvas value 1.
CANVAS_LEVELS = 32                     # Grey levels kept: small palette, small exact GIFs.
STRIP: Colour = (0, 0, 0)              # Background of the text strip.
SCALE_COLOURS: tuple[Colour, ...] = (
    (255, 221, 0),    # scale 0: yellow
    (255, 128, 0),    # scale 1: orange
    (235, 60, 200),   # scale 2: magenta
    (150, 90, 255),   # scale 3: violet
    (70, 140, 255),   # scale 4: blue
    (255, 70, 70),    # scale 5: red
)
PAST_BOX: Colour = (130, 112, 20)      # Scale-0 boxes of earlier steps.
PATH: Colour = (0, 210, 255)           # Lines and dots between glimpse centres.
TEXT: Colour = (255, 255, 255)
RIGHT: Colour = (60, 220, 90)
WRONG: Colour = (255, 70, 70)
BAR: Colour = (110, 110, 130)
TARGET_FRAME_WIDTH = 256               # `default_upscale` aims at about this many pixels.

# 3 x 5 bitmap font: 15 characters per glyph, rows top to bottom, "#" = ink.
_FONT_ROWS = {
    "0": "####.##.##.####", "1": ".#.##..#..#.###", "2": "###..#####..###",
    "3": "###..#.##..####", "4": "#.##.####..#..#", "5": "####..###..####",
    "6": "####..####.####", "7": "###..#..#.#..#.", "8": "####.#####.####",
    "9": "####.####..####", "A": ".#.#.#####.##.#", "B": "##.#.###.#.###.",
    "C": ".###..#..#...##", "D": "##.#.##.##.###.", "E": "####..##.#..###",
    "F": "####..##.#..#..", "G": ".###..#.##.#.##", "H": "#.##.#####.##.#",
    "I": "###.#..#..#.###", "J": "..#..#..##.#.#.", "K": "#.##.###.#.##.#",
    "L": "#..#..#..#..###", "M": "#.########.##.#", "N": "##.#.##.##.##.#",
    "O": ".#.#.##.##.#.#.", "P": "##.#.###.#..#..", "Q": ".#.#.##.###..##",
    "R": "##.#.###.#.##.#", "S": ".###...#...###.", "T": "###.#..#..#..#.",
    "U": "#.##.##.##.####", "V": "#.##.##.##.#.#.", "W": "#.##.########.#",
    "X": "#.##.#.#.#.##.#", "Y": "#.##.#.#..#..#.", "Z": "###..#.#.#..###",
    " ": "...............", ".": ".............#.", ":": "....#.....#....",
    "%": "#.#..#.#.#..#.#", "/": "..#..#.#.#..#..", "-": "......###......",
    "=": "...###...###...", "?": "##...#.#.....#.",
}


def _glyph_table() -> dict[str, np.ndarray]:
    """The font as boolean [5, 3] arrays."""
    return {char: np.array([c == "#" for c in rows]).reshape(5, 3)
            for char, rows in _FONT_ROWS.items()}


FONT = _glyph_table()
GLYPH_HEIGHT, GLYPH_WIDTH = 5, 3


# ---------------------------------------------------------------- primitives
def default_upscale(img_size: int) -> int:
    """The nearest-neighbour factor that makes a canvas about 256 pixels wide (at least 1)."""
    return max(1, round(TARGET_FRAME_WIDTH / img_size))


def text_width(text: str, size: int) -> int:
    """Width in pixels of `text` drawn with `draw_text` at font `size`."""
    return max(0, len(text) * (GLYPH_WIDTH + 1) * size - size)


def draw_text(frame: np.ndarray, text: str, top: int, left: int, colour: Colour,
              size: int = 1) -> None:
    """Draw `text` (upper-cased; unknown characters as "?") in place, clipped to the frame."""
    for index, char in enumerate(text.upper()):
        glyph = FONT.get(char, FONT["?"])
        ink = np.kron(glyph, np.ones((size, size), bool))
        x = left + index * (GLYPH_WIDTH + 1) * size
        _paint(frame, ink, top, x, colour)


def _paint(frame: np.ndarray, mask: np.ndarray, top: int, left: int, colour: Colour) -> None:
    """Set the pixels of `mask` (placed at top, left) to `colour`, clipped to the frame."""
    height, width = frame.shape[:2]
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + mask.shape[0], height), min(left + mask.shape[1], width)
    if r0 >= r1 or c0 >= c1:
        return
    region = frame[r0:r1, c0:c1]
    region[mask[r0 - top:r1 - top, c0 - left:c1 - left]] = colour


def fill_rect(frame: np.ndarray, top: int, left: int, bottom: int, right: int,
              colour: Colour) -> None:
    """Fill rows [top, bottom) x columns [left, right), clipped to the frame."""
    height, width = frame.shape[:2]
    top, bottom = max(top, 0), min(bottom, height)
    left, right = max(left, 0), min(right, width)
    if top < bottom and left < right:
        frame[top:bottom, left:right] = colour


def draw_box(frame: np.ndarray, box: Sequence[float], upscale: int, colour: Colour,
             thickness: int = 2, limit: int | None = None) -> None:
    """Outline a canvas-pixel box (top, left, bottom, right), half-open, on an upscaled frame.

    The outline lies just inside the box: its outer pixels are frame rows
    ``top * upscale`` and ``bottom * upscale - 1`` (and the same for columns).
    Only rows and columns below `limit` (the canvas area) are drawn.
    """
    top, left, bottom, right = (int(round(v * upscale)) for v in box)
    area = frame if limit is None else frame[:limit, :limit]
    fill_rect(area, top, left, bottom, left + thickness, colour)
    fill_rect(area, top, right - thickness, bottom, right, colour)
    fill_rect(area, top, left, top + thickness, right, colour)
    fill_rect(area, bottom - thickness, left, bottom, right, colour)


def draw_line(frame: np.ndarray, start: Sequence[float], end: Sequence[float], colour: Colour,
              thickness: int = 2) -> None:
    """A straight line between two (row, col) frame points, `thickness` pixels wide."""
    (r0, c0), (r1, c1) = start, end
    count = int(max(abs(r1 - r0), abs(c1 - c0))) + 1
    rows = np.rint(np.linspace(r0, r1, count)).astype(int)
    cols = np.rint(np.linspace(c0, c1, count)).astype(int)
    brush = np.ones((thickness, thickness), bool)
    for row, col in zip(rows, cols):
        _paint(frame, brush, row - thickness // 2, col - thickness // 2, colour)


def colour_canvas(image: np.ndarray, upscale: int) -> np.ndarray:
    """A canvas [I, I] or [I, I, C] in [0, 1] -> uint8 RGB [I*u, I*u, 3].

    Grayscale (C = 1) is drawn navy to white, colour (C = 3) in its own colours.
    """
    image = np.asarray(image, np.float32)
    if image.ndim == 3 and image.shape[-1] == 3:
        rgb = np.rint(np.clip(image, 0, 1) * 255.0).astype(np.uint8)
    else:
        values = np.clip(image.reshape(image.shape[0], image.shape[1]), 0, 1)
        values = np.rint(values * (CANVAS_LEVELS - 1)) / (CANVAS_LEVELS - 1)
        low, high = np.array(BACKGROUND, np.float32), np.array(FOREGROUND, np.float32)
        rgb = np.rint(low + values[..., None] * (high - low)).astype(np.uint8)
    return np.repeat(np.repeat(rgb, upscale, axis=0), upscale, axis=1)


# ------------------------------------------------------------------- frames
def strip_layout(width: int) -> dict[str, int]:
    """Font size and heights of the strip below the canvas for a frame `width` pixels wide."""
    size = 2 if width >= 200 else 1
    line = GLYPH_HEIGHT * size + 2 * size
    bars = 8 * size
    return {"size": size, "line": line, "bars": bars, "height": 2 * line + bars + line + 2 * size}


def render_frame(image: np.ndarray, actions: Sequence[int], grid: ActionGrid, scales: int = 1,
                 probs: np.ndarray | None = None, label: int | None = None,
                 total_steps: int | None = None, upscale: int | None = None,
                 num_classes: int | None = None) -> np.ndarray:
    """One picture of an episode so far -> uint8 [H, W, 3].

    `actions` are the glimpses taken so far (the last one is "current" and drawn
    at every scale); `probs` [C] are the class probabilities after the last of
    them (None: no prediction yet, e.g. the title frame, which then draws
    `num_classes` empty bars; default C, else 10).
    """
    num_classes = num_classes or (10 if probs is None else len(probs))
    upscale = upscale or default_upscale(grid.img_size)
    canvas = colour_canvas(image, upscale)
    side = canvas.shape[0]
    layout = strip_layout(side)
    frame = np.zeros((side + layout["height"], side, 3), np.uint8)
    frame[:] = STRIP
    frame[:side] = canvas
    actions = [int(a) for a in actions]
    _draw_episode(frame, actions, grid, scales, upscale, side)
    _draw_strip(frame, side, layout, len(actions), total_steps, probs, label, num_classes)
    return frame


def _draw_episode(frame: np.ndarray, actions: list[int], grid: ActionGrid, scales: int,
                  upscale: int, side: int) -> None:
    """Path, past boxes, current boxes (largest scale first) and step numbers."""
    if not actions:
        return
    centres = grid.centres(np.array(actions)) * grid.img_size * upscale  # (x, y) frame pixels
    points = [(float(y), float(x)) for x, y in centres]
    for start, end in zip(points[:-1], points[1:]):
        draw_line(frame[:side], start, end, PATH)
    for action in actions[:-1]:
        draw_box(frame, grid.box(action, 0), upscale, PAST_BOX, thickness=1, limit=side)
    for scale in reversed(range(scales)):
        colour = SCALE_COLOURS[scale % len(SCALE_COLOURS)]
        draw_box(frame, grid.box(actions[-1], scale), upscale, colour, limit=side)
    dot = np.ones((4, 4), bool)
    for row, col in points:
        _paint(frame[:side], dot, int(row) - 2, int(col) - 2, PATH)
    size = 2 if grid.patch_size * upscale >= 24 else 1
    for step, action in enumerate(actions):
        top, left = (int(round(v * upscale)) for v in grid.box(action, 0)[:2])
        colour = TEXT if step == len(actions) - 1 else PAST_BOX
        draw_text(frame[:side], str(step + 1), top + 3, left + 3, colour, size)


def _draw_strip(frame: np.ndarray, top: int, layout: dict[str, int], step: int,
                total_steps: int | None, probs: np.ndarray | None, label: int | None,
                num_classes: int) -> None:
    """Text ("STEP t/T PRED c pp%", "TRUE y") and one probability bar per class."""
    size, line = layout["size"], layout["line"]
    y = top + size
    steps = f"STEP {step}/{total_steps}" if total_steps else f"STEP {step}"
    if probs is None:
        draw_text(frame, "START" if step == 0 else steps, y, 2 * size, TEXT, size)
    else:
        probs = np.asarray(probs, np.float64)
        prediction = int(np.argmax(probs))
        colour = TEXT if label is None else (RIGHT if prediction == int(label) else WRONG)
        text = f"{steps}  PRED {prediction} {int(round(100 * probs[prediction]))}%"
        draw_text(frame, text, y, 2 * size, colour, size)
    if label is not None:
        draw_text(frame, f"TRUE {int(label)}", y + line, 2 * size, TEXT, size)
    _draw_bars(frame, y + 2 * line, layout, probs, label, num_classes)


def _draw_bars(frame: np.ndarray, top: int, layout: dict[str, int], probs: np.ndarray | None,
               label: int | None, classes: int) -> None:
    """Class probabilities (empty when None) as `classes` vertical bars, the class id below
    each."""
    size, height = layout["size"], layout["bars"]
    width = frame.shape[1] // classes
    prediction = None if probs is None else int(np.argmax(probs))
    for c in range(classes):
        left = c * width + width // 4
        bar_width = max(1, width // 2)
        if probs is not None:
            filled = int(round(float(probs[c]) * height))
            colour = BAR if c != prediction else (
                TEXT if label is None else (RIGHT if c == int(label) else WRONG))
            fill_rect(frame, top + height - filled, left, top + height, left + bar_width, colour)
        digit_left = left + bar_width // 2 - text_width(str(c), size) // 2
        draw_text(frame, str(c), top + height + size, digit_left,
                  TEXT if label is not None and c == int(label) else BAR, size)


# --------------------------------------------------------------------- GIFs
def attention_gif_frames(image: np.ndarray, actions: Sequence[int], step_probs: np.ndarray,
                         grid: ActionGrid, scales: int = 1, label: int | None = None,
                         title_frame: bool = True, upscale: int | None = None) -> list[np.ndarray]:
    """The frames of one canvas's GIF: [title frame,] then one frame after each step.

    step_probs [T, C]: class probabilities after each step.
    """
    total = len(actions)
    frames = []
    if title_frame:
        frames.append(render_frame(image, [], grid, scales, None, label, total, upscale,
                                   num_classes=step_probs.shape[-1]))
    for step in range(total):
        frames.append(render_frame(image, actions[:step + 1], grid, scales, step_probs[step],
                                   label, total, upscale))
    return frames


def write_gif(path: str | Path, frames: Sequence[np.ndarray], step_ms: int = 700,
              first_ms: int | None = None, last_ms: int = 2000) -> Path:
    """Write frames as a looping GIF with imageio (first/last frames held longer)."""
    from tf_glimpse.optional import require

    iio = require("imageio.v3", "the attention GIFs", "imageio")

    durations = [step_ms] * len(frames)
    if first_ms is not None:
        durations[0] = first_ms
    durations[-1] = last_ms
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=durations, loop=0)
    return path


def save_attention_gifs(out_dir: str | Path, images: np.ndarray, actions: np.ndarray,
                        step_probs: np.ndarray, grid: ActionGrid, scales: int = 1,
                        labels: np.ndarray | None = None, count: int | None = None,
                        title_frame: bool = True) -> list[Path]:
    """Write ``attention1.gif``, ``attention2.gif``, ... for the first `count` canvases.

    Older ``attention<k>.gif`` files in `out_dir` are removed first, so the
    directory always holds exactly this set.
    """
    count = len(images) if count is None else min(count, len(images))
    for old in Path(out_dir).glob("attention*.gif"):
        if old.stem[len("attention"):].isdigit():
            old.unlink()
    paths = []
    for i in range(count):
        label = None if labels is None else int(labels[i])
        frames = attention_gif_frames(images[i], actions[i], step_probs[i], grid, scales, label,
                                      title_frame)
        paths.append(write_gif(Path(out_dir) / f"attention{i + 1}.gif", frames,
                               first_ms=1000 if title_frame else None))
    return paths


# -------------------------------------------------------------- TensorBoard
def trajectory_images(images: np.ndarray, actions: np.ndarray, step_probs: np.ndarray,
                      grid: ActionGrid, scales: int = 1, labels: np.ndarray | None = None,
                      upscale: int | None = None) -> np.ndarray:
    """Whole episodes, one picture per canvas -> uint8 [n, H, W, 3] for ``tf.summary.image``.

    images [n, I, I, C] in [0, 1], actions [n, T], step_probs [n, T, C] (softmax of
    ``step_logits``); the prediction shown is the one after the last step.
    Tensors are accepted (converted with numpy).
    """
    images, actions, step_probs = (np.asarray(x) for x in (images, actions, step_probs))
    total = actions.shape[1]
    frames = [render_frame(images[i], actions[i], grid, scales, step_probs[i, -1],
                           None if labels is None else int(np.asarray(labels)[i]), total, upscale)
              for i in range(len(images))]
    return np.stack(frames)


def position_counts(actions: np.ndarray, grid: ActionGrid) -> np.ndarray:
    """How often each grid cell was chosen: actions [...] -> float [N, N] (row = y, col = x)."""
    counts = np.bincount(np.asarray(actions).reshape(-1), minlength=grid.num_actions)
    return counts.reshape(grid.size, grid.size).astype(np.float32)


_HEAT_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_HEAT_COLOURS = np.array([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9),
                          (252, 255, 164)], np.float32)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB on a black-purple-red-orange-yellow scale."""
    values = np.clip(np.asarray(values, np.float32), 0, 1)
    channels = [np.interp(values, _HEAT_STOPS, _HEAT_COLOURS[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def heatmap_image(counts: np.ndarray, upscale: int | None = None) -> np.ndarray:
    """Counts [N, N] -> uint8 [1, H, W, 3]: each cell a block, brightest = most visited.

    Counts are divided by their maximum (all zero stays black); `upscale`
    defaults to about 256 / N pixels per cell.
    """
    counts = np.asarray(counts, np.float32)
    peak = float(counts.max()) if counts.size else 0.0
    rgb = heat_colours(counts / peak if peak > 0 else counts)
    upscale = upscale or max(1, TARGET_FRAME_WIDTH // max(counts.shape))
    rgb = np.repeat(np.repeat(rgb, upscale, axis=0), upscale, axis=1)
    return rgb[None]
