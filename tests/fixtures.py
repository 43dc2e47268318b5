"""Tiny data sets written in the real on-disk formats, so loaders are tested without any download.

    from fixtures import write_cifar10
    write_cifar10(tmp_path, n_per_split=20)   # tmp_path/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}

Images are seeded random pixels; labels cycle through the classes so every class appears once a split holds
at least as many images as there are classes.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _pixels(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def write_cifar10(root: str | Path, n_per_split: int = 20, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` with ``n_per_split`` training images spread over the five
    ``data_batch_*`` files and ``n_per_split`` test images in ``test_batch``; return the batch folder."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train = _pixels(n_per_split, (3 * 32 * 32,), seed)
    labels = [i % 10 for i in range(n_per_split)]
    chunks = np.array_split(np.arange(n_per_split), 5)
    for number, index in enumerate(chunks, start=1):
        _dump(
            folder / f"data_batch_{number}",
            {
                "batch_label": f"training batch {number} of 5",
                "labels": [labels[i] for i in index],
                "data": train[index],
                "filenames": [f"train_{i}.png" for i in index],
            },
        )
    _dump(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": [i % 10 for i in range(n_per_split)],
            "data": _pixels(n_per_split, (3 * 32 * 32,), seed + 1),
            "filenames": [f"test_{i}.png" for i in range(n_per_split)],
        },
    )
    _dump(folder / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": 10000, "num_vis": 3072})
    return folder


def write_cifar100(root: str | Path, n_per_split: int = 200, seed: int = 0) -> Path:
    """Write ``root/cifar-100-python/{train,test,meta}`` with ``n_per_split`` images per split (fine labels
    cycle through 0..99, coarse labels are ``fine // 5``); return the folder."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for offset, split in enumerate(("train", "test")):
        fine = [i % 100 for i in range(n_per_split)]
        _dump(
            folder / split,
            {
                "filenames": [f"{split}_{i}.png" for i in range(n_per_split)],
                "batch_label": f"{split}ing batch 1 of 1",
                "fine_labels": fine,
                "coarse_labels": [label // 5 for label in fine],
                "data": _pixels(n_per_split, (3 * 32 * 32,), seed + offset),
            },
        )
    _dump(
        folder / "meta",
        {
            "fine_label_names": [f"fine_{i:02d}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)],
        },
    )
    return folder


def write_imagefolder(
    root: str | Path,
    classes: Sequence[str] = ("n01440764", "n02102040", "n02979186"),
    n_per_class: int = 4,
    size: int | tuple[int, int] = (40, 32),
    seed: int = 0,
) -> Path:
    """Write ``root/<class>/<class>_<i>.JPEG`` RGB images of ``size`` (an int for square, or (width, height)),
    the torchvision ImageFolder layout; return ``root``."""
    root = Path(root)
    width, height = (size, size) if isinstance(size, int) else size
    pixels = _pixels(len(classes) * n_per_class, (height, width, 3), seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(pixels[c * n_per_class + i]).save(root / name / f"{name}_{i}.JPEG", quality=90)
    return root


def write_imagenette(
    root: str | Path,
    classes: Sequence[str] = ("n01440764", "n02102040", "n02979186"),
    n_per_class: int = 4,
    size: int | tuple[int, int] = (40, 32),
) -> Path:
    """Write an Imagenette-style folder: ``root/train/<class>/`` and ``root/val/<class>/``; return ``root``."""
    write_imagefolder(Path(root) / "train", classes, n_per_class, size, seed=0)
    write_imagefolder(Path(root) / "val", classes, n_per_class, size, seed=1)
    return Path(root)


def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX ("SN3 Pascal Vincent") encoding of a uint8 array: magic 0x0000_08_<ndim>, big-endian dims, data."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_fashion_mnist_idx(root: str | Path, n: int = 20, gzipped: bool = False, seed: int = 0) -> Path:
    """Write the four Fashion-MNIST IDX files flat in ``root`` (``n`` images per split, ``.gz`` when
    ``gzipped`` as in the Debian package and the official mirror); return ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": _pixels(n, (28, 28), seed),
        "train_labels": np.arange(n, dtype=np.uint8) % 10,
        "test_images": _pixels(n, (28, 28), seed + 1),
        "test_labels": (np.arange(n, dtype=np.uint8) + 3) % 10,
    }
    for key, name in FASHION_MNIST_FILES.items():
        data = _idx_bytes(arrays[key])
        if gzipped:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return root
