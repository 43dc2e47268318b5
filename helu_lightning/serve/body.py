"""The request body before LitServe sees it: raw image bytes or plain text become the JSON object LitServe passes to
``decode_request``, and empty, oversized, non-JSON or non-UTF-8 bodies are answered 4xx with a one-line reason at
once (in the HTTP process, so a bad request never reaches, or fails, a batch of good ones)."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["RequestBody", "is_json", "model_fields", "reject"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FIELDS = {"image": ("image",), "text": ("text", "text_pair")}  # what decode_request reads, per input kind
INPUT_FIELDS = ("image", "text", "text_pair")  # every input any served model reads
DRAIN_LIMIT = 256 * 2**20  # read (and drop) at most this much of a body that is too large, so the client gets the 413


def model_fields(contract: dict[str, Any]) -> tuple[str, ...]:
    """The request fields the exported model was trained on: ``image``; ``text``; or ``text`` and ``text_pair``."""
    if contract["kind"] == "image":
        return ("image",)
    return ("text", "text_pair") if contract.get("text_pair") else ("text",)


def is_json(content_type: str) -> bool:
    """Whether a media type says JSON (``application/json``, ``application/<x>+json``); only then is a body parsed
    as JSON: a news item starting "[Reuters]" sent as text is text."""
    return content_type in ("application/json", "text/json") or (content_type.startswith("application/")
                                                                 and content_type.endswith("+json"))


async def reject(send: Send, status: int, reason: str) -> None:
    """Answer ``status`` with ``{"detail": reason}`` (FastAPI's error shape)."""
    body = json.dumps({"detail": reason}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestBody:
    """ASGI middleware for POST ``path``: a body of at most ``max_bytes``. A body whose Content-Type says JSON must be
    an object holding the model's ``fields`` and nothing else (a field the model was not trained on gets 422); any
    other body is image bytes (``{"image": base64}``) for an image model or UTF-8 text (``{"text": ...}``) for a
    text one, whatever its first byte."""

    def __init__(self, app: Callable, *, kind: str, path: str, max_bytes: int,
                 fields: tuple[str, ...] | None = None) -> None:
        self.app, self.kind, self.path, self.max_bytes = app, kind, path, max_bytes
        self.fields = tuple(fields) if fields is not None else FIELDS[kind]

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None when it is over ``max_bytes`` (what is left of it is drained, up to a limit)."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.max_bytes:
                if size > DRAIN_LIMIT:
                    return None
                continue
            chunks.append(chunk)
        return None if size > self.max_bytes else b"".join(chunks)

    def _fields(self, value: dict[str, Any]) -> tuple[bytes | None, int, str]:
        """Only the fields the model reads, each a string of valid Unicode; any other value (a list nested 900 deep,
        a number, a lone surrogate that would fail the tokenizer) is refused here, before it reaches a batch."""
        foreign = [key for key in INPUT_FIELDS if key in value and key not in self.fields]
        if foreign:
            return None, 422, f"this model was not trained on {foreign[0]!r}; it reads only " \
                              f"{' and '.join(repr(f) for f in self.fields)}: send JSON {{\"{self.fields[0]}\": ...}}"
        if self.fields[0] not in value:
            return None, 400, f"the JSON body has no {self.fields[0]!r} field; send JSON {{\"{self.fields[0]}\": ...}}"
        unknown = sorted(str(key) for key in value if key not in self.fields)
        if unknown:
            return None, 422, f"this model reads only {' and '.join(repr(f) for f in self.fields)}; the field " \
                              f"{unknown[0][:40]!r} is not one of them: leave it out"
        fields = {}
        for key in self.fields:
            field = value.get(key)
            if field is None:
                continue
            if not isinstance(field, str):
                return None, 400, f"the JSON field {key!r} must be a string, got {type(field).__name__}"
            try:
                field.encode("utf-8")
            except UnicodeEncodeError as err:
                return None, 400, f"the JSON field {key!r} is not valid Unicode (lone surrogate at {err.start})"
            fields[key] = field
        return json.dumps(fields).encode(), 200, ""

    def _payload(self, body: bytes, content_type: str) -> tuple[bytes | None, int, str]:
        """The JSON body to hand on, or None with the status and reason of the refusal."""
        if not body:
            what = "image bytes (PNG or JPEG)" if self.kind == "image" else "UTF-8 text"
            return None, 400, f"empty request body; send {what}, or JSON {{\"{self.kind}\": ...}}"
        if is_json(content_type):
            try:
                value = json.loads(body)
            except (ValueError, RecursionError, MemoryError, OverflowError, TypeError) as err:
                reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
                return None, 400, f"invalid JSON body ({type(err).__name__}: {reason})"
            if not isinstance(value, dict):
                return None, 400, f"the JSON body must be an object such as {{\"{self.kind}\": ...}}, got " \
                                  f"{type(value).__name__}"
            return self._fields(value)
        if self.kind == "image":
            return json.dumps({"image": base64.b64encode(body).decode("ascii")}).encode(), 200, ""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as err:
            return None, 400, f"the request body is not UTF-8 text (bad byte at position {err.start}); send UTF-8"
        return json.dumps({"text": text}).encode(), 200, ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
        body = await self._read(receive)
        if body is None:
            await reject(send, 413, f"request body over {self.max_bytes // 2**20} MB; send a smaller "
                                    f"{self.kind} (or start the server with a larger --max_body_mb)")
            return
        payload, status, reason = self._payload(body, content_type)
        if payload is None:
            await reject(send, status, reason)
            return
        kept = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        scope = {**scope, "headers": [*kept, (b"content-type", b"application/json"),
                                      (b"content-length", str(len(payload)).encode())]}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        await self.app(scope, replay, send)
