"""The policy report's pictures: where the glimpses land, and accuracy after each step.

* `centred_offsets` / `offset_histogram` - glimpse centres relative to the digit;
* `plot_per_step` - accuracy and hit rate after each step, one line per policy;
* `plot_position_heatmaps` - absolute and digit-centred heat maps, one panel per policy.

Matplotlib is needed only here (`tf_glimpse.optional.require` names it when missing).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tf_glimpse.model.grid import ActionGrid

if TYPE_CHECKING:
    from tf_glimpse.analysis.evaluation import Episodes


def glimpse_centres_px(actions: np.ndarray, grid: ActionGrid) -> np.ndarray:
    """Glimpse centres (x, y) in canvas pixels: actions [...] -> [..., 2]."""
    return grid.centres(np.asarray(actions)) * grid.img_size


def centred_offsets(actions: np.ndarray, boxes: np.ndarray, grid: ActionGrid) -> np.ndarray:
    """Glimpse centre minus target-box centre, (dx, dy) pixels: [n, T], [n, 4] -> [n, T, 2]."""
    boxes = np.asarray(boxes, np.float64)
    box_xy = np.stack([(boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2], axis=-1)
    return glimpse_centres_px(actions, grid) - box_xy[:, None, :]


def offset_histogram(offsets: np.ndarray, grid: ActionGrid) -> tuple[np.ndarray, np.ndarray]:
    """2-D histogram [rows = dy, cols = dx] of offsets with stride-wide bins over +-img_size."""
    edges = np.arange(-grid.img_size, grid.img_size + grid.stride, grid.stride,
                      dtype=np.float64) - grid.stride / 2
    flat = np.asarray(offsets).reshape(-1, 2)
    counts, _, _ = np.histogram2d(flat[:, 1], flat[:, 0], bins=[edges, edges])
    return counts, edges


# ------------------------------------------------------------------- plots
def pyplot():
    """matplotlib.pyplot with the Agg backend (no display needed)."""
    from tf_glimpse.optional import require

    matplotlib = require("matplotlib", "the policy report's plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_per_step(results: dict[str, dict], path: Path, repeats: tuple[str, ...] = (),
                  num_classes: int = 10) -> Path:
    """Accuracy and hit rate after each step, one line per policy -> PNG.

    Policies in `repeats` take another policy's glimpses (a second judge of them): their
    accuracy is dashed and their hit rate, the other's, is not drawn again.  The chance
    line is at 1 / `num_classes`.
    """
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, result in results.items():
        steps = np.arange(1, len(result["accuracy_per_step"]) + 1)
        style = "--" if name in repeats else "-"
        axes[0].plot(steps, result["accuracy_per_step"], style, marker="o", label=name)
        if name not in repeats:
            axes[1].plot(steps, result["hit_rate_per_step"], marker="o", label=name)
    axes[0].axhline(1.0 / num_classes, color="grey", linewidth=0.8, linestyle=":",
                    label="chance")
    for ax, title in zip(axes, ("test accuracy after step t", "glimpse hit rate at step t")):
        ax.set_title(title)
        ax.set_xlabel("step t")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot_heatmaps(maps: dict[str, np.ndarray], path: Path, extent: list[float], xlabel: str,
                  ylabel: str, title: str, box_size: tuple[float, float] | None = None) -> Path:
    """One heat map per policy (fraction of glimpses) side by side -> PNG."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(maps), figsize=(3.4 * len(maps), 3.6), squeeze=False)
    for ax, (name, counts) in zip(axes[0], maps.items()):
        fraction = counts / max(float(counts.sum()), 1.0)
        image = ax.imshow(fraction, extent=extent, origin="upper", cmap="inferno",
                          interpolation="nearest")
        if box_size is not None:
            height, width = box_size
            ax.add_patch(plt.Rectangle((-width / 2, -height / 2), width, height, fill=False,
                                       edgecolor="cyan", linewidth=1))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot_position_heatmaps(episodes: dict[str, Episodes], grid: ActionGrid,
                           out_dir: Path) -> dict[str, Path]:
    """The absolute (grid) and digit-centred heat maps of glimpse positions -> PNG paths."""
    from tf_glimpse.analysis.visualize import position_counts

    low = grid.origin + grid.patch_size / 2 - grid.stride / 2
    high = low + grid.size * grid.stride
    absolute = plot_heatmaps(
        {name: position_counts(e.actions, grid) for name, e in episodes.items()},
        out_dir / "heatmap_grid.png", [low, high, high, low], "x (pixels)", "y (pixels)",
        "glimpse centres on the canvas (fraction of glimpses)")
    histograms = {name: offset_histogram(centred_offsets(e.actions, e.boxes, grid), grid)
                  for name, e in episodes.items()}
    edges = next(iter(histograms.values()))[1]
    some = next(iter(episodes.values())).boxes.astype(np.float64)
    box_size = (float(np.mean(some[:, 2] - some[:, 0])),
                float(np.mean(some[:, 3] - some[:, 1])))
    centred = plot_heatmaps(
        {name: counts for name, (counts, _) in histograms.items()},
        out_dir / "heatmap_centred.png", [edges[0], edges[-1], edges[-1], edges[0]],
        "dx = glimpse - digit centre (pixels)", "dy (pixels, down)",
        "glimpse centres relative to the digit (cyan: mean digit box)", box_size)
    return {"heatmap_grid": absolute, "heatmap_centred": centred}
