"""Strategies that read checkpoints themselves (DeepSpeed's engine, FSDP's sharded folders and full files,
ModelParallel) bypass the checked reader behind the Trainer's CheckpointIO: an untrusted ``--ckpt_path`` with one of
them stops ``helu-train`` in one line naming ``--trust_checkpoint`` before anything is loaded. A CPU stand-in
(``SelfLoadingStrategy``) runs the command as a user would; the real strategies need GPUs or DeepSpeed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.strategies import (
    DDPStrategy,
    DeepSpeedStrategy,
    FSDPStrategy,
    ModelParallelStrategy,
    SingleDeviceStrategy,
)
from test_restored_state import fit

from helu_lightning.checkpoint_io import bypasses_reader

pytestmark = pytest.mark.filterwarnings("ignore")
MARKER = "HELU_TEST_LOADED_BY_STRATEGY"


class SelfLoadingStrategy(SingleDeviceStrategy):
    """Reads checkpoints with torch.load itself, as DeepSpeed and FSDP do; leaves a mark when it does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(device=torch.device("cpu"), **kwargs)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        Path(os.environ[MARKER]).write_text(str(checkpoint_path))
        return torch.load(checkpoint_path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("strategy", [DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy, SelfLoadingStrategy])
def test_strategies_that_load_checkpoints_themselves_are_recognised(strategy: type) -> None:
    assert bypasses_reader(strategy)


@pytest.mark.parametrize("strategy", [DDPStrategy, SingleDeviceStrategy])
def test_strategies_that_load_through_the_checkpoint_io_are_not_refused(strategy: type) -> None:
    assert not bypasses_reader(strategy)


def test_an_untrusted_resume_with_a_self_loading_strategy_is_refused_in_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = fit(run, epochs=1)
    assert done.returncode == 0, done.stderr[-3000:]
    marker = tmp_path / "loaded"
    extra = tmp_path / "strategy.yaml"
    extra.write_text(f"trainer:\n  accelerator: cpu\n  strategy:\n    class_path: {__name__}.SelfLoadingStrategy\n")
    strategy = ["--config", str(extra)]
    env = {MARKER: str(marker), "PYTHONPATH": f"{Path(__file__).parent}{os.pathsep}{Path(__file__).parents[1]}"}
    for ckpt in ("last", str(run / "checkpoints" / "last.ckpt")):
        done = fit(run, "--ckpt_path", ckpt, *strategy, epochs=2, env=env)
        assert done.returncode == 2, done.stderr[-3000:]
        errors = [line for line in done.stderr.splitlines() if ": error:" in line]
        assert len(errors) == 1 and "--trust_checkpoint" in errors[0] and "SelfLoadingStrategy" in errors[0], \
            done.stderr[-3000:]
        assert "Traceback" not in done.stderr and not marker.exists(), "refused before the strategy loaded it"
    done = fit(run, "--ckpt_path", "last", *strategy, "--trust_checkpoint", "true", epochs=2, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert marker.exists(), "a trusted checkpoint is loaded by the strategy, as asked"
