"""Retention strategies of AttrCloak: the loss L_R that keeps the recommendations, its gradient,
the bounds of α_u it allows, and where its batches come from.

- :class:`DistanceRetention` (data-free, Eq. 21): Σ_u ‖e_u − e_u⁰‖² to the original
  representations, with its gradient 2(e − e⁰) in closed form, in representation space.
- :class:`RankingRetention` (data-dependent, default): BPR on each user's original top-k items
  outside its training items against other such items, plus Eq. 21's distance, in parameter
  space (a ranking is no function of the representation alone).
- :class:`TrainLossRetention` (data-dependent, the paper's Eq. 20): the model's own training
  loss on the next batch of an iterable that it cycles through, in parameter space.

Scoring and the training loss come in as plain callables: nothing here knows RecBole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import Enum
from typing import Any, Protocol

import torch
from torch import Tensor

from recbole_attrcloak.losses import flat_grad

#: Ranking retention: pairs per user and step (the default of ``RankingRetention``), and uniform
#: draws per negative.
PAIRS_PER_USER = 16
NEGATIVE_TRIES = 8


class Space(Enum):
    """Where a retention's gradient lives, and so where α_u is solved and the step formed."""

    REPRESENTATION = "representation"  # ∂/∂(user representations), (n_users, d)
    PARAMETERS = "parameters"  # ∂/∂(user-side parameters), flattened and concatenated


class Retention(Protocol):
    """What the engine asks of a retention strategy."""

    #: the space of :meth:`__call__`'s gradient
    space: Space
    #: (low, high) bounds of α_u for the non-fixed solvers
    bounds: tuple[float, float]

    def __call__(self, reps: Tensor, params: Sequence[Tensor]) -> tuple[float, Tensor]:
        """L_R at the current state and its gradient in :attr:`space`. ``reps`` are the user
        representations with their graph to ``params``, the user-side parameters."""
        ...


def unit(grad: Tensor) -> Tensor:
    """``grad`` scaled to length 1 (unchanged when it is zero)."""
    norm = float(grad.norm())
    return grad / norm if norm > 0.0 else grad


class DistanceRetention:
    """Eq. 21, L_R = Σ_u ‖e_u − e_u⁰‖² over the rows from ``first_row`` on (RecBole's row 0 is
    its padding user), with α_u in [0.1, 1]: at the original state L_R's gradient is zero and
    an unbounded solver would take α_u = 0, a step of no length."""

    space = Space.REPRESENTATION
    bounds = (0.1, 1.0)

    def __init__(self, reference: Tensor, first_row: int = 0) -> None:
        self.reference = reference.detach()
        self.first_row = int(first_row)

    def __call__(self, reps: Tensor, params: Sequence[Tensor]) -> tuple[float, Tensor]:
        """L_R and 2(e − e⁰), formed in one fresh (n_users, d) tensor (no graph)."""
        grad = torch.zeros_like(reps)
        drift = torch.sub(
            reps.detach()[self.first_row :], self.reference, out=grad[self.first_row :]
        )
        value = float(drift.reshape(-1) @ drift.reshape(-1))
        return value, grad.mul_(2.0)

    def loss(self, reps: Tensor) -> Tensor:
        """L_R as a differentiable tensor (through ``reps``' graph)."""
        return (reps[self.first_row :] - self.reference).square().sum()


def sample_outside(
    excluded: Tensor, rows: Tensor, tries: int, generator: torch.Generator | None = None
) -> Tensor:
    """One random item for each of ``rows`` outside that row of ``excluded`` (bool, users ×
    n_items): the first of ``tries`` uniform draws in 1..n_items−1 that is allowed (the last
    draw if none is, which is rare)."""
    shape = (len(rows), tries)
    draws = torch.randint(1, excluded.shape[1], shape, generator=generator, device=rows.device)
    allowed = ~excluded[rows[:, None], draws]
    allowed[:, -1] = True
    return draws.gather(1, allowed.int().argmax(1, keepdim=True)).squeeze(1)


class RankingRetention:
    """BPR on every user's original ranking plus Eq. 21's distance; the gradient is the sum of
    their unit gradients (the ranking loss alone constrains only the few directions the
    sampled pairs see).

    ``score(users, items)`` scores pairs of ids with the current parameters. ``top_items``
    (n, k) holds the original top-k items of users ``first_row`` … ``first_row + n − 1``, and
    ``excluded`` (bool, (n, n_items)) each user's items that are no negative (its training
    items, its top-k, the padding item). Per step, ``pairs`` pairs per user: one of its top-k
    against a random non-excluded item, drawn with ``generator``.
    """

    space = Space.PARAMETERS
    bounds = (0.0, 1.0)

    def __init__(
        self,
        score: Callable[[Tensor, Tensor], Tensor],
        top_items: Tensor,
        excluded: Tensor,
        reference: Tensor,
        first_row: int = 0,
        generator: torch.Generator | None = None,
        pairs: int = PAIRS_PER_USER,
    ) -> None:
        self.score = score
        self.pairs = int(pairs)
        self.top_items, self.excluded = top_items, excluded
        self.anchor = DistanceRetention(reference, first_row)
        self.first_row = int(first_row)
        self.generator = generator

    def ranking_loss(self) -> Tensor:
        """Mean BPR loss of this step's sampled pairs."""
        n_users = self.top_items.shape[0]
        device = self.top_items.device
        users = torch.arange(self.first_row, self.first_row + n_users, device=device)
        users = users.repeat(self.pairs)
        rows = users - self.first_row
        pick = torch.randint(
            self.top_items.shape[1], (len(users),), generator=self.generator, device=device
        )
        positives = self.top_items[rows, pick]
        negatives = sample_outside(self.excluded, rows, NEGATIVE_TRIES, self.generator)
        scores = self.score(users.repeat(2), torch.cat([positives, negatives]))
        return -torch.nn.functional.logsigmoid(scores[: len(users)] - scores[len(users) :]).mean()

    def __call__(self, reps: Tensor, params: Sequence[Tensor]) -> tuple[float, Tensor]:
        loss = self.ranking_loss()
        g_rank = flat_grad(loss, params)
        g_dist = flat_grad(self.anchor.loss(reps), params)
        return float(loss.detach()), unit(g_rank) + unit(g_dist)


class TrainLossRetention:
    """The paper's Eq. 20: ``loss(batch)`` (the model's training loss; a tuple of parts is
    summed) on the next batch of ``batches``, which it cycles through (a new pass when one
    ends; the first pass starts at the first step)."""

    space = Space.PARAMETERS
    bounds = (0.0, 1.0)

    def __init__(self, loss: Callable[[Any], Tensor | tuple[Tensor, ...]], batches: Iterable):
        self.loss, self.batches = loss, batches
        self._iter: Iterator | None = None

    def next_batch(self) -> Any:
        """The next batch, starting a new pass over ``batches`` when one ends."""
        if self._iter is None:
            self._iter = iter(self.batches)
        try:
            return next(self._iter)
        except StopIteration:
            self._iter = iter(self.batches)
            return next(self._iter)

    def __call__(self, reps: Tensor, params: Sequence[Tensor]) -> tuple[float, Tensor]:
        loss = self.loss(self.next_batch())
        loss = sum(loss) if isinstance(loss, tuple) else loss
        return float(loss.detach()), flat_grad(loss, params)
