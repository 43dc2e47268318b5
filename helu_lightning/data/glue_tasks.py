"""The nine GLUE tasks: for each, its directory, files, the columns holding texts, label and index, label names in
the Hugging Face hub's order (so TSV files and the hub train the same head), metrics and submission file names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UserError

__all__ = ["GLUE_TASKS", "HUB_TEXT_COLUMNS", "GlueSplit", "GlueTask", "glue_task"]


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
HUB_TEXT_COLUMNS = {
    "cola": ("sentence", None), "sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"), "stsb": ("sentence1", "sentence2"), "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2"),
}


def glue_task(name: str) -> GlueTask:
    """The task spec for a GLUE task name (``cola``, ``sst2``/``SST-2``, ..., ``wnli``)."""
    key = str(name).strip().lower().replace("_", "")
    key = _ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        raise UserError(f"unknown GLUE task {name!r}; choose one of {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]
