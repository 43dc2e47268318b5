"""Tiny predict data and model for the two-rank DDP tests of the prediction writers. They live apart from the
tests so that the ranks ``ddp_spawn`` starts import only torch, Lightning and these classes."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from helu_lightning.data.glue_tasks import glue_task

CLASS_NAMES = ["north", "south", "east", "west"]


class Rows(Dataset):
    """``count`` examples: ``x`` is a float feature, ``idx`` an example id (``first + 3 * i``, not the position)."""

    def __init__(self, count: int, first: int = 0, mapping: bool = False) -> None:
        self.count, self.first, self.mapping = count, first, mapping

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        x = torch.tensor([float(i) - 3.0])
        return {"x": x, "idx": self.first + 3 * i} if self.mapping else (x, 0)


def logits_of(x: torch.Tensor) -> torch.Tensor:
    """A fixed function of the example, so the expected probabilities are known without the model."""
    return torch.cat([x, -x, 0.5 * x, x.new_zeros(x.shape)], dim=1)


class RowData(LightningDataModule):
    def __init__(self, sizes: tuple[int, ...], mapping: bool = False, padded_sampler: bool = False) -> None:
        super().__init__()
        self.sizes, self.mapping, self.padded_sampler = sizes, mapping, padded_sampler
        self.class_names = CLASS_NAMES

    def predict_dataloader(self):
        loaders = []
        for number, size in enumerate(self.sizes):
            rows = Rows(size, first=100 * number, mapping=self.mapping)
            # DistributedSampler pads an odd count with a repeated row; Lightning's own predict sampler does not.
            sampler = DistributedSampler(rows, shuffle=False) if self.padded_sampler else None
            loaders.append(DataLoader(rows, batch_size=2, sampler=sampler))
        return loaders[0] if len(loaders) == 1 else loaders


class RowModel(LightningModule):
    """Predicts ``softmax(logits_of(x))``; with ``glue_task`` set it acts as a GlueClassifier for that task."""

    def __init__(self, glue: str | None = None, mapping: bool = False) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.spec = glue_task(glue) if glue else None
        self.mapping = mapping

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        if not self.mapping:
            return torch.softmax(logits_of(batch[0]), dim=-1)
        probabilities = torch.softmax(logits_of(batch["x"]), dim=-1)
        return {"idx": batch["idx"], "prediction": probabilities.argmax(-1), "probabilities": probabilities}


def expected_probabilities(count: int) -> torch.Tensor:
    """What ``RowModel`` predicts for rows ``0 .. count - 1``, computed without it."""
    return torch.softmax(logits_of(torch.arange(count, dtype=torch.float32)[:, None] - 3.0), dim=-1)
