"""Paired differences between `helu-train compare` studies that ran the same seeds, with the same paired t interval
and p value as compare's own table.

Without ``--against``: for each activation in both studies, study B minus study A over the seeds both completed
(e.g. with and without distillation). With ``--against LABEL``: every activation of study B minus activation LABEL
of study A, seed by seed (e.g. each student against the GELU model it replaces; A and B may be the same study).

    python benchmarks/pair_studies.py runs/compare/relufication runs/compare/relufication_distill
    python benchmarks/pair_studies.py runs/compare/relufication runs/compare/relufication_distill --against gelu
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import optuna

from helu_lightning.compare.report import run_rows
from helu_lightning.compare.snapshot import read_study
from helu_lightning.compare.stats import PAIRED_TEST, paired_difference
from helu_lightning.errors import UserError


def _values(folder: Path, study_name: str, metric: str) -> dict[str, dict[int, float]]:
    """Per activation, seed -> ``metric`` of each completed run of ``folder``'s study (read from a copy)."""
    try:
        with read_study(folder, study_name) as study:
            rows = run_rows(study)
    except UserError as err:
        raise SystemExit(f"pair_studies.py: {err}") from None
    values: dict[str, dict[int, float]] = {}
    for row in rows:
        value = row.get(metric)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise SystemExit(f"pair_studies.py: {folder}/study.db: run {row['trial']} has {metric} = {value!r}, not "
                             "a number; run helu-train compare there again or pass another --metric")
        runs = values.setdefault(row["activation"], {})
        if value is not None and math.isfinite(value):  # as compare itself, a NaN or infinite value is no result
            runs[row["seed"]] = value
    if not any(values.values()):
        present = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not
                          isinstance(v, bool) and k not in ("seed", "trial", "alpha", "epochs")})
        raise SystemExit(f"pair_studies.py: no completed run of {folder} has a finite {metric}; "
                         + (f"pass --metric with one of: {', '.join(present)}" if rows else
                            "the study has no completed runs yet"))
    return values


def pairs(a: dict[str, dict[int, float]], b: dict[str, dict[int, float]],
          against: str | None) -> list[tuple[str, dict[int, float], dict[int, float]]]:
    """(label, B's values, A's values) for each row of the table."""
    if against is None:
        return [(label, b[label], a[label]) for label in a if label in b]
    if against not in a:
        raise SystemExit(f"--against {against!r} is not an activation of study A; it has: {', '.join(a) or 'none'}")
    return [(label, b[label], a[against]) for label in b if b[label] is not a[against]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", type=Path, help="study A (compare --output_dir)")
    parser.add_argument("treatment", type=Path, help="study B (compare --output_dir; may be A)")
    parser.add_argument("--against", default=None, help="pair every activation of B with this activation of A")
    parser.add_argument("--metric", default="test/acc", help="the runs.csv column to pair (default test/acc)")
    parser.add_argument("--study_name", default="helu-compare",
                        help="the Optuna study in the folder's study.db (compare's default: helu-compare)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    a = _values(args.baseline, args.study_name, args.metric)
    b = a if args.treatment.resolve() == args.baseline.resolve() else _values(args.treatment, args.study_name,
                                                                               args.metric)
    reference = "A" if args.against is None else f"A's {args.against}"
    print(f"| activation | pairs | {args.metric} {reference} (%) | B (%) | B − {reference} [95% CI] (pts) | p |\n"
          "|---|---|---|---|---|---|")
    for label, treated, base in pairs(a, b, args.against):
        paired = paired_difference(treated, base)
        seeds = sorted(set(treated) & set(base))
        if not seeds:
            print(f"| {label} | 0 | - | - | - (no seed in both) | - |")
            continue
        mean_a = 100 * sum(base[s] for s in seeds) / len(seeds)
        mean_b = 100 * sum(treated[s] for s in seeds) / len(seeds)
        ci = "" if paired.low != paired.low else f" [{100 * paired.low:+.2f}, {100 * paired.high:+.2f}]"
        p = "-" if paired.p_value != paired.p_value else f"{paired.p_value:.2g}"
        print(f"| {label} | {paired.n} | {mean_a:.2f} | {mean_b:.2f} | {100 * paired.mean:+.2f}{ci} | {p} |")
    print(f"\nA: {args.baseline}, B: {args.treatment}; {PAIRED_TEST}.")


if __name__ == "__main__":
    main()
