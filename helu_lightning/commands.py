"""``helu-train``: the dispatcher. Trainer subcommands (fit, validate, test, predict) go to LightningCLI
(:mod:`helu_lightning.cli`); every other subcommand is a module in :data:`COMMANDS` exposing ``build_parser()`` and
``run(args)``. A user-fixable mistake ends as one short ``helu-train <cmd>: error: ...`` line and exit status 2;
``HELU_DEBUG=1`` shows the traceback instead.

    helu-train fit --config configs/offline.yaml
    helu-train export --ckpt_path runs/offline/checkpoints/last.ckpt --output_dir exported/offline
    helu-train serve --export_dir exported/offline
    python -m helu_lightning fit --config configs/offline.yaml      # the same, without the script
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import socket
import sys
from types import ModuleType
from typing import Any
from urllib.error import URLError

from jsonargparse import DefaultHelpFormatter

from .console import quiet_console
from .errors import UserError
from .local_paths import refuse_remote_options

# name -> module exposing build_parser() -> ArgumentParser and run(args); an older module with only main(argv)
# still works. Modules are imported only when their command runs (or for --help).
COMMANDS: dict[str, str] = {
    "search": "helu_lightning.search",
    "export": "helu_lightning.export",
    "plot": "helu_lightning.plots",
    "compare": "helu_lightning.compare",
    "serve": "helu_lightning.serve",
}
TRAINER_COMMANDS = ("fit", "validate", "test", "predict")
USER_ERROR_STATUS = 2
SUMMARY = "Train with HeLU (ReLU forward, hysteresis backward) and serve as ReLU."
_MAX_MESSAGE_LINES = 6


def load_command(name: str) -> ModuleType:
    """The module behind ``helu-train <name>``, or a UserError naming the module or package that is missing."""
    module_name = COMMANDS[name]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise UserError(f"`helu-train {name}` needs the module {module_name}, which this installation lacks; "
                            "reinstall helu-lightning (pip install -e '.[all]')") from err
        raise UserError(f"`helu-train {name}` needs the package {err.name!r}; install the extras with "
                        "pip install -e '.[all]'") from err


def command_parser(name: str, module: ModuleType) -> argparse.ArgumentParser | None:
    """The command's own parser, named ``helu-train <name>`` in its usage line (None for a main-only module)."""
    if not (hasattr(module, "build_parser") and hasattr(module, "run")):
        return None
    parser = module.build_parser()
    parser.prog = f"helu-train {name}"
    return parser


def run_command(name: str, argv: list[str]) -> Any:
    """Parse ``argv`` with the command's parser and run it."""
    module = load_command(name)
    parser = command_parser(name, module)
    if parser is None:
        return module.main(argv)
    args = parser.parse_args(argv)
    refuse_remote_options(args)  # every path option is a local path, for every command alike
    return module.run(args)


def describe_commands() -> str:
    """Top-level help text: one line per extra command, taken from its parser's description."""
    lines = [SUMMARY, "", "Trainer subcommands are listed below; the others (helu-train <name> --help) are:"]
    for name in COMMANDS:
        try:
            module = load_command(name)
            parser = command_parser(name, module)
            text = (parser.description if parser is not None else module.__doc__) or ""
        except UserError:
            text = "not available in this installation"
        first = " ".join(text.strip().split("\n\n")[0].split())
        lines.append(f"  {name:<9} {first}")
    lines.append("HELU_DEBUG=1 shows tracebacks instead of short error messages; --version prints the versions.")
    return "\n".join(lines)


