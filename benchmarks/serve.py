"""HTTP serving speed of `helu-train serve` on the loopback: the digits HeLU model exported as plain ReLU (ONNX fp32,
static INT8 and dynamic INT8) against its ReLU-trained and GELU-trained twins (same backbone, exported the same way;
the GELU twin also in both INT8 methods) and the HeLU checkpoint itself served by eager torch behind the same
LitServe API.

    python benchmarks/serve.py --requests 200 --rounds 3   # the README table; about 12 minutes on 2 busy cores
    python benchmarks/serve.py --width 256 --requests 150 --rounds 2   # a 64x wider CNN: compute shows
    python benchmarks/serve.py --output benchmarks/results/serve.txt   # also write the output as an artifact

Each variant is trained for a few steps with configs/offline.yaml (speed does not depend on the weights), exported,
and served on 127.0.0.1 with one inference worker, one model thread and dynamic batching (max 8). A client drives
it with a bounded number of requests at concurrency 1, 8 and 32 (one keep-alive connection per client thread),
after a warm-up; each round starts every server once, in a rotated order. The table gives the median over rounds of
requests/s and
of the p50/p99 latency; the ratios compare requests/s of the exported model with its twins at each concurrency.
Goal: exported >= ReLU twin (ratio >= 0.95, within noise), and faster than the GELU twin (ratio > 1).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from serve_client import HOST, running_server  # noqa: E402

from helu_lightning.serve.api import ExportAPI  # noqa: E402

CONCURRENCY = (1, 8, 32)
VARIANTS = ("exported", "exported static", "exported dynamic", "relu twin", "gelu twin", "gelu static",
            "gelu dynamic", "helu eager")


def _helu_train(*args: object) -> None:
    done = subprocess.run([sys.executable, "-m", "helu_lightning.commands", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"helu-train {args[0]} failed:\n{done.stderr[-3000:]}")


def build(workdir: Path, width: int) -> dict[str, list[str]]:
    """Train and export the three activations; the server arguments of each variant."""
    exports = {}
    for act in ("helu", "relu", "gelu"):
        spec = '{"name": "helu", "alpha": 0.05}' if act == "helu" else act
        _helu_train("fit", "--config", "configs/offline.yaml", "--trainer.max_epochs", "1",
                    "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
                    "--trainer.default_root_dir", workdir / act, "--trainer.enable_progress_bar", "false",
                    "--test_after_fit", "false", "--model.init_args.activation", spec,
                    "--model.init_args.backbone_options.width", width)
        for method in ("static", "dynamic") if act != "relu" else ("none",):
            # A few training steps leave accuracy near chance: --keep_int8, the guard is not what is timed here.
            _helu_train("export", "--ckpt_path", workdir / act / "checkpoints" / "last.ckpt",
                        "--output_dir", workdir / f"{act}_{method}", "--format", "onnx",
                        *(["--quantize", "int8", "--int8_method", method, "--keep_int8"] if act != "relu" else []))
            exports[f"{act} {method}"] = str(workdir / f"{act}_{method}")
    return {"exported": ["--export_dir", exports["helu static"]],
            "exported static": ["--export_dir", exports["helu static"], "--model", "int8"],
            "exported dynamic": ["--export_dir", exports["helu dynamic"], "--model", "int8"],
            "relu twin": ["--export_dir", exports["relu none"]],
            "gelu twin": ["--export_dir", exports["gelu static"]],
            "gelu static": ["--export_dir", exports["gelu static"], "--model", "int8"],
            "gelu dynamic": ["--export_dir", exports["gelu dynamic"], "--model", "int8"],
            "helu eager": ["--export_dir", exports["helu static"], "--eager_ckpt",
                           str(workdir / "helu" / "checkpoints" / "last.ckpt")]}


def drive(port: int, body: bytes, concurrency: int, requests: int) -> tuple[float, list[float]]:
    """Send ``requests`` POSTs from ``concurrency`` threads; return requests/s and the latencies in seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        mine = []
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            start = time.perf_counter()
            connection.request("POST", "/predict", body, {"Content-Type": "image/png"})
            response = connection.getresponse()
            answer = response.read()
            mine.append(time.perf_counter() - start)
            if response.status != 200:
                errors.append(answer.decode(errors="replace"))
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return len(latencies) / elapsed, sorted(latencies)


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _digit_png() -> bytes:
    import io

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    buffer = io.BytesIO()
    Image.fromarray(np.rint(load_digits().images[0] * 255 / 16).astype(np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


class EagerModel:
    """The HeLU checkpoint's own model in eager torch (training code: this is the baseline, not the product)."""

    def __init__(self, path: str, threads: int) -> None:
        import torch

        from helu_lightning.tasks.vision import VisionClassifier

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model = VisionClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True).model.eval()

    def __call__(self, feeds: dict) -> object:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(feeds["input"])).numpy()


class EagerAPI(ExportAPI):
    """helu-train serve's API with :class:`EagerModel` in place of the export's ONNX file."""

    def __init__(self, ckpt: str, *args: object) -> None:
        super().__init__(*args)
        self.ckpt = ckpt

    def setup(self, device: str) -> None:
        self.model = EagerModel(self.ckpt, self.threads)


