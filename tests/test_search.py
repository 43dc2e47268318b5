"""helu-train search: space parsing, config merging, storages, resume after SIGKILL, parallel workers
(JournalFileBackend and a real PostgreSQL server), pruning, and the outputs (best.yaml fits as is)."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from pg_server import INSTALL_HINT, find_binaries, postgres_server

from helu_lightning.activations import HeLU
from helu_lightning.cli import cli
from helu_lightning.search import (
    KNOWN_PARAMS,
    Objective,
    SearchOptions,
    SearchSetupError,
    apply_params,
    build_parser,
    calibrated_alpha,
    compose_configs,
    fail_dead_local_trials,
    infer_direction,
    load_space,
    logs_into,
    main,
    make_storage,
    options_from_args,
    run,
    run_search,
    trials_counted,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "offline.yaml"
# Two short epochs of 4 batches: a trial takes about a second on one core.
FAST = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=2"]
optuna.logging.set_verbosity(optuna.logging.WARNING)




def search_argv(out: Path, *extra: str, storage: str | None = None, n_trials: int = 6) -> list[str]:
    argv = ["--config", str(CONFIG), "--output_dir", str(out), "--n_trials", str(n_trials), "--study_name", "t"]
    argv += ["--storage", storage] if storage else []
    return argv + FAST + list(extra)  # extra after FAST: a later --trainer.max_epochs wins


def worker(out: Path, *extra: str, storage: str | None = None, n_trials: int = 6) -> subprocess.Popen:
    """A `helu-train search` worker process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    argv = search_argv(out, *extra, storage=storage, n_trials=n_trials)
    cmd = [sys.executable, "-m", "helu_lightning", "search", *argv]
    log = open(out.parent / f"{out.name}-{time.monotonic_ns()}.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = Path(log.name)  # proc.stdout is None: output goes to the file, which failure messages show
    return proc


def wait_all(procs: list[subprocess.Popen], timeout: float = 150) -> None:
    for proc in procs:
        assert proc.wait(timeout=timeout) == 0, proc.log.read_text()[-3000:]


# --- space, config merge, storage, errors -------------------------------------------------------------------------


def test_default_space_is_alpha_log_uniform():
    (alpha,) = load_space(None)
    assert (alpha.name, alpha.low, alpha.high, alpha.log) == ("alpha", 1e-4, 1.0, True)
    assert alpha.target == "model.init_args.activation.alpha"


def test_space_file_and_errors(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        "alpha: {low: 0.001, high: 0.5}\nlr: {}\n"
        "momentum: {target: model.init_args.optimizer.init_args.momentum, low: 0.8, high: 0.99}\n"
    )
    alpha, lr, momentum = load_space(space)
    assert (alpha.low, alpha.high, alpha.log) == (0.001, 0.5, True)
    assert lr.target == KNOWN_PARAMS["lr"]["target"]
    assert (momentum.log, momentum.high) == (False, 0.99)
    with pytest.raises(ValueError, match=r"unknown search parameter 'alhpa'.*alpha, lr, weight_decay"):
        load_space({"alhpa": {}})
    with pytest.raises(ValueError, match=r"'alpha': unknown keys \['hgh'\]"):
        load_space({"alpha": {"hgh": 1}})
    with pytest.raises(ValueError, match="needs low < high"):
        load_space({"alpha": {"low": 1.0, "high": 0.1}})
    with pytest.raises(SearchSetupError, match="nope.yaml"):
        load_space(tmp_path / "nope.yaml")


def test_apply_params_writes_each_target():
    config = {"model": {"init_args": {"activation": "helu", "optimizer": {"init_args": {"lr": 0.1}}}}}
    params = load_space({"alpha": {}, "lr": {}, "schedule": {}})
    merged = apply_params(config, params, {"alpha": 0.2, "lr": 0.003, "schedule": "cosine"})
    args = merged["model"]["init_args"]
    assert args["activation"] == {"name": "helu", "alpha": 0.2}
    assert args["optimizer"]["init_args"]["lr"] == 0.003
    (scheduler,) = merged["trainer"]["callbacks"]
    assert scheduler["init_args"]["schedule"] == {"name": "cosine", "start": 0.2, "end": pytest.approx(0.02)}
    assert config["model"]["init_args"]["activation"] == "helu"  # the input is left alone
    assert "trainer" not in apply_params(config, params, {"alpha": 0.2, "schedule": "constant"})


@pytest.mark.parametrize("space_file", sorted((ROOT / "configs" / "search").glob("*.yaml")), ids=lambda p: p.stem)
def test_example_spaces_build_the_offline_config(space_file, tmp_path):
    from helu_lightning.callbacks import AlphaScheduler

    params = load_space(space_file)
    values = {p.name: p.choices[-1] if p.type == "categorical" else p.low for p in params}
    merged = tmp_path / "merged.yaml"
    merged.write_text(yaml.safe_dump(apply_params(yaml.safe_load(CONFIG.read_text()), params, values)))
    built = cli(["--config", str(merged), f"--trainer.default_root_dir={tmp_path}"], run=False)
    alphas = {float(m.alpha) for m in built.model.modules() if isinstance(m, HeLU)}
    assert sorted(alphas) == pytest.approx([values["alpha"]], rel=1e-6)
    optimizer = built.model.configure_optimizers()["optimizer"]
    for name in ("lr", "weight_decay", "momentum"):
        if name in values:
            assert optimizer.param_groups[0][name] == pytest.approx(values[name])
    schedulers = [c for c in built.trainer.callbacks if isinstance(c, AlphaScheduler)]
    assert len(schedulers) == (values.get("schedule") in ("linear", "cosine"))


def test_explicit_loggers_log_into_the_trial_directory(tmp_path):
    csv_logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs", "name": "x"}}
    wandb_like = {"class_path": "my.Logger", "init_args": {"project": "p"}}
    config = {"trainer": {"logger": [csv_logger, wandb_like]}}
    loggers = logs_into(config, tmp_path / "trials" / "3")["trainer"]["logger"]
    assert loggers[0]["init_args"] == {"save_dir": str(tmp_path / "trials" / "3"), "name": "x"}
    assert loggers[1]["init_args"] == {"project": "p"}  # no save_dir to move: left alone
    assert logs_into({"trainer": {"logger": False}}, tmp_path) == {"trainer": {"logger": False}}


def test_bad_storage_urls_are_explained(tmp_path):
    with pytest.raises(ValueError, match=r"unsupported storage URL 'redis://h/0'.*journal:///"):
        make_storage("redis://h/0")
    redacted = r"cannot open storage 'postgresql\+psycopg2://me:\*\*\*@127.0.0.1:1/db'"
    with pytest.raises(ValueError, match=redacted) as err:
        make_storage("postgresql+psycopg2://me:secret@127.0.0.1:1/db")
    assert "secret" not in str(err.value)
    assert isinstance(make_storage(f"journal://{tmp_path}/j.log"), optuna.storages.JournalStorage)


def test_cli_errors_name_the_problem(tmp_path, capsys):
    with pytest.raises(SearchSetupError, match=r"config '.*missing.yaml' does not exist"):
        main(["--config", str(tmp_path / "missing.yaml"), "--output_dir", str(tmp_path)])
    with pytest.raises(SearchSetupError, match="unsupported storage URL 'mongodb://x'"):
        main(["--config", str(CONFIG), "--storage", "mongodb://x", "--output_dir", str(tmp_path)])
    space = tmp_path / "s.yaml"
    space.write_text("dropout: {low: 0, high: 0.5}\n")
    with pytest.raises(SearchSetupError, match="unknown search parameter 'dropout'"):
        main(["--config", str(CONFIG), "--space", str(space), "--output_dir", str(tmp_path)])
    with pytest.raises(SearchSetupError, match="--timeout must be a positive number of seconds, got -1"):
        main(["--config", str(CONFIG), "--timeout", "-1", "--output_dir", str(tmp_path)])
    for flag, least in (("--n_trials", 1), ("--max_retry", 0), ("--heartbeat_interval", 1), ("--grace_period", 1)):
        with pytest.raises(SearchSetupError, match=f"{flag} must be at least {least}, got -1"):
            main(["--config", str(CONFIG), flag, "-1", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["--output_dir", str(tmp_path)])
    assert "--config" in capsys.readouterr().err
    assert not (tmp_path / "study.db").exists()


def _trial(state: TrialState, **kw) -> optuna.trial.FrozenTrial:
    dist = {"alpha": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    value = 0.5 if state == TrialState.COMPLETE else None
    return optuna.trial.create_trial(state=state, value=value, params={"alpha": 0.1}, distributions=dist, **kw)


def test_rdb_heartbeat_fails_a_silent_trial_and_retries_it(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path / 'hb.db'}", heartbeat_interval=1, grace_period=1, max_retry=1)
    study = optuna.create_study(storage=storage)
    trial = study.ask({"alpha": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)})
    storage.record_heartbeat(trial._trial_id)  # a worker on another host that then went silent
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    first, retry = study.trials
    assert (first.state, retry.state) == (TrialState.FAIL, TrialState.WAITING)
    assert retry.params == first.params and retry.system_attrs["failed_trial"] == first.number


def test_trials_counted_skips_waiting_and_retried_failures():
    study = optuna.create_study()
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL):
        study.add_trial(_trial(state))
    assert trials_counted(study) == 4  # the FAIL (trial 4) counts: nothing retried it
    study.add_trial(_trial(TrialState.FAIL, system_attrs={"failed_trial": 4, "retry_history": [4]}))
    study.add_trial(_trial(TrialState.WAITING, system_attrs={"failed_trial": 4, "retry_history": [4, 5]}))
    assert trials_counted(study) == 3  # 4 and 5 were retried, the waiting retry does not count yet


def test_dead_local_worker_trial_is_failed_and_retried():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.create_study()
    host = socket.gethostname()
    study.add_trial(_trial(TrialState.RUNNING, user_attrs={"worker": {"trial": 0, "host": host, "pid": dead.pid}}))
    study.add_trial(_trial(TrialState.RUNNING, user_attrs={"worker": {"trial": 1, "host": host, "pid": os.getppid()}}))
    elsewhere = {"trial": 2, "host": "elsewhere", "pid": dead.pid}
    study.add_trial(_trial(TrialState.RUNNING, user_attrs={"worker": elsewhere}))
    assert fail_dead_local_trials(study) == [0]
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING, TrialState.WAITING]
    assert study.trials[3].params == {"alpha": 0.1} and study.trials[3].system_attrs["failed_trial"] == 0
    assert fail_dead_local_trials(study) == []


