"""`helu-train serve` against hostile requests and doctored export folders: tiny images that a resize would blow up,
bodies that break a JSON decoder, manifests that do not fit their model, all answered in one line without a 500 or a
traceback; and exactly which modules the serving path imports. A tiny ONNX model stands in for an export."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_client import free_port, post, running_server

ROOT = Path(__file__).resolve().parents[1]
IMAGE = {"kind": "image", "input_size": [1, 8, 8], "mean": [0.3], "std": [0.4], "convert": None, "resize": 256,
         "crop": [8, 8], "interpolation": "bilinear", "class_names": [str(i) for i in range(10)]}


def _onnx_model(path: Path, name: str = "input", shape: tuple = ("N", 1, 8, 8)) -> None:
    """A 64 -> 10 linear model on a (N, 1, 8, 8) image input, written with onnx.helper (no export needed)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.linspace(-1, 1, 640, dtype=np.float32).reshape(64, 10), "W")
    nodes = [helper.make_node("Flatten", [name], ["flat"]), helper.make_node("MatMul", ["flat", "W"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def _export(folder: Path, contract: object = IMAGE, model: object = None, **onnx: object) -> Path:
    folder.mkdir(parents=True)
    manifest = {"input": contract, "model": {"inputs": ["input"]} if model is None else model}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    _onnx_model(folder / "model.onnx", **onnx)
    return folder


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width), 7, np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


EXTREME = [(1, 4000), (4000, 1), (1, 60000), (60000, 2), (3, 900), (17, 300)]  # w, h: resized 256 x up to 15M


@pytest.mark.parametrize("width, height", EXTREME)
def test_a_resize_that_would_blow_up_a_tiny_image_is_refused_before_any_pixel(
        width: int, height: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from helu_lightning.serve.api import ExportAPI, Rejected
    from helu_lightning.serve.export_dir import ExportFolder

    resized = []
    monkeypatch.setattr(Image.Image, "resize", lambda self, *a, **k: resized.append(a) or self)
    api = ExportAPI(ExportFolder(Path("model.onnx"), "onnx", ["input"], IMAGE))
    body = _png(width, height)
    assert len(body) < 400
    answer = api.decode_request({"image": base64.b64encode(body).decode()})
    assert isinstance(answer, Rejected) and answer.status == 422, answer
    assert f"{width}x{height}" in answer.reason and "\n" not in answer.reason
    assert resized == []


def test_an_ordinary_image_is_still_resized_and_cropped() -> None:
    from helu_lightning.serve.api import ExportAPI
    from helu_lightning.serve.export_dir import ExportFolder

    api = ExportAPI(ExportFolder(Path("model.onnx"), "onnx", ["input"], IMAGE))
    for width, height in [(300, 200), (16, 250), (8, 8)]:
        array = api.decode_request({"image": base64.b64encode(_png(width, height)).decode()})
        assert isinstance(array, np.ndarray) and array.shape == (1, 8, 8)


DEEP = 100_000
HOSTILE = {
    "nested lists": b"[" * DEEP + b"]" * DEEP,
    "nested objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "image nested": b'{"image": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "image nested 900": b'{"image": ' + b"[" * 900 + b"]" * 900 + b"}",
    "image a number": b'{"image": 1e999999}',
    "image huge int": b'{"image": ' + b"9" * 100_000 + b"}",
    "image an object": b'{"image": {"x": "y"}}',
    "image null": b'{"image": null}',
    "image bool": b'{"image": true}',
    "lone surrogate": b'{"image": "\\ud800"}',
    "NaN": b'{"image": NaN}',
    "bad escape": b'{"image": "\\x"}',
    "not UTF-8": b'{"image": "\xff\xfe"}',
    "UTF-16": '{"image": "x"}'.encode("utf-16"),
    "only a bracket": b"[",
    "a string": b'"image"',
}


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_a_hostile_json_body_gets_a_one_line_4xx(what: str) -> None:
    from helu_lightning.serve.body import RequestBody

    for kind in ("image", "text"):
        payload, status, reason = RequestBody(None, kind=kind, path="/predict", max_bytes=2**30)._payload(
            HOSTILE[what], "application/json")
        if payload is None:
            assert 400 <= status < 500 and reason and "\n" not in reason and len(reason) < 300, (kind, reason)
        else:  # passed on: then only string fields the model reads, nothing nested
            assert all(isinstance(v, str) for v in json.loads(payload).values()), (kind, payload[:100])


def test_text_fields_with_lone_surrogates_or_non_strings_are_refused_before_the_tokenizer() -> None:
    from helu_lightning.serve.body import RequestBody

    middleware = RequestBody(None, kind="text", path="/predict", max_bytes=2**20)
    for body in (b'{"text": "a\\udc80b"}', b'{"text": "ok", "text_pair": "\\ud800"}', b'{"text": "ok", "text_pair": 3}',
                 b'{"text": ["a"]}'):
        payload, status, reason = middleware._payload(body, "application/json")
        assert payload is None and status == 400 and "\n" not in reason, (body, reason)
    payload, status, _ = middleware._payload(b'{"text": "fine", "text_pair": "also"}', "application/json")
    assert json.loads(payload) == {"text": "fine", "text_pair": "also"}
    payload, status, reason = middleware._payload(b'{"text": "fine", "extra": [[[]]]}', "application/json")
    assert payload is None and status == 422 and "'extra'" in reason


@pytest.mark.slow
def test_server_answers_hostile_bodies_and_blown_up_images_4xx_and_keeps_serving(tmp_path: Path) -> None:
    folder = _export(tmp_path / "export")
    log = tmp_path / "server.log"
    with running_server(["--export_dir", str(folder), "--max_batch_size", "4"], log=log) as (port, _):
        bodies = [(body, "application/json") for body in HOSTILE.values()]
        bodies += [(_png(w, h), "image/png") for w, h in EXTREME]
        for body, content_type in bodies:
            status, answer = post(port, body, content_type)
            assert 400 <= status < 500, (body[:40], status, answer)
            assert "\n" not in answer["detail"], answer
            good, label = post(port, _png(40, 30), "image/png")
            assert good == 200 and label["label"] in IMAGE["class_names"], label
    assert "Traceback" not in log.read_text()


DOCTORED = {
    "unknown input name": ({"model": {"inputs": ["nope"]}}, "model.inputs ['nope'] but model.onnx takes ['input']"),
    "two inputs": ({"model": {"inputs": ["input", "mask"]}}, "an image model takes one"),
    "inputs a string": ({"model": {"inputs": "input"}}, "model.inputs 'input' is not a list"),
    "inputs of numbers": ({"model": {"inputs": [1]}}, "model.inputs [1] is not a list"),
    "model a list": ({"model": ["input"]}, "model ['input'] is not a JSON object"),
    "renamed in the model": ({"onnx": {"name": "pixels"}}, "model.onnx takes ['pixels']"),
    "size not the model's": ({"input": {**IMAGE, "input_size": [1, 9, 9], "crop": [9, 9]}}, "does not fit model.onnx"),
    "channels not the model's": ({"input": {**IMAGE, "input_size": [3, 8, 8], "mean": [0] * 3, "std": [1] * 3}},
                                 "does not fit model.onnx"),
    "crop not the input size": ({"input": {**IMAGE, "crop": [4, 4]}}, "crop=[4, 4] cannot be applied"),
    "convert not the channels": ({"input": {**IMAGE, "convert": "RGB"}}, "convert='RGB' cannot be applied"),
    "kind a list": ({"input": {**IMAGE, "kind": ["image"]}}, "input kind ['image']"),
    "resize a string": ({"input": {**IMAGE, "resize": "256"}}, "resize='256' cannot be applied"),
    "text model inputs": ({"input": {"kind": "text", "max_length": 8}, "model": {"inputs": ["input"]}},
                          "are not distinct tokenizer columns"),
}


@pytest.mark.parametrize("what", sorted(DOCTORED))
def test_a_doctored_manifest_stops_serve_in_one_line_before_listening(
        what: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import litserve

    from helu_lightning.commands import main

    change, message = DOCTORED[what]
    monkeypatch.setattr(litserve.LitServer, "run", lambda *a, **k: pytest.fail("serve started listening"))
    folder = _export(tmp_path / "export", change.get("input", IMAGE), change.get("model"), **change.get("onnx", {}))
    if change.get("input", {}).get("kind") == "text":
        (folder / "hf").mkdir()
        (folder / "hf" / "tokenizer.json").write_text("{}")
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--export_dir", str(folder), "--port", str(free_port())])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_helu_train_serve_exits_on_a_doctored_manifest_as_a_subprocess(tmp_path: Path) -> None:
    folder = _export(tmp_path / "export", model={"inputs": ["nope"]})
    command = ["serve", "--export_dir", str(folder), "--port", str(free_port())]
    done = subprocess.run([sys.executable, "-m", "helu_lightning", *command],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode != 0 and "model.inputs ['nope']" in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1 and "serve:" not in done.stdout, done.stderr


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"\x80\x02 a pickle, not an export"])
def test_a_pt2_that_does_not_load_stops_serve_in_one_line_before_listening(tmp_path: Path, content: bytes) -> None:
    folder = _export(tmp_path / "export")
    (folder / "model.pt2").write_bytes(content)
    command = ["serve", "--export_dir", str(folder), "--model", "pt2", "--trust_export", "--port", str(free_port())]
    done = subprocess.run([sys.executable, "-m", "helu_lightning", *command],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "cannot be loaded by torch.export.load" in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1 and "serve:" not in done.stdout, done.stderr


def test_the_serving_path_imports_exactly_what_the_readme_says() -> None:
    """The README's Serve section names what the serving modules import: no torch and nothing of the training code,
    only the package face (which loads its names on first use) and the serving modules. A change to either side
    must change the other."""
    script = ("import sys, helu_lightning.serve.api, helu_lightning.serve.command, helu_lightning.serve.body; "
              "import json; print(json.dumps(sorted(m for m in sys.modules if m.startswith('helu_lightning') or "
              "m in ('torch', 'lightning', 'pytorch_lightning', 'transformers', 'torchvision', 'timm', 'optuna'))))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = set(json.loads(done.stdout.strip().splitlines()[-1]))
    serve = {f"helu_lightning.serve.{m}" for m in ("api", "body", "command", "export_dir", "preprocess")}
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Serve: `helu-train serve`"):]
    section = " ".join(section[:section.index("\n## ")].split())
    assert "no Lightning, transformers, torchvision, timm or Optuna" in section
    assert "and no torch: the package's face (`import helu_lightning`) imports its names on first use" in section
    assert imported == {"helu_lightning", "helu_lightning.errors", "helu_lightning.serve"} | serve


@pytest.mark.parametrize("width, height", EXTREME[:3])
def test_the_exported_model_py_refuses_the_same_blown_up_resize(width: int, height: int) -> None:
    """``model.py``'s ``preprocess`` is a copy of the server's code: the same bound travels with it."""
    from helu_lightning.models.standalone import preprocess_source

    namespace: dict = {}
    exec(preprocess_source(IMAGE), namespace)  # noqa: S102 - the source this package writes into model.py
    with pytest.raises(ValueError, match=f"{width}x{height} pixels would be resized"):
        namespace["prepare_image"](Image.open(io.BytesIO(_png(width, height))), namespace["INPUT"])
