r"""``helu-train search``: tune HeLU's alpha (and lr, weight decay, ...) with Optuna on top of a ``fit`` config.

    helu-train search --config configs/offline.yaml --n_trials 20 --output_dir runs/search
    helu-train search --config configs/offline.yaml --space configs/search/alpha_lr_schedule.yaml \
        --storage journal:///tmp/study.log --study_name digits     # start this in several shells

Each trial is one ``fit`` of the config with the sampled values merged in, in ``output_dir/trials/<number>/``.
``--n_trials`` is the study's total, so re-running the same command resumes it; ``--timeout`` is per invocation.
Arguments this parser does not know (``--trainer.max_epochs 3``) go to every trial's LightningCLI.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import io
import math
import os
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import yaml
from lightning.pytorch import Callback
from optuna.trial import FrozenTrial, TrialState

from helu_lightning.io import atomic_write_bytes, atomic_write_text

__all__ = [
    "KNOWN_PARAMS",
    "Objective",
    "SearchParam",
    "SearchSetupError",
    "apply_params",
    "build_parser",
    "calibrated_alpha",
    "fail_dead_local_trials",
    "load_space",
    "logs_into",
    "main",
    "make_storage",
    "run_search",
    "trials_counted",
]

ALPHA_BASELINE = 0.05
SCHEDULE_TARGET = "trainer.callbacks"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PRUNERS = ("median", "hyperband", "successive_halving", "none")


class SearchSetupError(ValueError):
    """A bad config, space, storage or study option, found before any trial runs."""


@dataclass
class SearchParam:
    """One searched value: its Optuna distribution and the dotted config path it is written to."""

    name: str
    target: str
    type: str = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.type not in ("float", "int", "categorical"):
            raise ValueError(
                f"search parameter {self.name!r}: type must be float, int or categorical, got {self.type!r}"
            )
        if self.type == "categorical":
            if not self.choices:
                raise ValueError(f"search parameter {self.name!r}: a categorical needs a non-empty 'choices' list")
            return
        if self.low is None or self.high is None or not float(self.low) < float(self.high):
            raise ValueError(
                f"search parameter {self.name!r}: needs low < high, got low={self.low!r} high={self.high!r}"
            )
        if self.log and float(self.low) <= 0:
            raise ValueError(f"search parameter {self.name!r}: a log range needs low > 0, got low={self.low!r}")

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in self.choices
        return float(self.low) <= float(value) <= float(self.high)


# Names a space file may use without a `target`; any other name must say where it goes.
KNOWN_PARAMS: dict[str, dict[str, Any]] = {
    "alpha": {"target": "model.init_args.activation.alpha", "low": 1e-4, "high": 1.0, "log": True},
    "lr": {"target": "model.init_args.optimizer.init_args.lr", "low": 1e-4, "high": 1e-1, "log": True},
    "weight_decay": {
        "target": "model.init_args.optimizer.init_args.weight_decay", "low": 1e-6, "high": 1e-2, "log": True
    },
    "schedule": {"target": SCHEDULE_TARGET, "type": "categorical", "choices": ["constant", "linear", "cosine"]},
}
SCHEDULE_END_RATIO = 0.1
DEFAULT_SPACE = {"alpha": {}}


def load_space(source: str | os.PathLike | Mapping[str, Any] | None = None) -> list[SearchParam]:
    """Read a search space (YAML file or mapping ``name -> {low, high, log, choices, target}``); None: alpha only."""
    if source is None:
        spec: Any = DEFAULT_SPACE
    elif isinstance(source, Mapping):
        spec = source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"search space file {str(path)!r} does not exist; see configs/search/*.yaml")
        spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"a search space is a non-empty mapping name -> {{low, high, log}}, got {spec!r}")
    params = []
    for name, options in spec.items():
        options = dict(options or {})
        if name not in KNOWN_PARAMS and "target" not in options:
            raise ValueError(
                f"unknown search parameter {name!r}: known ones are {', '.join(KNOWN_PARAMS)}; "
                f"for anything else give its config path, e.g. "
                f"{name}: {{target: model.init_args.{name}, low: ..., high: ...}}"
            )
        merged = {**KNOWN_PARAMS.get(name, {}), **options}
        allowed = set(SearchParam.__dataclass_fields__) - {"name"}
        if unknown := sorted(set(merged) - allowed):
            raise ValueError(f"search parameter {name!r}: unknown keys {unknown}; allowed: {sorted(allowed)}")
        params.append(SearchParam(name=name, **merged))
    return params


def apply_params(config: Mapping[str, Any], params: Sequence[SearchParam], values: Mapping[str, Any]) -> dict:
    """A deep copy of ``config`` with each value written at its parameter's dotted target path.

    A string met on the way is an activation name and becomes ``{name: <string>}``, so ``activation: helu``
    takes an alpha; missing mappings are created.
    """
    config = copy.deepcopy(dict(config))
    for param in params:
        if param.name not in values:
            continue
        if param.target == SCHEDULE_TARGET:
            _add_schedule(config, values[param.name], _alpha_of(config, params, values))
            continue
        node = config
        *parents, leaf = param.target.split(".")
        for i, key in enumerate(parents):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif isinstance(child, str):
                child = node[key] = {"name": child}
            elif not isinstance(child, dict):
                path = ".".join(parents[: i + 1])
                raise ValueError(
                    f"search parameter {param.name!r}: config value at {path!r} is {child!r}, not a mapping"
                )
            node = child
        node[leaf] = values[param.name]
    return config


def logs_into(config: dict, directory: Path) -> dict:
    """``config`` with every configured logger that has a ``save_dir`` saving under ``directory`` instead.

    Loggers left unset already follow ``default_root_dir``; this keeps trials with an explicit logger apart too.
    """
    trainer = config.get("trainer") or {}
    loggers = trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init_args = logger.get("init_args") if isinstance(logger, dict) else None
        if isinstance(init_args, dict) and "save_dir" in init_args:
            init_args["save_dir"] = str(directory)
    return config


def _alpha_of(config: Mapping[str, Any], params: Sequence[SearchParam], values: Mapping[str, Any]) -> float:
    """The trial's alpha: sampled, else the config's, else HeLU's default."""
    if "alpha" in values:
        return float(values["alpha"])
    node: Any = config
    for key in next((p.target for p in params if p.name == "alpha"), KNOWN_PARAMS["alpha"]["target"]).split("."):
        node = node.get(key) if isinstance(node, Mapping) else None
    return float(node) if isinstance(node, (int, float)) else ALPHA_BASELINE


