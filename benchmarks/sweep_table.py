"""One Markdown table over several `helu-train compare` studies of the same activations (a sweep): a row per study,
and per activation the test metric's mean ± std over seeds, then the paired difference to the baseline with its
95% interval and p value, and the share of dead units at the end. Reads each folder's report.json; a study whose
activations have unequal run counts (unfinished, or runs lost) is refused unless --partial marks it (n=runs).

    python benchmarks/sweep_table.py "digits, depth 4=runs/compare/depth_digits_d4" \\
        "digits, depth 8=runs/compare/depth_digits_d8"
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from helu_lightning.errors import UserError
from helu_lightning.io import read_utf8, regular_file

FIX = "pass a finished helu-train compare --output_dir folder (or run compare there again to rewrite its report)"
NUMBERS = ("runs", "mean", "std", "diff", "ci_low", "ci_high", "p_value", "val_dead_fraction")


def _study(argument: str) -> tuple[str, Path]:
    """(label, folder) of a LABEL=FOLDER or FOLDER argument. A folder name may hold '=': an argument that is an
    existing folder is one, else the label ends at the first '=' whose rest is an existing folder (else the last)."""
    if Path(argument).is_dir() or "=" not in argument:
        return Path(argument).name, Path(argument)
    splits = [i for i, char in enumerate(argument) if char == "="]
    at = next((i for i in splits if argument[i + 1:] and Path(argument[i + 1:]).is_dir()), splits[-1])
    if not argument[at + 1:]:
        raise SystemExit(f"sweep_table.py: {argument!r} names no folder after '='; pass LABEL=FOLDER")
    return argument[:at] or Path(argument[at + 1:]).name, Path(argument[at + 1:])


def _scale(text: str) -> float:
    """An argparse type: a finite, non-zero factor for the metric."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite non-zero number; pass e.g. --scale 100 (%) or 1")
    return value


def _number(value: Any) -> float | None:
    """``value`` as a finite float; None for a missing, NaN or infinite one (no runs, or one run's spread)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None


def _report(folder: Path) -> dict[str, Any]:
    """``folder``'s report.json, checked to be a compare report: a metric name and a summary row per activation."""
    try:
        path = regular_file(folder / "report.json", fix=FIX)
        report = json.loads(read_utf8(path))
    except UserError as err:
        raise SystemExit(f"sweep_table.py: {err}") from None
    except json.JSONDecodeError as err:
        raise SystemExit(f"sweep_table.py: {path} is not JSON (line {err.lineno}: {err.msg}); {FIX}") from None
    summary = report.get("summary") if isinstance(report, dict) else None
    if not isinstance(report.get("metric") if isinstance(report, dict) else None, str) or \
            not isinstance(summary, list) or \
            not all(isinstance(row, dict) and isinstance(row.get("activation"), str) for row in summary):
        raise SystemExit(f"sweep_table.py: {path} is not a helu-train compare report (it needs a metric name and a "
                         f"summary list of rows with an activation); {FIX}")
    for row in summary:
        for key in NUMBERS:
            value = row.get(key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise SystemExit(f"sweep_table.py: {path}: {key} of {row['activation']} is {value!r}, not a number; "
                                 f"{FIX}")
    return report


def _runs(report: dict[str, Any]) -> dict[str, int]:
    """Completed runs per activation of a report."""
    return {row["activation"]: int(_number(row.get("runs")) or 0) for row in report["summary"]}


def _cell(row: dict[str, Any] | None, scale: float, full: int = 0) -> tuple[str, str, str]:
    """(mean ± std, difference [CI] p, dead units) of one activation in one study; '-' where missing; an activation
    with fewer runs than ``full`` (its study's most) is marked (n=runs)."""
    if row is None:
        return "-", "-", "-"
    mean, std, runs = _number(row.get("mean")), _number(row.get("std")), _number(row.get("runs")) or 0
    spread = f" ± {scale * std:.1f}" if std is not None and runs > 1 else ""
    short = f" (n={runs:.0f})" if runs < full else ""
    accuracy = "-" + short if mean is None else f"{scale * mean:.1f}{spread}{short}"
    diff, low, high, p = (_number(row.get(key)) for key in ("diff", "ci_low", "ci_high", "p_value"))
    if "diff" not in row:
        difference = "baseline"
    elif diff is None:
        difference = "-"
    elif low is None or high is None:
        difference = f"{scale * diff:+.1f}"
    elif low == high:  # every seed gave the same difference: no spread, so no interval and no test
        difference = f"{scale * diff:+.1f} in every seed"
    else:
        difference = f"{scale * diff:+.1f} [{scale * low:+.1f}, {scale * high:+.1f}]" + \
            ("" if p is None else f", p {p:.2g}")
    dead = _number(row.get("val_dead_fraction"))
    return accuracy, difference, "-" if dead is None else f"{dead:.2f}"


def tables(studies: list[tuple[str, dict[str, Any]]], scale: float = 100.0) -> str:
    activations: list[str] = []
    for _, report in studies:
        activations += [r["activation"] for r in report["summary"] if r["activation"] not in activations]
    metric = studies[0][1]["metric"]
    baseline = studies[0][1].get("baseline")
    header = "| study | " + " | ".join(activations) + " |\n|---|" + "---|" * len(activations)
    unit = " (%)" if scale == 100 else ""
    parts = [(f"{metric}{unit}, mean ± std over seeds", 0),
             (f"Δ vs {baseline} [95% CI], paired t-test p", 1), ("validation dead-unit share at the end", 2)]
    out = []
    for title, index in parts:
        out.append(f"{title}:\n\n{header}")
        for label, report in studies:
            by_name, full = {r["activation"]: r for r in report["summary"]}, max(_runs(report).values(), default=0)
            out.append(f"| {label} | " + " | ".join(_cell(by_name.get(a), scale, full)[index] for a in activations)
                       + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", help="LABEL=FOLDER (or FOLDER) of each compare study, in row order")
    parser.add_argument("--scale", type=_scale, default=100.0, help="multiply the metric (100: accuracy in %%)")
    parser.add_argument("--partial", action="store_true",
                        help="tabulate studies whose activations have unequal run counts, marking them (n=runs)")
    args = parser.parse_args(argv)
    studies = []
    for label, folder in map(_study, args.studies):
        report = _report(folder)
        runs = _runs(report)
        short = {name: n for name, n in runs.items() if n < max(runs.values())}
        if short and not args.partial:
            raise SystemExit(f"sweep_table.py: {folder} is unfinished or lost runs: "
                             f"{', '.join(f'{name} has {n}' for name, n in short.items())} of "
                             f"{max(runs.values())}; let helu-train compare finish there (rerun it to complete the "
                             "grid), or pass --partial to tabulate it with those cells marked (n=runs)")
        studies.append((label, report))
    for key in ("metric", "baseline"):
        values = {label: report.get(key) for label, report in studies}
        if len(set(map(str, values.values()))) > 1:
            raise SystemExit(f"sweep_table.py: the studies differ in their {key} ({values}), so one table would mix "
                             f"them; pass studies that share it, one table per {key}")
    print(tables(studies, args.scale))


if __name__ == "__main__":
    main()
