"""The kernel critics of the random-relabeling objective: which feature maps (linear, Gaussian
through random Fourier features, each optionally whitened with a ridge) and, for one critic, its
inner product and the U-statistic of a block of labelings against its exact permutation null
(``losses.relabel`` explains the statistic).

Pure torch; no RecBole, Ray or scikit-learn import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from recbole_attrcloak.losses.attribute_labels import LabelBlock, _Attribute, null_moments

INF = math.inf
#: ``Critic.gamma`` of the squared-coordinates feature map (``au_squares``).
SQUARES = "squares"
#: how the name of a Gaussian kernel's critic (random features) starts, and so every statistic
#: of one (its contrast's and its column blocks' too): ``stop_state`` reads it
RANDOM_KERNEL = "rbf"


@dataclass(frozen=True)
class Critic:
    """One feature map: ``gamma`` None for the linear kernel, ``SQUARES`` for the squared
    coordinates (each coordinate's variance by class: the linear kernel of z²), else the
    Gaussian kernel exp(−gamma·‖z − z'‖²/d) on standardised coordinates; ``ridge`` (relative to
    the mean feature variance) whitens the features first, ``inf`` leaves them as they are."""

    gamma: float | str | None
    ridge: float

    @property
    def random(self) -> bool:
        """Whether the features are random (a Gaussian kernel's Fourier features)."""
        return self.gamma is not None and self.gamma != SQUARES

    @property
    def name(self) -> str:
        if self.gamma is None or self.gamma == SQUARES:
            kernel = self.gamma or "linear"
        else:
            kernel = f"{RANDOM_KERNEL}{self.gamma:g}"
        return f"{kernel}/ridge={self.ridge:g}"


def default_critics(
    gammas: Sequence[float] = (1.0, 4.0),
    ridges: Sequence[float] = (INF, 1.0, 0.1),
    squares: bool = False,
) -> tuple[Critic, ...]:
    """The linear kernel, the squared coordinates (``squares``) and each Gaussian bandwidth,
    each with every ridge."""
    kernels: list[float | str | None] = [None, *([SQUARES] if squares else []), *gammas]
    return tuple(Critic(g, r) for g in kernels for r in ridges)


class CriticMetric:
    """One critic's inner product ⟨f_u, f_v⟩_M = f_uᵀMf_v on the centred features (M = I, or
    (G + λ)⁻¹/n for a ridge), and the U-statistic of an attribute under it.

    U = Σ_{u≠v} ⟨f_u, f_v⟩_M ⟨y_u, y_v⟩ = tr(SᵀMS) − Σ_u ‖f_u‖²_M ‖y_u‖² with S = FᵀY. Under a
    uniform permutation of the rows of the centred Y its mean is
    −(Σ_{u≠v} ⟨f_u, f_v⟩_M)/(m(m−1))·‖Y‖² exactly, and its spread is close to
    √(2·Σ_{u≠v} ⟨f_u, f_v⟩²_M·E⟨y_u, y_v⟩²) (pairs taken as independent; checked against
    permutations in tests/test_relabel.py). The row pass (FM, ‖f_u‖²_M, FᵀFM) is shared by every
    attribute that covers all rows; the rest are (D, D) and (D, K) products."""

    def __init__(self, feats: Tensor, metric: Tensor | None, gram: Tensor | None = None) -> None:
        self.feats, self.metric = feats, metric
        self.gram_metric: Tensor | None = None  # FᵀFM over all rows (kept by ``_rows``)
        self.whole = self._rows(feats, gram, keep=True)

    def _rows(
        self, f: Tensor, gram: Tensor | None = None, keep: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``gram``: FᵀF of ``f`` when the caller has it (saves an (n, D, D) product); ``keep``:
        store FᵀFM for ``pair_correlation``."""
        fm = f if self.metric is None else f @ self.metric
        sq_norms = (fm * f).sum(1)  # ‖f_u‖²_M
        with torch.no_grad():
            gram = f.T @ f if gram is None else gram.detach()
            if self.metric is not None:
                gram = gram @ self.metric.detach()
            # Σ_uv ⟨f_u, f_v⟩²_M = tr((FᵀFM)²) for a symmetric M
            pair_sq = (gram * gram.T).sum() - sq_norms.detach().square().sum()
            if keep:
                self.gram_metric = gram
        return fm, sq_norms, pair_sq

    def rows(self, attr: _Attribute | LabelBlock) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """F, FM, ‖f_u‖²_M and Σ_{u≠v} ⟨f_u, f_v⟩²_M over ``attr``'s users."""
        if len(attr.users) == len(self.feats):
            return (self.feats, *self.whole)
        f = self.feats[attr.users]
        return (f, *self._rows(f))

    def statistic(self, block: LabelBlock) -> tuple[Tensor, Tensor]:
        """(U − E_π U, sd_π U) of every labeling of ``block``, one entry per labeling; the first
        is differentiable. One (D, C) product serves all of them."""
        f, fm, sq_norms, off_sq = self.rows(block)
        y = block.labels
        m = len(f)
        s = f.T @ y
        ms = s if self.metric is None else self.metric @ s
        per_column = (s * ms).sum(0) - sq_norms @ y.square()
        u_stat = per_column @ block.segments
        total = f.sum(0)
        mt = total if self.metric is None else self.metric @ total
        off_diagonal = total @ mt - sq_norms.sum()
        null_mean, null_sd = null_moments(m, off_diagonal, off_sq, block.label_sq, block.pair_sq)
        return u_stat - null_mean, null_sd


def pair_correlation(a: CriticMetric, b: CriticMetric, block: LabelBlock) -> Tensor:
    """The correlation of two critics' U on the same features (one kernel, two metrics) under a
    permutation of ``block``'s labels: Σ_{u≠v} k_uv k'_uv / √(Σ k_uv² · Σ k'_uv²), the pairs taken
    as independent as in their spreads (the labels' factor cancels). Σ_{u≠v} k_uv k'_uv =
    tr(FᵀF M FᵀF M') − Σ_u ‖f_u‖²_M ‖f_u‖²_M'. No gradient."""
    with torch.no_grad():
        f, _, q_a, pair_a = a.rows(block)
        _, _, q_b, pair_b = b.rows(block)
        if len(block.users) == len(a.feats):  # all rows: the products the critics kept
            g_a, g_b = a.gram_metric, b.gram_metric
        else:
            gram = f.T @ f
            g_a = gram if a.metric is None else gram @ a.metric
            g_b = gram if b.metric is None else gram @ b.metric
        cross = (g_a * g_b.T).sum() - (q_a * q_b).sum()
        return cross / torch.sqrt(pair_a * pair_b).clamp_min(1e-30)


def fourier_draw(
    gammas: Sequence[float], dim: int, n_features: int, generator: torch.Generator, dtype
) -> dict[float, tuple[Tensor, Tensor]]:
    """Random Fourier features of the Gaussian kernel exp(−gamma·‖z − z'‖²/dim) for every
    bandwidth: (weights (dim, n_features), phases (n_features,)), drawn from ``generator``."""
    draws = {}
    for gamma in gammas:
        std = math.sqrt(2.0 * gamma / dim)
        weights = torch.randn(
            dim, n_features, generator=generator, device=generator.device, dtype=dtype
        )
        phases = torch.rand(n_features, generator=generator, device=generator.device, dtype=dtype)
        draws[gamma] = (weights.mul_(std), phases.mul_(2.0 * math.pi))
    return draws


def critic_features(z: Tensor, gamma: float | str | None, draw: dict) -> Tensor:
    """A critic's features of the standardised rows ``z``: the linear kernel's (z/√d), the
    squared coordinates' (z²/√(2d): unit variance for Gaussian coordinates) or the Gaussian
    kernel's random Fourier features from ``draw``."""
    if gamma is None:
        return z / math.sqrt(z.shape[1])
    if gamma == SQUARES:
        return z.square() / math.sqrt(2.0 * z.shape[1])
    weights, phases = draw[gamma]
    return torch.cos(torch.addmm(phases, z, weights)) * math.sqrt(2.0 / weights.shape[1])


def kernel_statistics(
    z: Tensor,
    gamma: float | str | None,
    critics: Sequence[Critic],
    draw: dict[float, tuple[Tensor, Tensor]],
    blocks: Sequence[LabelBlock],
) -> tuple[dict[tuple[str, str], tuple[Tensor, Tensor]], dict[Critic, CriticMetric]]:
    """(U − E_π U, sd_π U) of every labeling of ``blocks`` under each of ``critics`` (the
    critics of one kernel, ``gamma``; its random features from ``draw``) on the standardised
    rows ``z``, keyed (labeling, critic name); and each critic's ``CriticMetric`` (for the
    contrasts and the spectral critics). The features are centred: the null's spread then
    follows ‖A‖ closely. One feature pass and one Gram matrix serve every critic."""
    feats = critic_features(z, gamma, draw)
    feats = feats - feats.mean(0)
    n = len(feats)
    gram = feats.T @ feats / n
    out, metrics = {}, {}
    for critic in critics:
        metric = None  # the critic's inner product: ⟨f_u, f_v⟩ or f_uᵀ(G + λ)⁻¹f_v / n
        if critic.ridge != INF:
            eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
            chol = torch.linalg.cholesky(gram + critic.ridge * gram.diagonal().mean() * eye)
            metric = torch.cholesky_inverse(chol) / n
        shared = CriticMetric(feats, metric, gram * n)
        metrics[critic] = shared
        for block in blocks:
            excess, spread = shared.statistic(block)
            for name, e, sd in zip(block.names, excess.unbind(), spread.unbind(), strict=True):
                out[name, critic.name] = e, sd
    return out, metrics
