"""The search space: what is sampled, checked before any study exists, and how a sample is written into a config."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna
import yaml

from helu_lightning.search.options import SearchSetupError

__all__ = ["ALPHA_BASELINE", "KNOWN_PARAMS", "SearchParam", "apply_params", "load_space", "outside_space",
           "yaml_problem"]

ALPHA_BASELINE = 0.05
ALPHA_TARGET = "model.init_args.activation.alpha"
SCHEDULE_TARGET = "trainer.callbacks"
SCHEDULE_SHAPES = ("constant", "linear", "cosine")
SCHEDULE_END_RATIO = 0.1
TYPES = ("float", "int", "categorical")

# Names a space file may use without a `target`; any other name must say where it goes.
KNOWN_PARAMS: dict[str, dict[str, Any]] = {
    "alpha": {"target": ALPHA_TARGET, "low": 1e-4, "high": 1.0, "log": True},
    "lr": {"target": "model.init_args.optimizer.init_args.lr", "low": 1e-4, "high": 1e-1, "log": True},
    "weight_decay": {
        "target": "model.init_args.optimizer.init_args.weight_decay", "low": 1e-6, "high": 1e-2, "log": True
    },
    "schedule": {"target": SCHEDULE_TARGET, "type": "categorical", "choices": list(SCHEDULE_SHAPES)},
}
DEFAULT_SPACE = {"alpha": {}}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class SearchParam:
    """One searched value: its Optuna distribution and the dotted config path it is written to.

    Built only from valid values: every mistake is a SearchSetupError naming the parameter, before a study exists.
    """

    name: str
    target: str
    type: str = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            self._fail(f"type must be float, int or categorical, got {self.type!r}")
        if not isinstance(self.target, str) or not all(self.target.split(".")):
            self._fail(f"target must be a dotted config path such as model.init_args.x, got {self.target!r}")
        if not isinstance(self.log, bool):
            self._fail(f"log must be true or false, got {self.log!r}")
        if self.type == "categorical":
            self._check_choices()
        else:
            self._check_range()

    def _fail(self, problem: str) -> None:
        raise SearchSetupError(f"search parameter {self.name!r}: {problem}")

    @property
    def is_alpha(self) -> bool:
        """Whether the value is HeLU's alpha, which must be positive."""
        return self.target == ALPHA_TARGET or self.target.endswith(".activation.alpha")

    def _check_choices(self) -> None:
        if not isinstance(self.choices, list) or not self.choices:
            self._fail(f"a categorical needs 'choices', a non-empty list such as [0.01, 0.05], got {self.choices!r}")
        if odd := [c for c in self.choices if not (c is None or isinstance(c, (bool, int, float, str)))]:
            self._fail(f"choices must be numbers, strings, booleans or null, got {odd!r}")
        if self.is_alpha and (bad := [c for c in self.choices if not (_is_number(c) and c > 0)]):
            self._fail(f"alpha must be a positive finite number; remove {bad!r} from the choices")
        if self.target == SCHEDULE_TARGET and (bad := [c for c in self.choices if c not in SCHEDULE_SHAPES]):
            self._fail(f"choices are {', '.join(SCHEDULE_SHAPES)}; remove {bad!r}")

    def _check_range(self) -> None:
        for key in ("low", "high"):
            value = getattr(self, key)
            if not _is_number(value):
                self._fail(f"{key} must be a finite number, got {value!r}")
            if self.type == "int" and not float(value).is_integer():
                self._fail(f"an int range needs whole numbers, got {key}={value!r}; use type: float")
        if not self.low < self.high:
            self._fail(f"needs low < high, got low={self.low!r} high={self.high!r}")
        if self.is_alpha and self.low <= 0:
            self._fail(f"alpha must be positive, got low={self.low!r}; try low: 1.0e-4")
        if self.log and self.low <= 0:
            self._fail(f"a log range needs low > 0, got low={self.low!r}")
        if self.step is not None:
            self._check_step()

    def _check_step(self) -> None:
        if not _is_number(self.step) or self.step <= 0:
            self._fail(f"step must be a positive number, got {self.step!r}")
        if self.type == "int" and not float(self.step).is_integer():
            self._fail(f"an int step must be a whole number, got step={self.step!r}")
        if self.step > self.high - self.low:
            self._fail(f"step={self.step!r} is wider than the range [{self.low!r}, {self.high!r}]")
        if self.log and (self.type == "float" or self.step != 1):
            self._fail("a log range takes no step; drop one of them")

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample this parameter in ``trial``."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this parameter's range or choices (a value of another type never does)."""
        if self.type == "categorical":
            return any((type(value) is bool) == (type(choice) is bool) and value == choice for choice in self.choices)
        if not _is_number(value) or (self.type == "int" and not float(value).is_integer()):
            return False
        return float(self.low) <= float(value) <= float(self.high)

    def extremes(self) -> tuple[Any, Any]:
        """The first and last value this parameter can take (a trial config is checked at both)."""
        if self.type == "categorical":
            return self.choices[0], self.choices[-1]
        cast = int if self.type == "int" else float
        return cast(self.low), cast(self.high)


