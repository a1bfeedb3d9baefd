"""AttrCloak (Algorithm 1): fine-tune only the user side of a trained RecBole model, minimising
the Gaussian mutual-information bound L_AU balanced against a retention loss L_R with the
dual-objective weight α_u.

DF: L_R = Σ_u ‖e_u − e_u⁰‖² to the original representations (Eq. 21); no interaction is read.
DD, ``au_dd_retention: ranking`` (default): every user's original ranking of the items it has not
trained on (BPR on its original top-k against other unseen items), together with Eq. 21's
distance; the training interactions are read only to mask each user's training items.
DD, ``au_dd_retention: train_loss`` (the paper's Eq. 20): the model's own ``calculate_loss`` on
batches of RecBole's train loader.

The run stops at the first state where every term of L_AU is within ``au_target_tol`` of its
target and keeps that state (the state closest to the target if none gets there).

Runs on RecBole's ``Trainer`` through its hooks: ``_build_optimizer(params=...)`` gets the
user-side parameters, ``_train_epoch(loss_func=...)`` gets the dual-objective loss (the shared
base ``unlearning.base.UserSideTrainer``).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from recbole.data.interaction import Interaction
from tqdm import tqdm

from recbole_attrcloak.context import DefenceResult, RunContext
from recbole_attrcloak.losses import GaussianMIBound, flat_grad, solve_alpha
from recbole_attrcloak.registry import UserSide
from recbole_attrcloak.unlearning.base import UserSideTrainer, only_user_side, original_top_items

logger = logging.getLogger(__name__)

# Ranking retention: pairs per user and step, and uniform draws per negative.
_PAIRS_PER_USER = 64
_NEGATIVE_TRIES = 8


class _Steps:
    """A loader of at most ``n`` batches for one ``_train_epoch`` call, ending early once
    ``stop()`` holds: the next batches of the train loader (cycling through new passes), or
    empty interactions when the retention reads no batch."""

    def __init__(self, source: Iterable | None, stop: Callable[[], bool]) -> None:
        self.source, self.stop, self.n = source, stop, 0
        self._iter: Iterator | None = None

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Interaction]:
        for _ in range(self.n):
            if self.stop():
                return
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


def training_history(train_data, model) -> torch.Tensor:
    """Each real user's training items as a bool matrix (n_users − 1, n_items), the padding
    item included (never a candidate)."""
    matrix = train_data._dataset.inter_matrix(form="coo")
    history = torch.zeros(model.n_users, model.n_items, dtype=torch.bool, device=model.device)
    history[torch.as_tensor(matrix.row), torch.as_tensor(matrix.col)] = True
    history[:, 0] = True
    return history[1:]


def sample_outside(
    excluded: torch.Tensor, rows: torch.Tensor, tries: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One random item for each of ``rows`` outside that row of ``excluded`` (bool, users ×
    n_items): the first of ``tries`` uniform draws that is allowed (the last draw if none is,
    which is rare)."""
    shape = (len(rows), tries)
    draws = torch.randint(1, excluded.shape[1], shape, generator=generator, device=rows.device)
    allowed = ~excluded[rows[:, None], draws]
    allowed[:, -1] = True
    return draws.gather(1, allowed.int().argmax(1, keepdim=True)).squeeze(1)


def _unit(grad: torch.Tensor) -> torch.Tensor:
    norm = float(grad.norm())
    return grad / norm if norm > 0.0 else grad