# --- end to end on the digits ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sqlite_search_writes_a_best_config_that_fits_and_resumes(tmp_path, one_thread, capsys):
    out = tmp_path / "search"
    main(search_argv(out, "--pruner", "none", n_trials=6))
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    calibrated = calibrated_alpha(str(CONFIG), FAST, cli)
    assert [t.params["alpha"] for t in study.trials[:2]] == [0.05, calibrated]  # the baselines, enqueued first
    assert [t.user_attrs.get("baseline") for t in study.trials] == [True, True, None, None, None, None]
    assert all(1e-4 <= t.params["alpha"] <= 1 for t in study.trials)
    for t in study.trials:
        trial_dir = out / "trials" / str(t.number)
        merged = yaml.safe_load((trial_dir / "config.yaml").read_text())
        assert merged["model"]["init_args"]["activation"]["alpha"] == t.params["alpha"]
        assert list(trial_dir.rglob("*.ckpt")), f"no checkpoint under {trial_dir}"
        assert t.user_attrs["epochs"] == 2
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["number"]) for r in rows] == list(range(6))
    assert [float(r["alpha"]) for r in rows] == [t.params["alpha"] for t in study.trials]
    assert "COMPLETE" in capsys.readouterr().out
    for name in ("history", "importance", "alpha_vs_metric"):
        assert (out / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    best = out / "best.yaml"
    best_config = yaml.safe_load(best.read_text())
    original = yaml.safe_load(CONFIG.read_text())
    assert best_config["model"]["init_args"]["activation"] == {"name": "helu", "alpha": study.best_params["alpha"]}
    best_config["model"]["init_args"]["activation"] = original["model"]["init_args"]["activation"]
    assert best_config["trainer"].pop("default_root_dir") == str(out / "best")  # its own run folder
    original["trainer"].pop("default_root_dir", None)
    assert best_config == original  # nothing but the best values and the run folder changed
    fit = cli(["fit", "--config", str(best), "--trainer.fast_dev_run=1", f"--trainer.default_root_dir={tmp_path}/fit"])
    alphas = {float(m.alpha) for m in fit.model.modules() if isinstance(m, HeLU)}
    assert sorted(alphas) == pytest.approx([study.best_params["alpha"]], rel=1e-6)  # float32 buffer

    main(search_argv(out, "--pruner", "none", n_trials=8))  # resume: two more, baselines not enqueued again
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 8
    alphas = [t.params["alpha"] for t in study.trials]
    assert alphas.count(0.05) == alphas.count(calibrated) == 1


@pytest.mark.slow
def test_killed_search_resumes_and_retries_the_killed_trial(tmp_path, one_thread):
    out = tmp_path / "search"
    storage = f"sqlite:///{out / 'study.db'}"
    proc = worker(out, "--pruner", "none", "--trainer.max_epochs=4", n_trials=4)
    deadline = time.monotonic() + 150
    running = None
    while running is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if not (out / "study.db").exists():
            continue
        try:
            trials = optuna.load_study(study_name="t", storage=storage).trials
        except (KeyError, optuna.exceptions.StorageInternalError):
            continue  # the study is not created yet
        if any(t.state == TrialState.COMPLETE for t in trials):
            # Mid-trial: epoch 0 reported, three epochs to go, so the kill cannot land after the trial ended.
            running = next((t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values), None)
    assert running is not None, proc.log.read_text()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = optuna.load_study(study_name="t", storage=storage).trials
    assert before[running.number].state == TrialState.RUNNING  # as the killed worker left it
    completed = {t.number: t.value for t in before if t.state == TrialState.COMPLETE}

    main(search_argv(out, "--pruner", "none", "--trainer.max_epochs=4", n_trials=4))
    trials = optuna.load_study(study_name="t", storage=storage).trials
    assert trials[running.number].state == TrialState.FAIL
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == running.number)
    assert retry.state == TrialState.COMPLETE and retry.params == running.params
    assert {t.number: t.value for t in trials if t.number in completed} == completed  # finished trials kept
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert [t.params["alpha"] for t in trials].count(0.05) == 1 + (running.params["alpha"] == 0.05)