def _add_schedule(config: dict, shape: str, alpha: float) -> None:
    """Decay alpha from its value to a tenth of it with an AlphaScheduler of this shape; 'constant' adds none."""
    if shape == "constant":
        return
    if shape not in ("linear", "cosine"):
        raise ValueError(f"search parameter 'schedule': choices are constant, linear, cosine; got {shape!r}")
    trainer = config["trainer"] = config.get("trainer") or {}
    callbacks = [c for c in trainer.get("callbacks") or [] if "AlphaScheduler" not in str(c.get("class_path", ""))]
    schedule = {"name": shape, "start": alpha, "end": alpha * SCHEDULE_END_RATIO}
    callbacks.append({"class_path": "helu_lightning.callbacks.AlphaScheduler", "init_args": {"schedule": schedule}})
    trainer["callbacks"] = callbacks


def make_storage(
    url: str, heartbeat_interval: int = 60, grace_period: int | None = None, max_retry: int = 3
) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL: ``sqlite:///f.db`` / ``postgresql://...`` (RDB, with heartbeat and retry of
    a dead worker's trial) or ``journal:///path/f.log`` (a JournalFileBackend file shared by processes on one host)."""
    if url.startswith("journal://"):
        path = Path(url[len("journal://") :])
        if not path.name:
            raise ValueError(f"storage {url!r} names no file; use journal:///absolute/path/study.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme.split("+")[0] not in ("sqlite", "postgresql", "postgres", "mysql"):
        raise ValueError(
            f"unsupported storage URL {_redact(url)!r}; use sqlite:///path/study.db (one process), "
            "journal:///path/study.log (several processes, one machine) or "
            "postgresql://user:password@host:5432/db (a cluster)"
        )
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    import sqlalchemy.exc

    races = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=_retry_callback(max_retry),
                )
        except sqlalchemy.exc.IntegrityError:
            races += 1  # workers started together raced to create the tables; the winner's are there now
            if races == 3:
                raise
            time.sleep(1.0)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError) as err:
            raise ValueError(f"cannot open storage {_redact(url)!r}: {err.__class__.__name__}: {err}") from err


