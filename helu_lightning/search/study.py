"""A search from start to end: check everything, create or join the study, run trials until the total is reached."""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import yaml

from helu_lightning.console import helper_runs_quiet
from helu_lightning.owned_files import refuse_foreign
from helu_lightning.search.config import check_trial_config, compose_configs
from helu_lightning.search.fingerprint import check_fingerprint
from helu_lightning.search.objective import Objective, make_pruner
from helu_lightning.search.options import SEARCH_FLAGS, SearchOptions, SearchSetupError
from helu_lightning.search.progress import StudyProgress
from helu_lightning.search.report import OUTPUT_NAMES, write_outputs
from helu_lightning.search.space import ALPHA_BASELINE, SearchParam, load_space
from helu_lightning.search.storage import fail_dead_local_trials, make_storage, redact, trials_counted

__all__ = ["calibrated_alpha", "open_study", "prepare_search", "run_search"]

def calibrated_alpha(
    config: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str], build_cli: Callable[..., Any]
) -> float:
    """``calibration.suggest_alpha``'s global alpha for the config's freshly initialised model on its training data.

    The pass runs in training mode: a fresh model's BatchNorm running statistics are still the identity, so an
    eval-mode pass would measure pre-activations at a scale training never sees (on digits 0.015 instead of
    0.126, the half-normal quantile that BatchNorm's batch statistics give). ``config`` is a fit config file or
    the composed mapping of several.
    """
    from helu_lightning.calibration import suggest_alpha

    with tempfile.TemporaryDirectory(prefix="helu-calibration-") as tmp, warnings.catch_warnings(), \
            helper_runs_quiet():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        if isinstance(config, Mapping):
            config_path = Path(tmp) / "config.yaml"
            config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
            config = config_path
        args = ["--config", str(config), *overrides, f"--trainer.default_root_dir={tmp}"]
        cli = build_cli(args=args, run=False, trainer_defaults={"logger": False, "enable_progress_bar": False})
        cli.datamodule.prepare_data()
        cli.datamodule.setup("fit")
        model = getattr(cli.model, "model", None) or cli.model
        return float(suggest_alpha(model, cli.datamodule.train_dataloader(), train_mode=True).global_alpha)


def _describe(trial: optuna.trial.FrozenTrial) -> str:
    values = ", ".join(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
                       for name, value in trial.params.items())
    return f"trial {trial.number}{': ' + values if values else ''}"


def _baselines(params: list[SearchParam], calibrate: Callable[[], float] | None) -> list[dict[str, Any]]:
    """Trials run first: the paper's alpha 0.05 and, when given, the calibrated alpha (those inside the space)."""
    alpha = next((p for p in params if p.name == "alpha"), None)
    if alpha is None:
        return []
    candidates = [ALPHA_BASELINE]
    if calibrate is not None:
        try:
            candidates.append(calibrate())
        except ValueError as err:
            print(f"helu-train search: no calibrated baseline trial ({err})")
    return [{"alpha": value} for value in dict.fromkeys(candidates) if alpha.contains(value)]


def open_study(
    options: SearchOptions, params: list[SearchParam], calibrate: Callable[[], float] | None = None,
    fingerprint: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Create the study (enqueueing the baselines once) or load it to resume or join it; a study whose stored
    ``fingerprint`` (see :mod:`~helu_lightning.search.fingerprint`) differs from this one is refused."""
    storage = make_storage(options.storage_url, options.heartbeat_interval, options.grace_period, options.max_retry)
    pruner = make_pruner(options.pruner, options.pruner_startup_trials, options.pruner_warmup_epochs)

    def sampler(seed: int) -> optuna.samplers.BaseSampler:
        startup = options.sampler_startup_trials
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=options.study_name,
                direction=options.direction,
                sampler=sampler(options.sampler_seed),
                pruner=pruner,
            )
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=options.study_name, storage=storage, pruner=pruner)
            _check_direction(study, options)
            _check_fingerprint(study, options, fingerprint)
            # Resuming or joining: a seed of its own, so this worker does not replay the first one's draws.
            study.sampler = sampler((options.sampler_seed + 1000003 * len(study.trials) + os.getpid()) % 2**31)
            return study
    _check_fingerprint(study, options, fingerprint)
    for baseline in _baselines(params, calibrate):
        study.enqueue_trial(baseline, user_attrs={"baseline": True}, skip_if_exists=True)
    return study


def _check_direction(study: optuna.Study, options: SearchOptions) -> None:
    existing = study.direction.name.lower()
    if existing != options.direction:
        raise SearchSetupError(
            f"study {options.study_name!r} in {redact(options.storage_url)} was created to {existing} "
            f"{options.monitor!r}, not to {options.direction} it; pass a new --study_name (or, to keep "
            f"{existing}ing, --direction {existing} --force_direction)"
        )


def _check_fingerprint(study: optuna.Study, options: SearchOptions, fingerprint: Mapping[str, Any] | None) -> None:
    if fingerprint is not None:
        check_fingerprint(study, fingerprint, f"study {options.study_name!r} in {redact(options.storage_url)}",
                          "repeat the command that made it, or pass a new --output_dir (or --study_name)")


def prepare_search(options: SearchOptions, build_cli: Callable[..., Any]) -> tuple[dict, list[SearchParam], dict]:
    """The composed fit config, the space (both checked, the trial config through the CLI parser) and the study's
    fingerprint: the resolved trial config, the space and the metric. No file is written and no study exists yet,
    so a mistake costs nothing."""
    config = compose_configs(options.configs, build_cli)
    params = load_space(options.space)
    with helper_runs_quiet():
        resolved = check_trial_config(config, params, options.overrides, build_cli, SEARCH_FLAGS)
    fingerprint = {"trial_config": resolved, "space": [asdict(p) for p in params], "monitor": options.monitor}
    return config, params, fingerprint


def run_search(options: SearchOptions, build_cli: Callable[..., Any] | None = None) -> optuna.Study:
    """Run trials until ``n_trials`` count in the study in total (or the timeout passes), then write outputs."""
    if build_cli is None:
        from helu_lightning.cli import cli as build_cli  # lazily: helu_lightning.cli dispatches to this package
    config, params, fingerprint = prepare_search(options, build_cli)
    refuse_foreign(options.output_dir, [*OUTPUT_NAMES, *(f"plots/{p.name}_vs_metric.png" for p in params)], "search")
    overrides = list(options.overrides)
    calibrate = partial(calibrated_alpha, config, overrides, build_cli) if options.calibration else None
    progress = StudyProgress("helu-train search", options.n_trials, _describe, options.monitor)
    with StudyProgress.optuna_quiet():
        study = open_study(options, params, calibrate, fingerprint)
        objective = Objective(config, params, overrides, options.output_dir, options.monitor, build_cli)
        deadline = None if options.timeout is None else time.monotonic() + options.timeout
        while True:
            fail_dead_local_trials(study, options.max_retry)
            counted = trials_counted(study)
            if counted >= options.n_trials or (deadline is not None and time.monotonic() >= deadline):
                break
            progress.begin(counted)
            study.optimize(objective, n_trials=1, gc_after_trial=True, callbacks=[progress])
    write_outputs(study, config, params, options.output_dir, options.monitor)
    return study
