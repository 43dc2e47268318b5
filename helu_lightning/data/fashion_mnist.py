"""Fashion-MNIST (70,000 28x28 grey images of clothing, 10 classes) from its IDX files.

The four files are looked up, plain or ``.gz``, in ``data_dir/FashionMNIST/raw/`` (torchvision's download
layout) and then ``data_dir/`` itself; with no ``data_dir``, in the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``). They are parsed by torchvision's own IDX reader.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.transforms import v2

from helu_lightning.data.base import ImageDataModule
from helu_lightning.data.labels import check_labels
from helu_lightning.errors import DataError, MissingDataError, UserError
from helu_lightning.io import regular_file

__all__ = ["FashionMNISTDataModule", "read_idx"]

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Mean and standard deviation of the training pixels, in [0, 1].
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)


# IDX element types (the third magic byte) and their sizes; Fashion-MNIST uses 0x08 (unsigned bytes).
_IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}
MAX_IDX_BYTES = 2**30  # the official training images are 47 MB; a header asking for more is refused, not allocated


def _idx_body_size(path: Path, source: IO[bytes]) -> int:
    """Read and check an IDX header from ``source``; the number of data bytes that must follow it."""
    magic = source.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_ITEM_BYTES or not 1 <= magic[3] <= 3:
        raise DataError(f"{path} is not an IDX file (its first bytes are {magic!r}, not an IDX magic number such as "
                        "b'\\x00\\x00\\x08\\x03'); replace it with the official Fashion-MNIST file")
    raw = source.read(4 * magic[3])
    if len(raw) < 4 * magic[3]:
        raise DataError(f"{path} is truncated inside its IDX header; replace it with the official file")
    dims = struct.unpack(f">{magic[3]}I", raw)
    size = math.prod(dims) * _IDX_ITEM_BYTES[magic[2]]
    if size > MAX_IDX_BYTES:
        raise DataError(f"{path}: its IDX header declares shape {dims} ({size} bytes, over the {MAX_IDX_BYTES}-byte "
                        "limit); it is not a Fashion-MNIST file, replace it with the official one")
    return size


def read_idx(path: Path, reader: Callable[[str], Tensor]) -> Tensor:
    """Read one IDX file with torchvision's ``reader`` once its header and length are checked (a DataError
    otherwise, never an allocation the header alone asks for); a ``.gz`` file is decompressed, at most as many
    bytes as its header declares, into a temporary copy first (the reader takes a plain file path)."""
    gzipped = path.suffix == ".gz"
    regular_file(path, "replace it with the official Fashion-MNIST IDX file")
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as source:
            size = _idx_body_size(path, source)
            header_bytes = source.tell()
            if not gzipped:
                found = path.stat().st_size - header_bytes
                if found != size:
                    raise DataError(f"{path} holds {found} data bytes where its IDX header declares {size}; it is "
                                    "truncated or not the official file: replace it")
                return reader(str(path))
            with tempfile.TemporaryDirectory(prefix="helu-idx-") as tmp:
                plain = Path(tmp) / path.stem
                with open(plain, "wb") as target:
                    source.seek(0)
                    target.write(source.read(header_bytes))
                    left = size + 1  # one byte more than declared reveals trailing data
                    while left > 0 and (chunk := source.read(min(left, 2**20))):
                        target.write(chunk)
                        left -= len(chunk)
                if plain.stat().st_size - header_bytes != size:
                    raise DataError(f"{path} decompresses to {plain.stat().st_size - header_bytes} data bytes where "
                                    f"its IDX header declares {size}; it is truncated or not the official file")
                return reader(str(plain))
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"{path} could not be read as {'gzip-compressed ' if gzipped else ''}IDX ({err}); replace it "
                        "with the official file") from err


class _Images(Dataset):
    """uint8 images ``(N, 1, H, W)`` and integer labels, served one (image, label) pair at a time."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


