"""The `train.py` command line: flags -> `GlimpseConfig` -> `Trainer`.

Every flag is a field of `GlimpseConfig` (same name, same default).  The order
is: validate the flags, read the data set, and only then import TensorFlow,
create the run directory and train, so bad input never leaves a run behind.

Exit codes (the same for every command line of the project):

* 0 - done;
* 1 - a data error (the data set is missing, corrupt or inconsistent: the one-line
      message names the file and says how to get the data), a missing package (e.g.
      tensorflow-datasets for --dataset tfds:NAME) or a failure at run time (a
      non-finite loss; a full disk or another error writing the run: the message
      gives the --resume command, TF_GLIMPSE_DEBUG=1 shows the traceback);
* 2 - a bad command line: a flag value out of range (also one that does not fit
      the data set, e.g. --val_size), an existing --logdir without --resume, or
      --resume with a model-defining flag that differs from the saved run, or with
      data that differ from those the run began with (LOGDIR/data.json);
* 130 - interrupted (Ctrl-C): the message gives the --resume command.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time
import typing

from tf_glimpse.config import DERIVED_FIELDS, SECTIONS, ConfigError, GlimpseConfig, valid_values


def parse_bool(text: str) -> bool:
    """True/False/true/false/1/0/yes/no -> bool (argparse type)."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}; valid values: True, False, 1, 0")


