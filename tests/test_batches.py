"""split_batch: the one reading of a batch as (model inputs, labels) for the tasks, calibration and export; and the
callbacks' homes (RNGState, EpochCounter) with the old ``helu_lightning.resume`` path still resolving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from helu_lightning.activations import HeLU
from helu_lightning.batches import call_model, split_batch
from helu_lightning.calibration import suggest_alpha

ROOT = Path(__file__).resolve().parents[1]


class KeywordModel(nn.Module):
    """A Hugging Face style model: keyword inputs only, no ``idx`` or ``labels`` parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.act = HeLU(alpha=0.5)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.act(input_ids.float() - 2) * (1 if attention_mask is None else attention_mask)


class AnyKeywords(nn.Module):
    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return sum(inputs.values())


def _mapping_batch() -> dict[str, torch.Tensor | list]:
    return {"input_ids": torch.tensor([[0, 1, 2]]), "attention_mask": torch.ones(1, 3), "token_type_ids":
            torch.zeros(1, 3), "labels": torch.tensor([1]), "idx": torch.tensor([7]), "text": ["not a tensor"]}


def test_pairs_and_tensors_split_into_inputs_and_labels() -> None:
    x, y = torch.randn(2, 3), torch.tensor([0, 1])
    assert split_batch((x, y))[0] is x and split_batch([x, y])[1] is y
    assert split_batch((x,)) == (x, None)
    assert split_batch(x) == (x, None)
    with pytest.raises(TypeError, match="cannot split a batch of type str"):
        split_batch("batch")


def test_mappings_drop_labels_and_index_and_keep_what_forward_takes() -> None:
    inputs, labels = split_batch(_mapping_batch())
    assert sorted(inputs) == ["attention_mask", "input_ids", "token_type_ids"] and labels.tolist() == [1]
    inputs, _ = split_batch(_mapping_batch(), KeywordModel())
    assert sorted(inputs) == ["attention_mask", "input_ids"]
    inputs, _ = split_batch(_mapping_batch(), AnyKeywords())
    assert sorted(inputs) == ["attention_mask", "input_ids", "token_type_ids"], "**kwargs takes every input"
    assert split_batch({"input_ids": torch.ones(1), "label": torch.tensor([3])})[1].tolist() == [3]


def test_call_model_passes_mappings_as_keywords() -> None:
    model = KeywordModel()
    batch = _mapping_batch()
    inputs, _ = split_batch(batch, model)
    assert torch.equal(call_model(model, inputs), model(batch["input_ids"], batch["attention_mask"]))


def test_calibration_reads_text_batches_with_an_example_index() -> None:
    # A GLUE/text batch carries ``idx``; calibration used to pass it to the model, which takes no such input.
    batches = [{"input_ids": torch.tensor([[0, 1, 2, 3]]), "attention_mask": torch.ones(1, 4),
                "idx": torch.tensor([5]), "labels": torch.tensor([0])}]
    suggestion = suggest_alpha(KeywordModel(), DataLoader(batches, batch_size=None), target_band_fraction=0.5)
    # Pre-activations -2, -1, 0, 1: the non-positive magnitudes 2, 1, 0 have median 1.
    assert suggestion.per_layer["act"] == pytest.approx(1.0)


def test_callbacks_live_in_callbacks_and_the_old_rng_path_still_resolves() -> None:
    import helu_lightning.callbacks as callbacks
    import helu_lightning.resume as resume

    assert resume.RNGState is callbacks.RNGState and callbacks.RNGState.__module__ == "helu_lightning.callbacks.rng"
    assert callbacks.EpochCounter.__module__ == "helu_lightning.callbacks.epochs"
    for config in sorted((ROOT / "configs").rglob("*.yaml")):
        assert "helu_lightning.resume" not in config.read_text(), f"{config} names the old RNGState path"


def test_epoch_counter_counts_started_epochs() -> None:
    from helu_lightning.callbacks import EpochCounter

    counter = EpochCounter()
    for _ in range(3):
        counter.on_train_epoch_start(None, None)
    assert counter.epochs == 3


def test_data_layer_imports_no_model_task_or_callback_module() -> None:
    # Data flows one way (data -> tasks -> callbacks/apps): importing every DataModule loads none of the layers above.
    code = ("import sys, helu_lightning.data, helu_lightning.data.glue, helu_lightning.data.text; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'helu_lightning' and "
            "m.split('.')[1:2] in (['models'], ['tasks'], ['callbacks'], ['cli'], ['export'], ['search'])))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
