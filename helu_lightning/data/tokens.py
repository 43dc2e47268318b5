"""Tokenised text for the GLUE and text DataModules: the tokenizer, its fingerprint, unpadded token columns, and
the on-disk cache of tokenised splits.

The cache is read with ``torch.load(weights_only=True)``, which never runs code, and its structure is checked:
a truncated, empty or foreign file is rebuilt with a warning naming it, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..io import atomic_write_bytes
from ..pretrained import resolve_pretrained

__all__ = ["TokenizedDataset", "load_tokenizer", "read_token_cache", "tokenize_columns", "tokenizer_fingerprint",
           "write_token_cache"]

log = logging.getLogger(__name__)


def load_tokenizer(name_or_path: str) -> Any:
    """``AutoTokenizer`` from a local directory, a packaged alias, or a hub name (hub needs network or cache)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_pretrained(name_or_path))


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what decides token ids: the tokenizer's full definition (vocab, normaliser, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = json.loads(backend.to_str())
        # Truncation and padding are per-call settings that the fast tokenizer stores on its backend.
        definition.pop("truncation", None)
        definition.pop("padding", None)
        text = json.dumps(definition, sort_keys=True)
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items()))
    text += type(tokenizer).__name__ + str(getattr(tokenizer, "model_max_length", ""))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def tokenize_columns(tokenizer: Any, columns: dict[str, list], max_length: int) -> dict[str, list]:
    """Tokenise ``text_a`` (and ``text_b`` as the pair) with truncation and no padding; keep labels and ids."""
    pair = columns.get("text_b")
    encoded = tokenizer(columns["text_a"], pair, truncation=True, max_length=max_length)
    out = {key: list(value) for key, value in encoded.items()}
    if "label" in columns:
        out["labels"] = columns["label"]
    out["idx"] = columns["idx"]
    return out


class TokenizedDataset(Dataset):
    """Rows of token-id lists (unpadded); ``DataCollatorWithPadding`` pads each batch to its longest row."""

    def __init__(self, columns: dict[str, list]) -> None:
        self.columns = columns
        self.length = len(columns["input_ids"])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {key: values[i] for key, values in self.columns.items()}


# The columns tokenize_columns writes: these go into the model as keyword arguments, so no other name may.
TOKEN_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")
CACHE_COLUMNS = {*TOKEN_COLUMNS, "labels", "idx"}


def _is_int(value: Any) -> bool:
    return type(value) is int


def _row_problem(columns: dict[str, list], vocab_size: int | None, max_length: int | None) -> str | None:
    """What makes a row of the token columns unusable: non-integer ids, ids outside the vocabulary (an embedding
    lookup fails, on a GPU with a device-side assert), rows longer than max_length or of unequal lengths."""
    present = [key for key in TOKEN_COLUMNS if key in columns]
    for i, row in enumerate(columns["input_ids"]):
        if not isinstance(row, list) or not row or not all(map(_is_int, row)):
            return f"input_ids row {i} is not a non-empty list of integers"
        if min(row) < 0 or (vocab_size is not None and max(row) >= vocab_size):
            return f"input_ids row {i} holds ids outside the tokenizer's vocabulary [0, {vocab_size})"
        if max_length is not None and len(row) > max_length:
            return f"input_ids row {i} has {len(row)} tokens, over max_length={max_length}"
        for key in present[1:]:
            other = columns[key][i]
            if not isinstance(other, list) or len(other) != len(row) or not all(t in (0, 1) and _is_int(t)
                                                                                 for t in other):
                return f"{key} row {i} is not a list of 0/1 as long as its input_ids"
    labels = columns.get("labels", [])
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v == v for v in labels):
        return "its labels are not all numbers"
    if not all(map(_is_int, columns["idx"])):
        return "its idx column is not all integers"
    return None


def _problem(columns: Any, vocab_size: int | None = None, max_length: int | None = None) -> str | None:
    """What makes ``columns`` unlike tokenised columns (equal-length lists incl. input_ids and idx, only the
    columns tokenize_columns writes, integer ids inside the vocabulary), or None."""
    if not isinstance(columns, dict) or not {"input_ids", "idx"} <= columns.keys():
        return "it does not hold the input_ids and idx columns"
    if not all(isinstance(key, str) and isinstance(value, list) for key, value in columns.items()):
        return "its columns are not lists"
    if extra := sorted(set(columns) - CACHE_COLUMNS):
        return f"it holds columns {extra} that tokenising never writes"
    lengths = {len(value) for value in columns.values()}
    if len(lengths) != 1 or lengths == {0}:
        return f"its columns have lengths {sorted(lengths)}"
    return _row_problem(columns, vocab_size, max_length)


def read_token_cache(path: Path, vocab_size: int | None = None, max_length: int | None = None
                     ) -> dict[str, list] | None:
    """The tokenised columns cached at ``path``, or None (with a warning naming it) when it is unusable: ids must
    lie in ``[0, vocab_size)`` and rows hold at most ``max_length`` tokens, when those are given."""
    if not path.is_file():
        return None
    try:
        columns = torch.load(path, weights_only=True)
    except Exception as err:  # any file that does not load as plain tensors/lists is rebuilt, whatever the reason
        reason = f"it cannot be read safely ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    else:
        reason = _problem(columns, vocab_size, max_length)
        if reason is None:
            return columns
    log.warning("token cache %s is unusable (%s); rebuilding it", path, reason)
    return None


def write_token_cache(path: Path, columns: dict[str, list]) -> None:
    """Save tokenised columns atomically (a reader never sees half a cache)."""
    buffer = io.BytesIO()
    torch.save(columns, buffer)
    atomic_write_bytes(path, buffer.getvalue())
