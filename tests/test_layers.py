"""The import rules in pyproject.toml ([tool.importlinter]) hold for the package, and they bite: a copy of the
package with one forbidden import planted breaks the contract that forbids it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"  # lint-imports


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache"], cwd=root, capture_output=True,
                          text=True, timeout=300, env=env)


def test_the_package_keeps_its_import_contracts() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("serve/body.py", "import torch", "serving needs no torch"),
    ("serve/export_dir.py", "from ..tasks import vision", "serving needs no torch"),
    ("models/plain.py", "from ..tasks import vision", "layers"),
    ("op.py", "from . import registry", "layers"),
])
def test_a_planted_import_breaks_its_contract(module: str, line: str, contract: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "helu_lightning", tmp_path / "helu_lightning",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    planted = tmp_path / "helu_lightning" / module
    planted.write_text(planted.read_text() + f"\n{line}  # planted\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert re.search(rf"^{re.escape(contract)}.* BROKEN", done.stdout, flags=re.M), done.stdout[-3000:]
