"""Resident memory of `helu-train serve`: the main process and each worker, after one answered request.

    python benchmarks/serve_memory.py --export_dir exported/digits --workers 2

Prints one row per process (VmRSS from /proc, Linux only) and which of torch / lightning / onnxruntime each process
has mapped (its /proc/<pid>/maps names their shared libraries), so a row says why it costs what it costs.
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serve_client import descendants, post, running_server  # noqa: E402

LIBRARIES = {"torch": "libtorch", "lightning": "/lightning/", "onnxruntime": "onnxruntime"}


def resident_mb(pid: int) -> float:
    """VmRSS of ``pid`` in MiB (0 when the process is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0.0)


def mapped(pid: int) -> list[str]:
    """Which of LIBRARIES the process has mapped."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    return [name for name, marker in LIBRARIES.items() if marker in maps]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export_dir", required=True, help="an image export folder (helu-train export)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    png = io.BytesIO()
    Image.fromarray(np.eye(8, dtype=np.uint8) * 255, "L").save(png, format="PNG")
    with running_server(["--export_dir", args.export_dir, "--workers", str(args.workers)]) as (port, process):
        status, _ = post(port, png.getvalue(), "image/png")
        if status != 200:
            raise SystemExit(f"the server answered {status}")
        rows = [(pid, resident_mb(pid), mapped(pid)) for pid in [process.pid, *sorted(descendants(process.pid))]]
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"{args.workers} workers, after one request")
    print(f"{'process':>8}  {'RSS MiB':>8}  mapped")
    for i, (pid, megabytes, libraries) in enumerate(rows):
        print(f"{'main' if i == 0 else pid:>8}  {megabytes:8.0f}  {' '.join(libraries) or '-'}")
    print(f"total {sum(r[1] for r in rows):.0f} MiB over {len(rows)} processes")


if __name__ == "__main__":
    main()
