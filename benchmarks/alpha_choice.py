"""Does a chooser of alpha find the alpha a grid finds, and at what share of the grid's compute?

Reads a `helu-train compare` grid over alpha (its runs.csv and run_seconds.csv), a compare study with a
`helu:auto` arm (runs.csv: the alpha suggest_alpha picked per seed; calibration.csv: what the pick alone costs) and
`helu-train search` studies (summary.csv), optionally compare studies of other arms on the grid's seeds
(--measured, e.g. the searches' picks); prints the grid's accuracy by alpha and, per chooser, the alpha picked,
the grid's mean accuracy there (log-linear between grid points), the regret (grid best minus that) and the compute
spent as a share of the grid's (summed run seconds, and epochs). Optionally plots accuracy vs alpha, picks marked.

    python benchmarks/alpha_choice.py table --grid docs/results/alpha_grid_digits_d8 \\
        --auto docs/results/alpha_auto_digits_d8 --search docs/results/alpha_search_digits_d8_s* \\
        --measured docs/results/alpha_picks_digits_d8 --plot docs/results/alpha_grid_digits_d8/alpha_choice.png
    # the files it reads that compare and search do not write:
    python benchmarks/alpha_choice.py seconds runs/compare/alpha_grid_digits_d8 > run_seconds.csv
    python benchmarks/alpha_choice.py calibrate --config configs/plain_mlp_digits.yaml --seeds 5 \\
        --model.init_args.backbone_options.depth 8 > calibration.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SEARCH_GOAL = (1.0, 0.35)  # search: within 1 point of the grid's best at <= 0.35x its compute
AUTO_GOAL = (2.0, 0.02)    # helu:auto: within 2 points at <= 2% of it


def _csv(path: Path, needed: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of ``path``; SystemExit naming the file when it is missing or lacks a column of ``needed``."""
    if not path.is_file():
        raise SystemExit(f"alpha_choice.py: {path} does not exist; see the docstring for what writes it")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    if not rows or any(column not in rows[0] for column in needed):
        raise SystemExit(f"alpha_choice.py: {path} has no rows or lacks the columns {', '.join(needed)}")
    return rows


