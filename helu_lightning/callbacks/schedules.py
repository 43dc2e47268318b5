"""Alpha schedules: each is a module-level value function ``f(t, total) -> alpha`` bound to its checked parameters
with ``functools.partial``, so a built schedule pickles (``ddp_spawn``, deepcopy). Parameters are checked when the
schedule is built, so a schedule that would give an invalid alpha later in training is refused up front.
"""

from __future__ import annotations

import bisect
import difflib
import importlib
import math
import numbers
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..errors import UserError

__all__ = ["SCHEDULES", "Schedule", "ScheduleError", "ScheduleFn", "make_schedule"]


class ScheduleError(UserError):
    """An alpha schedule whose parameters cannot give a valid alpha (the message names the key and the fix)."""


ScheduleFn = Callable[[int, int], float]


def _positive(schedule: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ScheduleError(f"schedule {schedule!r}: {key} must be a positive finite number, got {value!r}")
    return float(value)


def _count(schedule: str, key: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ScheduleError(f"schedule {schedule!r}: {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _progress(t: int, total: int) -> float:
    """How far step ``t`` is through a run of ``total`` steps numbered 0 .. total-1: 0.0 at the first step, 1.0
    exactly at the last (so a schedule's last step uses its ``end``), clamped outside the run."""
    return min(max(t / (total - 1), 0.0), 1.0) if total > 1 else 1.0


def _between(start: float, end: float, weight: float) -> float:
    """``start`` at weight 1, ``end`` at weight 0, exactly: no rounding leaves the last step at end + 4e-18."""
    return start * weight + end * (1.0 - weight)


def _cosine(start: float, end: float, p: float) -> float:
    return _between(start, end, (1.0 + math.cos(math.pi * p)) / 2.0)


def _constant_at(t: int, total: int, value: float) -> float:
    return value


def _linear_at(t: int, total: int, start: float, end: float) -> float:
    return _between(start, end, 1.0 - _progress(t, total))


def _cosine_at(t: int, total: int, start: float, end: float) -> float:
    return _cosine(start, end, _progress(t, total))


def _exponential_at(t: int, total: int, start: float, gamma: float, end: float | None) -> float:
    # Compare exponents first: past end, start * gamma**t itself would overflow for a growing schedule.
    if end is not None and (t * math.log(gamma) - math.log(end / start)) * (1 if gamma > 1 else -1) >= 0:
        return end
    # Without an end, a shrinking schedule would underflow to 0.0, which HeLU refuses; it levels off at the
    # smallest positive float instead: ReLU's gradient in every dtype (alpha -> 0 recovers ReLU).
    return max(start * gamma**t, sys.float_info.min)


def _step_at(t: int, total: int, values: list[float], milestones: list[int]) -> float:
    return values[bisect.bisect_right(milestones, t)]


def _warmup_at(t: int, total: int, start: float, peak: float, end: float, warmup: int, decay: str) -> float:
    if t < warmup:
        return _between(start, peak, 1.0 - t / warmup)
    p = _progress(t - warmup, total - warmup)  # the decay's steps are warmup .. total-1
    return _cosine(peak, end, p) if decay == "cosine" else _between(peak, end, 1.0 - p)


def _callable_at(t: int, total: int, fn: Callable[..., float], kwargs: dict[str, Any]) -> float:
    return fn(t, total, **kwargs)


def _constant(value: float) -> ScheduleFn:
    return partial(_constant_at, value=_positive("constant", "value", value))


def _linear(start: float, end: float) -> ScheduleFn:
    return partial(_linear_at, start=_positive("linear", "start", start), end=_positive("linear", "end", end))


def _cosine_schedule(start: float, end: float) -> ScheduleFn:
    return partial(_cosine_at, start=_positive("cosine", "start", start), end=_positive("cosine", "end", end))


def _exponential(start: float, gamma: float, end: float | None = None) -> ScheduleFn:
    start, gamma = _positive("exponential", "start", start), _positive("exponential", "gamma", gamma)
    end = None if end is None else _positive("exponential", "end", end)
    if gamma > 1 and end is None:
        raise ScheduleError(f"schedule 'exponential': gamma={gamma} > 1 grows alpha without bound until it "
                            f"overflows; give end, the ceiling it stops at (e.g. end: {start * 10:g})")
    if end is not None:
        if gamma == 1:
            raise ScheduleError(f"schedule 'exponential': gamma=1 keeps alpha at start={start} and never reaches "
                                f"end={end}; use a constant schedule, or gamma < 1 to shrink and > 1 to grow")
        if (gamma < 1) != (end < start):
            change, side = ("shrinks", "below") if gamma < 1 else ("grows", "above")
            raise ScheduleError(f"schedule 'exponential': gamma={gamma} {change} alpha from start={start}, so end "
                                f"must lie {side} start, got end={end}; swap start and end, or invert gamma")
    return partial(_exponential_at, start=start, gamma=gamma, end=end)


def _step(values: list[float], milestones: list[int]) -> ScheduleFn:
    values = [_positive("step", f"values[{i}]", v) for i, v in enumerate(values)]
    milestones = [_count("step", f"milestones[{i}]", m) for i, m in enumerate(milestones)]
    if len(values) != len(milestones) + 1:
        raise ScheduleError(
            f"schedule 'step' needs one more value than milestones (the value before the first milestone), got "
            f"{len(values)} values {values} and {len(milestones)} milestones {milestones}"
        )
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise ScheduleError(f"schedule 'step': milestones must be strictly increasing, got {milestones}")
    return partial(_step_at, values=values, milestones=milestones)


def _warmup(start: float, peak: float, end: float, warmup: int, decay: str = "cosine") -> ScheduleFn:
    if decay not in ("cosine", "linear"):
        raise ScheduleError(f"schedule 'warmup': decay must be 'cosine' or 'linear', got {decay!r}")
    return partial(_warmup_at, start=_positive("warmup", "start", start), peak=_positive("warmup", "peak", peak),
                   end=_positive("warmup", "end", end), warmup=_count("warmup", "warmup", warmup), decay=decay)


def _import(path: str) -> Callable[..., Any]:
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    if not module_name:
        raise ScheduleError(
            f"schedule 'callable': fn must be a dotted import path like 'my_pkg.schedules.f', got {path!r}"
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ScheduleError(f"schedule 'callable': cannot import fn {path!r}: {err}") from err
    if not callable(fn):
        raise ScheduleError(f"schedule 'callable': {path!r} is not callable")
    return fn


def _callable(fn: str | Callable[..., float], kwargs: Mapping[str, Any] | None = None) -> ScheduleFn:
    fn = _import(fn) if isinstance(fn, str) else fn
    if not callable(fn):
        raise ScheduleError(f"schedule 'callable': fn must be a callable or a dotted import path, got {fn!r}")
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
class Schedule:
    """A built schedule: ``fn(t, total)`` plus its optional fixed length ``total`` (in steps or epochs)."""

    name: str
    fn: ScheduleFn
    total: int | None = None

    def __call__(self, t: int, total: int) -> float:
        return self.fn(t, total)

    def check_length(self, total: int | None, unit: str) -> str | None:
        """Refuse a run too short for the schedule to reach its ``end`` (a warm-up as long as the run); return a
        warning when an exponential's ``end`` is a bound it does not reach by the last step, else None."""
        params = getattr(self.fn, "keywords", {})
        if total is None:
            return None
        if self.name == "warmup" and params["warmup"] >= total:
            raise ScheduleError(
                f"schedule 'warmup': warmup={params['warmup']} {unit}s leaves no decay in a run of {total} {unit}s, "
                f"so alpha never reaches end={params['end']}; make warmup at most {total - 1}"
            )
        if self.name == "exponential" and params["end"] is not None:
            last = _exponential_at(total - 1, total, params["start"], params["gamma"], params["end"])
            if last != params["end"]:
                gamma = (params["end"] / params["start"]) ** (1 / (total - 1)) if total > 1 else params["gamma"]
                return (f"schedule 'exponential': start={params['start']} * gamma={params['gamma']}**t reaches "
                        f"{last:.4g} at the last {unit} ({total - 1}), not end={params['end']} (a bound, not a "
                        f"target); gamma={gamma:.6g} ends exactly there")
        return None


def make_schedule(spec: Mapping[str, Any] | ScheduleFn) -> Schedule:
    """Build a schedule from ``{name: cosine, start: 0.1, end: 0.01, total: 1000}`` or a function ``f(t, total)``.

    Parameters per name (``total`` is optional for all; it defaults to the run's length in the interval unit;
    steps or epochs are numbered 0 .. total-1, and linear, cosine and warmup give ``end`` exactly at total-1):
    constant(value); linear(start, end); cosine(start, end); exponential(start, gamma, end=None) = start*gamma**t
    bounded by end; step(values, milestones); warmup(start, peak, end, warmup, decay='cosine'|'linear');
    callable(fn: 'pkg.module.function', kwargs={}) calling fn(t, total, **kwargs).
    """
    if callable(spec) and not isinstance(spec, Mapping):
        return Schedule("callable", _callable(spec))
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ScheduleError(
            f"a schedule is a mapping with a 'name' key, e.g. {{name: cosine, start: 0.1, end: 0.01}}, or a function "
            f"f(t, total) -> alpha; got {spec!r}. Known schedules: {', '.join(SCHEDULES)}"
        )
    params = dict(spec)
    name = str(params.pop("name")).lower()
    if name not in SCHEDULES:
        close = difflib.get_close_matches(name, SCHEDULES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ScheduleError(f"unknown alpha schedule {name!r}.{hint} Known schedules: {', '.join(SCHEDULES)}")
    total = params.pop("total", None)
    if total is not None:
        total = _count(name, "total", total, minimum=1)
    try:
        fn = SCHEDULES[name](**params)
    except TypeError as err:
        raise ScheduleError(f"schedule {name!r} got parameters {sorted(params)}: {err}. "
                            f"{make_schedule.__doc__}") from err
    return Schedule(name, fn, total)
