"""AlphaScheduler: change HeLU's alpha during training (constant, linear, cosine, exponential, step, warm-up then
decay, or your own function), per step or per epoch, for all HeLU modules or for groups chosen by module name.

    trainer:
      callbacks:
        - class_path: helu_lightning.callbacks.AlphaScheduler
          init_args:
            schedule: {name: cosine, start: 0.1, end: 0.01}
            interval: step

alpha is a pure function of the optimizer step (``trainer.global_step``) or the epoch, so every DDP rank sets the
same value without communicating, and a resumed run continues the same trajectory. The run's last optimizer step
(or epoch) uses the schedule's ``end`` exactly, so the alpha a checkpoint or export records is ``end``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from ..activations import HeLU, check_alpha
from ..errors import UserError
from .schedules import SCHEDULES, Schedule, ScheduleFn, make_schedule

__all__ = ["SCHEDULES", "AlphaScheduler", "make_schedule"]

@dataclass
class _Group:
    name: str
    pattern: str | None
    schedule: Schedule
    modules: dict[str, HeLU] = field(default_factory=dict)
    total: int | None = None


class AlphaScheduler(Callback):
    """Set the alpha of HeLU modules from a schedule at every optimizer step (``interval='step'``) or epoch.

    ``schedule`` applies to every HeLU module no group claims. ``groups`` is a list of
    ``{pattern: ..., schedule: {...}, name: optional}``; a module belongs to the first group whose pattern matches
    its name in ``pl_module.named_modules()`` (e.g. ``model.layer1.0.relu``). ``match='glob'`` (default) uses
    ``fnmatch`` on the whole name (``*layer1.*``); ``match='regex'`` uses ``re.search`` (anchor with ^ and $).
    Logs ``alpha`` (one schedule) or ``alpha/<group>`` (groups; the rest is ``alpha/default``).
    """

    def __init__(
        self,
        schedule: dict[str, Any] | ScheduleFn | None = None,
        groups: list[dict[str, Any]] | None = None,
        interval: Literal["step", "epoch"] = "step",
        match: Literal["glob", "regex"] = "glob",
        log: bool = True,
    ) -> None:
        if interval not in ("step", "epoch"):
            raise UserError(f"interval must be 'step' or 'epoch', got {interval!r}")
        if match not in ("glob", "regex"):
            raise UserError(f"match must be 'glob' (fnmatch) or 'regex' (re.search), got {match!r}")
        if schedule is None and not groups:
            raise UserError("AlphaScheduler needs a schedule, e.g. {name: cosine, start: 0.1, end: 0.01}, or groups")
        self.interval = interval
        self.match = match
        self.log_alpha = log
        self.groups: list[_Group] = []
        for i, group in enumerate(groups or []):
            if not isinstance(group, Mapping) or "pattern" not in group or "schedule" not in group:
                raise UserError(f"groups[{i}] must be {{pattern: '*layer1.*', schedule: {{...}}}}, got {group!r}")
            unknown = set(group) - {"pattern", "schedule", "name"}
            if unknown:
                raise UserError(f"groups[{i}] has unknown keys {sorted(unknown)}; allowed: pattern, schedule, name")
            pattern = str(group["pattern"])
            if match == "regex":
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise UserError(f"groups[{i}]: pattern {pattern!r} is not a valid regex: {err}") from err
            self.groups.append(_Group(str(group.get("name", pattern)), pattern, make_schedule(group["schedule"])))
        if schedule is not None:
            self.groups.append(_Group("default", None, make_schedule(schedule)))
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise UserError(f"AlphaScheduler group names must be unique, got {names}; give each group a 'name'")
        self._last_t: int | None = None
        self._loaded_totals: dict[str, int] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(groups=[g.name for g in self.groups], interval=self.interval)

    def alphas(self) -> dict[str, float]:
        """The alpha most recently set, per group name."""
        return {g.name: float(next(iter(g.modules.values())).alpha) for g in self.groups if g.modules}

    def _matches(self, pattern: str, name: str) -> bool:
        return fnmatch.fnmatchcase(name, pattern) if self.match == "glob" else re.search(pattern, name) is not None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        helus = {name: m for name, m in pl_module.named_modules() if isinstance(m, HeLU)}
        if not helus:
            raise UserError(
                f"AlphaScheduler found no HeLU module in {type(pl_module).__name__}; train with "
                "activation {name: helu, alpha: ...} or remove the AlphaScheduler callback"
            )
        for group in self.groups:
            group.modules = {}
        for name, module in helus.items():
            for group in self.groups:
                if group.pattern is None or self._matches(group.pattern, name):
                    group.modules[name] = module
                    break
        for group in self.groups:
            if group.pattern is not None and not group.modules:
                listed = ", ".join(list(helus)[:20]) + (" ..." if len(helus) > 20 else "")
                raise UserError(
                    f"AlphaScheduler group {group.name!r}: pattern {group.pattern!r} ({self.match}) matches no HeLU "
                    f"module (or only ones an earlier group took). HeLU modules: {listed}"
                )

    def _run_length(self, trainer: pl.Trainer) -> int | None:
        """Optimizer steps (after limit_train_batches, accumulate_grad_batches, max_steps) or epochs the run
        takes, so that the last one is ``total - 1``; None when the run has no fixed length."""
        stepping = trainer.estimated_stepping_batches
        steps = int(stepping) if math.isfinite(stepping) else None
        if self.interval == "step":
            return steps
        epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        batches = trainer.num_training_batches
        if trainer.max_steps is not None and trainer.max_steps > 0 and math.isfinite(batches) and batches > 0:
            per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)  # a short last group still steps
            by_steps = math.ceil(trainer.max_steps / per_epoch)  # max_steps may end the run before max_epochs
            epochs = by_steps if epochs is None else min(epochs, by_steps)
        return epochs

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        length = None
        for group in self.groups:
            if self._loaded_totals is not None and group.name in self._loaded_totals:
                group.total = self._loaded_totals[group.name]
                continue
            group.total = group.schedule.total
            length = self._run_length(trainer) if length is None else length
            if group.total is None:
                group.total = length
            elif length is not None and group.total > length and group.schedule.name in ("linear", "cosine",
                                                                                          "warmup"):
                rank_zero_warn(
                    f"AlphaScheduler group {group.name!r}: total={group.total} {self.interval}s is longer than the "
                    f"run's {length}, so alpha stops at {group.schedule(length - 1, group.total):.4g}, short of its "
                    f"end; drop 'total' to end with the run, or give total <= {length}"
                )
            if group.total is None and group.schedule.name not in ("constant", "step", "exponential"):
                raise UserError(
                    f"AlphaScheduler group {group.name!r}: the run has no fixed length (max_steps/max_epochs), so "
                    f"give the schedule a 'total' in {self.interval}s"
                )
            short = group.schedule.check_length(group.total, self.interval)
            if short is not None:
                rank_zero_warn(f"AlphaScheduler group {group.name!r}: {short}")
        self._last_t = None
        self._apply(pl_module, trainer.global_step if self.interval == "step" else trainer.current_epoch)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.interval == "step":
            self._apply(pl_module, trainer.global_step)
            if self.log_alpha:
                for name, value in self._log_items():
                    pl_module.log(name, value, on_step=True, on_epoch=False, batch_size=1)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval == "epoch":
            self._apply(pl_module, trainer.current_epoch)
            if self.log_alpha:
                for name, value in self._log_items():
                    pl_module.log(name, value, on_step=False, on_epoch=True, batch_size=1)

    def _log_items(self) -> list[tuple[str, float]]:
        alphas = self.alphas()
        if len(self.groups) == 1:
            return [("alpha", v) for v in alphas.values()]
        return [(f"alpha/{name}", v) for name, v in alphas.items()]

    def _apply(self, pl_module: pl.LightningModule, t: int) -> None:
        if t == self._last_t:
            return
        for group in self.groups:
            if not group.modules:
                continue
            raw = group.schedule(t, group.total if group.total is not None else 0)
            try:
                alpha = check_alpha(raw)
            except ValueError as err:
                raise UserError(
                    f"AlphaScheduler group {group.name!r} ({group.schedule.name}) gave alpha={raw!r} at "
                    f"{self.interval} {t}: {err}"
                ) from err
            for module in group.modules.values():
                module.set_alpha(alpha)
        self._last_t = t

    def state_dict(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "totals": {g.name: g.total for g in self.groups},
            "last_t": self._last_t,
            "alphas": self.alphas(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = sorted(state_dict.get("totals", {}))
        current = sorted(g.name for g in self.groups)
        if saved != current or state_dict.get("interval") != self.interval:
            raise UserError(
                f"the checkpoint's AlphaScheduler had groups {saved} per {state_dict.get('interval')}, this one has "
                f"{current} per {self.interval}; resume with the same scheduler settings"
            )
        self._loaded_totals = dict(state_dict["totals"])
