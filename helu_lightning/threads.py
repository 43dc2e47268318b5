"""The CPU thread count of a run. CPU kernels split sums by thread, so the same seed gives other numbers with
another count (the text run: test/acc 0.957 at one thread, 0.937 at torch's default on 2 cores); a config that
states ``threads`` reproduces its numbers anywhere, and every run records the count it used."""

from __future__ import annotations

import os

import torch
from lightning.pytorch.utilities import rank_zero_info

from .errors import UserError

__all__ = ["apply_threads"]


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (and ``OMP_NUM_THREADS`` for processes this run starts) to ``threads``, or keep
    torch's default when None; print the count in the run's header and return it."""
    if threads is None:
        count = torch.get_num_threads()
        rank_zero_info(f"Threads: {count} (torch's default here; CPU results depend on it, "
                       "set threads: N or --threads N to fix it)")
        return count
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be a whole number >= 1 (CPU threads for torch, e.g. 1), got {threads!r}; "
                        "or null for torch's default")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    rank_zero_info(f"Threads set to {threads}")
    return threads
