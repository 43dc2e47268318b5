"""ActivationMonitor: dead units, band fraction and pre-activation mean/std of ReLU-family layers.

Per call site of each monitored module (HeLU and nn.ReLU by default), over a window of batches:

- ``dead_fraction``: share of units never positive in the window (a unit is a channel, dim 1, of a 4-D NCHW input
  and a feature, the last dim, otherwise);
- ``band_fraction``: share of pre-activations in ``(-alpha, 0]``, where HeLU passes gradient and ReLU does not
  (HeLU uses its own alpha; ReLU the ``reference_alpha``, so ReLU and HeLU runs compare);
- ``pre_mean`` / ``pre_std`` of the pre-activations.

Metric names are ``monitor/<stage>/<stat>/<site>`` plus ``monitor/<stage>/<stat>`` pooled over all layers.
A module called more than once per forward (torchvision's ``BasicBlock.relu``) gets one site per call,
``name#0``, ``name#1``, by call order within the forward. Counts are summed over DDP ranks before logging.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from ..activations import HeLU

__all__ = ["ActivationMonitor", "ActivationStats"]

STATS = ("dead_fraction", "band_fraction", "pre_mean", "pre_std")


def _resolve_types(module_types: Iterable[type[nn.Module] | str] | None) -> tuple[type[nn.Module], ...]:
    if module_types is None:
        return (HeLU, nn.ReLU)
    types = []
    for item in module_types:
        if isinstance(item, str):
            module_name, _, attr = item.rpartition(".")
            try:
                item = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError, ValueError) as err:
                raise ValueError(
                    f"module_types: cannot import {item!r}; give a class path like 'torch.nn.ReLU'"
                ) from err
        if not (isinstance(item, type) and issubclass(item, nn.Module)):
            raise ValueError(f"module_types entries must be nn.Module classes or their import paths, got {item!r}")
        types.append(item)
    return tuple(types)


class _SiteStats:
    """Running sums for one call site; tensors stay on the activation's device (no host sync per batch)."""

    def __init__(self, units: int, device: torch.device) -> None:
        self.alive = torch.zeros(units, dtype=torch.float64, device=device)
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # band count, sum, sum of squares
        self.elements = 0

    def update(self, x: Tensor, alpha: Tensor | float) -> None:
        x = x.detach()
        unit_max = x.amax(dim=(0, *range(2, x.dim()))) if x.dim() == 4 else x.reshape(-1, x.shape[-1]).amax(dim=0)
        self.alive += unit_max > 0
        xf = x.float()
        in_band = (xf > -alpha).sum() - (xf > 0).sum()
        self.sums += torch.stack([in_band.double(), xf.sum().double(), xf.square().sum().double()])
        self.elements += x.numel()

    def flat(self) -> Tensor:
        """alive per unit, band count, elements, sum, sum of squares: one tensor for one all-reduce."""
        count = torch.tensor([float(self.elements)], dtype=torch.float64, device=self.sums.device)
        return torch.cat([self.alive, self.sums[:1], count, self.sums[1:]])


