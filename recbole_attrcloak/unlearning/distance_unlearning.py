"""U2U-R and D2D-R (Li et al., ACM MM 2023; Chen et al., TOIS 2024): post-training, data-free
attribute unlearning with one fixed trade-off weight,

    L = mean over sensitive attributes of L_dist  +  λ · L_reg,

where L_dist is the user-to-user loss (mean squared distance between users of different
classes) or the distribution-to-distribution loss (MMD² between classes; exact, O(|U|²), or by
random Fourier features, O(|U|·D): ``d2d_estimator``), and L_reg keeps each
user's original top-N ranking (``du_regularizer: ranking``) or the original user
representations (``l2``). Only the user side of the model changes.

Runs on RecBole's ``Trainer`` through its hooks, like AttrCloak (shared base:
:class:`recbole_attrcloak.unlearning.base.UserSideTrainer`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from torch import Tensor, nn

from recbole_attrcloak.context import DefenceResult, RunContext
from recbole_attrcloak.keys import Regularizer, check_values, with_prefix
from recbole_attrcloak.losses import MMDEstimator, d2d_loss, u2u_loss
from recbole_attrcloak.registry import UserSide
from recbole_attrcloak.unlearning.base import (
    UserSideTrainer,
    only_user_side,
    original_top_items,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistanceMethod:
    """U2U-R or D2D-R: its name, the config key of its weight λ, and its distinguishability
    term of one attribute (``labels``: class codes, -1 unknown; ``pairs``: the number of
    cross-class user pairs; ``options``: the MMD estimator's keyword arguments)."""

    name: str
    label: str
    weight_key: str
    term: Callable[[Tensor, Tensor, int, Mapping[str, Any]], Tensor]


METHODS: dict[str, DistanceMethod] = {
    m.name: m
    for m in (
        DistanceMethod(
            "u2u", "U2U-R", "u2u_lambda", lambda reps, lab, pairs, _: u2u_loss(reps, lab) / pairs
        ),
        DistanceMethod(
            "d2d",
            "D2D-R",
            "d2d_lambda",
            lambda reps, lab, _, options: d2d_loss(reps, lab, **options),
        ),
    )
}


def check_distance_config(config, method: DistanceMethod) -> None:
    """Check the U2U-R/D2D-R keys (``keys.KEYS``: the method's own and the shared ``du_``
    ones); raise ``ValueError`` with a one-line message."""
    check_values(config, with_prefix(f"{method.name}_", "du_"))


def mmd_options(config) -> dict[str, Any]:
    """D2D's MMD estimator keyword arguments (``d2d_loss``) from the config; the RFF generator is
    seeded with the run's seed and advances on every call (fresh features each step)."""
    estimator = MMDEstimator(config["d2d_estimator"])
    if estimator is MMDEstimator.EXACT:
        return {"estimator": estimator}
    generator = torch.Generator().manual_seed(int(config["seed"]))
    return {
        "estimator": estimator,
        "n_features": int(config["d2d_features"]),
        "generator": generator,
    }


def cross_class_pairs(codes: np.ndarray) -> int:
    """Unordered pairs of users with known, different classes (the terms of ``u2u_loss``)."""
    counts = np.bincount(codes[codes >= 0])
    return int((counts.sum() ** 2 - (counts**2).sum()) // 2)


def _gaps(scores: Tensor) -> Tensor:
    """Score gaps between consecutive ranks."""
    return scores[:, :-1] - scores[:, 1:]


class DistanceUnlearningTrainer(UserSideTrainer):
    """U2U-R / D2D-R: full-batch steps on all users of L_dist + λ·L_reg, no interaction read."""

    def __init__(
        self,
        config,
        model: nn.Module,
        side: UserSide,
        labels: dict[str, Tensor],
        method: DistanceMethod,
    ) -> None:
        super().__init__(
            config, model, side, config["du_learner"], float(config["du_learning_rate"])
        )
        self.labels, self.method = labels, method
        self.weight = float(config[method.weight_key])
        self.regularizer_name = Regularizer(config["du_regularizer"])
        self.pairs = {n: cross_class_pairs(lab.cpu().numpy()) for n, lab in labels.items()}
        self.mmd = mmd_options(config) if method.name == "d2d" else {}
        if self.regularizer_name == Regularizer.RANKING:
            self.top_items, top_scores = original_top_items(model, int(config["du_topn"]))
            self.original_gaps = _gaps(top_scores)
        self.trace: dict[str, list[float]] = {"distinguishability": [], "regularizer": []}

    def distinguishability(self, reps: Tensor) -> Tensor:
        """Mean over attributes of the mean cross-class squared distance (U2U) or of the mean
        pairwise-class MMD² (D2D)."""
        terms = [
            self.method.term(reps, lab, self.pairs[n], self.mmd) for n, lab in self.labels.items()
        ]
        return torch.stack(terms).mean()

    def regularizer(self, reps: Tensor) -> Tensor:
        """Ranking: mean over users and consecutive positions k of the margin loss
        max(0, g⁰_k − g_k), g_k = s_k − s_{k+1} the score gap between the k-th and (k+1)-th of
        the user's original top-N items (scored by the model, item side frozen), g⁰_k the
        original gap: zero while no gap shrinks, so the original model is its minimum.
        L2: mean over users of ‖e_u − e_u⁰‖²."""
        if self.regularizer_name == Regularizer.L2:
            return (reps[1:] - self.reference).square().sum(1).mean()
        n_users, top_n = self.top_items.shape
        users = torch.arange(1, n_users + 1, device=self.top_items.device)
        pairs = Interaction(
            {
                self.model.USER_ID: users.repeat_interleave(top_n),
                self.model.ITEM_ID: self.top_items.reshape(-1),
            }
        )
        scores = self.model.predict(pairs).view(n_users, top_n)
        return F.relu(self.original_gaps - _gaps(scores)).mean()

    def objective(self, interaction: Interaction) -> Tensor:
        self.model.eval()  # _train_epoch switched to train mode; scores must not use dropout
        reps = self.side.compute(self.model)
        dist, reg = self.distinguishability(reps), self.regularizer(reps)
        self.trace["distinguishability"].append(dist.item())
        self.trace["regularizer"].append(reg.item())
        return dist + self.weight * reg

    @torch.no_grad()
    def losses(self) -> tuple[float, float]:
        """Current (L_dist, L_reg)."""
        self.model.eval()
        reps = self.side.compute(self.model)
        return float(self.distinguishability(reps)), float(self.regularizer(reps))

    def unlearn(self, steps: int, show_progress: bool = False) -> dict[str, Any]:
        """``steps`` full-batch optimisation steps (data-free: the batches are empty)."""
        self._train_epoch([Interaction({})] * steps, 0, show_progress=show_progress)
        dist, reg = self.losses()
        logger.info(
            "%s after %d steps: L_dist %.4g  L_reg %.4g", self.method.label, steps, dist, reg
        )
        return {"steps": steps, "final_distinguishability": dist, "final_regularizer": reg}


def run_distance_unlearning(ctx: RunContext, method: DistanceMethod) -> DefenceResult:
    """U2U-R or D2D-R on a copy of ``ctx.model``; returns it with its report entry."""
    config = ctx.config
    check_distance_config(config, method)
    model = copy.deepcopy(ctx.model)
    labels = {
        name: torch.as_tensor(lab.codes, dtype=torch.long, device=config["device"])
        for name, lab in ctx.attributes.items()
    }
    with only_user_side(model) as side:
        trainer = DistanceUnlearningTrainer(config, model, side, labels, method)
        initial_dist, initial_reg = trainer.losses()
        outcome = trainer.unlearn(int(config["du_steps"]), bool(config["show_progress"]))
    info = {
        "method": method.label,
        "lambda": trainer.weight,
        "regularizer": trainer.regularizer_name.value,
        "top_n": int(config["du_topn"]),
        "learning_rate": float(config["du_learning_rate"]),
        **_estimator_info(trainer.mmd),
        "initial_distinguishability": initial_dist,
        "initial_regularizer": initial_reg,
        **outcome,
        "trace": trainer.trace,
    }
    return DefenceResult(model, info)


def _estimator_info(options: Mapping[str, Any]) -> dict[str, Any]:
    """The MMD estimator for the report (D2D only)."""
    if not options:
        return {}
    return {"estimator": options["estimator"].value, "n_features": options.get("n_features")}


def run_u2u(ctx: RunContext) -> DefenceResult:
    """``--unlearn u2u``: U2U-R."""
    return run_distance_unlearning(ctx, METHODS["u2u"])


def run_d2d(ctx: RunContext) -> DefenceResult:
    """``--unlearn d2d``: D2D-R."""
    return run_distance_unlearning(ctx, METHODS["d2d"])
