"""GLUE: the nine tasks read from the official TSV layout (``data_dir/<TaskDir>/train.tsv`` ...), tokenised with
any AutoTokenizer, cached on disk, and batched with dynamic padding.

    data = GlueDataModule("mrpc", data_dir="glue_data", tokenizer="bert-base-uncased")

The task table lives in :mod:`.glue_tasks`, the checked TSV reader in :mod:`.glue_tsv`, tokenising and the cache in
:mod:`.tokens`; their names are re-exported here. Labels use the Hugging Face hub's order, so the hub branch
(``data_dir=None``, needs the ``datasets`` package and a network) and the TSV files train the same head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ..checkpoints import TrustedLoading
from ..errors import UserError
from .glue_tasks import GLUE_TASKS, HUB_TEXT_COLUMNS, GlueSplit, GlueTask, glue_task
from .glue_tsv import read_glue_tsv
from .tokens import (
    TokenizedDataset,
    load_tokenizer,
    read_token_cache,
    tokenize_columns,
    tokenizer_fingerprint,
    write_token_cache,
)

__all__ = [
    "GLUE_TASKS",
    "GlueDataModule",
    "GlueSplit",
    "GlueTask",
    "TokenizedDataset",
    "glue_task",
    "load_tokenizer",
    "read_glue_tsv",
    "tokenize_columns",
]


class GlueDataModule(TrustedLoading, LightningDataModule):
    """One GLUE task from ``data_dir`` (official TSV layout) or, with ``data_dir=None``, the Hugging Face hub.

    Validation: ``dev.tsv`` (MNLI: ``dev_matched`` then ``dev_mismatched``, two dataloaders). Prediction: the
    unlabelled test files (MNLI: two), written as GLUE submissions by ``GluePredictionWriter``. ``test`` uses
    the dev files, since GLUE's test labels are hidden. Tokenised splits are cached in ``cache_dir`` (default
    ``<data_dir>/<TaskDir>/cache``) under a key of tokenizer, max_length and file hash.
    """

    def __init__(
        self,
        task: str = "sst2",
        data_dir: str | None = "data/glue",
        tokenizer: str = "bert-base-uncased",
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
        use_cache: bool = True,
        skip_malformed: bool | None = None,
        max_train_samples: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.spec = glue_task(task)
        if max_length < 8:
            raise UserError(f"max_length={max_length} is too short for a sentence pair; use e.g. 128")
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.datasets: dict[str, list[TokenizedDataset]] = {}
        self._tokenizer = None

    @property
    def num_labels(self) -> int:
        return self.spec.num_labels

    def input_config(self) -> dict[str, Any]:
        """The tokenisation as plain data (the tokenizer ships in the export's ``hf/`` folder): the task's sentence
        (or sentence pair) truncated to ``max_length`` tokens; label names in id order (None for STS-B's score)."""
        return {"kind": "text", "tokenizer": "hf", "max_length": self.hparams.max_length,
                "text_pair": self.spec.train.text_b is not None, "truncation": "longest_first",
                "class_names": list(self.spec.labels) if self.spec.labels else None}

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.hparams.tokenizer)
        return self._tokenizer

    @property
    def task_dir(self) -> Path:
        return Path(self.hparams.data_dir) / self.spec.directory

    def prepare_data(self) -> None:
        if self.hparams.data_dir is None:
            self._hub_dataset()  # download once, on one process

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("validation",),
                  "predict": ("test",), None: ("train", "validation")}[stage]
        for split in wanted:
            if split not in self.datasets:
                self.datasets[split] = self._load(split)
        if stage == "fit" and self.hparams.max_train_samples:
            train = self.datasets["train"][0]
            keep = min(len(train), self.hparams.max_train_samples)
            self.datasets["train"] = [TokenizedDataset({k: v[:keep] for k, v in train.columns.items()})]

    def _splits(self, split: str) -> tuple[GlueSplit, ...]:
        return {"train": (self.spec.train,), "validation": self.spec.validation, "test": self.spec.test}[split]

    def _load(self, split: str) -> list[TokenizedDataset]:
        if self.hparams.data_dir is None:
            return self._load_hub(split)
        return [TokenizedDataset(self._tokenized(s)) for s in self._splits(split)]

    def _tokenized(self, split: GlueSplit) -> dict[str, list]:
        path = self.task_dir / split.file
        if not path.is_file():
            read_glue_tsv(path, split, self.spec)  # raises the missing or not-a-regular-file error
        cache = self._cache_path(path) if self.hparams.use_cache else None
        columns = (read_token_cache(cache, len(self.tokenizer), self.hparams.max_length) if cache is not None
                   else None)
        if columns is None:
            rows = read_glue_tsv(path, split, self.spec, self.hparams.skip_malformed)
            columns = tokenize_columns(self.tokenizer, rows, self.hparams.max_length)
            if cache is not None:
                write_token_cache(cache, columns)
        return columns

    def _cache_path(self, path: Path) -> Path:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        skip = self.spec.skip_malformed if self.hparams.skip_malformed is None else self.hparams.skip_malformed
        key = f"{tokenizer_fingerprint(self.tokenizer)}-{self.hparams.max_length}-{digest}-{int(skip)}"
        root = Path(self.hparams.cache_dir) if self.hparams.cache_dir else self.task_dir / "cache"
        return root / f"{self.spec.name}-{path.stem}-{key}.pt"

    def _hub_dataset(self) -> Any:
        try:
            import datasets
        except ImportError as err:
            raise ImportError("data_dir=None reads GLUE from the Hugging Face hub, which needs `pip install "
                              "datasets` and a network; or give data_dir with the official TSV files") from err
        return datasets.load_dataset("nyu-mll/glue", self.spec.name, cache_dir=self.hparams.cache_dir)

    def _load_hub(self, split: str) -> list[TokenizedDataset]:
        hub = self._hub_dataset()
        names = {"train": ["train"], "validation": ["validation"], "test": ["test"]}[split]
        if self.spec.name == "mnli" and split != "train":
            names = [f"{split}_matched", f"{split}_mismatched"]
        a, b = HUB_TEXT_COLUMNS[self.spec.name]
        out = []
        for name in names:
            rows = hub[name]
            columns = {"text_a": list(rows[a]), "idx": list(rows["idx"])}
            if b is not None:
                columns["text_b"] = list(rows[b])
            if split != "test":
                columns["label"] = list(rows["label"])
            out.append(TokenizedDataset(tokenize_columns(self.tokenizer, columns, self.hparams.max_length)))
        return out

    def _loader(self, dataset: Dataset, shuffle: bool, batch_size: int) -> DataLoader:
        from transformers import DataCollatorWithPadding

        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.hparams.num_workers,
                          collate_fn=DataCollatorWithPadding(self.tokenizer), persistent_workers=False)

    def _eval_loaders(self, split: str) -> DataLoader | list[DataLoader]:
        size = self.hparams.eval_batch_size or self.hparams.batch_size
        loaders = [self._loader(d, False, size) for d in self.datasets[split]]
        return loaders[0] if len(loaders) == 1 else loaders

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["train"][0], True, self.hparams.batch_size)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loaders("validation")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loaders("validation")

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loaders("test")

    @property
    def predict_names(self) -> Sequence[str]:
        """GLUE submission file names of the predict dataloaders, in order."""
        return [s.submission for s in self.spec.test]
