"""Example inputs and dynamic shapes for ``torch.export`` and ONNX: images vary in batch only, token tensors in
batch and sequence length; HF models are wrapped to take their tensors positionally and return the logits."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .verify import logits

__all__ = ["export_onnx", "graph_inputs", "onnx_feeds", "write_onnx"]

# torch.onnx warns once per extra input that shares a named Dim ("The axis name: batch will not be used, since it
# shares the same shape constraints with another axis: batch"): token inputs share batch and sequence on purpose.
_SHARED_AXIS_WARNING = r"# The axis name: .* will not be used, since it shares the same shape constraints"


def export_onnx(module: nn.Module, example: tuple[Any, ...], path: str | Path, **kwargs: Any) -> None:
    """``torch.onnx.export(..., dynamo=True)`` without its warning about inputs that share a dynamic axis."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SHARED_AXIS_WARNING)
        torch.onnx.export(module, example, str(path), dynamo=True, verbose=False, **kwargs)


class _Positional(nn.Module):
    """Calls an HF model with named tensors given positionally and returns only the logits (ONNX/pt2 friendly)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *tensors: Tensor) -> Tensor:
        return logits(self.model(**dict(zip(self.names, tensors))))


def _two_along(tensor: Tensor, dim: int) -> Tensor:
    """At least two entries along ``dim`` (repeating the first): torch.export specialises sizes 0 and 1."""
    if tensor.shape[dim] >= 2:
        return tensor
    return torch.cat([tensor, tensor], dim=dim) if tensor.shape[dim] == 1 else tensor


def _example(tensor: Tensor, sequence: bool) -> Tensor:
    """A traceable copy of a real input: two samples, and two tokens for a token tensor (never more channels)."""
    tensor = _two_along(tensor[:2], 0)
    if sequence and tensor.dim() >= 2:
        tensor = _two_along(tensor, 1)
    return tensor.contiguous()


def graph_inputs(plain: nn.Module, inputs: Tensor | Mapping[str, Tensor]
                 ) -> tuple[nn.Module, tuple[Tensor, ...], list[str], tuple[Any, ...]]:
    """Module, positional example tensors, input names and dynamic shapes for torch.export / ONNX.

    A tensor input is an image batch: only its batch dimension is dynamic. Named inputs are token tensors
    ``(batch, sequence)``: both are dynamic, the sequence up to the model's ``max_position_embeddings``.
    """
    batch = torch.export.Dim("batch", min=1)
    if isinstance(inputs, Mapping):
        names = list(inputs)
        tensors = tuple(_example(inputs[n], sequence=True) for n in names)
        limit = getattr(getattr(plain, "config", None), "max_position_embeddings", None)
        seq = torch.export.Dim("seq", min=1, max=limit) if limit else torch.export.Dim("seq", min=1)
        shapes = tuple({0: batch, 1: seq} if t.dim() >= 2 else {0: batch} for t in tensors)
        # The wrapper takes *tensors, one parameter to torch.export: its dynamic shapes nest one level down.
        return _Positional(plain, names).eval(), tensors, names, (shapes,)
    return plain, (_example(inputs, sequence=False),), ["input"], ({0: batch},)


def onnx_feeds(names: Sequence[str], inputs: Tensor | Mapping[str, Tensor]) -> dict[str, Any]:
    """The onnxruntime input dict for ``inputs`` under the ONNX input ``names`` that ``write_onnx`` returned."""
    if isinstance(inputs, Mapping):
        return {n: inputs[n].numpy() for n in names}
    return {names[0]: inputs.numpy()}


def write_onnx(model: nn.Module, inputs: Tensor | Mapping[str, Tensor], path: str | Path) -> list[str]:
    """Export ``model`` to one ONNX file with torch.onnx's dynamo exporter (dynamic batch, and sequence for named
    inputs); an HF model is wrapped to take its tensors positionally and return only the logits. Returns the
    ONNX input names."""
    module, example, names, shapes = graph_inputs(model, inputs)
    big = sum(p.numel() * p.element_size() for p in module.parameters()) > 1.8 * 2**30
    export_onnx(module, example, path, input_names=names, output_names=["logits"], dynamic_shapes=shapes,
                external_data=big)
    return names