class ActivationStats:
    """Forward pre-hooks that accumulate per-call-site statistics of the inputs of ``module_types`` modules."""

    def __init__(self, root: nn.Module, module_types: tuple[type[nn.Module], ...], reference_alpha: float) -> None:
        self.root = root
        self.reference_alpha = reference_alpha
        self.modules = {name: m for name, m in root.named_modules() if isinstance(m, module_types)}
        self.sites: dict[tuple[str, int], _SiteStats] = {}
        self._calls: dict[str, int] = {}
        self._handles: list[Any] = []

    def attach(self) -> None:
        """Register the hooks (a root pre-hook restarts call counting at each forward of ``root``)."""
        if self._handles:
            return
        self._handles.append(self.root.register_forward_pre_hook(lambda module, args: self.new_forward()))
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def detach(self) -> None:
        """Remove every hook; the model runs exactly as without the monitor."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def new_forward(self) -> None:
        self._calls.clear()

    def reset(self) -> None:
        self.sites.clear()
        self._calls.clear()

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not args or not isinstance(args[0], Tensor) or args[0].dim() == 0:
                return
            x = args[0]
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            site = self.sites.get((name, call))
            if site is None:
                units = x.shape[1] if x.dim() == 4 else x.shape[-1]
                site = self.sites[(name, call)] = _SiteStats(units, x.device)
            alpha = module.alpha if isinstance(module, HeLU) else self.reference_alpha
            site.update(x, alpha)

        return hook

    def _keys(self) -> list[tuple[str, int]]:
        order = {name: i for i, name in enumerate(self.modules)}
        return sorted(self.sites, key=lambda k: (order[k[0]], k[1]))

    def flat(self) -> Tensor:
        """All counts in one tensor (sites in model order), so one all-reduce sums them across ranks."""
        return torch.cat([self.sites[k].flat() for k in self._keys()])

    def summary(self, reduce: Callable[[Tensor], Tensor] = lambda t: t) -> dict[str, float]:
        """Statistics per site (``name``, or ``name#k`` for a module called more than once) and pooled over all
        sites (keys without a site), computed after summing the counts with ``reduce`` (e.g. across ranks)."""
        if not self.sites:
            return {}
        keys = self._keys()
        flat = reduce(self.flat()).double().cpu()
        reused = {name for name, call in keys if call > 0}
        out: dict[str, float] = {}
        pooled = torch.zeros(6, dtype=torch.float64)  # dead units, units, band, elements, sum, sum of squares
        offset = 0
        for name, call in keys:
            units = self.sites[(name, call)].alive.numel()
            alive, sums = flat[offset:offset + units], flat[offset + units:offset + units + 4]
            offset += units + 4
            row = torch.cat([torch.tensor([float((alive == 0).sum()), units], dtype=torch.float64), sums])
            site = f"{name}#{call}" if name in reused else name
            out.update({f"{stat}/{site}": v for stat, v in zip(STATS, _stats(*row.tolist()))})
            pooled += row
        out.update(dict(zip(STATS, _stats(*pooled.tolist()))))
        return out


def _stats(dead: float, units: float, band: float, n: float, total: float, squares: float) -> list[float]:
    mean = total / n
    var = max(squares / n - mean * mean, 0.0) * n / max(n - 1, 1)
    return [dead / units, band / n, mean, math.sqrt(var)]


class ActivationMonitor(Callback):
    """Log dead-unit fraction, band fraction and pre-activation mean/std per ReLU-family layer.

    Training: every ``every_n_steps`` optimizer steps, hooks are attached for ``window`` batches, then the
    counts are summed across ranks, logged at that step and the hooks removed. Validation: over the first
    ``val_batches`` batches (all when None) of each validation run. ``module_types`` picks other activation
    classes (classes or import paths); the monitored root is ``pl_module.model`` when it exists.
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        window: int = 2,
        val_batches: int | None = None,
        reference_alpha: float = 0.05,
        module_types: list[str] | None = None,
        on_train: bool = True,
        on_validation: bool = True,
    ) -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be an integer >= 1, got {every_n_steps!r}")
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= every_n_steps:
            raise ValueError(f"window must be an integer in [1, every_n_steps={every_n_steps}], got {window!r}")
        if val_batches is not None and (not isinstance(val_batches, int) or val_batches < 1):
            raise ValueError(f"val_batches must be None (all) or an integer >= 1, got {val_batches!r}")
        if not isinstance(reference_alpha, (int, float)) or not math.isfinite(reference_alpha) or reference_alpha <= 0:
            raise ValueError(f"reference_alpha must be a positive finite number such as 0.05, got {reference_alpha!r}")
        self.every_n_steps = every_n_steps
        self.window = window
        self.val_batches = val_batches
        self.reference_alpha = float(reference_alpha)
        self.module_types = _resolve_types(module_types)
        self.on_train = on_train
        self.on_validation = on_validation
        self._stats: ActivationStats | None = None
        self._measured: int | None = None  # batches measured in the open training window; None when closed
        self._last_window_step: int | None = None
        self._val_seen = 0
        self.last_metrics: dict[str, float] = {}

    @property
    def measuring(self) -> bool:
        """Whether hooks are attached now (inside a training window or a validation run)."""
        return self._stats is not None and self._stats.attached

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        root = pl_module.model if isinstance(getattr(pl_module, "model", None), nn.Module) else pl_module
        self._stats = ActivationStats(root, self.module_types, self.reference_alpha)
        if not self._stats.modules:
            raise ValueError(
                f"ActivationMonitor found no module of type {[t.__name__ for t in self.module_types]} in "
                f"{type(root).__name__}; pass module_types with the activation classes to monitor"
            )

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._stats is not None:
            self._stats.detach()

    def _log(self, trainer: pl.Trainer, stage: str) -> None:
        summary = self._stats.summary(lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
        self._stats.reset()
        metrics = {f"monitor/{stage}/{key}": value for key, value in summary.items()}
        self.last_metrics.update(metrics)
        if metrics and trainer.loggers:
            metrics["epoch"] = trainer.current_epoch
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        step = trainer.global_step
        if self.on_train and self._measured is None and step % self.every_n_steps == 0 \
                and step != self._last_window_step:
            self._last_window_step = step
            self._measured = 0
            self._stats.reset()
            self._stats.attach()
        if self._measured is not None:
            self._stats.new_forward()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._measured is None:
            return
        self._measured += 1
        if self._measured >= self.window:
            self._stats.detach()
            self._measured = None
            self._log(trainer, "train")

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._measured is not None:
            self._stats.detach()
            self._measured = None  # a training window cut by validation is dropped
        if not self.on_validation or trainer.sanity_checking:
            return
        self._val_seen = 0
        self._stats.reset()
        self._stats.attach()

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._stats is not None and self._stats.attached:
            self._stats.new_forward()

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._val_seen += 1
        if self.val_batches is not None and self._val_seen >= self.val_batches:
            self._stats.detach()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.on_validation or trainer.sanity_checking:
            return
        self._stats.detach()
        self._log(trainer, "val")
