"""AttrCloak's settings as values, parsed once from the ``au_*`` keys (a dict or a RecBole
``Config``): the mode, the retention strategy, the α_u solver, the optimiser and the stop rule."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from recbole_attrcloak.losses import FIXED_SOLVERS, Solver


class Mode(StrEnum):
    """``au_mode``: data-dependent (reads the training interactions) or data-free."""

    DD = "dd"
    DF = "df"


class Objective(StrEnum):
    """``au_objective``: the leakage objective. ``relabel`` (default): every critic's statistic
    at what a random relabeling of the same users shows (``losses.RelabelingNull``);
    ``gaussian``: the Gaussian MI bound with the ``au_covariance``/``au_target`` keys (the
    default before relabel); ``paper``: the paper as printed (Eq. 14 covariances with an
    absolute ridge, pushed towards 0, Eq. 26 on the raw gradients)."""

    RELABEL = "relabel"
    GAUSSIAN = "gaussian"
    PAPER = "paper"


class DDRetention(StrEnum):
    """``au_dd_retention``: the DD retention loss."""

    RANKING = "ranking"
    TRAIN_LOSS = "train_loss"


class RetentionKind(StrEnum):
    """The retention strategy a run uses (``engine.retention``): DF always keeps the distance
    to the original representations; DD keeps the ranking or the training loss."""

    DISTANCE = "distance"
    RANKING = "ranking"
    TRAIN_LOSS = "train_loss"


@dataclass(frozen=True)
class StopRule:
    """When a run stops: the target met (checked every step), L_AU stalled for ``patience``
    steps (relative fall below ``tol``), or ``max_steps``. Stalls and learning-rate halvings
    are checked every ``check_every`` steps."""

    max_steps: int
    check_every: int
    tol: float
    patience: int
    halve_lr: bool = True  # halve the learning rates after a check without progress

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> StopRule:
        """From ``au_max_steps``, ``au_check_every``, ``au_tol`` and ``au_patience``."""
        return cls(
            max_steps=int(settings["au_max_steps"]),
            check_every=int(settings["au_check_every"]),
            tol=float(settings["au_tol"]),
            patience=int(settings["au_patience"]),
        )

    def stalled(self, trace: Sequence[float]) -> bool:
        """L_AU (``trace``, one value per step) has not fallen by ``tol`` (relative) for
        ``patience`` steps."""
        best, best_step = math.inf, 0
        for step, value in enumerate(trace):
            if value < best * (1.0 - self.tol):
                best, best_step = value, step
        return len(trace) - best_step > self.patience


@dataclass(frozen=True)
class AttrCloakSettings:
    """Everything about an AttrCloak run except the leakage objective's own keys (which
    ``RelabelingNull.from_settings`` / ``GaussianMIBound.from_settings`` read).

    The ``relabel`` objective has its own optimisation recipe: normalised SGD steps that move
    the user side by ``au_relabel_step`` of its size along α·ĝ_AU + (1 − α)·ĝ_R (unit
    gradients, a conflicting ĝ_R projected off ĝ_AU; α = ``au_relabel_alpha_dd`` or
    ``au_relabel_alpha_df`` by mode), stalls (and, with ``au_relabel_halve``, learning-rate
    halvings) checked every ``au_relabel_check_every`` steps (its statistics are noisier than
    the Gaussian bound's).
    The other objectives keep ``au_learner``, ``au_learning_rate`` and ``au_solver`` (today's
    and the paper's recipes, unchanged)."""

    mode: Mode
    objective: Objective
    dd_retention: DDRetention
    dd_topk: int
    dd_pairs: int  # ranking retention: sampled pairs per user and step
    solver: Solver
    fixed_alpha: float | None  # α_u of the fixed solver, else None
    learner: str
    learning_rate: float
    relative_lr: bool
    normalize_step: bool
    stop: StopRule
    adapt_step: bool = False  # relabel: halve the step after a step that turned back

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> AttrCloakSettings:
        """Parse the ``au_*`` keys; an unknown mode, objective, retention or solver raises
        ValueError. The ``paper`` objective runs the paper's solver."""
        objective = Objective(settings["au_objective"])
        common = {
            "mode": Mode(settings["au_mode"]),
            "objective": objective,
            "dd_retention": DDRetention(settings["au_dd_retention"]),
            "dd_topk": int(settings["au_dd_topk"]),
            "dd_pairs": int(settings["au_dd_pairs"]),
            "stop": StopRule.from_settings(settings),
        }
        if objective == Objective.RELABEL:
            stop = common.pop("stop")
            return cls(
                **common,
                stop=replace(
                    stop,
                    check_every=int(settings["au_relabel_check_every"]),
                    halve_lr=bool(settings["au_relabel_halve"]),
                ),
                solver=Solver.FIXED_PROJECTED,
                fixed_alpha=float(settings[f"au_relabel_alpha_{common['mode'].value}"]),
                learner="sgd",
                learning_rate=float(settings["au_relabel_step"]),
                relative_lr=True,
                normalize_step=True,
                adapt_step=bool(settings["au_relabel_adapt"]),
            )
        solver = Solver.PAPER if objective == Objective.PAPER else Solver(settings["au_solver"])
        return cls(
            **common,
            solver=solver,
            fixed_alpha=(float(settings["au_alpha"]) if solver in FIXED_SOLVERS else None),
            learner=str(settings["au_learner"]),
            learning_rate=float(settings["au_learning_rate"]),
            relative_lr=bool(settings["au_relative_lr"]),
            normalize_step=False,
        )

    @property
    def retention(self) -> RetentionKind:
        """The retention strategy of this mode."""
        if self.mode == Mode.DF:
            return RetentionKind.DISTANCE
        return RetentionKind(self.dd_retention.value)
