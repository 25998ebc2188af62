"""The RAM benchmark runner: FLOPs counting, settings, result rows and the results table."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import flops, results_table
from benchmarks.cnn_baseline import build_cnn, cnn_layers, describe, pool_factor
from benchmarks.ram_benchmark import parse, result_row
from benchmarks.settings import SETTINGS, get_setting
from tf_glimpse.config import GlimpseConfig

ROOT = Path(__file__).resolve().parents[1]

# 28x28 canvas, 14x14 patches on a 2 x 2 grid, 2 steps, tiny widths: small enough to count by hand.
TINY = dict(img_size=28, clutter_count=0, patch_size=14, stride=14, scales=1, steps=2,
            glimpse_units=4, location_units=2, embedding_units=4, memory_units=3,
            classifier_units=5, attention_heads=2, context=False)


# ----------------------------------------------------------------------------- FLOPs
def test_layer_flops_match_hand_counts():
    assert flops.dense_flops(3, 4) == 24  # 3 * 4 multiply-adds
    assert flops.conv2d_flops(28, 28, 3, 1, 32) == 2 * 784 * 9 * 32 == 451_584
    assert flops.lstm_flops(4, 3) == 2 * (4 * 12 + 3 * 12) == 168  # four gates
    assert flops.gru_flops(4, 5) == 2 * (4 * 15 + 5 * 15) == 270  # three gates


def test_agent_flops_of_a_tiny_config_match_a_hand_computation():
    parts = flops.agent_flops(GlimpseConfig(**TINY))
    # Sensor, per step: Wy [14, 28] @ image [28, 28] (14*28*28 MACs), then @ Wx^T (14*14*28).
    assert parts["sensor"] == 2 * 2 * (10_976 + 5_488) == 65_856
    # Encoder, per step: 196 -> 4, 4 -> 4, 2 -> 2, 2 -> 4 = 812 MACs.
    assert parts["encoder"] == 2 * 2 * 812 == 3_248
    assert parts["memory"] == 2 * 2 * 84 == 336  # (4 + 3) * 4 * 3 MACs per step
    assert parts["policy"] == 1 * 2 * 12 == 24  # steps 1..T-1 only: 3 -> 4 actions
    assert parts["baseline"] == 2 * 2 * 3 == 12
    # Attention 4*2*16 + 2*4*4 = 160, GRU 2*9*15 = 270, logits 2*5*10 = 100 MACs.
    assert parts["classifier"] == 2 * (160 + 270 + 100) == 1_060
    assert parts["total"] == 70_536


@pytest.mark.parametrize("context,saliency", [(False, False), (True, False), (True, True)])
def test_agent_flops_agree_with_the_built_models_kernels(context, saliency):
    """Count from the kernels of a real GlimpseAgent: catches a wrong width or gate count."""
    from tf_glimpse.model.agent import GlimpseAgent

    config = GlimpseConfig(**{**TINY, "memory_units": 6, "classifier_units": 7,
                              "context": context, "saliency": saliency})
    model = GlimpseAgent.from_glimpse_config(config)
    t, d = config.steps, config.embedding_units
    coarse = config.img_size // config.stride
    macs = 0
    # The memory head serves the training loss only: not part of a prediction's FLOPs.
    kernels = [v for v in model.weights if v.path.endswith("kernel")
               and "memory_head" not in v.path]
    # encoder 4, LSTM 2, policy, baseline, attention 4, GRU 2, logits (+ context 2,
    # + saliency 3)
    assert len(kernels) == 15 + 2 * context + 3 * saliency
    for variable in kernels:
        if "context_network" in variable.path:
            uses = 1
        elif "saliency_map" in variable.path:  # A convolution: once per coarse pixel.
            uses = coarse * coarse
        elif "policy_head" in variable.path:
            uses = t if context else t - 1
        else:
            uses = t
        size = 1
        for dim in variable.shape:
            size *= dim
        macs += uses * size
    macs += 2 * t * t * d  # attention scores and weighted sum (no kernels)
    sensor = flops.agent_flops(config)["sensor"]
    assert 2 * macs + sensor == flops.agent_flops(config)["total"]


@pytest.mark.parametrize("img_size, stride, detail, units",
                         [(64, 4, 1, 16), (64, 4, 2, 16), (60, 4, 4, 16), (64, 4, 1, 8)])
def test_saliency_flops_agree_with_the_built_detector(img_size, stride, detail, units):
    """`saliency_flops` against the built detector's real shapes (`keras_flops`): strided
    convolutions, and a pooled size that is not a multiple of the detail (60 / 1 / 4)."""
    from tf_glimpse.model.agent import GlimpseAgent

    config = GlimpseConfig(img_size=img_size, clutter_count=0, patch_size=8, stride=stride,
                           steps=2, saliency=True, saliency_detail=detail,
                           saliency_units=units)
    model = GlimpseAgent.from_glimpse_config(config)
    assert flops.saliency_flops(config) == flops.keras_flops(model.saliency.detector)
    assert flops.saliency_values(config) == (img_size // (stride // detail)) ** 2
    assert model.saliency_logits(tf.zeros([2, img_size, img_size, 1])).shape == (
        2, config.num_actions)


def test_cnn_flops_match_hand_count_and_the_built_keras_model():
    # Conv32 at 28x28, pool to 14x14, Conv64 at 14x14, pool to 7x7, Dense 7*7*64 -> 10.
    hand = 2 * 784 * 9 * 32 + 2 * 196 * 9 * 32 * 64 + 2 * 3136 * 10
    assert flops.cnn_flops(cnn_layers(28), 28) == hand == 7_739_648
    for size in (28, 100):
        assert flops.keras_flops(build_cnn(size)) == flops.cnn_flops(cnn_layers(size), size)
    assert [pool_factor(i) for i in (28, 60, 64, 100)] == [1, 2, 2, 4]


def test_large_canvases_get_a_strided_cnn_and_a_downsampled_one():
    """Above 100 x 100: stride-2 convolutions to at most 16 x 16, global max pooling, no huge
    dense layer; the downsampled baseline average-pools the canvas to 100 x 100 first and is
    then the 100 x 100 design, at its FLOPs."""
    # 400 -> 200 -> 100 -> 50 -> 25 -> 13 ("same" padding rounds up), then 64 -> 10.
    hand = 2 * (200 ** 2 * 9 * 16 + 100 ** 2 * 9 * 16 * 32 + 50 ** 2 * 9 * 32 * 64
                + 25 ** 2 * 9 * 64 * 64 + 13 ** 2 * 9 * 64 * 64 + 64 * 10)
    assert flops.cnn_flops(cnn_layers(400), 400) == hand
    assert describe(cnn_layers(200)) == "Conv16s2-Conv32s2-Conv64s2-Conv64s2-GlobalMaxPool-Dense10"
    assert describe(cnn_layers(400, input_size=100)).startswith("AvgPool4-Conv32-MaxPool8")
    assert (flops.cnn_flops(cnn_layers(400, input_size=100), 400)
            == flops.cnn_flops(cnn_layers(100), 100))
    for size, pooled in ((200, None), (400, None), (200, 100), (400, 100)):
        model = build_cnn(size, input_size=pooled)
        assert model.output_shape == (None, 10)
        assert flops.keras_flops(model) == flops.cnn_flops(cnn_layers(size, input_size=pooled),
                                                           size)
    # Both large settings: the agent's FLOPs at most a tenth of the full-canvas CNN's.
    for name in ("cluttered200", "cluttered400"):
        config = get_setting(name).config()
        ratio = (flops.agent_flops(config)["total"]
                 / flops.cnn_flops(cnn_layers(config.img_size), config.img_size))
        assert ratio <= 0.25 if name == "cluttered200" else ratio <= 0.1, (name, ratio)
    with pytest.raises(ValueError, match="must divide"):
        cnn_layers(200, input_size=64)


def test_pixels_per_image():
    config = get_setting("cluttered100").config()
    # 8 glimpses of 4 scales of 12 x 12, and the context's coarse view: 100 // 12 = 8, so
    # the canvas is pooled by 8 to 12 x 12.
    assert flops.agent_pixels(config) == 8 * 4 * 12 * 12 + 12 * 12
    assert flops.agent_pixels(config.replace(context=False)) == 8 * 4 * 12 * 12
    assert flops.canvas_pixels(config) == 100 * 100


# -------------------------------------------------------------------------- settings
DOCUMENTED_GRIDS = {"mnist28": 6, "translated60": 13, "cluttered60": 13, "cluttered100": 23,
                    "seed1": 15, "seed2": 10, "scenes96": 15, "cluttered200": 24,
                    "cluttered400": 25}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_settings_are_valid_configs_with_the_documented_grid(name):
    setting = SETTINGS[name]
    config = setting.config()
    assert isinstance(config, GlimpseConfig)
    assert config.grid.size == setting.grid_size == DOCUMENTED_GRIDS[name]
    for field, value in setting.flags.items():
        assert getattr(config, field) == value
    assert f"{setting.grid_size} x {setting.grid_size}" in setting.stride_note


def test_settings_match_the_issue():
    c100 = get_setting("cluttered100").config()
    assert (c100.img_size, c100.clutter_count, c100.clutter_size, c100.patch_size, c100.scales,
            c100.steps, c100.stride) == (100, 8, 8, 12, 4, 8, 4)
    assert (c100.img_size - c100.patch_size) % c100.stride == 0
    seed2 = get_setting("seed2").config()
    assert (seed2.patch_size, seed2.stride, seed2.steps, seed2.pretrain) == (3, 3, 8, True)
    assert [(SETTINGS[n].ram_paper, SETTINGS[n].best_public, SETTINGS[n].target)
            for n in ("mnist28", "translated60", "cluttered60", "cluttered100")] == [
        (1.12, 1.21, 0.8), (1.22, 0.94, 1.2), (4.08, 2.63, 3.0), (8.11, 5.9, 5.0)]
    assert SETTINGS["seed1"].target is None and SETTINGS["seed2"].ram_paper is None
    with pytest.raises(KeyError, match="valid settings"):
        get_setting("mnist")


def test_benchmarks_readme_states_each_settings_references_and_target():
    text = (Path(__file__).parents[1] / "benchmarks" / "README.md").read_text(encoding="utf-8")
    table = text.split("| setting | canvas |")[1].split("\n\n")[0]
    rows = {cells[1].strip("` "): cells for cells in
            (line.split("|") for line in table.splitlines() if line.startswith("| `"))}
    assert sorted(rows) == sorted(SETTINGS)
    for name, setting in SETTINGS.items():
        paper, public, target = (cell.strip() for cell in rows[name][5:8])
        assert paper == ("—" if setting.ram_paper is None else str(setting.ram_paper)), name
        assert public.split(" (")[0] == ("—" if setting.best_public is None
                                         else str(setting.best_public)), name
        assert target == ("report" if setting.target is None
                          else f"<= {setting.target}"), name


def test_command_line_overrides_the_setting_and_rejects_bad_values():
    args, config = parse(["--setting", "translated60", "--epochs", "3", "--stride", "6",
                          "--subset", "512"])
    assert (config.img_size, config.scales, config.epochs, config.stride, config.subset) == (
        60, 3, 3, 6, 512)
    assert args.overrides == {"epochs": 3, "stride": 6, "subset": 512}
    with pytest.raises(SystemExit) as exit_info:
        parse(["--setting", "cluttered100", "--stride", "5"])  # 5 does not divide 88
    assert exit_info.value.code == 2


# ------------------------------------------------------------------- rows and table
def fake_run(setting="mnist28", test_accuracy=0.9902, with_cnn=True, downsampled=None,
             **overrides):
    """A result row written by ram_benchmark.result_row from made-up metrics."""
    config = get_setting(setting).config(**{"test_samples": 10, **overrides})
    history = [{"epoch": 1, "phase": "reinforce", "val_accuracy": 0.95, "wall_s": 10.0},
               {"epoch": 2, "phase": "reinforce", "val_accuracy": 0.99, "wall_s": 20.5}]
    agent = {"test_accuracy": test_accuracy, "val_accuracy": 0.99, "epochs": 2,
             "train_seconds": 20.5, "images_per_s": 5000.0, "test_hit_rate": 0.5,
             "test_hit_rate_per_step": [0.25, 0.75], "test_distinct_sequences": 812,
             "test_modal_share": 0.01, "test_modal_accuracy": 0.5, "val_history": history,
             "test_accuracy_sampled": 0.9925}
    cnn = {"test_accuracy": 0.9915, "val_accuracy": 0.992, "epochs": 2, "train_seconds": 100.0,
           "images_per_s": 1000.0, "params": 1, "architecture": "x", "optimizer": "Adam",
           "flops_per_image": 7_739_648, "val_history": history} if with_cnn else None
    return result_row(setting, config, agent, cnn, "python benchmarks/ram_benchmark.py "
                      f"--setting {setting}", 30.0, downsampled)


def test_large_canvas_rows_hold_the_downsampled_cnn_and_plot_error_against_cost(tmp_path):
    pooled = {"test_accuracy": 0.8, "val_accuracy": 0.81, "epochs": 3, "train_seconds": 99.0,
              "images_per_s": 700.0, "architecture": "AvgPool2-...", "flops_per_image": 11_114_496,
              "peak_rss_mb": 900.0, "val_history": [{"epoch": 1, "val_accuracy": 0.81,
                                                     "wall_s": 99.0}]}
    row = fake_run("cluttered200", downsampled=pooled)
    assert not results_table.check_row(row)
    assert (row["downsampled_cnn_test_error"], row["downsampled_cnn_input_size"],
            row["downsampled_cnn_peak_rss_mb"]) == (20.0, 100, 900.0)
    assert fake_run("cluttered200")["downsampled_cnn_test_error"] is None  # not trained
    assert "downsampled_cnn_test_error" not in fake_run("cluttered60")
    path, out = tmp_path / "results.jsonl", tmp_path / "cost.png"
    write_rows(path, [fake_run("cluttered60"), row])
    assert results_table.main(["--results", str(path), "--plot_cost", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_result_rows_are_in_percent_and_pass_the_tables_checks():
    row = fake_run()
    assert row["test_error"] == 0.98 and row["val_error"] == 1.0  # percent, not fractions
    assert row["cnn_test_error"] == 0.85
    assert row["val_curve"] == [[10.0, 5.0], [20.5, 1.0]]
    assert row["flops_per_image"] == flops.agent_flops(get_setting("mnist28").config())["total"]
    # 6 glimpses of 8 x 8 and the context's 9 x 9 view (28 pooled by 28 // 8 = 3).
    assert (row["pixels_per_image"], row["cnn_pixels_per_image"]) == (384 + 81, 784)
    assert row["distinct_sequences"] == 812 and row["hit_rate_per_step"] == [0.25, 0.75]
    assert row["modal_gap"] == 49.02  # points: 99.02% greedy against 50% for the modal scan
    # The benchmark's Monte Carlo test error: 10 sampled episodes unless --test_samples.
    assert row["test_error_sampled"] == 0.75 and row["test_samples"] == 10
    _, config = parse(["--setting", "mnist28"])
    assert config.test_samples == 10
    assert parse(["--setting", "mnist28", "--test_samples", "3"])[1].test_samples == 3
    assert results_table.check_row(dict(row, test_error_sampled=0.0075 * 200)) == []
    assert results_table.check_row(dict(row, test_samples=-1)) == [
        "test_samples=-1 is not an integer >= 0"]
    assert results_table.check_row({k: v for k, v in row.items() if k != "test_samples"}) == [
        "test_error_sampled is given without test_samples"]
    assert row["budget"] == {"epochs": GlimpseConfig().epochs}  # mnist28: no pre-training
    assert fake_run(minutes=45.0)["budget"] == {"minutes": 45.0}
    assert results_table.check_row(row) == []
    assert results_table.check_row(fake_run("seed1", with_cnn=False)) == []


def write_rows(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_table_prints_every_row_as_stored(tmp_path, capsys):
    rows = [fake_run(), fake_run("cluttered60", test_accuracy=0.97), fake_run("seed2",
                                                                               with_cnn=False)]
    path = tmp_path / "results.jsonl"
    write_rows(path, rows)
    assert results_table.main(["--results", str(path), "--all"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 + 3
    assert lines[2].startswith("| mnist28 | 0.98 | 0.75 (M=10) | 0.85 | 1.12 | "
                               "1.21 (kevinzakka, PyTorch) | "
                               "<= 0.8 | no | 2 | 20 | 5000 | 4.21M / 7.74M | 465 / 784 | 812 | ")
    assert lines[3].startswith("| cluttered60 | 3.00 | 0.75 (M=10) | 0.85 | 4.08 | "
                               "2.63 (tfRAM, 8 glimpses) | "
                               "<= 3.0 | no: CNN ahead | ")
    assert lines[4].startswith("| seed2 | 0.98 | 0.75 (M=10) | — | — | — | — | report | ")
    assert lines[4].endswith("`python benchmarks/ram_benchmark.py --setting seed2` |")


def test_table_refuses_malformed_lines_and_flags_them_when_asked(tmp_path, capsys):
    good = fake_run()
    fraction = dict(good, error_unit="fraction", test_error=0.0098)
    missing = {k: v for k, v in good.items() if k != "val_curve"}
    unknown = dict(good, setting="mnist99")
    path = tmp_path / "results.jsonl"
    write_rows(path, [good, "{not json", fraction, missing, unknown, "", good])
    assert results_table.main(["--results", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    for number, words in ((2, "not valid JSON"), (3, "error_unit='fraction'"),
                          (4, "missing field 'val_curve'"), (5, "setting='mnist99'")):
        assert f"results.jsonl:{number}: malformed: {words}" in captured.err
    assert "4 malformed line(s)" in captured.err
    assert results_table.main(["--results", str(path), "--skip_malformed", "--all"]) == 0
    out = capsys.readouterr().out
    assert out.count("| mnist28 |") == 2
    assert "**Skipped malformed lines of results.jsonl:** 2, 3, 4, 5" in out


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "results.jsonl"
    write_rows(path, [fake_run(), fake_run("seed1", with_cnn=False)])
    out = tmp_path / "curve.png"
    assert results_table.main(["--results", str(path), "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_and_experiments_tables_match_results_jsonl():
    """The README's results table (one row per setting) and docs/experiments.md's table of
    every row are exactly what results_table.py makes of results.jsonl."""
    rows, problems = results_table.load_rows(ROOT / "benchmarks" / "results.jsonl")
    assert not problems
    assert set(SETTINGS) <= {row["setting"] for row in rows}  # A row for every setting.
    current = results_table.current_table(rows)
    assert current in (ROOT / "README.md").read_text()
    assert len(current.splitlines()) == 2 + len(SETTINGS)
    assert results_table.markdown_table(rows) in (ROOT / "docs" / "experiments.md").read_text()


def test_current_table_takes_the_latest_row_of_each_setting(tmp_path, capsys):
    older = fake_run(test_accuracy=0.98)
    newer = dict(fake_run(minutes=20.0), commit="bbbbbbb")
    other = fake_run("seed2", with_cnn=False)
    path = tmp_path / "results.jsonl"
    write_rows(path, [older, other, newer])
    assert results_table.main(["--results", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| setting | budget | ours test error % | CNN test error %")
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| mnist28", "| seed2"]
    assert lines[2].startswith("| mnist28 | 20 min | 0.98 | 0.85 | 1.12 | <= 0.8 | no | 812 | "
                               "+49.0 | 0.25 0.75 | `bbbbbbb`")
    assert lines[3].startswith("| seed2 | 32 epochs | 0.98 | — | — | — | report |")  # 8 + 24


def test_stored_cnn_figure_is_found_by_setting_budget_and_hardware(tmp_path):
    from benchmarks.ram_benchmark import stored_cnn

    path = tmp_path / "cnn_results.jsonl"
    assert stored_cnn(path, "cluttered60", {"minutes": 45.0}, "2 CPU cores, X") is None
    entries = [{"setting": "cluttered60", "budget": {"minutes": 45.0}, "hardware": "2 CPU cores, X",
                "test_accuracy": 0.9},
               {"setting": "cluttered60", "budget": {"minutes": 30.0}, "hardware": "2 CPU cores, X",
                "test_accuracy": 0.8},
               {"setting": "cluttered60", "budget": {"minutes": 45.0}, "hardware": "2 CPU cores, X",
                "test_accuracy": 0.95}]
    write_rows(path, entries)
    found = stored_cnn(path, "cluttered60", {"minutes": 45.0}, "2 CPU cores, X")
    assert found["test_accuracy"] == 0.95
    found = stored_cnn(path, "cluttered60", {"minutes": 30.0}, "2 CPU cores, X")
    assert found["test_accuracy"] == 0.8
    assert stored_cnn(path, "cluttered60", {"minutes": 45.0}, "16 CPU cores, Y") is None
    assert stored_cnn(path, "translated60", {"minutes": 45.0}, "2 CPU cores, X") is None
    # The downsampled CNN of a large canvas is a figure of its own.
    assert stored_cnn(path, "cluttered60", {"minutes": 45.0}, "2 CPU cores, X", 100) is None
    write_rows(path, [*entries, {**entries[0], "model": "cnn_on_100", "test_accuracy": 0.7}])
    assert stored_cnn(path, "cluttered60", {"minutes": 45.0}, "2 CPU cores, X",
                      100)["test_accuracy"] == 0.7
    assert stored_cnn(path, "cluttered60", {"minutes": 45.0},
                      "2 CPU cores, X")["test_accuracy"] == 0.95


def test_minutes_makes_epochs_a_maximum():
    args, config = parse(["--setting", "cluttered60", "--minutes", "45"])
    assert config.minutes == 45.0 and config.epochs == 1000
    args, config = parse(["--setting", "cluttered60", "--minutes", "45", "--epochs", "7"])
    assert config.epochs == 7


def test_window_sensor_flops_do_not_grow_with_the_canvas():
    costs = {size: flops.sensor_flops("window", size, 12, 3) for size in (60, 100, 200, 400)}
    assert len(set(costs.values())) == 1
    # Even P: an average pooling of each L x L window, L = 12, 24, 48: one add a pixel.
    assert costs[60] == sum(n * n for n in (12, 24, 48))
    assert flops.sensor_flops("matmul", 400, 12, 3) > 1000 * costs[400]
    # Odd P: [P, L] @ [L, L] @ [L, P] for L = 11, 23, 45: 2 * (P*L*L + P*P*L) each.
    odd = {size: flops.sensor_flops("window", size, 11, 3) for size in (60, 400)}
    assert odd[60] == odd[400] == 2 * sum(11 * n * n + 121 * n for n in (11, 23, 45))


def test_train_throughput_prints_our_rate_and_the_ratio_to_the_peer(data_dir, tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "benchmarks/train_throughput.py", "--img_size", "28", "--clutter_count",
         "0", "--patch_size", "8", "--stride", "4", "--steps", "2", "--batch_size", "16",
         "--batches", "2", "--repeats", "1", "--data_dir", data_dir,
         "--profile", str(tmp_path / "profile")],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    # The profiler's trace, in the layout TensorBoard's profile tab reads.
    assert list((tmp_path / "profile" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert result.returncode == 0, result.stderr[-2000:]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["images_per_s"] > 0 and last["peer_images_per_s"] == 5566
    assert abs(last["ratio_to_peer"] - last["images_per_s"] / 5566) <= 0.001
    assert last["peer_measured"].startswith("2026-11-25")  # A stored figure says its day.
    assert "measured 2026-11-25" in result.stdout and "not in this run" in result.stdout
    # Every GlimpseConfig field is a flag; a bad value is a usage error that names it.
    bad = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--steps", "0"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "steps=0" in bad.stderr and "Traceback" not in bad.stderr


def test_sensor_scaling_keeps_the_window_agents_flops_flat_and_rejects_a_grid_that_does_not_fit(
        data_dir):
    import subprocess
    import sys

    command = [sys.executable, "benchmarks/sensor_scaling.py", "--sizes", "28", "40",
               "--patch_size", "8", "--scales", "2", "--steps", "2", "--grid_size", "3",
               "--batch_size", "16", "--batches", "2", "--repeats", "1", "--data_dir", data_dir]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["grid"] == {"28": 3, "40": 3}
    assert last["sensor_flops_per_image"]["28"] == last["sensor_flops_per_image"]["40"]
    # The rest of the agent's cost grows only with the context network's coarse view.
    assert last["flops_per_image"]["40"] < 1.01 * last["flops_per_image"]["28"]
    assert last["cnn_flops_per_image"] == {str(size): flops.cnn_flops(cnn_layers(size), size)
                                           for size in (28, 40)}
    assert all(rate > 0 for rate in last["images_per_s"].values())
    assert abs(last["ratio_largest_to_smallest"]
               - last["images_per_s"]["40"] / last["images_per_s"]["28"]) < 0.01
    # 4 - 1 = 3 divides neither 28 - 8 nor 40 - 8: a usage error naming the sizes.
    bad = subprocess.run(command[:-8] + ["--grid_size", "4"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "--grid_size 4" in bad.stderr and "Traceback" not in bad.stderr


def test_time_to_accuracy_reads_the_first_reinforce_epoch_under_each_threshold(tmp_path):
    import subprocess
    import sys

    from benchmarks.time_to_accuracy import seconds_to

    history = [{"epoch": 1, "phase": "pretrain", "val_accuracy": 0.99, "wall_s": 10.0},
               {"epoch": 2, "phase": "reinforce", "val_accuracy": 0.97, "wall_s": 20.0},
               {"epoch": 3, "phase": "reinforce", "val_accuracy": 0.985, "wall_s": 30.04},
               {"epoch": 4, "phase": "reinforce", "val_accuracy": 0.98, "wall_s": 40.0}]
    # The pre-training epoch (random glimpses) does not count; 1.5% is first met at epoch 3.
    assert seconds_to(history, 2.5) == 30.0 and seconds_to(history, 1.5) == 30.0
    assert seconds_to(history, 3.0) == 20.0 and seconds_to(history, 1.0) is None
    (tmp_path / "history.json").write_text(json.dumps({"val_history": history}))
    (tmp_path / "metrics.json").write_text(json.dumps({"test_error": 0.0161}))
    result = subprocess.run([sys.executable, "benchmarks/time_to_accuracy.py", "--run_dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["seconds_to_val_error"] == {"2.5": 30.0, "1.5": 30.0, "1.0": None}
    assert last["best_val_error"] == 1.5 and last["test_error"] == 1.61 and last["epochs"] == 4
    bad = subprocess.run([sys.executable, "benchmarks/time_to_accuracy.py", "--thresholds", "0"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "--thresholds 0" in bad.stderr


def test_step_breakdown_times_every_part_and_the_parts_add_up_in_order(data_dir):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "benchmarks/step_breakdown.py", "--steps", "2", "--batch_size", "16",
         "--calls", "3", "--data_dir", data_dir], capture_output=True, text=True, timeout=600,
        cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    ms = last["ms"]
    # Net of the cost of calling: small parts of a tiny batch may read 0, never less.
    assert all(ms[part] >= 0 for part in ("sensor", "encoder", "memory", "policy", "context",
                                          "classifier"))
    assert all(ms[part] > 0 for part in ("episode", "losses", "gradients", "train_step"))
    assert last["call_overhead_ms"] > 0
    parts = ("sensor", "encoder", "memory", "policy", "context", "classifier")
    assert abs(ms["episode_glue"] - (ms["episode"] - sum(ms[part] for part in parts))) < 1e-2
    assert last["share_of_step"]["train_step"] == 1.0
    assert abs(ms["backward"] - (ms["gradients"] - ms["losses"])) < 1e-2
    assert abs(last["images_per_s"] - 16_000 / ms["train_step"]) < 0.01 * last["images_per_s"]
    bad = subprocess.run([sys.executable, "benchmarks/step_breakdown.py", "--scales", "9"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "scales=9" in bad.stderr and "Traceback" not in bad.stderr


def test_bfloat16_matmul_times_both_precisions_and_reports_their_ratio():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "benchmarks/bfloat16_matmul.py", "--batch_size", "8", "--width", "16",
         "--layers", "2", "--calls", "3"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["float32_ms"] > 0 and last["bfloat16_ms"] > 0
    assert abs(last["bfloat16_speedup"] - last["float32_ms"] / last["bfloat16_ms"]) < 0.01
    # 2 layers of [8, 16] x [16, 32], forward and backward: 3 * 2 * (2 * 8 * 16 * 32) FLOPs.
    flops = 3 * 2 * 2 * 8 * 16 * 32
    assert abs(last["float32_gflop_per_s"] - flops / last["float32_ms"] / 1e6) < 0.01
    bad = subprocess.run([sys.executable, "benchmarks/bfloat16_matmul.py", "--layers", "0"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert bad.returncode == 2 and "--layers=0 is out of range" in bad.stderr


def test_the_cnn_keeps_a_time_budget_within_an_epoch(tmp_path):
    """A budget shorter than one epoch stops the CNN after the batch that spends it (at
    400 x 400 one epoch outlasts a short budget), and images/s counts what it trained."""
    from benchmarks.cnn_baseline import train_cnn
    from tf_glimpse.data.sources import Splits

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(600, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=600).astype(np.int32)
    splits = Splits(images[:512], labels[:512], images[512:556], labels[512:556], images[556:],
                    labels[556:], 10, "noise")
    config = GlimpseConfig(img_size=28, clutter_count=0, batch_size=64)  # 8 batches an epoch
    metrics = train_cnn(splits, config, 5, tmp_path / "cnn", verbose=False, seconds=1e-6)
    assert metrics["epochs"] == 1
    assert metrics["val_history"][0]["train_images"] == 64  # one batch of eight
    assert metrics["images_per_s"] == pytest.approx(64 / metrics["train_seconds"])


def test_cnn_latency_times_both_baselines_of_a_large_canvas(capsys):
    """`python benchmarks/cnn_latency.py --setting cluttered200`, in process."""
    from benchmarks import cnn_latency

    assert cnn_latency.main(["--setting", "cluttered200", "--runs", "2", "--warmup", "0"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["cnn_tflite_ms"] > 0 and result["downsampled_cnn_tflite_ms"] > 0
    assert result["downsampled_cnn_architecture"].startswith("AvgPool2-")
    assert result["cnn_flops_per_image"] > result["downsampled_cnn_flops_per_image"]
    with pytest.raises(SystemExit) as exit_info:
        cnn_latency.main(["--setting", "cluttered200", "--runs", "0"])
    assert exit_info.value.code == 2


def test_a_row_is_dirty_when_code_differs_but_not_when_only_result_files_grew(tmp_path):
    """The CNN's stored figure is appended before the agent's row is written: that must
    not mark the row dirty; an edited source file must."""
    import subprocess

    from benchmarks.ram_benchmark import git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "cnn_results.jsonl").write_text("{}\n")
    (tmp_path / "train.py").write_text("print(1)\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    commit, dirty = git_commit(tmp_path)
    assert len(commit) >= 7 and not dirty
    with open(tmp_path / "benchmarks" / "cnn_results.jsonl", "a") as results:
        results.write("{}\n")
    assert git_commit(tmp_path) == (commit, False)
    (tmp_path / "train.py").write_text("print(2)\n")
    assert git_commit(tmp_path) == (commit, True)
    assert git_commit(tmp_path / "not_a_repo") == ("unknown", True)


def test_cpu_details_names_family_model_and_vector_extensions_of_the_first_cpu():
    from benchmarks.ram_benchmark import cpu_details

    first = "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: fpu sse avx2 fma avx512f\n"
    second = "processor\t: 1\ncpu family\t: 6\nmodel\t\t: 85\nflags\t\t: fpu amx_tile\n"
    assert cpu_details(first + "\n" + second) == "family 25 model 17, flags avx2 fma avx512f"
    assert cpu_details("cpu family\t: 6\nmodel\t: 85\nflags\t: fpu sse\n") == \
        "family 6 model 85, flags none"
    assert cpu_details("no such fields\n") == "unknown"


@pytest.mark.parametrize("error, cnn_error, verdict", [
    (2.9, None, "yes (no CNN)"), (2.9, 3.5, "yes"), (2.9, 2.5, "no: CNN ahead"),
    (2.9, 2.9, "no: CNN ahead"), (3.1, 4.0, "no"), (3.1, None, "no")])
def test_a_target_is_met_below_the_target_and_below_the_cnn(error, cnn_error, verdict):
    row = {"setting": "cluttered60", "test_error": error, "cnn_test_error": cnn_error}
    assert results_table._met(row) == verdict  # cluttered60's target: 3.0%
    assert results_table._met({**row, "setting": "seed1"}) == "report"
