"""Label checks shared by the readers: as many labels as examples, each a whole number in ``0..num_classes - 1``.

A label file that disagrees with its images is refused where it is read: a mismatch in count would pair every
image with another image's label, and a label out of range crashes the loss (or, on a GPU, the whole device).
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

import numpy as np

from ..errors import DataError

__all__ = ["check_counts", "check_labels"]


def check_counts(images: int, labels: int, where: str | PathLike,
                 fix: str = "replace it with the official file") -> None:
    """DataError naming ``where`` unless there are as many labels as images."""
    if images != labels:
        raise DataError(f"{where} holds {images} images but {labels} labels; every image needs exactly one label "
                        f"(they would be paired wrongly): {fix}")


def check_labels(labels: Sequence[int] | np.ndarray, num_classes: int, where: str | PathLike,
                 fix: str = "replace it with the official file") -> np.ndarray:
    """``labels`` as an int64 array; DataError naming ``where``, the first bad label and its position unless every
    label is a whole number in ``0..num_classes - 1``."""
    values = np.asarray(labels)
    if values.ndim != 1:
        raise DataError(f"{where}: its labels have shape {values.shape}, not one label per example; {fix}")
    if values.dtype.kind not in "iu" or not isinstance(labels, np.ndarray):  # a list may mix in True or 2.5
        items = labels if not isinstance(labels, np.ndarray) else values.tolist()
        bad = next((i for i, v in enumerate(items) if not _whole(v)), None)
        if bad is not None:
            raise DataError(f"{where}: label {items[bad]!r} (example {bad}) is not a class number "
                            f"0..{num_classes - 1}; {fix}")
    try:
        values = values.astype(np.int64)
    except (OverflowError, ValueError):  # a whole number beyond 64 bits: outside the classes too
        raise DataError(f"{where}: a label lies far outside 0..{num_classes - 1} ({num_classes} classes); "
                        f"{fix}") from None
    outside = np.flatnonzero((values < 0) | (values >= num_classes))
    if outside.size:
        first = int(outside[0])
        raise DataError(f"{where}: label {int(values[first])} (example {first}) lies outside 0..{num_classes - 1} "
                        f"({num_classes} classes), as do {outside.size - 1} other label(s); {fix}")
    return values


def _whole(value: object) -> bool:
    """A whole number (3 or 3.0), not a bool, a fraction, NaN or text."""
    if isinstance(value, np.generic):
        value = value.item()
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
