"""`train.py` rejects bad values with exit code 2 before writing anything."""

import subprocess
import sys
from pathlib import Path

import pytest

from tf_glimpse.cli import build_parser, config_from_args, parse_bool

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
    ["train.py"], ["-m", "export"], ["-m", "tf_glimpse.report"], ["-m", "tf_glimpse.data.fetch"],
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
    from tf_glimpse.config import DERIVED_FIELDS, SECTIONS, GlimpseConfig

    import dataclasses

    names = [name for section in SECTIONS.values() for name in section]
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(GlimpseConfig)
                                   if f.name not in DERIVED_FIELDS)
    text = build_parser().format_help()
    for section in SECTIONS:
        assert f"{section} (config):" in text
    assert "--no-pretrain" in text and "(default: 0.005)" in text


@pytest.mark.parametrize("argv, expected", [
    (["--pretrain", "True"], True), (["--pretrain"], True), (["--no-pretrain"], False),
    (["--pretrain", "0"], False), ([], False),
])
def test_booleans_take_flag_no_flag_and_values(argv, expected):
    assert build_parser().parse_args(argv).pretrain is expected
