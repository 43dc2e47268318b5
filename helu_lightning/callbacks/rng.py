"""Exact resumption: Lightning's checkpoints restore weights, optimizer and loop counters but not the random
generators, so a resumed run would shuffle and augment differently from an uninterrupted one. ``RNGState``
stores every generator's state in each checkpoint and puts it back on resume.

    trainer:
      callbacks:
        - class_path: helu_lightning.callbacks.RNGState

With it, a fit resumed from an end-of-epoch checkpoint ends with the same weights and metrics as an uninterrupted
run with the same seed (``--trainer.deterministic true``). A mid-epoch checkpoint still resumes, but Lightning 2.6
restarts a plain DataLoader's iterator, so the rest of that epoch sees other batches than it would have.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["RNGState"]


class RNGState(Callback):
    """Save the Python, NumPy, torch CPU and CUDA generator states in the checkpoint and restore them on resume.

    The state is stored as tensors, ints and lists only, so the checkpoint still loads with ``weights_only=True``.
    Rank 0's state is saved; every rank restores it (``seed_everything`` gives all ranks the same state anyway).
    """

    def state_dict(self) -> dict[str, Any]:
        version, keys, gauss = random.getstate()
        kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        state: dict[str, Any] = {
            "python": {"version": version, "keys": list(keys), "gauss": gauss},
            "numpy": {
                "kind": str(kind),
                "keys": torch.from_numpy(np_keys.astype(np.int64)),
                "pos": int(np_pos),
                "has_gauss": int(np_has_gauss),
                "gauss": float(np_gauss),
            },
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        missing = {"python", "numpy", "torch"} - state_dict.keys()
        if missing:
            raise KeyError(
                f"RNGState checkpoint entry lacks {sorted(missing)}; it was not written by "
                "helu_lightning.callbacks.RNGState (drop RNGState from the callbacks to resume without it)"
            )
        py = state_dict["python"]
        random.setstate((py["version"], tuple(py["keys"]), py["gauss"]))
        np_state = state_dict["numpy"]
        np.random.set_state(
            (
                np_state["kind"],
                np_state["keys"].numpy().astype(np.uint32),
                np_state["pos"],
                np_state["has_gauss"],
                np_state["gauss"],
            )
        )
        torch.set_rng_state(state_dict["torch"])
        cuda = state_dict.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
