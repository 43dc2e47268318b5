"""``HeluCLI``: the LightningCLI behind ``helu-train fit|validate|test|predict``, and :func:`cli` to build it. The
``helu-train`` dispatcher (search, export, plot, compare, short errors) is :mod:`helu_lightning.commands`, which
imports this module (never the other way round).

    helu-train fit --config configs/offline.yaml
    helu-train fit --config configs/cifar100.yaml --model.activation.alpha 0.01
"""

from __future__ import annotations

import copy
import glob
import os
import sys
from typing import Any

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.model_registry import _is_registry

from .callbacks.last import LastCheckpoint
from .callbacks.progress import VersionedRichProgressBar
from .checkpoint_io import install_checked_io, refuse_self_loading_strategy, refuse_url
from .checkpoints import CheckpointError, read_checkpoint
from .errors import UserError, shown_path
from .finished import refuse_a_finished_run
from .local_paths import refuse_linked_run_folders, refuse_remote_config
from .run_lock import is_launching_process, run_lock
from .threads import apply_threads

DESCRIPTION = "Train with HeLU (ReLU forward, hysteresis backward) and serve as ReLU; `helu-train --help` lists all."

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
        parser.add_argument(
            "--trust_checkpoint", type=bool, default=False,
            help="with --ckpt_path: let the checkpoint's hyper-parameters name any class (only for files you trust)",
        )
        parser.add_argument(
            "--threads", type=int | None, default=None,
            help="CPU threads for torch (null: torch's default); CPU results depend on it, so configs fix it",
        )

    def _section(self) -> Any:
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def _trusted(self) -> bool:
        config = self._section()
        return bool(config.get("trust_checkpoint")) or config.get("weights_only") is False

    def _parse_ckpt_path(self) -> None:
        # LightningCLI re-parses --ckpt_path's hyper-parameters into the config, and jsonargparse imports and
        # instantiates every class path in them. Read the file once through the checking reader (missing, corrupt,
        # foreign or pickle-carrying files and import paths off the allow-list stop with the fix) and parse what
        # was checked, instead of Lightning's second, unchecked torch.load. Aliases (last, best, hpc) are resolved
        # to their file once the Trainer exists (instantiate_classes), then come back here.
        subcommand = self.config.get("subcommand")
        config = self._section()
        ckpt_path = config.get("ckpt_path")
        if not isinstance(ckpt_path, str):
            return
        refuse_url(ckpt_path, "fit resumes from" if subcommand == "fit" else f"{subcommand} reads")
        if _is_registry(ckpt_path):
            raise CheckpointError(f"--ckpt_path {ckpt_path}: helu-train does not download from Lightning's model "
                                  "registry; download the checkpoint and pass the local .ckpt file")
        if ckpt_path in _LIGHTNING_CKPT_ALIASES:
            return
        ckpt = read_checkpoint(ckpt_path, weights_only=not self._trusted(), trusted=self._trusted(),
                               unsafe_flag="--weights_only false", trust_flag="--trust_checkpoint true")
        hparams = dict(ckpt.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def instantiate_classes(self) -> None:
        """Lightning's, then ``--ckpt_path last|best|hpc`` (and SLURM's automatic ``hpc``) resolved to its file by
        Lightning's own rules and read like an explicit path: same checks, same hyper-parameters restored."""
        super().instantiate_classes()
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        given = self.config[subcommand].get("ckpt_path")
        if given is not None and given not in _LIGHTNING_CKPT_ALIASES:
            return
        state, self.trainer.state.fn = self.trainer.state.fn, TrainerFn(subcommand)
        try:  # Lightning's rules: its fit() resolves with the state already set (OnExceptionCheckpoint -> "last")
            found = self.trainer._checkpoint_connector._parse_ckpt_path(
                TrainerFn(subcommand), given, model_provided=True, model_connected=False)
        except ValueError as err:  # "best" in a fresh process, "hpc" without an hpc_ckpt_*.ckpt
            if given == "best":  # Lightning's own text blames the callback's configuration, which is fine
                raise CheckpointError("--ckpt_path best names the best file of a fit in this same process, and a new "
                                      "helu-train process has none; pass the .ckpt file itself (e.g. "
                                      "<default_root_dir>/checkpoints/epoch=...ckpt)") from err
            raise CheckpointError(f"--ckpt_path {given}: {err}; pass the .ckpt file itself") from err
        finally:
            self.trainer.state.fn = state
        if found == given:
            return
        found = None if found is None else str(found)
        model = copy.deepcopy(self.config[subcommand].get("model"))
        self.config[subcommand]["ckpt_path"] = found
        self._parse_ckpt_path()
        if self.config[subcommand].get("model") != model:
            self.__dict__.pop("config_dump", None)  # LightningCLI's cached dump feeds the model's hparams
            super().instantiate_classes()  # the checkpoint's hyper-parameters changed the model: rebuild it
        self.config_init[subcommand]["ckpt_path"] = found

    def before_instantiate_classes(self) -> None:
        # Checkpoints may come from others: unless --weights_only false is given, load tensors and plain values
        # only. Lightning would otherwise unpickle http(s) --ckpt_path URLs with weights_only=False.
        config = self.config[self.subcommand] if self.subcommand else self.config
        refuse_remote_config(config)  # file:// or s3:// folders: refused before any class sees (or resolves) them
        refuse_linked_run_folders(config)
        if "weights_only" in config and config["weights_only"] is None:
            config["weights_only"] = True
        if "threads" in config:  # the count used, saved in the run's config.yaml and printed in its header
            config["threads"] = apply_threads(config["threads"])

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        # A checkpoint callback without a dirpath would write to a new lightning_logs/version_N/ per run, where
        # `--ckpt_path last` never looks; give it <default_root_dir>/checkpoints so re-running a config resumes.
        for callback in trainer.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = os.path.abspath(os.path.join(trainer.default_root_dir, "checkpoints"))
        for callback in trainer.callbacks:
            if type(callback) is RichProgressBar:  # the default bar (or one configured plainly): no state to lose
                callback.__class__ = VersionedRichProgressBar
        refuse_linked_folders(trainer)
        trainer.callbacks.extend(latest_checkpoints(trainer))
        install_checked_io(trainer, trusted=self._trusted())
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        # fit (with test_after_fit) holds <default_root_dir>/.helu-train.lock: a second fit into the folder refuses.
        refuse_self_loading_strategy(self.trainer, self._section().get("ckpt_path"), self._trusted())
        folder = str(self.trainer.default_root_dir)
        if subcommand != "fit" or not is_launching_process():
            super()._run_subcommand(subcommand)
            return
        with run_lock(folder):
            super()._run_subcommand(subcommand)

    def before_fit(self) -> None:
        config = self.config[self.subcommand]
        if config.get("ckpt_path") is None:
            refuse_a_second_run(self.trainer)
        else:
            refuse_a_finished_run(self.trainer, config["ckpt_path"], config.get("weights_only") is not False)

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


def latest_checkpoints(trainer: Trainer) -> list[ModelCheckpoint]:
    """For each monitored ``ModelCheckpoint(save_last=True)``, an unmonitored one that writes ``last.ckpt`` every
    epoch, so ``--ckpt_path last`` resumes where the run stopped. Lightning 2.6 writes ``last.ckpt`` only when a top-k
    file is saved, i.e. at the best epoch; the monitored callback keeps choosing the best (``--ckpt_path best``).
    At an epoch that is also the best, ``last.ckpt`` is a hard link to the best file (stored once)."""
    added, folders = [], set()
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor and callback.save_last:
            callback.save_last = False
            if callback.dirpath in folders:
                continue
            folders.add(callback.dirpath)
            added.append(LastCheckpoint(dirpath=callback.dirpath, filename=ModelCheckpoint.CHECKPOINT_NAME_LAST,
                                        save_top_k=1, enable_version_counter=False,
                                        save_weights_only=callback.save_weights_only))
    return added


def refuse_linked_folders(trainer: Trainer) -> None:
    """UserError when ``default_root_dir`` or a checkpoint folder is a symbolic link: checkpoints would be written and
    rotated (deleted) in the folder it leads to, which the run does not own."""
    folders = [trainer.default_root_dir, *(getattr(c, "dirpath", None) for c in trainer.checkpoint_callbacks)]
    for folder in folders:
        if isinstance(folder, (str, os.PathLike)) and "://" not in str(folder) and os.path.islink(folder):
            raise UserError(f"{folder} is a symbolic link (to {os.path.realpath(folder)}); helu-train writes and "
                            "deletes checkpoints only in a folder of its own: pass the real folder as "
                            "--trainer.default_root_dir, or another folder")


def refuse_a_second_run(trainer: Trainer) -> None:
    """Stop a fresh ``fit`` whose checkpoint folder already holds a run's checkpoints: ModelCheckpoint would add
    ``-v1`` files beside them and mix two runs in one folder."""
    if trainer.fast_dev_run:  # writes no checkpoints
        return
    if SLURMEnvironment.detect() and trainer._checkpoint_connector._hpc_resume_path is not None:
        return  # a requeued SLURM job: Lightning resumes from its hpc checkpoint by itself
    for callback in trainer.checkpoint_callbacks:
        folder = getattr(callback, "dirpath", None)
        if folder and glob.glob(os.path.join(glob.escape(folder), "*.ckpt")):
            raise UserError(
                f"{shown_path(folder)} already holds a run's checkpoints; resume it with --ckpt_path last, or "
                "choose another --trainer.default_root_dir"
            )


def _best_or_last(trainer: Any) -> str | None:
    """The best file of the first checkpoint callback when it monitored a metric and saved one; ``None`` (current
    weights) otherwise, e.g. under ``fast_dev_run`` where checkpointing is off. The path, not ``"best"``: with the
    unmonitored ``last.ckpt`` callback beside it, Lightning warns on every ``"best"`` that it picks the first one."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.monitor and callback.best_model_path:
        return callback.best_model_path
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