def fashion_mnist_transforms(augment: bool) -> v2.Compose:
    """uint8 ``(1, 28, 28)`` tensor -> normalised float; with ``augment``, pad-2 random crop and flip first."""
    steps = [v2.RandomCrop(28, padding=2), v2.RandomHorizontalFlip()] if augment else []
    to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(FASHION_MNIST_MEAN, FASHION_MNIST_STD)]
    return v2.Compose([*steps, *to_float])


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST: 60,000 training images (minus the seeded validation split) and the 10,000 test images.

    Leave ``data_dir`` unset to use ``apt-get install dataset-fashion-mnist``; ``download: true`` (with a
    ``data_dir`` and a network) lets torchvision fetch the files into ``data_dir/FashionMNIST/raw``.
    """

    num_classes = 10
    in_channels = 1
    image_size = 28
    mean, std = FASHION_MNIST_MEAN, FASHION_MNIST_STD

    def __init__(
        self,
        data_dir: str | None = None,
        download: bool = False,
        augment: bool = True,
        num_workers: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_workers=num_workers, **kwargs)  # batch_size, ...: see ImageDataModule
        self.save_hyperparameters()
        if download and data_dir is None:
            raise UserError(
                "download: true needs a writable data_dir to download Fashion-MNIST into (e.g. data_dir: data); "
                f"or leave download off and `apt-get install dataset-fashion-mnist` (files in {DEBIAN_DIR})"
            )
        self.data_dir = None if data_dir is None else Path(data_dir).expanduser()
        self.download = bool(download)
        self.augment = bool(augment)

    @property
    def class_names(self) -> list[str]:
        return list(datasets.FashionMNIST.classes)

    def search_dirs(self) -> list[Path]:
        if self.data_dir is None:
            return [Path(DEBIAN_DIR)]
        return [self.data_dir / "FashionMNIST" / "raw", self.data_dir]

    def find_files(self) -> dict[str, Path | None]:
        """Map each of the four IDX files to the first plain or ``.gz`` copy there (None when absent); one that is
        not a regular file is found here and refused when it is read."""
        found: dict[str, Path | None] = {}
        for key, name in FILES.items():
            candidates = [folder / file for folder in self.search_dirs() for file in (name, f"{name}.gz")]
            found[key] = next((path for path in candidates if os.path.lexists(path)), None)
        return found

    def resolve_files(self) -> dict[str, Path]:
        """The four IDX paths, or FileNotFoundError naming the missing files, where they were sought and the fix."""
        found = self.find_files()
        missing = [FILES[key] for key, path in found.items() if path is None]
        if missing:
            where = " or ".join(str(folder) for folder in self.search_dirs())
            raise MissingDataError(
                f"Fashion-MNIST not found: no {', '.join(missing)} (plain or .gz) in {where}. Fix: "
                f"`apt-get install dataset-fashion-mnist` and leave data_dir unset (it reads {DEBIAN_DIR}), "
                "or pass data_dir: a folder holding the four IDX files train-images-idx3-ubyte, "
                "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, "
                "or set download: true with a data_dir and a network."
            )
        return {key: path for key, path in found.items() if path is not None}

    def prepare_data(self) -> None:
        if self.download and self.data_dir is not None and any(p is None for p in self.find_files().values()):
            datasets.FashionMNIST(str(self.data_dir), train=True, download=True)
        self.resolve_files()

    def _read_split(self, files: dict[str, Path], split: str) -> _Images:
        images = read_idx(files[f"{split}_images"], read_image_file)
        labels = read_idx(files[f"{split}_labels"], read_label_file)
        if len(images) != len(labels) or tuple(images.shape[1:]) != (28, 28):
            raise DataError(
                f"Fashion-MNIST {split} files disagree: {files[f'{split}_images']} holds images of shape "
                f"{tuple(images.shape)}, {files[f'{split}_labels']} holds {len(labels)} labels; expected N 28x28 "
                "images and N labels. Replace the files with the official ones."
            )
        check_labels(labels.numpy(), self.num_classes, files[f"{split}_labels"],
                     "replace it with the official Fashion-MNIST file")
        return _Images(images.unsqueeze(1), labels)

    def build(self) -> tuple[Dataset, Dataset | None, Dataset]:
        files = self.resolve_files()
        train_data, test_data = self._read_split(files, "train"), self._read_split(files, "test")
        return self.split(train_data, fashion_mnist_transforms(self.augment), fashion_mnist_transforms(augment=False),
                          test_data)
