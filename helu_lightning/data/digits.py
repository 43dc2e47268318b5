"""scikit-learn's handwritten digits: 1,797 real 8x8 grey images in 10 classes, shipped inside the wheel.

The quickest real vision set that needs no download: the offline default for smoke runs and benchmarks.
Pixels (0..16) are scaled to [0, 1] and normalised with the whole set's mean and standard deviation; the
train/validation/test split is seeded. There is no augmentation at 8x8.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from helu_lightning.data.base import ImageDataModule, check_fraction
from helu_lightning.data.labels import check_counts, check_labels
from helu_lightning.errors import UserError

__all__ = ["DigitsDataModule", "load_digit_tensors"]

# Mean and standard deviation of all 1,797 images after scaling to [0, 1].
DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3760


def load_digit_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as normalised float images ``(1797, 1, 8, 8)`` and int64 labels ``(1797,)``, counts and label
    range checked as every reader checks them."""
    from sklearn.datasets import load_digits  # optional dependency: the `offline` extra

    digits = load_digits()
    where = "scikit-learn's digits (sklearn.datasets.load_digits)"
    check_counts(len(digits.images), len(digits.target), where, "reinstall scikit-learn")
    labels = check_labels(digits.target, 10, where, "reinstall scikit-learn")
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return (images - DIGITS_MEAN) / DIGITS_STD, torch.as_tensor(labels, dtype=torch.int64)


class DigitsDataModule(ImageDataModule):
    """8x8 digits split ``1 - val_fraction - test_fraction`` / ``val_fraction`` / ``test_fraction`` by ``seed``."""

    num_classes = 10
    in_channels = 1
    image_size = 8
    # Served as 8-bit grey images: pixel 255 is intensity 16 (ink), 0 the background, so p / 255 == v / 16.
    mean, std = (DIGITS_MEAN,), (DIGITS_STD,)

    def __init__(
        self,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, persistent_workers, val_fraction, seed)
        self.save_hyperparameters()
        self.test_fraction = check_fraction("test_fraction", test_fraction)
        if self.test_fraction == 0:
            raise UserError("test_fraction must be above 0 (the test split is held out from the 1,797 digits), got 0")

    def build(self) -> tuple[Dataset, Dataset | None, Dataset]:
        return self.split(TensorDataset(*load_digit_tensors()), None, None, test_fraction=self.test_fraction)

    @property
    def class_names(self) -> list[str]:
        return [str(digit) for digit in range(10)]
