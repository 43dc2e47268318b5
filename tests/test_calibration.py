"""suggest_alpha: quantiles of known pre-activations, pooled global value, apply, side-effect-free pass, errors."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helu_lightning.activations import HeLU
from helu_lightning.calibration import suggest_alpha


class TwoBranches(nn.Module):
    """``first`` sees the input, ``second`` sees 3x the input, ``relu`` sees it shifted: known pre-activations."""

    def __init__(self) -> None:
        super().__init__()
        self.first = HeLU(alpha=0.5)
        self.second = HeLU(alpha=0.5)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.first(x) + self.second(3 * x) + self.relu(x + 2)


def _loader() -> DataLoader:
    # Non-positive values -0.01, -0.02, ..., -1.00 plus 50 positive ones, shuffled into 5 batches of 30.
    values = torch.cat([-torch.arange(1, 101) / 100, torch.rand(50) + 0.01])
    values = values[torch.randperm(150, generator=torch.Generator().manual_seed(0))]
    return DataLoader(TensorDataset(values.view(150, 1), torch.zeros(150)), batch_size=30)


def test_per_layer_quantiles_match_hand_computed_values():
    suggestion = suggest_alpha(TwoBranches(), _loader(), target_band_fraction=0.1, num_batches=None)
    # Magnitudes 0.01..1.00: the 0.1 quantile (linear interpolation) sits at position 0.1 * 99 = 9.9 of the sorted
    # values, i.e. 0.10 + 0.9 * 0.01.
    assert suggestion.per_layer["first"] == pytest.approx(0.109)
    assert suggestion.per_layer["second"] == pytest.approx(3 * 0.109)
    assert suggestion.samples == {"first": 100, "second": 100, "relu": 0}
    assert "relu" not in suggestion.per_layer  # x + 2 is never <= 0 here
    # Exactly 10% of the first layer's non-positive inputs fall in (-alpha, 0].
    magnitudes = torch.arange(1, 101) / 100
    assert (magnitudes < suggestion.per_layer["first"]).float().mean().item() == pytest.approx(0.1)
    # Pooled over both layers: 200 sorted magnitudes, position 0.1 * 199 = 19.9.
    pooled = torch.sort(torch.cat([magnitudes, 3 * magnitudes])).values
    assert suggestion.global_alpha == pytest.approx((pooled[19] + 0.9 * (pooled[20] - pooled[19])).item())
    assert suggestion.to_dict()["target_band_fraction"] == 0.1


def test_num_batches_limits_the_pass_and_apply_sets_alpha():
    model = TwoBranches()
    suggestion = suggest_alpha(model, _loader(), target_band_fraction=0.5, num_batches=2, apply=True)
    seen = sum(int((x <= 0).sum()) for x, _ in list(_loader())[:2])
    assert 0 < seen < 100 and suggestion.samples["first"] == suggestion.samples["second"] == seen
    assert float(model.first.alpha) == pytest.approx(suggestion.per_layer["first"])
    assert float(model.second.alpha) == pytest.approx(suggestion.per_layer["second"])
    suggest_alpha(model, _loader(), apply="global")
    assert float(model.first.alpha) == float(model.second.alpha) == pytest.approx(
        suggest_alpha(TwoBranches(), _loader()).global_alpha)


def test_sample_cap_and_min_alpha():
    model = nn.Sequential(nn.ReLU())
    data = [torch.zeros(4, 100)] * 2 + [-torch.ones(4, 100)]
    suggestion = suggest_alpha(model, data, target_band_fraction=0.5, num_batches=3, max_samples_per_layer=300,
                               min_alpha=0.01)
    assert suggestion.samples["0"] == 300  # at most 300 // 3 per batch
    assert suggestion.per_layer["0"] == 0.01  # two thirds of the inputs are exact zeros: raised to min_alpha


def test_train_mode_pass_leaves_batchnorm_statistics_and_mode_unchanged():
    model = nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), HeLU()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    suggest_alpha(model, _loader(), train_mode=True)
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not model[2]._forward_pre_hooks


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="target_band_fraction must be in \\(0, 1\\), e.g. 0.1, got 1.5"):
        suggest_alpha(TwoBranches(), _loader(), target_band_fraction=1.5)
    with pytest.raises(ValueError, match="apply must be"):
        suggest_alpha(TwoBranches(), _loader(), apply="everything")
    with pytest.raises(ValueError, match="found no \\['HeLU', 'ReLU'\\] module in Linear"):
        suggest_alpha(nn.Linear(1, 1), _loader())
    with pytest.raises(ValueError, match="saw no non-positive pre-activation"):
        suggest_alpha(nn.Sequential(nn.ReLU()), [torch.ones(2, 3)])
