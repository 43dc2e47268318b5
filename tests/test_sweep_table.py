"""benchmarks/sweep_table.py: one row per study from each report.json, cells computed by hand; a study without an
activation shows '-', and a folder without a finished report is refused."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_table.py"


def _module():
    spec = importlib.util.spec_from_file_location("sweep_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_a_folder_without_a_report_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="holds no report.json: pass a finished helu-train compare"):
        _module().main([str(tmp_path)])
