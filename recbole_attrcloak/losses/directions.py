"""Per-direction and spectral critics of the random-relabeling null: leakage concentrated in a
few directions.

A kernel critic's U-statistic sums the dependence over all its features (a trace): its null
spread grows with the number of features, so a signal that sits in one or two directions is
diluted to |z| < 2 while an attacker that learns those directions (logistic regression, an
RBF-SVM, boosted trees) still reads the attribute. Measured on ml-100k BPR (seed 2021, DF
with kernel critics only): every kernel |z| ≤ 2.1, yet the class means of the 2nd principal
axis alone stood 4.5 (age) and 9.0 (occupation) null standard deviations above a random
relabeling, and the audit's XGBoost read age at p = 0.005 (docs/attrcloak.md).

Each per-direction critic is one principal axis of the standardised *original*
representations (fixed at the first call), scaled to unit variance: the 1-D linear kernel on
that axis, whose U-statistic measures how far the class means along it stand apart. Its null
mean and spread are ``attribute_labels.null_moments`` of a 1-D feature, O(n·k·K).

The spectral critics find the directions themselves: the top eigenvalues of the (K, K) matrix
A = SᵀMS − Yᵀdiag(‖f_u‖²_M)Y (S = FᵀY; its trace is a critic's U-statistic) are the class-mean
separations along the best discriminant directions of that critic's metric, what a multi-class
linear attacker (LDA, logistic regression) finds. A maximum has no closed-form null, so it is
z-scored against the same eigenvalues under fixed random permutations of the labels.

Pure torch; no RecBole, Ray or scikit-learn import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import NormalDist

import torch
from torch import Tensor

from recbole_attrcloak.losses.attribute_labels import _Attribute, null_moments
from recbole_attrcloak.losses.kernel_critics import Critic, CriticMetric


def family_tolerance(tolerance: float, n_reference: int, n: int) -> float:
    """The |z| bound that ``n`` independent null z-scores all meet as often as ``n_reference``
    of them all meet ``tolerance``: the largest |z| of N null statistics grows like √(2 ln N),
    so one bound for 27 kernel statistics and for 192 principal axes would ask the axes for
    less than a random relabeling shows (and the optimiser for over-correction)."""
    normal = NormalDist()
    within = (2.0 * normal.cdf(tolerance) - 1.0) ** (n_reference / max(n, 1))
    return normal.inv_cdf((1.0 + within) / 2.0)


def principal_axes(z: Tensor, k: int) -> Tensor:
    """(d, k): the top-``k`` principal axes of ``z`` (n, d), each divided by the spread of the
    projection on it, so that ``z @ axes`` has unit variance per column. No gradient."""
    with torch.no_grad():
        centred = z - z.mean(0)
        _, singular, vt = torch.linalg.svd(centred, full_matrices=False)
        k = min(int(k), len(singular))
        scale = (singular[:k] / max(len(z) - 1, 1) ** 0.5).clamp_min(1e-12)
        return vt[:k].T / scale


#: ``au_direction_basis``: the directions of the per-direction critics.
DIRECTION_BASES = ("principal", "coordinates")


def direction_basis(z: Tensor, k: int, basis: str) -> Tensor:
    """(d, k'): the per-direction critics' axes of the standardised representations ``z``:
    the top-``k`` principal axes (``principal_axes``), or the first ``k`` coordinates
    themselves (``coordinates``: what axis-aligned attackers, boosted trees and forests,
    split on; unit variance already). No gradient."""
    if basis not in DIRECTION_BASES:
        raise ValueError(f"direction basis {basis!r}: choose from {', '.join(DIRECTION_BASES)}")
    if basis == "principal":
        return principal_axes(z, k)
    k = min(int(k), z.shape[1])
    return torch.eye(z.shape[1], k, dtype=z.dtype, device=z.device)


def direction_statistics(
    proj: Tensor, labels: Tensor, label_sq: float, pair_sq: float
) -> tuple[Tensor, Tensor]:
    """Per column of ``proj`` (m, k): (U − E_π U, sd_π U) of the 1-D linear critic against the
    balanced centred one-hot ``labels`` (m, K), both (k,); the first is differentiable.

    U_j = Σ_{u≠v} f_uj f_vj ⟨y_u, y_v⟩ = ‖(FᵀY)_j‖² − Σ_u f_uj² ‖y_u‖²; under a uniform
    permutation of the rows of Y, E_π U_j = −((Σ_u f_uj)² − Σ_u f_uj²)/(m(m−1))·‖Y‖² exactly,
    and sd_π U_j ≈ √(2·E⟨y_u, y_v⟩²·Σ_{u≠v} f_uj² f_vj²) (pairs taken as independent, as for
    the kernel critics)."""
    y = labels.to(proj.dtype)
    s = proj.T @ y  # (k, K)
    sq = proj.square()  # (m, k)
    u_stat = s.square().sum(1) - sq.T @ y.square().sum(1)
    off_sum = proj.sum(0).square() - sq.sum(0)  # Σ_{u≠v} f_u f_v
    with torch.no_grad():
        off_sq = sq.sum(0).square() - sq.square().sum(0)  # Σ_{u≠v} f_u² f_v²
    null_mean, null_sd = null_moments(len(proj), off_sum, off_sq, label_sq, pair_sq)
    return u_stat - null_mean, null_sd


def spectral_matrix(f: Tensor, fm: Tensor, sq_norms: Tensor, labels: Tensor) -> Tensor:
    """(K, K): A = SᵀMS − Yᵀdiag(‖f_u‖²_M)Y for features ``f`` (m, D), ``fm`` = FM, ``sq_norms``
    = ‖f_u‖²_M and labels Y (m, K); differentiable."""
    y = labels.to(f.dtype)
    return (f.T @ y).T @ (fm.T @ y) - (y * sq_norms[:, None]).T @ y


def top_eigenvalues(matrix: Tensor, r: int) -> Tensor:
    """The ``r`` largest eigenvalues of the symmetric ``matrix``, largest first."""
    return torch.linalg.eigvalsh((matrix + matrix.T) / 2)[-r:].flip(0)


@torch.no_grad()
def spectral_null(
    f: Tensor, fm: Tensor, sq_norms: Tensor, labels: Tensor, perms: Tensor, r: int
) -> tuple[Tensor, Tensor]:
    """Mean and spread (both (r,)) of the top-``r`` eigenvalues of ``spectral_matrix`` when the
    rows of ``labels`` are permuted by each row of ``perms`` (P, m)."""
    draws = torch.stack(
        [top_eigenvalues(spectral_matrix(f, fm, sq_norms, labels[p]), r) for p in perms]
    )
    return draws.mean(0), draws.std(0).clamp_min(1e-30)


def axis_statistics(
    z_in: Tensor, axes: Tensor, attributes: Sequence[_Attribute]
) -> dict[tuple[str, str], tuple[Tensor, Tensor]]:
    """The per-direction critics: (U − E_π U, sd_π U) of the 1-D linear statistic on every
    axis (column of ``axes``) for every attribute, keyed (attribute, ``axisJ``)."""
    proj = z_in @ axes
    proj = proj - proj.mean(0)
    out = {}
    for attr in attributes:
        rows = proj if len(attr.users) == len(proj) else proj[attr.users]
        excess, spread = direction_statistics(rows, attr.labels, attr.label_sq, attr.pair_sq)
        for j in range(len(excess)):
            out[attr.name, f"axis{j + 1}"] = (excess[j], spread[j])
    return out


def spectral_statistics(
    rows: tuple[Tensor, Tensor, Tensor, Tensor],
    attr: _Attribute,
    critic: str,
    r: int,
    null: tuple[Tensor, Tensor] | None,
    perms: Tensor,
) -> tuple[dict[tuple[str, str], tuple[Tensor, Tensor]], tuple[Tensor, Tensor]]:
    """The spectral critics of one linear critic on ``attr``: its top ``r`` eigenvalues against
    their null under the fixed label permutations ``perms`` (``null``: the one computed earlier,
    None to compute it now, which is returned as the second item). ``rows``:
    ``CriticMetric.rows(attr)``."""
    f, fm, sq_norms, _ = rows
    y = attr.labels.to(f.dtype)
    r = min(r, y.shape[1] - 1)
    top = top_eigenvalues(spectral_matrix(f, fm, sq_norms, y), r)
    if null is None:
        null = spectral_null(f.detach(), fm.detach(), sq_norms.detach(), y, perms, r)
    mean, spread = null
    stats = {(attr.name, f"{critic}/top{j + 1}"): (top[j] - mean[j], spread[j]) for j in range(r)}
    return stats, null


class SpectralCritics:
    """The spectral critics of ``losses.relabel.RelabelingNull`` (``spectral`` > 0): for every
    linear critic and attribute its top ``r`` eigenvalues (``spectral_statistics``) against
    their null under ``permutations`` fixed label permutations per attribute (drawn from
    ``seed``), the null kept between refreshes."""

    def __init__(
        self, attributes: Sequence[_Attribute], r: int, permutations: int, seed: int
    ) -> None:
        self.attributes, self.r = list(attributes), int(r)
        shuffles = torch.Generator().manual_seed(seed)
        self.perms = {
            a.name: torch.stack(
                [torch.randperm(len(a.users), generator=shuffles) for _ in range(permutations)]
            ).to(a.users.device)
            for a in self.attributes
        }
        self._nulls: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}

    def statistics(
        self, metrics: Mapping[Critic, CriticMetric], refresh: bool
    ) -> dict[tuple[str, str], tuple[Tensor, Tensor]]:
        """The statistics of every critic in ``metrics`` (critic → its ``CriticMetric``) on
        every attribute; ``refresh``: compute the nulls again."""
        out = {}
        for critic, shared in metrics.items():
            for attr in self.attributes:
                key = (attr.name, critic.name)
                null = None if refresh else self._nulls.get(key)
                stats, self._nulls[key] = spectral_statistics(
                    shared.rows(attr), attr, critic.name, self.r, null, self.perms[attr.name]
                )
                out.update(stats)
        return out
