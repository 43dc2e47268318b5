"""PNG plots from runs' CSV logs: alpha over training and the ActivationMonitor statistics per layer, with several
runs (e.g. ReLU vs HeLU) overlaid.

    helu-train plot runs/relu runs/helu --labels ReLU HeLU --output_dir plots

A run directory is a CSVLogger version directory holding ``metrics.csv`` or any parent of one (the newest
``metrics.csv`` below it is used). Written: ``alpha.png`` when a run trained HeLU (the logged ``alpha`` of an
AlphaScheduler run; a run without one is drawn at its fixed alpha, read from the ``hparams.yaml`` beside
``metrics.csv``) and ``<stage>_<stat>.png`` for stage train (x: step) and val (x: epoch), stat dead_fraction,
band_fraction, pre_mean, pre_std; one panel per layer plus "all layers".
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import yaml

from .callbacks.monitor import STATS
from .errors import DataError, MissingDataError, UserError
from .io import read_utf8
from .owned_files import refuse_foreign, write_owned

__all__ = ["build_parser", "constant_alpha", "find_metrics_csv", "main", "plot_runs", "read_metrics", "run"]

Series = dict[str, list[tuple[float, float]]]  # metric name -> [(x, value)]
# Every file plot may write: checked before any run is read, so a user's PNG stops plot before any work.
_PLOT_NAMES = ("alpha.png", *(f"{stage}_{stat}.png" for stage in ("train", "val") for stat in STATS))


def find_metrics_csv(run_dir: str | Path) -> Path:
    """``run_dir/metrics.csv``, else the most recently written ``metrics.csv`` below ``run_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingDataError(f"run directory {run_dir} does not exist; give the CSVLogger directory of a run")
    direct = run_dir / "metrics.csv"
    if direct.is_file():
        return direct
    found = sorted(run_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise MissingDataError(
            f"no metrics.csv under {run_dir}; train with a CSVLogger (trainer.logger: {{class_path: "
            "lightning.pytorch.loggers.CSVLogger, init_args: {save_dir: runs, name: helu}}, as in "
            "configs/monitor.yaml) and pass its log directory"
        )
    return found[-1]


def read_metrics(path: str | Path) -> tuple[Series, Series]:
    """Every logged metric of a CSVLogger ``metrics.csv`` as ``(by_step, by_epoch)`` series of ``(x, value)``.

    Empty and non-finite cells are skipped; a row with the wrong field count or a cell that is not a number raises
    DataError naming the file and line.
    """
    by_step: Series = defaultdict(list)
    by_epoch: Series = defaultdict(list)
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""))
    header = next(reader, None)
    if not header:
        raise DataError(f"{path}, line 1: the file is empty; expected a CSVLogger metrics.csv with a header line")
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{path}, line {reader.line_num}: {len(row)} fields but the header has {len(header)}; "
                            "the file looks truncated or edited: fix or delete the line")
        values = {key: _number(text, path, reader.line_num, key) for key, text in zip(header, row)}
        step, epoch = values.get("step"), values.get("epoch")
        for key, value in values.items():
            if key in ("step", "epoch") or value is None:
                continue
            if step is not None:
                by_step[key].append((step, value))
            if epoch is not None:
                by_epoch[key].append((epoch, value))
    return dict(by_step), dict(by_epoch)


def constant_alpha(metrics_csv: str | Path) -> float | None:
    """The fixed alpha of a run that trained HeLU, from the ``hparams.yaml`` the CSVLogger writes beside
    ``metrics.csv`` (``activation: helu`` means the default alpha); None for another activation, or when the file
    is missing or does not name an activation."""
    from .op import DEFAULT_ALPHA
    from .registry import ActivationFactory, activation_factory

    path = Path(metrics_csv).with_name("hparams.yaml")
    try:
        hparams = yaml.safe_load(read_utf8(path)) if path.is_file() else None
        spec = hparams.get("activation") if isinstance(hparams, dict) else None
        factory = activation_factory(spec) if spec is not None else None
    except (OSError, ValueError, TypeError, yaml.YAMLError):
        return None
    if not isinstance(factory, ActivationFactory) or not factory.name.startswith("helu"):
        return None
    return float(factory.kwargs.get("alpha", DEFAULT_ALPHA))


def _number(text: str, path: str | Path, line: int, column: str) -> float | None:
    """A cell's finite value, None for an empty or non-finite cell; DataError for text that is not a number."""
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}, line {line}: column {column!r} holds {text!r}, not a number; fix or delete the "
                        "line") from None
    return value if math.isfinite(value) else None


def _natural(name: str) -> list:
    """Sort key putting ``features.2`` before ``features.10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def _save(fig, path: Path) -> tuple[Path, bytes]:
    """The PNG of ``fig``, to be written to ``path`` once every file of the command is known to be ours."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return path, buffer.getvalue()


