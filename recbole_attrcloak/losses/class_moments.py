"""Class sums and scatters of a user table, gathered in chunks of rows, with a custom backward.

The Gaussian bound (``mutual_info``) needs, per attribute, every class's Σ(x − c) and
Σ(x − c)(x − c)ᵀ. Plain autograd would keep an (n, d) copy of the table per attribute for the
backward; ``ClassMoments`` saves only the input and recomputes each chunk, so beyond the input
and its gradient the memory is O(K·d²).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

# Bytes of rows handled at once by the class statistics: bounds their extra memory, and small
# chunks are reused by the allocator (fresh 64 MB ones page-fault on every use: ~2× slower).
_CHUNK_BYTES = 1 << 20
# One attribute's covered users grouped by class, and the class sizes.
Group = tuple[Tensor, Sequence[int]]


def _chunks(users: Tensor, sizes: Sequence[int], rows: int) -> Iterator[tuple[int, Tensor]]:
    """(class code, user indices) pieces of at most ``rows`` users; ``users`` grouped by class."""
    start = 0
    for code, size in enumerate(sizes):
        for lo in range(start, start + size, rows):
            yield code, users[lo : min(lo + rows, start + size)]
        start += size


def chunk_rows(d: int, dtype: torch.dtype) -> int:
    """Rows of width d per chunk of ``_CHUNK_BYTES``."""
    return max(1, _CHUNK_BYTES // (d * dtype.itemsize))


def _shifted(emb: Tensor, users: Tensor, shift: Tensor) -> Tensor:
    """Rows ``users`` of emb minus the shift c, in the shift's dtype (a fresh tensor)."""
    return emb.index_select(0, users).to(shift.dtype).sub_(shift)


def class_moments(
    emb: Tensor, shift: Tensor, group: Group, skip: int = -1
) -> tuple[Tensor, Tensor]:
    """Class sums s_k = Σ(x − c) (K, d) and scatters Q_k = Σ(x − c)(x − c)ᵀ (K, d, d).

    Accumulated over chunks of rows in the shift's dtype; c (any constant, e.g. the mean) keeps
    float32 from cancelling when the moments are centred later. Class ``skip`` is left at zero.
    """
    users, sizes = group
    d = emb.shape[1]
    sums = shift.new_zeros(len(sizes), d)
    scatters = shift.new_zeros(len(sizes), d, d)
    for code, rows in _chunks(users, sizes, chunk_rows(d, shift.dtype)):
        if code == skip:
            continue
        y = _shifted(emb, rows, shift)
        sums[code] += y.sum(0)
        scatters[code].addmm_(y.T, y)
    return sums, scatters


class ClassMoments(torch.autograd.Function):
    """``class_moments`` of every group, flattened to (s_0, Q_0, s_1, Q_1, ...).

    Plain autograd would keep an (n, d) copy per attribute for the backward; this saves only the
    input and recomputes x − c chunk by chunk: ∂L/∂x_i = G_s[k] + (G_Q[k] + G_Q[k]ᵀ)(x_i − c),
    summed over the groups that cover user i.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, emb: Tensor, shift: Tensor, groups: tuple[Group, ...]
    ) -> tuple[Tensor, ...]:
        ctx.save_for_backward(emb, shift)
        ctx.groups = groups
        return tuple(t for group in groups for t in class_moments(emb, shift, group))

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, *grads: Tensor) -> tuple[Tensor, None, None]:
        emb, shift = ctx.saved_tensors
        grad = torch.zeros_like(emb)
        rows_per_chunk = chunk_rows(emb.shape[1], shift.dtype)
        for (users, sizes), g_sum, g_scatter in zip(
            ctx.groups, grads[0::2], grads[1::2], strict=True
        ):
            g_sym = g_scatter + g_scatter.mT
            for code, rows in _chunks(users, sizes, rows_per_chunk):
                y = _shifted(emb, rows, shift)
                grad.index_add_(0, rows, torch.addmm(g_sum[code], y, g_sym[code]).to(grad.dtype))
        return grad, None, None
