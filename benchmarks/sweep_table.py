"""One Markdown table over several `helu-train compare` studies of the same activations (a sweep): a row per study,
and per activation the test metric's mean ± std over seeds, then the paired difference to the baseline with its
95% interval and p value, and the share of dead units at the end. Reads each folder's report.json.

    python benchmarks/sweep_table.py "digits, depth 4=runs/compare/depth_digits_d4" \\
        "digits, depth 8=runs/compare/depth_digits_d8"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _study(argument: str) -> tuple[str, Path]:
    label, sep, folder = argument.rpartition("=")
    return (label, Path(folder)) if sep else (Path(folder).name, Path(folder))


def _report(folder: Path) -> dict[str, Any]:
    path = folder / "report.json"
    if not path.is_file():
        raise SystemExit(f"{folder} holds no report.json: pass a finished helu-train compare --output_dir folder")
    return json.loads(path.read_text())


def _cell(row: dict[str, Any] | None, scale: float) -> tuple[str, str, str]:
    """(mean ± std, difference [CI] p, dead units) of one activation in one study; '-' where missing."""
    if row is None:
        return "-", "-", "-"
    spread = f" ± {scale * row['std']:.1f}" if row.get("std") == row.get("std") and row.get("runs", 0) > 1 else ""
    accuracy = f"{scale * row['mean']:.1f}{spread}"
    if "diff" not in row:
        difference = "baseline"
    elif row.get("ci_low") != row.get("ci_low") or row.get("ci_low") is None:
        difference = f"{scale * row['diff']:+.1f}"
    else:
        difference = (f"{scale * row['diff']:+.1f} [{scale * row['ci_low']:+.1f}, {scale * row['ci_high']:+.1f}], "
                      f"p {row['p_value']:.2g}")
    dead = row.get("val_dead_fraction")
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
            by_name = {r["activation"]: r for r in report["summary"]}
            out.append(f"| {label} | " + " | ".join(_cell(by_name.get(a), scale)[index] for a in activations) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", help="LABEL=FOLDER (or FOLDER) of each compare study, in row order")
    parser.add_argument("--scale", type=float, default=100.0, help="multiply the metric (100: accuracy in %%)")
    args = parser.parse_args(argv)
    studies = [(label, _report(folder)) for label, folder in map(_study, args.studies)]
    print(tables(studies, args.scale))


if __name__ == "__main__":
    main()
