"""CIFAR-10 and CIFAR-100 from the official python-pickle folders, read by torchvision's CIFAR classes.

    data_dir/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    data_dir/cifar-100-python/{train, test, meta}          (fine labels: 100 classes)

Training images get the paper's pad-4 random crop and horizontal flip; the validation split (seeded, carved
from the training set) and the official test batch get only the per-channel normalisation.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets.utils import download_and_extract_archive
from torchvision.datasets.vision import VisionDataset
from torchvision.transforms import v2

from helu_lightning.data.base import ImageDataModule
from helu_lightning.data.labels import check_counts, check_labels
from helu_lightning.errors import DataError, MissingDataError
from helu_lightning.io import regular_file

__all__ = ["CIFAR100DataModule", "CIFAR10DataModule", "cifar_transforms"]

# Per-channel mean and standard deviation of the training images, pixel values in [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def cifar_transforms(mean: tuple[float, ...], std: tuple[float, ...], augment: bool) -> v2.Compose:
    """PIL image -> normalised float tensor; with ``augment``, pad-4 random 32x32 crop and horizontal flip first."""
    steps = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if augment else []
    return v2.Compose([*steps, v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class CorruptCifarError(DataError, RuntimeError):
    """CIFAR files that cannot be read as the official batches (a UserError; also a RuntimeError, as before)."""


# The only globals the official batches (and numpy arrays pickled by any protocol) refer to.
_CIFAR_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
}


class _CifarUnpickler(pickle.Unpickler):
    """A pickle reader that builds dicts, lists, strings and numpy arrays only: a data file from someone else is
    data, and torchvision's plain ``pickle.load`` would run any callable the file names (``os.system``)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"the file refers to {module}.{name}, and CIFAR batches hold only dicts, lists "
                                     "and numpy arrays; it is not an official CIFAR file (refusing to run its code)")


def load_cifar_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """One CIFAR batch or meta file, read without running code; a dict or an UnpicklingError."""
    with open(regular_file(path, "a CIFAR folder holds the official batch files: replace it"), "rb") as handle:
        entry = _CifarUnpickler(handle, encoding="latin1").load()
    if not isinstance(entry, dict):
        raise pickle.UnpicklingError(f"{path} holds a {type(entry).__name__}, not the dict of a CIFAR batch")
    return entry


_FIX = "it is not an official CIFAR batch: delete the folder and download the data set again"


def _batch(path: str, num_classes: int) -> tuple[np.ndarray, list[int]]:
    """The images ``(N, 3072)`` uint8 and the N labels of one batch file, checked against each other and the
    number of classes in the meta file; CorruptCifarError naming the file otherwise."""
    entry = load_cifar_pickle(path)
    try:
        pixels = np.asarray(entry["data"])
        labels = entry["labels" if "labels" in entry else "fine_labels"]
        if pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32 or pixels.dtype.kind not in "iu":
            raise CorruptCifarError(f"{path} holds data of shape {pixels.shape} and type {pixels.dtype}, not rows of "
                                    f"3072 pixel bytes (3x32x32); {_FIX}")
        if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
            raise CorruptCifarError(f"{path} holds pixel values {pixels.min()}..{pixels.max()}, outside 0..255; {_FIX}")
        check_counts(len(pixels), len(labels), path, _FIX)
        return pixels.astype(np.uint8), check_labels(labels, num_classes, path, _FIX).tolist()
    except DataError as err:
        raise CorruptCifarError(str(err)) from None


def _safe_init(self: datasets.CIFAR10, root: str, train: bool = True, transform: Any = None,
               target_transform: Any = None, download: bool = False) -> None:
    """torchvision's CIFAR10.__init__ and _load_meta, with the batches read by :func:`load_cifar_pickle` and
    checked by :func:`_batch` (as many labels as images, each a class the meta file names)."""
    VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
    self.train = train
    meta = load_cifar_pickle(os.path.join(self.root, self.base_folder, self.meta["filename"]))
    self.classes = [str(name) for name in meta[self.meta["key"]]]
    self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
    data, self.targets = [], []
    for file_name, _ in self.train_list if train else self.test_list:
        pixels, labels = _batch(os.path.join(self.root, self.base_folder, file_name), len(self.classes))
        data.append(pixels)
        self.targets.extend(labels)
    self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))


