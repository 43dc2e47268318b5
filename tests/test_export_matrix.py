"""Every model the project trains exports in every format: each built-in backbone at 1 and 3 input channels (plain
ones with and without BatchNorm) and the text model, through safetensors, torch.export (pt2), ONNX and (text)
save_pretrained. Each artifact is loaded in
a fresh interpreter where helu_lightning cannot be imported, and must give the trained model's outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch

from helu_lightning.export import export_checkpoint
from helu_lightning.tasks.glue import GlueClassifier
from helu_lightning.tasks.vision import VisionClassifier

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_BERT = {"model_type": "bert", "vocab_size": 128, "hidden_size": 16, "num_hidden_layers": 1,
             "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32}
BACKBONES = {
    "small_cnn": {"width": 4},
    "resnet18_cifar": {"width": 4},
    "wide_resnet": {"depth": 10, "width": 1},
    "torchvision:resnet18": {},
    "plain_mlp": {"depth": 3, "width": 8, "norm": "none"},
    "plain_mlp+batch": {"depth": 3, "width": 8, "norm": "batch"},
    "plain_cnn": {"depth": 3, "width": 4, "norm": "none"},
    "plain_cnn+batch": {"depth": 3, "width": 4, "norm": "batch"},
}

# A fresh interpreter that refuses to import helu_lightning, then loads every artifact and runs it on the batch.
LOAD = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "helu_lightning":
            raise ImportError("helu_lightning is blocked in this interpreter")
sys.meta_path.insert(0, Block())
import onnxruntime as ort, torch
from safetensors.torch import load_file
out, batch_path, arch = sys.argv[1], sys.argv[2], sys.argv[3]
batch = torch.load(batch_path, weights_only=True)
names = json.load(open(f"{out}/manifest.json"))["model"]["inputs"]
args = [batch[n] for n in names] if isinstance(batch, dict) else [batch]
with torch.no_grad():
    result = {"pt2": torch.export.load(f"{out}/model.pt2").module()(*args).tolist(),
              "onnx": ort.InferenceSession(f"{out}/model.onnx").run(
                  None, {n: a.numpy() for n, a in zip(names, args)})[0].tolist(),
              "state": {k: v.double().sum().item() for k, v in load_file(f"{out}/model.safetensors").items()}}
    if arch.startswith("torchvision:"):
        import torchvision
        model = torchvision.models.get_model(arch.split(":")[1], num_classes=10).eval()
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        if first.in_channels != batch.shape[1]:  # helu-lightning rebuilt the first conv for grey images
            parent_name, _, attr = next(n for n, m in model.named_modules() if m is first).rpartition(".")
            conv = torch.nn.Conv2d(batch.shape[1], first.out_channels, first.kernel_size, first.stride,
                                   first.padding, bias=first.bias is not None)
            setattr(model.get_submodule(parent_name), attr, conv)
        model.load_state_dict(load_file(f"{out}/model.safetensors"), strict=True)
        result["safetensors"] = model(batch).tolist()
    if arch == "hf":
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained(f"{out}/hf").eval()
        result["hf"] = model(**batch).logits.tolist()
        result["hidden_act"] = model.config.hidden_act
    result["helu_imported"] = [m for m in sys.modules if m.startswith("helu_lightning")]
print(json.dumps(result))
"""


def _checkpoint(task: lightning.LightningModule, path: Path) -> Path:
    """The checkpoint Lightning would write for ``task`` (weights and hyper-parameters)."""
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "epoch": 0,
                "global_step": 0, "pytorch-lightning_version": lightning.__version__}, path)
    return path


