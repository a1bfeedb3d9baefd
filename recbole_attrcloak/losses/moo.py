"""Closed-form two-objective weighting of AttrCloak (Eq. 22-26): α_u for L_AU, α_r = 1 − α_u."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import Tensor


class Solver(StrEnum):
    """How α_u is chosen (``au_solver``); see :func:`solve_alpha`."""

    PROJECTED = "projected"
    NORMALIZED = "normalized"
    PAPER = "paper"
    FIXED = "fixed"
    FIXED_UNIT = "fixed_unit"
    FIXED_PROJECTED = "fixed_projected"


SOLVERS = tuple(Solver)
#: The solvers that take a given α (``fixed_alpha``) instead of choosing one.
FIXED_SOLVERS = (Solver.FIXED, Solver.FIXED_UNIT, Solver.FIXED_PROJECTED)

# Squared lengths at or below this fraction of the larger squared gradient norm count as zero:
# they come from the 2 × 2 Gram matrix, whose float64 rounding is ~1e-16 of that scale.
_REL_TOL = 1e-12
# Gradient norms below this count as zero (so that 1/norm stays finite).
_TINY = torch.finfo(torch.float64).tiny
# Entries per float64 chunk of the Gram products (8 MB): no full-size float64 copy is made.
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LossWeights:
    """Weights for one update: minimise w_au·L_AU + w_r·L_R."""

    alpha_u: float  # the α_u the solver chose (α_r = 1 − α_u)
    w_au: float  # multiply L_AU by this
    w_r: float  # multiply L_R by this


def _gram(a: Tensor, b: Tensor) -> tuple[float, float, float]:
    """aᵀa, bᵀb and aᵀb of two flat vectors, accumulated in float64 chunk by chunk (a user
    table's gradient can hold 10⁸ entries: float64 copies of both would double the memory)."""
    total = torch.zeros(3, dtype=torch.float64, device=a.device)
    for x, y in zip(a.split(_CHUNK), b.split(_CHUNK), strict=True):
        x, y = x.to(torch.float64), y.to(torch.float64)
        total += torch.stack([x @ x, y @ y, x @ y])
    aa, bb, ab = total.tolist()
    return aa, bb, ab


def _min_norm_alpha(aa: float, bb: float, ab: float) -> float:
    """Unclipped Eq. 26, (g_r − g_au)ᵀg_r / ‖g_au − g_r‖², from the Gram entries aa = ‖g_au‖²,
    bb = ‖g_r‖², ab = g_auᵀg_r; 0.5 when the gradients coincide."""
    diff_sq = aa - 2.0 * ab + bb
    if diff_sq <= _REL_TOL * max(aa, bb):
        return 0.5
    return (bb - ab) / diff_sq


def _checked(
    solver: Solver | str, bounds: tuple[float, float], fixed_alpha: float | None
) -> tuple[Solver, float, float]:
    """The solver as a value and the bounds of α_u; ValueError on a bad combination."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
    solver = Solver(solver)
    if solver in FIXED_SOLVERS:
        if fixed_alpha is None or not 0.0 <= fixed_alpha <= 1.0:
            raise ValueError(f"solver='fixed' needs fixed_alpha in [0, 1], got {fixed_alpha}")
    elif fixed_alpha is not None:
        raise ValueError(f"fixed_alpha is only used with solver='fixed', not {solver.value!r}")
    low, high = (float(b) for b in bounds)
    if solver not in FIXED_SOLVERS and not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"bounds must satisfy 0 <= low <= high <= 1, got {tuple(bounds)}")
    return solver, low, high


def solve_alpha(
    grad_au: Tensor,
    grad_r: Tensor,
    *,
    solver: Solver | str = Solver.PROJECTED,
    bounds: tuple[float, float] = (0.0, 1.0),
    fixed_alpha: float | None = None,
) -> LossWeights:
    """Choose α_u from the gradients of L_AU and L_R (any shape, flattened); only their 2 × 2
    Gram matrix is needed, accumulated in float64.

    ``"paper"``: Eq. 26 on the raw gradients, clipped to ``bounds`` ((0, 1) for DD, (0.1, 1) for
    DF); w_au = α, w_r = 1 − α.
    ``"normalized"``: Eq. 26 on unit-length gradients (MGDA-UB style, scale-invariant), clipped to
    ``bounds``; the step is α·ĝ_au + (1 − α)·ĝ_r, i.e. w_au = α/‖g_au‖, w_r = (1 − α)/‖g_r‖.
    For two non-parallel unit vectors the min-norm α is always 0.5.
    ``"projected"`` (default): like ``"normalized"``, but when the gradients conflict
    (ĝ_auᵀĝ_r < 0) the retention gradient is first projected onto the plane orthogonal to ĝ_au
    (as PCGrad does), so the step can never cancel the unlearning direction. Plain MGDA from the
    original point of a data-free run cannot move: the original is Pareto-optimal for
    (L_AU, L_Reg = 0), and every min-norm step pulls back towards it.
    ``"fixed"``: α = ``fixed_alpha`` (required, in [0, 1]; ``bounds`` not applied); w_au = α,
    w_r = 1 − α (the paper's Fig. 5 ablation). ``"fixed_unit"``: the same α on unit-length
    gradients, w_au = α/‖g_au‖, w_r = (1 − α)/‖g_r‖ (a zero gradient gets weight 0): the share of
    each objective in the step's direction, whatever their scales. ``"fixed_projected"``: as
    ``"fixed_unit"``, but a retention gradient that conflicts with the unlearning one
    (g_auᵀg_r < 0) is first projected onto the plane orthogonal to g_au, as ``"projected"``
    does: retention then steers the step sideways and never holds the leakage back (the relabel
    objective's default; with ``"fixed_unit"`` the two balance at a |z| above the target).

    Degenerate cases (never NaN):
    - g_au = g_r (difference ~0): any α gives the same direction; α = 0.5, then clipped.
    - ‖g_au‖ = 0 (nothing to unlearn, e.g. the random-label hinge is inactive): α = lower bound,
      and w_au = 0 for "normalized". Eq. 26 itself would give 1 (a Pareto-stationary point, no
      update); the lower bound keeps the retention objective acting. Also when both are zero,
      then w_r = 0 for "normalized".
    - ‖g_r‖ = 0 (e.g. DF at step 0, where L_Reg is at its minimum): "paper" gives 0 by Eq. 26, so
      the lower bound; "normalized" takes α = upper bound and w_r = 0.
    """
    solver, low, high = _checked(solver, bounds, fixed_alpha)
    if solver == Solver.FIXED:
        return LossWeights(float(fixed_alpha), float(fixed_alpha), 1.0 - float(fixed_alpha))
    g_au, g_r = grad_au.detach().reshape(-1), grad_r.detach().reshape(-1)
    if g_au.shape != g_r.shape:
        raise ValueError(f"gradients differ in size: {g_au.numel()} vs {g_r.numel()}")
    aa, bb, ab = _gram(g_au, g_r)
    if not all(math.isfinite(v) for v in (aa, bb, ab)):
        raise ValueError("gradients contain NaN or inf")
    shift = 0.0  # projection: g_r' = g_r − shift·g_au, folded back into w_au below
    if solver in (Solver.PROJECTED, Solver.FIXED_PROJECTED) and ab < 0.0 and aa > 0.0:
        shift = ab / aa
        projected = bb - ab * shift
        bb, ab = (projected if projected > _REL_TOL * bb else 0.0), 0.0
    norm_au, norm_r = math.sqrt(aa), math.sqrt(bb)
    if solver in (Solver.FIXED_UNIT, Solver.FIXED_PROJECTED):
        alpha = float(fixed_alpha)
        w_r = (1.0 - alpha) / norm_r if norm_r >= _TINY else 0.0
        w_au = alpha / norm_au - w_r * shift if norm_au >= _TINY else 0.0
        return LossWeights(alpha, w_au, w_r)
    if norm_au < _TINY:
        alpha = low
    elif norm_r < _TINY:
        alpha = low if solver == Solver.PAPER else high
    elif solver == Solver.PAPER:
        alpha = min(max(_min_norm_alpha(aa, bb, ab), low), high)
    else:
        alpha = min(max(_min_norm_alpha(1.0, 1.0, ab / (norm_au * norm_r)), low), high)
    if solver == Solver.PAPER:
        return LossWeights(alpha, alpha, 1.0 - alpha)
    w_au = alpha / norm_au if norm_au >= _TINY else 0.0
    w_r = (1.0 - alpha) / norm_r if norm_r >= _TINY else 0.0
    return LossWeights(alpha, w_au - w_r * shift, w_r)


def flat_grad(loss: Tensor, params: Sequence[Tensor], retain_graph: bool = True) -> Tensor:
    """Gradient of a scalar loss w.r.t. params, flattened and concatenated (the MGDA input).

    Parameters the loss does not reach, or a loss with no graph at all (e.g. a hinge at 0 computed
    without grad), give zeros.
    """
    if loss.requires_grad:
        grads = torch.autograd.grad(
            loss, list(params), retain_graph=retain_graph, allow_unused=True
        )
    else:
        grads = (None,) * len(params)
    flat = [
        (torch.zeros_like(p) if g is None else g).reshape(-1)
        for p, g in zip(params, grads, strict=True)
    ]
    return flat[0] if len(flat) == 1 else torch.cat(flat)  # one tensor: no copy of a big table
