"""What a study's trials mean, stored in the study: a re-run or another worker with another configuration or budget
is refused, naming the keys that differ, instead of mixing two experiments' trials in one table.

The fingerprint is the resolved trial config (every config file and ``--section.key`` override, as LightningCLI
reads them) plus the settings that change what a trial's value means (the metric, the space, evaluation options).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna

from helu_lightning.search.options import SearchSetupError

__all__ = ["FINGERPRINT_ATTR", "check_fingerprint", "differences"]

FINGERPRINT_ATTR = "fingerprint"
SHOWN = 6  # differing keys named in the message; the rest are counted


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists, keys strings), so stored and fresh compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def differences(stored: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[str]:
    """``key: <stored> there, <fresh> now`` for every dotted key whose value differs (absent keys included)."""
    old, new = _flat(_plain(stored)), _flat(_plain(fresh))
    lines = []
    for key in sorted(old.keys() | new.keys()):
        if old.get(key, ...) != new.get(key, ...):
            there = json.dumps(old[key]) if key in old else "absent"
            now = json.dumps(new[key]) if key in new else "absent"
            lines.append(f"{key}: {there} there, {now} now")
    return lines


def check_fingerprint(study: optuna.Study, fingerprint: Mapping[str, Any], where: str, fix: str) -> None:
    """Store ``fingerprint`` in a study that has none; refuse one that holds another (SearchSetupError naming up to
    six differing keys, ``where`` the study lives and the ``fix``)."""
    fresh = _plain(fingerprint)
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    if stored is None:
        study.set_user_attr(FINGERPRINT_ATTR, fresh)
        return
    changed = differences(stored, fresh)
    if not changed:
        return
    more = f"; and {len(changed) - SHOWN} more" if len(changed) > SHOWN else ""
    raise SearchSetupError(f"{where} was made with another configuration or budget ({'; '.join(changed[:SHOWN])}"
                           f"{more}); its trials would not be comparable with new ones: {fix}")
