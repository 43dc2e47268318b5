"""Export a HeLU checkpoint as a verified plain-ReLU model that needs nothing of helu-lightning.

    helu-train export --ckpt_path runs/cifar10/checkpoints/last.ckpt --output_dir exported/cifar10
    helu-train export --ckpt_path best.ckpt --output_dir exported/sst2 --format hf,onnx --quantize int8

``--quantize int8`` writes static QDQ INT8 calibrated on the training split for conv and MLP nets and dynamic INT8
for transformers (``--int8_method`` overrides), and keeps it only when it loses at most ``--int8_max_drop`` of the
validation metric.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..batches import split_batch
from ..errors import UserError
from .contract import input_contract, name_hf_labels, stamp_onnx
from .loading import load_datamodule, load_task, val_loader
from .manifest import MANIFEST, build_manifest, file_hashes
from .output import check_output_dir, export_folder
from .quantize import (
    CALIBRATION_BATCHES,
    INT8_METHODS,
    MAX_DROP,
    Int8AccuracyError,
    calibration_feeds,
    choose_method,
    guard,
    quantize_int8,
)
from .verify import VerificationError, eager_logits, is_hf, to_relu, verify_bitwise
from .writers import WRITERS, ExportJob

__all__ = ["FORMATS", "build_parser", "export_checkpoint", "main", "run"]

FORMATS = tuple(WRITERS)


def parse_formats(formats: str | Sequence[str] | None, hf: bool) -> list[str]:
    """The chosen format names in order (default: every format that applies); UserError for unknown ones."""
    if formats is None:
        return [f for f in FORMATS if f != "hf" or hf]
    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    unknown = [f for f in items if f not in FORMATS]
    if unknown or not items:
        raise UserError(f"unknown export format(s) {unknown or formats!r}; choose from {', '.join(FORMATS)} "
                        "(comma-separated, e.g. --format safetensors,onnx)")
    if "hf" in items and not hf:
        raise UserError("format 'hf' needs a Hugging Face model (task.model with save_pretrained); "
                        "drop it from --format")
    return list(dict.fromkeys(items))


def _check_options(quantize: str | None, formats: str | Sequence[str] | None, max_batches: int | None,
                   int8_method: str, calibration_batches: int, int8_max_drop: float) -> None:
    if quantize not in (None, "int8"):
        raise UserError(f"unknown quantization {quantize!r}; the only choice is --quantize int8")
    if max_batches is not None and max_batches < 1:
        raise UserError(f"--max_batches must be a positive number of batches, got {max_batches}")
    if int8_method not in INT8_METHODS:
        raise UserError(f"unknown --int8_method {int8_method!r}; choose from {', '.join(INT8_METHODS)}")
    if calibration_batches < 1:
        raise UserError(f"--calibration_batches must be a positive number of batches, got {calibration_batches}")
    if math.isnan(int8_max_drop):
        raise UserError("--int8_max_drop is NaN; pass a number such as 0.01 (one point of accuracy)")
    parse_formats(formats, hf=True)  # unknown names fail before the checkpoint is read


def export_checkpoint(
    ckpt_path: str | Path,
    output_dir: str | Path,
    formats: str | Sequence[str] | None = None,
    quantize: str | None = None,
    overwrite: bool = False,
    task: str | None = None,
    data: str | None = None,
    tokenizer: str | None = None,
    trust_checkpoint: bool = False,
    max_batches: int | None = None,
    int8_method: str = "auto",
    calibration_batches: int = CALIBRATION_BATCHES,
    int8_max_drop: float = MAX_DROP,
    keep_int8: bool = False,
) -> dict[str, Any]:
    """Export a HeLU checkpoint as a verified plain-ReLU model into ``output_dir``; return the manifest.

    With ``quantize="int8"``, Int8AccuracyError after the export is in place (without ``model.int8.onnx``) when
    INT8 loses more than ``int8_max_drop`` of the validation metric, unless ``keep_int8``."""
    _check_options(quantize, formats, max_batches, int8_method, calibration_batches, int8_max_drop)
    ckpt_path = Path(ckpt_path)
    output_dir = check_output_dir(output_dir, ckpt_path, overwrite)
    module, ckpt, raw, class_path = load_task(ckpt_path, task, trust_checkpoint)
    trained = module.model.eval()
    chosen = parse_formats(formats, is_hf(trained))
    if quantize and "onnx" not in chosen:
        chosen.append("onnx")
    dm, dm_source = load_datamodule(raw, ckpt, data, trust_checkpoint, ckpt_path)
    if dm is not None:
        inputs, _ = split_batch(next(iter(val_loader(dm))), trained)
        batch = f"first validation batch of {dm_source}"
    else:
        inputs = module.example_input(2)
        batch = f"{class_path}.example_input(2) ({dm_source})"
    plain, replaced = to_relu(trained)
    method, chosen_by = choose_method(plain, int8_method)
    calibration, samples = None, 0
    if quantize and method == "static":
        if dm is None:
            reason = dm_source.split("; pass --data")[0]
            raise UserError(f"static INT8 calibrates on the task's training data and there is none ({reason}); "
                            "pass --data package.module.DataModuleClass with its data present, or --int8_method "
                            "dynamic")
        calibration, samples = calibration_feeds(dm, trained, calibration_batches)
    verification: dict[str, Any] = {"batch": batch, "relu_vs_helu": verify_bitwise(trained, plain, inputs)}
    contract = input_contract(dm, plain)
    if contract is None:
        print("export: the input contract (preprocessing, label names) is not recorded: no DataModule describes it; "
              "pass --data with the DataModule class path to serve raw inputs", file=sys.stderr)
    name_hf_labels(plain, contract)
    job = ExportJob(plain, module, dm, inputs, eager_logits(plain, inputs), replaced, ckpt, ckpt_path, tokenizer,
                    contract)
    files: dict[str, str] = {}
    with export_folder(output_dir, ckpt_path, overwrite) as tmp:
        for name in chosen:
            for key, (file, check) in WRITERS[name](job, tmp).items():
                files[key], verification[key] = file, check
        quantization, rejected = None, None
        if quantize:
            quantization = quantize_int8(tmp, dm, plain, inputs, job.reference, max_batches, method, calibration,
                                         samples)
            quantization["chosen_by"] = chosen_by
            rejected = guard(quantization["validation"], int8_max_drop)
            measured = bool(quantization["validation"].get("metric"))
            quantization["guard"] = {"max_drop": int8_max_drop, "passed": rejected is None if measured else None,
                                     "kept": rejected is None or keep_int8}
            if rejected and not keep_int8:
                (tmp / "model.int8.onnx").unlink()
            else:
                files["onnx_int8"] = "model.int8.onnx"
        for key in ("onnx", "onnx_int8"):
            if contract is not None and key in files:
                stamp_onnx(tmp / files[key], contract)
        manifest = build_manifest(
            source=ckpt_path, raw=raw, ckpt=ckpt, task=class_path, datamodule=dm_source if dm is not None else None,
            trained=trained, plain_model=plain, inputs=list(inputs) if isinstance(inputs, dict) else ["input"],
            hf=is_hf(trained), replaced=replaced, verification=verification, quantization=quantization,
            formats=chosen, files=files, contract=contract, contents=file_hashes(tmp))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _readable(tmp)
    if rejected and not keep_int8:
        raise Int8AccuracyError(f"{rejected}; the fp32 files are in {output_dir}")
    if rejected:
        print(f"export: {rejected.split(':')[0]}; kept anyway (--keep_int8)", file=sys.stderr)
    return manifest


def _readable(root: Path) -> None:
    """Give the export the usual permissions (the temporary directory and some writers create owner-only files)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def build_parser() -> argparse.ArgumentParser:
    """The ``helu-train export`` argument parser."""
    parser = argparse.ArgumentParser(prog="helu-train export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="Lightning checkpoint (.ckpt) of a HeLU model")
    parser.add_argument("--output_dir", required=True,
                        help="folder to create (an existing one is refused; it may not hold the checkpoint)")
    parser.add_argument("--format", default=None,
                        help=f"comma-separated subset of {','.join(FORMATS)} (default: all that apply)")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="also write an INT8 ONNX model (model.int8.onnx), checked against fp32 on validation data")
    parser.add_argument("--int8_method", choices=INT8_METHODS, default="auto",
                        help="static (QDQ, calibrated on training batches), dynamic, or auto (default: static for "
                             "conv and MLP nets, dynamic for transformers)")
    parser.add_argument("--calibration_batches", type=int, default=CALIBRATION_BATCHES,
                        help=f"training batches that calibrate static INT8 (default {CALIBRATION_BATCHES})")
    parser.add_argument("--int8_max_drop", type=float, default=MAX_DROP,
                        help=f"largest validation loss INT8 may have, as a fraction (default {MAX_DROP}: one point "
                             "of accuracy, or 0.01 of Pearson r); beyond it model.int8.onnx is not kept and export "
                             "exits with status 2")
    parser.add_argument("--keep_int8", action="store_true",
                        help="keep model.int8.onnx even when it loses more than --int8_max_drop")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --output_dir when it holds a previous export (and nothing else)")
    parser.add_argument("--task", default=None, help="LightningModule class path, if the checkpoint does not name it")
    parser.add_argument("--data", default=None, help="LightningDataModule class path for validation data")
    parser.add_argument("--tokenizer", default=None, help="tokenizer name or path for text models")
    parser.add_argument("--max_batches", type=int, default=None, help="limit INT8 evaluation to N batches")
    parser.add_argument("--trust_checkpoint", "--unsafe_load", dest="trust_checkpoint", action="store_true",
                        help="trust the file: allow pickled objects and any class path in it (files you trust only)")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Export as ``args`` say and print where the files went; UserError for anything the user can fix."""
    manifest = export_checkpoint(args.ckpt_path, args.output_dir, args.format, args.quantize, args.overwrite,
                                 args.task, args.data, args.tokenizer, args.trust_checkpoint, args.max_batches,
                                 args.int8_method, args.calibration_batches, args.int8_max_drop, args.keep_int8)
    check = manifest["verification"]["relu_vs_helu"]
    print(f"export: {len(manifest['activation']['layers'])} HeLU layers -> ReLU, outputs bitwise equal: "
          f"{check['bitwise_equal']}; wrote {', '.join(manifest['files'].values())} and {MANIFEST} "
          f"to {args.output_dir}")
    return manifest


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``helu-train export ...`` (back-compat entry point): parse, export, report a UserError without a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (UserError, VerificationError) as err:
        if os.environ.get("HELU_DEBUG"):
            raise
        parser.exit(2, f"helu-train export: error: {err}\n")
