"""Serve an export folder over HTTP with LitServe: raw images or text in, label and top-k probabilities out.

    helu-train serve --export_dir exported/offline --port 8000
    curl -s -H "Content-Type: image/png" --data-binary @digit.png http://127.0.0.1:8000/predict
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

from ..errors import UserError
from .export_dir import MODEL_FILES, check_model_inputs, read_export

__all__ = ["build_parser", "run", "serve"]

PREDICT_PATH = "/predict"


def _positive(kind: type, name: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= 0 or (kind is float and value != value):
            raise argparse.ArgumentTypeError(f"{name} must be a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``helu-train serve`` argument parser."""
    parser = argparse.ArgumentParser(prog="helu-train serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--export_dir", required=True, help="folder written by helu-train export")
    parser.add_argument("--model", choices=list(MODEL_FILES), default="onnx",
                        help="model.onnx (default), model.int8.onnx (int8) or model.pt2 (pt2)")
    parser.add_argument("--trust_export", action="store_true",
                        help="allow --model pt2 (torch.export.load may unpickle code; exports you made only)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: loopback only; 0.0.0.0 exposes the server)")
    parser.add_argument("--port", type=_positive(int, "--port"), default=8000)
    parser.add_argument("--workers", type=_positive(int, "--workers"), default=1, help="inference worker processes")
    parser.add_argument("--max_batch_size", type=_positive(int, "--max_batch_size"), default=8,
                        help="largest dynamic batch (1 turns batching off)")
    parser.add_argument("--batch_timeout", type=float, default=0.005,
                        help="seconds a worker waits to fill a batch (default 0.005)")
    parser.add_argument("--top_k", type=_positive(int, "--top_k"), default=5, help="probabilities returned per request")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                        help="cpu (default); cuda or auto use onnxruntime's CUDA provider when it is installed")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads per worker for the model (default 0: onnxruntime's own choice)")
    parser.add_argument("--max_body_mb", type=_positive(int, "--max_body_mb"), default=8,
                        help="largest request body in MB (default 8); larger ones get 413")
    parser.add_argument("--timeout", type=_positive(float, "--timeout"), default=30.0,
                        help="seconds a request may wait before it gets 504")
    return parser


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM ends the server like Ctrl-C: LitServe then stops its HTTP and inference processes. A forked child
    inherits the handler: there it only exits (uvicorn re-raises the signal once it has shut down)."""
    owner = os.getpid()

    def stop(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            raise SystemExit(0)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_port(host: str, port: int) -> None:
    """UserError now, in one line, when ``host:port`` cannot be listened on (in use, or an unknown address)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror or err}); choose another --port, or a "
                        "--host of this machine") from err


def serve(args: argparse.Namespace, api: Any = None) -> None:
    """Build the LitServer for ``args`` (or around ``api``, a LitAPI such as the benchmark's) and run it."""
    import litserve as ls

    from .api import ExportAPI
    from .body import RequestBody, model_fields

    if not args.batch_timeout >= 0:
        raise UserError(f"--batch_timeout must be >= 0 seconds, got {args.batch_timeout}")
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0 (0: onnxruntime's choice), got {args.threads}")
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    folder = read_export(args.export_dir, args.model, args.trust_export)
    _check_port(args.host, args.port)
    check_model_inputs(folder)
    if api is None:
        api = ExportAPI(folder, args.top_k, args.max_batch_size, args.batch_timeout, args.device, args.threads)
    accelerator = "cpu" if args.device == "cpu" else "auto"
    middleware = (RequestBody, {"kind": folder.kind, "path": PREDICT_PATH, "max_bytes": args.max_body_mb * 2**20,
                                "fields": model_fields(folder.contract)})
    server = ls.LitServer(api, accelerator=accelerator, devices=1, workers_per_device=args.workers,
                          timeout=args.timeout, middlewares=[middleware], model_metadata=folder.info)
    method = f", {folder.int8['method']} INT8" if folder.int8 else ""
    print(f"serve: {folder.model_path} ({folder.kind}, {args.model}{method}) on http://{args.host}:{args.port}{PREDICT_PATH}"
          f"; health: /health; contract: /info", flush=True)
    with _sigterm_stops():
        server.run(host=args.host, port=args.port, generate_client_file=False, log_level="warning")


def run(args: argparse.Namespace) -> None:
    """``helu-train serve``: check the export folder, then serve until Ctrl-C or SIGTERM."""
    serve(args)