def _check_two_workers(storage: str | optuna.storages.BaseStorage, procs: list[subprocess.Popen]) -> None:
    """4 epochs a trial keep each worker busy long enough for the other to start and take trials too."""
    trials = optuna.load_study(study_name="t", storage=storage).trials
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    # Both check the total before each trial; at worst each starts one trial after the other reached it.
    assert 4 <= len(finished) <= 5 and len(finished) == len(trials)
    assert {t.user_attrs["worker"]["pid"] for t in trials} == {p.pid for p in procs}
    assert len({t.number for t in trials}) == len(trials)


@pytest.mark.slow
def test_two_workers_share_a_journal_file(tmp_path):
    out = tmp_path / "search"
    storage = f"journal://{tmp_path / 'study.log'}"
    procs = [worker(out, "--pruner", "none", "--trainer.max_epochs=4", storage=storage, n_trials=4) for _ in "ab"]
    wait_all(procs)
    journal = optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log"))
    _check_two_workers(optuna.storages.JournalStorage(journal), procs)


@pytest.mark.slow
def test_two_workers_share_a_postgresql_study(tmp_path):
    if find_binaries() is None:
        pytest.skip(f"PostgreSQL server binaries not found; {INSTALL_HINT}")
    out = tmp_path / "search"
    with postgres_server() as url:
        procs = [worker(out, "--pruner", "none", "--trainer.max_epochs=4", storage=url, n_trials=4) for _ in "ab"]
        wait_all(procs)
        _check_two_workers(url, procs)


