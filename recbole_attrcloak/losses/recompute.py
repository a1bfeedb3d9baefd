"""Activation checkpointing of the critic families for large user sets.

A step's backward pass needs every intermediate (users × features) tensor of every critic
family: at 10^5 users, d = 128, the default objective's step peaked at 3.5 GiB, linear in the
users (``benchmarks/results/scale/``), so 10^6 users would not fit in 24 GiB. Above
``SEGMENT_ROWS`` users each family (one kernel with its contrasts, the quadratic critic, the
cross-fitted critics) keeps only its input and its statistics and recomputes the rest in the
backward pass (``torch.utils.checkpoint``): the same values and gradients, one family's
intermediates alive at a time, for a second forward pass of each family (the cross-fitted
critics' permutation nulls, which carry no gradient, are taken from the first pass). Below it,
nothing changes (the ml-100k and ml-1m runs).

Pure torch; no RecBole, Ray or scikit-learn import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

#: users from which a step recomputes each critic family in its backward pass
SEGMENT_ROWS = 50_000

Out = TypeVar("Out")


def segmented(fn: Callable[[Tensor], Out], z: Tensor, rows: int | None = SEGMENT_ROWS) -> Out:
    """``fn(z)``; recomputed in the backward pass instead of kept (activation checkpointing)
    when ``z`` has at least ``rows`` rows and a gradient is being taken. ``fn`` must be a
    function of ``z`` alone (its random draws made before, passed in), or the recomputation
    would score other draws. ``rows`` None: never."""
    if rows is None or len(z) < rows or not (torch.is_grad_enabled() and z.requires_grad):
        return fn(z)
    return checkpoint(fn, z, use_reentrant=False)
