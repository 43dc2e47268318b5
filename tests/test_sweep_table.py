"""benchmarks/sweep_table.py: one row per study from each report.json, cells computed by hand; a study without an
activation shows '-', and a folder without a finished report is refused."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from benchmark_scripts import load


def _module():
    return load("sweep_table")


def _report(folder: Path, summary: list[dict]) -> Path:
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"metric": "test/acc", "baseline": "relu", "summary": summary}))
    return folder


def test_cells_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _report(tmp_path / "a", [
        {"activation": "relu", "runs": 5, "mean": 0.1163, "std": 0.0484, "val_dead_fraction": 0.3},
        {"activation": "helu:0.2", "runs": 5, "mean": 0.5763, "std": 0.0783, "diff": 0.46, "ci_low": 0.3109,
         "ci_high": 0.6091, "p_value": 0.00104, "val_dead_fraction": 0.0617}])
    b = _report(tmp_path / "b", [
        {"activation": "relu", "runs": 1, "mean": 0.9, "std": math.nan, "val_dead_fraction": None}])
    _module().main([f"digits, depth 8={a}", str(b)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "test/acc (%), mean ± std over seeds:"
    assert lines[2] == "| study | relu | helu:0.2 |"
    assert lines[4] == "| digits, depth 8 | 11.6 ± 4.8 | 57.6 ± 7.8 |"
    assert lines[5] == "| b | 90.0 | - |"
    assert "| digits, depth 8 | baseline | +46.0 [+31.1, +60.9], p 0.001 |" in lines
    assert "| digits, depth 8 | 0.30 | 0.06 |" in lines and "| b | - | - |" in lines


def test_a_difference_without_spread_has_no_interval_or_test(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Every seed gave the same difference (at depth 12 every arm predicts the same class): compare stores the
    # value as a zero-width interval with p 1 (0 when non-zero); the table says so instead of a t-test's p.
    a = _report(tmp_path / "a", [
        {"activation": "relu", "runs": 5, "mean": 0.0874, "std": 0.0081},
        {"activation": "helu:0.2", "runs": 5, "mean": 0.0874, "std": 0.0081, "diff": 0.0, "ci_low": 0.0,
         "ci_high": 0.0, "p_value": 1.0},
        {"activation": "gelu", "runs": 5, "mean": 0.0974, "std": 0.0081, "diff": 0.01, "ci_low": 0.01,
         "ci_high": 0.01, "p_value": 0.0}])
    _module().main([f"d12={a}"])
    assert "| d12 | baseline | +0.0 in every seed | +1.0 in every seed |" in capsys.readouterr().out.splitlines()


def test_a_folder_without_a_report_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="report.json does not exist; pass a finished helu-train compare"):
        _module().main([str(tmp_path)])


def _raw(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / "report.json").write_text(text)
    return folder


@pytest.mark.parametrize(("text", "message"), [
    ("nope", "report.json is not JSON \\(line 1: Expecting value\\)"),
    ("[1, 2]", "report.json is not a helu-train compare report"),
    ('{"metric": "test/acc"}', "report.json is not a helu-train compare report"),
    ('{"summary": []}', "report.json is not a helu-train compare report"),
    ('{"metric": "m", "summary": [1]}', "report.json is not a helu-train compare report"),
    ('{"metric": "m", "summary": [{"mean": 0.5}]}', "report.json is not a helu-train compare report"),
    ('{"metric": "m", "summary": [{"activation": "relu", "mean": "0.5"}]}', "mean of relu is '0.5', not a number"),
    ('{"metric": "m", "summary": [{"activation": "relu", "runs": true}]}', "runs of relu is True, not a number"),
])
def test_a_report_that_is_not_a_compare_report_is_refused_in_one_line(tmp_path: Path, text: str,
                                                                      message: str) -> None:
    with pytest.raises(SystemExit, match=message) as raised:
        _module().main([str(_raw(tmp_path / "a", text))])
    assert "\n" not in str(raised.value) and "pass a finished helu-train compare" in str(raised.value)


def test_a_pipe_or_device_in_place_of_the_report_is_refused_without_reading_it(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    os.mkfifo(tmp_path / "a" / "report.json")
    with pytest.raises(SystemExit, match="report.json is not a regular file: it is a pipe"):
        _module().main([str(tmp_path / "a")])


def test_missing_nan_and_infinite_numbers_show_as_dashes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An activation without finished runs has a NaN mean; a single run has a NaN spread and interval."""
    a = _report(tmp_path / "a", [
        {"activation": "relu", "runs": 0, "mean": math.nan, "std": math.nan, "val_dead_fraction": None},
        {"activation": "gelu", "runs": 1, "mean": 0.5, "std": math.inf, "diff": math.nan, "ci_low": None,
         "ci_high": None, "p_value": math.nan, "val_dead_fraction": math.nan},
        {"activation": "helu:0.05", "runs": 3, "mean": 0.6, "std": 0.01, "diff": 0.1, "ci_low": 0.05,
         "ci_high": 0.15, "p_value": math.nan}])
    _module().main([str(a), "--partial"])
    lines = capsys.readouterr().out.splitlines()
    assert "| a | - (n=0) | 50.0 (n=1) | 60.0 ± 1.0 |" in lines
    assert "| a | baseline | - | +10.0 [+5.0, +15.0] |" in lines
    assert "| a | - | - | - |" in lines
    assert "nan" not in "\n".join(lines) and "inf" not in "\n".join(lines)


