"""The markdown tables (and time-to-accuracy plot) of `benchmarks/results.jsonl`.

    python benchmarks/results_table.py [--all] [--results FILE] [--plot OUT.png]
        [--plot_cost OUT.png] [--skip_malformed]

By default: the current table, one row per setting (the setting's latest line in
the file), with our test error, the CNN's at the same budget, the RAM paper's and the
target, the policy's distinct greedy sequences, its lead over its own most frequent
scan (``modal_gap``), its hit rate per glimpse and the row's commit.  The README's
results table is this output.  With ``--all``: every line of the file, in file order,
with its speed, FLOPs, pixels and command (docs/experiments.md holds this table).
Numbers are as stored (errors in percent, 2 decimals); the reference errors come
from `benchmarks/settings.py`.  "met?" is "yes" when our test error <= the target
and below the CNN's error at the same budget (where the row has one), "no: CNN ahead"
when only the CNN's bar is missed, "yes (no CNN)" for a row without the CNN, "report"
for settings without a target.

A malformed line (not JSON, a missing or mistyped field, errors not in percent, an
unknown setting) makes the script refuse: it names every bad line on stderr and
exits with code 1.  ``--skip_malformed`` prints the table of the good lines instead
and flags the bad ones below it.

``--plot OUT.png`` draws validation error (%, log scale) against training seconds
for every row (ours solid, the CNN dashed), with the peer points of issue 7:
kevinzakka's PyTorch RAM on mnist28, on these 2 cores, reaches 2.5% validation
error after about 750 s and 1.5% after about 1,760 s.

``--plot_cost OUT.png`` draws, for the cluttered settings' current rows (60, 100, 200
and 400 pixels), test error against FLOPs per image and against the canvas size: the
agent, the full-canvas CNN and, on the large canvases, the CNN on the canvas pooled
to 100 x 100, each trained for the row's budget.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

if not __package__:  # `python benchmarks/NAME.py`: benchmarks/ is not an installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.settings import SETTINGS

PROJECT_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_RESULTS = PROJECT_ROOT / "benchmarks" / "results.jsonl"

# (wall seconds, validation error %) of kevinzakka's PyTorch RAM on mnist28, 2 CPU cores.
PEER_POINTS = {"mnist28": [(750.0, 2.5), (1760.0, 1.5)]}
PEER_LABEL = "kevinzakka RAM (PyTorch), same 2 cores"

COLUMNS = ("setting", "ours test error %", "ours, M sampled episodes averaged %",
           "CNN test error %", "RAM paper %", "best public %",
           "target %", "met?", "epochs", "wall s", "images/s", "FLOPs ours / CNN",
           "pixels ours / CNN", "distinct greedy sequences", "commit", "command")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _percent(value: Any) -> bool:
    return _number(value) and 0.0 <= value <= 100.0


def _curve(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and _number(p[0]) and _percent(p[1]) for p in value)


# Field -> (check, what it must be).  Nullable fields may be null (e.g. with --skip_cnn).
FIELDS = {
    "setting": (lambda v: v in SETTINGS, f"one of {', '.join(SETTINGS)}"),
    "error_unit": (lambda v: v == "percent", '"percent"'),
    "test_error": (_percent, "a percentage in 0..100"),
    "val_error": (_percent, "a percentage in 0..100"),
    "epochs": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "wall_s": (lambda v: _number(v) and v >= 0, "seconds >= 0"),
    "images_per_s": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "commit": (lambda v: isinstance(v, str) and v != "", "a commit id"),
    "date": (lambda v: isinstance(v, str) and v != "", "a date"),
    "command": (lambda v: isinstance(v, str) and v != "", "a command line"),
    "flops_per_image": (lambda v: _integer(v) and v > 0, "an integer > 0"),
    "pixels_per_image": (lambda v: _integer(v) and v > 0, "an integer > 0"),
    "cnn_pixels_per_image": (lambda v: _integer(v) and v > 0, "an integer > 0"),
    "val_curve": (_curve, "a list of [wall_s, val_error %] pairs"),
}
NULLABLE = {
    "cnn_test_error": (_percent, "a percentage in 0..100 or null"),
    "cnn_val_error": (_percent, "a percentage in 0..100 or null"),
    "cnn_wall_s": (lambda v: _number(v) and v >= 0, "seconds >= 0 or null"),
    "cnn_flops_per_image": (lambda v: _integer(v) and v > 0, "an integer > 0 or null"),
    "cnn_val_curve": (_curve, "a list of [wall_s, val_error %] pairs or null"),
}
# Fields that rows written before they existed lack: checked when present and not null.
OPTIONAL = {
    "test_error_sampled": (_percent, "a percentage in 0..100 or null"),
    "test_samples": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
}


def check_row(row: Any) -> list[str]:
    """The problems of one parsed line (empty when it is a valid result row)."""
    if not isinstance(row, dict):
        return [f"not a JSON object but {type(row).__name__}"]
    problems = []
    for fields, nullable in ((FIELDS, False), (NULLABLE, True)):
        for name, (check, expected) in fields.items():
            if name not in row:
                problems.append(f"missing field {name!r}")
            elif not (nullable and row[name] is None) and not check(row[name]):
                problems.append(f"{name}={row[name]!r} is not {expected}")
    for name, (check, expected) in OPTIONAL.items():
        if row.get(name) is not None and not check(row[name]):
            problems.append(f"{name}={row[name]!r} is not {expected}")
    # A Monte Carlo error means nothing without the number of episodes it averaged.
    if row.get("test_error_sampled") is not None and row.get("test_samples") is None:
        problems.append("test_error_sampled is given without test_samples")
    return problems


def load_rows(path: str | Path) -> tuple[list[dict], list[tuple[int, str]]]:
    """(valid rows in file order, [(line number, problem), ...]); blank lines are skipped."""
    rows, problems = [], []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append((number, f"not valid JSON ({error.msg})"))
            continue
        found = check_row(row)
        if found:
            problems.extend((number, problem) for problem in found)
        else:
            rows.append(row)
    return rows, problems


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _ref(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def _count(value: int | None) -> str:
    """FLOPs in millions (2 decimals) or thousands, e.g. 4.11M."""
    if value is None:
        return "—"
    return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}k"


def _distinct(row: dict) -> str:
    """Distinct greedy action sequences on the test canvases ("—" for rows before they were
    recorded), with the budget of a --minutes run."""
    if row.get("distinct_sequences") is None:
        return "—"
    return f"{row['distinct_sequences']:,}"


def _sampled(row: dict) -> str:
    """The Monte Carlo test error with its M, e.g. "4.19 (M=10)" ("—" when not measured)."""
    if row.get("test_error_sampled") is None:
        return "—"
    return f"{_pct(row['test_error_sampled'])} (M={row['test_samples']})"


def table_row(row: dict) -> list[str]:
    """The cells of one result row."""
    setting = SETTINGS[row["setting"]]
    best = _ref(setting.best_public)
    if setting.best_public is not None and setting.best_public_source:
        best += f" ({setting.best_public_source})"
    command = row["command"].replace("|", "\\|")
    return [setting.name, _pct(row["test_error"]), _sampled(row), _pct(row["cnn_test_error"]),
            _ref(setting.ram_paper), best,
            "—" if setting.target is None else f"<= {setting.target:.1f}", _met(row),
            str(row["epochs"]), f"{row['wall_s']:.0f}", f"{row['images_per_s']:.0f}",
            f"{_count(row['flops_per_image'])} / {_count(row['cnn_flops_per_image'])}",
            f"{row['pixels_per_image']:,} / {row['cnn_pixels_per_image']:,}",
            _distinct(row),
            f"`{row['commit']}`" + (" (dirty)" if row.get("dirty") else ""), f"`{command}`"]


CURRENT_COLUMNS = ("setting", "budget", "ours test error %", "CNN test error %, same budget",
                   "RAM paper %", "target %", "met?", "distinct greedy sequences",
                   "greedy minus modal scan, points", "greedy hit rate per glimpse", "commit")


def current_rows(rows: list[dict]) -> list[dict]:
    """The latest row of each setting (file order), in the order of `SETTINGS`."""
    latest = {row["setting"]: row for row in rows}
    return [latest[name] for name in SETTINGS if name in latest]


def _budget(row: dict) -> str:
    budget = row.get("budget") or {"epochs": row["epochs"]}
    if "minutes" in budget:
        return f"{budget['minutes']:g} min"
    return f"{budget['epochs']:g} epoch{'' if budget['epochs'] == 1 else 's'}"


def current_table(rows: list[dict]) -> str:
    """The markdown table of `current_rows(rows)`: one row per setting."""
    lines = ["| " + " | ".join(CURRENT_COLUMNS) + " |",
             "|" + "|".join("---" if i in (0, 1, 6, 9, 10) else "---:"
                            for i in range(len(CURRENT_COLUMNS))) + "|"]
    for row in current_rows(rows):
        setting = SETTINGS[row["setting"]]
        hits = row.get("hit_rate_per_step")
        lines.append("| " + " | ".join([
            setting.name, _budget(row), _pct(row["test_error"]), _pct(row["cnn_test_error"]),
            _ref(setting.ram_paper),
            "—" if setting.target is None else f"<= {setting.target:.1f}", _met(row),
            _distinct(row), _gap(row.get("modal_gap")),
            "—" if not hits else " ".join(f"{h:.2f}" for h in hits),
            f"`{row['commit']}`" + (" (dirty)" if row.get("dirty") else "")]) + " |")
    return "\n".join(lines)


def _gap(points: float | None) -> str:
    """The modal gap in points, signed ("—" for rows before it was recorded)."""
    return "—" if points is None else f"{points:+.1f}"


def _met(row: dict) -> str:
    target = SETTINGS[row["setting"]].target
    if target is None:
        return "report"
    if row["test_error"] > target:
        return "no"
    cnn = row.get("cnn_test_error")
    if cnn is None:
        return "yes (no CNN)"
    return "no: CNN ahead" if row["test_error"] >= cnn else "yes"


def markdown_table(rows: list[dict]) -> str:
    """The markdown table of every row (header, separator, one line per row)."""
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" if i in (0, 7, 14, 15) else "---:"
                            for i in range(len(COLUMNS))) + "|"]
    lines += ["| " + " | ".join(table_row(row)) + " |" for row in rows]
    return "\n".join(lines)


def plot(rows: list[dict], out: str | Path) -> None:
    """Validation error (%, log y) against training seconds: one panel per setting, its
    latest row (`current_rows`), ours against the CNN, with the target and peer points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [row for row in current_rows(rows) if row["val_curve"]]
    columns = min(3, max(1, len(shown)))
    lines = max(1, -(-len(shown) // columns))  # ceil; one empty panel for no rows
    figure, grid = plt.subplots(lines, columns, figsize=(4 * columns, 3 * lines),
                                squeeze=False)
    floor = 0.01  # a 0% point cannot go on a log axis
    for axes, row in zip(grid.flat, shown):
        for points, style, who in ((row["val_curve"], "-o", "ours"),
                                   (row["cnn_val_curve"], "--s", "CNN, same budget")):
            if points:
                axes.plot([p[0] for p in points], [max(p[1], floor) for p in points], style,
                          markersize=2, label=who)
        target = SETTINGS[row["setting"]].target
        if target is not None:
            axes.axhline(target, color="gray", linestyle=":", linewidth=1,
                         label=f"target {target:g}%")
        peer = PEER_POINTS.get(row["setting"], [])
        if peer:
            axes.plot([x for x, _ in peer], [y for _, y in peer], "k*", markersize=9,
                      linestyle="none", label=PEER_LABEL)
        axes.set_yscale("log")
        axes.set_title(f"{row['setting']}, {_budget(row)} ({row['commit']})", fontsize=9)
        axes.grid(True, which="both", alpha=0.3)
        axes.tick_params(labelsize=7)
        axes.legend(fontsize=7)
    for axes in list(grid.flat)[len(shown):]:
        axes.set_visible(False)
    figure.supxlabel("training seconds (validation excluded), 2 CPU cores", fontsize=9)
    figure.supylabel("validation error % (log scale)", fontsize=9)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


COST_SETTINGS = ("cluttered60", "cluttered100", "cluttered200", "cluttered400")
COST_MODELS = (("", "glimpse agent", "-o"), ("cnn_", "full-canvas CNN", "--s"),
               ("downsampled_cnn_", "CNN on the canvas pooled to 100 x 100", ":^"))


def plot_cost(rows: list[dict], out: str | Path) -> None:
    """Test error (%, log y) against FLOPs per image and against the canvas size, per model,
    for the current rows of `COST_SETTINGS` (a model without a figure is left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    current = [row for row in current_rows(rows) if row["setting"] in COST_SETTINGS]
    figure, (by_flops, by_size) = plt.subplots(1, 2, figsize=(11, 4.5))
    floor = 0.01  # a 0% point cannot go on a log axis
    for index, (prefix, label, style) in enumerate(COST_MODELS):
        points = [(row["config"]["img_size"], row[f"{prefix}flops_per_image"],
                   max(row[f"{prefix}test_error"], floor), row)
                  for row in current if row.get(f"{prefix}test_error") is not None
                  and row.get(f"{prefix}flops_per_image")]
        if not points:
            continue
        color = f"C{index}"
        by_flops.plot([p[1] for p in points], [p[2] for p in points], style, color=color,
                      label=label)
        by_size.plot([p[0] for p in points], [p[2] for p in points], style, color=color,
                     label=label)
        for size, flops, error, row in points:
            by_flops.annotate(f"{size} ({_budget(row)})", (flops, error), fontsize=7,
                              textcoords="offset points", xytext=(4, 4))
    by_flops.set_xscale("log")
    by_flops.set_xlabel("FLOPs per image (analytic, benchmarks/flops.py)")
    by_size.set_xscale("log")
    by_size.set_xticks([60, 100, 200, 400], ["60", "100", "200", "400"])
    by_size.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    by_size.set_xlabel("canvas size (pixels per side)")
    for axes in (by_flops, by_size):
        axes.set_yscale("log")
        axes.set_ylabel("test error % (log scale)")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle("Cluttered MNIST: error against cost, each model trained for the row's "
                    "budget", fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Print the table (exit 1 on malformed lines unless --skip_malformed); optionally plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="the JSON-lines file")
    parser.add_argument("--all", action="store_true",
                        help="every row of the file, with its command (default: the latest "
                             "row of each setting)")
    parser.add_argument("--plot", default=None, metavar="OUT.png",
                        help="also draw the time-to-accuracy plot")
    parser.add_argument("--plot_cost", default=None, metavar="OUT.png",
                        help="also draw test error against FLOPs per image and canvas size "
                             "(the cluttered settings)")
    parser.add_argument("--skip_malformed", action="store_true",
                        help="print the good rows and flag the bad lines instead of refusing")
    args = parser.parse_args(argv)
    if not Path(args.results).is_file():
        print(f"results_table.py: error: {args.results} does not exist; run "
              f"benchmarks/ram_benchmark.py first", file=sys.stderr)
        return 1
    rows, problems = load_rows(args.results)
    for number, problem in problems:
        print(f"{args.results}:{number}: malformed: {problem}", file=sys.stderr)
    if problems and not args.skip_malformed:
        print(f"results_table.py: error: {len({n for n, _ in problems})} malformed line(s) in "
              f"{args.results}; fix them, or pass --skip_malformed", file=sys.stderr)
        return 1
    print(markdown_table(rows) if args.all else current_table(rows))
    if problems:
        lines = sorted({n for n, _ in problems})
        print(f"\n**Skipped malformed lines of {Path(args.results).name}:** "
              f"{', '.join(map(str, lines))}")
    if args.plot:
        plot(rows, args.plot)
        print(f"\nplot: {args.plot}", file=sys.stderr)
    if args.plot_cost:
        plot_cost(rows, args.plot_cost)
        print(f"\nplot: {args.plot_cost}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
