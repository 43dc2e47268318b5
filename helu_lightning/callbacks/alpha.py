"""AlphaScheduler: change HeLU's alpha during training (constant, linear, cosine, exponential, step, warm-up then
decay, or your own function), per step or per epoch, for all HeLU modules or for groups chosen by module name.

    trainer:
      callbacks:
        - class_path: helu_lightning.callbacks.AlphaScheduler
          init_args:
            schedule: {name: cosine, start: 0.1, end: 0.01}
            interval: step

alpha is a pure function of the optimizer step (``trainer.global_step``) or the epoch, so every DDP rank sets the
same value without communicating, and a resumed run continues the same trajectory.
"""

from __future__ import annotations

import bisect
import difflib
import fnmatch
import importlib
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from ..activations import HeLU, check_alpha

__all__ = ["SCHEDULES", "AlphaScheduler", "make_schedule"]

ScheduleFn = Callable[[int, int], float]


def _positive(schedule: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"schedule {schedule!r}: {key} must be a positive finite number, got {value!r}")
    return float(value)


def _count(schedule: str, key: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"schedule {schedule!r}: {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _progress(t: int, total: int) -> float:
    return min(max(t / total, 0.0), 1.0) if total > 0 else 1.0


def _cosine(start: float, end: float, p: float) -> float:
    return end + (start - end) * (1.0 + math.cos(math.pi * p)) / 2.0


# Each schedule is a module-level value function bound to its checked parameters with functools.partial, so a
# built schedule pickles (ddp_spawn, deepcopy) and is called as f(t, total).


def _constant_at(t: int, total: int, value: float) -> float:
    return value


def _linear_at(t: int, total: int, start: float, end: float) -> float:
    return start + (end - start) * _progress(t, total)


def _cosine_at(t: int, total: int, start: float, end: float) -> float:
    return _cosine(start, end, _progress(t, total))


def _exponential_at(t: int, total: int, start: float, gamma: float, end: float | None) -> float:
    value = start * gamma**t
    if end is None:
        return value
    return max(value, end) if gamma < 1 else min(value, end)


def _step_at(t: int, total: int, values: list[float], milestones: list[int]) -> float:
    return values[bisect.bisect_right(milestones, t)]


def _warmup_at(t: int, total: int, start: float, peak: float, end: float, warmup: int, decay: str) -> float:
    if t < warmup:
        return start + (peak - start) * t / warmup
    p = _progress(t - warmup, total - warmup)
    return _cosine(peak, end, p) if decay == "cosine" else peak + (end - peak) * p


def _callable_at(t: int, total: int, fn: Callable[..., float], kwargs: dict[str, Any]) -> float:
    return fn(t, total, **kwargs)


def _constant(value: float) -> ScheduleFn:
    return partial(_constant_at, value=_positive("constant", "value", value))


def _linear(start: float, end: float) -> ScheduleFn:
    return partial(_linear_at, start=_positive("linear", "start", start), end=_positive("linear", "end", end))


def _cosine_schedule(start: float, end: float) -> ScheduleFn:
    return partial(_cosine_at, start=_positive("cosine", "start", start), end=_positive("cosine", "end", end))


def _exponential(start: float, gamma: float, end: float | None = None) -> ScheduleFn:
    return partial(_exponential_at, start=_positive("exponential", "start", start),
                   gamma=_positive("exponential", "gamma", gamma),
                   end=None if end is None else _positive("exponential", "end", end))


def _step(values: list[float], milestones: list[int]) -> ScheduleFn:
    values = [_positive("step", f"values[{i}]", v) for i, v in enumerate(values)]
    milestones = [_count("step", f"milestones[{i}]", m) for i, m in enumerate(milestones)]
    if len(values) != len(milestones) + 1:
        raise ValueError(
            f"schedule 'step' needs one more value than milestones (the value before the first milestone), got "
            f"{len(values)} values {values} and {len(milestones)} milestones {milestones}"
        )
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise ValueError(f"schedule 'step': milestones must be strictly increasing, got {milestones}")
    return partial(_step_at, values=values, milestones=milestones)


def _warmup(start: float, peak: float, end: float, warmup: int, decay: str = "cosine") -> ScheduleFn:
    if decay not in ("cosine", "linear"):
        raise ValueError(f"schedule 'warmup': decay must be 'cosine' or 'linear', got {decay!r}")
    return partial(_warmup_at, start=_positive("warmup", "start", start), peak=_positive("warmup", "peak", peak),
                   end=_positive("warmup", "end", end), warmup=_count("warmup", "warmup", warmup), decay=decay)


def _import(path: str) -> Callable[..., Any]:
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    if not module_name:
        raise ValueError(
            f"schedule 'callable': fn must be a dotted import path like 'my_pkg.schedules.f', got {path!r}"
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"schedule 'callable': cannot import fn {path!r}: {err}") from err
    if not callable(fn):
        raise ValueError(f"schedule 'callable': {path!r} is not callable")
    return fn


def _callable(fn: str | Callable[..., float], kwargs: Mapping[str, Any] | None = None) -> ScheduleFn:
    fn = _import(fn) if isinstance(fn, str) else fn
    if not callable(fn):
        raise ValueError(f"schedule 'callable': fn must be a callable or a dotted import path, got {fn!r}")
    return partial(_callable_at, fn=fn, kwargs=dict(kwargs or {}))


# name -> builder taking the schedule's parameters; every schedule is then called as f(t, total) -> alpha.
SCHEDULES: dict[str, Callable[..., ScheduleFn]] = {
    "constant": _constant,
    "linear": _linear,
    "cosine": _cosine_schedule,
    "exponential": _exponential,
    "step": _step,
    "warmup": _warmup,
    "callable": _callable,
}


@dataclass
class _Schedule:
    """A built schedule: ``fn(t, total)`` plus its optional fixed length ``total`` (in steps or epochs)."""

    name: str
    fn: ScheduleFn
    total: int | None = None

    def __call__(self, t: int, total: int) -> float:
        return self.fn(t, total)


def make_schedule(spec: Mapping[str, Any] | ScheduleFn) -> _Schedule:
    """Build a schedule from ``{name: cosine, start: 0.1, end: 0.01, total: 1000}`` or a function ``f(t, total)``.

    Parameters per name (``total`` is optional for all; it defaults to the run's length in the interval unit):
    constant(value); linear(start, end); cosine(start, end); exponential(start, gamma, end=None) = start*gamma**t
    bounded by end; step(values, milestones); warmup(start, peak, end, warmup, decay='cosine'|'linear');
    callable(fn: 'pkg.module.function', kwargs={}) calling fn(t, total, **kwargs).
    """
    if callable(spec) and not isinstance(spec, Mapping):
        return _Schedule("callable", _callable(spec))
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(
            f"a schedule is a mapping with a 'name' key, e.g. {{name: cosine, start: 0.1, end: 0.01}}, or a function "
            f"f(t, total) -> alpha; got {spec!r}. Known schedules: {', '.join(SCHEDULES)}"
        )
    params = dict(spec)
    name = str(params.pop("name")).lower()
    if name not in SCHEDULES:
        close = difflib.get_close_matches(name, SCHEDULES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown alpha schedule {name!r}.{hint} Known schedules: {', '.join(SCHEDULES)}")
    total = params.pop("total", None)
    if total is not None:
        total = _count(name, "total", total, minimum=1)
    try:
        fn = SCHEDULES[name](**params)
    except TypeError as err:
        raise ValueError(f"schedule {name!r} got parameters {sorted(params)}: {err}. {make_schedule.__doc__}") from err
    return _Schedule(name, fn, total)


@dataclass
class _Group:
    name: str
    pattern: str | None
    schedule: _Schedule
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
            raise ValueError(f"interval must be 'step' or 'epoch', got {interval!r}")
        if match not in ("glob", "regex"):
            raise ValueError(f"match must be 'glob' (fnmatch) or 'regex' (re.search), got {match!r}")
        if schedule is None and not groups:
            raise ValueError("AlphaScheduler needs a schedule, e.g. {name: cosine, start: 0.1, end: 0.01}, or groups")
        self.interval = interval
        self.match = match
        self.log_alpha = log
        self.groups: list[_Group] = []
        for i, group in enumerate(groups or []):
            if not isinstance(group, Mapping) or "pattern" not in group or "schedule" not in group:
                raise ValueError(f"groups[{i}] must be {{pattern: '*layer1.*', schedule: {{...}}}}, got {group!r}")
            unknown = set(group) - {"pattern", "schedule", "name"}
            if unknown:
                raise ValueError(f"groups[{i}] has unknown keys {sorted(unknown)}; allowed: pattern, schedule, name")
            pattern = str(group["pattern"])
            if match == "regex":
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise ValueError(f"groups[{i}]: pattern {pattern!r} is not a valid regex: {err}") from err
            self.groups.append(_Group(str(group.get("name", pattern)), pattern, make_schedule(group["schedule"])))
        if schedule is not None:
            self.groups.append(_Group("default", None, make_schedule(schedule)))
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"AlphaScheduler group names must be unique, got {names}; give each group a 'name'")
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
            raise ValueError(
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
                raise ValueError(
                    f"AlphaScheduler group {group.name!r}: pattern {group.pattern!r} ({self.match}) matches no HeLU "
                    f"module (or only ones an earlier group took). HeLU modules: {listed}"
                )

    def _run_length(self, trainer: pl.Trainer) -> int | None:
        if self.interval == "epoch":
            return trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        steps = trainer.estimated_stepping_batches
        return int(steps) if math.isfinite(steps) else None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        length = None
        for group in self.groups:
            if self._loaded_totals is not None and group.name in self._loaded_totals:
                group.total = self._loaded_totals[group.name]
                continue
            group.total = group.schedule.total
            if group.total is None:
                length = self._run_length(trainer) if length is None else length
                group.total = length
            if group.total is None and group.schedule.name not in ("constant", "step", "exponential"):
                raise ValueError(
                    f"AlphaScheduler group {group.name!r}: the run has no fixed length (max_steps/max_epochs), so "
                    f"give the schedule a 'total' in {self.interval}s"
                )
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
                raise ValueError(
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
            raise ValueError(
                f"the checkpoint's AlphaScheduler had groups {saved} per {state_dict.get('interval')}, this one has "
                f"{current} per {self.interval}; resume with the same scheduler settings"
            )
        self._loaded_totals = dict(state_dict["totals"])
