"""Every third-party package helu_lightning imports is declared in pyproject.toml (a dependency or an extra), so
`pip install 'helu-lightning[<extra>]'` gives each command what it imports, not only `[all]`."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTION = {"sklearn": "scikit-learn", "optuna_integration": "optuna-integration", "PIL": "pillow"}
# imported, but arriving with a declared package by design (or optional and documented as `pip install ...`)
TRANSITIVE = {"yaml": "jsonargparse", "sqlalchemy": "optuna", "datasets": "optional: pip install datasets",
              "starlette": "litserve"}


def _imports() -> set[str]:
    names = set()
    for path in (ROOT / "helu_lightning").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("__future__", "helu_lightning")}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *(s for extra in project["optional-dependencies"].values() for s in extra)]
    return {re.match(r"[A-Za-z0-9_.-]+", spec).group(0).lower() for spec in specs}


def test_every_imported_package_is_declared() -> None:
    declared = _declared()
    missing = sorted(name for name in _imports() - set(TRANSITIVE)
                     if DISTRIBUTION.get(name, name).lower().replace("_", "-") not in declared)
    assert missing == [], f"imported by helu_lightning but in no dependency list of pyproject.toml: {missing}"
