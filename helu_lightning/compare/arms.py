"""The activations under comparison ("arms"), parsed from the command line and checked before any study exists.

Each argument is a registry name (``relu``), ``name:alpha`` (``helu:0.01``), ``name:auto`` (alpha from
``calibration.suggest_alpha`` on the training data, per seed) or a JSON/YAML mapping
(``'{name: leaky_relu, negative_slope: 0.2}'``). A HeLU mapping may carry an alpha ``schedule`` (any
``AlphaScheduler`` schedule): ``'{name: helu, alpha: 1, schedule: {name: cosine, start: 1, end: 0.05}}'`` trains
that arm with an AlphaScheduler. The label, a plain string, is the study's grid value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from helu_lightning.activations import HeLU, activation_factory
from helu_lightning.callbacks.schedules import make_schedule
from helu_lightning.errors import UserError

__all__ = ["Arm", "CompareError", "parse_arm", "parse_arms"]

AUTO = "auto"
SCHEDULE = "schedule"


class CompareError(UserError):
    """A bad ``helu-train compare`` argument or config, found before any study is created or run."""


@dataclass(frozen=True)
class Arm:
    """One activation of the comparison: its label (grid value) and its spec; ``auto`` arms get alpha per run."""

    label: str
    spec: dict[str, Any] = field(default_factory=dict)
    auto: bool = False

    def module_class(self) -> str:
        """Import path of the module class this activation builds (what the ActivationMonitor should watch)."""
        cls = type(activation_factory(self.probe_spec())())
        return f"{cls.__module__}.{cls.__qualname__}"

    def probe_spec(self) -> dict[str, Any]:
        """The activation spec (no schedule) with a placeholder alpha for ``auto`` arms, for checks before the
        calibrated value exists."""
        spec = {k: v for k, v in self.spec.items() if k != SCHEDULE}
        return {**spec, "alpha": 0.05} if self.auto else spec


def _label(spec: Mapping[str, Any]) -> str:
    schedule = spec.get(SCHEDULE)
    if isinstance(schedule, Mapping) and {"start", "end"} <= set(schedule) and set(schedule) <= {"name", "start",
                                                                                                    "end"}:
        return f"{spec['name']}:{schedule['name']}({schedule['start']:g}->{schedule['end']:g})"
    options = {k: v for k, v in spec.items() if k != "name"}
    if not options:
        return str(spec["name"])
    if set(options) == {"alpha"}:
        return f"{spec['name']}:{options['alpha']:g}"
    return f"{spec['name']}(" + ",".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"


def parse_arm(text: str) -> Arm:
    """One ``--activations`` argument as an Arm; CompareError naming the value and the fix when it is bad."""
    text = text.strip()
    auto = False
    if text.startswith("{"):
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise CompareError(f"activation {text!r} is not a valid JSON/YAML mapping: {problem}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise CompareError(f"activation mapping {text!r} needs a 'name' key, e.g. '{{name: helu, alpha: 0.02}}'")
        auto = spec.get("alpha") == AUTO
    elif ":" in text:
        name, _, value = text.partition(":")
        if value == AUTO:
            spec, auto = {"name": name}, True
        else:
            try:
                spec = {"name": name, "alpha": float(value)}
            except ValueError:
                raise CompareError(f"activation {text!r}: after ':' comes alpha (a number > 0) or 'auto', "
                                   f"e.g. helu:0.05 or helu:auto") from None
    elif text:
        spec = {"name": text}
    else:
        raise CompareError("an empty activation name was given; use e.g. --activations relu gelu helu:0.05")
    if auto:
        spec = {k: v for k, v in spec.items() if k != "alpha"}
    arm = Arm(label=_label(spec) + (f":{AUTO}" if auto else ""), spec=spec, auto=auto)
    try:
        module_class = arm.module_class()  # builds one module: unknown names, bad options and alpha <= 0 fail here
        if SCHEDULE in spec:
            make_schedule(spec[SCHEDULE])
    except (ValueError, TypeError, KeyError) as err:
        message = err.args[0] if err.args else str(err)
        raise CompareError(f"activation {text!r}: {message}") from None
    if SCHEDULE in spec and module_class != f"{HeLU.__module__}.{HeLU.__qualname__}":
        raise CompareError(f"activation {text!r}: an alpha schedule needs name: helu (the AlphaScheduler sets HeLU's "
                           "alpha); drop 'schedule' for other activations")
    return arm


def parse_arms(texts: Sequence[str], baseline: str | None) -> tuple[list[Arm], Arm | None]:
    """All arms (distinct labels, at least two) and the baseline arm, matched by label or by argument text."""
    arms = [parse_arm(text) for text in texts]
    labels = [arm.label for arm in arms]
    if len(arms) < 2:
        raise CompareError(f"compare needs at least two activations, got {labels}; e.g. --activations relu helu")
    if duplicates := sorted({label for label in labels if labels.count(label) > 1}):
        raise CompareError(f"activations {duplicates} are given more than once; list each once")
    if baseline is None:
        return arms, None
    wanted = parse_arm(baseline).label if baseline not in labels else baseline
    chosen = next((arm for arm in arms if arm.label == wanted), None)
    if chosen is None:
        raise CompareError(f"baseline {baseline!r} is not among the activations {labels}; add it to --activations "
                           f"or pass --baseline with one of them")
    return arms, chosen
