"""AttrCloak (Algorithm 1): fine-tune only the user side of a trained RecBole model, minimising
the Gaussian mutual-information bound L_AU balanced against a retention loss L_R with the
dual-objective weight α_u.

DD: L_R = the model's own ``calculate_loss`` on batches of RecBole's train loader.
DF: L_R = Σ_u ‖e_u − e_u⁰‖² to the original representations (Eq. 21); no interaction is read.

Runs on RecBole's ``Trainer`` through its hooks: ``_build_optimizer(params=...)`` gets the
user-side parameters, ``_train_epoch(loss_func=...)`` gets the dual-objective loss (the shared
base ``unlearning.base.UserSideTrainer``).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from recbole.data.interaction import Interaction
from tqdm import tqdm

from recbole_attrcloak.context import DefenceResult, RunContext
from recbole_attrcloak.losses import GaussianMIBound, flat_grad, solve_alpha
from recbole_attrcloak.registry import UserSide
from recbole_attrcloak.unlearning.base import UserSideTrainer, only_user_side, original_top_items

logger = logging.getLogger(__name__)


class _Steps:
    """A loader of exactly ``n`` batches for one ``_train_epoch`` call: the next batches of the
    train loader (cycling through new passes), or empty interactions in data-free mode."""

    def __init__(self, source: Iterable | None, n: int) -> None:
        self.source, self.n = source, n
        self._iter: Iterator | None = None

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Interaction]:
        for _ in range(self.n):
            if self.source is None:
                yield Interaction({})
                continue
            if self._iter is None:
                self._iter = iter(self.source)
            try:
                yield next(self._iter)
            except StopIteration:  # a new pass over the train loader
                self._iter = iter(self.source)
                yield next(self._iter)

    def next_chunk(self, n: int) -> _Steps:
        self.n = n
        return self


class AttrCloakTrainer(UserSideTrainer):
    """The user-side trainer whose per-batch loss is α_u-weighted L_AU + L_R."""

    def __init__(self, config, model, side: UserSide, bound: GaussianMIBound, mode: str) -> None:
        self.bound, self.mode = bound, mode
        super().__init__(
            config, model, side, config["au_learner"], float(config["au_learning_rate"])
        )
        self.bounds = (0.1 if mode == "df" else 0.0, 1.0)
        self.top_items = None
        if mode == "dd" and config["au_dd_retention"] == "ranking":
            self.top_items, _ = original_top_items(model, int(config["au_dd_topk"]))
        self.trace: dict[str, list[float]] = {"l_au": [], "l_r": [], "alpha_u": []}

    def retention_loss(self, reps: torch.Tensor, interaction: Interaction) -> torch.Tensor:
        if self.mode == "df":
            return ((reps[1:] - self.reference) ** 2).sum()
        if self.top_items is not None:
            return self.ranking_loss(interaction[self.model.USER_ID])
        loss = self.model.calculate_loss(interaction)
        return sum(loss) if isinstance(loss, tuple) else loss

    def ranking_loss(self, users: torch.Tensor) -> torch.Tensor:
        """BPR on the original model's ranking: for each user of the batch, one of its original
        top-k items against a random item outside them (``au_dd_retention: ranking``)."""
        top = self.top_items[users - 1]
        pick = torch.randint(top.shape[1], (len(users),), device=users.device)
        positives = top[torch.arange(len(users), device=users.device), pick]
        negatives = torch.randint(1, self.model.n_items, (len(users),), device=users.device)
        clash = (top == negatives[:, None]).any(1)
        negatives[clash] = top[clash, -1]  # rare; the weakest top item keeps the term finite
        pairs = torch.cat([positives, negatives])
        scores = self.model.predict(
            Interaction({self.model.USER_ID: users.repeat(2), self.model.ITEM_ID: pairs})
        )
        return -torch.nn.functional.logsigmoid(scores[: len(users)] - scores[len(users) :]).mean()

    def objective(self, interaction: Interaction) -> torch.Tensor:
        """Eq. 22 with α_u from Eq. 24–26 on the gradients w.r.t. the user-side parameters."""
        reps = self.side.compute(self.model)
        l_au = self.bound(reps)
        l_r = self.retention_loss(reps, interaction)
        g_au = flat_grad(l_au, self.user_params)
        g_r = flat_grad(l_r, self.user_params, retain_graph=False)
        weights = solve_alpha(
            g_au,
            g_r,
            solver=self.config["au_solver"],
            bounds=self.bounds,
            fixed_alpha=self.config["au_alpha"] if self.config["au_solver"] == "fixed" else None,
        )
        self.trace["l_au"].append(float(l_au.detach()))
        self.trace["l_r"].append(float(l_r.detach()))
        self.trace["alpha_u"].append(weights.alpha_u)
        combined = weights.w_au * g_au + weights.w_r * g_r
        # A linear surrogate whose gradient is exactly the combined gradient: the trainer's
        # backward pass then costs nothing instead of a third pass through both losses.
        return combined.dot(torch.cat([p.reshape(-1) for p in self.user_params]))

    def current_l_au(self) -> float:
        with torch.no_grad():
            return float(self.bound(self.side.compute(self.model)))

    def unlearn(self, train_data=None, show_progress: bool = False) -> dict[str, Any]:
        """Optimise until L_AU reaches its target, stalls, or ``au_max_steps`` steps."""
        cfg = self.config
        max_steps, chunk = int(cfg["au_max_steps"]), int(cfg["au_check_every"])
        patience, tol = int(cfg["au_patience"]), float(cfg["au_tol"])
        steps = _Steps(train_data if self.mode == "dd" else None, chunk)
        best, best_step, done, reason = math.inf, 0, 0, "max_steps"
        bar = tqdm(total=max_steps, desc="AttrCloak", ncols=100, disable=not show_progress)
        if self.bound.target != "zero":  # the random-label levels, once, from the original
            with torch.no_grad():
                self.bound.refresh_reference(self.side.compute(self.model))
        while done < max_steps:
            l_au = self.current_l_au()
            if l_au <= 0.0:
                reason = "target_reached"
                break
            if l_au < best * (1.0 - tol):
                best, best_step = l_au, done
            elif done - best_step >= patience:
                reason = "stalled"
                break
            n = min(chunk, max_steps - done)
            self._train_epoch(steps.next_chunk(n), done // chunk)
            done += n
            bar.update(n)
            logger.info(
                "AttrCloak step %d: L_AU %.4g  L_R %.4g  alpha_u %.3f",
                done,
                self.trace["l_au"][-1],
                self.trace["l_r"][-1],
                self.trace["alpha_u"][-1],
            )
        bar.close()
        return {"steps": done, "stop_reason": reason, "final_l_au": self.current_l_au()}


def run_attrcloak(ctx: RunContext) -> DefenceResult:
    """The ``--unlearn attrcloak`` defence: returns the unlearned copy and its report entry."""
    config = ctx.config
    model = copy.deepcopy(ctx.model)
    labels = {
        name: torch.as_tensor(lab.codes, dtype=torch.long, device=config["device"])
        for name, lab in ctx.attributes.items()
    }
    shrinkage = config["au_shrinkage"]
    bound = GaussianMIBound(
        labels,
        covariance=config["au_covariance"],
        shrinkage=shrinkage if shrinkage == "auto" else float(shrinkage),
        ridge=float(config["au_ridge"]),
        target=config["au_target"],
        n_permutations=int(config["au_permutations"]),
        target_ratio=float(config["au_target_ratio"]),
        min_class_size=int(config["au_min_class_size"]),
        seed=int(config["seed"]),
    )
    with only_user_side(model) as side:
        trainer = AttrCloakTrainer(config, model, side, bound, config["au_mode"])
        initial = trainer.current_l_au()
        outcome = trainer.unlearn(ctx.train_data, show_progress=bool(config["show_progress"]))
    info = {
        "mode": config["au_mode"],
        "solver": config["au_solver"],
        "initial_l_au": initial,
        **outcome,
        "dropped_classes": {k: list(v) for k, v in bound.dropped_classes.items()},
        "trace": trainer.trace,
    }
    return DefenceResult(model, info)
