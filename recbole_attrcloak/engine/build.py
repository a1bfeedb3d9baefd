"""Build the engine's parts from settings, for any caller (the RecBole adapter, the scale
benchmark, tests): the leakage objective of ``au_objective`` and a data-free unlearner of a
plain user table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from recbole_attrcloak.engine.optim import build_optimizer, param_groups
from recbole_attrcloak.engine.retention import DistanceRetention
from recbole_attrcloak.engine.settings import AttrCloakSettings, Objective
from recbole_attrcloak.engine.unlearner import Unlearner
from recbole_attrcloak.losses import (
    Covariance,
    GaussianMIBound,
    LeakageObjective,
    RelabelingNull,
    Target,
)

#: The Gaussian bound's own keys (``GaussianMIBound.from_settings``).
GAUSSIAN_KEYS = (
    "au_covariance",
    "au_shrinkage",
    "au_ridge",
    "au_target",
    "au_permutations",
    "au_target_ratio",
    "au_target_tol",
    "au_min_class_size",
)


def _paper_bound(labels: Mapping[str, Tensor], settings: Mapping[str, Any], seed: int):
    """The paper as printed: Eq. 14 covariances with a constant ridge, L_AU pushed towards 0."""
    chosen = {key: settings[key] for key in GAUSSIAN_KEYS}
    chosen |= {"au_covariance": Covariance.PAPER, "au_target": Target.ZERO, "au_ridge": 1e-4}
    return GaussianMIBound.from_settings(labels, chosen, seed)


#: How each ``au_objective`` is built from the attributes' codes (per representation row, −1
#: unknown), the ``au_*`` settings and a seed.
OBJECTIVES: dict[Objective, Callable[..., LeakageObjective]] = {
    Objective.RELABEL: RelabelingNull.from_settings,
    Objective.GAUSSIAN: GaussianMIBound.from_settings,
    Objective.PAPER: _paper_bound,
}


def build_objective(
    labels: Mapping[str, Tensor],
    settings: Mapping[str, Any],
    seed: int,
    blocks: Sequence[int] = (),
) -> LeakageObjective:
    """The leakage objective that ``settings['au_objective']`` names; ``blocks``: the widths
    of the representation's column blocks, which the relabel objective also scores one by one
    under ``au_block_critics``."""
    objective = Objective(settings["au_objective"])
    if objective is Objective.RELABEL:
        return RelabelingNull.from_settings(labels, settings, seed, blocks)
    return OBJECTIVES[objective](labels, settings, seed)


def table_unlearner(
    table: Tensor, objective: LeakageObjective, settings: AttrCloakSettings
) -> Unlearner:
    """AttrCloak-DF on a plain user table: ``table`` (a leaf tensor that requires grad) is both
    the parameter and the representation; its current value is the original."""
    groups = param_groups([table], settings.learning_rate, settings.relative_lr)
    optimizer = build_optimizer(settings.learner, groups, settings.learning_rate)
    with torch.no_grad():
        reference = table.detach().clone()
    return Unlearner(
        lambda: table,
        [table],
        objective,
        DistanceRetention(reference),
        optimizer,
        settings.stop,
        solver=settings.solver,
        fixed_alpha=settings.fixed_alpha,
        normalize_step=settings.normalize_step,
        adapt_step=settings.adapt_step,
    )
