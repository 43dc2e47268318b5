"""HeLU -> ReLU exporter: a trained checkpoint leaves as a plain ReLU model that needs nothing of helu-lightning.

HeLU's forward is ReLU, so swapping every HeLU for ``nn.ReLU`` changes no output bit; the exporter checks that on
a real batch, then writes safetensors weights, a ``torch.export`` program, an ONNX file (optionally INT8) and, for
Hugging Face models, a ``save_pretrained`` directory with its tokenizer, plus a ``manifest.json``.

    helu-train export --ckpt_path runs/cifar10/checkpoints/last.ckpt --output_dir exported/cifar10
    helu-train export --ckpt_path best.ckpt --output_dir exported/sst2 --format hf,onnx --quantize int8

The task class comes from ``--task``, else from the ``_class_path`` LightningCLI stores in the checkpoint's
hyper-parameters, else from the built-in tasks whose ``__init__`` accepts the stored hyper-parameters. The
DataModule (for the verification batch and the INT8 metric) comes the same way from ``--data`` or the checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import importlib
import importlib.metadata
import inspect
import io
import json
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch import Tensor, nn

from .activations import HeLU, NaiveHeLU
from .checkpoints import CheckpointError, read_checkpoint
from .io import atomic_directory
from .models.standalone import write_loader
from .surgery import replace_activations

__all__ = [
    "FORMATS",
    "CheckpointError",
    "VerificationError",
    "checkpoint_metrics",
    "export_checkpoint",
    "load_checkpoint",
    "load_task",
    "main",
    "onnx_feeds",
    "split_batch",
    "to_relu",
    "val_loader",
    "verify_bitwise",
    "write_onnx",
]

FORMATS = ("safetensors", "pt2", "onnx", "hf")
KNOWN_TASKS = ("helu_lightning.tasks.vision.VisionClassifier", "helu_lightning.tasks.glue.GlueClassifier")
TRUSTED_PREFIX = "helu_lightning."
LABEL_KEYS = ("labels", "label")
TOKENIZER_KEYS = ("tokenizer", "tokenizer_name", "tokenizer_name_or_path", "model_name_or_path",
                  "pretrained_model_name_or_path", "model_name", "pretrained", "backbone")
# File formats are compared with a tolerance (other kernels / graph rewrites); the eager swap must be bitwise.
RTOL, ATOL = 1e-3, 1e-4


class VerificationError(RuntimeError):
    """The exported model does not reproduce the trained model's outputs."""


def load_checkpoint(path: str | Path, unsafe_load: bool = False) -> tuple[dict[str, Any], bytes]:
    """Read a Lightning checkpoint (``weights_only`` unless ``unsafe_load``); return it and its raw bytes."""
    path = Path(path)
    data = path.read_bytes() if path.is_file() else None  # read once: hashed, then loaded from memory
    return read_checkpoint(path, weights_only=not unsafe_load, unsafe_flag="--unsafe_load", data=data), data


def _import_class(class_path: str, base: type, what: str, source: Path) -> type:
    module_name, _, name = class_path.rpartition(".")
    flag = "--task" if base is LightningModule else "--data"
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise CheckpointError(f"{what} class {class_path!r} for {source} cannot be imported ({err}); "
                              f"pass {flag} with an importable class path") from err
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise CheckpointError(f"{class_path!r} is not a {base.__name__} subclass; pass the class that wrote {source}")
    return cls


def _stored_class_path(hparams: Mapping[str, Any], explicit: str | None, trusted: tuple[str, ...],
                       what: str, source: Path) -> str | None:
    """The class path to rebuild from: the explicit one, else LightningCLI's ``_class_path`` when trusted."""
    if explicit:
        return explicit
    stored = hparams.get("_class_path")
    if stored is None:
        return None
    if not str(stored).startswith(trusted):
        flag = "--task" if what == "task" else "--data"
        raise CheckpointError(f"checkpoint {source} asks for {what} class {stored!r} outside helu_lightning; importing "
                              f"it runs its code, so pass {flag} {stored} if you trust it")
    return str(stored)


