"""One writer per export format, chosen by name from :data:`WRITERS`. Each writes into the export's temporary
folder, reads what it wrote back with the format's own loader and compares it with the eager ReLU model, and
returns what it wrote as manifest key -> (file, verification)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch import Tensor, nn

from ..models.standalone import write_loader
from .graph import graph_inputs, onnx_feeds, write_onnx
from .verify import VerificationError, check_format, compare, eager_logits

__all__ = ["ExportJob", "WRITERS", "Written"]

# What a writer returns: manifest key -> (file or folder it wrote, its verification record).
Written = dict[str, tuple[str, dict[str, Any]]]

TOKENIZER_KEYS = ("tokenizer", "tokenizer_name", "tokenizer_name_or_path", "model_name_or_path",
                  "pretrained_model_name_or_path", "model_name", "pretrained", "backbone")


@dataclass
class ExportJob:
    """What every writer needs: the plain model, the batch it was verified on and its eager logits."""

    plain: nn.Module
    task: LightningModule
    datamodule: LightningDataModule | None
    inputs: Tensor | Mapping[str, Tensor]
    reference: Tensor
    replaced: list[str]
    ckpt: Mapping[str, Any]
    source: Path
    tokenizer: str | None = None
    contract: dict[str, Any] | None = None  # the input contract (export.contract), None when unknown


def write_safetensors(job: ExportJob, folder: Path) -> Written:
    """``model.safetensors``: the ReLU model's state dict, read back tensor for tensor; for a built-in backbone also
    ``model.py``, which rebuilds it from the weights without helu-lightning."""
    from safetensors.torch import load_file, save_file

    state = {k: v.detach().clone().contiguous() for k, v in job.plain.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt", "source": str(job.source)})
    loaded = load_file(str(folder / "model.safetensors"))
    same = loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    if not same:
        raise VerificationError("model.safetensors does not read back the tensors written; disk problem?")
    written = {"safetensors": ("model.safetensors", {"tensors": len(state), "read_back_equal": same})}
    loader = write_loader(job.task.hparams, job.plain, job.replaced, folder / "model.py", job.inputs, job.contract)
    if loader is not None:
        written["loader"] = (loader["file"], loader)
    return written


def write_pt2(job: ExportJob, folder: Path) -> Written:
    """``model.pt2``: a ``torch.export`` program with a dynamic batch (and sequence), reloaded and compared."""
    module, example, names, shapes = graph_inputs(job.plain, job.inputs)
    program = torch.export.export(module, example, dynamic_shapes=shapes)
    torch.export.save(program, str(folder / "model.pt2"))
    loaded = torch.export.load(str(folder / "model.pt2")).module()
    args = tuple(job.inputs[n] for n in names) if isinstance(job.inputs, Mapping) else (job.inputs,)
    with torch.no_grad():
        return {"pt2": ("model.pt2", check_format("pt2", compare(job.reference, loaded(*args))))}


def write_onnx_checked(job: ExportJob, folder: Path) -> Written:
    """``model.onnx``: standard ops only (a Relu where HeLU was), onnxruntime reproduces the eager outputs."""
    import onnx
    import onnxruntime as ort

    path = folder / "model.onnx"
    names = write_onnx(job.plain, job.inputs, path)
    graph = onnx.load(str(path), load_external_data=False)
    ops = sorted({n.op_type for n in graph.graph.node})
    custom = sorted({n.domain for n in graph.graph.node if n.domain not in ("", "ai.onnx")})
    if custom or (job.replaced and "Relu" not in ops):
        raise VerificationError(f"the ONNX graph is not plain: custom domains {custom}, ops {ops}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    output = torch.from_numpy(session.run(None, onnx_feeds(names, job.inputs))[0])
    return {"onnx": ("model.onnx", {**check_format("onnx", compare(job.reference, output)),
                                    "opset": graph.opset_import[0].version, "ops": ops})}


def _tokenizer(job: ExportJob) -> tuple[Any, str | None]:
    """The tokenizer to ship with an HF model: --tokenizer, the task's or DataModule's, or one named in hparams."""
    from transformers import AutoTokenizer, PreTrainedTokenizerBase

    from ..models.text import resolve_pretrained

    if job.tokenizer:
        return AutoTokenizer.from_pretrained(resolve_pretrained(job.tokenizer)), job.tokenizer
    for owner in (job.task, job.datamodule):
        found = getattr(owner, "tokenizer", None)
        if isinstance(found, PreTrainedTokenizerBase):
            return found, f"{type(owner).__name__}.tokenizer"
    hparams: Sequence[Mapping[str, Any]] = [job.ckpt.get("hyper_parameters") or {},
                                            job.ckpt.get("datamodule_hyper_parameters") or {}]
    for params in hparams:
        for key in TOKENIZER_KEYS:
            name = params.get(key)
            if isinstance(name, str) and name:
                try:
                    return AutoTokenizer.from_pretrained(resolve_pretrained(name)), name
                except (OSError, ValueError):
                    continue
    return None, None


def write_hf(job: ExportJob, folder: Path) -> Written:
    """``hf/``: save_pretrained + tokenizer, reloaded with plain AutoModelForSequenceClassification and compared."""
    from transformers import AutoModelForSequenceClassification

    path = folder / "hf"
    job.plain.save_pretrained(str(path))
    found, source = _tokenizer(job)
    if found is not None:
        found.save_pretrained(str(path))
    else:
        print("export: no tokenizer found (pass --tokenizer NAME_OR_PATH); the hf directory has the model only",
              file=sys.stderr)
    reloaded = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    result = check_format("hf", compare(job.reference, eager_logits(reloaded, job.inputs)))
    return {"hf": ("hf", {**result, "hidden_act": getattr(reloaded.config, "hidden_act", None), "tokenizer": source})}


WRITERS: dict[str, Callable[[ExportJob, Path], Written]] = {
    "safetensors": write_safetensors,
    "pt2": write_pt2,
    "onnx": write_onnx_checked,
    "hf": write_hf,
}
