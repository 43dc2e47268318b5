"""The comparison's report, from the study alone: one row per run, one per activation (mean +- std over seeds,
paired difference to the baseline with its 95% CI and p-value, INT8 change), as CSV, JSON, Markdown and a
printed table."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from helu_lightning.compare.stats import PAIRED_TEST, mean_std, paired_difference
from helu_lightning.finite import defined, non_finite_at, refuse_non_finite

__all__ = ["CURVES", "compared_metric", "run_rows", "summary_rows", "to_csv", "to_markdown", "to_table"]


# Run-row keys of the ActivationMonitor's validation fractions per epoch, and the recorder's key for each.
CURVES = {"dead_curve": "monitor/val/dead_fraction", "band_curve": "monitor/val/band_fraction"}


def _mean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _curve(record: dict[str, Any], key: str) -> list[float | None]:
    """The RunRecorder's per-validation values of ``key`` (None where a validation run lacks it)."""
    return [point.get(key) for point in record.get("curves") or []]


def run_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per completed run, in grid order: activation, seed, alpha, metrics, time, monitor, INT8."""
    grid = study.user_attrs.get("grid") or {"activation": [], "seed": []}
    order = {label: i for i, label in enumerate(grid["activation"])}
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = trial.user_attrs.get("record") or {}
        evaluation = trial.user_attrs.get("evaluation") or {}
        monitored = record.get("monitor") or {}
        int8 = evaluation.get("int8") or {}
        curve = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
        rows.append({
            "activation": trial.params["activation"],
            "seed": trial.params["seed"],
            "alpha": (trial.user_attrs.get("spec") or {}).get("alpha"),
            "trial": trial.number,
            "monitor_last": trial.value,
            "monitor_best": (max(curve) if study.direction.name == "MAXIMIZE" else min(curve)) if curve else None,
            **{k: v for k, v in (evaluation.get("test") or {}).items()},
            "epochs": len(record.get("epoch_seconds") or []) or None,
            "seconds_per_epoch": _mean(record.get("epoch_seconds") or []),
            "val_dead_fraction": monitored.get("monitor/val/dead_fraction"),
            "val_band_fraction": monitored.get("monitor/val/band_fraction"),
            "int8_fp32": int8.get("fp32"),
            "int8": int8.get("int8"),
            "int8_delta": int8.get("delta"),
            "int8_method": int8.get("method"),
            "errors": "; ".join(evaluation[k] for k in ("test_error", "int8_error") if k in evaluation) or None,
            "curve": curve,
            **{name: _curve(record, key) for name, key in CURVES.items()},
        })
        _undefine_non_finite(rows[-1])
    return sorted(rows, key=lambda r: (order.get(r["activation"], len(order)), r["seed"]))


def _undefine_non_finite(row: dict[str, Any]) -> None:
    """Replace a run's NaN or inf values (a diverged run's test loss) by None, named in its ``errors`` column: the
    report shows them as missing instead of refusing to be written."""
    broken = []
    for key, value in row.items():
        if isinstance(value, list):
            if any(non_finite_at(v) for v in value):
                row[key] = [defined(v) if isinstance(v, float) else v for v in value]
                broken.append(key)
        elif isinstance(value, float) and defined(value) is None:
            row[key] = None
            broken.append(key)
    if broken:
        note = f"not finite: {', '.join(broken)}"
        row["errors"] = f"{row['errors']}; {note}" if row.get("errors") else note


def compared_metric(rows: list[dict[str, Any]], monitor: str, requested: str | None) -> str:
    """The metric the statistics compare: the requested one, else the test twin of the monitor (``val/acc`` ->
    ``test/acc``) when every run has it, else the monitored validation metric at the end of the fit."""
    if requested:
        return requested
    twin = "test/" + monitor.split("/", 1)[1] if monitor.startswith("val/") else None
    if twin and rows and all(row.get(twin) is not None for row in rows):
        return twin
    return "monitor_last"


def summary_rows(rows: list[dict[str, Any]], labels: Sequence[str], baseline: str | None,
                 metric: str) -> list[dict[str, Any]]:
    """Per activation: runs, metric mean/std, paired difference to ``baseline`` (CI, p), means of the rest."""
    by_label = {label: [r for r in rows if r["activation"] == label] for label in labels}
    base = {r["seed"]: r[metric] for r in by_label.get(baseline, []) if r.get(metric) is not None}
    summary = []
    for label, runs in by_label.items():
        values = {r["seed"]: r[metric] for r in runs if r.get(metric) is not None}
        mean, std = mean_std(list(values.values()))
        delta_mean, delta_std = mean_std([r["int8_delta"] for r in runs if r["int8_delta"] is not None])
        row = {"activation": label, "runs": len(runs), "mean": defined(mean), "std": defined(std)}
        if baseline is not None and label != baseline:
            paired = paired_difference(values, base)
            row.update({"diff": defined(paired.mean), "ci_low": defined(paired.low), "ci_high": defined(paired.high),
                        "p_value": defined(paired.p_value), "pairs": paired.n, "significant": paired.significant})
        alphas = [r["alpha"] for r in runs if r["alpha"] is not None]
        row.update({
            "alpha": _mean(alphas),
            "seconds_per_epoch": _mean([r["seconds_per_epoch"] for r in runs]),
            "val_dead_fraction": _mean([r["val_dead_fraction"] for r in runs]),
            "val_band_fraction": _mean([r["val_band_fraction"] for r in runs]),
            "int8_delta_mean": defined(delta_mean), "int8_delta_std": defined(delta_std),
            "int8_method": "/".join(sorted({r["int8_method"] for r in runs if r.get("int8_method")})) or None,
        })
        summary.append(row)
    return summary


def _cell(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def to_csv(rows: list[dict[str, Any]], target: str = "the CSV") -> str:
    """CSV of rows (lists as JSON), the union of their keys as header; UserError for a NaN or inf cell."""
    refuse_non_finite(rows, target)
    header = list(dict.fromkeys(key for row in rows for key in row)) or ["activation"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _pm(mean: float | None, std: float | None, scale: float = 1.0) -> str:
    if mean is None:
        return "-"
    if std is None:
        return f"{mean * scale:.2f}"
    return f"{mean * scale:.2f} ± {std * scale:.2f}"


def to_markdown(summary: list[dict[str, Any]], metric: str, baseline: str | None, percent: bool) -> str:
    """The per-activation table, ready to paste into a README (metric in % when ``percent``); UserError for a NaN
    or inf value."""
    refuse_non_finite(summary, "results.md")
    scale = 100.0 if percent else 1.0
    unit = " (%)" if percent else ""
    lines = [f"| activation | runs | {metric}{unit} mean ± std | Δ vs {baseline or '-'} [95% CI] | p | "
             "val dead units | val band | s/epoch | INT8 Δ (pts) |", "|" + "---|" * 9]
    for row in summary:
        if row.get("diff") is not None:
            low, high = row["ci_low"], row["ci_high"]
            ci = "" if low is None or high is None else f" [{low * scale:+.2f}, {high * scale:+.2f}]"
            diff, p = f"{row['diff'] * scale:+.2f}{ci}", _cell(row["p_value"], 2)
        else:
            diff, p = ("baseline" if row["activation"] == baseline else "-"), "-"
        alpha = f" (α≈{row['alpha']:.3g})" if row["activation"].endswith(":auto") and row["alpha"] else ""
        lines.append(
            f"| {row['activation']}{alpha} | {row['runs']} | {_pm(row['mean'], row['std'], scale)} | {diff} | {p} | "
            f"{_cell(row['val_dead_fraction'], 3)} | {_cell(row['val_band_fraction'], 3)} | "
            f"{_cell(row['seconds_per_epoch'], 3)} | {_pm(row['int8_delta_mean'], row['int8_delta_std'], 100.0)} |")
    methods = "/".join(sorted({row["int8_method"] for row in summary if row.get("int8_method")})) or "no"
    lines.append(f"\nΔ: {metric} minus the baseline's over the same seeds; {PAIRED_TEST}. INT8 Δ: validation "
                 f"accuracy of the onnxruntime {methods}-INT8 model (the method helu-train export picks) minus the "
                 "fp32 ONNX model, in points.")
    return "\n".join(lines) + "\n"


def to_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """Aligned plain-text table of ``columns``."""
    cells = [list(columns)] + [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(text.rjust(w) for text, w in zip(line, widths)) for line in cells)