def _guess_task(hparams: Mapping[str, Any], source: Path) -> str:
    """The one built-in task whose ``__init__`` takes exactly the stored hyper-parameters."""
    keys = {k for k in hparams if not k.startswith("_")}
    matches = []
    for class_path in KNOWN_TASKS:
        module_name, _, name = class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            continue
        params = inspect.signature(cls.__init__).parameters
        names = {n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        required = {n for n in names if params[n].default is inspect.Parameter.empty}
        if keys <= names and required <= keys:
            matches.append(class_path)
    if len(matches) != 1:
        found = f"it matches {matches}" if matches else "no built-in task takes its hyper-parameters"
        raise CheckpointError(f"cannot tell which LightningModule wrote {source} ({found}; stored keys: "
                              f"{sorted(keys)}); pass --task package.module.TaskClass")
    return matches[0]


def load_task(ckpt_path: str | Path, task: str | None = None, unsafe_load: bool = False
              ) -> tuple[LightningModule, dict[str, Any], bytes, str]:
    """Rebuild the LightningModule of a checkpoint; return it, the raw checkpoint, its bytes and its class path."""
    path = Path(ckpt_path)
    ckpt, data = load_checkpoint(path, unsafe_load)
    hparams = ckpt.get("hyper_parameters") or {}
    trusted = (TRUSTED_PREFIX,) + ((task.split(".")[0] + ".",) if task else ())
    class_path = _stored_class_path(hparams, task, trusted, "task", path) or _guess_task(hparams, path)
    cls = _import_class(class_path, LightningModule, "task", path)
    try:
        module = cls.load_from_checkpoint(io.BytesIO(data), map_location="cpu", weights_only=not unsafe_load)
    except Exception as err:  # any rebuild failure is reported with the class and file it concerns
        raise CheckpointError(f"could not rebuild {class_path} from {path}: {type(err).__name__}: {err}; "
                              "check --task names the class that wrote this checkpoint") from err
    if not (isinstance(getattr(module, "model", None), nn.Module) and callable(getattr(module, "example_input", None))):
        raise CheckpointError(f"{class_path} does not expose `model` (nn.Module) and `example_input(batch_size)`, "
                              "which export needs; add them to the task")
    return module.eval(), ckpt, data, class_path


def _load_datamodule(data: bytes, ckpt: Mapping[str, Any], explicit: str | None, trusted: tuple[str, ...],
                     unsafe_load: bool, source: Path) -> tuple[LightningDataModule | None, str]:
    """The checkpoint's DataModule, set up for validation, or None and the reason it could not be rebuilt."""
    hparams = ckpt.get("datamodule_hyper_parameters")
    class_path = _stored_class_path(hparams or {}, explicit, trusted, "datamodule", source)
    if class_path is None:
        return None, "the checkpoint names no DataModule class; pass --data package.module.DataModuleClass"
    cls = _import_class(class_path, LightningDataModule, "datamodule", source)
    try:
        dm = cls.load_from_checkpoint(io.BytesIO(data), map_location="cpu", weights_only=not unsafe_load)
        dm.setup("validate")
        next(iter(val_loader(dm)))
    except Exception as err:  # missing data on this machine is normal: fall back to example_input, say why
        return None, f"{class_path} could not load validation data: {type(err).__name__}: {err}"
    return dm, class_path


def val_loader(dm: LightningDataModule) -> Any:
    """The DataModule's (first) validation dataloader; raise ValueError when it has none."""
    loader = dm.val_dataloader()
    if isinstance(loader, (list, tuple)):
        if not loader:
            raise ValueError(f"{type(dm).__name__} has no validation split (val_fraction 0?)")
        loader = loader[0]
    return loader


def _forward_names(model: nn.Module) -> list[str]:
    return list(inspect.signature(model.forward).parameters)


def split_batch(batch: Any, model: nn.Module) -> tuple[Tensor | dict[str, Tensor], Tensor | None]:
    """A DataModule batch as (model inputs, labels): ``(x, y)`` tuples and dicts of tensors with a ``labels`` key."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (list, tuple)):
        return batch[0], (batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None)
    if isinstance(batch, Mapping):
        accepted = set(_forward_names(model))
        inputs = {k: v for k, v in batch.items() if k in accepted and k not in LABEL_KEYS and isinstance(v, Tensor)}
        labels = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        return inputs, labels
    raise TypeError(f"cannot split a batch of type {type(batch).__name__} into model inputs and labels; "
                    "use (inputs, labels) tuples or dicts of tensors with a 'labels' key")


def _logits(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping) or hasattr(output, "logits"):
        logits = output["logits"] if isinstance(output, Mapping) else output.logits
        if isinstance(logits, Tensor):
            return logits
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(f"cannot find the logits in a model output of type {type(output).__name__}")


def _run(model: nn.Module, inputs: Tensor | Mapping[str, Tensor]) -> Tensor:
    with torch.no_grad():
        return _logits(model(**inputs) if isinstance(inputs, Mapping) else model(inputs))


def _is_hf(model: nn.Module) -> bool:
    return hasattr(model, "config") and hasattr(model, "save_pretrained")


def to_relu(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """A deep copy of ``model`` with every HeLU replaced by ``nn.ReLU`` (and an HF config saying ``relu``)."""
    plain = copy.deepcopy(model).eval()
    replaced = replace_activations(plain, "relu", targets=(HeLU, NaiveHeLU), strict=False)
    if replaced and _is_hf(plain):
        plain.config.hidden_act = "relu"
        if hasattr(plain.config, "helu_activation"):
            del plain.config.helu_activation
    return plain, replaced


def _compare(reference: Tensor, output: Tensor) -> dict[str, Any]:
    output = torch.as_tensor(output)
    if reference.shape != output.shape:
        return {"bitwise_equal": False, "max_abs_diff": math.inf, "allclose": False, "shape": list(output.shape)}
    diff = (reference.double() - output.double()).abs().max().item() if reference.numel() else 0.0
    return {"bitwise_equal": bool(torch.equal(reference, output)), "max_abs_diff": diff,
            "allclose": bool(torch.allclose(reference, output.to(reference.dtype), rtol=RTOL, atol=ATOL))}


def verify_bitwise(reference: nn.Module, exported: nn.Module, inputs: Tensor | Mapping[str, Tensor]) -> dict[str, Any]:
    """Check ``exported`` gives bit-for-bit the outputs of ``reference`` on ``inputs``; VerificationError if not."""
    result = _compare(_run(reference, inputs), _run(exported, inputs))
    if not result["bitwise_equal"]:
        raise VerificationError(
            f"the exported {type(exported).__name__} differs from the trained model (max abs diff "
            f"{result['max_abs_diff']:.3g}); HeLU's forward is ReLU, so only the activations may change: check that "
            "nothing but HeLU modules differs between the two models"
        )
    return result


def _check_format(name: str, result: dict[str, Any]) -> dict[str, Any]:
    if not result["allclose"]:
        raise VerificationError(f"the {name} export differs from the eager model by {result['max_abs_diff']:.3g} "
                                f"(tolerance rtol={RTOL}, atol={ATOL}); nothing was written")
    return result


def _alphas(model: nn.Module) -> float | dict[str, float] | None:
    # Shortest decimal of the float32 buffer: 0.05, not 0.05000000074505806.
    values = {name: float(str(np.float32(m.alpha))) for name, m in model.named_modules()
              if isinstance(m, (HeLU, NaiveHeLU))}
    if not values:
        return None
    distinct = set(values.values())
    return distinct.pop() if len(distinct) == 1 else values


def _plain(value: Any) -> Any:
    """JSON-safe copy: tensors become numbers or lists, unknown objects their repr."""
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def checkpoint_metrics(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint knows of its scores: epoch, step, and each callback's monitor / best / current score."""
    metrics: dict[str, Any] = {"epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step")}
    keep = ("monitor", "best_model_score", "current_score", "best_model_path", "best_score", "wait_count",
            "stopped_epoch")
    callbacks = {}
    for key, state in (ckpt.get("callbacks") or {}).items():
        if isinstance(state, Mapping):
            picked = {k: _plain(state[k]) for k in keep if k in state}
            if picked:
                callbacks[str(key)] = picked
    metrics["callbacks"] = callbacks
    return metrics


