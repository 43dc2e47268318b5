"""benchmarks/study_times.py: a study's wall time runs from the first finished run's start to the last one's end,
and the summed run time counts only finished runs (two workers overlap, so it can exceed the wall time)."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import pytest
from benchmark_scripts import load


def _module():
    return load("study_times")


def _trial(start: datetime, minutes: float | None, state: optuna.trial.TrialState) -> optuna.trial.FrozenTrial:
    return optuna.trial.FrozenTrial(
        number=0, trial_id=0, state=state, values=None,
        value=0.5 if state == optuna.trial.TrialState.COMPLETE else None,
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
    with pytest.raises(SystemExit, match="study.db does not exist; pass a helu-train compare --output_dir folder"):
        _module().main([str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def _foreign(folder: Path) -> None:
    folder.mkdir()
    connection = sqlite3.connect(folder / "study.db")
    connection.execute("CREATE TABLE notes (x)")
    connection.commit()
    connection.close()


@pytest.mark.parametrize(("make", "message"), [
    (_foreign, "is not an Optuna study database"),
    (lambda f: (f.mkdir(), (f / "study.db").write_bytes(b"")), "is not an Optuna study database"),
    (lambda f: (f.mkdir(), (f / "study.db").write_text("{}")), "cannot be read as an SQLite database"),
    (lambda f: (f.mkdir(), os.mkfifo(f / "study.db")), "is not a regular file: it is a pipe"),
    (lambda f: (f.mkdir(), (f / "study.db").mkdir()), "is not a regular file: it is a folder"),
    (lambda f: (_foreign(f.parent / "elsewhere"), f.mkdir(), (f / "study.db").symlink_to(f.parent / "elsewhere" /
                                                                                          "study.db")),
     "is not an Optuna study database"),
    (lambda f: (f.mkdir(), sqlite3.connect(f / "study.db").execute("CREATE TABLE studies (a)").connection.commit()),
     "cannot be read by Optuna .*no such column"),
    (lambda f: (f.mkdir(), optuna.create_study(study_name="other", storage=f"sqlite:///{f / 'study.db'}")),
     "holds no study named 'helu-compare'; pass --study_name with one of: other"),
])
def test_a_file_that_is_no_compare_study_is_refused_in_one_line_and_left_unchanged(
        tmp_path: Path, make: Any, message: str) -> None:
    """SQLite creates and Optuna migrates tables on connect: the script must read a copy, never the file."""
    make(tmp_path / "study")
    before = {p: (p.read_bytes() if p.is_file() and not p.is_symlink() else None) for p in tmp_path.rglob("*")}
    with pytest.raises(SystemExit, match=message) as raised:
        _module().main([str(tmp_path / "study")])
    assert "\n" not in str(raised.value)
    assert {p: (p.read_bytes() if p.is_file() and not p.is_symlink() else None) for p in tmp_path.rglob("*")} == before


def test_a_wal_mode_study_is_read_without_creating_its_wal_and_shm_files(tmp_path: Path) -> None:
    optuna.create_study(study_name="helu-compare", storage=f"sqlite:///{tmp_path / 'study.db'}")
    connection = sqlite3.connect(tmp_path / "study.db")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    assert _module().study_time(tmp_path)["runs"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["study.db"]


def test_runs_without_start_or_end_time_are_left_out_with_a_note(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """Optuna refuses such trials, but a study.db edited by hand (or by another program) can hold them."""
    study = optuna.create_study(study_name="helu-compare", storage=f"sqlite:///{tmp_path / 'study.db'}")
    t0 = datetime(2026, 1, 1, 12, 0)
    for minutes in (10, 20, 30):
        study.add_trial(_trial(t0, minutes, optuna.trial.TrialState.COMPLETE))
    connection = sqlite3.connect(tmp_path / "study.db")
    connection.execute("UPDATE trials SET datetime_start = NULL WHERE number = 1")
    connection.execute("UPDATE trials SET datetime_complete = NULL WHERE number = 2")
    connection.commit()
    connection.close()
    assert _module().study_time(tmp_path) == {"runs": 1, "wall": 10 * 60.0, "summed": 10 * 60.0}
    assert "2 completed runs of" in capsys.readouterr().err
