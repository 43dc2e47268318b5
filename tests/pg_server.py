"""Start a throwaway PostgreSQL server for tests: initdb in a temporary directory, pg_ctl on a free localhost port.

Needs the server binaries (Debian: ``apt-get install -y postgresql``, in /usr/lib/postgresql/<version>/bin).
PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system user the package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

INSTALL_HINT = "install the server with `apt-get update && apt-get install -y postgresql`"


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl (newest Debian version first, then PATH), or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for directory in candidates:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def postgres_server(database: str = "optuna") -> Iterator[str]:
    """Yield a SQLAlchemy URL ``postgresql+psycopg2://postgres@127.0.0.1:<port>/<database>``; stop and delete after."""
    bin_dir = find_binaries()
    if bin_dir is None:
        raise FileNotFoundError(f"PostgreSQL server binaries not found; {INSTALL_HINT}")
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError as err:
            raise FileNotFoundError(f"running as root but no 'postgres' system user exists; {INSTALL_HINT}") from err
    root = Path(tempfile.mkdtemp(prefix="helu-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (root, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    port = _free_port()
    log = root / "server.log"

    def run(*command: str) -> None:
        done = subprocess.run(
            _as_server_user(list(command)), capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}, cwd=root
        )
        if done.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            raise RuntimeError(f"PostgreSQL set-up failed: {' '.join(command)}: {done.stderr}{server_log}")

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        try:
            run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database)
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{database}"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
