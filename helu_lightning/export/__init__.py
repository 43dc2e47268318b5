"""HeLU -> ReLU exporter: a trained checkpoint leaves as a plain ReLU model that needs nothing of helu-lightning.

HeLU's forward is ReLU, so swapping every HeLU for ``nn.ReLU`` changes no output bit; the exporter checks that on
a real batch, then writes safetensors weights, a ``torch.export`` program, an ONNX file (optionally INT8) and, for
Hugging Face models, a ``save_pretrained`` directory with its tokenizer, plus a ``manifest.json``.

    helu-train export --ckpt_path runs/cifar10/checkpoints/last.ckpt --output_dir exported/cifar10

Modules: ``loading`` (checkpoint, task and DataModule under the trust rules), ``verify`` (the swap and its
checks), ``graph`` (example inputs and dynamic shapes), ``writers`` (one writer per format), ``quantize`` (INT8),
``manifest``, ``output`` (where an export may go) and ``command`` (``build_parser``, ``run``, ``main``).
"""

from ..batches import split_batch
from ..checkpoints import CheckpointError
from .command import FORMATS, build_parser, export_checkpoint, main, run
from .graph import onnx_feeds, write_onnx
from .loading import load_checkpoint, load_task, val_loader
from .manifest import checkpoint_metrics
from .output import ExportOutputError
from .verify import VerificationError, to_relu, verify_bitwise

__all__ = [
    "FORMATS",
    "CheckpointError",
    "ExportOutputError",
    "VerificationError",
    "build_parser",
    "checkpoint_metrics",
    "export_checkpoint",
    "load_checkpoint",
    "load_task",
    "main",
    "onnx_feeds",
    "run",
    "split_batch",
    "to_relu",
    "val_loader",
    "verify_bitwise",
    "write_onnx",
]