def serve_eager(argv: list[str]) -> None:
    """Server side of "helu eager": ``python -m benchmarks.serve serve --export_dir DIR --eager_ckpt CKPT ...``."""
    from helu_lightning.serve import build_parser, serve
    from helu_lightning.serve.export_dir import read_export

    parser = build_parser()
    parser.add_argument("--eager_ckpt", required=True)
    args = parser.parse_args(argv)
    folder = read_export(args.export_dir)
    serve(args, EagerAPI(args.eager_ckpt, folder, args.top_k, args.max_batch_size, args.batch_timeout, "cpu",
                         args.threads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per concurrency level (bounded)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--width", type=int, default=32, help="small_cnn width (32: configs/offline.yaml)")
    parser.add_argument("--max_batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="model threads per server (the same for every variant)")
    parser.add_argument("--output", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args()
    body = _digit_png()
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="helu-serve-bench-") as tmp:
        servers = build(Path(tmp), args.width)
        for round_index in range(args.rounds):
            order = VARIANTS[round_index % len(VARIANTS):] + VARIANTS[:round_index % len(VARIANTS)]
            for variant in order:
                eager = "--eager_ckpt" in servers[variant]
                with running_server([*servers[variant], "--max_batch_size", str(args.max_batch_size),
                                     "--threads", str(args.threads)],
                                    module="benchmarks.serve" if eager else "helu_lightning.commands",
                                    env={"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
                                    ) as (port, _):
                    drive(port, body, 8, args.warmup)
                    for concurrency in CONCURRENCY:
                        rate, latencies = drive(port, body, concurrency, args.requests)
                        results.setdefault((variant, concurrency), []).append(
                            (rate, _percentile(latencies, 0.5) * 1e3, _percentile(latencies, 0.99) * 1e3))
    lines = [f"python benchmarks/serve.py {' '.join(sys.argv[1:])}", _machine(args.threads),
             f"helu-train serve on {HOST}, 1 inference worker, {args.threads} model thread(s), max_batch_size "
             f"{args.max_batch_size}, small_cnn width {args.width} on 8x8 digits PNGs; {args.requests} requests per "
             f"level, {args.rounds} round(s); medians over rounds",
             f"{'variant':<16} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"]
    median = {key: [statistics.median(v[i] for v in runs) for i in range(3)] for key, runs in results.items()}
    for variant in VARIANTS:
        for concurrency in CONCURRENCY:
            rate, p50, p99 = median[(variant, concurrency)]
            lines.append(f"{variant:<16} {concurrency:>4} {rate:>8.1f} {p50:>8.2f} {p99:>8.2f}")
    lines.append("requests/s of the exported model over each twin's (>1: exported faster)")
    for concurrency in CONCURRENCY:
        base = median[("exported", concurrency)][0]
        ratios = {v: base / median[(v, concurrency)][0] for v in ("relu twin", "gelu twin", "helu eager")}
        lines.append(f"  concurrency {concurrency:>2}: " + ", ".join(f"vs {v} {r:.2f}x" for v, r in ratios.items()))
    lines.append("requests/s of each INT8 file over its own fp32 file's and over the GELU twin's fp32")
    for variant, fp32 in (("exported static", "exported"), ("exported dynamic", "exported"),
                          ("gelu static", "gelu twin"), ("gelu dynamic", "gelu twin")):
        own = [median[(variant, c)][0] / median[(fp32, c)][0] for c in CONCURRENCY]
        gelu = [median[(variant, c)][0] / median[("gelu twin", c)][0] for c in CONCURRENCY]
        lines.append(f"  {variant:<16} vs own fp32 {' / '.join(f'{r:.2f}x' for r in own)}, vs gelu fp32 "
                     f"{' / '.join(f'{r:.2f}x' for r in gelu)} (concurrency {' / '.join(map(str, CONCURRENCY))})")
    relu = [median[("exported", c)][0] / median[("relu twin", c)][0] for c in CONCURRENCY]
    gelu = [median[("exported", c)][0] / median[("gelu twin", c)][0] for c in CONCURRENCY]
    static = [median[("exported static", c)][0] / median[("exported", c)][0] for c in CONCURRENCY]
    lines.append(f"goal exported >= relu twin (>= 0.95x): {'met' if min(relu) >= 0.95 else 'not met'}; "
                 f"exported faster than gelu twin (> 1.00x): {'met' if min(gelu) > 1.0 else 'not met'}; "
                 f"static INT8 >= 1.8x exported fp32: {'met' if min(static) >= 1.8 else 'not met'}")
    lines.append(json.dumps({f"{v}@{c}": [round(x, 2) for x in m] for (v, c), m in median.items()}))
    print("\n".join(lines))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _machine(threads: int) -> str:
    """CPU, platform and package versions, for the artifact."""
    import importlib.metadata
    import platform

    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("onnxruntime", "litserve", "torch"))
    return (f"{platform.machine()}, {platform.platform()}, python {platform.python_version()}, {versions}; "
            f"{threads} model thread(s), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve_eager(sys.argv[2:])
    else:
        main()
