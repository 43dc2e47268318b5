"""GLUE: the nine tasks read from the official TSV layout (``data_dir/<TaskDir>/train.tsv`` ...), tokenised with
any AutoTokenizer, cached on disk, and batched with dynamic padding.

    data = GlueDataModule("mrpc", data_dir="glue_data", tokenizer="bert-base-uncased")

Files are read with ``csv.QUOTE_NONE`` (GLUE text holds bare quotes). A row with the wrong number of fields or a
bad label raises an error naming the file, the line and the expected columns; QQP's train/dev files hold a few
such rows, so QQP skips them with one warning giving the count, as the Hugging Face loaders do
(``skip_malformed`` overrides this per run). Labels use the Hugging Face hub's order, so the hub branch
(``data_dir=None``, needs the ``datasets`` package and a network) and the TSV files train the same head.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ..checkpoints import TrustedLoading
from ..io import atomic_write_bytes
from ..models.text import resolve_pretrained

__all__ = [
    "GLUE_TASKS",
    "GlueDataModule",
    "GlueTask",
    "TokenizedDataset",
    "glue_task",
    "load_tokenizer",
    "read_glue_tsv",
    "tokenize_columns",
]

log = logging.getLogger(__name__)

# The test and diagnostic files hold sentences of any length; the csv default limit (128 KiB) is enough for
# GLUE, but a raised limit keeps one odd line from failing a whole run.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class GlueSplit:
    """One file of a task: where it lives, which columns hold the texts/label/index, and its name in logs."""

    file: str
    text_a: str | int
    text_b: str | int | None
    label: str | int | None
    index: str | int | None
    header: bool = True
    name: str = ""
    num_columns: int | None = None  # for header-less files
    submission: str | None = None  # GLUE submission file name (test splits)


@dataclass(frozen=True)
class GlueTask:
    """A GLUE task: its directory, files, label names (``None`` for regression) and metrics."""

    name: str
    directory: str
    train: GlueSplit
    validation: tuple[GlueSplit, ...]
    test: tuple[GlueSplit, ...]
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    submit_label_names: bool = False  # write label names, not ids, in submission files
    skip_malformed: bool = False

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def is_pair(self) -> bool:
        return self.train.text_b is not None


def _pair_task(name: str, directory: str, a: str, b: str, label: str, labels: tuple[str, ...] | None,
               metrics: tuple[str, ...], train_index: str | None = "index", test_index: str = "index",
               **kwargs: Any) -> GlueTask:
    return GlueTask(
        name, directory,
        train=GlueSplit("train.tsv", a, b, label, train_index),
        validation=(GlueSplit("dev.tsv", a, b, label, train_index),),
        test=(GlueSplit("test.tsv", a, b, None, test_index, submission=f"{directory}.tsv"),),
        labels=labels, metrics=metrics, **kwargs,
    )


_MNLI_COLUMNS = dict(text_a="sentence1", text_b="sentence2", index="index")

GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask(
        "cola", "CoLA",
        # train/dev have no header: source, label, original annotation, sentence.
        train=GlueSplit("train.tsv", 3, None, 1, None, header=False, num_columns=4),
        validation=(GlueSplit("dev.tsv", 3, None, 1, None, header=False, num_columns=4),),
        test=(GlueSplit("test.tsv", "sentence", None, None, "index", submission="CoLA.tsv"),),
        labels=("unacceptable", "acceptable"), metrics=("mcc",),
    ),
    "sst2": GlueTask(
        "sst2", "SST-2",
        train=GlueSplit("train.tsv", "sentence", None, "label", None),
        validation=(GlueSplit("dev.tsv", "sentence", None, "label", None),),
        test=(GlueSplit("test.tsv", "sentence", None, None, "index", submission="SST-2.tsv"),),
        labels=("negative", "positive"), metrics=("acc",),
    ),
    "mrpc": _pair_task("mrpc", "MRPC", "#1 String", "#2 String", "Quality", ("not_equivalent", "equivalent"),
                       ("acc", "f1"), train_index=None),
    "qqp": GlueTask(
        "qqp", "QQP",
        train=GlueSplit("train.tsv", "question1", "question2", "is_duplicate", "id"),
        validation=(GlueSplit("dev.tsv", "question1", "question2", "is_duplicate", "id"),),
        test=(GlueSplit("test.tsv", "question1", "question2", None, "id", submission="QQP.tsv"),),
        labels=("not_duplicate", "duplicate"), metrics=("acc", "f1"), skip_malformed=True,
    ),
    "stsb": _pair_task("stsb", "STS-B", "sentence1", "sentence2", "score", None, ("pearson", "spearman")),
    "mnli": GlueTask(
        "mnli", "MNLI",
        train=GlueSplit("train.tsv", label="gold_label", **_MNLI_COLUMNS),
        validation=(GlueSplit("dev_matched.tsv", label="gold_label", name="matched", **_MNLI_COLUMNS),
                    GlueSplit("dev_mismatched.tsv", label="gold_label", name="mismatched", **_MNLI_COLUMNS)),
        test=(GlueSplit("test_matched.tsv", label=None, name="matched", submission="MNLI-m.tsv", **_MNLI_COLUMNS),
              GlueSplit("test_mismatched.tsv", label=None, name="mismatched", submission="MNLI-mm.tsv",
                        **_MNLI_COLUMNS)),
        labels=("entailment", "neutral", "contradiction"), metrics=("acc",), submit_label_names=True,
    ),
    "qnli": _pair_task("qnli", "QNLI", "question", "sentence", "label", ("entailment", "not_entailment"), ("acc",),
                       submit_label_names=True),
    "rte": _pair_task("rte", "RTE", "sentence1", "sentence2", "label", ("entailment", "not_entailment"), ("acc",),
                      submit_label_names=True),
    "wnli": _pair_task("wnli", "WNLI", "sentence1", "sentence2", "label", ("not_entailment", "entailment"),
                       ("acc",)),
}

# Names people write for the same task.
_ALIASES = {"sst-2": "sst2", "sst": "sst2", "sts-b": "stsb", "sts": "stsb", "mnli-m": "mnli"}

# Hub column names (dataset "nyu-mll/glue").
_HUB_TEXT = {"cola": ("sentence", None), "sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"),
             "qqp": ("question1", "question2"), "stsb": ("sentence1", "sentence2"), "mnli": ("premise", "hypothesis"),
             "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2")}

def glue_task(name: str) -> GlueTask:
    """The task spec for a GLUE task name (``cola``, ``sst2``/``SST-2``, ..., ``wnli``)."""
    key = str(name).strip().lower().replace("_", "")
    key = _ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; choose one of {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]


def load_tokenizer(name_or_path: str) -> Any:
    """``AutoTokenizer`` from a local directory, a packaged alias, or a hub name (hub needs network or cache)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_pretrained(name_or_path))


