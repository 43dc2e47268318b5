"""What a search leaves behind: summary.csv (and a printed table), best.yaml, and PNG plots of the study."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from helu_lightning.finite import defined, refuse_non_finite
from helu_lightning.owned_files import write_owned
from helu_lightning.search.config import logs_into
from helu_lightning.search.space import SearchParam, apply_params, outside_space

__all__ = ["OUTPUT_NAMES", "format_table", "runs_into", "summary_rows", "write_outputs", "write_plots"]

# Written by every search; checked before the first trial so a user's file stops the search at once.
OUTPUT_NAMES = ("summary.csv", "best.yaml", "plots/history.png", "plots/importance.png")


def write_outputs(study: optuna.Study, config: dict, params: list[SearchParam], output_dir: Path, monitor: str) -> None:
    """best.yaml (a fit config), summary.csv (+ printed), and PNG plots of history, importance, alpha vs metric."""
    rows = summary_rows(study, params)
    refuse_non_finite(rows, str(output_dir / "summary.csv"))
    header = list(rows[0]) if rows else ["number", "state", monitor]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_owned(output_dir, "summary.csv", buffer.getvalue().encode("utf-8"), "search")
    print(format_table(rows, header))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        print(f"no trial of study {study.study_name!r} completed yet: no best.yaml or plots written")
        return
    fitting = [t for t in complete if defined(t.value) is not None and not outside_space(params, t.params)]
    if len(fitting) < len(complete):
        print(f"helu-train search: {len(complete) - len(fitting)} completed trial(s) of study {study.study_name!r} "
              "hold values outside this search space (another space, or written into the storage by hand); "
              "best.yaml ignores them")
    if not fitting:
        print("no completed trial lies in this search space: no best.yaml written")
        return
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    best = pick(fitting, key=lambda t: t.value)
    best_config = runs_into(apply_params(config, params, best.params), output_dir / "best")
    note = f"# helu-train search: best of study {study.study_name!r}, trial {best.number}, {monitor}={best.value:.6g}\n"
    best_yaml = note + yaml.safe_dump(best_config, sort_keys=False)
    write_owned(output_dir, "best.yaml", best_yaml.encode("utf-8"), "search")
    print(f"best trial {best.number}: {monitor}={best.value:.6g} {best.params} -> {output_dir / 'best.yaml'}; "
          f"train it with: helu-train fit --config {output_dir / 'best.yaml'}")
    write_plots(study, params, output_dir)


def runs_into(config: dict, folder: Path) -> dict:
    """``config`` training into ``folder`` (run folder, loggers, checkpoint folders), not the searched config's own
    run folder: ``fit --config best.yaml`` would refuse that folder, or resume the original run with ``last``."""
    trainer = config["trainer"] = dict(config.get("trainer") or {})
    trainer["default_root_dir"] = str(folder)
    for callback in trainer.get("callbacks") or []:
        init_args = callback.get("init_args") if isinstance(callback, dict) else None
        if isinstance(init_args, dict) and init_args.get("dirpath") is not None:
            init_args["dirpath"] = str(folder / "checkpoints")
    return logs_into(config, folder)


def summary_rows(study: optuna.Study, params: list[SearchParam]) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, each parameter, epochs trained and seconds taken; a value that is not
    finite (an inf loss) is left empty and named in the state, so summary.csv never holds ``inf``."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = None
        if t.datetime_complete and t.datetime_start:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        state = t.state.name if t.value is None or defined(t.value) is not None else f"{t.state.name} (value {t.value})"
        rows.append(
            {
                "number": t.number,
                "state": state,
                "value": defined(t.value),
                **{p.name: t.params.get(p.name) for p in params},
                "epochs": t.user_attrs.get("epochs"),
                "seconds": None if seconds is None else round(seconds, 2),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]], header: list[str]) -> str:
    """The rows as right-aligned text columns; floats to 4 significant digits, missing values as '-'."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    cells = [header] + [[cell(row[h]) for h in header] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return "\n".join("  ".join(text.rjust(w) for text, w in zip(line, widths)) for line in cells)


def write_plots(study: optuna.Study, params: list[SearchParam], output_dir: Path) -> list[Path]:
    """Optimisation history, parameter importance (two or more finished trials) and one slice per parameter, in
    ``output_dir/plots``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots: dict[str, Callable[[], Any]] = {"history": lambda: ovm.plot_optimization_history(study)}
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 2:
        plots["importance"] = lambda: ovm.plot_param_importances(study)
    for p in params:
        plots[f"{p.name}_vs_metric"] = lambda name=p.name: ovm.plot_slice(study, params=[name])
    written = []
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # A parameter that took one value so far gives a slice of zero width; matplotlib widens it itself.
            warnings.filterwarnings("ignore", message="Attempting to set identical low and high xlims")
            ax = plot()
        figure = ax.flat[0].figure if hasattr(ax, "flat") else ax.figure
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(write_owned(output_dir, f"plots/{name}.png", buffer.getvalue(), "search"))
    return written
