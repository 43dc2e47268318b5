"""A study keeps its meaning: search and compare share one direction rule, a re-run with another configuration or
budget is refused naming what differs, an output folder's name never changes the storage URL, and a trial left
RUNNING by a dead worker is recovered whatever process id the new worker has (and by the heartbeat on RDB storages).

Tiny budgets: one or two trials of one or two short epochs on the digits."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.engine
from optuna.trial import TrialState

from helu_lightning.compare import build_parser as compare_parser
from helu_lightning.compare import run as compare_run
from helu_lightning.errors import UserError
from helu_lightning.search import main as search_main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "offline.yaml"
FAST = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1"]
WEIRD = "we?ird #dir %41 x"  # each of ?, #, % and space would change a URL built by pasting the path in
ALPHA = {"alpha": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
optuna.logging.set_verbosity(optuna.logging.WARNING)


def helu_train(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HELU_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "helu_lightning", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def error_line(done: subprocess.CompletedProcess, command: str) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    return next(line for line in done.stderr.splitlines() if line.startswith(f"helu-train {command}: error: "))


def search_argv(out: Path, *extra: str, n_trials: int = 1) -> list[str]:
    return ["--config", str(CONFIG), "--output_dir", str(out), "--n_trials", str(n_trials), "--study_name", "t",
            "--pruner", "none", "--no_calibration", *FAST, *extra]


def compare_argv(out: Path, *extra: str) -> list[str]:
    return ["--config", str(CONFIG), "--output_dir", str(out), "--study_name", "t", "--seeds", "2",
            "--activations", "relu", "helu:0.05", "--no_test", "--no_int8", *FAST, *extra]


def sqlite_study(out: Path) -> optuna.Study:
    """The study in ``out/study.db``, opened through a URL that SQLAlchemy builds from the path itself."""
    url = sqlalchemy.engine.URL.create("sqlite", database=str(out / "study.db")).render_as_string()
    return optuna.load_study(study_name="t", storage=url)


# --- search: the output folder's name, and a re-run with another configuration ------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("command", ["search", "compare"])
def test_an_output_folder_named_like_a_url_holds_its_own_study(tmp_path, command):
    out = tmp_path / WEIRD
    if command == "search":
        done = helu_train("search", *search_argv(out))
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        compare_run(compare_parser().parse_args(compare_argv(out, "--seeds", "1", "--baseline", "none")))
    assert (out / "study.db").is_file() and sorted(p.name for p in tmp_path.iterdir()) == [WEIRD]
    assert {t.state for t in sqlite_study(out).trials} == {TrialState.COMPLETE}


@pytest.mark.slow
def test_search_rerun_with_another_configuration_or_budget_is_refused_naming_the_keys(tmp_path):
    out = tmp_path / "search"
    first = helu_train("search", *search_argv(out))
    assert first.returncode == 0, first.stderr[-3000:]
    assert [t.state for t in sqlite_study(out).trials] == [TrialState.COMPLETE]

    again = helu_train("search", *search_argv(out, "--trainer.max_epochs", "2"))  # the same, spelled otherwise
    assert again.returncode == 0, again.stderr[-3000:]

    budget = helu_train("search", *search_argv(out, "--trainer.max_epochs=3", n_trials=2))
    message = error_line(budget, "search")
    assert "trainer.max_epochs: 2 there, 3 now" in message and "study.db" in message and "--output_dir" in message

    cases = {
        ("--model.init_args.optimizer.init_args.lr=0.1",): "model.init_args.optimizer.init_args.lr: 0.05 there, 0.1",
        ("--data.init_args.batch_size=32",): "data.init_args.batch_size: 64 there, 32 now",
        ("--space", str(ROOT / "configs" / "search" / "alpha_lr_schedule.yaml")): "space",
        ("--monitor", "val/loss", "--direction", "minimize"): "val/",
    }
    for extra, words in cases.items():
        with pytest.raises(UserError, match="another configuration|created to maximize") as refused:
            search_main(search_argv(out, *extra, n_trials=2))
        assert words in str(refused.value), str(refused.value)
    assert len(sqlite_study(out).trials) == 1  # nothing ran into the old study


# --- compare: the direction, the folder name, a re-run with another budget ---------------------------------------

@pytest.mark.slow
def test_compare_of_a_loss_reports_its_lowest_value_and_keeps_its_study(tmp_path):
    out = tmp_path / "compare"
    done = helu_train("compare", *compare_argv(out, "--monitor", "val/loss"))
    assert done.returncode == 0, done.stderr[-3000:]
    study = sqlite_study(out)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    rows = json.loads((out / "report.json").read_text())["runs"]
    assert len(rows) == 4 and all(len(row["curve"]) == 2 for row in rows)
    assert any(row["curve"][0] != row["curve"][1] for row in rows)
    for row in rows:
        assert row["monitor_best"] == pytest.approx(min(row["curve"])), row

    with pytest.raises(UserError, match=r"--direction maximize contradicts --monitor 'val/loss'"):
        compare_run(compare_parser().parse_args(compare_argv(out, "--monitor", "val/loss", "--direction", "maximize")))
    with pytest.raises(UserError, match=r"made to minimize its metric, not to maximize"):
        compare_run(compare_parser().parse_args(compare_argv(out, "--monitor", "val/loss", "--direction", "maximize",
                                                             "--force_direction")))
    with pytest.raises(UserError, match=r"trainer\.max_epochs: 2 there, 3 now"):
        compare_run(compare_parser().parse_args(compare_argv(out, "--monitor", "val/loss", "--trainer.max_epochs=3")))
    with pytest.raises(UserError, match=r'test: false there, true now.*--output_dir'):
        compare_run(compare_parser().parse_args([a for a in compare_argv(out, "--monitor", "val/loss")
                                                 if a != "--no_test"]))
    assert len(sqlite_study(out).trials) == 4
    compare_run(compare_parser().parse_args(compare_argv(out, "--monitor", "val/loss")))  # same: resumes, no run
    assert len(sqlite_study(out).trials) == 4


@pytest.mark.slow
def test_compare_rerun_with_another_budget_is_refused_naming_the_key(tmp_path, one_thread):
    out = tmp_path / "compare"
    single = ("--seeds", "1", "--baseline", "none")
    compare_run(compare_parser().parse_args(compare_argv(out, *single)))
    with pytest.raises(UserError, match=r"trainer\.limit_train_batches: 2 there, 3 now.*--output_dir"):
        compare_run(compare_parser().parse_args(compare_argv(out, *single, "--trainer.limit_train_batches=3")))
    with pytest.raises(UserError, match=r"model\.init_args\.optimizer\.init_args\.lr: 0\.05 there, 0\.2 now"):
        compare_run(compare_parser().parse_args(compare_argv(out, *single,
                                                             "--model.init_args.optimizer.init_args.lr=0.2")))
    assert len(sqlite_study(out).trials) == 2


def test_compare_and_search_infer_the_same_direction():
    from helu_lightning.search import infer_direction

    for monitor in ("val/loss", "val/acc", "val/mcc", "val/error_rate", "val/f1"):
        args = compare_parser().parse_args(compare_argv(Path("x"), "--monitor", monitor))
        assert args.direction is None  # no fixed default: the metric's name decides, as for search
        assert infer_direction(monitor) in ("minimize", "maximize")


# --- a trial of a dead worker is recovered --------------------------------------------------------------------------

def _plant_running_trial(study: optuna.Study, worker: dict) -> optuna.Trial:
    """A RUNNING trial as a worker records it before it dies mid-fit."""
    trial = study.ask(ALPHA)
    trial.set_user_attr("worker", {"trial": trial.number, **worker})
    return trial


def _journal(tmp_path: Path) -> tuple[str, optuna.storages.JournalStorage]:
    path = tmp_path / "study.log"
    return f"journal://{path}", optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


@pytest.mark.slow
@pytest.mark.parametrize("dead_pid", ["the new worker's own", "a live unrelated process's"])
def test_a_dead_workers_trial_is_retried_whatever_pid_the_new_worker_has(tmp_path, dead_pid, one_thread):
    out = tmp_path / "search"
    url, storage = _journal(tmp_path)
    search_main(search_argv(out, "--storage", url))
    # The dead worker ran on this host with a process id that is now reused: by this very process (containers give
    # every worker the same small pid) or by another live process; only its start time tells them apart.
    pid = os.getpid() if dead_pid == "the new worker's own" else os.getppid()
    study = optuna.load_study(study_name="t", storage=storage)
    number = _plant_running_trial(study, {"host": socket.gethostname(), "pid": pid, "started": 1}).number
    search_main(search_argv(out, "--storage", url, n_trials=2))
    trials = optuna.load_study(study_name="t", storage=storage).trials
    assert trials[number].state == TrialState.FAIL
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == number)
    assert retry.state == TrialState.COMPLETE and retry.params == trials[number].params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2


@pytest.mark.slow
def test_a_silent_trial_of_another_host_is_retried_by_the_heartbeat(tmp_path, one_thread):
    out = tmp_path / "search"
    beat = ["--heartbeat_interval", "1", "--grace_period", "1"]
    search_main(search_argv(out, *beat))
    study = optuna.load_study(study_name="t", storage=optuna.storages.RDBStorage(
        sqlalchemy.engine.URL.create("sqlite", database=str(out / "study.db")).render_as_string(),
        heartbeat_interval=1, grace_period=1))
    trial = _plant_running_trial(study, {"host": "another-node", "pid": 4242, "started": 7})
    study._storage.record_heartbeat(trial._trial_id)  # its last sign of life; then the node went silent
    number = trial.number
    time.sleep(2.5)
    search_main(search_argv(out, *beat, n_trials=2))
    trials = sqlite_study(out).trials
    assert trials[number].state == TrialState.FAIL
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == number)
    assert retry.state == TrialState.COMPLETE and retry.params == trials[number].params


# --- quick checks of the pieces (no training) -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a?b=1", "c#d", "e%41f", "g h", "%2e%2e", "?#% x"])
def test_the_default_storage_of_any_folder_name_is_a_file_in_that_folder(tmp_path, name):
    from helu_lightning.search import SearchOptions, make_storage

    options = SearchOptions(configs=(str(CONFIG),), output_dir=tmp_path / name)
    optuna.create_study(storage=make_storage(options.storage_url), study_name="t")
    assert (tmp_path / name / "study.db").is_file() and sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_differences_name_changed_added_and_removed_keys():
    from helu_lightning.search.fingerprint import differences

    old = {"trainer": {"max_epochs": 2, "devices": 1}, "space": [{"name": "alpha"}]}
    new = {"trainer": {"max_epochs": 3, "precision": "16"}, "space": [{"name": "alpha"}]}
    assert differences(old, new) == ["trainer.devices: 1 there, absent now", "trainer.max_epochs: 2 there, 3 now",
                                     'trainer.precision: absent there, "16" now']
    assert differences(old, old) == []
