"""benchmarks/study_times.py: a study's wall time runs from the first finished run's start to the last one's end,
and the summed run time counts only finished runs (two workers overlap, so it can exceed the wall time)."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "study_times.py"


def _module():
    spec = importlib.util.spec_from_file_location("study_times", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trial(start: datetime, minutes: float | None, state: optuna.trial.TrialState) -> optuna.trial.FrozenTrial:
    return optuna.trial.FrozenTrial(
        number=0, trial_id=0, state=state, value=0.5 if state == optuna.trial.TrialState.COMPLETE else None, values=None,
        datetime_start=start, datetime_complete=start + timedelta(minutes=minutes) if minutes is not None else None,
        params={}, distributions={}, user_attrs={}, system_attrs={}, intermediate_values={})


def test_wall_and_summed_time_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study = optuna.create_study(study_name="helu-compare", storage=f"sqlite:///{tmp_path / 'study.db'}")
    t0 = datetime(2026, 1, 1, 12, 0)
    complete, failed = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
    # two workers: runs of 10 and 6 minutes overlap, a third starts at minute 12 and takes 3; a failed run is ignored
    study.add_trial(_trial(t0, 10, complete))
    study.add_trial(_trial(t0 + timedelta(minutes=1), 6, complete))
    study.add_trial(_trial(t0 + timedelta(minutes=12), 3, complete))
    study.add_trial(_trial(t0 - timedelta(minutes=30), 60, failed))
    module = _module()
    times = module.study_time(tmp_path)
    assert times == {"runs": 3, "wall": 15 * 60.0, "summed": 19 * 60.0}
    module.main([str(tmp_path)])
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == f"| {tmp_path.name} | 3 | 15.0 min | 19.0 min | 380 s |"


def test_a_study_without_finished_runs_reports_zero(tmp_path: Path) -> None:
    optuna.create_study(study_name="helu-compare", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert _module().study_time(tmp_path) == {"runs": 0, "wall": 0.0, "summed": 0.0}


def test_a_folder_without_a_study_is_refused_and_left_alone(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="holds no study.db: pass a helu-train compare --output_dir folder"):
        _module().main([str(tmp_path)])
    assert list(tmp_path.iterdir()) == []