def _float(value: str | None, where: str) -> float | None:
    """A CSV cell as a finite float; None for an empty cell; SystemExit for text that is not a number."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise SystemExit(f"alpha_choice.py: {where} is {value!r}, not a number") from None
    return number if math.isfinite(number) else None


def alpha_of(label: str) -> float | None:
    """The fixed alpha of a compare label (helu:0.05 -> 0.05); None for relu, helu:auto and schedules."""
    name, _, value = label.partition(":")
    try:
        return float(value) if name == "helu" else None
    except ValueError:
        return None


def grid_values(folder: Path, metric: str) -> dict[str, dict[int, float]]:
    """Per compare label, seed -> ``metric`` of ``folder``/runs.csv."""
    values: dict[str, dict[int, float]] = {}
    for i, row in enumerate(_csv(folder / "runs.csv", ("activation", "seed", metric)), start=2):
        value = _float(row[metric], f"{folder / 'runs.csv'} line {i}, {metric}")
        if value is not None:
            values.setdefault(row["activation"], {})[int(row["seed"])] = value
    return values


def mean_at(alpha: float, means: dict[float, float]) -> tuple[float, str]:
    """The grid's mean at ``alpha``: log-linear between the neighbouring grid alphas, the end value outside the
    grid; and a note ('' on a grid point, 'between', 'below grid', 'above grid')."""
    alphas = sorted(means)
    if alpha in means:
        return means[alpha], ""
    if alpha < alphas[0]:
        return means[alphas[0]], "below grid"
    if alpha > alphas[-1]:
        return means[alphas[-1]], "above grid"
    high = next(a for a in alphas if a > alpha)
    low = alphas[alphas.index(high) - 1]
    t = (math.log(alpha) - math.log(low)) / (math.log(high) - math.log(low))
    return means[low] + t * (means[high] - means[low]), "between"


def search_pick(folder: Path, limit: float | None = None) -> dict[str, float] | None:
    """The best completed trial's alpha of a search's summary.csv, with the trials' summed seconds and epochs; with
    ``limit`` (seconds), over the first trials only, as many as fit in it (the search stopped at that budget), and
    None when none of those completed."""
    path = folder / "summary.csv"
    columns = ("number", "state", "value", "alpha", "epochs", "seconds")
    rows = sorted(_csv(path, columns), key=lambda r: int(r["number"]))
    spent = [_float(r["seconds"], f"{path} seconds") or 0.0 for r in rows]
    if limit is not None:
        fit = next((i for i in range(len(rows)) if sum(spent[:i + 1]) > limit), len(rows))
        rows, spent = rows[:fit], spent[:fit]
    done = [r for r in rows if r["state"] == "COMPLETE" and _float(r["value"], f"{path} value") is not None]
    if not done and limit is not None:
        return None
    if not done:
        raise SystemExit(f"alpha_choice.py: {path} has no completed trial; let the search run on")
    best = max(done, key=lambda r: float(r["value"]))
    return {"alpha": float(best["alpha"]), "value": float(best["value"]), "trials": len(rows), "seconds": sum(spent),
            "epochs": sum(_float(r["epochs"], f"{path} epochs") or 0.0 for r in rows)}


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def _pm(values: list[float]) -> str:
    spread = f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{100 * statistics.mean(values):.1f}{spread}"


def _verdict(regret: float, share: float | None, goal: tuple[float, float]) -> str:
    if share is None:
        return "-"
    return "met" if regret <= goal[0] and share <= goal[1] else "not met"


def table(grid: Path, auto: Path | None, searches: list[Path], metric: str = "test/acc",
          plot: Path | None = None, measured: list[Path] = ()) -> str:
    """The grid table and the choosers' table as Markdown (and the plot, when asked)."""
    values = grid_values(grid, metric)
    seconds_rows = _csv(grid / "run_seconds.csv", ("activation", "seed", "seconds"))
    grid_seconds = sum(float(r["seconds"]) for r in seconds_rows)
    grid_epochs = sum(_float(r.get("epochs"), f"{grid / 'runs.csv'} epochs") or 0.0
                      for r in _csv(grid / "runs.csv", ("epochs",)))
    fixed = {alpha_of(label): runs for label, runs in values.items() if alpha_of(label) is not None}
    if len(fixed) < 2:
        raise SystemExit(f"alpha_choice.py: {grid / 'runs.csv'} has fewer than two helu:<alpha> arms; pass a grid")
    means = {alpha: statistics.mean(runs.values()) for alpha, runs in fixed.items()}
    best = max(means, key=means.get)
    runs = sum(len(v) for v in values.values())
    out = [f"grid: {runs} runs, {grid_epochs:.0f} epochs, {grid_seconds / 60:.1f} min summed run time; "
           f"{metric} (%) by alpha, mean ± std over seeds (min-max):", "",
           "| alpha | runs | mean ± std | min-max |", "|---|---|---|---|"]
    for label, runs_ in sorted(values.items(), key=lambda kv: alpha_of(kv[0]) or 0.0):
        mark = " **best**" if alpha_of(label) == best else ""
        out.append(f"| {label}{mark} | {len(runs_)} | {_pm(list(runs_.values()))} | "
                   f"{_pct(min(runs_.values()))}-{_pct(max(runs_.values()))} |")
    out += ["", "| chooser | alpha picked | grid mean there (%) | regret (points) | compute share (time) | "
            "compute share (epochs) | goal |", "|---|---|---|---|---|---|---|"]
    picks: dict[str, list[float]] = {"helu:auto": []}
    if auto is not None:
        auto_values = grid_values(auto, metric)
        calibration = {int(r["seed"]): r for r in _csv(auto / "calibration.csv", ("seed", "alpha", "seconds"))}
        auto_rows = [r for r in _csv(auto / "runs.csv", ("activation", "seed", "alpha"))
                     if r["activation"].endswith(":auto")]
        for row in auto_rows:
            seed, alpha = int(row["seed"]), float(row["alpha"])
            picks["helu:auto"].append(alpha)
            mean, note = mean_at(alpha, means)
            regret = 100 * (means[best] - mean)
            cost = _float((calibration.get(seed) or {}).get("seconds"), f"{auto / 'calibration.csv'} seconds")
            share = None if cost is None else cost / grid_seconds
            out.append(f"| helu:auto, seed {seed} | {alpha:.4g} | {_pct(mean)}{' (' + note + ')' if note else ''} "
                       f"| {regret:.1f} | {'-' if share is None else f'{100 * share:.2f}%'} | - | "
                       f"{_verdict(regret, share, AUTO_GOAL)} |")
        for label, runs_ in auto_values.items():  # measured: the arms trained at their own alpha, same seeds
            out.append(_measured(label, runs_, fixed[best], best))
    trained: dict[float, dict[int, float]] = {}  # fixed alphas trained on the grid's seeds outside it, for the plot
    for folder in measured:  # other compare studies on the grid's seeds, e.g. the searches' picks trained
        for label, runs_ in grid_values(folder, metric).items():
            out.append(_measured(label, runs_, fixed[best], best))
            if alpha_of(label) is not None:
                trained[alpha_of(label)] = runs_
    if auto is not None:
        out += _targets(_csv(auto / "calibration.csv", ("seed", "alpha")), means, best)
    for folder in searches:
        full = search_pick(folder)
        budgeted = search_pick(folder, SEARCH_GOAL[1] * grid_seconds)
        picks.setdefault(re.sub(r"_s\d+$", "", folder.name), []).append(full["alpha"])  # one mark per setting
        rows = [(f"search {folder.name} ({full['trials']} trials)", full)]
        if budgeted is None:
            out.append(f"| search {folder.name}, within {SEARCH_GOAL[1]}x | no trial completed | - | - | - | - | "
                       "not met |")
        elif budgeted["trials"] < full["trials"]:
            rows.append((f"search {folder.name}, first {budgeted['trials']} (<= {SEARCH_GOAL[1]}x)", budgeted))
        for name, pick in rows:
            mean, note = mean_at(pick["alpha"], means)
            regret = 100 * (means[best] - mean)
            cell = f"{regret:.1f}"
            twin = next((a for a in trained if abs(math.log(a / pick["alpha"])) < 1e-3), None)
            if twin is not None:  # the pick trained on the grid's seeds: its paired regret decides the goal
                regret = 100 * _paired(fixed[best], trained[twin]).mean
                cell += f"; trained {regret:+.1f}"
            share = pick["seconds"] / grid_seconds
            out.append(f"| {name} | {pick['alpha']:.4g} | {_pct(mean)}{' (' + note + ')' if note else ''} | "
                       f"{cell} | {share:.2f}x | {pick['epochs'] / grid_epochs:.2f}x | "
                       f"{_verdict(regret, share, SEARCH_GOAL)} |")
    out += ["", f"grid best: alpha {best:g}, {_pct(means[best])}%. Regret: the grid's best mean minus its mean at the "
            "pick (log-linear between grid points). Goals: search within 1 point at <= 0.35x the grid's compute, "
            "helu:auto within 2 points at <= 2% (its cost: the calibration pass alone)."]
    if plot is not None:
        _plot(fixed, values.get("relu"), best, picks, plot, metric, trained)
    return "\n".join(out)