class BooleanFlag(argparse.BooleanOptionalAction):
    """``--flag`` / ``--no-flag`` (argparse's own action) that also takes a value:
    ``--flag True``, ``--flag false``, ``--flag 0`` (the seed's ``--pretrain True``)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.nargs = "?"
        self.metavar = "BOOL"

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string.startswith("--no-"):
            if values is not None:
                parser.error(f"{option_string} takes no value")
            setattr(namespace, self.dest, False)
            return
        try:
            setattr(namespace, self.dest, True if values is None else parse_bool(values))
        except argparse.ArgumentTypeError as error:
            parser.error(f"argument {option_string}: {error}")


def add_config_flags(parser, given_only: bool = False) -> None:
    """One flag per `GlimpseConfig` field, in one argument group per config section.

    With `given_only`, flags have no default and only the ones given on the command
    line appear in the parsed namespace (for overrides on top of another config).
    """
    hints = typing.get_type_hints(GlimpseConfig)
    fields = {field.name: field for field in dataclasses.fields(GlimpseConfig)}
    for section, names in SECTIONS.items():
        group = parser.add_argument_group(f"{section} ({'overrides' if given_only else 'config'})")
        for name in names:
            hint, default = hints[name], fields[name].default
            help_text = fields[name].metadata["help"].replace("%", "%%")
            valid = valid_values(fields[name].metadata)
            if not given_only:
                help_text += " (default: %(default)s" + (f"; valid: {valid})" if valid else ")")
            if hint is bool:
                group.add_argument(f"--{name}", action=BooleanFlag,
                                   default=argparse.SUPPRESS if given_only else default,
                                   help=help_text)
                continue
            kind = {int: int, int | None: int, float: float, float | None: float}.get(hint, str)
            group.add_argument(f"--{name}", type=kind, metavar=name.upper(),
                               default=argparse.SUPPRESS if given_only else default,
                               help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser with one flag per `GlimpseConfig` field, plus --logdir and --resume."""
    parser = argparse.ArgumentParser(
        prog="train.py", description="Train a glimpse agent with REINFORCE and a baseline. "
        "Booleans take --flag / --no-flag or a value (--pretrain True).")
    add_config_flags(parser)
    run = parser.add_argument_group("run directory")
    run.add_argument("--config", default=None, metavar="RUN/config.json",
                     help="start from a run's configuration; flags given beside it override it")
    run.add_argument("--logdir", default=None,
                     help="run directory (default: runs/<date>-<time>)")
    run.add_argument("--resume", action=BooleanFlag, default=False,
                     help="continue the run in --logdir from its last checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def flag_table() -> str:
    """The markdown table of train.py's flags (flag, default, help), as `--help` lists
    them: the README's flag table is this output (a test checks that it is current)."""
    fields = {field.name: field for field in dataclasses.fields(GlimpseConfig)}
    lines = ["| flag | default | valid | meaning |", "|---|---|---|---|"]
    for action in build_parser()._actions:  # argparse keeps no public list of its actions.
        if not action.option_strings or action.dest == "help":
            continue
        field = fields.get(action.dest)
        text = field.metadata["help"] if field else action.help
        valid = valid_values(field.metadata) if field else ""
        lines.append(f"| `{action.option_strings[0]}` | {action.default} | {valid} | {text} |")
    return "\n".join(lines)


def config_fields(args: argparse.Namespace) -> dict:
    """The parsed flags that are `GlimpseConfig` fields."""
    names = {field.name for field in dataclasses.fields(GlimpseConfig)}
    return {name: value for name, value in vars(args).items() if name in names}


def config_from_args(args: argparse.Namespace) -> GlimpseConfig:
    """The `GlimpseConfig` of parsed flags (raises ConfigError on a bad value)."""
    return GlimpseConfig(**config_fields(args))


def check_trainable(config: GlimpseConfig) -> None:
    """ConfigError when --subset leaves fewer training images than one batch."""
    if config.subset is not None and config.subset < config.batch_size:
        raise ConfigError(f"subset={config.subset} is smaller than batch_size="
                          f"{config.batch_size}; valid range: >= {config.batch_size}")


def load_data(parser: argparse.ArgumentParser, config: GlimpseConfig):
    """The `Splits` of `config`; exits 2 on a bad value, 1 on bad data (numpy only, no TF)."""
    from tf_glimpse.data.idx import DataError
    from tf_glimpse.data.sources import config_splits
    from tf_glimpse.optional import MissingDependency

    try:
        splits = config_splits(config)
        for note in splits.notes:
            print(f"note: {note}", file=sys.stderr)
        return splits
    except ConfigError as error:
        parser.error(str(error))
    except (DataError, MissingDependency) as error:  # e.g. tfds: without tensorflow-datasets.
        parser.exit(1, f"{parser.prog}: error: {error}\n")


def start_trainer(parser: argparse.ArgumentParser, config: GlimpseConfig, logdir,
                  resume: bool, verbose: int):
    """(splits, Trainer) for `logdir`; exits 2 on a bad value, 1 on bad data.

    The data comes before TensorFlow and before the run directory: a missing or
    corrupt file fails fast and writes nothing.  The IDX reader is numpy only.
    """
    from tf_glimpse.data.idx import DataError

    splits = load_data(parser, config)

    from tf_glimpse.training.runs import TrainingError  # Heavy imports only now.
    from tf_glimpse.training.trainer import Trainer

    try:
        return splits, Trainer(config, logdir, resume=resume, splits=splits, verbose=verbose)
    except ConfigError as error:
        parser.error(str(error))
    except (DataError, TrainingError) as error:  # TrainingError: no checkpoint loads.
        parser.exit(1, f"{parser.prog}: error: {error}\n")


def describe_run(config: GlimpseConfig, logdir: str, resume: bool) -> str:
    """The first line a user sees: what is trained, on what data, and where the run goes."""
    canvas = (f"{config.img_size}x{config.img_size} canvases"
              + (f" with {config.clutter_count} clutter pieces" if config.clutter_count else ""))
    budget = (f"{config.minutes:g} minutes" if config.minutes is not None
              else f"{config.epochs} REINFORCE epochs")
    if config.pretrain:
        budget = f"{config.pretrain_epochs} pre-training epochs + {budget}"
    return (f"{'resuming' if resume else 'training'} a glimpse agent ({config.steps} glimpses "
            f"of {config.patch_size}x{config.patch_size} at {config.scales} scale(s) on a "
            f"{config.grid.size}x{config.grid.size} grid) on {config.dataset} {canvas}, "
            f"{budget}; run directory {logdir}")


DEBUG_VARIABLE = "TF_GLIMPSE_DEBUG"  # Set it to see the traceback of a run-time failure.


def main(argv: list[str] | None = None) -> int:
    """Parse flags, validate them (exit 2 on a bad value), train, print the final metrics."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:  # The file's values become the defaults; flags given still win.
        try:
            saved = GlimpseConfig.from_json(args.config).to_dict()
        except (OSError, ValueError) as error:
            parser.error(f"--config {args.config}: {error}")
        parser.set_defaults(**{name: value for name, value in saved.items()
                               if name not in DERIVED_FIELDS})
        args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        check_trainable(config)
    except ConfigError as error:
        parser.error(str(error))
    logdir = args.logdir or time.strftime("runs/%Y%m%d-%H%M%S")
    if not args.quiet:
        print(describe_run(config, logdir, args.resume), flush=True)
    from tf_glimpse.quiet import quiet_tensorflow

    quiet_tensorflow()
    _, trainer = start_trainer(parser, config, logdir, args.resume, 0 if args.quiet else 1)

    import tensorflow as tf  # Imported by start_trainer already.

    from tf_glimpse.training.runs import TrainingError

    again = shlex.join(["python", "train.py", *(sys.argv[1:] if argv is None else argv)])
    if "--resume" not in again:
        again += " --resume"
    try:
        metrics = trainer.fit()
    except TrainingError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Every finished epoch is checkpointed; the interrupted one is redone on resume.
        done = trainer.saved_epochs
        print(f"train.py: interrupted after {done} finished epoch(s), all saved in {logdir}; "
              f"continue with: {again}", file=sys.stderr)
        return 130
    except (OSError, tf.errors.OpError) as error:  # e.g. a full disk while saving.
        if os.environ.get(DEBUG_VARIABLE):
            raise
        done = trainer.saved_epochs
        reason = (f"{error.strerror}: {error.filename}" if isinstance(error, OSError)
                  and error.strerror else str(getattr(error, "message", error)).splitlines()[0])
        print(f"train.py: error: the run stopped in epoch {done + 1} ({reason}); the "
              f"{done} finished epoch(s) are saved in {logdir}. Fix the cause (for a full "
              f"disk, free some space), then continue with: {again}  "
              f"(set {DEBUG_VARIABLE}=1 for the traceback)", file=sys.stderr)
        return 1
    print(f"run directory: {logdir}  (tensorboard --logdir {logdir})")
    print({key: metrics[key] for key in ("val_accuracy", "test_accuracy", "epochs",
                                         "train_seconds")})
    return 0
