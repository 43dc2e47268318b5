"""What the image DataModules share: loader settings, a seeded train/validation split, per-split transforms."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..checkpoints import TrustedLoading
from ..errors import UserError

__all__ = ["ImageDataModule", "TransformedSubset", "seeded_split"]


def seeded_split(n: int, holdout_fractions: Sequence[float], seed: int) -> list[Tensor]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into ``[rest, *holdouts]``, holdout ``i`` taking
    ``round(n * holdout_fractions[i])`` indices (at least one when its fraction is above zero)."""
    sizes = [max(1, round(n * f)) if f > 0 else 0 for f in holdout_fractions]
    if sum(sizes) >= n:
        raise UserError(
            f"holdout fractions {list(holdout_fractions)} of {n} examples leave nothing to train on; "
            "use smaller fractions (e.g. val_fraction: 0.1)"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts, start = [], 0
    for size in sizes:
        parts.append(order[start : start + size])
        start += size
    return [order[start:], *parts]


class TransformedSubset(Dataset):
    """The examples ``indices`` of ``dataset`` with ``transform`` applied to the input, so a training split
    can be augmented while a validation split carved from the same data uses the evaluation transform."""

    def __init__(self, dataset: Dataset, indices: Sequence[int] | Tensor, transform: Callable | None) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, target = self.dataset[self.indices[index]]
        return (self.transform(image) if self.transform is not None else image), int(target)


def check_fraction(name: str, value: float) -> float:
    """Return ``value`` as a float in [0, 1), or raise UserError naming the argument and a valid example."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name} must be a number in [0, 1) such as 0.1, got {value!r}")
    if not 0 <= value < 1:
        raise UserError(f"{name} must lie in [0, 1) (a fraction of the training set, e.g. 0.1), got {value}")
    return float(value)


class ImageDataModule(TrustedLoading, LightningDataModule):
    """Loader settings and the train/val/test(/predict) dataloaders; subclasses implement :meth:`build`.

    ``persistent_workers`` only takes effect when ``num_workers > 0`` (PyTorch refuses it otherwise), so a
    config can keep it on while ``--data.init_args.num_workers 0`` is used for debugging.

    Subclasses take their own arguments and pass the rest on as ``**kwargs``: jsonargparse follows
    ``super().__init__(**kwargs)`` to these parameters, so ``--help``, ``--print_config`` and configs see them all
    with these defaults (``tests/test_first_use.py`` checks it for every DataModule).
    """

    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]  # the evaluation transform's Normalize, per channel, on pixels scaled to [0, 1]
    std: tuple[float, ...]

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 4,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        val_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"batch_size must be a positive integer such as 128, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise UserError(f"num_workers must be an integer >= 0 (0 loads in the main process), got {num_workers!r}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.seed = int(seed)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def class_names(self) -> list[str] | None:
        """The class names in label order, where the data set has them (prediction files show them)."""
        return None

    def input_config(self) -> dict[str, Any]:
        """The validation transform as plain data (like timm's ``pretrained_cfg``), so an export serves raw images:
        an 8-bit image of ``input_size`` (C, H, W) is scaled to [0, 1] and normalised with ``mean`` and ``std``.
        ``resize`` (shorter side) and ``crop`` (centre) are set where the transform resizes; ``convert`` names the
        mode every image is converted to first, where the data set's loader does that (else a wrong mode is refused).
        """
        return {"kind": "image", "input_size": [self.in_channels, self.image_size, self.image_size],
                "dtype": "uint8", "value_range": [0, 255], "scale": "times 1/255", "convert": None, "resize": None,
                "crop": None, "interpolation": "bilinear", "mean": list(self.mean), "std": list(self.std),
                "class_names": self.class_names}

    def build(self) -> tuple[Dataset, Dataset | None, Dataset]:
        """Return the (train, validation or None, test) data sets, transforms applied."""
        raise NotImplementedError

    def split(self, data: Dataset, train_transform: Callable | None, eval_transform: Callable | None,
              test_data: Dataset | None = None, test_fraction: float = 0.0) -> tuple[Dataset, Dataset | None, Dataset]:
        """(train, validation or None, test): a seeded validation split of ``data`` and the test set ``test_data``
        (or, when there is none, a seeded ``test_fraction`` of ``data``); only training examples are augmented."""
        fractions = [self.val_fraction] + ([test_fraction] if test_data is None else [])
        train_index, val_index, *test_index = seeded_split(len(data), fractions, self.seed)
        train = TransformedSubset(data, train_index, train_transform)
        val = TransformedSubset(data, val_index, eval_transform) if len(val_index) else None
        if test_data is None:
            return train, val, TransformedSubset(data, test_index[0], eval_transform)
        return train, val, TransformedSubset(test_data, range(len(test_data)), eval_transform)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set, self.test_set = self.build()

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """The seeded validation split; an empty list (Lightning then skips validation) when val_fraction is 0."""
        if self.val_fraction == 0:
            return []
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
