"""After a run's fit: its best checkpoint tested with the config's DataModule, and exported HeLU -> ReLU to
ONNX (in a temporary folder), quantized to INT8 as ``helu-train export`` does it (static QDQ calibrated on the
training split for conv and MLP nets, dynamic for transformers), both scored on the validation set."""

from __future__ import annotations

import itertools
import math
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from helu_lightning.compare.int8 import int8_accuracy

__all__ = ["Evaluator"]


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[key] = number
    return out


class Evaluator:
    """Test and/or INT8 step of a comparison; a failure is recorded with its reason, the fit is kept."""

    def __init__(self, test: bool = True, int8: bool = True, int8_batches: int | None = None) -> None:
        self.test, self.int8, self.int8_batches = test, int8, int8_batches

    def __call__(self, trial_dir: Path, overrides: list[str], record: dict, build_cli: Callable[..., Any]
                 ) -> dict[str, Any]:
        checkpoint = record.get("best_checkpoint")
        if not checkpoint or not Path(checkpoint).is_file():
            reason = "the fit saved no checkpoint (enable_checkpointing off?)"
            return {"test_error": reason, "int8_error": reason}
        args = ["--config", str(trial_dir / "config.yaml"), *overrides, f"--trainer.default_root_dir={trial_dir}"]
        defaults = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            cli = build_cli(args=args, run=False, trainer_defaults=defaults)
        result: dict[str, Any] = {}
        if self.test:
            try:
                tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint, verbose=False)
                result["test"] = _finite(tested[0] if tested else {})
            except Exception as err:  # a missing test split must not lose the finished fit
                result["test_error"] = f"{type(err).__name__}: {err}"
        if self.int8:
            try:
                with tempfile.TemporaryDirectory(prefix="helu-compare-onnx-") as tmp:  # ~100 MB for MiniLM
                    result["int8"] = int8_accuracy(checkpoint, self._val_batches(cli.datamodule), Path(tmp),
                                                   cli.datamodule)
            except Exception as err:  # e.g. an op the exporter or quantizer cannot handle: reported per run
                result["int8_error"] = f"{type(err).__name__}: {err}"[:500]
        return result

    def _val_batches(self, datamodule: Any) -> Iterator[Any]:
        datamodule.setup("validate")
        loader = datamodule.val_dataloader()
        loader = loader[0] if isinstance(loader, (list, tuple)) else loader
        return itertools.islice(loader, self.int8_batches)