def outside_space(params: Sequence[SearchParam], values: Mapping[str, Any]) -> list[str]:
    """``name=value`` for each of ``values`` that ``params`` does not allow (a name it lacks, or a value outside
    its range or choices): a study storage is shared, so trials in it may come from another space or another hand."""
    known = {p.name: p for p in params}
    return [f"{name}={value!r}" for name, value in values.items()
            if name not in known or not known[name].contains(value)]


def yaml_problem(err: Exception) -> str:
    """A YAML error in one line: where and what (PyYAML's own message spans several lines)."""
    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(err).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _read_space(source: str | os.PathLike | Mapping[str, Any] | None) -> Any:
    if source is None:
        return DEFAULT_SPACE
    if isinstance(source, Mapping):
        return source
    path = Path(source)
    if not path.is_file():
        raise SearchSetupError(f"search space file {str(path)!r} does not exist; see configs/search/*.yaml")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SearchSetupError(f"search space file {str(path)!r} is not valid YAML ({yaml_problem(err)})") from err


def load_space(source: str | os.PathLike | Mapping[str, Any] | None = None) -> list[SearchParam]:
    """Read a search space (YAML file or mapping ``name -> {low, high, log, choices, target}``); None: alpha only."""
    spec = _read_space(source)
    if not isinstance(spec, Mapping) or not spec:
        raise SearchSetupError(f"a search space is a non-empty mapping name -> {{low, high, log}}, got {spec!r}")
    allowed = {f.name for f in fields(SearchParam)} - {"name"}
    params = []
    for name, options in spec.items():
        if not isinstance(options, (Mapping, type(None))):
            raise SearchSetupError(
                f"search parameter {name!r}: expected a mapping such as {{low: 0.001, high: 0.5}}, got {options!r}"
            )
        options = dict(options or {})
        if name not in KNOWN_PARAMS and "target" not in options:
            raise SearchSetupError(
                f"unknown search parameter {name!r}: known ones are {', '.join(KNOWN_PARAMS)}; "
                f"for anything else give its config path, e.g. "
                f"{name}: {{target: model.init_args.{name}, low: ..., high: ...}}"
            )
        if unknown := sorted(set(options) - allowed, key=str):
            raise SearchSetupError(f"search parameter {name!r}: unknown keys {unknown}; allowed: {sorted(allowed)}")
        known = KNOWN_PARAMS.get(name, {})
        if options.get("type", known.get("type")) == "categorical":  # a known range does not apply to choices
            known = {k: v for k, v in known.items() if k in ("target", "type", "choices")}
        params.append(SearchParam(name=str(name), **{**known, **options}))
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
                raise SearchSetupError(
                    f"search parameter {param.name!r}: config value at {path!r} is {child!r}, not a mapping"
                )
            node = child
        node[leaf] = values[param.name]
    return config


def _alpha_of(config: Mapping[str, Any], params: Sequence[SearchParam], values: Mapping[str, Any]) -> float:
    """The trial's alpha: sampled, else the config's, else HeLU's default."""
    if "alpha" in values:
        return float(values["alpha"])
    node: Any = config
    for key in next((p.target for p in params if p.name == "alpha"), ALPHA_TARGET).split("."):
        node = node.get(key) if isinstance(node, Mapping) else None
    return float(node) if isinstance(node, (int, float)) else ALPHA_BASELINE


def _add_schedule(config: dict, shape: str, alpha: float) -> None:
    """Decay alpha from its value to a tenth of it with an AlphaScheduler of this shape; 'constant' adds none."""
    if shape == "constant":
        return
    if shape not in SCHEDULE_SHAPES:
        raise SearchSetupError(f"search parameter 'schedule': choices are {', '.join(SCHEDULE_SHAPES)}; got {shape!r}")
    trainer = config["trainer"] = config.get("trainer") or {}
    callbacks = [c for c in trainer.get("callbacks") or [] if "AlphaScheduler" not in str(c.get("class_path", ""))]
    schedule = {"name": shape, "start": alpha, "end": alpha * SCHEDULE_END_RATIO}
    callbacks.append({"class_path": "helu_lightning.callbacks.AlphaScheduler", "init_args": {"schedule": schedule}})
    trainer["callbacks"] = callbacks
