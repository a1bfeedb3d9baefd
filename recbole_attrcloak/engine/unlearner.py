"""AttrCloak's loop (Algorithm 1): the unlearning state, one step, and the stop rule.

A step scores the current state with the leakage objective L_AU and the retention L_R, chooses
α_u from their gradients (Eq. 24–26, ``losses.solve_alpha``), records the state (kept when it is
the closest to the target so far) and moves the user-side parameters along
w_au·∇L_AU + w_r·∇L_R with the optimiser. In representation space (DF) the direction is
back-propagated through the representation (one backward pass through the model per step); in
parameter space (DD) it is the parameters' gradient.

The run stops at the first state that meets the target, when L_AU stalls, or after
``max_steps``, and ends on the kept state. Every ``check_every`` steps that brought the state no
closer to the target halve the learning rates: a constant step makes the state circle the
target at a distance set by the step size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from recbole_attrcloak.engine.retention import Retention, Space
from recbole_attrcloak.engine.settings import StopRule
from recbole_attrcloak.losses import LeakageObjective, Solver, TermReport, flat_grad, solve_alpha

logger = logging.getLogger(__name__)

TURN = 0.5  # adapt_step: successive directions at a cosine below −TURN turned back


class StopReason(StrEnum):
    """Which rule ended a run."""

    TARGET_REACHED = "target_reached"
    STALLED = "stalled"
    MAX_STEPS = "max_steps"


@dataclass
class Outcome:
    """The result of :meth:`Unlearner.run`; the parameters hold the kept state."""

    initial: float  # L_AU of the original state
    final: float  # L_AU of the kept state
    kept_step: int  # the step whose state was kept (0-based)
    steps_run: int
    stop_reason: StopReason
    terms: list[TermReport]  # every term of L_AU at the kept state against its target
    trace: dict[str, list[float]] = field(default_factory=dict)


class Unlearner:
    """The state of one AttrCloak run on the user-side parameters ``params``.

    ``representation()`` computes all users' representations (n_users, d) from ``params`` with
    autograd; ``objective`` is L_AU (``losses.LeakageObjective``), ``retention`` the retention
    strategy (``engine.retention``), which fixes the space of the step and α_u's bounds;
    ``optimizer`` updates ``params``. ``clip_grad_norm`` (keyword arguments of torch's
    ``clip_grad_norm_``) clips the step before the update, as RecBole's trainer does.
    """

    def __init__(
        self,
        representation: Callable[[], Tensor],
        params: Sequence[Tensor],
        objective: LeakageObjective,
        retention: Retention,
        optimizer: torch.optim.Optimizer,
        stop: StopRule,
        *,
        solver: Solver | str = Solver.PROJECTED,
        fixed_alpha: float | None = None,
        clip_grad_norm: Mapping[str, Any] | None = None,
        normalize_step: bool = False,
        adapt_step: bool = False,
    ) -> None:
        self.representation = representation
        self.params = list(params)
        self.objective, self.retention = objective, retention
        self.optimizer, self.stop = optimizer, stop
        self.solver, self.fixed_alpha = Solver(solver), fixed_alpha
        self.clip_grad_norm = dict(clip_grad_norm) if clip_grad_norm else None
        self.normalize_step = bool(normalize_step)
        self.adapt_step = bool(adapt_step)
        self._base_lrs = [group["lr"] for group in optimizer.param_groups]
        self._last_direction: Tensor | None = None  # the previous step's (adapt_step)
        self.trace: dict[str, list[float]] = {}
        # The parameters of the state closest to the target so far (the first that met it,
        # once one has), its step and its distance (``objective.distance()``).
        self.kept: list[Tensor] | None = None
        self.kept_step, self.kept_distance = -1, math.inf
        self.reached = False

    @property
    def steps(self) -> int:
        """Steps taken so far."""
        return len(self.trace.get("l_au", ()))

    def step(self) -> None:
        """Score the current state, keep it if it is the closest to the target so far, and
        update the parameters once."""
        reps = self.representation()
        free = reps.detach().requires_grad_()
        l_au = self.objective(free)
        (g_au,) = torch.autograd.grad(l_au, free)
        g_au = g_au.contiguous()  # an objective's gradient may be a broadcast view (no copy else)
        if self.retention.space is Space.PARAMETERS:
            g_au = flat_grad((reps * g_au).sum(), self.params)
        l_r, g_r = self.retention(reps, self.params)
        weights = solve_alpha(
            g_au,
            g_r,
            solver=self.solver,
            bounds=self.retention.bounds,
            fixed_alpha=self.fixed_alpha,
        )
        self._record(float(l_au.detach()), l_r, weights.alpha_u)
        self._keep_if_closer()
        direction = g_au.mul_(weights.w_au).add_(g_r, alpha=weights.w_r)  # in place
        del g_r
        if self.adapt_step:
            self._adapt(direction)
        self._update(reps, direction)

    def _record(self, l_au: float, l_r: float, alpha_u: float) -> None:
        progress = self.objective.progress()
        if not self.trace:
            self.trace = {"l_au": [], **{k: [] for k in progress}, "l_r": [], "alpha_u": []}
        self.trace["l_au"].append(l_au)
        for key, value in progress.items():
            self.trace[key].append(value)
        self.trace["l_r"].append(l_r)
        self.trace["alpha_u"].append(alpha_u)

    def _keep_if_closer(self) -> None:
        distance = self.objective.distance()
        if distance < self.kept_distance:
            if self.kept is None:
                self.kept = [p.detach().clone() for p in self.params]
            else:  # in place: no second copy of the user side at any time
                for kept, param in zip(self.kept, self.params, strict=True):
                    kept.copy_(param.detach())
            self.kept_step, self.kept_distance = self.steps - 1, distance
            self.reached = distance <= 0.0

    def _adapt(self, direction: Tensor) -> None:
        """Halve the learning rates after a step whose direction reverses the previous one's
        (cosine below −``TURN``), else grow them back by a quarter, up to their starting
        values. A unit-length step along a leak that sits in a few directions jumps over the
        target and back (successive directions at a cosine near −1): a fixed step then circles
        the target, and the circle's z grows with the number of users. Directions dominated by
        the fresh draws' noise are near orthogonal: they restore the step."""
        flat = direction.detach().reshape(-1)
        previous = self._last_direction
        if previous is not None:
            cosine = float(flat @ previous) / max(float(flat.norm() * previous.norm()), 1e-30)
            factor = 0.5 if cosine < -TURN else 1.25
            for group, base in zip(self.optimizer.param_groups, self._base_lrs, strict=True):
                group["lr"] = min(base, group["lr"] * factor)
            previous.copy_(flat)
        else:
            self._last_direction = flat.clone()

    def _update(self, reps: Tensor, direction: Tensor) -> None:
        """Set the parameters' gradients to ``direction`` (pulled back through ``reps`` in
        representation space) and take one optimiser step."""
        self.optimizer.zero_grad()
        if self.retention.space is Space.PARAMETERS:
            for param, grad in zip(
                self.params, direction.split([p.numel() for p in self.params]), strict=True
            ):
                param.grad = grad.view_as(param)
        elif reps.is_leaf:  # the representation is the parameter itself: no graph to follow
            reps.grad = direction.view_as(reps)
        else:
            torch.autograd.backward(reps, grad_tensors=direction.view_as(reps))
        if self.normalize_step:
            grads = [p.grad for p in self.params if p.grad is not None]
            total = torch.sqrt(sum(g.square().sum() for g in grads))
            count = sum(g.numel() for g in grads)
            if float(total) > 0.0:
                for grad in grads:
                    grad.mul_(math.sqrt(count) / total)
        if self.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, **self.clip_grad_norm)
        self.optimizer.step()

    def halve_learning_rates(self) -> None:
        """Halve every parameter group's learning rate."""
        for group in self.optimizer.param_groups:
            group["lr"] /= 2.0

    def restore_kept(self) -> None:
        """Put the kept state back into the parameters."""
        if self.kept is None:
            return
        with torch.no_grad():
            for param, value in zip(self.params, self.kept, strict=True):
                param.copy_(value)

    def run(self, progress: bool = False) -> Outcome:
        """Step until a stop rule holds, then restore the kept state and score it."""
        with torch.no_grad():
            initial = float(self.objective(self.representation()))
        reason = StopReason.MAX_STEPS
        max_steps, chunk = self.stop.max_steps, self.stop.check_every
        bar = tqdm(total=max_steps, desc="AttrCloak", ncols=100, disable=not progress)
        while self.steps < max_steps:
            done, closest = self.steps, self.kept_distance
            for _ in range(min(chunk, max_steps - done)):
                self.step()
                if self.reached:
                    break
            bar.update(self.steps - done)
            logger.info(
                "AttrCloak step %d: L_AU %.4g  L_R %.4g  alpha_u %.3f",
                self.steps,
                self.trace["l_au"][-1],
                self.trace["l_r"][-1],
                self.trace["alpha_u"][-1],
            )
            if self.reached:
                reason = StopReason.TARGET_REACHED
                break
            if self.stop.stalled(self.trace["l_au"]):
                reason = StopReason.STALLED
                break
            if self.stop.halve_lr and self.kept_distance >= closest:
                self.halve_learning_rates()
        bar.close()
        self.restore_kept()
        with torch.no_grad():
            final = float(self.objective(self.representation()))
        terms = self.objective.terms()
        return Outcome(initial, final, self.kept_step, self.steps, reason, terms, self.trace)
