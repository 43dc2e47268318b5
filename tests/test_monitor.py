"""ActivationMonitor: statistics against hand-computed values, call sites of a reused module, rank reduction,
logging through Lightning, hooks removed after measuring."""

import csv

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.models.resnet import BasicBlock

from helu_lightning.activations import HeLU
from helu_lightning.callbacks import ActivationMonitor, ActivationStats

TYPES = (HeLU, nn.ReLU)


def _reference(x: torch.Tensor, alpha: float, unit_dim: int) -> list[float]:
    """dead fraction, band fraction, mean, std of pre-activations x, computed the obvious way."""
    units = x.movedim(unit_dim, 0).reshape(x.shape[unit_dim], -1)
    dead = (units <= 0).all(dim=1).float().mean().item()
    band = ((x > -alpha) & (x <= 0)).float().mean().item()
    return [dead, band, x.mean().item(), x.std().item()]


def _values(summary: dict[str, float], site: str) -> list[float]:
    return [summary[f"{stat}/{site}"] for stat in ("dead_fraction", "band_fraction", "pre_mean", "pre_std")]


def test_linear_and_conv_statistics_match_reference():
    model = nn.Sequential(nn.Identity(), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 6), HeLU(alpha=0.3))
    x = torch.randn(5, 4, 3, 3)
    x[:, 1] = -torch.rand(5, 3, 3)  # channel 1 never positive: dead
    with torch.no_grad():
        model[3].weight[2] = 0  # feature 2 is only its bias: dead when the bias is not positive
        model[3].bias[2] = -0.2
    stats = ActivationStats(model, TYPES, reference_alpha=0.05)
    stats.attach()
    model(x)
    model(x[:2])  # a second batch: dead means never positive over the window
    stats.detach()
    summary = stats.summary()
    both = torch.cat([x, x[:2]])
    assert _values(summary, "1") == pytest.approx(_reference(both, 0.05, 1), rel=1e-5)
    assert summary["dead_fraction/1"] == pytest.approx(0.25)
    pre = model[3](model[2](F.relu(both))).detach()
    assert _values(summary, "4") == pytest.approx(_reference(pre, 0.3, 1), rel=1e-5)
    assert summary["dead_fraction/4"] >= 1 / 6
    pooled = torch.cat([both.flatten(), pre.flatten()])
    assert summary["pre_mean"] == pytest.approx(pooled.mean().item(), rel=1e-5)
    assert summary["dead_fraction"] == pytest.approx((1 + 6 * summary["dead_fraction/4"]) / 10)
    assert summary["band_fraction"] == pytest.approx(
        (((both > -0.05) & (both <= 0)).sum() + ((pre > -0.3) & (pre <= 0)).sum()).item() / pooled.numel())


def test_reused_module_gets_one_site_per_call():
    block = BasicBlock(4, 4).eval()  # block.relu (inplace) is called twice per forward
    x = torch.randn(3, 4, 5, 5)
    stats = ActivationStats(block, TYPES, reference_alpha=0.05)
    stats.attach()
    with torch.no_grad():
        block(x)
        block(x + 1)
    stats.detach()
    summary = stats.summary()
    with torch.no_grad():
        first = torch.cat([block.bn1(block.conv1(v)) for v in (x, x + 1)])
        second = torch.cat([block.bn2(block.conv2(F.relu(block.bn1(block.conv1(v))))) + v for v in (x, x + 1)])
    assert _values(summary, "relu#0") == pytest.approx(_reference(first, 0.05, 1), rel=1e-5)
    assert _values(summary, "relu#1") == pytest.approx(_reference(second, 0.05, 1), rel=1e-5)
    assert not any(key.endswith("/relu") for key in summary)
    assert not block.relu._forward_pre_hooks and not block._forward_pre_hooks