class _Positional(nn.Module):
    """Calls an HF model with named tensors given positionally and returns only the logits (ONNX/pt2 friendly)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *tensors: Tensor) -> Tensor:
        return _logits(self.model(**dict(zip(self.names, tensors))))


def _graph_inputs(plain: nn.Module, inputs: Tensor | Mapping[str, Tensor]
                  ) -> tuple[nn.Module, tuple[Tensor, ...], list[str], tuple[Any, ...]]:
    """Module, positional example tensors (batch >= 2), input names and dynamic shapes for torch.export / ONNX."""
    batch = torch.export.Dim("batch", min=1)
    if isinstance(inputs, Mapping):
        names = list(inputs)
        tensors = tuple(_at_least_two(inputs[n]) for n in names)
        limit = getattr(getattr(plain, "config", None), "max_position_embeddings", None)
        seq = torch.export.Dim("seq", min=1, max=limit) if limit else torch.export.Dim("seq", min=1)
        shapes = tuple({0: batch, 1: seq} if t.dim() >= 2 else {0: batch} for t in tensors)
        # The wrapper takes *tensors, one parameter to torch.export: its dynamic shapes nest one level down.
        return _Positional(plain, names).eval(), tensors, names, (shapes,)
    return plain, (_at_least_two(inputs),), ["input"], ({0: batch},)


def _at_least_two(tensor: Tensor) -> Tensor:
    # torch.export specialises sizes 0 and 1, so trace with two samples (and two tokens) whatever the real batch.
    tensor = tensor[:2]
    if tensor.shape[0] < 2:
        tensor = tensor.expand(2, *tensor.shape[1:])
    if tensor.dim() >= 2 and tensor.shape[1] < 2:
        tensor = torch.cat([tensor, tensor], dim=1)
    return tensor.contiguous()


def onnx_feeds(names: Sequence[str], inputs: Tensor | Mapping[str, Tensor]) -> dict[str, Any]:
    """The onnxruntime input dict for ``inputs`` under the ONNX input ``names`` that ``write_onnx`` returned."""
    if isinstance(inputs, Mapping):
        return {n: inputs[n].numpy() for n in names}
    return {names[0]: inputs.numpy()}


def _tokenizer(task: LightningModule, dm: LightningDataModule | None, explicit: str | None,
               hparams: Sequence[Mapping[str, Any]]) -> tuple[Any, str | None]:
    """The tokenizer to ship with an HF model: --tokenizer, the task's or DataModule's, or one named in hparams."""
    from transformers import AutoTokenizer, PreTrainedTokenizerBase

    if explicit:
        return AutoTokenizer.from_pretrained(_resolve(explicit)), explicit
    for owner in (task, dm):
        found = getattr(owner, "tokenizer", None)
        if isinstance(found, PreTrainedTokenizerBase):
            return found, f"{type(owner).__name__}.tokenizer"
    for params in hparams:
        for key in TOKENIZER_KEYS:
            name = params.get(key)
            if isinstance(name, str) and name:
                try:
                    return AutoTokenizer.from_pretrained(_resolve(name)), name
                except (OSError, ValueError):
                    continue
    return None, None


def _resolve(name: str) -> str:
    from .models.text import resolve_pretrained

    return resolve_pretrained(name)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("helu-lightning", "torch", "lightning", "transformers", "onnx", "onnxruntime", "safetensors"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _parse_formats(formats: str | Sequence[str] | None, hf: bool) -> list[str]:
    if formats is None:
        return [f for f in FORMATS if f != "hf" or hf]
    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    unknown = [f for f in items if f not in FORMATS]
    if unknown or not items:
        raise ValueError(f"unknown export format(s) {unknown or formats!r}; choose from {', '.join(FORMATS)} "
                         "(comma-separated, e.g. --format safetensors,onnx)")
    if "hf" in items and not hf:
        raise ValueError("format 'hf' needs a Hugging Face model (task.model with save_pretrained); "
                         "drop it from --format")
    return list(dict.fromkeys(items))


def _onnx_metric(paths: Mapping[str, Path], dm: LightningDataModule, model: nn.Module, names: Sequence[str],
                 max_batches: int | None) -> dict[str, Any]:
    """Validation metric of each ONNX file over the same batches: accuracy, or Pearson r for one-output regression."""
    import onnxruntime as ort

    sessions = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    outputs: dict[str, list[Tensor]] = {k: [] for k in sessions}
    labels: list[Tensor] = []
    for index, batch in enumerate(val_loader(dm)):
        if max_batches is not None and index >= max_batches:
            break
        inputs, target = split_batch(batch, model)
        if target is None:
            return {"metric": None, "reason": "validation batches carry no labels"}
        feeds = onnx_feeds(names, inputs)
        for key, session in sessions.items():
            outputs[key].append(torch.from_numpy(session.run(None, feeds)[0]))
        labels.append(target)
    target = torch.cat(labels)
    result: dict[str, Any] = {"samples": int(target.shape[0])}
    for key, chunks in outputs.items():
        logits = torch.cat(chunks)
        if logits.dim() == 2 and logits.shape[1] > 1:
            result["metric"] = "accuracy"
            result[key] = (logits.argmax(dim=1) == target).double().mean().item()
        else:
            result["metric"] = "pearson"
            result[key] = torch.corrcoef(torch.stack([logits.flatten().double(), target.double()]))[0, 1].item()
    if "fp32" in result and "int8" in result:
        result["delta"] = result["int8"] - result["fp32"]
    return result


def export_checkpoint(
    ckpt_path: str | Path,
    output_dir: str | Path,
    formats: str | Sequence[str] | None = None,
    quantize: str | None = None,
    overwrite: bool = False,
    task: str | None = None,
    data: str | None = None,
    tokenizer: str | None = None,
    unsafe_load: bool = False,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """Export a HeLU checkpoint as a verified plain-ReLU model into ``output_dir``; return the manifest."""
    if quantize not in (None, "int8"):
        raise ValueError(f"unknown quantization {quantize!r}; the only choice is --quantize int8")
    _parse_formats(formats, hf=True)  # unknown names fail before the checkpoint is read
    output_dir, ckpt_path = Path(output_dir), Path(ckpt_path)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir} already exists; choose another --output_dir or pass --overwrite")
    module, ckpt, raw, class_path = load_task(ckpt_path, task, unsafe_load)
    trained = module.model.eval()
    hf = _is_hf(trained)
    chosen = _parse_formats(formats, hf)
    if quantize and "onnx" not in chosen:
        chosen.append("onnx")

    trusted = (TRUSTED_PREFIX,) + tuple(p.split(".")[0] + "." for p in (task, data) if p)
    dm, dm_source = _load_datamodule(raw, ckpt, data, trusted, unsafe_load, ckpt_path)
    if dm is not None:
        inputs, _ = split_batch(next(iter(val_loader(dm))), trained)
        batch_source = f"first validation batch of {dm_source}"
    else:
        inputs = module.example_input(2)
        batch_source = f"{class_path}.example_input(2) ({dm_source})"

    plain, replaced = to_relu(trained)
    verification: dict[str, Any] = {"batch": batch_source, "relu_vs_helu": verify_bitwise(trained, plain, inputs)}
    reference = _run(plain, inputs)
    graph_module, example, names, shapes = _graph_inputs(plain, inputs)
    files: dict[str, str] = {}

    with atomic_directory(output_dir, overwrite=overwrite) as tmp:
        if "safetensors" in chosen:
            from safetensors.torch import load_file, save_file

            state = {k: v.detach().clone().contiguous() for k, v in plain.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt", "source": str(ckpt_path)})
            loaded = load_file(str(tmp / "model.safetensors"))
            same = loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
            if not same:
                raise VerificationError("model.safetensors does not read back the tensors written; disk problem?")
            verification["safetensors"] = {"tensors": len(state), "read_back_equal": same}
            files["safetensors"] = "model.safetensors"
            loader = write_loader(module.hparams, plain, replaced, tmp / "model.py", inputs)
            if loader is not None:
                verification["loader"], files["loader"] = loader, loader["file"]
        if "pt2" in chosen:
            program = torch.export.export(graph_module, example, dynamic_shapes=shapes)
            torch.export.save(program, str(tmp / "model.pt2"))
            loaded_program = torch.export.load(str(tmp / "model.pt2")).module()
            args = tuple(inputs[n] for n in names) if isinstance(inputs, Mapping) else (inputs,)
            with torch.no_grad():
                verification["pt2"] = _check_format("pt2", _compare(reference, loaded_program(*args)))
            files["pt2"] = "model.pt2"
        if "onnx" in chosen:
            verification["onnx"] = _export_onnx(plain, inputs, tmp / "model.onnx", reference,
                                                expect_relu=bool(replaced))
            files["onnx"] = "model.onnx"
        if "hf" in chosen:
            verification["hf"] = _export_hf(plain, module, dm, tokenizer, ckpt, tmp / "hf", inputs, reference)
            files["hf"] = "hf"
        quantization = None
        if quantize:
            quantization = _quantize(tmp, dm, plain, names, onnx_feeds(names, inputs), reference, max_batches)
            files["onnx_int8"] = "model.int8.onnx"

        manifest = _plain({
            "source": {"checkpoint": str(ckpt_path.resolve()), "sha256": hashlib.sha256(raw).hexdigest(),
                       "task": class_path, "datamodule": dm_source if dm is not None else None,
                       "hyper_parameters": _plain({k: v for k, v in (ckpt.get("hyper_parameters") or {}).items()
                                                   if k != "_instantiator"})},
            "model": {"class": f"{type(plain).__module__}.{type(plain).__qualname__}", "inputs": names,
                      "outputs": ["logits"], "dynamic_axes": {"batch": 0, **({"sequence": 1} if hf else {})}},
            "activation": {"replaced_with": "relu", "layers": replaced, "alpha": _alphas(trained)},
            "verification": verification,
            "metrics": checkpoint_metrics(ckpt),
            "quantization": quantization,
            "formats": chosen,
            "files": files,
            "versions": _versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        })
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _readable(tmp)
    return manifest


def _readable(root: Path) -> None:
    """Give the export the usual permissions (the temporary directory and some writers create owner-only files)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def write_onnx(model: nn.Module, inputs: Tensor | Mapping[str, Tensor], path: str | Path) -> list[str]:
    """Export ``model`` to one ONNX file with torch.onnx's dynamo exporter (dynamic batch, and sequence for dict
    inputs); an HF model is wrapped to take its tensors positionally and return only the logits. Returns the
    ONNX input names."""
    module, example, names, shapes = _graph_inputs(model, inputs)
    big = sum(p.numel() * p.element_size() for p in module.parameters()) > 1.8 * 2**30
    torch.onnx.export(module, example, str(path), input_names=names, output_names=["logits"],
                      dynamic_shapes=shapes, dynamo=True, external_data=big, verbose=False)
    return names


