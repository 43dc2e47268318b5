"""A quiet console for ``helu-train``: Lightning's progress and metric tables stay, advertising and warnings about
library internals the user cannot act on go. Users can still opt back in with the libraries' own switches."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

# Messages from Lightning's and torch's own internals, not from anything in the user's config.
_IGNORED_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # lightning 2.6 on torch 2.14's pytree
    # On every `fit --ckpt_path last`: helu-train refuses a fresh fit into a folder with checkpoints (cli.py), so a
    # non-empty folder here is always the run being resumed.
    r"Checkpoint directory .* exists and is not empty\.",
    # Lightning's own strategy.all_gather (DDP predict writers gather rows with it) on torch 2.14, once per rank.
    r"torch\.distributed\.nn\.functional\.all_gather is deprecated.*",
)


class _DropAdvert(logging.Filter):
    """Drops Lightning's "Tip: ... try installing litlogger" line (printed once per Trainer)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


class _DropQuantizeAdvice(logging.Filter):
    """Drops onnxruntime's "Please consider (to run) pre-processing before quantization" (a root-logger WARNING on
    every ``quantize_dynamic``; export and compare quantize graphs that shape inference already covers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quiet_console() -> None:
    """Silence the litlogger tip, known internal deprecation warnings and Hugging Face's weight-loading report and
    progress bar (the weights are either fine-tuned next or replaced by a checkpoint's right after).
    ``TRANSFORMERS_VERBOSITY=warning`` brings the report back."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for pattern in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdvert) for f in logger.filters):
            logger.addFilter(_DropAdvert())
    root = logging.getLogger()
    if not any(isinstance(f, _DropQuantizeAdvice) for f in root.filters):
        root.addFilter(_DropQuantizeAdvice())


# Where Lightning prints a run's header ("Seed set to", "GPU available", ...) and checkpoint restores.
_RUN_INFO_LOGGERS = ("lightning.fabric.utilities.seed", "lightning.pytorch.utilities.rank_zero",
                     "lightning.fabric.utilities.rank_zero")


class _DropInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO


@contextlib.contextmanager
def helper_runs_quiet() -> Iterator[None]:
    """Hide Lightning's info lines (seed, devices, threads, checkpoint restores) of the Trainers a study builds
    beside each run (calibration, test, config check), so a run's header is printed once; warnings stay."""
    drop = _DropInfo()
    loggers = [logging.getLogger(name) for name in _RUN_INFO_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)