def _paired(best_runs: dict[int, float], runs: dict[int, float]) -> Any:
    """The grid's best minus ``runs`` over their shared seeds, as compare's paired statistics give it."""
    from helu_lightning.compare.stats import paired_difference

    return paired_difference(best_runs, runs)


def _measured(label: str, runs: dict[int, float], best_runs: dict[int, float], best: float) -> str:
    """A row for an arm trained on the grid's seeds: its mean ± std, and its regret as the paired difference to the
    grid's best alpha over the seeds both have (95% t interval, paired t-test, as compare's own table)."""
    paired = _paired(best_runs, runs)
    interval = "" if math.isnan(paired.low) else \
        f" [{100 * paired.low:+.1f}, {100 * paired.high:+.1f}], p {paired.p_value:.2g}"
    return (f"| {label}, trained ({len(runs)} seeds) | - | {_pm(list(runs.values()))} (measured) | "
            f"{100 * paired.mean:+.1f}{interval} (paired, vs alpha {best:g}) | - | - | - |")


def _targets(calibration: list[dict[str, str]], means: dict[float, float], best: float) -> list[str]:
    """Rows for suggest_alpha at other target band fractions (calibration.csv's alpha_at_<t> columns): the alpha
    over seeds (mean, min-max), the grid's mean at the mean alpha and the regret there."""
    rows = []
    for column in [c for c in calibration[0] if c.startswith("alpha_at_")]:
        alphas = [float(r[column]) for r in calibration]
        mean, note = mean_at(statistics.mean(alphas), means)
        rows.append(f"| suggest_alpha, target band {column.removeprefix('alpha_at_')} ({len(alphas)} seeds) | "
                    f"{statistics.mean(alphas):.3g} ({min(alphas):.3g}-{max(alphas):.3g}) | "
                    f"{_pct(mean)}{' (' + note + ')' if note else ''} | {100 * (means[best] - mean):.1f} | - | - | - |")
    return rows


