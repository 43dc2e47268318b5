"""benchmarks/pair_studies.py: study B minus study A seed by seed, for the same activation or (--against) for one
activation of A, with the paired t interval and p value checked against scipy by hand."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import optuna
import pytest
from benchmark_scripts import load
from scipy import stats


def _module():
    return load("pair_studies")


def _study(folder: Path, accuracies: dict[str, list[float]]) -> Path:
    """A compare-shaped study: one completed trial per (activation, seed) with its test/acc."""
    folder.mkdir()
    study = optuna.create_study(study_name="helu-compare", storage=f"sqlite:///{folder / 'study.db'}",
                                direction="maximize")
    study.set_user_attr("grid", {"activation": list(accuracies), "seed": list(range(3))})
    dist = {"activation": optuna.distributions.CategoricalDistribution(list(accuracies)),
            "seed": optuna.distributions.CategoricalDistribution([0, 1, 2])}
    for label, values in accuracies.items():
        for seed, value in enumerate(values):
            study.add_trial(optuna.trial.create_trial(
                params={"activation": label, "seed": seed}, distributions=dist,
                value=value if isinstance(value, float) and math.isfinite(value) else 0.0,
                user_attrs={"evaluation": {"test": {"test/acc": value}}}))
    return folder


def _row(out: str, label: str) -> list[str]:
    row = next(line for line in out.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in row.split("|")[1:-1]]


def _expected(b: list[float], a: list[float]) -> tuple[str, str]:
    diff = [100 * (x - y) for x, y in zip(b, a)]
    mean = sum(diff) / 3
    half = stats.t.ppf(0.975, 2) * stats.tstd(diff) / 3 ** 0.5
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]", f"{stats.ttest_rel(b, a).pvalue:.2g}"


def test_same_activation_across_two_studies(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _study(tmp_path / "a", {"relu": [0.80, 0.70, 0.75], "gelu": [0.90, 0.91, 0.92]})
    b = _study(tmp_path / "b", {"relu": [0.82, 0.73, 0.76], "helu:0.05": [0.5, 0.5, 0.5]})
    _module().main([str(a), str(b)])
    out = capsys.readouterr().out
    row = _row(out, "relu")
    assert row[1:4] == ["3", "75.00", "77.00"] and (row[4], row[5]) == _expected([0.82, 0.73, 0.76], [0.80, 0.70, 0.75])
    assert "| gelu |" not in out and "| helu:0.05 |" not in out  # only activations both studies ran


def test_against_one_activation_within_and_across_studies(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _study(tmp_path / "a", {"relu": [0.80, 0.70, 0.75], "gelu": [0.90, 0.91, 0.92]})
    b = _study(tmp_path / "b", {"relu": [0.82, 0.73, 0.76], "helu:0.05": [0.85, 0.86, 0.80]})
    module = _module()
    module.main([str(a), str(a), "--against", "gelu"])
    out = capsys.readouterr().out
    assert "| gelu |" not in out  # not paired with itself
    assert _row(out, "relu")[4:] == list(_expected([0.80, 0.70, 0.75], [0.90, 0.91, 0.92]))
    module.main([str(a), str(b), "--against", "gelu"])
    out = capsys.readouterr().out
    assert _row(out, "helu:0.05")[1:4] == ["3", "91.00", "83.67"]
    assert _row(out, "helu:0.05")[4:] == list(_expected([0.85, 0.86, 0.80], [0.90, 0.91, 0.92]))
    with pytest.raises(SystemExit, match="--against 'silu' is not an activation of study A; it has: relu, gelu"):
        module.main([str(a), str(b), "--against", "silu"])


def test_a_folder_without_a_study_is_refused_and_left_alone(tmp_path: Path) -> None:
    a = _study(tmp_path / "a", {"relu": [0.80, 0.70, 0.75]})
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="empty/study.db does not exist; pass a helu-train compare"):
        _module().main([str(a), str(tmp_path / "empty")])
    assert list((tmp_path / "empty").iterdir()) == []


def test_an_sqlite_file_of_another_program_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """Optuna creates its tables in any database it connects to: the script reads a copy."""
    a = _study(tmp_path / "a", {"relu": [0.80, 0.70, 0.75]})
    (tmp_path / "other").mkdir()
    connection = sqlite3.connect(tmp_path / "other" / "study.db")
    connection.execute("CREATE TABLE notes (x)")
    connection.commit()
    connection.close()
    before = (tmp_path / "other" / "study.db").read_bytes()
    with pytest.raises(SystemExit, match="other/study.db is not an Optuna study database"):
        _module().main([str(a), str(tmp_path / "other")])
    assert (tmp_path / "other" / "study.db").read_bytes() == before
    with pytest.raises(SystemExit, match="holds no study named 'nope'; pass --study_name with one of: helu-compare"):
        _module().main([str(a), str(a), "--study_name", "nope"])


def test_no_shared_seed_non_finite_and_non_numeric_values(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _study(tmp_path / "a", {"relu": [0.80, 0.70, 0.75]})
    b = _study(tmp_path / "b", {"relu": [float("nan"), 0.72, 0.77]})
    module = _module()
    module.main([str(a), str(b)])
    assert _row(capsys.readouterr().out, "relu")[1:4] == ["2", "72.50", "74.50"]  # the NaN run is no result
    c = _study(tmp_path / "c", {"relu": [float("nan"), float("nan"), float("nan")], "gelu": [0.9, 0.9, 0.9]})
    module.main([str(a), str(c)])
    assert _row(capsys.readouterr().out, "relu")[1:5] == ["0", "-", "-", "- (no seed in both)"]
    d = _study(tmp_path / "d", {"relu": ["0.8", 0.7, 0.75]})
    with pytest.raises(SystemExit, match="d/study.db: run 0 has test/acc = '0.8', not a number"):
        module.main([str(a), str(d)])
    with pytest.raises(SystemExit, match="no completed run of .*a has a finite test/f1; pass --metric with one of: "
                                         "monitor_last, test/acc"):
        module.main([str(a), str(a), "--metric", "test/f1"])
