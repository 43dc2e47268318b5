"""A real `helu-train serve` process on a free loopback port, and bounded HTTP requests to it (tests and
benchmarks/serve.py): nothing here listens or connects beyond 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc: children, their children, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def post(port: int, body: bytes, content_type: str | None = None, timeout: float = 60) -> tuple[int, dict]:
    """POST ``body`` to /predict; the status and the decoded JSON answer."""
    request = urllib.request.Request(f"http://{HOST}:{port}/predict", data=body, method="POST")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@contextlib.contextmanager
def running_server(args: Sequence[str], startup_s: float = 180, log: Path | None = None,
                   module: str = "helu_lightning.commands", env: dict[str, str] | None = None
                   ) -> Iterator[tuple[int, subprocess.Popen]]:
    """``python -m MODULE serve ARGS --port <free>`` (MODULE: helu-train's) until /health says ok (bounded), stopped
    by SIGTERM on exit (then killed with its whole tree if it outlives 60 s)."""
    port = free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    command = [sys.executable, "-m", module, "serve", *args, "--port", str(port)]
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                               env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode} before it was ready"
                                   + (f":\n{Path(log).read_text()[-3000:]}" if log else ""))
            with contextlib.suppress(OSError):
                if get(port, "/health", timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server was not ready within {startup_s} s")
            time.sleep(0.5)
        yield port, process
    finally:
        stop(process)
        if log:
            out.close()


def stop(process: subprocess.Popen, grace_s: float = 60) -> set[int]:
    """SIGTERM the server; return the processes of its tree still alive after ``grace_s`` (then killed)."""
    tree = descendants(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    while time.monotonic() < deadline and any(alive(p) for p in tree):
        time.sleep(0.2)
    left = {p for p in tree if alive(p)}
    for pid in left | ({process.pid} if process.poll() is None else set()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    return left
