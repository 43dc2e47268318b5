"""Every number a writer puts in a file is finite. NaN or inf written as text (``nan``, or ``0.000`` after a clamp)
reads as a result to whoever opens the file, so each writer of CSV, TSV, JSON and Markdown checks its values here
and refuses, wherever it is called from; a value that is undefined (the spread of one seed) is written as empty
(None), never as NaN."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

from .errors import UserError

__all__ = ["defined", "finite_json", "non_finite_at", "refuse_non_finite"]


def _scalar_problem(value: Any) -> bool:
    """True for a number (Python, NumPy) or a tensor/array that holds NaN or inf."""
    if isinstance(value, (bool, int, str)) or value is None:
        return False
    if isinstance(value, numbers.Real):  # float, numpy.float32, ...
        return not math.isfinite(float(value))
    if hasattr(value, "isfinite"):  # torch.Tensor
        return not bool(value.isfinite().all())
    if hasattr(value, "dtype") and hasattr(value, "shape"):  # numpy.ndarray
        import numpy as np

        return np.issubdtype(value.dtype, np.number) and not bool(np.isfinite(value).all())
    return False


def non_finite_at(value: Any, where: str = "") -> str | None:
    """Where in ``value`` (nested mappings and sequences) the first NaN or inf sits, e.g. ``row 3, column 'std'``
    as ``[3]['std']``; None when every number is finite."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if (found := non_finite_at(item, f"{where}[{key!r}]")) is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if (found := non_finite_at(item, f"{where}[{i}]")) is not None:
                return found
        return None
    return f"{where or 'the value'} = {value!r}" if _scalar_problem(value) else None


def refuse_non_finite(value: Any, target: str) -> None:
    """UserError naming where ``value`` holds NaN or inf, before anything is written to ``target``."""
    if (found := non_finite_at(value)) is not None:
        raise UserError(f"{found} is not a finite number; nothing was written to {target}, which holds finite "
                        "numbers only. A run diverged or its checkpoint holds NaN/inf weights: rerun it (lower "
                        "the learning rate) or leave it out")


def finite_json(value: Any, target: str, **dumps: Any) -> str:
    """``json.dumps(value)`` after :func:`refuse_non_finite` (so never the ``NaN`` that JSON parsers reject)."""
    refuse_non_finite(value, target)
    return json.dumps(value, allow_nan=False, **dumps)


def defined(value: float | None) -> float | None:
    """``value``, or None where it is NaN or inf: a statistic that is undefined (one seed has no spread)."""
    return None if value is None or not math.isfinite(value) else value