def _retry_callback(max_retry: int) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Optuna's re-enqueue of a dead worker's trial (renamed in Optuna 4.9; the old name still works before)."""
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return (retry or optuna.storages.RetryFailedTrialCallback)(max_retry=max_retry)


def _redact(url: str) -> str:
    """The URL with any password replaced by ***, for error messages."""
    head, sep, tail = url.partition("://")
    if "@" in tail and ":" in tail.split("@", 1)[0]:
        user = tail.split("@", 1)[0].split(":", 1)[0]
        return f"{head}{sep}{user}:***@{tail.split('@', 1)[1]}"
    return url


def _worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_local_trials(study: optuna.Study, max_retry: int = 3) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker ran on this host and is gone, and enqueue their retries.

    The heartbeat does this for RDB storages after a grace period; journal files have no heartbeat, and on one
    host a dead process id is proof enough, at once. Returns the failed trial numbers.
    """
    me = _worker()
    failed = []
    retry = _retry_callback(max_retry)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        if worker.get("trial") != trial.number or worker.get("host") != me["host"] or worker.get("pid") == me["pid"]:
            continue
        if _pid_alive(int(worker["pid"])):
            continue
        try:
            if not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        failed.append(trial.number)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, study._storage.get_trial(trial._trial_id))
    return failed


def trials_counted(study: optuna.Study) -> int:
    """Trials that count toward ``--n_trials``: finished or running, plus failures that were not retried."""
    trials = study.get_trials(deepcopy=False)
    retried = {number for t in trials for number in t.system_attrs.get("retry_history", ())}
    return sum(
        t.state in (*FINISHED, TrialState.RUNNING) or (t.state == TrialState.FAIL and t.number not in retried)
        for t in trials
    )


class EpochCounter(Callback):
    """Counts training epochs started, the partial one of a pruned trial included (compute accounting)."""

    def __init__(self) -> None:
        self.epochs = 0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.epochs += 1


def _make_pruner(name: str, startup_trials: int, warmup_epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)
    # Reports are 0-based epochs; these two cut first at step min_resource (>= 1), the median pruner at warmup.
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup_epochs), reduction_factor=3)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup_epochs), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; use {', '.join(PRUNERS)}")


class Objective:
    """One trial: merge the sampled values into the fit config, build the LightningCLI, fit, return the metric."""

    def __init__(
        self,
        config: dict,
        params: list[SearchParam],
        overrides: list[str],
        output_dir: Path,
        monitor: str,
        build_cli: Callable[..., Any],
    ) -> None:
        self.config, self.params, self.overrides = config, params, overrides
        self.output_dir, self.monitor, self.build_cli = output_dir, monitor, build_cli

    def __call__(self, trial: optuna.Trial) -> float:
        from optuna_integration import PyTorchLightningPruningCallback

        trial.set_user_attr("worker", {"trial": trial.number, **_worker()})
        values = {p.name: p.suggest(trial) for p in self.params}
        if (twin := self._finished_twin(trial, values)) is not None:
            trial.set_user_attr("epochs", 0)
            trial.set_user_attr("reused_from", twin.number)
            if twin.state == TrialState.PRUNED:
                raise optuna.TrialPruned(f"same parameters as pruned trial {twin.number}")
            return float(twin.value)
        trial_dir = self.output_dir / "trials" / str(trial.number)
        trial.set_user_attr("trial_dir", str(trial_dir))
        config_path = trial_dir / "config.yaml"
        trial_config = logs_into(apply_params(self.config, self.params, values), trial_dir)
        atomic_write_text(config_path, yaml.safe_dump(trial_config, sort_keys=False))
        counter = EpochCounter()
        pruning = PyTorchLightningPruningCallback(trial, monitor=self.monitor)
        defaults = {
            "callbacks": [pruning, counter],
            "enable_progress_bar": False,
            "enable_model_summary": False,
        }
        args = ["--config", str(config_path), *self.overrides, f"--trainer.default_root_dir={trial_dir}"]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            cli = self.build_cli(args=args, run=False, trainer_defaults=defaults)
        try:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            pruning.check_pruned()  # DDP / ddp_spawn trials: rank 0 reported through the storage
            metric = cli.trainer.callback_metrics.get(self.monitor)
            if metric is None:
                logged = sorted(cli.trainer.callback_metrics) or ["none"]
                raise ValueError(
                    f"metric {self.monitor!r} was never logged; logged metrics: {', '.join(logged)}. "
                    "Pass one of them as --monitor"
                )
            return float(metric)
        finally:
            trial.set_user_attr("epochs", counter.epochs or _reported_epochs(trial))
            del cli
            gc.collect()
            _empty_accelerator_cache()

    def _finished_twin(self, trial: optuna.Trial, values: dict[str, Any]) -> FrozenTrial | None:
        """A finished trial with the same values; with a fixed ``seed_everything`` refitting would repeat it exactly,
        so its result is reused (categorical spaces repeat values often)."""
        seed = self.config.get("seed_everything")
        if isinstance(seed, bool) or not isinstance(seed, int):
            return None
        finished = trial.study.get_trials(deepcopy=False, states=FINISHED)
        return next((other for other in finished if other.params == values), None)


