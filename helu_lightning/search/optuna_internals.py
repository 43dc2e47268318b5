"""The one place this package reaches into Optuna's private attributes, and why no public call does the job.

``fail_dead_local_trials`` must fail a RUNNING trial that a dead process on this host left behind, exactly as
Optuna's own ``optuna.storages.fail_stale_trials`` fails a trial whose heartbeat stopped: by a state change in the
storage (``study._storage``, addressed by ``trial._trial_id``) and then the storage's retry callback, which takes
the trial as stored. The public ``study.tell(number, state=FAIL)`` is meant for this process's own trials: it runs
this worker's sampler hooks for a trial another worker sampled, and journal storages have no heartbeat for
``fail_stale_trials`` to act on.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["fail_running_trial"]


def fail_running_trial(study: optuna.Study, trial: FrozenTrial) -> FrozenTrial | None:
    """Set ``trial`` (RUNNING) to FAIL in the storage; the trial as stored after, or None when another worker
    finished or failed it first."""
    storage = study._storage
    try:
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None  # another worker failed it first
    return storage.get_trial(trial._trial_id)
