"""Choose HeLU's alpha from pre-activation statistics (the paper leaves the choice open).

Target: for each ReLU-family layer, alpha is the ``target_band_fraction`` quantile of ``|x|`` over the layer's
non-positive pre-activations ``x <= 0``, so that this fraction of the inputs ReLU blocks (zero gradient) falls in
the band ``(-alpha, 0]`` where HeLU passes gradient. The global value is the same quantile over all layers' samples
pooled (each pre-activation counts once, so wide layers weigh more).

    from helu_lightning.calibration import suggest_alpha
    suggestion = suggest_alpha(task.model, datamodule.train_dataloader(), target_band_fraction=0.1, apply=True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .activations import HeLU, check_alpha
from .batches import call_model, split_batch
from .errors import UserError

__all__ = ["AlphaSuggestion", "suggest_alpha"]


@dataclass
class AlphaSuggestion:
    """Suggested alpha per layer (dotted module name) and one global value, with what they target."""

    per_layer: dict[str, float]
    global_alpha: float
    target_band_fraction: float
    samples: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"per_layer": dict(self.per_layer), "global_alpha": self.global_alpha,
                "target_band_fraction": self.target_band_fraction, "samples": dict(self.samples)}


def _to(inputs: Tensor | Mapping[str, Tensor], device: torch.device) -> Tensor | dict[str, Tensor]:
    if isinstance(inputs, Mapping):
        return {key: value.to(device) for key, value in inputs.items()}
    return inputs.to(device)


def suggest_alpha(
    model: nn.Module,
    dataloader: Iterable[Any],
    target_band_fraction: float = 0.1,
    num_batches: int | None = 10,
    module_types: tuple[type[nn.Module], ...] = (HeLU, nn.ReLU),
    max_samples_per_layer: int = 1_000_000,
    min_alpha: float = 1e-4,
    train_mode: bool = False,
    inputs: Callable[[Any], Tensor | Mapping[str, Tensor]] | None = None,
    apply: bool | str = False,
    seed: int = 0,
) -> AlphaSuggestion:
    """Run ``num_batches`` batches (all when None) through ``model`` without gradients and suggest alpha.

    Each layer keeps at most ``max_samples_per_layer`` non-positive pre-activations (an even random subsample per
    batch beyond that). Suggestions below ``min_alpha`` (e.g. many exact zeros) are raised to it. ``train_mode``
    runs the pass in training mode (BatchNorm batch statistics, as training sees them; running statistics are
    restored afterwards). ``inputs`` maps a batch to the model inputs (default: ``batches.split_batch``).
    ``apply=True`` or ``'per_layer'`` sets each HeLU module's alpha to its suggestion,
    ``'global'`` sets all to the global value; nn.ReLU layers are measured but have no alpha to set.
    """
    if isinstance(target_band_fraction, bool) or not 0 < target_band_fraction < 1:
        raise UserError(f"target_band_fraction must be in (0, 1), e.g. 0.1, got {target_band_fraction!r}")
    if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 1):
        raise UserError(f"num_batches must be None (all) or an integer >= 1, got {num_batches!r}")
    if apply not in (False, True, "per_layer", "global"):
        raise UserError(f"apply must be False, True/'per_layer' or 'global', got {apply!r}")
    min_alpha = check_alpha(min_alpha)
    layers = {name: m for name, m in model.named_modules() if isinstance(m, module_types)}
    if not layers:
        raise UserError(f"suggest_alpha found no {[t.__name__ for t in module_types]} module in "
                        f"{type(model).__name__}; pass module_types with the activation classes to calibrate")
    sampler = _Sampler(layers, max_samples_per_layer // (num_batches or 100), seed)
    with sampler.hooked(model, train_mode):
        for i, batch in enumerate(dataloader):
            if num_batches is not None and i >= num_batches:
                break
            model_inputs = split_batch(batch, model)[0] if inputs is None else inputs(batch)
            call_model(model, _to(model_inputs, sampler.device))
    suggestion = _suggestion(sampler.samples, float(target_band_fraction), min_alpha)
    if apply:
        for name, module in layers.items():
            if isinstance(module, HeLU) and name in suggestion.per_layer:
                module.set_alpha(suggestion.global_alpha if apply == "global" else suggestion.per_layer[name])
    return suggestion


class _Sampler:
    """Forward pre-hooks that keep up to ``per_batch`` random non-positive pre-activation magnitudes per layer."""

    def __init__(self, layers: dict[str, nn.Module], per_batch: int, seed: int) -> None:
        self.layers = layers
        self.per_batch = per_batch
        self.generator = torch.Generator().manual_seed(seed)
        self.samples: dict[str, list[Tensor]] = {name: [] for name in layers}
        self.device = torch.device("cpu")

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            magnitudes = -args[0].detach().float().flatten()
            magnitudes = magnitudes[(magnitudes >= 0) & torch.isfinite(magnitudes)].cpu()
            if self.per_batch and magnitudes.numel() > self.per_batch:
                magnitudes = magnitudes[torch.randperm(magnitudes.numel(), generator=self.generator)[:self.per_batch]]
            self.samples[name].append(magnitudes)

        return hook

    @contextlib.contextmanager
    def hooked(self, model: nn.Module, train_mode: bool) -> Iterator[None]:
        """Run the block with the hooks on, no gradients, ``model`` in train/eval mode; restore everything after
        (BatchNorm running statistics too, which a training-mode pass would update)."""
        was_training = model.training
        buffers = {k: v.clone() for k, v in model.state_dict().items()} if train_mode else None
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))
        handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in self.layers.items()]
        try:
            model.train(train_mode)
            with torch.no_grad():
                yield
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)
            if buffers is not None:
                model.load_state_dict(buffers)


def _suggestion(samples: dict[str, list[Tensor]], target_band_fraction: float, min_alpha: float) -> AlphaSuggestion:
    """Per-layer and pooled ``target_band_fraction`` quantiles of the sampled magnitudes, raised to ``min_alpha``."""
    per_layer, counts, pooled = {}, {}, []
    for name, chunks in samples.items():
        values = torch.cat(chunks).double().numpy() if chunks else np.empty(0)
        counts[name] = int(values.size)
        if values.size:
            per_layer[name] = max(float(np.quantile(values, target_band_fraction)), min_alpha)
            pooled.append(values)
    if not pooled:
        raise UserError("suggest_alpha saw no non-positive pre-activation: the dataloader was empty or every "
                        "monitored layer's input was positive; check the dataloader and module_types")
    global_alpha = max(float(np.quantile(np.concatenate(pooled), target_band_fraction)), min_alpha)
    return AlphaSuggestion(per_layer, global_alpha, target_band_fraction, counts)
