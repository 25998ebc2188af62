"""`train.py` rejects bad values with exit code 2 before writing anything."""

import subprocess
import sys
from pathlib import Path

import pytest

from tf_glimpse.cli import build_parser, config_from_args, parse_bool
from tf_glimpse.config import GlimpseConfig

ROOT = Path(__file__).resolve().parents[1]

BAD_VALUES = [  # (flags, words the message must contain)
    (["--patch_size", "9", "--img_size", "64", "--stride", "4"], ["stride=4", "valid strides"]),
    (["--patch_size", "70", "--img_size", "64"], ["patch_size=70", "1..64"]),
    (["--steps", "0"], ["steps=0", "1..64"]),
    (["--clutter_count", "-1"], ["clutter_count=-1", ">= 0"]),
    (["--dataset", "cifar"], ["dataset='cifar'", "mnist, fashion_mnist"]),
    (["--batch_size", "0"], ["batch_size=0", ">= 1"]),
    (["--stride", "0"], ["stride=0", "valid strides"]),
    (["--pretrain", "maybe"], ["maybe", "True, False"]),
    (["--lr", "-1"], ["lr=-1.0", "> 0"]),
    (["--saliency", "True", "--saliency_detail", "3"],
     ["saliency_detail=3", "stride=4", "valid values: [1, 2, 4]"]),
    (["--saliency_units", "0"], ["saliency_units=0", "1..256"]),
]


@pytest.mark.parametrize("flags, words", BAD_VALUES)
def test_bad_values_exit_2_with_a_clear_message_and_write_nothing(tmp_path, flags, words):
    logdir = tmp_path / "run"
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *flags, "--logdir",
                             str(logdir)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert not logdir.exists()


def test_the_seed_commands_parse():
    parser = build_parser()
    for argv in (
        "--pretrain True --patch_size 8 --steps 6 --img_size 64 --clutter_count 4 --stride 4",
        "--pretrain True --patch_size 3 --steps 8 --img_size 28 --clutter_count 0 --stride 3",
    ):
        config = config_from_args(parser.parse_args(argv.split()))
        assert config.pretrain is True
    assert config.grid.size == 10 and config.steps == 8


@pytest.mark.parametrize("text, value", [("True", True), ("false", False), ("1", True),
                                         ("0", False), ("TRUE", True)])
def test_booleans(text, value):
    assert parse_bool(text) is value


HELP_COMMANDS = [
    ["train.py"], ["-m", "export"], ["-m", "tf_glimpse.report"],
    ["-m", "tf_glimpse.data.fetch"],
    *[[f"benchmarks/{path.name}"] for path in sorted((ROOT / "benchmarks").glob("*.py"))
      if path.name != "__init__.py"],
]


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_line_answers_help(command):
    result = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower() and not result.stderr.strip()


def test_train_help_groups_the_flags_by_section_with_their_defaults():
    import dataclasses

    from tf_glimpse.config import DERIVED_FIELDS, SECTIONS, GlimpseConfig

    names = [name for section in SECTIONS.values() for name in section]
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(GlimpseConfig)
                                   if f.name not in DERIVED_FIELDS)
    text = build_parser().format_help()
    for section in SECTIONS:
        assert f"{section} (config):" in text
    assert "--no-pretrain" in text and "(default: 0.005; valid: >= 0)" in text
    # Each field's help, section and valid values live with the field (its `option`).
    for field in dataclasses.fields(GlimpseConfig):
        assert field.metadata["help"] and field.metadata["section"], field.name


@pytest.mark.parametrize("argv, expected", [
    (["--pretrain", "True"], True), (["--pretrain"], True), (["--no-pretrain"], False),
    (["--pretrain", "0"], False), ([], False),
])
def test_booleans_take_flag_no_flag_and_values(argv, expected):
    assert build_parser().parse_args(argv).pretrain is expected


