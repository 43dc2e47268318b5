"""benchmarks/ffn_zeros.py counts exact zeros of the FFN activations at real tokens only (padding excluded)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from benchmark_scripts import load

from helu_lightning.tasks.glue import GlueClassifier

TINY = {"model_type": "bert", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 24, "max_position_embeddings": 32, "vocab_size": 100}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_zero_share_counts_real_tokens_by_hand() -> None:
    module = load("ffn_zeros")
    model = GlueClassifier(task="sst2", model_config=TINY, activation={"name": "relu"}).model.eval()
    ids = torch.randint(0, 100, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    outputs = []
    handles = [layer.intermediate.intermediate_act_fn.register_forward_hook(lambda m, a, out: outputs.append(out))
               for layer in model.bert.encoder.layer]
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for handle in handles:
        handle.remove()
    keep = mask.bool()
    zeros = sum(int((out[keep] == 0).sum()) for out in outputs)
    total = sum(out[keep].numel() for out in outputs)
    assert total == 2 * 9 * 24 and 0 < zeros < total
    share = module.ffn_zero_share(model, [{"input_ids": ids, "attention_mask": mask}])
    assert share == pytest.approx(zeros / total)


def test_a_folder_without_a_study_is_refused_and_left_alone(tmp_path: Path) -> None:
    module = load("ffn_zeros")
    with pytest.raises(SystemExit, match="study.db does not exist; pass a helu-train compare --output_dir folder"):
        module.main([str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["ffn_zeros.csv", "ffn_zeros.md"])
def test_a_planted_link_in_place_of_an_output_is_refused_before_any_work(tmp_path: Path, name: str) -> None:
    """The script writes into someone else's folder: a link there must not redirect the write to its target."""
    module = load("ffn_zeros")
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / name).symlink_to(target)
    with pytest.raises(SystemExit, match=f"{name} is a link \\(to .*precious.txt\\), not a file this script wrote"):
        module.main([str(tmp_path / "study")])
    assert target.read_text() == "keep me"
    (tmp_path / "study" / name).unlink()
    (tmp_path / "study" / name).mkdir()
    with pytest.raises(SystemExit, match=f"{name} exists and is not a regular file"):
        module.main([str(tmp_path / "study")])


def _module():
    module = load("ffn_zeros")
    return module


def _one_run_study(folder: Path) -> Path:
    """A compare-shaped study with one completed run (trial 0) and its trials/0 folder."""
    folder.mkdir()
    study = optuna.create_study(study_name="helu-compare", storage=f"sqlite:///{folder / 'study.db'}")
    dist = {"activation": optuna.distributions.CategoricalDistribution(["relu"]),
            "seed": optuna.distributions.CategoricalDistribution([0])}
    study.add_trial(optuna.trial.create_trial(params={"activation": "relu", "seed": 0}, distributions=dist, value=1))
    (folder / "trials" / "0").mkdir(parents=True)
    return folder


@pytest.mark.parametrize(("make", "message"), [
    (lambda record: None, "record.json does not exist"),
    (lambda record: os.mkfifo(record), "record.json is not a regular file: it is a pipe"),
    (lambda record: record.write_text("{"), "record.json is not JSON \\(line 1"),
    (lambda record: record.write_text("[]"), "record.json names no best_checkpoint"),
    (lambda record: record.write_text('{"best_checkpoint": 3}'), "record.json names no best_checkpoint"),
    (lambda record: record.write_text('{"best_checkpoint": "x.ckpt"}'), "config.yaml does not exist"),
])
def test_a_broken_run_folder_is_refused_in_one_line(tmp_path: Path, make: Any, message: str) -> None:
    folder = _one_run_study(tmp_path / "study")
    make(folder / "trials" / "0" / "record.json")
    with pytest.raises(SystemExit, match=message) as raised:
        _module().main([str(folder)])
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("batches", ["0", "-1", "two"])
def test_batches_must_be_a_positive_count(batches: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        _module().main(["anywhere", "--batches", batches])
    assert "is not a whole number >= 1; pass e.g. --batches 4" in capsys.readouterr().err