def read_glue_tsv(path: str | Path, split: GlueSplit, task: GlueTask, skip_malformed: bool | None = None,
                  ) -> dict[str, list]:
    """Parse one GLUE TSV file into columns ``text_a``, ``text_b`` (pairs), ``label`` (labelled splits), ``idx``.

    Raises FileNotFoundError for a missing file and ValueError naming file, line and expected columns for a
    malformed row, unless the row is skipped (``skip_malformed``, default: the task's own choice).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"GLUE {task.directory} file {path} is missing; expected the official layout "
            f"<data_dir>/{task.directory}/{split.file} (download GLUE with its download_glue_data.py script)"
        )
    skip = task.skip_malformed if skip_malformed is None else skip_malformed
    columns: dict[str, list] = {"text_a": [], "idx": []}
    if split.text_b is not None:
        columns["text_b"] = []
    if split.label is not None:
        columns["label"] = []
    skipped = 0
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if split.header:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: the file is empty; expected a header line")
            wanted = [c for c in (split.text_a, split.text_b, split.label, split.index) if c is not None]
            missing = [c for c in wanted if c not in header]
            if missing:
                raise ValueError(f"{path}, line 1: header {header} lacks column(s) {missing}; "
                                 f"expected the GLUE {task.directory} columns {wanted}")
            width = len(header)
            position = {c: header.index(c) for c in wanted}
            expected = "\t".join(header)
        else:
            width = split.num_columns
            position = {c: c for c in (split.text_a, split.label) if c is not None}
            expected = f"{width} tab-separated fields without a header (text in field {split.text_a + 1}, "
            expected += f"label in field {split.label + 1})" if split.label is not None else ")"
        for row in reader:
            line = reader.line_num
            if not row or row == [""]:
                continue
            try:
                if len(row) != width:
                    raise ValueError(f"{len(row)} fields instead of {width}")
                label = None if split.label is None else _parse_label(row[position[split.label]], task)
            except ValueError as err:
                if skip:
                    skipped += 1
                    continue
                raise ValueError(f"{path}, line {line}: malformed row ({err}); expected columns: {expected}. "
                                 "Fix or delete the row, or pass skip_malformed=True to drop such rows.") from None
            columns["text_a"].append(row[position[split.text_a]])
            if split.text_b is not None:
                columns["text_b"].append(row[position[split.text_b]])
            if label is not None:
                columns["label"].append(label)
            columns["idx"].append(int(row[position[split.index]]) if split.index is not None else len(columns["idx"]))
    if skipped:
        log.warning("skipped %d malformed row(s) of %s (wrong field count or label)", skipped, path)
    return columns


def _parse_label(value: str, task: GlueTask) -> int | float:
    if task.is_regression:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"score {value!r} is not a number") from None
    if value in task.labels:
        return task.labels.index(value)
    if value.isdigit() and int(value) < task.num_labels:
        return int(value)
    raise ValueError(f"label {value!r} is not one of {list(task.labels)} or 0..{task.num_labels - 1}")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what decides token ids: the tokenizer's full definition (vocab, normaliser, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = json.loads(backend.to_str())
        # Truncation and padding are per-call settings that the fast tokenizer stores on its backend.
        definition.pop("truncation", None)
        definition.pop("padding", None)
        text = json.dumps(definition, sort_keys=True)
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items()))
    text += type(tokenizer).__name__ + str(getattr(tokenizer, "model_max_length", ""))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def tokenize_columns(tokenizer: Any, columns: dict[str, list], max_length: int) -> dict[str, list]:
    """Tokenise ``text_a`` (and ``text_b`` as the pair) with truncation and no padding; keep labels and ids."""
    pair = columns.get("text_b")
    encoded = tokenizer(columns["text_a"], pair, truncation=True, max_length=max_length)
    out = {key: list(value) for key, value in encoded.items()}
    if "label" in columns:
        out["labels"] = columns["label"]
    out["idx"] = columns["idx"]
    return out


class TokenizedDataset(Dataset):
    """Rows of token-id lists (unpadded); ``DataCollatorWithPadding`` pads each batch to its longest row."""

    def __init__(self, columns: dict[str, list]) -> None:
        self.columns = columns
        self.length = len(columns["input_ids"])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {key: values[i] for key, values in self.columns.items()}


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
            raise ValueError(f"max_length={max_length} is too short for a sentence pair; use e.g. 128")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.datasets: dict[str, list[TokenizedDataset]] = {}
        self._tokenizer = None

    @property
    def num_labels(self) -> int:
        return self.spec.num_labels

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
            read_glue_tsv(path, split, self.spec)  # raises the missing-file error
        cache = self._cache_path(path) if self.hparams.use_cache else None
        if cache is not None and cache.is_file():
            return torch.load(cache, weights_only=True)
        columns = tokenize_columns(self.tokenizer, read_glue_tsv(path, split, self.spec, self.hparams.skip_malformed),
                                   self.hparams.max_length)
        if cache is not None:
            buffer = io.BytesIO()
            torch.save(columns, buffer)
            atomic_write_bytes(cache, buffer.getvalue())
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
        a, b = _HUB_TEXT[self.spec.name]
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