OPEN_AT = """
import sys, time
from pathlib import Path
import optuna
from helu_lightning.search import make_storage
barrier, url = Path(sys.argv[1]), sys.argv[2]
(barrier / f"ready-{sys.argv[3]}").touch()
while not (barrier / "go").exists():
    time.sleep(0.01)
storage = make_storage(url)
optuna.create_study(storage=storage, study_name="t", load_if_exists=True)
print("opened")
"""


def test_a_table_another_worker_created_first_is_retried_not_fatal(tmp_path, monkeypatch):
    # What a worker of a SLURM array meets when another committed Optuna's tables between its check and its CREATE
    # TABLE (psycopg2's DuplicateTable, a ProgrammingError); reproduced here without the timing luck it needs.
    import sqlalchemy.exc

    real, calls = optuna.storages.RDBStorage, []

    def racing(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            orig = Exception('relation "studies" already exists')
            raise sqlalchemy.exc.ProgrammingError("CREATE TABLE studies (...)", {}, orig)
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    storage = make_storage(f"sqlite:///{tmp_path / 'race.db'}")
    assert isinstance(storage, real) and len(calls) == 2


@pytest.mark.slow
def test_workers_started_together_on_a_fresh_postgresql_database_all_open_it(tmp_path):
    # A SLURM array starts its search workers at one moment: each creates Optuna's tables on the fresh database.
    if find_binaries() is None:
        pytest.skip(f"PostgreSQL server binaries not found; {INSTALL_HINT}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with postgres_server() as url:
        procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT, str(tmp_path), url, str(n)], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for n in range(6)]
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("ready-*"))) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        (tmp_path / "go").touch()  # all imported: they open the storage together
        outputs = [proc.communicate(timeout=300)[0] for proc in procs]
        assert [proc.returncode for proc in procs] == [0] * 6, "\n".join(o[-2000:] for o in outputs)
        assert optuna.get_all_study_names(url) == ["t"]