def _reported_epochs(trial: optuna.Trial) -> int:
    """Epochs the trial reported; the count when training ran in spawned processes that the counter cannot see."""
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    return len(frozen.intermediate_values)


def _empty_accelerator_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _load_config(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config {path!r} does not exist; pass the YAML you give `helu-train fit --config`")
    config = yaml.safe_load(file.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"config {path!r} is not a YAML mapping of fit options")
    return config


def calibrated_alpha(config_path: str, overrides: Sequence[str], build_cli: Callable[..., Any]) -> float:
    """``calibration.suggest_alpha``'s global alpha for the config's freshly initialised model on its training data."""
    from helu_lightning.calibration import suggest_alpha

    with tempfile.TemporaryDirectory(prefix="helu-calibration-") as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        args = ["--config", config_path, *overrides, f"--trainer.default_root_dir={tmp}"]
        cli = build_cli(args=args, run=False, trainer_defaults={"logger": False, "enable_progress_bar": False})
        cli.datamodule.prepare_data()
        cli.datamodule.setup("fit")
        model = getattr(cli.model, "model", None) or cli.model
        return float(suggest_alpha(model, cli.datamodule.train_dataloader()).global_alpha)


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
    args: argparse.Namespace, params: list[SearchParam], calibrate: Callable[[], float] | None = None
) -> optuna.Study:
    """Create the study (enqueueing the baselines once) or load it to resume or join it."""
    storage_url = args.storage or f"sqlite:///{(Path(args.output_dir) / 'study.db').resolve()}"
    storage = make_storage(storage_url, args.heartbeat_interval, args.grace_period, args.max_retry)
    pruner = _make_pruner(args.pruner, args.pruner_startup_trials, args.pruner_warmup_epochs)

    def sampler(seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=args.sampler_startup_trials, constant_liar=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=args.study_name,
                direction=args.direction,
                sampler=sampler(args.sampler_seed),
                pruner=pruner,
            )
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=args.study_name, storage=storage, pruner=pruner)
            if study.direction.name.lower() != args.direction:
                raise ValueError(
                    f"study {args.study_name!r} in {_redact(storage_url)} was created to "
                    f"{study.direction.name.lower()}, not {args.direction}; pass --direction "
                    f"{study.direction.name.lower()} or a new --study_name"
                ) from None
            # Resuming or joining: a seed of its own, so this worker does not replay the first one's draws.
            study.sampler = sampler((args.sampler_seed + 1000003 * len(study.trials) + os.getpid()) % 2**31)
            return study
    for baseline in _baselines(params, calibrate):
        study.enqueue_trial(baseline, user_attrs={"baseline": True}, skip_if_exists=True)
    return study


def run_search(
    args: argparse.Namespace,
    overrides: Sequence[str] = (),
    build_cli: Callable[..., Any] | None = None,
) -> optuna.Study:
    """Run trials until ``n_trials`` count in the study in total (or the timeout passes), then write outputs."""
    if build_cli is None:
        from helu_lightning.cli import cli as build_cli
    calibrate = None if args.no_calibration else partial(calibrated_alpha, args.config, list(overrides), build_cli)
    try:
        config = _load_config(args.config)
        params = load_space(args.space)
        study = open_study(args, params, calibrate)
    except (FileNotFoundError, ValueError) as err:
        raise SearchSetupError(str(err)) from err
    output_dir = Path(args.output_dir)
    objective = Objective(config, params, list(overrides), output_dir, args.monitor, build_cli)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    while True:
        fail_dead_local_trials(study, args.max_retry)
        if trials_counted(study) >= args.n_trials or (deadline is not None and time.monotonic() >= deadline):
            break
        study.optimize(objective, n_trials=1, gc_after_trial=True)
    write_outputs(study, config, params, output_dir, args.monitor)
    return study