def test_sum_over_ranks_equals_one_process_seeing_all_batches():
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU())
    a, b = torch.randn(4, 3), torch.randn(4, 3) - 1
    ranks = [ActivationStats(model, TYPES, 0.05) for _ in range(2)]
    single = ActivationStats(model, TYPES, 0.05)
    for stats, batches in ((ranks[0], [a]), (ranks[1], [b]), (single, [a, b])):
        stats.attach()
        for batch in batches:
            stats.new_forward()
            model(batch)
        stats.detach()
    other = ranks[1].flat()
    assert ranks[0].summary(lambda t: t + other) == pytest.approx(single.summary())


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Linear(4, 16), HeLU(alpha=0.1), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.model(x)

    def _loader(self):
        g = torch.Generator().manual_seed(1)
        return DataLoader(TensorDataset(torch.randn(24, 4, generator=g), torch.randint(0, 3, (24,), generator=g)),
                          batch_size=4)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", F.cross_entropy(self(batch[0]), batch[1]))

    train_dataloader = val_dataloader = _loader

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_trainer_logs_windows_and_validation_and_removes_hooks(tmp_path):
    monitor = ActivationMonitor(every_n_steps=4, window=2, val_batches=3)
    model = Classifier()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=CSVLogger(tmp_path, name="run"),
                         callbacks=[monitor], enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model)
    rows = list(csv.DictReader(open(tmp_path / "run" / "version_0" / "metrics.csv")))
    train_steps = [int(r["step"]) for r in rows if r.get("monitor/train/dead_fraction")]
    # 6 batches per epoch: windows open at steps 0, 4, 8 and close two optimizer steps later.
    assert train_steps == [2, 6, 10]
    val = [r for r in rows if r.get("monitor/val/dead_fraction")]
    assert [int(float(r["epoch"])) for r in val] == [0, 1]
    for key in ("monitor/val/band_fraction/1", "monitor/val/band_fraction/3", "monitor/val/pre_std/1"):
        assert key in val[0]
    assert not any(m._forward_pre_hooks for m in model.modules())

    # The last validation numbers equal a direct computation over the first 3 validation batches.
    x = torch.cat([batch[0] for batch in list(model.val_dataloader())[:3]])
    with torch.no_grad():
        first = model.model[0](x)
        second = model.model[2](F.relu(first))
    last = monitor.last_metrics
    assert last["monitor/val/band_fraction/1"] == pytest.approx(_reference(first, 0.1, 1)[1])
    assert last["monitor/val/band_fraction/3"] == pytest.approx(_reference(second, 0.05, 1)[1])
    assert last["monitor/val/dead_fraction/3"] == pytest.approx(_reference(second, 0.05, 1)[0])
    assert last["monitor/val/pre_mean/1"] == pytest.approx(first.mean().item(), rel=1e-5)


def test_monitor_rejects_bad_settings_and_models_without_activations():
    with pytest.raises(ValueError, match="every_n_steps must be an integer >= 1, got 0"):
        ActivationMonitor(every_n_steps=0)
    with pytest.raises(ValueError, match=r"window must be an integer in \[1, every_n_steps=5\], got 6"):
        ActivationMonitor(every_n_steps=5, window=6)
    with pytest.raises(ValueError, match="reference_alpha must be a positive finite number"):
        ActivationMonitor(reference_alpha=-1.0)
    with pytest.raises(ValueError, match="cannot import 'torch.nn.NoSuchAct'"):
        ActivationMonitor(module_types=["torch.nn.NoSuchAct"])
    monitor = ActivationMonitor(module_types=["torch.nn.GELU"])
    with pytest.raises(ValueError, match=r"found no module of type \['GELU'\] in Sequential"):
        monitor.setup(None, Classifier(), "fit")


def test_module_types_by_import_path_pick_other_activations():
    monitor = ActivationMonitor(module_types=["torch.nn.GELU", "helu_lightning.activations.HeLU"])
    assert monitor.module_types == (nn.GELU, HeLU)
    model = nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.ReLU())
    stats = ActivationStats(model, monitor.module_types, 0.05)
    assert list(stats.modules) == ["1"]


@pytest.mark.parametrize("alpha", [0.25, 0.5])
def test_band_is_open_at_minus_alpha_and_closed_at_zero(alpha):
    """Inputs exactly at -alpha lie below the band, as in HeLU's backward; 0 lies in it."""
    model = nn.Sequential(HeLU(alpha=alpha))
    x = torch.tensor([[-alpha, -alpha / 2, 0.0, 0.5, -1.0, -alpha, 0.0, 2.0]])
    stats = ActivationStats(model, TYPES, reference_alpha=0.05)
    stats.attach()
    model(x)
    stats.detach()
    assert stats.summary()["band_fraction/0"] == 3 / 8  # -alpha/2 and the two zeros


def test_units_of_sequence_inputs_are_the_last_dimension_and_a_zero_max_unit_is_dead():
    model = nn.Sequential(nn.ReLU())
    x = torch.full((2, 5, 3), -1.0)  # (batch, tokens, features): 3 units, and 5 tokens to confuse with them
    x[..., 0] = 1.0  # alive
    x[0, 0, 1] = 0.0  # unit 1 peaks at exactly 0: never passes anything, so dead
    stats = ActivationStats(model, TYPES, reference_alpha=0.05)
    stats.attach()
    model(x)
    stats.detach()
    assert stats.summary()["dead_fraction/0"] == pytest.approx(2 / 3)