class _KeepLines(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help with the description's line breaks kept (one line per command)."""


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from (``__cause__`` first, else ``__context__``), outermost first."""
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def _frames(err: BaseException) -> list[str]:
    traceback, files = err.__traceback__, []
    while traceback is not None:
        files.append(traceback.tb_frame.f_code.co_filename)
        traceback = traceback.tb_next
    return files


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# What a class raises on a bad config value (a bad number, an unknown name, a missing file or import path).
_CONFIG_ERRORS = (ValueError, TypeError, LookupError, OSError, ImportError)


def _last_frame_in(err: BaseException, package: str) -> bool:
    frames = _frames(err)
    return bool(frames) and f"{os.sep}{package}{os.sep}" in frames[-1]


def _config_error(chain: list[BaseException]) -> BaseException | None:
    """The error a class raised while jsonargparse instantiated it from the config (jsonargparse wraps it)."""
    for outer, inner in zip(chain, chain[1:]):
        if _last_frame_in(outer, "jsonargparse") and not _last_frame_in(inner, "jsonargparse"):
            return inner
    return None


def _os_hint(chain: list[BaseException]) -> str:
    if any(isinstance(exc, (socket.gaierror, ConnectionError, TimeoutError, URLError)) for exc in chain):
        return ("; there is no network here: download on a machine with one, or point the config at a local copy "
                "(data_dir, pretrained, tokenizer)")
    if any(isinstance(exc, PermissionError) for exc in chain):
        return "; choose a folder you can write to"
    return "; check the path" if any(isinstance(exc, FileNotFoundError) for exc in chain) else ""


def user_message(err: BaseException) -> str | None:
    """The message to show for ``err`` without a traceback, or None when it looks like a bug.

    User mistakes are: a :class:`UserError` anywhere in the chain; what a class raised on a config value while
    jsonargparse instantiated it (jsonargparse wraps it); a missing, unwritable or unreachable file or URL
    (``OSError``, with the fix); and a ``ValueError``/``TypeError`` raised by helu_lightning's own checks.
    """
    chain = _chain(err)
    for exc in chain:
        if isinstance(exc, UserError):
            return str(exc)
    if isinstance(chain[0], argparse.ArgumentError):  # a Trainer subcommand's flag, key or --config file
        unknown = re.search(r"argument subcommand: invalid choice: '([^']*)'", str(chain[0]))
        if unknown:  # LightningCLI's own list omits the commands the dispatcher adds
            names = [*TRAINER_COMMANDS, *COMMANDS]
            close = difflib.get_close_matches(unknown.group(1), names, n=1)
            return (f"unknown command {unknown.group(1)!r}{f'; did you mean {close[0]!r}?' if close else ''} "
                    f"Commands: {', '.join(names)}")
        missing = re.search(r"arguments are required: (\w+)\.(data|model)", str(chain[0]))
        if missing:  # no --config: name it, with the command to type
            return (f"{chain[0]}: pass a config with --config FILE, e.g. helu-train {missing.group(1)} --config "
                    "configs/offline.yaml (--help lists the options)")
        return f"{chain[0]} (--help lists the options)"
    source = _config_error(chain)
    if source is not None and isinstance(source, _CONFIG_ERRORS):
        return f"{source}{_os_hint(chain) if isinstance(source, OSError) else ''}"
    os_error = next((exc for exc in chain if isinstance(exc, OSError)), None)
    if os_error is not None:
        return f"{os_error}{_os_hint(chain)}"
    inner = chain[-1]
    frames = _frames(inner)
    if isinstance(inner, (ValueError, TypeError)) and frames and frames[-1].startswith(_PACKAGE_DIR):
        return str(inner)
    return None


def version_line() -> str:
    """``helu-train --version``: this package's version and the libraries that decide its numbers."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    from . import __version__

    libraries = ", ".join(f"{name} {installed(name)}" for name in ("torch", "lightning", "transformers", "optuna"))
    return f"helu-train (helu-lightning) {__version__}; {libraries}"


_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "NoneType": "null"}


def _short(message: str) -> str:
    message = _plain_type_error(message)
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if len(lines) > _MAX_MESSAGE_LINES:
        lines = [*lines[:_MAX_MESSAGE_LINES], "... (HELU_DEBUG=1 shows everything)"]
    return "\n".join(lines)


def _plain_type_error(message: str) -> str:
    """jsonargparse's "Parser key "threads": Does not validate against any of the Union subtypes ... Expected a
    <class 'int'>" as one line: ``--threads takes an integer or null``."""
    key = re.match(r'\s*Parser key "([^"]+)":', message)
    expected = re.findall(r"Expected a <class '([\w.]+)'>", message)
    if key is None or not expected:
        return message
    words = [_TYPE_WORDS.get(name, name) for name in dict.fromkeys(expected)]
    return f"--{key.group(1)} takes {' or '.join(words)}; fix its value in the config or on the command line"


def _command_name(args: list[str]) -> str:
    return next((a for a in args if a in TRAINER_COMMANDS or a in COMMANDS), "")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``helu-train``: dispatch, and turn user errors into one short message with exit status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    quiet_console()
    try:
        if args[:1] in (["--version"], ["-V"]):
            print(version_line())
            return
        if args and args[0] in COMMANDS:
            run_command(args[0], args[1:])
            return
        from .cli import cli

        # exit_on_error=False: a bad flag, key or config file raises instead of printing the whole usage (50 lines)
        parser_kwargs: dict[str, Any] = {"prog": "helu-train", "description": SUMMARY, "exit_on_error": False,
                                         "allow_abbrev": False}  # --trainer.max_epoch is a typo, not max_epochs
        if args[:1] in (["-h"], ["--help"]):
            parser_kwargs.update(description=describe_commands(), formatter_class=_KeepLines)
        cli(None if argv is None else args, parser_kwargs=parser_kwargs)  # None: LightningCLI reads sys.argv itself
    except Exception as err:
        message = user_message(err)
        if message is None or os.environ.get("HELU_DEBUG", "") not in ("", "0"):
            raise
        name = _command_name(args)
        print(f"helu-train{' ' + name if name else ''}: error: {_short(message)}", file=sys.stderr)
        sys.exit(USER_ERROR_STATUS)


if __name__ == "__main__":
    main()