def _plot(fixed: dict[float, dict[int, float]], relu: dict[int, float] | None, best: float,
          picks: dict[str, list[float]], path: Path, metric: str,
          trained: dict[float, dict[int, float]] | None = None) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.4, 4.2))
    ax = fig.subplots()
    alphas = sorted(fixed)
    means = [100 * statistics.mean(fixed[a].values()) for a in alphas]
    stds = [100 * statistics.stdev(fixed[a].values()) if len(fixed[a]) > 1 else 0.0 for a in alphas]
    ax.errorbar(alphas, means, yerr=stds, marker="o", capsize=3, label="HeLU grid (mean ± std)")
    for a in alphas:
        ax.scatter([a] * len(fixed[a]), [100 * v for v in fixed[a].values()], s=8, color="grey", alpha=0.5)
    if trained:
        extra = sorted(trained)
        ax.errorbar(extra, [100 * statistics.mean(trained[a].values()) for a in extra],
                    yerr=[100 * statistics.stdev(trained[a].values()) if len(trained[a]) > 1 else 0.0 for a in extra],
                    marker="s", linestyle="none", capsize=3, color="tab:olive", label="picks trained (mean ± std)")
    if relu:
        ax.axhline(100 * statistics.mean(relu.values()), color="black", linestyle="--", label="ReLU")
    top = max([m + s for m, s in zip(means, stds)]
              + [100 * (statistics.mean(v.values()) + (statistics.stdev(v.values()) if len(v) > 1 else 0.0))
                 for v in (trained or {}).values()])
    for i, (name, values) in enumerate(picks.items()):
        marker, color, height = "vxP*D"[i % 5], f"C{(i + 3) % 10}", top + 6 - 3 * i
        if values:
            ax.scatter(values, [height] * len(values), marker=marker, color=color, s=50,
                       label=f"{name} picks ({len(values)})")
    ax.axvline(best, color="tab:orange", alpha=0.4, label=f"grid best ({best:g})")
    ax.set_xscale("log")
    ax.set_xlabel("alpha")
    ax.set_ylabel(f"{metric} (%)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def seconds(folder: Path, study_name: str = "helu-compare") -> str:
    """run_seconds.csv of a compare study: trial, activation, seed, seconds (Optuna's start and end)."""
    import optuna

    from helu_lightning.compare.snapshot import read_study

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "activation", "seed", "seconds"])
    with read_study(folder, study_name) as study:
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            spent = (t.datetime_complete - t.datetime_start).total_seconds()
            writer.writerow([t.number, t.params["activation"], t.params["seed"], f"{spent:.2f}"])
    return buffer.getvalue()


