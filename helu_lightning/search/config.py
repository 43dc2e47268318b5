"""The fit config a search starts from: several files composed in order, and checked by the CLI parser up front."""

from __future__ import annotations

import contextlib
import copy
import difflib
import io
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from helu_lightning.search.options import SearchSetupError
from helu_lightning.search.space import SearchParam, apply_params

__all__ = ["check_trial_config", "compose_configs", "logs_into"]


def _read_config(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise SearchSetupError(f"config {path!r} does not exist; pass the YAML you give `helu-train fit --config`")
    try:
        config = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SearchSetupError(f"config {path!r} is not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise SearchSetupError(f"config {path!r} is not a YAML mapping of fit options")
    return config


def _merge(base: dict, update: Mapping[str, Any]) -> dict:
    """``update`` merged into ``base`` as jsonargparse merges a later ``--config``: mappings merge key by key, a
    mapping naming another ``class_path`` replaces the earlier one, ``key+: [...]`` appends, anything else replaces."""
    for key, value in update.items():
        if isinstance(key, str) and key.endswith("+"):
            earlier = base.get(key[:-1])
            earlier = [] if earlier is None else earlier if isinstance(earlier, list) else [earlier]
            base[key[:-1]] = earlier + copy.deepcopy(value if isinstance(value, list) else [value])
            continue
        earlier = base.get(key)
        if (
            isinstance(value, Mapping)
            and isinstance(earlier, dict)
            and value.get("class_path", earlier.get("class_path")) == earlier.get("class_path")
        ):
            _merge(earlier, value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def compose_configs(paths: Iterable[str]) -> dict:
    """The fit configs read and composed in order, later files overriding earlier ones (``fit --config a --config b``)."""
    composed: dict = {}
    for path in paths:
        _merge(composed, _read_config(path))
    return composed


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


def check_trial_config(
    config: Mapping[str, Any],
    params: Sequence[SearchParam],
    overrides: Sequence[str],
    build_cli: Callable[..., Any],
    search_flags: Sequence[str] = (),
) -> None:
    """Parse the trial config at each end of the space, with the overrides, as every trial will (nothing is built).

    A mistyped config key or option fails here, once, instead of in every trial; an option close to one of
    ``search_flags`` is named as the likely typo.
    """
    for end in (0, 1):
        values = {p.name: p.extremes()[end] for p in params}
        try:
            _parse(apply_params(config, params, values), overrides, build_cli)
        except SearchSetupError as err:
            raise SearchSetupError(f"{_typo_hint(overrides, search_flags)}{err}") from None


def _parse(config: Mapping[str, Any], overrides: Sequence[str], build_cli: Callable[..., Any]) -> None:
    """Run the CLI parser alone (``--print_config``, its output discarded); a parse error becomes SearchSetupError."""
    with tempfile.TemporaryDirectory(prefix="helu-search-check-") as tmp:
        path = Path(tmp) / "trial.yaml"
        path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        args = ["--config", str(path), *overrides, f"--trainer.default_root_dir={tmp}", "--print_config"]
        printed, errors = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
                build_cli(args=args, run=False, parser_kwargs={"exit_on_error": False})
        except SystemExit as done:
            if done.code in (0, None):
                return
            raise SearchSetupError(f"the trial config does not parse: {errors.getvalue().strip()[-1500:]}") from None
        except Exception as err:  # jsonargparse's ArgumentError and its kin: the message names the key
            raise SearchSetupError(f"the trial config does not parse: {err}") from None


def _typo_hint(overrides: Sequence[str], search_flags: Sequence[str]) -> str:
    """``--n_trial: did you mean --n_trials? `` for an override that looks like a mistyped search flag."""
    for arg in overrides:
        if arg.startswith("--") and "." not in (name := arg.split("=", 1)[0]):
            if close := difflib.get_close_matches(name, search_flags, n=1, cutoff=0.75):
                return f"{name} is no search option: did you mean {close[0]}? "
    return ""
