"""PNG plots of a comparison: per epoch (mean over seeds, band +- std) for each activation the monitored validation
metric, the share of dead units and the share of pre-activations in HeLU's band; and each seed's metric per
activation joined by a line, with the paired differences."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from helu_lightning.owned_files import write_owned

__all__ = ["PLOT_FILES", "write_plots"]

# What write_plots may write into plot_dir.
PLOT_FILES = ("val_curves.png", "dead_units.png", "band.png", "paired.png")


def _save(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return write_owned(path.parent, path.name, buffer.getvalue(), "compare")


def _curves(rows: list[dict[str, Any]], labels: Sequence[str], key: str, ylabel: str, path: Path) -> Path | None:
    """Mean +- std over seeds per epoch of each row's list ``key``; None (no file) when no run has one."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axis = plt.subplots(figsize=(6, 4))
    drawn = False
    for label in labels:
        curves = [r.get(key) for r in rows if r["activation"] == label]
        curves = [c for c in curves if c and all(v is not None for v in c)]
        if not curves:
            continue
        drawn = True
        length = min(len(c) for c in curves)
        values = np.array([c[:length] for c in curves], dtype=float)
        epochs = np.arange(1, length + 1)
        mean, std = values.mean(axis=0), values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(length)
        axis.plot(epochs, mean, marker="o", label=f"{label} (n={len(values)})")
        axis.fill_between(epochs, mean - std, mean + std, alpha=0.2)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.set_ylabel(ylabel)
    axis.set_title(f"{ylabel} per epoch: mean ± std over seeds")
    axis.grid(alpha=0.3)
    if not drawn:
        plt.close(figure)
        return None
    axis.legend(fontsize=8)
    return _save(figure, path)


def _paired(rows: list[dict[str, Any]], summary: list[dict[str, Any]], labels: Sequence[str], metric: str,
            baseline: str | None, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"wspace": 0.3})
    seeds = sorted({r["seed"] for r in rows})
    value = {(r["activation"], r["seed"]): r.get(metric) for r in rows}
    colour: dict[Any, str] = {}  # one colour per seed in both panels
    for seed in seeds:
        points = [(i, value.get((label, seed))) for i, label in enumerate(labels)]
        points = [(i, v) for i, v in points if v is not None]
        (line,) = left.plot([i for i, _ in points], [v for _, v in points], marker="o", alpha=0.6,
                            label=f"seed {seed}")
        colour[seed] = line.get_color()
    left.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    left.set_ylabel(metric)
    left.set_title(f"{metric} per seed (lines join one seed)")
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    others = [row for row in summary if "diff" in row]
    for i, row in enumerate(others):
        paired = [s for s in seeds if value.get((row["activation"], s)) is not None
                  and value.get((baseline, s)) is not None]
        differences = [value[(row["activation"], s)] - value[(baseline, s)] for s in paired]
        right.scatter([i] * len(differences), differences, alpha=0.6, c=[colour[s] for s in paired])
        if row["diff"] is not None and row["ci_low"] is not None and row["ci_high"] is not None:
            error = [[row["diff"] - row["ci_low"]], [row["ci_high"] - row["diff"]]]
            right.errorbar([i + 0.15], [row["diff"]], yerr=error, fmt="s", color="black", capsize=4)
    right.axhline(0.0, color="grey", linewidth=1)
    right.set_xlim(-0.5, max(len(others), 1) - 0.5)
    right.set_xticks(range(len(others)), [row["activation"] for row in others], rotation=30, ha="right")
    right.set_ylabel(f"{metric} − {baseline}")
    right.set_title("paired differences (dots) and mean with 95% CI")
    right.grid(alpha=0.3)
    return _save(figure, path)


def write_plots(rows: list[dict[str, Any]], summary: list[dict[str, Any]], labels: Sequence[str], monitor: str,
                metric: str, baseline: str | None, plot_dir: Path) -> list[Path]:
    """``val_curves.png``, ``dead_units.png`` and ``band.png`` (when the ActivationMonitor measured them) and
    ``paired.png`` (needs a baseline) under ``plot_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    curves = [("curve", monitor, "val_curves.png"), ("dead_curve", "validation dead-unit fraction", "dead_units.png"),
              ("band_curve", "validation band fraction (-alpha < x <= 0)", "band.png")]
    written = [p for key, ylabel, name in curves if (p := _curves(rows, labels, key, ylabel, plot_dir / name))]
    if baseline is not None and rows:
        written.append(_paired(rows, summary, labels, metric, baseline, plot_dir / "paired.png"))
    return written