def calibrate(config: str, seeds: int, overrides: list[str], targets: tuple[float, ...] = ()) -> str:
    """calibration.csv: per seed, suggest_alpha's global alpha for the freshly initialised model (as helu:auto
    computes it, target band fraction 0.1), the seconds that took (building the model and data included), the
    per-layer suggestions, and the global alpha at each other target band fraction of ``targets`` (the same pass)."""
    from helu_lightning.calibration import suggest_alpha
    from helu_lightning.cli import cli as build_cli

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["seed", "alpha", "seconds", "per_layer", *(f"alpha_at_{t:g}" for t in targets)])
    for seed in range(seeds):
        with tempfile.TemporaryDirectory(prefix="alpha-choice-") as tmp:
            start = time.perf_counter()
            args = ["--config", config, *overrides, f"--seed_everything={seed}", f"--trainer.default_root_dir={tmp}"]
            built = build_cli(args=args, run=False, trainer_defaults={"logger": False, "enable_progress_bar": False})
            built.datamodule.prepare_data()
            built.datamodule.setup("fit")
            model = getattr(built.model, "model", None) or built.model
            suggestion = suggest_alpha(model, built.datamodule.train_dataloader(), train_mode=True)
            spent = time.perf_counter() - start
            others = [suggest_alpha(model, built.datamodule.train_dataloader(), target_band_fraction=t,
                                    train_mode=True).global_alpha for t in targets]
        per_layer = {name: round(value, 5) for name, value in suggestion.per_layer.items()}
        writer.writerow([seed, f"{suggestion.global_alpha:.6g}", f"{spent:.2f}", json.dumps(per_layer),
                         *(f"{value:.6g}" for value in others)])
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("table", help="the grid and chooser tables (and --plot)")
    show.add_argument("--grid", type=Path, required=True, help="compare folder: runs.csv, run_seconds.csv")
    show.add_argument("--auto", type=Path, help="compare folder with a helu:auto arm: runs.csv, calibration.csv")
    show.add_argument("--search", type=Path, nargs="*", default=[], help="search folders: summary.csv")
    show.add_argument("--measured", type=Path, nargs="*", default=[],
                      help="compare folders of arms trained on the grid's seeds (runs.csv): paired with its best")
    show.add_argument("--metric", default="test/acc")
    show.add_argument("--plot", type=Path, help="PNG: accuracy vs alpha with the picks")
    times = commands.add_parser("seconds", help="run_seconds.csv of a compare study, from its study.db")
    times.add_argument("folder", type=Path)
    calib = commands.add_parser("calibrate", help="calibration.csv: helu:auto's alpha and its cost per seed")
    calib.add_argument("--config", required=True)
    calib.add_argument("--seeds", type=int, default=5)
    calib.add_argument("--targets", type=float, nargs="*", default=[],
                       help="other target band fractions whose global alpha to add (e.g. 0.25 0.5 0.75 0.9)")
    args, overrides = parser.parse_known_args(argv)
    if overrides and args.command != "calibrate":
        parser.error(f"unrecognized arguments: {' '.join(overrides)}")
    if args.command == "table":
        print(table(args.grid, args.auto, args.search, args.metric, args.plot, args.measured))
    elif args.command == "seconds":
        sys.stdout.write(seconds(args.folder))
    else:
        sys.stdout.write(calibrate(args.config, args.seeds, overrides, tuple(args.targets)))


if __name__ == "__main__":
    main()
