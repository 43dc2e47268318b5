"""One trial: the sampled values merged into the fit config, a LightningCLI fit, the monitored metric back."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from helu_lightning.callbacks.epochs import EpochCounter
from helu_lightning.callbacks.progress import EpochProgress
from helu_lightning.io import atomic_write_text
from helu_lightning.search.config import logs_into
from helu_lightning.search.options import PRUNERS, SearchSetupError
from helu_lightning.search.space import SearchParam, apply_params, outside_space
from helu_lightning.search.storage import FINISHED, worker_identity

__all__ = ["Objective", "make_pruner"]


def make_pruner(name: str, startup_trials: int, warmup_epochs: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner of this name; reports are 0-based epochs."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)
    # These two cut first at step min_resource (>= 1), the median pruner at warmup.
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup_epochs), reduction_factor=3)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup_epochs), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SearchSetupError(f"unknown pruner {name!r}; use {', '.join(PRUNERS)}")


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
        self.config, self.params, self.overrides = config, params, list(overrides)
        self.output_dir, self.monitor, self.build_cli = Path(output_dir), monitor, build_cli

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", {"trial": trial.number, **worker_identity()})
        values = {p.name: p.suggest(trial) for p in self.params}
        if bad := outside_space(self.params, values):
            # An enqueued trial's fixed values reach here unchecked (Optuna only warns); the storage is shared.
            message = f"values outside the search space: {', '.join(bad)}; trial not run"
            trial.set_user_attr("refused", message)
            print(f"helu-train search: trial {trial.number} has {message}")
            return float("nan")  # Optuna records the trial as failed and goes on
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
        return self._fit(trial, config_path, trial_dir)

    def _fit(self, trial: optuna.Trial, config_path: Path, trial_dir: Path) -> float:
        """Fit the trial's config with a pruning callback and an epoch counter; the monitored metric at the end."""
        from optuna_integration import PyTorchLightningPruningCallback

        counter = EpochCounter()
        pruning = PyTorchLightningPruningCallback(trial, monitor=self.monitor)
        defaults = {"callbacks": [pruning, counter, EpochProgress(self.monitor)], "enable_progress_bar": False,
                    "enable_model_summary": False}
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