def _panel_grid(count: int, title: str):
    from matplotlib.figure import Figure

    cols = min(4, count)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax in axes[count:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, axes


def _plot_alpha(runs: list[tuple[str, dict[str, Series]]], constants: list[float | None],
                output_dir: Path) -> list[tuple[Path, bytes]]:
    """``alpha.png``: every run's logged alpha (and per-group alphas) over steps, and the fixed alpha of a HeLU run
    that logged none as a flat line over its steps; nothing when no run trained HeLU."""
    alpha_keys = sorted({k for _, s in runs for k in s["step"] if k == "alpha" or k.startswith("alpha/")})
    flat = [(label, alpha, [x for points in series["step"].values() for x, _ in points])
            for (label, series), alpha in zip(runs, constants)
            if alpha is not None and not any(k == "alpha" or k.startswith("alpha/") for k in series["step"])]
    flat = [(label, alpha, steps) for label, alpha, steps in flat if steps]
    if not alpha_keys and not flat:
        return []
    fig, (ax,) = _panel_grid(1, "HeLU alpha over training")
    for label, series in runs:
        for key in alpha_keys:
            if key in series["step"]:
                xs, ys = zip(*series["step"][key])
                ax.plot(xs, ys, label=label if key == "alpha" else f"{label} {key[6:]}")
    for label, alpha, steps in flat:
        ax.plot([min(steps), max(steps)], [alpha, alpha], label=f"{label} (fixed {alpha:g})")
    ax.set_xlabel("step")
    ax.set_ylabel("alpha")
    ax.legend(fontsize="small")
    return [_save(fig, output_dir / "alpha.png")]


def _plot_monitor(runs: list[tuple[str, dict[str, Series]]], output_dir: Path) -> list[tuple[Path, bytes]]:
    """``<stage>_<stat>.png`` for each ActivationMonitor statistic logged: all layers, then one panel per layer."""
    written = []
    for stage, x_name in (("train", "step"), ("val", "epoch")):
        for stat in STATS:
            prefix = f"monitor/{stage}/{stat}"
            sites = sorted({k[len(prefix) + 1:] for _, s in runs for k in s[x_name] if k.startswith(prefix + "/")},
                           key=_natural)
            if not any(prefix in s[x_name] for _, s in runs):
                continue
            fig, axes = _panel_grid(1 + len(sites), f"{stat.replace('_', ' ')} ({stage}) per layer")
            for ax, site in zip(axes, [None, *sites]):
                key = prefix if site is None else f"{prefix}/{site}"
                for label, series in runs:
                    points = series[x_name].get(key)
                    if points:
                        xs, ys = zip(*points)
                        ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
                ax.set_title("all layers" if site is None else site, fontsize="small")
                ax.set_xlabel(x_name)
            axes[0].legend(fontsize="small")
            written.append(_save(fig, output_dir / f"{stage}_{stat}.png"))
    return written


def plot_runs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None,
              output_dir: str | Path = "plots") -> list[Path]:
    """Write the PNGs for ``run_dirs`` (labelled ``labels``, default the directory names); return their paths."""
    if not run_dirs:
        raise UserError("give at least one run directory")
    labels = list(labels) if labels else [Path(d).resolve().name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise UserError(f"got {len(labels)} labels {labels} for {len(run_dirs)} run directories; give one per run")
    csvs = [find_metrics_csv(d) for d in run_dirs]
    runs = [(label, dict(zip(("step", "epoch"), read_metrics(path)))) for label, path in zip(labels, csvs)]
    output_dir = Path(output_dir)
    refuse_foreign(output_dir, _PLOT_NAMES, "plot")  # before any work: every name plot may write
    pending = _plot_alpha(runs, [constant_alpha(path) for path in csvs], output_dir) + _plot_monitor(runs, output_dir)
    if not pending:
        raise UserError(
            f"no alpha or monitor metrics in {[str(d) for d in run_dirs]}; train with the AlphaScheduler and/or "
            "ActivationMonitor callbacks (configs/monitor.yaml) and a CSVLogger"
        )
    refuse_foreign(output_dir, [path.name for path, _ in pending], "plot")
    return [write_owned(path.parent, path.name, data, "plot") for path, data in pending]


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``helu-train plot RUN_DIR [RUN_DIR ...] --labels ... --output_dir DIR``."""
    parser = argparse.ArgumentParser(prog="helu-train plot", description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("run_dirs", nargs="+", help="CSVLogger run directories (or parents of one)")
    parser.add_argument("--labels", nargs="+", default=None, help="one label per run directory")
    parser.add_argument("--output_dir", default="plots", help="where the PNGs go (default: plots)")
    return parser


def run(args: argparse.Namespace) -> list[Path]:
    """Write the plots for parsed ``args`` and print their paths; a missing run or bad log is a UserError."""
    paths = plot_runs(args.run_dirs, args.labels, args.output_dir)
    for path in paths:
        print(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    """``helu-train plot ...`` as a standalone entry point: errors exit 2 with argparse's short message."""
    parser = build_parser()
    try:
        run(parser.parse_args(argv))
    except UserError as err:
        parser.error(str(err))
