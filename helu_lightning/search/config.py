"""The fit config a search starts from: several files composed in order, and checked by the CLI parser up front."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import gc
import io
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from helu_lightning.search.options import SearchSetupError
from helu_lightning.search.space import SearchParam, apply_params, yaml_problem

__all__ = ["check_trial_config", "compose_configs", "logs_into", "read_config", "resolved_config"]


def read_config(path: str) -> dict:
    """A fit config file as a mapping; SearchSetupError when it is missing, not YAML or not a mapping."""
    file = Path(path)
    if not file.is_file():
        raise SearchSetupError(f"config {path!r} does not exist; pass the YAML you give `helu-train fit --config`")
    try:
        config = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SearchSetupError(f"config {path!r} is not valid YAML ({yaml_problem(err)})") from err
    if not isinstance(config, dict):
        raise SearchSetupError(f"config {path!r} is not a YAML mapping of fit options (trainer:, model:, data:)")
    return config


def compose_configs(paths: Sequence[str], build_cli: Callable[..., Any]) -> dict:
    """The fit configs composed in order, later files overriding earlier ones, exactly as ``fit --config a --config b``
    composes them (LightningCLI's own parser does it: ``key+:`` appends, a new class keeps the arguments it shares
    with the old one, ...); one file is taken as it is."""
    configs = [read_config(path) for path in paths]
    if len(configs) == 1:
        return configs[0]
    args = [arg for path in paths for arg in ("--config", str(path))]
    printed = _run_cli(build_cli, [*args, "--print_config"], "compose")
    return yaml.safe_load(printed)


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
) -> dict:
    """Check the trial config with the overrides as every trial will read it: parsed at the space's far end, and
    built (model, data, trainer; nothing fitted) at its near end. Returns the far end's config as LightningCLI
    resolved it (the study's fingerprint holds it).

    A mistyped config key, option or value fails here, once, instead of in every trial; an option close to one of
    ``search_flags`` is named as the likely typo.
    """
    resolved: dict = {}
    for end, build in ((1, False), (0, True)):
        values = {p.name: p.extremes()[end] for p in params}
        try:
            resolved = _check(apply_params(config, params, values), overrides, build_cli, build) or resolved
        except SearchSetupError as err:
            raise SearchSetupError(f"{_typo_hint(overrides, search_flags)}{err}") from None
    return resolved


def resolved_config(config: Mapping[str, Any], overrides: Sequence[str], build_cli: Callable[..., Any]) -> dict:
    """``config`` with the ``--section.key`` overrides as LightningCLI resolves them (``--print_config``), the
    temporary run folder of the check written as ``<run>``."""
    return _check(config, overrides, build_cli, build=False)


def _check(config: Mapping[str, Any], overrides: Sequence[str], build_cli: Callable[..., Any], build: bool) -> dict:
    """Build the CLI from ``config`` (and return {}), or only parse it and return the resolved config
    (``--print_config``); an error in the config becomes SearchSetupError."""
    with tempfile.TemporaryDirectory(prefix="helu-search-check-") as tmp:
        path = Path(tmp) / "trial.yaml"
        path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        args = ["--config", str(path), *overrides, f"--trainer.default_root_dir={tmp}"]
        if build:
            _run_cli(build_cli, args, "build", trainer_defaults={"logger": False, "enable_progress_bar": False})
            return {}
        printed = _run_cli(build_cli, [*args, "--print_config"], "parse")
        return yaml.safe_load(printed.replace(tmp, "<run>")) or {}


def _run_cli(build_cli: Callable[..., Any], args: list[str], purpose: str, **kwargs: Any) -> str:
    """Build the CLI on ``args`` (run=False) and return what it printed; an error in the config becomes
    SearchSetupError ("the trial config does not <purpose>: <reason>")."""
    printed, errors = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            build_cli(args=args, run=False, parser_kwargs={"exit_on_error": False}, **kwargs)
    except SystemExit as done:  # --print_config exits after printing; a parse error exits non-zero
        if done.code not in (0, None):
            raise SearchSetupError(f"the trial config does not {purpose}: {_short(errors.getvalue())}") from None
    except (argparse.ArgumentError, ValueError, TypeError) as err:  # the message names the key
        raise SearchSetupError(f"the trial config does not {purpose}: {_short(str(err))}") from None
    finally:
        gc.collect()
    return printed.getvalue()


# Lines of a jsonargparse error that say nothing about this mistake (the Union's other, NoneType branch).
_NOISE = (
    "Does not validate against any", "Subtypes:", "Errors:", "- Expected a <class 'NoneType'>", "Given value type"
)


def _short(message: str) -> str:
    """jsonargparse's error in one line: the key and the reason (usage text and the long value echo dropped)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if errors := [line for line in lines if line.startswith("error:")]:
        lines = [errors[-1].removeprefix("error:").strip()]
    kept = [line.removeprefix("- ") for line in lines if not line.startswith(_NOISE)]
    kept = [line for line in kept if not (line.startswith("Given value:") and len(line) > 80)]
    return " ".join(kept)[:600]


def _typo_hint(overrides: Sequence[str], search_flags: Sequence[str]) -> str:
    """``--n_trial: did you mean --n_trials? `` for an override that looks like a mistyped search flag."""
    for arg in overrides:
        if arg.startswith("--") and "." not in (name := arg.split("=", 1)[0]):
            if close := difflib.get_close_matches(name, search_flags, n=1, cutoff=0.75):
                return f"{name} is no search option: did you mean {close[0]}? "
    return ""
