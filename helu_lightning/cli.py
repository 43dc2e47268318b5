"""``helu-train``: LightningCLI for fit/validate/test/predict, plus ``search``, ``export`` and ``plot``.

    helu-train fit --config configs/offline.yaml
    helu-train fit --config configs/cifar100.yaml --model.activation.alpha 0.01
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden

from .checkpoints import CheckpointError, read_checkpoint

# Subcommands that are not Trainer methods: name -> "module:function" taking argv (lazily imported).
EXTRA_COMMANDS = {
    "search": "helu_lightning.search:main",
    "export": "helu_lightning.export:main",
    "plot": "helu_lightning.plots:main",
    "compare": "helu_lightning.compare:main",
}


DESCRIPTION = (
    "Train with HeLU (ReLU forward, hysteresis backward) and serve as ReLU. Trainer subcommands below; also "
    "`helu-train search` (Optuna), `helu-train compare` (activation A/B over seeds), `helu-train export` "
    "(HeLU -> ReLU) and `helu-train plot` (PNG plots of runs): "
    "add --help to any of them."
)

# `--ckpt_path` values Lightning resolves itself.
_LIGHTNING_CKPT_ALIASES = ("last", "best", "hpc", "registry")


class HeluCLI(LightningCLI):
    """LightningCLI with any LightningModule / DataModule chosen by ``class_path`` in the config, and an optional
    test of the best checkpoint right after ``fit`` (``test_after_fit: true``)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit", type=bool, default=False,
            help="fit only: after training, test the best checkpoint of the monitored metric (else the last weights)",
        )

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path's hyper-parameters right after parsing; check the file first so a missing,
        # corrupt or foreign checkpoint stops with its path and the fix rather than an unpickler traceback.
        config = self.config[self.config["subcommand"]] if self.config.get("subcommand") else {}
        ckpt_path = config.get("ckpt_path")
        if isinstance(ckpt_path, str) and ckpt_path not in _LIGHTNING_CKPT_ALIASES and "://" not in ckpt_path:
            weights_only = config.get("weights_only") is not False
            read_checkpoint(ckpt_path, weights_only=weights_only, unsafe_flag="--weights_only false")
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        # Checkpoints may come from others: unless --weights_only false is given, load tensors and plain values
        # only. Lightning would otherwise unpickle http(s) --ckpt_path URLs with weights_only=False.
        config = self.config[self.subcommand] if self.subcommand else self.config
        if "weights_only" in config and config["weights_only"] is None:
            config["weights_only"] = True

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        # A checkpoint callback without a dirpath would write to a new lightning_logs/version_N/ per run, where
        # `--ckpt_path last` never looks; give it <default_root_dir>/checkpoints so re-running a config resumes.
        for callback in trainer.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
        return trainer

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit"):
            return
        if not is_overridden("test_dataloader", self.datamodule) or not is_overridden("test_step", self.model):
            rank_zero_warn(
                f"test_after_fit is set but {type(self.datamodule).__name__} has no test_dataloader or "
                f"{type(self.model).__name__} no test_step; skipping the test (set test_after_fit: false)"
            )
            return
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=_best_or_last(self.trainer))


def _best_or_last(trainer: Any) -> str | None:
    """``"best"`` when a checkpoint callback monitored a metric and saved a best file; ``None`` (current weights)
    otherwise, e.g. under ``fast_dev_run`` where checkpointing is off."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.monitor and callback.best_model_path:
        return "best"
    return None


def cli(args: list[str] | None = None, run: bool = True, **kwargs: Any) -> HeluCLI:
    """Build the CLI the way ``helu-train`` does (tests and the search call this with ``args``)."""
    kwargs.setdefault("save_config_kwargs", {"overwrite": True})
    kwargs.setdefault("parser_kwargs", {"description": DESCRIPTION})
    return HeluCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        **kwargs,
    )


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in EXTRA_COMMANDS:
        module_name, function = EXTRA_COMMANDS[args[0]].split(":")
        getattr(importlib.import_module(module_name), function)(args[1:])
        return
    try:
        cli(None if argv is None else args)  # None: LightningCLI reads sys.argv itself (and does not warn)
    except CheckpointError as err:
        sys.exit(f"helu-train: error: {err}")


if __name__ == "__main__":
    main()
