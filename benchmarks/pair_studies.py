"""Paired differences between two `helu-train compare` studies that ran the same seeds (e.g. with and without
distillation): for each activation in both, the metric of study B minus study A over the seeds both completed,
with the same paired t interval and p value as compare's own table.

    python benchmarks/pair_studies.py runs/compare/text_relufication runs/compare/text_relufication_distill
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna

from helu_lightning.compare.report import run_rows
from helu_lightning.compare.stats import PAIRED_TEST, paired_difference


def _values(folder: Path, study_name: str, metric: str) -> dict[str, dict[int, float]]:
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{(folder / 'study.db').resolve()}")
    values: dict[str, dict[int, float]] = {}
    for row in run_rows(study):
        if row.get(metric) is not None:
            values.setdefault(row["activation"], {})[row["seed"]] = row[metric]
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path, help="study A (compare --output_dir)")
    parser.add_argument("treatment", type=Path, help="study B (compare --output_dir)")
    parser.add_argument("--metric", default="test/acc")
    parser.add_argument("--study_name", default="helu-compare")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    a, b = _values(args.baseline, args.study_name, args.metric), _values(args.treatment, args.study_name, args.metric)
    print(f"| activation | pairs | {args.metric} A (%) | B (%) | B − A [95% CI] (pts) | p |\n|---|---|---|---|---|---|")
    for label in [k for k in a if k in b]:
        paired = paired_difference(b[label], a[label])
        seeds = sorted(set(a[label]) & set(b[label]))
        mean_a = 100 * sum(a[label][s] for s in seeds) / max(len(seeds), 1)
        mean_b = 100 * sum(b[label][s] for s in seeds) / max(len(seeds), 1)
        ci = "" if paired.low != paired.low else f" [{100 * paired.low:+.2f}, {100 * paired.high:+.2f}]"
        p = "-" if paired.p_value != paired.p_value else f"{paired.p_value:.2g}"
        print(f"| {label} | {paired.n} | {mean_a:.2f} | {mean_b:.2f} | {100 * paired.mean:+.2f}{ci} | {p} |")
    print(f"\nA: {args.baseline}, B: {args.treatment}; {PAIRED_TEST}.")


if __name__ == "__main__":
    main()