def test_train_start_shows_no_tensorflow_logging(tmp_path, data_dir):
    """The first lines a user sees: what is trained and where, then progress; no C++ logs."""
    import os
    import re

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--img_size", "28", "--clutter_count", "0",
         "--patch_size", "8", "--stride", "4", "--steps", "2", "--epochs", "1", "--subset",
         "128", "--val_size", "64", "--batch_size", "64", "--memory_units", "16",
         "--embedding_units", "16", "--classifier_units", "16", "--attention_heads", "2",
         "--data_dir", data_dir, "--logdir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (result.stdout + result.stderr).splitlines()
    assert lines[0].startswith("training a glimpse agent") and str(tmp_path / "run") in lines[0]
    cxx_log = re.compile(r"^[IWEF]\d{4} |absl::|cuda|oneDNN")
    assert not [line for line in lines[:5] if cxx_log.search(line)], lines[:5]


def test_interrupted_training_says_how_to_resume(tmp_path, data_dir, monkeypatch, capsys):
    from tf_glimpse import cli
    from tf_glimpse.training.trainer import Trainer

    def interrupt(self, epoch, supervised_only, seconds_before=0.0):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, supervised_only, seconds_before)

    original = Trainer.train_epoch
    monkeypatch.setattr(Trainer, "train_epoch", interrupt)
    flags = ["--img_size", "28", "--clutter_count", "0", "--patch_size", "14", "--stride", "14",
             "--steps", "2", "--epochs", "3", "--subset", "128", "--val_size", "64",
             "--batch_size", "64", "--memory_units", "16", "--embedding_units", "16",
             "--classifier_units", "16", "--attention_heads", "2", "--jit_compile", "False",
             "--data_dir", data_dir, "--logdir", str(tmp_path / "run"), "--quiet"]
    assert cli.main(flags) == 130
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "interrupted after 1 finished epoch(s)" in message[0]
    assert message[0].endswith("--resume") and "python train.py" in message[0]
    monkeypatch.setattr(Trainer, "train_epoch", original)
    assert cli.main([*flags, "--resume"]) == 0  # The printed command continues the run.


def test_config_file_replays_a_run_and_flags_override_it(tmp_path):
    from tf_glimpse.cli import main

    saved = GlimpseConfig(img_size=60, patch_size=12, stride=4, steps=5, lr=1e-3)
    saved.to_json(tmp_path / "config.json")
    parser = build_parser()
    args = parser.parse_args(["--config", str(tmp_path / "config.json")])
    assert args.config
    # Through main's own logic: replay, then override one field.
    import tf_glimpse.cli as cli

    seen = {}

    def fake_start(parser, config, logdir, resume, verbose):
        seen["config"] = config
        raise SystemExit(0)

    original = cli.start_trainer
    cli.start_trainer = fake_start
    try:
        with pytest.raises(SystemExit):
            main(["--config", str(tmp_path / "config.json"), "--steps", "3", "--quiet"])
    finally:
        cli.start_trainer = original
    assert seen["config"] == saved.replace(steps=3)
    (tmp_path / "bad.json").write_text("{not json")
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config",
                             str(tmp_path / "bad.json")], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 2 and "--config" in result.stderr


def test_the_guides_flag_table_is_the_parsers_and_the_readme_stays_short():
    from tf_glimpse.cli import flag_table

    readme = (ROOT / "README.md").read_text()
    table = flag_table()
    guide = (ROOT / "docs" / "guide.md").read_text()
    assert table in guide  # Regenerate: print(tf_glimpse.cli.flag_table()).
    flags = [line.split(" | ")[0].strip("| `") for line in table.splitlines()[2:]]
    help_text = subprocess.run([sys.executable, "train.py", "--help"], capture_output=True,
                               text=True, timeout=120, cwd=ROOT).stdout
    assert all(f"{flag} " in help_text or f"{flag}\n" in help_text for flag in flags)
    assert "| `--steps` | 6 |" in table and "| `--lr` | 0.003 |" in table  # The defaults.
    assert len(readme.encode()) <= 16_000  # Details go to docs/, not here.