def _fresh(out: Path, batch: torch.Tensor | dict, arch: str, tmp_path: Path) -> dict:
    torch.save(batch, tmp_path / "batch.pt")
    done = subprocess.run([sys.executable, "-c", LOAD, str(out), str(tmp_path / "batch.pt"), arch],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _state_sums(model: torch.nn.Module) -> dict[str, float]:
    return {k: v.double().sum().item() for k, v in model.state_dict().items() if not k.endswith("alpha")}


@pytest.mark.slow
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_exports_in_every_format(backbone: str, in_channels: int, tmp_path: Path) -> None:
    task = VisionClassifier(backbone=backbone.split("+")[0], in_channels=in_channels, image_size=16,
                            backbone_options=BACKBONES[backbone], activation={"name": "helu", "alpha": 0.5}).eval()
    ckpt = _checkpoint(task, tmp_path / "model.ckpt")
    manifest = export_checkpoint(ckpt, tmp_path / "out", formats="safetensors,pt2,onnx")
    files = {"safetensors": "model.safetensors", "pt2": "model.pt2", "onnx": "model.onnx"}
    assert manifest["files"].items() >= files.items()
    assert manifest["activation"]["layers"] and manifest["verification"]["relu_vs_helu"]["bitwise_equal"]

    batch = torch.randn(3, in_channels, 16, 16)  # another batch size than the one traced
    with torch.no_grad():
        expected = task(batch)
    loaded = _fresh(tmp_path / "out", batch, backbone, tmp_path)
    assert loaded["helu_imported"] == []
    for name in ("pt2", "onnx", "safetensors"):
        if name in loaded:
            torch.testing.assert_close(torch.tensor(loaded[name]), expected, rtol=1e-4, atol=1e-5, msg=name)
    assert loaded["state"] == pytest.approx(_state_sums(task.model), rel=1e-12)


@pytest.mark.slow
def test_text_model_exports_in_every_format(tmp_path: Path) -> None:
    task = GlueClassifier("sst2", model_config=TINY_BERT, activation={"name": "helu", "alpha": 0.5}).eval()
    ckpt = _checkpoint(task, tmp_path / "model.ckpt")
    manifest = export_checkpoint(ckpt, tmp_path / "out")
    assert manifest["formats"] == ["safetensors", "pt2", "onnx", "hf"]
    assert manifest["source"]["task"] == "helu_lightning.tasks.glue.GlueClassifier"

    batch = task.example_input(3, seq_len=5)  # another batch size and length than the ones traced
    with torch.no_grad():
        expected = task.model(**batch).logits
    loaded = _fresh(tmp_path / "out", batch, "hf", tmp_path)
    assert loaded["helu_imported"] == [] and loaded["hidden_act"] == "relu"
    assert torch.equal(torch.tensor(loaded["hf"]), expected)
    for name in ("pt2", "onnx"):
        torch.testing.assert_close(torch.tensor(loaded[name]), expected, rtol=1e-4, atol=1e-5, msg=name)
    assert loaded["state"] == pytest.approx(_state_sums(task.model), rel=1e-12)


STATIC_OPS = {"QuantizeLinear", "DequantizeLinear"}
DYNAMIC_OPS = {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}
BBC = {"_class_path": "helu_lightning.data.text.TextClassificationDataModule", "max_length": 16, "batch_size": 8,
       "eval_batch_size": 64}


def _with_data(ckpt: Path, datamodule: dict) -> Path:
    """Add the DataModule a LightningCLI fit records (class path and arguments) to the checkpoint at ``ckpt``."""
    saved = torch.load(ckpt, weights_only=True)
    saved["datamodule_hyper_parameters"] = datamodule
    torch.save(saved, ckpt)
    return ckpt


@pytest.mark.slow
@pytest.mark.parametrize("method", ["static", "dynamic"])
@pytest.mark.parametrize("backbone", [*sorted(BACKBONES), "hf"])
def test_every_backbone_quantizes_with_either_int8_method(backbone: str, method: str, tmp_path: Path) -> None:
    """Each backbone (on the digits) and the text model (on BBC news) exports INT8 by either method: the graph holds
    that method's ops, the manifest says so (static: calibrated on training batches), and the file runs."""
    import onnx
    import onnxruntime as ort

    if backbone == "hf":
        task = GlueClassifier("classification", num_labels=5, model_config={**TINY_BERT, "vocab_size": 30522},
                              activation={"name": "helu", "alpha": 0.5}).eval()
        ckpt = _with_data(_checkpoint(task, tmp_path / "model.ckpt"), BBC)
        batch = {k: v.numpy() for k, v in task.example_input(3, seq_len=5).items()}
    else:
        task = VisionClassifier(backbone=backbone.split("+")[0], in_channels=1, image_size=8,
                                backbone_options=BACKBONES[backbone], activation={"name": "helu", "alpha": 0.5}).eval()
        ckpt = _with_data(_checkpoint(task, tmp_path / "model.ckpt"),
                          {"_class_path": "helu_lightning.data.digits.DigitsDataModule", "batch_size": 32})
        batch = {"input": torch.randn(3, 1, 8, 8).numpy()}
    # An untrained model scores near chance either way: the guard is tested elsewhere, so allow any loss here.
    manifest = export_checkpoint(ckpt, tmp_path / "out", formats="onnx", quantize="int8", int8_method=method,
                                 calibration_batches=2, max_batches=2, int8_max_drop=1.0)
    quantization = manifest["quantization"]
    assert quantization["method"] == method and quantization["guard"]["kept"]
    assert quantization["validation"]["metric"] == "accuracy"
    if method == "static":
        assert quantization["format"] == "QDQ" and quantization["calibration"]["batches"] == 2
    else:
        assert quantization["calibration"] is None
    path = tmp_path / "out" / "model.int8.onnx"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ops & (STATIC_OPS if method == "static" else DYNAMIC_OPS), sorted(ops)
    assert not ops & (DYNAMIC_OPS if method == "static" else {"QuantizeLinear"}), sorted(ops)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {i.name: batch[i.name] for i in session.get_inputs()})[0]
    assert logits.shape == (3, 5 if backbone == "hf" else 10) and np.isfinite(logits).all()