def _unchecked(cls: type[datasets.CIFAR10]) -> type[datasets.CIFAR10]:
    """``cls`` with its md5 checks dropped: presence is checked (with a clear message) before loading, and
    unreadable files fail in the pickle reader, so re-encoded or fixture copies of the batches also load. The
    batches are read by a pickle reader that never runs code (:func:`load_cifar_pickle`)."""
    return type(
        cls.__name__,
        (cls,),
        {
            "train_list": [[name, None] for name, _ in cls.train_list],
            "test_list": [[name, None] for name, _ in cls.test_list],
            "meta": {**cls.meta, "md5": None},
            "__init__": _safe_init,
        },
    )


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10: 50,000 training images (minus the validation split) and the 10,000-image test batch.

    ``data_dir`` is the folder that holds ``cifar-10-batches-py/`` (or that folder itself); ``download: true``
    fetches the official archive into it when files are missing.
    """

    title = "CIFAR-10"
    dataset_class = _unchecked(datasets.CIFAR10)
    num_classes = 10
    in_channels = 3
    image_size = 32
    mean, std = CIFAR10_MEAN, CIFAR10_STD

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        augment: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # batch_size, num_workers, ...: see ImageDataModule
        self.save_hyperparameters()
        root = Path(data_dir).expanduser()
        self.root = root.parent if root.name == self.dataset_class.base_folder else root
        self.download = bool(download)
        self.augment = bool(augment)
        self._class_names: list[str] | None = None

    @property
    def folder(self) -> Path:
        return self.root / self.dataset_class.base_folder

    def expected_files(self) -> list[str]:
        cls = self.dataset_class
        return [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]

    def missing_files(self) -> list[str]:
        return [name for name in self.expected_files() if not os.path.lexists(self.folder / name)]

    def check_files(self) -> None:
        """Raise FileNotFoundError naming the missing files, where they belong, and how to get them."""
        missing = self.missing_files()
        if not missing:
            return
        cls = self.dataset_class
        found = "does not exist" if not self.folder.is_dir() else f"lacks {', '.join(missing)}"
        raise MissingDataError(
            f"{self.title} not found: {self.folder} {found}. Expected the official python version there: "
            f"{', '.join(self.expected_files())}. Fix: set download: true (needs a network), or fetch {cls.url} "
            f"by hand and unpack it with `tar -xzf {cls.filename} -C {self.root}`, or point data_dir at the "
            f"folder that contains {cls.base_folder}/."
        )

    def prepare_data(self) -> None:
        if self.download and self.missing_files():
            cls = self.dataset_class
            download_and_extract_archive(cls.url, str(self.root), filename=cls.filename, md5=cls.tgz_md5)
        self.check_files()

    def _load(self, train: bool) -> datasets.CIFAR10:
        try:
            return self.dataset_class(str(self.root), train=train)
        except DataError:
            raise
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
            raise CorruptCifarError(
                f"{self.title} files in {self.folder} could not be read ({type(error).__name__}: {error}); they look "
                f"truncated or corrupted: delete the folder and download {self.dataset_class.url} again"
            ) from error

    def build(self) -> tuple[Dataset, Dataset | None, Dataset]:
        self.check_files()
        train_data, test_data = self._load(train=True), self._load(train=False)
        if len(train_data.classes) != self.num_classes:
            meta = self.folder / self.dataset_class.meta["filename"]
            raise CorruptCifarError(f"{meta} names {len(train_data.classes)} classes where {self.title} has "
                                    f"{self.num_classes}; {_FIX}")
        self._class_names = list(train_data.classes)
        return self.split(train_data, cifar_transforms(self.mean, self.std, self.augment),
                          cifar_transforms(self.mean, self.std, augment=False), test_data)

    @property
    def class_names(self) -> list[str] | None:
        """The names in the data set's meta file (known once the data is set up)."""
        return self._class_names


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 with its 100 fine labels: ``data_dir`` holds ``cifar-100-python/{train,test,meta}``."""

    title = "CIFAR-100"
    dataset_class = _unchecked(datasets.CIFAR100)
    num_classes = 100
    mean, std = CIFAR100_MEAN, CIFAR100_STD
