"""``helu-train``: LightningCLI for fit/validate/test/predict, plus ``search``, ``export`` and ``plot``.

    helu-train fit --config configs/digits.yaml
    helu-train fit --config configs/cifar100.yaml --model.activation.alpha 0.01
"""

from __future__ import annotations

import importlib
import sys

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

# Subcommands that are not Trainer methods: name -> "module:function" taking argv (lazily imported).
EXTRA_COMMANDS = {
    "search": "helu_lightning.search:main",
    "export": "helu_lightning.export:main",
    "plot": "helu_lightning.plots:main",
}


class HeluCLI(LightningCLI):
    """LightningCLI with any LightningModule / DataModule chosen by ``class_path`` in the config."""


def cli(args: list[str] | None = None, run: bool = True, **kwargs) -> HeluCLI:
    """Build the CLI the way ``helu-train`` does (tests and the search call this with ``args``)."""
    return HeluCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        **kwargs,
    )


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTRA_COMMANDS:
        module_name, function = EXTRA_COMMANDS[argv[0]].split(":")
        getattr(importlib.import_module(module_name), function)(argv[1:])
        return
    cli(argv)


if __name__ == "__main__":
    main()
