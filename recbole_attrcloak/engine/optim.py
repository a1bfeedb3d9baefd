"""The optimiser of the user-side parameters: one group per tensor with an optional
scale-relative learning rate, and RecBole's learner names for callers without RecBole."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: RecBole's learner names (``Trainer._build_optimizer``) and their torch optimisers.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
    "sparse_adam": torch.optim.SparseAdam,
}


def param_groups(params: Sequence[Tensor], learning_rate: float, relative: bool) -> list[dict]:
    """Optimiser groups for ``params``. With ``relative`` one group per tensor whose rate is
    ``learning_rate`` × the tensor's RMS (× the RMS of all of them for an all-zero tensor, e.g.
    a bias): Adam's step is about the rate per entry whatever the gradient's scale, so an
    absolute rate would move a table of small entries further, relative to its scale, than one
    of large entries. Without it, one group at ``learning_rate``."""
    params = list(params)
    if not relative:
        return [{"params": params, "lr": learning_rate}]
    with torch.no_grad():
        overall = torch.cat([p.reshape(-1) for p in params]).square().mean().sqrt()
        scales = [p.square().mean().sqrt() for p in params]
    return [
        {"params": [p], "lr": learning_rate * float(s if s > 0 else overall)}
        for p, s in zip(params, scales, strict=True)
    ]


def build_optimizer(
    learner: str, groups: list[dict], learning_rate: float
) -> torch.optim.Optimizer:
    """The optimiser RecBole's ``Trainer._build_optimizer`` builds for ``learner`` with no
    weight decay (the group rates win over ``learning_rate``)."""
    name = learner.lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown learner {learner!r}: choose one of {sorted(OPTIMIZERS)}")
    if name == "sparse_adam":
        return OPTIMIZERS[name](groups, lr=learning_rate)
    return OPTIMIZERS[name](groups, lr=learning_rate, weight_decay=0.0)