def write_outputs(study: optuna.Study, config: dict, params: list[SearchParam], output_dir: Path, monitor: str) -> None:
    """best.yaml (a fit config), summary.csv (+ printed), and PNG plots of history, importance, alpha vs metric."""
    rows = summary_rows(study, params)
    header = list(rows[0]) if rows else ["number", "state", monitor]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output_dir / "summary.csv", buffer.getvalue())
    print(format_table(rows, header))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        print(f"no trial of study {study.study_name!r} completed yet: no best.yaml or plots written")
        return
    best = study.best_trial
    best_config = apply_params(config, params, best.params)
    note = f"# helu-train search: best of study {study.study_name!r}, trial {best.number}, {monitor}={best.value:.6g}\n"
    atomic_write_text(output_dir / "best.yaml", note + yaml.safe_dump(best_config, sort_keys=False))
    print(f"best trial {best.number}: {monitor}={best.value:.6g} {best.params} -> {output_dir / 'best.yaml'}")
    write_plots(study, params, output_dir / "plots")


def summary_rows(study: optuna.Study, params: list[SearchParam]) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, each parameter, epochs trained and seconds taken."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = None
        if t.datetime_complete and t.datetime_start:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                **{p.name: t.params.get(p.name) for p in params},
                "epochs": t.user_attrs.get("epochs"),
                "seconds": None if seconds is None else round(seconds, 2),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]], header: list[str]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    cells = [header] + [[cell(row[h]) for h in header] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return "\n".join("  ".join(text.rjust(w) for text, w in zip(line, widths)) for line in cells)


def write_plots(study: optuna.Study, params: list[SearchParam], plot_dir: Path) -> list[Path]:
    """Optimisation history, parameter importance (two or more finished trials) and one slice per parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots: dict[str, Callable[[], Any]] = {"history": lambda: ovm.plot_optimization_history(study)}
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 2:
        plots["importance"] = lambda: ovm.plot_param_importances(study)
    for p in params:
        plots[f"{p.name}_vs_metric"] = lambda name=p.name: ovm.plot_slice(study, params=[name])
    written = []
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = plot()
        figure = ax.flat[0].figure if hasattr(ax, "flat") else ax.figure
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(atomic_write_bytes(plot_dir / f"{name}.png", buffer.getvalue()))
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helu-train search",
        description="Optuna search over a fit config; other --options (--trainer.max_epochs 3) go to each trial.",
        allow_abbrev=False,
    )
    parser.add_argument("--config", required=True, help="the YAML that `helu-train fit --config` takes")
    parser.add_argument("--space", help="search space YAML (default: alpha log-uniform in [1e-4, 1])")
    parser.add_argument("--study_name", default="helu-search")
    parser.add_argument(
        "--storage", help="sqlite:///f.db, journal:///f.log or postgresql://...; default output_dir/study.db"
    )
    parser.add_argument("--n_trials", type=int, default=20, help="total trials of the study, over all runs and workers")
    parser.add_argument("--timeout", type=float, help="seconds for this invocation; checked between trials")
    parser.add_argument("--output_dir", default="runs/search")
    parser.add_argument("--monitor", default="val/acc")
    parser.add_argument("--direction", choices=["maximize", "minimize"], default="maximize")
    parser.add_argument("--pruner", choices=PRUNERS, default="median", help="successive_halving: fewest epochs")
    parser.add_argument("--pruner_startup_trials", type=int, default=5, help="median: trials finished before pruning")
    parser.add_argument(
        "--pruner_warmup_epochs", type=int, default=0,
        help="a trial trains at least this many epochs + 1 (successive_halving, hyperband: at least 2)",
    )
    parser.add_argument("--sampler_seed", type=int, default=0)
    parser.add_argument("--sampler_startup_trials", type=int, default=10, help="random trials before TPE models")
    parser.add_argument("--heartbeat_interval", type=int, default=60, help="RDB storages: seconds between heartbeats")
    parser.add_argument(
        "--grace_period", type=int, help="RDB storages: seconds without heartbeat before a trial is failed"
    )
    parser.add_argument(
        "--no_calibration", action="store_true", help="do not enqueue calibration.suggest_alpha's value as a baseline"
    )
    parser.add_argument("--max_retry", type=int, default=3, help="retries of a trial whose worker died")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``helu-train search``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if sum(arg == "--config" or arg.startswith("--config=") for arg in argv) > 1:
        raise SystemExit(
            "helu-train search takes one --config; merge yours into one file first: "
            "helu-train fit --config a.yaml --config b.yaml --print_config > merged.yaml"
        )
    args, overrides = build_parser().parse_known_args(argv)
    if args.n_trials < 1:
        raise SystemExit(f"--n_trials must be at least 1, got {args.n_trials}")
    if args.timeout is not None and (math.isnan(args.timeout) or args.timeout <= 0):
        raise SystemExit(f"--timeout must be a positive number of seconds, got {args.timeout}")
    try:
        run_search(args, overrides)
    except SearchSetupError as err:
        raise SystemExit(f"helu-train search: {err}") from err
