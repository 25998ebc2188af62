"""The policy report and its pictures: GIF frames, boxes, hand-checked numbers, CLI errors."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tensorflow as tf

from tf_glimpse import report as report_cli
from tf_glimpse.analysis import evaluation, report, visualize
from tf_glimpse.analysis import plots as report_plots
from tf_glimpse.config import GlimpseConfig
from tf_glimpse.model.agent import GlimpseAgent
from tf_glimpse.model.grid import ActionGrid

CONFIG = GlimpseConfig(img_size=32, clutter_count=0, patch_size=8, stride=4, steps=3,
                       embedding_units=16, memory_units=16, classifier_units=16,
                       glimpse_units=16, location_units=8, attention_heads=2, batch_size=5,
                       val_size=100, subset=20, jit_compile=False)
GRID = CONFIG.grid  # 7 x 7 cells


@pytest.fixture(scope="module")
def agent() -> GlimpseAgent:
    tf.keras.utils.set_random_seed(0)
    return GlimpseAgent.from_glimpse_config(CONFIG)


def toy_batches(count: int = 8, batch_size: int = 5, seed: int = 0) -> list[dict]:
    """Canvases holding one bright 10 x 10 square each; its box is the target."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 32, 32, 1), np.float32)
    boxes = np.zeros((count, 4), np.int32)
    for i in range(count):
        top, left = rng.integers(0, 22, size=2)
        images[i, top:top + 10, left:left + 10] = rng.uniform(0.3, 1.0, (10, 10, 1))
        boxes[i] = (top, left, top + 10, left + 10)
    labels = rng.integers(0, 10, size=count).astype(np.int32)
    return [{"image": images[s:s + batch_size], "label": labels[s:s + batch_size],
             "box": boxes[s:s + batch_size]} for s in range(0, count, batch_size)]


def concat(batches: list[dict], key: str) -> np.ndarray:
    return np.concatenate([b[key] for b in batches])


def hand_hits(actions: np.ndarray, boxes: np.ndarray, grid: ActionGrid) -> np.ndarray:
    """Overlap of each P x P patch with its box, by explicit pixel masks."""
    hits = np.zeros(actions.shape, np.float32)
    for i, row in enumerate(actions):
        target = np.zeros((grid.img_size, grid.img_size), bool)
        target[boxes[i, 0]:boxes[i, 2], boxes[i, 1]:boxes[i, 3]] = True
        for t, action in enumerate(row):
            top, left = (int(v) for v in grid.top_left(action))
            hits[i, t] = target[max(top, 0):top + grid.patch_size,
                                max(left, 0):left + grid.patch_size].any()
    return hits


# ------------------------------------------------------------------- pictures
@pytest.mark.parametrize("title_frame", [True, False])
def test_gif_has_one_frame_per_step_at_expected_size(tmp_path, title_frame):
    batch = toy_batches(2)[0]
    actions = np.array([[24, 0, 48], [10, 11, 12]])
    probs = np.full((2, 3, 10), 0.1, np.float32)
    paths = visualize.save_attention_gifs(tmp_path, batch["image"], actions, probs, GRID,
                                          scales=2, labels=batch["label"], count=2,
                                          title_frame=title_frame)
    assert [p.name for p in paths] == ["attention1.gif", "attention2.gif"]
    upscale = visualize.default_upscale(32)
    side = 32 * upscale
    height = side + visualize.strip_layout(side)["height"]
    for path in paths:
        frames = iio.imread(path, index=None)
        assert frames.shape[:3] == (3 + title_frame, height, side)
        assert path.stat().st_size < 200_000


