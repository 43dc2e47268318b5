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


def _problem(columns: Any) -> str | None:
    """What makes ``columns`` unlike tokenised columns (equal-length lists incl. input_ids and idx), or None."""
    if not isinstance(columns, dict) or not {"input_ids", "idx"} <= columns.keys():
        return "it does not hold the input_ids and idx columns"
    if not all(isinstance(key, str) and isinstance(value, list) for key, value in columns.items()):
        return "its columns are not lists"
    lengths = {len(value) for value in columns.values()}
    if len(lengths) != 1 or lengths == {0}:
        return f"its columns have lengths {sorted(lengths)}"
    return None


def read_token_cache(path: Path) -> dict[str, list] | None:
    """The tokenised columns cached at ``path``, or None (with a warning naming it) when it is unusable."""
    if not path.is_file():
        return None
    try:
        columns = torch.load(path, weights_only=True)
    except Exception as err:  # any file that does not load as plain tensors/lists is rebuilt, whatever the reason
        reason = f"it cannot be read safely ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    else:
        reason = _problem(columns)
        if reason is None:
            return columns
    log.warning("token cache %s is unusable (%s); rebuilding it", path, reason)
    return None


def write_token_cache(path: Path, columns: dict[str, list]) -> None:
    """Save tokenised columns atomically (a reader never sees half a cache)."""
    buffer = io.BytesIO()
    torch.save(columns, buffer)
    atomic_write_bytes(path, buffer.getvalue())