@pytest.mark.slow
def test_a_poor_trial_is_pruned(tmp_path, one_thread):
    out = tmp_path / "search"
    storage = f"sqlite:///{out / 'study.db'}"
    out.mkdir()
    study = optuna.create_study(study_name="t", storage=storage, direction="maximize")
    for lr in (0.05, 0.04, 1e-7):  # a learning rate of 1e-7 leaves the net at chance after an epoch
        study.enqueue_trial({"alpha": 0.05, "lr": lr})
    space = tmp_path / "space.yaml"
    space.write_text("alpha: {}\nlr: {low: 1.0e-8, high: 0.1, log: true}\n")
    argv = search_argv(out, "--space", str(space), "--pruner", "median", "--pruner_startup_trials", "2", n_trials=3)
    argv.append("--no_calibration")
    run(build_parser().parse_args(argv))
    trials = optuna.load_study(study_name="t", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    poor = trials[2]
    assert poor.params["lr"] == 1e-7 and list(poor.intermediate_values) == [0]  # pruned after its first epoch
    assert poor.intermediate_values[0] < min(t.intermediate_values[0] for t in trials[:2])
    assert poor.user_attrs["epochs"] == 1  # stopped after its first epoch of two


def test_a_repeated_value_reuses_the_finished_trial(tmp_path):
    space = load_space({"alpha": {"type": "categorical", "choices": [0.01, 0.05]}})
    study = optuna.create_study(direction="maximize")
    dist = {"alpha": optuna.distributions.CategoricalDistribution([0.01, 0.05])}
    for state, value, alpha in ((TrialState.COMPLETE, 0.9, 0.05), (TrialState.PRUNED, 0.2, 0.01)):
        trial = optuna.trial.create_trial(state=state, value=value, params={"alpha": alpha}, distributions=dist)
        study.add_trial(trial)

    def no_fit(**kwargs):
        raise AssertionError("a repeated value must not be trained again")

    objective = Objective({"seed_everything": 0}, space, [], tmp_path, "val/acc", no_fit)
    study.enqueue_trial({"alpha": 0.05})
    study.enqueue_trial({"alpha": 0.01})
    study.optimize(objective, n_trials=2)
    reruns = [(t.state, t.value, t.user_attrs.get("reused_from"), t.user_attrs.get("epochs")) for t in study.trials[2:]]
    assert reruns == [(TrialState.COMPLETE, 0.9, 0, 0), (TrialState.PRUNED, None, 1, 0)]
    unseeded = Objective({"seed_everything": True}, space, [], tmp_path, "val/acc", no_fit)
    study.enqueue_trial({"alpha": 0.05})
    with pytest.raises(AssertionError, match="must not be trained"):  # unseeded runs differ: it fits again
        study.optimize(unseeded, n_trials=1)


def test_setup_errors_come_before_any_trial(tmp_path):
    args = build_parser().parse_args(search_argv(tmp_path, storage="ftp://x"))
    with pytest.raises(SearchSetupError, match="unsupported storage URL 'ftp://x'"):
        run_search(options_from_args(args))
    assert not (tmp_path / "trials").exists()


# --- the direction follows the metric ----------------------------------------------------------------------------

def _monitors(node: object) -> set[str]:
    """Every string under a ``monitor`` key, at any depth."""
    if isinstance(node, dict):
        found = {v for k, v in node.items() if k == "monitor" and isinstance(v, str)}
        return found.union(*(_monitors(v) for v in node.values()))
    return set().union(*(_monitors(v) for v in node)) if isinstance(node, list) else set()


SHIPPED_CONFIGS = sorted(ROOT.glob("configs/**/*.yaml"))
SHIPPED_MONITORS = sorted(set().union(*(_monitors(yaml.safe_load(p.read_text())) for p in SHIPPED_CONFIGS)))


@pytest.mark.parametrize(
    "monitor, direction",
    [
        *[(m, "maximize") for m in SHIPPED_MONITORS],
        ("val/loss", "minimize"), ("train/loss", "minimize"), ("val/matched/loss", "minimize"),
        ("val_error", "minimize"), ("val/err", "minimize"), ("val/mse", "minimize"), ("val/MAE", "minimize"),
        ("val/rmse", "minimize"), ("val/perplexity", "minimize"),
        ("val/acc", "maximize"), ("val/accuracy", "maximize"), ("val/acc_top5", "maximize"), ("val/f1", "maximize"),
        ("val/mcc", "maximize"), ("val/matthews", "maximize"), ("val/pearson", "maximize"),
        ("val/spearman", "maximize"), ("val/auroc", "maximize"), ("val/precision", "maximize"),
        ("val/recall", "maximize"), ("val/mismatched/acc", "maximize"),
    ],
)
def test_direction_is_inferred_from_the_metric_name(monitor, direction, tmp_path):
    assert infer_direction(monitor) == direction
    options = options_from_args(build_parser().parse_args(["--config", str(CONFIG), "--monitor", monitor]))
    assert options.direction == direction


def test_shipped_monitors_are_all_known():
    assert {"val/acc", "val/mcc", "val/f1", "val/pearson", "val/matched/acc"} <= set(SHIPPED_MONITORS)


@pytest.mark.parametrize("monitor", ["val/foo", "val/dead_fraction", "val/loss_acc", "alpha"])
def test_a_metric_of_unknown_direction_needs_an_explicit_direction(monitor, tmp_path):
    argv = ["--config", str(CONFIG), "--output_dir", str(tmp_path), "--monitor", monitor]
    with pytest.raises(SearchSetupError, match=rf"cannot tell whether to maximize or minimize '{monitor}'.*direction"):
        main(argv)
    for direction in ("maximize", "minimize"):
        assert options_from_args(build_parser().parse_args([*argv, "--direction", direction])).direction == direction
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("monitor, contradiction", [("val/loss", "maximize"), ("val/acc", "minimize")])
def test_a_contradicting_direction_is_refused_unless_forced(monitor, contradiction, tmp_path):
    argv = ["--config", str(CONFIG), "--output_dir", str(tmp_path), "--monitor", monitor, "--direction", contradiction]
    with pytest.raises(SearchSetupError, match=rf"--direction {contradiction} contradicts.*--force_direction"):
        main(argv)
    assert list(tmp_path.iterdir()) == []  # no study, no storage file
    assert options_from_args(build_parser().parse_args([*argv, "--force_direction"])).direction == contradiction
    agreeing = {"maximize": "minimize", "minimize": "maximize"}[contradiction]
    assert SearchOptions(configs=(str(CONFIG),), monitor=monitor, direction=agreeing).direction == agreeing


def test_an_existing_study_of_the_other_direction_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="t", storage=storage, direction="maximize")  # e.g. val/loss made before the fix
    with pytest.raises(SearchSetupError, match=r"'t' .* created to maximize 'val/loss', not to minimize it"):
        main(search_argv(tmp_path, "--monitor", "val/loss", storage=storage))
    assert not (tmp_path / "trials").exists()


