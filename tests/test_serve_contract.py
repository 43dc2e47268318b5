"""`helu-train serve` answers only what its model was trained on, over real HTTP: a field of another model's input
(a sentence pair to a single-sentence model, an image to a text model, text to an image model) gets 422 in one
line, and a body is JSON only when its Content-Type says so (a news item starting "[Reuters]" sent as plain text or
as curl's form content type is text). Hand-made ONNX exports with a word-level tokenizer stand in for real ones."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_client import post, running_server

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "reuters", "markets", "rose", "goals", "fell", "[", "]", "{", "}"]


def _text_export(folder: Path, pair: bool) -> Path:
    """A text export: a word-level tokenizer and an ONNX model mapping (input_ids, attention_mask) to 3 logits."""
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    (folder / "hf").mkdir(parents=True)
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "hf" / "tokenizer.json"))
    weight = numpy_helper.from_array(np.linspace(-1, 1, 3, dtype=np.float32).reshape(1, 3), "W")
    nodes = [helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["ids"], ["total"], keepdims=1),
             helper.make_node("MatMul", ["total", "W"], ["logits"])]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", "L"]) for n in ("input_ids", "attention_mask")]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                                                 ["N", 3])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    contract = {"kind": "text", "max_length": 16, "text_pair": pair, "class_names": ["a", "b", "c"]}
    (folder / "manifest.json").write_text(json.dumps({"input": contract,
                                                      "model": {"inputs": ["input_ids", "attention_mask"]}}))
    return folder


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 7, np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def _image_export(folder: Path) -> Path:
    from test_serve_hostile import IMAGE, _export

    return _export(folder, IMAGE)


def _one_line_4xx(answer: tuple[int, dict], status: int, *words: str) -> None:
    code, body = answer
    assert code == status, answer
    detail = body["detail"]
    assert isinstance(detail, str) and "\n" not in detail and all(w in detail for w in words), detail


@pytest.mark.slow
def test_a_single_sentence_text_server_refuses_other_models_fields_and_reads_non_json_bodies_as_text(
        tmp_path: Path) -> None:
    folder = _text_export(tmp_path / "single", pair=False)
    log = tmp_path / "server.log"
    with running_server(["--export_dir", str(folder), "--max_batch_size", "1"], log=log) as (port, _):
        ok = post(port, json.dumps({"text": "markets rose"}).encode(), "application/json")
        assert ok[0] == 200 and ok[1]["label"] in ("a", "b", "c"), ok
        for fields in ({"text": "markets rose", "text_pair": "goals fell"},
                       {"text": "markets rose", "image": base64.b64encode(_png()).decode()},
                       {"image": base64.b64encode(_png()).decode()}):
            for content_type in ("application/json", "application/json; charset=utf-8"):
                _one_line_4xx(post(port, json.dumps(fields).encode(), content_type), 422, "not trained on")
        _one_line_4xx(post(port, b'{"text": "markets rose", "id": 7}', "application/json"), 422, "'id'")
        # Not JSON unless the content type says so: the same answer as the text itself.
        for text in ("[ reuters ] markets rose", "{ markets } rose", '{"text": "goals"}', "[1, 2]"):
            plain = post(port, text.encode(), "text/plain")
            assert plain[0] == 200, (text, plain)
            for content_type in ("application/x-www-form-urlencoded", None, "text/plain; charset=utf-8"):
                assert post(port, text.encode(), content_type) == plain, (text, content_type)
        assert "Traceback" not in log.read_text()  # read while serving: litserve may log one as it shuts down


@pytest.mark.slow
def test_a_pair_server_takes_the_pair_and_an_image_server_refuses_text(tmp_path: Path) -> None:
    pair = _text_export(tmp_path / "pair", pair=True)
    with running_server(["--export_dir", str(pair)]) as (port, _):
        both = post(port, b'{"text": "markets rose", "text_pair": "goals fell"}', "application/json")
        assert both[0] == 200, both
        _one_line_4xx(post(port, b'{"text": "a", "text_pair": "b", "image": "AA=="}', "application/json"), 422,
                      "'image'")
    image = _image_export(tmp_path / "image")
    with running_server(["--export_dir", str(image)]) as (port, _):
        encoded = base64.b64encode(_png()).decode()
        assert post(port, json.dumps({"image": encoded}).encode(), "application/json")[0] == 200
        for fields in ({"text": "a cat"}, {"image": encoded, "text": "a cat"}, {"image": encoded, "text_pair": "x"}):
            _one_line_4xx(post(port, json.dumps(fields).encode(), "application/json"), 422, "not trained on")
        # JSON without a JSON content type is image bytes, and not an image.
        _one_line_4xx(post(port, json.dumps({"image": encoded}).encode(), "application/x-www-form-urlencoded"),
                      415, "not a PNG or JPEG")


def test_the_middleware_parses_json_only_for_json_content_types() -> None:
    from helu_lightning.serve.body import RequestBody

    text = RequestBody(None, kind="text", path="/predict", max_bytes=2**20, fields=("text",))
    for content_type in ("", "text/plain", "application/x-www-form-urlencoded", "text/json-ish", "image/png"):
        payload, status, _ = text._payload(b'[Reuters] {"markets": 1}', content_type)
        assert status == 200 and json.loads(payload) == {"text": '[Reuters] {"markets": 1}'}, content_type
    for content_type in ("application/json", "application/ld+json", "text/json"):
        payload, status, reason = text._payload(b'{"text": "x", "text_pair": "y"}', content_type)
        assert payload is None and status == 422 and "text_pair" in reason, content_type
