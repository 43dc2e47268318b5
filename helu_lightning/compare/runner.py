"""The comparison's study: one Optuna study whose GridSampler walks activation x seed, each trial one fit
through the search's ``Objective``, then a test of its best checkpoint and an INT8 export (HeLU -> ReLU).

Workers share the grid through the storage; a re-run resumes (runs of dead local workers are failed and
retried); a trial whose (activation, seed) an earlier trial already holds is pruned as a duplicate, so no run
is repeated. Results live in the trials' user attributes, so the report needs nothing but the storage.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from helu_lightning.compare.arms import SCHEDULE, Arm, CompareError
from helu_lightning.console import helper_runs_quiet
from helu_lightning.search import (
    Objective,
    SearchParam,
    SearchSetupError,
    apply_params,
    calibrated_alpha,
    fail_dead_local_trials,
    make_storage,
    redact,
    worker_identity,
)
from helu_lightning.search.fingerprint import check_fingerprint
from helu_lightning.search.progress import StudyProgress

__all__ = ["ACTIVATION_TARGET", "CompareObjective", "check_config", "grid_todo", "open_study", "run_grid",
           "trial_config"]

ACTIVATION_TARGET = "model.init_args.activation"
GRID_PARAMS = [SearchParam("activation", ACTIVATION_TARGET, type="categorical", choices=[None]),
               SearchParam("seed", "seed_everything", type="categorical", choices=[None])]
MONITOR_CLASS = "helu_lightning.callbacks.ActivationMonitor"
RECORDER_CLASS = "helu_lightning.callbacks.RunRecorder"
SCHEDULER_CLASS = "helu_lightning.callbacks.AlphaScheduler"


def open_study(storage_url: str, study_name: str, direction: str, arms: Sequence[Arm], seeds: Sequence[int],
               heartbeat_interval: int = 60, grace_period: int | None = None, max_retry: int = 3,
               fingerprint: dict[str, Any] | None = None) -> optuna.Study:
    """Create the study (its grid enqueued seed by seed) or join it; a study created for another grid, direction
    or ``fingerprint`` (the resolved run config and evaluation settings) is refused (new --output_dir)."""
    try:
        storage = make_storage(storage_url, heartbeat_interval, grace_period, max_retry)
    except ValueError as err:
        raise CompareError(str(err)) from None
    grid = {"activation": [arm.label for arm in arms], "seed": list(seeds)}
    with warnings.catch_warnings(), StudyProgress.optuna_quiet():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(storage=storage, study_name=study_name, direction=direction,
                                    sampler=optuna.samplers.GridSampler(grid), pruner=optuna.pruners.NopPruner(),
                                    load_if_exists=True)
    where = f"study {study_name!r} in {redact(storage_url)}"
    fix = "repeat the command that made it, or pass a new --output_dir (or --study_name)"
    existing = study.direction.name.lower()
    if existing != direction:
        raise CompareError(f"{where} was made to {existing} its metric, not to {direction} it; {fix} (to keep "
                           f"{existing}ing, add --direction {existing} --force_direction)")
    if fingerprint is not None:
        try:
            check_fingerprint(study, fingerprint, where, fix)
        except SearchSetupError as err:
            raise CompareError(str(err)) from None
    stored = study.user_attrs.get("grid")
    if stored is None:
        study.set_user_attr("grid", grid)
        study.set_user_attr("specs", {arm.label: arm.spec for arm in arms})
        # Seed-major order (every activation for seed 0, then seed 1, ...), where the GridSampler would shuffle:
        # whatever has finished when a comparison is cut short holds complete pairs.
        for seed in seeds:
            for arm in arms:
                study.enqueue_trial({"activation": arm.label, "seed": seed}, skip_if_exists=True)
    elif stored != grid:
        raise CompareError(f"study {study_name!r} compares {stored['activation']} over seeds {stored['seed']}, "
                           f"not {grid['activation']} over {grid['seed']}; repeat its command or pass a new "
                           "--study_name")
    return study


def trial_config(base: dict, spec: dict[str, Any], seed: int, record_path: Path, module_classes: list[str]) -> dict:
    """The fit config of one run: activation and seed set, a RunRecorder added, an ActivationMonitor watching the
    compared activation classes unless the config has its own, and an AlphaScheduler when the arm has a schedule."""
    activation = {k: v for k, v in spec.items() if k != SCHEDULE}
    config = apply_params(base, GRID_PARAMS, {"activation": activation, "seed": seed})
    config.pop("test_after_fit", None)  # the comparison tests the best checkpoint itself
    trainer = config["trainer"] = config.get("trainer") or {}
    callbacks = list(trainer.get("callbacks") or [])
    if SCHEDULE in spec:
        if any(str(c.get("class_path", "")).endswith("AlphaScheduler") for c in callbacks if isinstance(c, dict)):
            raise CompareError("the config has its own AlphaScheduler and an activation brings a schedule; remove "
                               "one of them")
        callbacks.append({"class_path": SCHEDULER_CLASS, "init_args": {"schedule": spec[SCHEDULE], "interval": "step"}})
    if not any(str(c.get("class_path", "")).endswith("ActivationMonitor") for c in callbacks if isinstance(c, dict)):
        callbacks.append({"class_path": MONITOR_CLASS,
                          "init_args": {"every_n_steps": 50, "window": 2, "module_types": module_classes}})
    callbacks.append({"class_path": RECORDER_CLASS, "init_args": {"path": str(record_path)}})
    trainer["callbacks"] = callbacks
    return config


def check_config(base: dict, arm: Arm, seed: int, overrides: list[str], build_cli: Callable[..., Any]) -> dict:
    """Build (not fit) the first run's LightningCLI, so a config or override that ``helu-train fit`` rejects
    stops the comparison before any study exists (CompareError says so); returns that run's config as LightningCLI
    resolved it, the temporary folder of the check written as ``<run>`` (the study's fingerprint holds it)."""
    with tempfile.TemporaryDirectory(prefix="helu-compare-") as tmp:
        path = Path(tmp) / "config.yaml"
        config = trial_config(base, arm.probe_spec(), seed, Path(tmp) / "record.json", [arm.module_class()])
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        args = ["--config", str(path), *overrides, f"--trainer.default_root_dir={tmp}"]
        try:
            with warnings.catch_warnings(), helper_runs_quiet():
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
                built = build_cli(args=args, run=False,
                                  trainer_defaults={"logger": False, "enable_progress_bar": False})
        except SystemExit as err:  # jsonargparse has printed what it rejected
            raise CompareError(f"the config with these options is rejected by `helu-train fit` (exit {err.code}; "
                               "its message is above); fix the config or the --section.key options") from None
        except (ValueError, TypeError, KeyError) as err:
            raise CompareError(f"the config cannot build its model or data: {type(err).__name__}: {err}") from None
        return yaml.safe_load(built.parser.dump(built.config, skip_none=False).replace(tmp, "<run>")) or {}


class CompareObjective:
    """One (activation, seed) run: duplicate check, alpha calibration for ``auto`` arms, fit, test, INT8."""

    def __init__(self, base: dict, arms: Sequence[Arm], seeds: Sequence[int], overrides: list[str],
                 output_dir: Path, monitor: str, build_cli: Callable[..., Any],
                 evaluate: Callable[[Path, list[str], dict, Callable[..., Any]], dict[str, Any]] | None) -> None:
        self.base, self.arms, self.seeds = base, {arm.label: arm for arm in arms}, list(seeds)
        self.overrides, self.output_dir, self.monitor = overrides, output_dir, monitor
        self.build_cli, self.evaluate = build_cli, evaluate
        self.module_classes = sorted({arm.module_class() for arm in arms})

    def __call__(self, trial: optuna.Trial) -> float:
        # Who runs the trial, as the search records it, so fail_dead_local_trials can fail it if this process dies
        # before the fit starts (during calibration); Objective sets the same again.
        trial.set_user_attr("worker", {"trial": trial.number, **worker_identity()})
        label = trial.suggest_categorical("activation", list(self.arms))
        seed = trial.suggest_categorical("seed", self.seeds)
        if (holder := _earlier_holder(trial, label, seed)) is not None:
            trial.set_user_attr("duplicate_of", holder)
            raise optuna.TrialPruned(f"({label}, seed {seed}) is run by trial {holder}")
        arm = self.arms[label]
        trial_dir = self.output_dir / "trials" / str(trial.number)
        record_path = trial_dir / "record.json"
        spec = dict(arm.spec)
        if arm.auto:
            spec["alpha"] = self._calibrate(arm, seed, record_path)
        trial.set_user_attr("spec", spec)
        config = trial_config(self.base, spec, seed, record_path, self.module_classes)
        value = Objective(config, [], self.overrides, self.output_dir, self.monitor, self.build_cli)(trial)
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        trial.set_user_attr("record", record)
        if self.evaluate is not None:
            with helper_runs_quiet():
                trial.set_user_attr("evaluation", self.evaluate(trial_dir, self.overrides, record, self.build_cli))
        return value

    def _calibrate(self, arm: Arm, seed: int, record_path: Path) -> float:
        """suggest_alpha's global alpha for this seed's freshly initialised model on the training data."""
        config = trial_config(self.base, arm.probe_spec(), seed, record_path, self.module_classes)
        with tempfile.TemporaryDirectory(prefix="helu-compare-") as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            return calibrated_alpha(str(path), self.overrides, self.build_cli)


def _earlier_holder(trial: optuna.Trial, label: str, seed: int) -> int | None:
    """The number of an earlier trial that completed or is running this (activation, seed), if any."""
    wanted = {"activation": label, "seed": seed}
    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if other.number < trial.number and other.params == wanted:
            return other.number
    return None


def grid_todo(study: optuna.Study, arms: Sequence[Arm], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Grid points that no trial has completed and none is running (waiting ones included)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    held = {(t.params.get("activation"), t.params.get("seed")) for t in trials}
    return [{"activation": arm.label, "seed": seed} for arm in arms for seed in seeds
            if (arm.label, seed) not in held]


def _waiting(study: optuna.Study) -> list[dict[str, Any]]:
    def params(trial: FrozenTrial) -> dict[str, Any]:
        return trial.params or trial.system_attrs.get("fixed_params") or {}

    return [params(t) for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]


def run_grid(study: optuna.Study, objective: CompareObjective, arms: Sequence[Arm], seeds: Sequence[int],
             max_retry: int = 3) -> None:
    """Run trials until every (activation, seed) has completed here or is running elsewhere.

    Trials come from the queue ``open_study`` filled seed by seed (and retries of dead workers' runs), else from
    the GridSampler; open points whose trials failed, or any after a duplicate was seen, are enqueued again,
    once per call. Before each run it prints "run k of N" with the time left, and after it the outcome.
    """
    enqueued: list[dict[str, Any]] = []
    total = len(arms) * len(seeds)
    progress = StudyProgress("helu-train compare", total, _describe, objective.monitor)
    for _ in range(3 * total + 3):
        fail_dead_local_trials(study, max_retry)
        todo = grid_todo(study, arms, seeds)
        if not todo:
            return
        tried = {(t.params.get("activation"), t.params.get("seed")) for t in study.get_trials(deepcopy=False)}
        waiting = _waiting(study)
        for point in todo:
            stuck = (point["activation"], point["seed"]) in tried or _duplicates(study)
            if stuck and point not in waiting and point not in enqueued:
                study.enqueue_trial(point)
                enqueued.append(point)
        progress.begin(total - len(todo))
        with StudyProgress.optuna_quiet():
            study.optimize(objective, n_trials=1, gc_after_trial=True, callbacks=[progress])


def _describe(trial: FrozenTrial) -> str:
    return f"{trial.params.get('activation')}, seed {trial.params.get('seed')}"


def _duplicates(study: optuna.Study) -> bool:
    return any("duplicate_of" in t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))

