"""Imagenette (10 easy ImageNet classes) from its ImageFolder layout, read by torchvision's ImageFolder.

    data_dir/train/<wnid>/*.JPEG     training images; the validation split is carved from these (seeded)
    data_dir/val/<wnid>/*.JPEG       the official validation folder, served as the test set

Training images get a random-resized crop and horizontal flip; evaluation resizes to
``image_size / crop_fraction`` and takes the centre crop. Both use the ImageNet normalisation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from helu_lightning.data.base import ImageDataModule
from helu_lightning.errors import DataError, MissingDataError, UserError
from helu_lightning.io import regular_file

__all__ = ["ImagenetteDataModule", "imagenet_transforms"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
_IMAGE_FIX = "an image folder holds image files only: replace or remove it"


def _walk_once(top: str) -> list[tuple[str, list[str]]]:
    """``(folder, file names)`` under ``top`` like ``os.walk(top, followlinks=True)``, sorted by folder, but each
    real folder is entered once: a tree whose links point back up (``a/loop -> .``) would otherwise be walked
    along every path up to the kernel's link limit, branching at each link (three such links: days)."""
    seen: set[str] = set()
    found, stack = [], [top]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = list(os.scandir(folder))
        except OSError:  # os.walk skips unreadable folders too
            continue
        found.append((folder, [e.name for e in entries if not e.is_dir()]))
        stack += [e.path for e in entries if e.is_dir()]
    return sorted(found)


class _ImageFolder(datasets.ImageFolder):
    """torchvision's ImageFolder, its files listed by :func:`_walk_once` (same samples and order, no link loops),
    each a regular file (a pipe or a link to a device would block or never end when an epoch reaches it)."""

    @staticmethod
    def make_dataset(directory: str | Path, class_to_idx: dict[str, int], extensions: tuple[str, ...] | None = None,
                     is_valid_file: Callable[[str], bool] | None = None, allow_empty: bool = False
                     ) -> list[tuple[str, int]]:
        valid = is_valid_file or (lambda path: datasets.folder.has_file_allowed_extension(path, extensions))
        instances = []
        for target_class in sorted(class_to_idx):
            target_dir = os.path.join(os.path.expanduser(directory), target_class)
            if os.path.isdir(target_dir):
                instances += [(str(regular_file(os.path.join(root, name), _IMAGE_FIX)), class_to_idx[target_class])
                              for root, names in _walk_once(target_dir) for name in sorted(names)
                              if valid(os.path.join(root, name))]
        present = {index for _, index in instances}
        empty = sorted(target for target, index in class_to_idx.items() if index not in present)
        if empty and not allow_empty:
            folders = ", ".join(os.path.join(directory, target) for target in empty)
            raise DataError(f"class folder(s) {folders} hold no image ({', '.join(extensions or ())}); a class "
                            "without examples cannot be learned: add images or remove the folder")
        return instances


def imagenet_transforms(image_size: int, crop_fraction: float, augment: bool) -> v2.Compose:
    """PIL image -> normalised ``image_size`` square tensor: random-resized crop and flip when ``augment``,
    otherwise resize the short side to ``image_size / crop_fraction`` and centre-crop."""
    if augment:
        steps = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(round(image_size / crop_fraction), antialias=True), v2.CenterCrop(image_size)]
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose([*steps, *to_tensor])


class ImagenetteDataModule(ImageDataModule):
    """Imagenette (or any ImageFolder with ``train/`` and ``val/``): ``data_dir`` is e.g. ``data/imagenette2-160``.

    ``image_size`` defaults to 160, the short side of the 160 px release (the paper does not state its
    resolution); ``num_classes`` is the number of class folders under ``train/``.
    """

    in_channels = 3
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(
        self,
        data_dir: str = "data/imagenette2-160",
        image_size: int = 160,
        crop_fraction: float = 0.875,
        augment: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # batch_size, num_workers, ...: see ImageDataModule
        self.save_hyperparameters()
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise UserError(f"image_size must be an integer >= 8 (square crop side, e.g. 160), got {image_size!r}")
        if isinstance(crop_fraction, bool) or not isinstance(crop_fraction, (int, float)) or not 0 < crop_fraction <= 1:
            raise UserError(f"crop_fraction must lie in (0, 1] (usually 0.875), got {crop_fraction!r}")
        self.root = Path(data_dir).expanduser()
        self.image_size = image_size
        self.crop_fraction = float(crop_fraction)
        self.augment = bool(augment)

    def check_folders(self) -> None:
        """Raise FileNotFoundError naming the missing ``train/`` / ``val/`` folder and how to get Imagenette."""
        missing = [f"{name}/" for name in ("train", "val") if not (self.root / name).is_dir()]
        if missing:
            raise MissingDataError(
                f"Imagenette not found: {self.root} lacks {' and '.join(missing)}. Expected "
                f"{self.root}/train/<class>/*.JPEG and {self.root}/val/<class>/*.JPEG. Fix: download {IMAGENETTE_URL}, "
                f"unpack it with `tar -xzf imagenette2-160.tgz -C data`, and set data_dir to data/imagenette2-160 "
                "(any folder with that layout works)."
            )

    def input_config(self) -> dict[str, Any]:
        """The validation transform as data: any image, converted to RGB (as ImageFolder loads it), its shorter side
        resized to ``image_size / crop_fraction`` and centre-cropped to ``image_size``."""
        return {**super().input_config(), "convert": "RGB",
                "resize": round(self.image_size / self.crop_fraction), "crop": [self.image_size, self.image_size]}

    @property
    def classes(self) -> list[str]:
        self.check_folders()
        return datasets.folder.find_classes(str(self.root / "train"))[0]

    @property
    def class_names(self) -> list[str]:
        return self.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def prepare_data(self) -> None:
        self.check_folders()

    def build(self) -> tuple[Dataset, Dataset | None, Dataset]:
        self.check_folders()
        train_data = _ImageFolder(str(self.root / "train"))
        test_data = _ImageFolder(str(self.root / "val"))
        if test_data.classes != train_data.classes:
            only_train = sorted(set(train_data.classes) - set(test_data.classes))
            only_val = sorted(set(test_data.classes) - set(train_data.classes))
            raise DataError(
                f"{self.root}/train and {self.root}/val must hold the same class folders; only in train: "
                f"{only_train}, only in val: {only_val}. Add or remove folders so both match."
            )
        return self.split(train_data, imagenet_transforms(self.image_size, self.crop_fraction, self.augment),
                          imagenet_transforms(self.image_size, self.crop_fraction, augment=False), test_data)
