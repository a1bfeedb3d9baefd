"""The adversary of RAP (Beigi et al., WSDM 2020; paper ref. [6]): one MLP attacker per sensitive
attribute predicting it from the user representations, played against whatever produced them.

One optimiser step on ``AttributeAdversary(reps, targets)`` descends the attackers' cross-entropy
L_att for the attackers, and moves ``reps`` by the game (``AdversaryGame``):

- ``minimax`` (Beigi et al.'s): ascend λ·L_att, through a gradient-reversal layer: the zero-sum
  game min_recommender max_attackers [L_rec − λ·L_att] in one pass. Its push vanishes once the
  attackers are confident (the softmax saturates), so an attacker that gets ahead stays ahead.
- ``confusion`` (Alvi et al., ECCV-W 2018): descend λ·L_conf, the cross-entropy between the
  uniform distribution and the attackers' predictions (attackers frozen for this term): largest
  exactly when the attackers are confident, so it does not saturate.

The returned value is L_att either way (what the attackers achieve); the game only changes the
gradient that reaches ``reps``. Pure torch, callable on any tensor; ``model/rap.py`` plugs it into
RecBole models.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AdversaryGame(StrEnum):
    """``rap_game``: how the representations play against the attackers."""

    MINIMAX = "minimax"
    CONFUSION = "confusion"


class _GradientReversal(torch.autograd.Function):
    """Identity forward; multiplies the gradient by −λ backward."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: float) -> Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.weight * grad, None


def reverse_gradient(x: Tensor, weight: float) -> Tensor:
    """``x`` unchanged forward; backward, the gradient reaching ``x`` is −weight times the
    incoming one."""
    return _GradientReversal.apply(x, weight)


class AttributeAdversary(nn.Module):
    """Attackers (Linear → ReLU → Linear, one per attribute) on the user representations.

    ``forward(reps, targets)`` is L_att: the mean over attributes of each attacker's mean
    cross-entropy on the rows with a known class (target −1 ignored; an attribute with no known
    row adds 0). Its gradient trains the attackers and sends ``reps`` the game's push of weight
    ``weight`` (λ; 0 leaves the representations untouched by the attackers).
    """

    def __init__(
        self,
        input_size: int,
        classes: Mapping[str, int],
        hidden_size: int,
        weight: float,
        game: AdversaryGame = AdversaryGame.MINIMAX,
    ) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"need positive sizes, got input {input_size}, hidden {hidden_size}")
        if weight < 0:
            raise ValueError(f"the adversary's weight must be >= 0, got {weight}")
        if not classes or any(k < 2 for k in classes.values()):
            raise ValueError(f"need attributes with >= 2 classes each, got {dict(classes)}")
        self.weight = float(weight)
        self.game = AdversaryGame(game)
        self.attackers = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Linear(input_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, k)
                )
                for name, k in classes.items()
            }
        )

    def forward(self, reps: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        """L_att on ``reps`` (n, d) against ``targets`` (each (n,), class codes, −1 unknown)."""
        if self.game is AdversaryGame.MINIMAX:
            seen = reverse_gradient(reps, self.weight)
            return torch.stack(
                [_fit(attacker(seen), targets[name]) for name, attacker in self.attackers.items()]
            ).mean()
        terms = []
        for name, attacker in self.attackers.items():
            target = targets[name]
            fit = _fit(attacker(reps.detach()), target)  # trains the attacker only
            frozen = {key: p.detach() for key, p in attacker.named_parameters()}
            logits = torch.func.functional_call(attacker, frozen, (reps,))
            log_p = F.log_softmax(logits[target >= 0], dim=1)  # its gradient reaches reps only
            confusion = -log_p.sum() / max(log_p.numel(), 1)  # CE(uniform, p), mean over rows
            # value: the attacker's fit; gradient: the fit's and λ·L_conf's
            terms.append(fit + self.weight * (confusion - confusion.detach()))
        return torch.stack(terms).mean()


def _fit(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy over the rows with a known class (0 when there is none)."""
    total = F.cross_entropy(logits, target, ignore_index=-1, reduction="sum")
    return total / (target >= 0).sum().clamp_min(1)