@pytest.mark.slow
def test_a_loss_is_minimised_and_the_best_trial_has_the_lowest_loss(tmp_path, one_thread):
    out = tmp_path / "search"
    space = tmp_path / "space.yaml"
    space.write_text("lr: {low: 1.0e-6, high: 0.1}\n")  # log-uniform: from no learning to a good rate
    extra = ["--monitor", "val/loss", "--space", str(space), "--pruner", "none", "--no_calibration"]
    study = main(search_argv(out, *extra, n_trials=3))
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    values = [t.value for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(set(values)) > 1 and study.best_value == min(values)
    assert f"val/loss={min(values):.6g}" in (out / "best.yaml").read_text()


# --- the space and the trial config are checked before a study exists --------------------------------------------

MOMENTUM = "target: model.init_args.optimizer.init_args.momentum"
WIDTH = "target: model.init_args.backbone_options.width"
BAD_SPACES = {
    "negative alpha": ("alpha: {low: -0.1, high: 0.5}", r"'alpha': alpha must be positive, got low=-0.1"),
    "zero alpha": ("alpha: {low: 0, high: 0.5, log: false}", r"'alpha': alpha must be positive, got low=0"),
    "negative alpha choice": ("alpha: {type: categorical, choices: [0.01, -0.05]}", r"remove \[-0.05\]"),
    "alpha choice not a number": ("alpha: {type: categorical, choices: [0.01, small]}", r"remove \['small'\]"),
    "zero log range": ("lr: {low: 0, high: 0.1}", r"'lr': a log range needs low > 0, got low=0"),
    "low above high": ("lr: {low: 0.1, high: 0.01}", r"'lr': needs low < high, got low=0.1 high=0.01"),
    "choices a string": (f"momentum: {{{MOMENTUM}, type: categorical, choices: '0.9'}}", r"non-empty list.*'0.9'"),
    "choices empty": (f"momentum: {{{MOMENTUM}, type: categorical, choices: []}}", r"non-empty list.*\[\]"),
    "choices a mapping": (f"momentum: {{{MOMENTUM}, type: categorical, choices: [{{a: 1}}]}}", r"\[\{'a': 1\}\]"),
    "fractional int step": (f"width: {{{WIDTH}, type: int, low: 8, high: 32, step: 2.5}}", r"step=2.5"),
    "fractional int bound": (f"width: {{{WIDTH}, type: int, low: 8.5, high: 32}}", r"whole numbers, got low=8.5"),
    "zero step": (f"momentum: {{{MOMENTUM}, low: 0.5, high: 0.9, step: 0}}", r"step must be a positive number"),
    "log with step": ("lr: {low: 0.001, high: 0.1, step: 0.01}", r"a log range takes no step"),
    "unknown key": ("alpha: {low: 0.001, hgh: 1}", r"'alpha': unknown keys \['hgh'\]"),
    "bound not a number": ("alpha: {low: small, high: 1}", r"low must be a finite number, got 'small'"),
    "nan bound": ("alpha: {low: .nan, high: 1}", r"low must be a finite number, got nan"),
    "log not a boolean": ("alpha: {log: 'yes'}", r"log must be true or false, got 'yes'"),
    "unknown schedule": ("schedule: {choices: [constant, exponential]}", r"remove \['exponential'\]"),
    "not a mapping": ("alpha: 0.05", r"'alpha': expected a mapping"),
    "unknown type": ("alpha: {type: uniform}", r"type must be float, int or categorical, got 'uniform'"),
    "not YAML": ("alpha: {low: [", r"is not valid YAML"),
}


@pytest.mark.parametrize("case", BAD_SPACES, ids=list(BAD_SPACES))
def test_a_bad_space_is_refused_before_a_study_exists(case, tmp_path):
    text, message = BAD_SPACES[case]
    space = tmp_path / "space.yaml"
    space.write_text(text + "\n")
    out = tmp_path / "search"
    with pytest.raises(SearchSetupError, match=message) as err:
        main(search_argv(out, "--space", str(space), n_trials=1))
    assert "\n" not in str(err.value)  # one line, no traceback text
    assert not out.exists()  # no study.db, no trial


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model.init_args.lrr=0.1"], r"does not parse.*lrr"),
        (["--trainer.max_epochs=many"], r"does not parse.*trainer.max_epochs.*Given value: many"),
        (["--n_trial", "3"], r"--n_trial is no search option: did you mean --n_trials\?"),
        (["--montor", "val/acc"], r"--montor is no search option: did you mean --monitor\?"),
    ],
    ids=["config key", "config value", "search flag", "another search flag"],
)
def test_a_mistyped_option_fails_before_a_study_exists(extra, message, tmp_path):
    out = tmp_path / "search"
    built = []

    def counting_cli(**kwargs):
        built.append(kwargs)
        return cli(**kwargs)

    options = options_from_args(build_parser().parse_args(search_argv(out, *extra, n_trials=1)))
    with pytest.raises(SearchSetupError, match=message):
        run_search(options, counting_cli)
    assert len(built) == 1 and "--print_config" in built[0]["args"]  # parsed once, nothing fitted or calibrated
    assert not out.exists()