def test_a_folder_name_with_an_equals_sign(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _report(tmp_path / "lr=0.5", [{"activation": "relu", "runs": 1, "mean": 0.9, "std": math.nan}])
    label = _report(tmp_path / "x", [{"activation": "relu", "runs": 1, "mean": 0.8, "std": math.nan}])
    _module().main([str(folder), f"alpha=0.05, lr=0.5={folder}", f"a=b={label}"])
    lines = capsys.readouterr().out.splitlines()
    assert "| lr=0.5 | 90.0 |" in lines and "| alpha=0.05, lr=0.5 | 90.0 |" in lines and "| a=b | 80.0 |" in lines


def test_studies_of_different_metrics_are_not_mixed_in_one_table(tmp_path: Path) -> None:
    a = _report(tmp_path / "a", [{"activation": "relu", "runs": 1, "mean": 0.9}])
    b = _raw(tmp_path / "b", json.dumps({"metric": "monitor_last", "baseline": "relu",
                                         "summary": [{"activation": "relu", "runs": 1, "mean": 0.3}]}))
    with pytest.raises(SystemExit, match="the studies differ in their metric"):
        _module().main([str(a), str(b)])


def test_an_unfinished_study_is_refused_unless_partial_and_then_marked(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """compare writes report.json when its worker is done, while another worker may still be running a trial."""
    a = _report(tmp_path / "a", [
        {"activation": "relu", "runs": 5, "mean": 0.5, "std": 0.1},
        {"activation": "gelu", "runs": 4, "mean": 0.6, "std": 0.1, "diff": 0.1},
        {"activation": "helu:0.05", "runs": 0, "mean": math.nan, "std": math.nan}])
    with pytest.raises(SystemExit, match="a is unfinished or lost runs: gelu has 4, helu:0.05 has 0 of 5; let "
                                         "helu-train compare finish there"):
        _module().main([str(a)])
    _module().main([str(a), "--partial"])
    assert "| a | 50.0 ± 10.0 | 60.0 ± 10.0 (n=4) | - (n=0) |" in capsys.readouterr().out.splitlines()


def test_an_empty_folder_after_the_label_and_a_bad_scale_are_refused(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """'depth 8=' would otherwise read report.json of the working directory."""
    with pytest.raises(SystemExit, match="'depth 8=' names no folder after '='; pass LABEL=FOLDER"):
        _module().main(["depth 8="])
    for scale in ("nan", "inf", "0", "x"):
        with pytest.raises(SystemExit):
            _module().main([str(tmp_path), "--scale", scale])
        assert "is not a finite non-zero number; pass e.g. --scale 100" in capsys.readouterr().err
