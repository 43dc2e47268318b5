"""The LitServe API of ``helu-train serve``: four small methods over an export folder. ``setup`` opens the model
(onnxruntime, or ``torch.export`` for ``.pt2``), ``decode_request`` applies the recorded preprocessing,
``predict`` runs a dynamic batch, ``encode_response`` answers the label and the top-k probabilities.

A request that cannot be served (not an image, wrong size or mode, no text) is answered 4xx by its own response,
never by an exception: LitServe fails a whole batch on one, and a bad request must not take good ones with it.
Imports: numpy, PIL, onnxruntime, tokenizers and litserve; nothing of the training code, but torch and HeLU's
modules through ``helu_lightning/__init__.py`` (the README's Serve section lists them).
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

import litserve as ls
import numpy as np

from .export_dir import ExportFolder
from .preprocess import prepare_image

__all__ = ["ExportAPI", "Rejected"]

MAX_PIXELS = 64 * 2**20  # a decoded image larger than this is refused before its pixels are read
IMAGE_FORMATS = ("PNG", "JPEG")


@dataclass(frozen=True)
class Rejected:
    """A request that cannot be served: its HTTP status and one-line reason."""

    status: int
    reason: str


class _OnnxModel:
    """An onnxruntime session: CUDA when onnxruntime offers it (and ``device`` is not cpu), else CPU."""

    def __init__(self, folder: ExportFolder, device: str, threads: int = 0) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        if threads:  # else onnxruntime's default: one thread per physical core
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder.model_path), options, providers=providers)
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {n: feeds[n] for n in self.names})[0]


class _Pt2Model:
    """A ``torch.export`` program (``model.pt2``), run without autograd."""

    def __init__(self, folder: ExportFolder, device: str, threads: int = 0) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch, self.device = torch, device if device.startswith("cuda") else "cpu"
        self.program = torch.export.load(str(folder.model_path)).module().to(self.device)
        self.names = folder.inputs

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self.torch.no_grad():
            args = [self.torch.from_numpy(feeds[n]).to(self.device) for n in self.names]
            return self.program(*args).float().cpu().numpy()


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


class ExportAPI(ls.LitAPI):
    """Serves one export folder: image (bytes, or ``{"image": base64}``) or text (``{"text": ..., "text_pair": ...}``)
    in, ``{"label", "index", "top_k": [{"label", "index", "probability"}]}`` out."""

    def __init__(self, folder: ExportFolder, top_k: int = 5, max_batch_size: int = 1, batch_timeout: float = 0.0,
                 device: str = "cpu", threads: int = 0) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.folder, self.top_k, self.device_choice, self.threads = folder, top_k, device, threads
        self.model: Any = None
        self.tokenizer: Any = None

    def setup(self, device: str) -> None:
        """Open the model file (and, for text, the export's tokenizer) once per worker."""
        device = self.device_choice if self.device_choice != "auto" else device
        self.model = (_Pt2Model if self.folder.model == "pt2" else _OnnxModel)(self.folder, device, self.threads)
        if self.folder.kind == "text":
            self.tokenizer = self._open_tokenizer()

    def _open_tokenizer(self) -> Any:
        import json

        from tokenizers import Tokenizer

        hf = self.folder.model_path.parent / "hf"
        tokenizer = Tokenizer.from_file(str(hf / "tokenizer.json"))
        tokenizer.enable_truncation(int(self.folder.contract["max_length"]))
        config = json.loads((hf / "tokenizer_config.json").read_text(encoding="utf-8")) \
            if (hf / "tokenizer_config.json").is_file() else {}
        pad = config.get("pad_token") if isinstance(config.get("pad_token"), str) else "[PAD]"
        pad_id = tokenizer.token_to_id(pad)
        tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token=pad)
        return tokenizer

    def decode_request(self, request: dict) -> Any:
        """The preprocessed input of one request, or :class:`Rejected` with the reason."""
        if self.folder.kind == "text":
            return self._decode_text(request)
        return self._decode_image(request)

    def _decode_text(self, request: dict) -> Any:
        text, pair = request.get("text"), request.get("text_pair")
        if not isinstance(text, str) or not text.strip():
            return Rejected(400, 'send non-empty text: the body as UTF-8, or JSON {"text": "..."}')
        if pair is not None and not isinstance(pair, str):
            return Rejected(400, f"text_pair must be a string, got {type(pair).__name__}")
        if pair is not None and not self.folder.contract.get("text_pair"):
            return Rejected(422, 'this model reads one sentence, not a pair; send JSON {"text": "..."} only')
        if self.folder.contract.get("text_pair") and pair is None:
            return Rejected(400, 'this model reads a sentence pair; send JSON {"text": "...", "text_pair": "..."}')
        return (text, pair) if pair is not None else text

    def _decode_image(self, request: dict) -> Any:
        from PIL import Image, UnidentifiedImageError

        encoded = request.get("image")
        if not isinstance(encoded, str) or not encoded:
            return Rejected(400, 'send image bytes (PNG or JPEG) as the body, or JSON {"image": "<base64>"}')
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return Rejected(400, "the image field is not valid base64")
        try:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            width, height = image.size
            if width * height > MAX_PIXELS:
                return Rejected(413, f"image of {width}x{height} pixels is too large to decode")
            channels, want_h, want_w = self.folder.contract["input_size"]
            if not self.folder.contract.get("resize") and (width, height) != (want_w, want_h):
                return Rejected(422, f"image is {width}x{height} pixels; this model takes {want_w}x{want_h} images")
            image.load()
        except UnidentifiedImageError:
            return Rejected(415, f"the body is not a PNG or JPEG image ({len(data)} bytes starting {data[:8]!r})")
        except Exception as err:  # noqa: BLE001 - any decoder failure (OSError, SyntaxError, ...): a bad image
            reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
            return Rejected(415, f"the image cannot be decoded ({reason})")
        try:
            return prepare_image(image, self.folder.contract)
        except ValueError as err:
            return Rejected(422, str(err))

    def batch(self, inputs: list[Any]) -> list[Any]:
        return list(inputs)

    def unbatch(self, output: list[Any]) -> list[Any]:
        return output

    def predict(self, x: Any) -> Any:
        """Logits per input (a batch when batching is on), a Rejected passed through untouched."""
        items = x if isinstance(x, list) else [x]
        good = [i for i, item in enumerate(items) if not isinstance(item, Rejected)]
        outputs: list[Any] = list(items)
        if good:
            logits = self.model(self._feeds([items[i] for i in good]))
            for row, i in zip(logits, good):
                outputs[i] = row
        return outputs if isinstance(x, list) else outputs[0]

    def _feeds(self, items: list[Any]) -> dict[str, np.ndarray]:
        if self.folder.kind == "image":
            return {self.folder.inputs[0]: np.stack(items)}
        encoded = self.tokenizer.encode_batch(items)
        columns = {"input_ids": [e.ids for e in encoded], "token_type_ids": [e.type_ids for e in encoded],
                   "attention_mask": [e.attention_mask for e in encoded]}
        return {n: np.asarray(columns[n], dtype=np.int64) for n in self.folder.inputs}

    def encode_response(self, output: Any) -> Any:
        """Label and top-k probabilities as JSON; a Rejected becomes its 4xx response."""
        if isinstance(output, Rejected):
            from starlette.responses import JSONResponse

            return JSONResponse({"detail": output.reason}, status_code=output.status)
        logits = np.asarray(output, dtype=np.float64).reshape(-1)
        names = self.folder.class_names
        if not names or len(names) != len(logits):
            names = [str(i) for i in range(len(logits))]
        if len(logits) == 1:  # one-output regression (STS-B)
            return {"score": float(logits[0])}
        probabilities = _softmax(logits)
        order = np.argsort(-probabilities, kind="stable")[: max(1, min(self.top_k, len(logits)))]
        top = [{"label": names[i], "index": int(i), "probability": float(probabilities[i])} for i in order]
        return {"label": top[0]["label"], "index": top[0]["index"], "top_k": top}
