"""Data files from others are data: reading them never runs code, never needs unbounded memory, and a hostile
file stops with a short UserError. Each attack leaves a marker file if it runs code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from fixtures import write_cifar10, write_cifar100
from helu_lightning.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from helu_lightning.errors import UserError


class _Shell:
    """Unpickling this runs ``touch marker`` (with a plain pickle.load)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["batches.meta", "data_batch_3", "test_batch"])
def test_cifar10_pickle_never_runs_code(tmp_path, name):
    folder = write_cifar10(tmp_path / "data", n_per_split=10)
    marker = tmp_path / "pwned"
    entry = {"label_names": _Shell(marker)} if name == "batches.meta" else {"labels": [0], "data": _Shell(marker)}
    (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(UserError, match="os.system|posix.system"):
        CIFAR10DataModule(str(tmp_path / "data"), num_workers=0).setup("fit")
    assert not marker.exists()


def test_cifar100_pickle_never_runs_code(tmp_path):
    folder = write_cifar100(tmp_path / "data", n_per_split=10)
    marker = tmp_path / "pwned"
    (folder / "train").write_bytes(pickle.dumps({"fine_labels": [0], "data": _Shell(marker)}, protocol=4))
    with pytest.raises(UserError, match="not an official CIFAR file"):
        CIFAR100DataModule(str(tmp_path / "data"), num_workers=0).setup("fit")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_of_any_protocol_still_load(tmp_path, protocol):
    folder = write_cifar10(tmp_path, n_per_split=10)
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            entry = pickle.load(handle)  # our own fixture
        path.write_bytes(pickle.dumps(entry, protocol=protocol))
    data = CIFAR10DataModule(str(tmp_path), num_workers=0, val_fraction=0.0)
    data.setup("fit")
    assert data.class_names[0] == "airplane"
