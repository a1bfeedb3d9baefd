"""One code path for Ray 2.6.3 (RecBole 1.2.1's pin: the pinned stack) and current Ray 2.x
(constraints-current.txt); the runner imports these names instead of Ray's.

What moved between the two, and what this module hands the runner instead:

- ``RunConfig`` and ``FailureConfig``: ``ray.air`` in 2.6, ``ray.tune`` now (``ray.air``'s are
  deprecated aliases);
- reporting a trial's metrics: ``ray.air.session.report`` in 2.6 (``ray.air.session`` is gone
  now), ``ray.tune.report`` now (2.6 has a ``tune.report`` too, the legacy function API that a
  ``Tuner`` does not read);
- keeping trials in the driver's working directory: ``TuneConfig(chdir_to_trial_dir=False)``
  in 2.6, the ``RAY_CHDIR_TO_TRIAL_DIR=0`` variable now (the argument raises).
"""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():  # Ray 2.6 imports the deprecated pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    from ray import tune

#: True on Ray releases whose Tune has its own run configuration (current Ray), False on 2.6.
TUNE_OWNS_RUN_CONFIG: bool = hasattr(tune, "RunConfig")

if TUNE_OWNS_RUN_CONFIG:
    from ray.tune import FailureConfig, RunConfig
    from ray.tune import report as _report
else:  # Ray 2.6
    from ray.air import FailureConfig, RunConfig
    from ray.air.session import report as _report

#: Set while ``Tuner.fit`` runs: Tune forwards it to the trial processes (current Ray).
FIT_ENVIRONMENT: dict[str, str] = {"RAY_CHDIR_TO_TRIAL_DIR": "0"}

__all__ = [
    "FIT_ENVIRONMENT",
    "FailureConfig",
    "RunConfig",
    "TUNE_OWNS_RUN_CONFIG",
    "report",
    "tune_config",
]


def report(metrics: dict[str, Any]) -> None:
    """Report a finished trial's metrics to Tune (one result per trial, no checkpoint)."""
    _report(metrics)


def tune_config(**kwargs: Any) -> tune.TuneConfig:
    """``tune.TuneConfig(**kwargs)`` with trials kept in the driver's working directory."""
    if not TUNE_OWNS_RUN_CONFIG:
        kwargs["chdir_to_trial_dir"] = False
    return tune.TuneConfig(**kwargs)