class AttrCloakTrainer(UserSideTrainer):
    """The user-side trainer whose per-batch loss is α_u-weighted L_AU + L_R."""

    def __init__(
        self, config, model, side: UserSide, bound: GaussianMIBound, mode: str, train_data=None
    ) -> None:
        self.bound, self.mode = bound, mode
        super().__init__(
            config,
            model,
            side,
            config["au_learner"],
            float(config["au_learning_rate"]),
            relative_lr=bool(config["au_relative_lr"]),
        )
        self.bounds = (0.1 if mode == "df" else 0.0, 1.0)
        self.ranking = mode == "dd" and config["au_dd_retention"] == "ranking"
        if self.ranking:
            history = training_history(train_data, model)
            self.top_items, _ = original_top_items(model, int(config["au_dd_topk"]), history)
            self.excluded = history.scatter(1, self.top_items, True)
        if bound.target != "zero":  # the random-label levels, once, from the original
            with torch.no_grad():
                bound.refresh_reference(side.compute(model))
        self.trace: dict[str, list[float]] = {"l_au": [], "excess": [], "l_r": [], "alpha_u": []}
        # The user-side parameters of the state closest to the target so far (the first that
        # met it, once one has), its step and its distance (see ``distance_to_target``).
        self.kept: list[torch.Tensor] | None = None
        self.kept_step, self.kept_distance = -1, math.inf
        self.reached = False
        self.generator = torch.Generator(device=model.device).manual_seed(int(config["seed"]))

    def distance(self, reps: torch.Tensor) -> torch.Tensor:
        """Eq. 21: Σ_u ‖e_u − e_u⁰‖²."""
        return (reps[1:] - self.reference).square().sum()

    def ranking_loss(self) -> torch.Tensor:
        """BPR on the original ranking: for every user, ``_PAIRS_PER_USER`` pairs of one of its
        original top-k items outside its training items against a random item that is neither."""
        users = torch.arange(1, self.model.n_users, device=self.model.device)
        users = users.repeat(_PAIRS_PER_USER)
        rows = users - 1
        pick = torch.randint(
            self.top_items.shape[1], (len(users),), generator=self.generator, device=users.device
        )
        positives = self.top_items[rows, pick]
        negatives = sample_outside(self.excluded, rows, _NEGATIVE_TRIES, self.generator)
        scores = self.model.predict(
            Interaction(
                {
                    self.model.USER_ID: users.repeat(2),
                    self.model.ITEM_ID: torch.cat([positives, negatives]),
                }
            )
        )
        return -torch.nn.functional.logsigmoid(scores[: len(users)] - scores[len(users) :]).mean()

    def retention(self, reps: torch.Tensor, interaction: Interaction) -> tuple[float, torch.Tensor]:
        """DD: L_R and its gradient w.r.t. the user-side parameters (L_Rec is no function of the
        representation alone). Ranking: the sum of the unit gradients of the ranking loss and of
        Eq. 21's distance (the ranking loss alone constrains only the few directions the sampled
        pairs see)."""
        if self.ranking:
            loss = self.ranking_loss()
            g_rank = flat_grad(loss, self.user_params)
            g_dist = flat_grad(self.distance(reps), self.user_params)
            return float(loss.detach()), _unit(g_rank) + _unit(g_dist)
        loss = self.model.calculate_loss(interaction)
        loss = sum(loss) if isinstance(loss, tuple) else loss
        return float(loss.detach()), flat_grad(loss, self.user_params)

    def objective(self, interaction: Interaction) -> torch.Tensor:
        """Eq. 22 with α_u from Eq. 24–26. DF: on the gradients w.r.t. the user representation
        (Eq. 24's ∇_em'; one backward pass through the model per step), DD: w.r.t. the
        user-side parameters."""
        self.model.eval()  # _train_epoch switched to train mode; scores must not use dropout
        reps = self.side.compute(self.model)
        free = reps.detach().requires_grad_()
        l_au = self.bound(free)
        (g_au,) = torch.autograd.grad(l_au, free)
        if self.mode == "df":  # Eq. 21 and its gradient 2(e − e⁰) in closed form
            g_r = torch.zeros_like(free)
            drift = torch.sub(free.detach()[1:], self.reference, out=g_r[1:])
            l_r, surrogate = float(drift.reshape(-1) @ drift.reshape(-1)), reps
            g_r.mul_(2.0)
        else:
            g_au = flat_grad((reps * g_au).sum(), self.user_params)
            l_r, g_r = self.retention(reps, interaction)
            surrogate = torch.cat([p.reshape(-1) for p in self.user_params])
        weights = solve_alpha(
            g_au,
            g_r,
            solver=self.config["au_solver"],
            bounds=self.bounds,
            fixed_alpha=self.config["au_alpha"] if self.config["au_solver"] == "fixed" else None,
        )
        self.trace["l_au"].append(float(l_au.detach()))
        if self.bound.target != "zero":
            self.trace["excess"].append(self.bound.max_excess)
        self.trace["l_r"].append(l_r)
        self.trace["alpha_u"].append(weights.alpha_u)
        distance = self.distance_to_target(float(l_au.detach()))
        if distance < self.kept_distance:
            if self.kept is None:
                self.kept = [p.detach().clone() for p in self.user_params]
            else:  # in place: no second copy of the user side at any time
                for kept, param in zip(self.kept, self.user_params, strict=True):
                    kept.copy_(param.detach())
            self.kept_step, self.kept_distance = len(self.trace["l_au"]) - 1, distance
            self.reached = distance <= self.tolerance
        # A linear surrogate whose gradient w.r.t. the user-side parameters is exactly the
        # combined step (formed in place): the trainer's backward pass is then the only one
        # through the model.
        step = g_au.mul_(weights.w_au).add_(g_r, alpha=weights.w_r)
        return torch.dot(step.reshape(-1), surrogate.reshape(-1))

    def distance_to_target(self, l_au: float) -> float:
        """How far the state just scored is from the target: the largest relative excess of a
        term over its target (``random_labels``), or L_AU itself (``zero``)."""
        return l_au if self.bound.target == "zero" else self.bound.max_excess

    @property
    def tolerance(self) -> float:
        """The target is met at a distance at or below this."""
        return 0.0 if self.bound.target == "zero" else float(self.config["au_target_tol"])

    def stalled(self) -> bool:
        """L_AU has not fallen by ``au_tol`` (relative) for ``au_patience`` steps."""
        trace, tol = self.trace["l_au"], float(self.config["au_tol"])
        best, best_step = math.inf, 0
        for step, value in enumerate(trace):
            if value < best * (1.0 - tol):
                best, best_step = value, step
        return len(trace) - best_step > int(self.config["au_patience"])

    def unlearn(self, train_data=None, show_progress: bool = False) -> dict[str, Any]:
        """Optimise until the target is met, L_AU stalls, or ``au_max_steps`` steps, and keep
        the state closest to the target (the first that met it). The learning rates halve after
        every ``au_check_every`` steps that brought the state no closer: a constant step makes
        the state circle the target at a distance set by the step size."""
        max_steps, chunk = int(self.config["au_max_steps"]), int(self.config["au_check_every"])
        batches = train_data if self.mode == "dd" and not self.ranking else None
        steps = _Steps(batches, lambda: self.reached)
        reason = "max_steps"
        bar = tqdm(total=max_steps, desc="AttrCloak", ncols=100, disable=not show_progress)
        while len(self.trace["l_au"]) < max_steps:
            done, closest = len(self.trace["l_au"]), self.kept_distance
            self._train_epoch(steps.next_chunk(min(chunk, max_steps - done)), done // chunk)
            bar.update(len(self.trace["l_au"]) - done)
            logger.info(
                "AttrCloak step %d: L_AU %.4g  L_R %.4g  alpha_u %.3f",
                len(self.trace["l_au"]),
                self.trace["l_au"][-1],
                self.trace["l_r"][-1],
                self.trace["alpha_u"][-1],
            )
            if self.reached:
                reason = "target_reached"
                break
            if self.stalled():
                reason = "stalled"
                break
            if self.kept_distance >= closest:
                for group in self.optimizer.param_groups:
                    group["lr"] /= 2.0
        bar.close()
        with torch.no_grad():
            for param, value in zip(self.user_params, self.kept, strict=True):
                param.copy_(value)
            final = float(self.bound(self.side.compute(self.model)))
        return {"steps": self.kept_step, "stop_reason": reason, "final_l_au": final}


def run_attrcloak(ctx: RunContext) -> DefenceResult:
    """The ``--unlearn attrcloak`` defence: returns the unlearned copy and its report entry."""
    config = ctx.config
    model = copy.deepcopy(ctx.model)
    labels = {
        name: torch.as_tensor(lab.codes, dtype=torch.long, device=config["device"])
        for name, lab in ctx.attributes.items()
    }
    bound = GaussianMIBound.from_settings(labels, config, int(config["seed"]))
    with only_user_side(model) as side:
        trainer = AttrCloakTrainer(config, model, side, bound, config["au_mode"], ctx.train_data)
        with torch.no_grad():
            initial = float(bound(side.compute(model)))
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