def test_box_drawn_where_the_action_puts_it(tmp_path):
    action = int(GRID.to_action(3, 2))  # top-left pixel (12, 8), an 8 x 8 patch
    image = np.zeros((32, 32, 1), np.float32)
    frame = visualize.render_frame(image, [action], GRID, scales=2, probs=np.eye(10)[4],
                                   label=4, total_steps=1, upscale=4)
    top, left, bottom, right = (int(v) * 4 for v in GRID.box(action, 0))
    assert (top, left, bottom, right) == (48, 32, 80, 64)
    yellow, orange = visualize.SCALE_COLOURS[:2]
    middle = (left + right) // 2
    for row, col in [(top, middle), (bottom - 1, middle), ((top + bottom) // 2, left),
                     ((top + bottom) // 2, right - 1)]:
        assert tuple(frame[row, col]) == yellow, (row, col)
    assert tuple(frame[top - 1, middle]) == visualize.BACKGROUND  # just outside
    top1, left1 = (int(v) * 4 for v in GRID.box(action, 1)[:2])  # scale 1: 16 x 16
    assert tuple(frame[top1, middle]) == orange and top1 == top - 16
    # The same pixel survives the GIF palette: frame 1 (after the title frame).
    path = visualize.write_gif(tmp_path / "one.gif", [frame * 0, frame])
    assert tuple(iio.imread(path, index=None)[1][top, middle, :3]) == yellow


def test_trajectory_and_heatmap_images_for_tensorboard():
    batch = toy_batches(3)[0]
    actions = np.array([[0, 1, 2], [3, 4, 5], [6, 6, 6]])
    probs = tf.nn.softmax(tf.random.stateless_normal([3, 3, 10], seed=[1, 2]))
    images = visualize.trajectory_images(tf.constant(batch["image"]), actions, probs, GRID)
    assert images.dtype == np.uint8 and images.shape[0] == 3 and images.shape[-1] == 3
    counts = visualize.position_counts(actions, GRID)
    assert counts.shape == (7, 7) and counts.sum() == 9 and counts[0, 6] == 3
    heat = visualize.heatmap_image(counts)
    assert heat.dtype == np.uint8 and heat.shape[0] == 1 and heat.shape[-1] == 3
    cell = heat.shape[1] // 7
    row, col = np.unravel_index(np.argmax(heat[0].astype(int).sum(-1)), heat.shape[1:3])
    assert (row // cell, col // cell) == (0, 6)  # the most visited cell is the brightest


# -------------------------------------------------------------------- policies
def test_fixed_policy_starts_at_the_centre_cell():
    grid = ActionGrid(64, 8, 4)
    actions = report.fixed_actions(grid, 6)
    assert actions[0] == grid.to_action(7, 7)  # centre (32, 32) of a 15 x 15 grid
    rows, cols = grid.to_row_col(actions)
    # Then clockwise from above, one patch (2 cells) apart: up, up-right, right, ...
    assert list(zip(rows - 7, cols - 7)) == [(0, 0), (-2, 0), (-2, 2), (0, 2), (2, 2), (2, 0)]
    for grid in (GRID, ActionGrid(28, 8, 4), ActionGrid(28, 3, 3)):
        first = grid.centres(report.fixed_actions(grid, 3)[0]) * grid.img_size
        assert np.all(np.abs(first - grid.img_size / 2) <= grid.stride / 2)
    assert len(set(report.fixed_actions(GRID, 49).tolist())) == 49  # every cell once


def test_oracle_policy_hits_every_glimpse(agent):
    batches = toy_batches(8)
    oracle = lambda batch: report.oracle_actions(batch["box"], GRID, CONFIG.steps)  # noqa: E731
    result = evaluation.evaluate(agent, batches, oracle)
    assert result["hit_rate"] == 1.0 and result["count"] == 8
    corner = evaluation.constant_policy([0, 0, 0])  # the square never reaches pixel (0, 0)...
    far = [dict(b, box=np.tile([[20, 20, 30, 30]], (len(b["label"]), 1))) for b in batches]
    assert evaluation.evaluate(agent, far, corner)["hit_rate"] == 0.0


def test_report_numbers_equal_a_hand_check(agent):
    batches = toy_batches(8)
    images, labels, boxes = (concat(batches, k)[:7] for k in ("image", "label", "box"))
    episodes = report.run_policy(agent, batches, "learned_greedy", limit=7, keep_images=2)
    result = evaluation.summarize(episodes)
    outputs = agent(images, mode="greedy")
    actions = outputs["actions"].numpy()
    correct = np.argmax(outputs["step_logits"].numpy(), -1) == labels[:, None]
    np.testing.assert_array_equal(episodes.actions, actions)
    assert result["count"] == 7 and episodes.images.shape == (2, 32, 32, 1)
    assert result["accuracy"] == pytest.approx(correct[:, -1].mean())
    assert result["accuracy_per_step"] == pytest.approx(correct.mean(0).tolist())
    assert result["hit_rate"] == pytest.approx(hand_hits(actions, boxes, GRID).mean())
    assert result["error"] == pytest.approx(1 - result["accuracy"])


def test_random_policy_numbers_and_same_glimpses_for_both_judges(agent):
    batches = toy_batches(8)
    labels, boxes = concat(batches, "label"), concat(batches, "box")
    episodes = report.run_policy(agent, batches, "random", seed=3)
    replay = agent(concat(batches, "image"), mode="given", actions=episodes.actions)
    correct = np.argmax(replay["step_logits"].numpy(), -1) == labels[:, None]
    result = evaluation.summarize(episodes)
    assert result["accuracy"] == pytest.approx(correct[:, -1].mean())
    assert result["hit_rate"] == pytest.approx(hand_hits(episodes.actions, boxes, GRID).mean())
    tf.keras.utils.set_random_seed(1)
    other_judge = GlimpseAgent.from_glimpse_config(CONFIG)
    again = report.run_policy(other_judge, batches, "random", seed=3)
    np.testing.assert_array_equal(again.actions, episodes.actions)
    sampled = report.run_policy(agent, batches, "learned_sampled", seed=3)
    assert not np.array_equal(sampled.actions, episodes.actions)
    # Monte Carlo evaluation: the first of 3 episodes is the single one, the class
    # probabilities and the share correct are means over the 3; other policies play once.
    averaged = report.run_policy(agent, batches, "learned_sampled", seed=3, samples=3)
    np.testing.assert_array_equal(averaged.actions, sampled.actions)
    assert not np.allclose(averaged.probs, sampled.probs)
    np.testing.assert_allclose(averaged.probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(averaged.correct * 3, np.round(averaged.correct * 3), atol=1e-5)
    once = report.run_policy(agent, batches, "random", seed=3, samples=3)
    np.testing.assert_array_equal(once.probs, episodes.probs)


def test_centred_offsets_are_relative_to_the_box_centre():
    actions = np.array([[GRID.to_action(0, 0), GRID.to_action(6, 6)]])
    offsets = report_plots.centred_offsets(actions, np.array([[10, 10, 20, 20]]), GRID)
    np.testing.assert_allclose(offsets, [[[4 - 15, 4 - 15], [28 - 15, 28 - 15]]])


# --------------------------------------------------------------- command line
def make_run(run_dir, agent: GlimpseAgent, config: GlimpseConfig, pretrained: bool) -> None:
    """A run directory as train.py leaves it: config.json and checkpoints of `agent`."""
    run_dir.mkdir(parents=True)
    config.to_json(run_dir / "config.json")
    for kind in ("best", "pretrained") if pretrained else ("best",):
        tf.train.CheckpointManager(tf.train.Checkpoint(model=agent), run_dir / kind,
                                   max_to_keep=1).save()


def test_bad_run_dir_exits_with_code_2(tmp_path, capsys, agent):
    assert report_cli.main([str(tmp_path / "missing")]) == 2
    assert report_cli.main([str(tmp_path)]) == 2
    assert "not a train.py run directory" in capsys.readouterr().err
    CONFIG.to_json(tmp_path / "config.json")
    assert report_cli.main([str(tmp_path)]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_report_end_to_end(tmp_path, data_dir, agent):
    config = CONFIG.replace(clutter_count=2, data_dir=data_dir)
    run_dir = tmp_path / "run"
    make_run(run_dir, agent, config, pretrained=True)
    with pytest.raises(SystemExit) as bad:
        report_cli.main([str(run_dir), "--samples", "0"])
    assert bad.value.code == 2 and not (run_dir / "report").exists()
    assert report_cli.main([str(run_dir), "--limit", "12", "--gifs", "2", "--quiet",
                            "--samples", "2"]) == 0
    written = json.loads((run_dir / "report" / "report.json").read_text())
    assert written["samples"] == 2
    assert "averaged over 2" in written["learned_sampled"]["description"]
    for name in (*report.POLICIES, report.JUDGED_BY_PRETRAINED):
        assert 0.0 <= written[name]["accuracy"] <= 1.0 and 0.0 <= written[name]["hit_rate"] <= 1.0
        assert len(written[name]["accuracy_per_step"]) == config.steps
        assert len(written[name]["hit_rate_per_step"]) == config.steps
        assert 1 <= written[name]["distinct_sequences"] <= 12
    # Fixed scans take one sequence; the modal scan is the greedy policy's most frequent one.
    assert (written["fixed"]["distinct_sequences"]
            == written["learned_modal"]["distinct_sequences"] == 1)
    assert written["learned_modal"]["modal_sequence"] == written["learned_greedy"]["modal_sequence"]
    assert written["learned_modal"]["modal_share"] == 1.0
    assert written["test_images"] == 12 and written["unavailable"] == {}
    # The same weights judge both: identical random glimpses give identical numbers.
    assert written["random"] == {**written["random_pretrained_judge"], "judge": "trained",
                                 "description": written["random"]["description"]}
    markdown = (run_dir / "report" / "report.md").read_text()
    assert "| `learned_greedy` | trained |" in markdown
    assert report.verdict(written) in markdown
    for name in ("accuracy_per_step.png", "heatmap_grid.png", "heatmap_centred.png"):
        assert (run_dir / "report" / name).stat().st_size > 0
    assert sorted(p.name for p in (run_dir / "gifs").iterdir()) == ["attention1.gif",
                                                                    "attention2.gif"]


def test_report_without_pretrained_checkpoint_says_how_to_get_it(tmp_path, data_dir, agent):
    run_dir = tmp_path / "run"
    make_run(run_dir, agent, CONFIG.replace(data_dir=data_dir), pretrained=False)
    assert report_cli.main([str(run_dir), "--limit", "5", "--gifs", "0", "--quiet"]) == 0
    written = json.loads((run_dir / "report" / "report.json").read_text())
    assert report.JUDGED_BY_PRETRAINED not in written
    assert "--pretrain True" in written["unavailable"][report.JUDGED_BY_PRETRAINED]
    assert "--pretrain True" in (run_dir / "report" / "report.md").read_text()


def test_verdict_names_every_rival_and_the_gap_in_points():
    def result(accuracy, distinct=1):
        return {"accuracy": accuracy, "distinct_sequences": distinct, "count": 100}

    written = {"learned_greedy": result(0.90, 80), "learned_modal": result(0.80),
               "fixed": result(0.95), "random": result(0.5),
               report.JUDGED_BY_PRETRAINED: result(0.6)}
    sentence = report.verdict(written)
    assert sentence.startswith("The learned greedy policy (80 distinct sequences on 100 canvases)")
    assert "beats its own modal scan (`learned_modal`) by +10.00 points" in sentence
    assert "does not beat the fixed scan (`fixed`) by -5.00 points" in sentence
    assert f"beats the random policy (`{report.JUDGED_BY_PRETRAINED}`) by +30.00 points" in sentence


def test_title_frame_and_chance_line_follow_the_class_count(tmp_path, monkeypatch):
    # A data set of 47 classes (EMNIST balanced): the GIF's title frame draws 47 empty
    # bars, as its later frames draw 47 probabilities, and the chance line is at 1/47.
    grid = ActionGrid(28, 14, 7)
    image = np.zeros((28, 28), np.float32)
    step_probs = np.full((2, 47), 1 / 47, np.float32)
    title = visualize.attention_gif_frames(image, [0, 1], step_probs, grid)[0]
    np.testing.assert_array_equal(title, visualize.render_frame(
        image, [], grid, probs=None, total_steps=2, num_classes=47))
    assert not np.array_equal(title, visualize.render_frame(image, [], grid, total_steps=2))
    lines = []
    original = report_plots.pyplot().Axes.axhline
    monkeypatch.setattr(report_plots.pyplot().Axes, "axhline",
                        lambda self, y=0, **kw: lines.append(y) or original(self, y, **kw))
    result = {"accuracy_per_step": [0.5, 0.6], "hit_rate_per_step": [0.1, 0.2]}
    report_plots.plot_per_step({"learned_greedy": result}, tmp_path / "p.png", num_classes=47)
    assert lines == [pytest.approx(1 / 47)]


def test_budget_cosine_decay_rebuilds_from_its_config():
    from tf_glimpse.training.schedules import BudgetCosineDecay, BudgetProgress

    schedule = BudgetCosineDecay(3e-3, BudgetProgress(100, None))
    clone = BudgetCosineDecay.from_config(schedule.get_config())
    for step in (0, 50, 100):
        assert float(clone(step)) == pytest.approx(float(schedule(step)))
