"""Does the agent learn where to look?  A policy report on the fixed test set.

    python -m tf_glimpse.report RUN_DIR [--gifs 5] [--limit N] [--samples M] [--data_dir DIR]

(the command line is `tf_glimpse/report.py`; this module builds the report)

Five policies choose the glimpses, and the run's trained classifier (the "best"
checkpoint) judges every one of them:

* ``learned_greedy``  - the learned policy, argmax of its logits (deterministic);
* ``learned_modal``   - the learned greedy policy's most frequent action sequence,
                        taken on every canvas: the best fixed scan the classifier
                        was trained with.  learned_greedy minus learned_modal is
                        what image dependence buys;
* ``learned_sampled`` - the learned policy, sampled with a fixed seed; with M samples
                        (``--samples``) every canvas is played M times and the class
                        probabilities are averaged (Monte Carlo evaluation, as tfRAM
                        reports its 10-sample errors), at M times the FLOPs;
* ``random``          - uniformly random cells (a fixed seed);
* ``fixed``           - the image centre first, then a square spiral around it
                        (`fixed_actions`).

A classifier trained together with the learned policy is not a fair judge of
random glimpses, so the random policy is also judged by the classifier trained
on random glimpses (``random_pretrained_judge``, the ``pretrained/`` checkpoint
written by ``train.py --pretrain True``).  Both judges see exactly the same random
glimpses: the random policy's samples depend only on the seed.

Per policy: accuracy after the last step, accuracy after each step, the
glimpse hit rate (fraction of glimpses whose P x P patch overlaps the target
digit's bounding box, `metrics.glimpse_hits`), overall and per step, and
``distinct_sequences``, the number of different action sequences it took.  Written to
``RUN_DIR/report/``:
``report.md``, ``report.json``, ``accuracy_per_step.png``, ``heatmap_grid.png``
(absolute positions) and ``heatmap_centred.png`` (glimpse centre minus digit
centre); and ``RUN_DIR/gifs/attention1.gif`` ... of the greedy policy.

Exit codes, as for train.py: 0 done; 1 a data error (the test set is missing or
corrupt: the message names the file) or a missing package (matplotlib for the plots,
imageio for the GIFs); 2 bad arguments or RUN_DIR (not a run directory, or no
checkpoint), a --data_dir whose data set is too small for the run's configuration,
or data that differ from those the run began with (``RUN_DIR/data.json``).  Nothing
is written under RUN_DIR unless the packages, the data and the checkpoint load.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tf_glimpse.analysis.plots import plot_per_step, plot_position_heatmaps, pyplot
from tf_glimpse.model.grid import ActionGrid

if TYPE_CHECKING:  # TensorFlow is imported only when a report is built (fast --help).
    from tf_glimpse.analysis.evaluation import ActionFn, Episodes

POLICIES = ("learned_greedy", "learned_modal", "learned_sampled", "random", "fixed")
JUDGED_BY_PRETRAINED = "random_pretrained_judge"
# The report's policies played by the agent itself ("random" and its pretrained judge
# play with the same seed, so both see the same glimpses).
MODES = {"learned_greedy": "greedy", "learned_sampled": "sample", "random": "random"}
DESCRIPTIONS = {
    "learned_greedy": "learned policy, argmax (deterministic)",
    "learned_modal": "the learned greedy policy's most frequent sequence, on every canvas",
    "learned_sampled": "learned policy, sampled (fixed seed)",
    "random": "uniformly random cells, judged by the trained classifier",
    "fixed": "centre first, then a square spiral around it",
    JUDGED_BY_PRETRAINED: "uniformly random cells, judged by the classifier trained on "
                          "random glimpses",
}
PRETRAIN_HINT = ("the run has no pretrained/ checkpoint; train with --pretrain True to get "
                 "the classifier trained on random glimpses")



# ------------------------------------------------------------------ policies
def fixed_actions(grid: ActionGrid, steps: int) -> np.ndarray:
    """The fixed policy: the centre cell first, then a square spiral around it -> int32 [T].

    The centre cell is the one whose patch centre is nearest the image centre.
    The spiral walks over non-overlapping patches (cells ``k = ceil(P / s)`` grid
    steps apart): ring 1 of the 8 neighbouring patches clockwise from the one
    above the centre, then ring 2, and so on; the cells in between come after all
    of those, by ring, in the same clockwise order.  With more steps than cells
    the order repeats.
    """
    centre = int(grid.from_centre(np.array([0.5, 0.5])))
    centre_row, centre_col = divmod(centre, grid.size)
    spacing = max(1, -(-grid.patch_size // grid.stride))
    rows, cols = np.divmod(np.arange(grid.num_actions), grid.size)
    d_row, d_col = rows - centre_row, cols - centre_col
    off_lattice = (d_row % spacing != 0) | (d_col % spacing != 0)
    ring = np.maximum(np.abs(d_row), np.abs(d_col))
    clockwise = np.mod(np.arctan2(d_col, -d_row), 2 * np.pi)  # 0 = up, pi/2 = right
    order = np.lexsort((clockwise, ring, off_lattice))
    return np.resize(order, steps).astype(np.int32)


def oracle_actions(boxes: np.ndarray, grid: ActionGrid, steps: int) -> np.ndarray:
    """The cell nearest the centre of each target box, every step -> int32 [B, T].

    Its patch always overlaps a non-empty box (stride <= patch size): an upper
    bound for the hit rate, used by the tests.
    """
    boxes = np.asarray(boxes, np.float64)
    centre_xy = np.stack([(boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2],
                         axis=-1) / grid.img_size
    return np.repeat(grid.from_centre(centre_xy)[:, None], steps, axis=1).astype(np.int32)


# ---------------------------------------------------------------- episodes
def run_policy(agent, dataset: Iterable[dict], policy: str | ActionFn, seed: int = 0,
               limit: int | None = None, keep_images: int = 0, progress=None,
               episode=None, samples: int = 1) -> Episodes:
    """Play one of the report's `POLICIES` (or a function batch -> actions [B, T]) with `agent`.

    `tf_glimpse.analysis.evaluation.play` under the report's names: "learned_greedy",
    "learned_sampled" and "random" are the agent's modes, "fixed" a constant spiral.
    `episode` is `evaluation.episode_function(agent)`, built once for all policies.
    `samples` M > 1 averages "learned_sampled"'s class probabilities over M episodes per
    canvas (its actions are those of the first); the other policies play once.
    """
    from tf_glimpse.analysis.evaluation import constant_policy, play

    samples = samples if policy == "learned_sampled" else 1  # The others play once.
    if policy == "fixed":
        policy = constant_policy(fixed_actions(agent.grid, agent.steps))
    elif isinstance(policy, str):
        if policy not in MODES:
            raise ValueError(f"policy={policy!r}; valid values: {', '.join(POLICIES)} or a "
                             f"function")
        policy = MODES[policy]
    return play(agent, dataset, policy, seed, samples=samples, limit=limit,
                keep_images=keep_images, progress=progress, episode=episode)


# ----------------------------------------------------------------- report
def markdown_report(report: dict, plots: dict[str, Path], gifs: list[Path], run_dir: Path) -> str:
    """The text of report.md: a results table, notes, plots and the first GIF."""
    config = report["config"]
    rows = ["| policy | judge | accuracy | error | hit rate | distinct sequences |",
            "|---|---|---:|---:|---:|---:|"]
    for name in (*POLICIES, JUDGED_BY_PRETRAINED):
        result = report.get(name)
        if result is None:
            continue
        rows.append(f"| `{name}` | {result['judge']} | {result['accuracy']:.4f} | "
                    f"{100 * result['error']:.2f}% | {result['hit_rate']:.3f} | "
                    f"{result['distinct_sequences']} |")
    if JUDGED_BY_PRETRAINED in report["unavailable"]:
        rows.append(f"| `{JUDGED_BY_PRETRAINED}` | pretrained | n/a | n/a | n/a | n/a |")
    lines = [
        "# Policy report: does the agent learn where to look?", "",
        f"Run `{run_dir}`: {config['img_size']}x{config['img_size']} canvases, "
        f"{config['clutter_count']} clutter pieces, {config['patch_size']}x{config['patch_size']} "
        f"glimpses at {config['scales']} scale(s), stride {config['stride']}, "
        f"{config['steps']} steps.  {report['test_images']} test canvases "
        f"({'the first ones of ' if report['limited'] else ''}the fixed test set); "
        f"classifier: `{report['checkpoint']}`.", "",
        *rows, "", verdict(report), "",
        "* judge `trained`: the run's classifier (trained with the learned policy); "
        "`pretrained`: the classifier after supervised pre-training on random glimpses.",
        "* hit rate: fraction of glimpses whose patch overlaps the target digit's box.",
        "* `fixed`: " + DESCRIPTIONS["fixed"] + f" (actions {report['fixed_actions']}).",
        "* `random` and `random_pretrained_judge` see exactly the same glimpses.",
    ]
    if report["samples"] > 1:
        lines.append(f"* `learned_sampled`: {report['samples']} sampled episodes per canvas, "
                     f"their class probabilities averaged (distinct sequences: the first's).")
    if JUDGED_BY_PRETRAINED in report["unavailable"]:
        lines.append(f"* `{JUDGED_BY_PRETRAINED}`: unavailable, "
                     f"{report['unavailable'][JUDGED_BY_PRETRAINED]}.")
    lines += ["", "## Accuracy and hit rate after each step", "",
              f"![accuracy per step]({plots['accuracy_per_step'].name})", "",
              "## Where the glimpses go", "",
              f"![digit-centred heat maps]({plots['heatmap_centred'].name})", "",
              f"![grid heat maps]({plots['heatmap_grid'].name})", ""]
    if gifs:
        lines += ["## Learned policy (greedy) on test canvases", "",
                  " ".join(f"![attention {i + 1}](../gifs/{p.name})" for i, p in enumerate(gifs)),
                  ""]
    lines += ["Command: `" + report["command"] + "`", ""]
    return "\n".join(lines)


def verdict(report: dict) -> str:
    """One sentence: does the learned greedy policy beat its own modal scan, the fixed
    and the random policy, and by how many points of accuracy?"""
    greedy = report["learned_greedy"]
    rivals = [("its own modal scan", "learned_modal"), ("the fixed scan", "fixed"),
              ("the random policy", JUDGED_BY_PRETRAINED if JUDGED_BY_PRETRAINED in report
               else "random")]
    parts = []
    for label, name in rivals:
        gap = 100 * (greedy["accuracy"] - report[name]["accuracy"])
        word = "beats" if gap > 0 else "does not beat"
        parts.append(f"{word} {label} (`{name}`) by {gap:+.2f} points")
    return (f"The learned greedy policy ({greedy['distinct_sequences']} distinct sequences on "
            f"{greedy['count']} canvases) " + ", ".join(parts[:-1]) + " and " + parts[-1] + ".")


def build_report(run_dir: str | Path, data_dir: str | None = None, limit: int | None = None,
                 gifs: int = 5, seed: int = 0, checkpoint: str = "best",
                 command: str = "", verbose: int = 1, samples: int = 1) -> dict:
    """Evaluate every policy on the test set and write report.md/json, plots and GIFs.

    (81 lines: the policies are played in an order that later ones depend on, the modal
    scan on the greedy one, and the judge of random glimpses on the pre-trained run.)

    Returns the report (also written to RUN_DIR/report/report.json): per policy its
    accuracy, hit rate and distinct sequences, overall and per step; `samples` M is
    the number of sampled episodes "learned_sampled" averages per canvas.
    """
    run_dir = Path(run_dir)
    from tf_glimpse.analysis.evaluation import constant_policy, episode_function, summarize
    from tf_glimpse.analysis.metrics import sequence_diversity
    from tf_glimpse.analysis.visualize import save_attention_gifs
    from tf_glimpse.data.canvas import split_dataset
    from tf_glimpse.data.sources import config_splits
    from tf_glimpse.optional import require
    from tf_glimpse.progress import progress_bar
    from tf_glimpse.training.runs import RunError, check_data, latest_checkpoint, load_agent

    # The packages of the plots and GIFs first: fail before any work, writing nothing.
    pyplot()
    if gifs:
        require("imageio", "the attention GIFs")
    config, agent = load_agent(run_dir, checkpoint)
    splits = config_splits(config, data_dir)
    check_data(run_dir, splits, data_dir or config.data_dir)
    dataset = split_dataset(splits, config, "test")
    grid = config.grid
    total = len(splits.test_labels) if limit is None else min(limit, len(splits.test_labels))
    batches = -(-total // config.batch_size)

    episode_functions: dict[int, Callable] = {}  # One per judge: each mode compiled once.

    def play(judge, policy: str, keep: int = 0, name: str | None = None) -> Episodes:
        if verbose:
            print(f"{name or policy}:")
        bar = progress_bar(batches, verbose, unit_name="batch")
        episode = episode_functions.setdefault(id(judge), episode_function(judge))
        return run_policy(judge, dataset, policy, seed, limit, keep, bar, episode, samples)

    episodes = {"learned_greedy": play(agent, "learned_greedy", gifs)}
    modal = sequence_diversity(episodes["learned_greedy"].actions)["modal_sequence"]
    episodes["learned_modal"] = play(agent, constant_policy(np.array(modal)), name="learned_modal")
    episodes.update({name: play(agent, name) for name in POLICIES if name not in episodes})
    results = {name: {**summarize(e), "judge": "trained", "description": DESCRIPTIONS[name]}
               for name, e in episodes.items()}
    if samples > 1:
        results["learned_sampled"]["description"] += (
            f", class probabilities averaged over {samples} episodes per canvas")
    unavailable = {}
    try:
        pretrained_path = latest_checkpoint(run_dir, "pretrained")
        _, pretrained = load_agent(run_dir, "pretrained")
        judged = play(pretrained, "random", name=JUDGED_BY_PRETRAINED)
        results[JUDGED_BY_PRETRAINED] = {**summarize(judged), "judge": "pretrained",
                                         "description": DESCRIPTIONS[JUDGED_BY_PRETRAINED]}
    except RunError:
        pretrained_path = None
        unavailable[JUDGED_BY_PRETRAINED] = PRETRAIN_HINT

    out_dir = Path(run_dir) / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    per_step = plot_per_step(results, out_dir / "accuracy_per_step.png",
                             repeats=(JUDGED_BY_PRETRAINED,),  # The random policy's glimpses.
                             num_classes=config.num_classes)
    plots = {"accuracy_per_step": per_step,
             **plot_position_heatmaps(episodes, grid, out_dir)}
    greedy = episodes["learned_greedy"]
    gif_paths = save_attention_gifs(Path(run_dir) / "gifs", greedy.images, greedy.actions,
                                    greedy.probs, grid, config.scales, greedy.labels, gifs)
    report = {
        "run_dir": str(run_dir), "command": command, "test_images": results["fixed"]["count"],
        "limited": limit is not None and limit < len(splits.test_labels),
        "checkpoint": latest_checkpoint(run_dir, checkpoint),
        "pretrained_checkpoint": pretrained_path, "seed": seed, "samples": samples,
        "fixed_actions": fixed_actions(grid, config.steps).tolist(),
        "policies": list(results), **results, "unavailable": unavailable,
        "config": config.to_dict(),
        "plots": {name: path.name for name, path in plots.items()},
        "gifs": [str(p.relative_to(run_dir)) for p in gif_paths],
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(markdown_report(report, plots, gif_paths, Path(run_dir)))
    return report


# ------------------------------------------------------------- command line