def test_a_bad_config_value_fails_before_a_study_exists(tmp_path):
    out = tmp_path / "search"
    with pytest.raises(SearchSetupError, match=r"does not build: alpha must be a positive.*got -1"):
        main(search_argv(out, "--model.init_args.activation.alpha=-1", n_trials=1))
    assert not out.exists()


def test_a_space_target_the_config_lacks_fails_before_a_study_exists(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("momentum: {target: model.init_args.optimiser.init_args.momentum, low: 0.8, high: 0.99}\n")
    out = tmp_path / "search"
    with pytest.raises(SearchSetupError, match=r"does not parse.*optimiser"):
        main(search_argv(out, "--space", str(space), n_trials=1))
    assert not out.exists()


@pytest.mark.parametrize(
    "space, message",
    [
        ("epochs: {target: trainer.max_epochs, type: categorical, choices: [2, many]}", "does not parse.*many"),
        ("width: {target: model.init_args.backbone_options.width, type: categorical, choices: [wide, 16]}",
         "does not build"),
    ],
    ids=["far end parsed", "near end built"],
)
def test_the_trial_config_is_checked_at_both_ends_of_the_space(space, message, tmp_path):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(space + "\n")
    with pytest.raises(SearchSetupError, match=message):
        main(search_argv(tmp_path / "search", "--space", str(space_file), n_trials=1))
    assert not (tmp_path / "search").exists()


# --- several --config files compose in order ---------------------------------------------------------------------


def _print_config(args: list[str], capsys: pytest.CaptureFixture) -> dict:
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli([*args, "--print_config"], run=False)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("second", ["monitor.yaml", "callbacks_example.yaml", "override"])
def test_several_configs_compose_as_lightning_cli_composes_them(second, tmp_path, capsys):
    if second == "override":  # a scalar, a nested mapping, another class_path, a list replaced
        path = tmp_path / "override.yaml"
        path.write_text(
            "seed_everything: 3\nmodel:\n  init_args:\n    backbone_options: {width: 16}\n"
            "    optimizer: {class_path: torch.optim.AdamW, init_args: {lr: 0.001}}\n"
            "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.EarlyStopping\n"
            "      init_args: {monitor: val/acc, mode: max}\n"
        )
    else:
        path = ROOT / "configs" / second
    composed = tmp_path / "composed.yaml"
    composed.write_text(yaml.safe_dump(compose_configs([str(CONFIG), str(path)], cli)))
    root = f"--trainer.default_root_dir={tmp_path}"
    ours = _print_config(["--config", str(composed), root], capsys)
    lightning = _print_config(["--config", str(CONFIG), "--config", str(path), root], capsys)
    assert ours == lightning
    if second == "override":
        assert ours["model"]["init_args"]["backbone_options"] == {"width": 16}  # a dict value is replaced
        optimizer = ours["model"]["init_args"]["optimizer"]
        assert optimizer["class_path"] == "torch.optim.AdamW" and optimizer["init_args"]["lr"] == 0.001
    else:  # callbacks+: appended to the first file's
        callbacks = [c["class_path"].rsplit(".", 1)[-1] for c in ours["trainer"]["callbacks"]]
        assert callbacks[:3] == ["ModelCheckpoint", "RNGState", "LearningRateMonitor"] and len(callbacks) > 3


@pytest.mark.slow
def test_search_takes_several_configs(tmp_path, one_thread):
    override = tmp_path / "narrow.yaml"
    override.write_text("model:\n  init_args:\n    backbone_options: {width: 8}\n")
    out = tmp_path / "search"
    argv = search_argv(out, "--config", str(override), "--pruner", "none", "--no_calibration", n_trials=1)
    study = main(argv)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    trial_config = yaml.safe_load((out / "trials" / "0" / "config.yaml").read_text())
    assert trial_config["model"]["init_args"]["backbone_options"] == {"width": 8}
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["model"]["init_args"]["backbone_options"]["width"] == 8 and best["data"] == trial_config["data"]


def test_plots_of_a_parameter_that_took_one_value_write_quietly(tmp_path, recwarn):
    from helu_lightning.search import write_plots

    params = load_space({"alpha": {"type": "categorical", "choices": [0.05, 0.1]}})
    study = optuna.create_study(direction="maximize")
    dist = {"alpha": optuna.distributions.CategoricalDistribution([0.05, 0.1])}
    for value in (0.5, 0.6):
        study.add_trial(optuna.trial.create_trial(value=value, params={"alpha": 0.05}, distributions=dist))
    written = write_plots(study, params, tmp_path)
    assert [p.name for p in written] == ["history.png", "importance.png", "alpha_vs_metric.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)
    assert not [w for w in recwarn if "identical low and high" in str(w.message)]


def test_private_optuna_attributes_are_touched_in_one_module_only():
    import re

    import helu_lightning.search as package

    private = re.compile(r"\b(?:study|trial|storage|sampler|pruner)\._[a-z]\w*")
    touching = {
        path.name for path in Path(package.__file__).parent.glob("*.py") if private.search(path.read_text())
    }
    assert touching == {"optuna_internals.py"}


def test_every_module_and_function_stays_small():
    import ast

    import helu_lightning.search as package

    for path in Path(package.__file__).parent.glob("*.py"):
        source = path.read_text()
        assert source.count("\n") <= 300, path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno < 50, f"{path.name}:{node.name}"


def test_the_did_you_mean_list_is_the_commands_flags():
    from helu_lightning.search.options import SEARCH_FLAGS

    flags = {flag for action in build_parser()._actions for flag in action.option_strings} - {"-h", "--help"}
    assert set(SEARCH_FLAGS) == flags


def test_calibrated_alpha_sees_the_fresh_model_as_training_does(one_thread):
    """BatchNorm before each activation, batch statistics as in training: alpha is the 0.1 quantile of |x| over
    x <= 0 of roughly standard normal pre-activations, the half-normal quantile 0.126 (eval mode gave ~0.015)."""
    alpha = calibrated_alpha(str(CONFIG), FAST, cli)
    assert 0.10 < alpha < 0.15
