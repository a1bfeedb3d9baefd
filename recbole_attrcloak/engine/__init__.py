"""The AttrCloak engine: the unlearning loop on plain tensors (pure torch, no RecBole, Ray or
scikit-learn import), callable on its own as in ``benchmarks/scale.py``.

    state   ``Unlearner``: user-side parameters, optimiser, kept state, trace
    step    ``Unlearner.step``: L_AU and L_R, α_u, one update
    stop    ``StopRule``: target met, stall, learning-rate halving, max steps
    L_R     ``DistanceRetention`` (DF), ``RankingRetention`` and ``TrainLossRetention`` (DD)
    L_AU    any ``losses.LeakageObjective`` (``losses.RelabelingNull``, ``losses.GaussianMIBound``)

The RecBole adapter (``unlearning.attrcloak``) builds these from the config and a model.
"""

from recbole_attrcloak.engine.build import OBJECTIVES, build_objective, table_unlearner
from recbole_attrcloak.engine.optim import OPTIMIZERS, build_optimizer, param_groups
from recbole_attrcloak.engine.retention import (
    DistanceRetention,
    RankingRetention,
    Retention,
    Space,
    TrainLossRetention,
    sample_outside,
)
from recbole_attrcloak.engine.settings import (
    AttrCloakSettings,
    DDRetention,
    Mode,
    Objective,
    RetentionKind,
    StopRule,
)
from recbole_attrcloak.engine.unlearner import Outcome, StopReason, Unlearner

__all__ = [
    "OBJECTIVES",
    "OPTIMIZERS",
    "AttrCloakSettings",
    "DDRetention",
    "DistanceRetention",
    "Mode",
    "Objective",
    "Outcome",
    "RankingRetention",
    "Retention",
    "RetentionKind",
    "Space",
    "StopReason",
    "StopRule",
    "TrainLossRetention",
    "Unlearner",
    "build_objective",
    "build_optimizer",
    "param_groups",
    "sample_outside",
    "table_unlearner",
]
