"""VisionClassifier: metrics against hand-computed values, plain-type checkpoints, optimizer and data checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helu_lightning import ActivationSpec, HeLU
from helu_lightning.tasks.vision import VisionClassifier

TRAINER = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_task(**kwargs) -> VisionClassifier:
    options = dict(backbone="small_cnn", num_classes=10, in_channels=1, image_size=8, backbone_options={"width": 4})
    return VisionClassifier(**{**options, **kwargs})


def images(n: int = 40, num_classes: int = 10, seed: int = 0) -> TensorDataset:
    """Noisy copies of one random 8x8 template per class, so a tiny CNN learns them in a few steps."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(num_classes, 1, 8, 8, generator=g)
    y = torch.arange(n) % num_classes
    return TensorDataset(templates[y] + 0.3 * torch.randn(n, 1, 8, 8, generator=g), y)


class Images(LightningDataModule):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.data = images(num_classes=num_classes)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=8, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=16)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=16)


def test_test_metrics_match_a_hand_computation() -> None:
    task = tiny_task(label_smoothing=0.1)
    data = images(n=37)  # batches of 16, 16, 5: logged values must be example-weighted
    results = Trainer(**TRAINER).test(task, DataLoader(data, batch_size=16), verbose=False)[0]
    task.eval()
    with torch.no_grad():
        logits = task(data.tensors[0])
    y = data.tensors[1]
    top5 = logits.topk(5, dim=1).indices
    assert results["test/acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item(), abs=1e-6)
    assert results["test/acc_top5"] == pytest.approx((top5 == y[:, None]).any(1).float().mean().item(), abs=1e-6)
    expected_loss = F.cross_entropy(logits, y, label_smoothing=0.1).item()
    assert results["test/loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_fit_logs_the_agreed_names_and_learns() -> None:
    task = tiny_task(optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9))
    trainer = Trainer(max_epochs=8, **TRAINER)
    trainer.fit(task, datamodule=Images())
    logged = set(trainer.callback_metrics)
    assert logged == {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_top5"}
    assert trainer.callback_metrics["val/acc"] >= 0.9
    trainer.test(task, datamodule=Images(), verbose=False)
    assert {"test/loss", "test/acc", "test/acc_top5"} <= set(trainer.callback_metrics)


def test_top5_only_with_five_or_more_classes() -> None:
    task = tiny_task(num_classes=3)
    results = Trainer(**TRAINER).validate(task, datamodule=Images(num_classes=3), verbose=False)[0]
    assert set(results) == {"val/loss", "val/acc"}


def test_predict_returns_probabilities() -> None:
    task = tiny_task().eval()
    x, y = images(n=6).tensors
    batches = Trainer(**TRAINER).predict(task, DataLoader(TensorDataset(x, y), batch_size=4))
    probs = torch.cat(batches)
    assert probs.shape == (6, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(6))
    with torch.no_grad():
        torch.testing.assert_close(probs, torch.softmax(task(x), 1))
    assert task.predict_step(x, 0).shape == (6, 10)


def test_checkpoint_is_plain_and_rebuilds_itself(tmp_path) -> None:
    task = tiny_task(activation=ActivationSpec(name="helu", alpha=0.02), label_smoothing=0.05)
    trainer = Trainer(max_steps=2, default_root_dir=tmp_path, **{**TRAINER, "enable_checkpointing": True})
    trainer.fit(task, datamodule=Images())
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["hyper_parameters"]
    assert saved["activation"] == {"name": "helu", "alpha": 0.02}
    assert saved["backbone_options"] == {"width": 4} and saved["optimizer"] is None
    loaded = VisionClassifier.load_from_checkpoint(path)
    helus = [m for m in loaded.model.modules() if isinstance(m, HeLU)]
    assert helus and all(h.alpha.item() == pytest.approx(0.02) for h in helus)
    for (name, a), b in zip(task.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert loaded.label_smoothing == 0.05


def test_callable_optimizer_is_not_saved_but_used() -> None:
    task = tiny_task(optimizer=lambda params: torch.optim.Adam(params, lr=3e-3))
    assert task.hparams["optimizer"] is None
    optimizer = task.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == 3e-3


def test_default_optimizer_is_the_papers_sgd() -> None:
    optimizer = tiny_task().configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.01, 0.9, 5e-4)


def test_plateau_scheduler_gets_a_monitor() -> None:
    task = tiny_task(lr_scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt))
    config = task.configure_optimizers()
    assert config["lr_scheduler"]["monitor"] == "val/loss"


@pytest.mark.parametrize(
    ("activation", "kind", "alpha"),
    [("helu", HeLU, 0.05), ({"name": "helu", "alpha": 0.3}, HeLU, 0.3), ("gelu", nn.GELU, None),
     (ActivationSpec(name="helu", alpha=0.01), HeLU, 0.01)],
)
def test_activation_forms(activation, kind: type, alpha: float | None) -> None:
    found = [m for m in tiny_task(activation=activation).model.modules() if isinstance(m, kind)]
    assert len(found) == 4
    if alpha is not None:
        assert all(m.alpha.item() == pytest.approx(alpha) for m in found)


def test_example_input_fits_the_model() -> None:
    task = tiny_task()
    x = task.example_input(3)
    assert x.shape == (3, 1, 8, 8)
    assert task.model(x).shape == (3, 10)


def test_mismatched_data_is_refused_with_the_fix() -> None:
    task = tiny_task(num_classes=5)
    with pytest.raises(ValueError, match="num_classes=10 .* num_classes=5; set model.init_args.num_classes: 10"):
        Trainer(**TRAINER).validate(task, datamodule=Images(num_classes=10))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"label_smoothing": 1.0}, ValueError, "label_smoothing must be in \\[0, 1\\)"),
        ({"image_size": 0}, ValueError, "image_size must be the input's side"),
        ({"activation": nn.ReLU}, TypeError, "register_activation"),
        ({"activation": {"name": "helu", "alpha": -1}}, ValueError, "alpha must be a positive"),
        ({"backbone": "resnet"}, ValueError, "unknown backbone 'resnet'"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        tiny_task(**kwargs)