def _export_onnx(plain: nn.Module, inputs: Tensor | Mapping[str, Tensor], path: Path, reference: Tensor,
                 expect_relu: bool) -> dict[str, Any]:
    """ONNX export, then check the graph holds only standard ops and onnxruntime reproduces the eager outputs."""
    import onnx
    import onnxruntime as ort

    names = write_onnx(plain, inputs, path)
    graph = onnx.load(str(path), load_external_data=False)
    ops = sorted({n.op_type for n in graph.graph.node})
    custom = sorted({n.domain for n in graph.graph.node if n.domain not in ("", "ai.onnx")})
    if custom or (expect_relu and "Relu" not in ops):
        raise VerificationError(f"the ONNX graph is not plain: custom domains {custom}, ops {ops}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    output = torch.from_numpy(session.run(None, onnx_feeds(names, inputs))[0])
    result = _check_format("onnx", _compare(reference, output))
    return {**result, "opset": graph.opset_import[0].version, "ops": ops}


def _export_hf(plain: nn.Module, task: LightningModule, dm: LightningDataModule | None, tokenizer: str | None,
               ckpt: Mapping[str, Any], path: Path, inputs: Mapping[str, Tensor], reference: Tensor) -> dict[str, Any]:
    """save_pretrained + tokenizer, reloaded with plain AutoModelForSequenceClassification and compared."""
    from transformers import AutoModelForSequenceClassification

    plain.save_pretrained(str(path))
    hparams = [ckpt.get("hyper_parameters") or {}, ckpt.get("datamodule_hyper_parameters") or {}]
    found, source = _tokenizer(task, dm, tokenizer, hparams)
    if found is not None:
        found.save_pretrained(str(path))
    else:
        print("export: no tokenizer found (pass --tokenizer NAME_OR_PATH); the hf directory has the model only",
              file=sys.stderr)
    reloaded = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    result = _check_format("hf", _compare(reference, _run(reloaded, inputs)))
    return {**result, "hidden_act": getattr(reloaded.config, "hidden_act", None), "tokenizer": source}


def _quantize(tmp: Path, dm: LightningDataModule | None, model: nn.Module, names: list[str], feeds: dict[str, Any],
              reference: Tensor, max_batches: int | None) -> dict[str, Any]:
    """Dynamic INT8 ONNX (weights int8, activations quantized per batch) and the fp32 vs INT8 validation metric."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(tmp / "model.onnx"), str(tmp / "model.int8.onnx"), weight_type=QuantType.QInt8)
    session = ort.InferenceSession(str(tmp / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    int8 = torch.from_numpy(session.run(None, feeds)[0])
    result: dict[str, Any] = {"method": "onnxruntime.quantization.quantize_dynamic, QInt8 weights",
                              "max_abs_diff_vs_eager": _compare(reference, int8)["max_abs_diff"]}
    if dm is None:
        result["validation"] = {"metric": None, "reason": "no validation data: the DataModule could not be rebuilt"}
        print("export: INT8 written; validation metric not measured (no DataModule; pass --data)")
        return result
    paths = {"fp32": tmp / "model.onnx", "int8": tmp / "model.int8.onnx"}
    result["validation"] = metric = _onnx_metric(paths, dm, model, names, max_batches)
    if metric.get("metric"):
        print(f"export: validation {metric['metric']} on {metric['samples']} samples: fp32 {metric['fp32']:.4f}, "
              f"int8 {metric['int8']:.4f} (delta {metric['delta']:+.4f})")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``helu-train export ...``: parse arguments, export, print where the files went."""
    parser = argparse.ArgumentParser(prog="helu-train export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="Lightning checkpoint (.ckpt) of a HeLU model")
    parser.add_argument("--output_dir", required=True, help="directory to create (refused if it exists)")
    parser.add_argument("--format", default=None,
                        help=f"comma-separated subset of {','.join(FORMATS)} (default: all that apply)")
    parser.add_argument("--quantize", choices=["int8"], default=None, help="also write a dynamic INT8 ONNX model")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output_dir")
    parser.add_argument("--task", default=None, help="LightningModule class path, if the checkpoint does not name it")
    parser.add_argument("--data", default=None, help="LightningDataModule class path for validation data")
    parser.add_argument("--tokenizer", default=None, help="tokenizer name or path for text models")
    parser.add_argument("--max_batches", type=int, default=None, help="limit INT8 evaluation to N batches")
    parser.add_argument("--unsafe_load", action="store_true",
                        help="allow pickled objects in the checkpoint (only for files you trust)")
    args = parser.parse_args(argv)
    try:
        manifest = export_checkpoint(args.ckpt_path, args.output_dir, args.format, args.quantize, args.overwrite,
                                     args.task, args.data, args.tokenizer, args.unsafe_load, args.max_batches)
    except (CheckpointError, VerificationError, FileExistsError, ValueError) as err:
        parser.exit(2, f"helu-train export: error: {err}\n")
    check = manifest["verification"]["relu_vs_helu"]
    print(f"export: {len(manifest['activation']['layers'])} HeLU layers -> ReLU, outputs bitwise equal: "
          f"{check['bitwise_equal']}; wrote {', '.join(manifest['files'].values())} and manifest.json "
          f"to {args.output_dir}")
    return manifest


if __name__ == "__main__":
    main()
