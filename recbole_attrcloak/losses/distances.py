"""Attribute distinguishability losses of the U2U-R and D2D-R baselines (paper refs. [2], [75]).

D2D's MMD² comes in two estimators (``MMDEstimator``) of the same RBF-mixture kernel:

- ``exact``: the unbiased estimator on the |U|×|U| kernel matrix, O(|U|²) time and memory.
- ``rff``: random Fourier features (Rahimi & Recht, 2007): k(x, y) = E_ω[φ(x)·φ(y)] with
  φ(x) = [cos ωᵀx, sin ωᵀx]/√D and ω ~ N(0, I/σ²), D frequencies split over the mixture's
  bandwidths; the within-class and between-class kernel sums then come from each class's sum
  of features, O(|U|·D) time and memory. Unbiased for the exact population MMD² (the features
  are redrawn on each call, so an optimiser sees unbiased gradients of the true kernel rather
  than fitting one fixed draw); its bandwidths come from the median distance of a random
  subsample of ``MEDIAN_SAMPLE`` users.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

import torch
from torch import Tensor

BANDWIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Users whose pairwise distances set the RFF estimator's bandwidths (median heuristic).
MEDIAN_SAMPLE = 1024


class MMDEstimator(StrEnum):
    """``d2d_estimator``: how D2D's MMD² is computed."""

    EXACT = "exact"
    RFF = "rff"


def _known_one_hot(emb: Tensor, labels: Tensor, min_size: int) -> tuple[Tensor, Tensor]:
    """Users with a known label in a class of >= min_size users, and their one-hot class matrix."""
    if emb.dim() != 2 or labels.dim() != 1 or labels.shape[0] != emb.shape[0]:
        raise ValueError(
            f"need emb (n, d) and labels (n,), got {tuple(emb.shape)} and {tuple(labels.shape)}"
        )
    labels = labels.to(emb.device, torch.long)
    known = labels >= 0
    counts = torch.bincount(labels[known]) if bool(known.any()) else labels.new_zeros(0)
    classes = torch.nonzero(counts >= min_size).flatten()
    if classes.numel() < 2:
        raise ValueError(f"need at least 2 classes with >= {min_size} users, got {classes.numel()}")
    one_hot = (labels[:, None] == classes[None, :]).to(emb.dtype)
    keep = one_hot.sum(1) > 0
    return emb[keep], one_hot[keep]


def u2u_loss(emb: Tensor, labels: Tensor) -> Tensor:
    """Σ over unordered user pairs {i, j} in different classes of ‖e_i − e_j‖² (labels −1 ignored).

    Closed form in O(|U|·d): all pairs minus within-class pairs, where the pairs of a set of n
    points sum to n·Σ‖e‖² − ‖Σe‖². Computed in float64 on centred embeddings (the sum is
    translation invariant) to limit cancellation; returned in the embedding dtype.
    """
    x, one_hot = _known_one_hot(emb, labels, min_size=1)
    x = x.to(torch.float64)
    one_hot = one_hot.to(torch.float64)
    x = x - x.mean(0)
    sq_norms = x.square().sum(1)
    all_pairs = x.shape[0] * sq_norms.sum() - x.sum(0).square().sum()
    sizes = one_hot.sum(0)
    class_sums = one_hot.T @ x
    within = (sizes * (one_hot.T @ sq_norms)).sum() - class_sums.square().sum()
    return (all_pairs - within).to(emb.dtype)


def _sq_dists(x: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances (no square root, so gradients stay finite at 0)."""
    x = x - x.mean(0)
    sq_norms = x.square().sum(1)
    return (sq_norms[:, None] + sq_norms[None, :] - 2.0 * x @ x.T).clamp_min(0.0)


def _default_bandwidths(sq_dists: Tensor) -> list[float]:
    """Median pairwise distance × BANDWIDTH_FACTORS (mean if the median is 0, 1 if both are)."""
    n = sq_dists.shape[0]
    off_diag = ~torch.eye(n, dtype=torch.bool, device=sq_dists.device)
    dists = sq_dists.detach()[off_diag].sqrt()
    scale = float(dists.median())
    if scale <= 0.0:
        scale = float(dists.mean()) or 1.0
    return [scale * f for f in BANDWIDTH_FACTORS]


def _check_bandwidths(bandwidths: Sequence[float]) -> None:
    if len(bandwidths) == 0 or not all(0.0 < float(b) < float("inf") for b in bandwidths):
        raise ValueError(f"bandwidths must be positive and finite, got {list(bandwidths)}")


def _mmd2_from_sums(block_sums: Tensor, sizes: Tensor) -> Tensor:
    """Unbiased MMD² of every class pair (k, l), k < l, from the (k, k) sums of kernel values
    between classes (the diagonal sums including k(x, x) = 1, which is dropped here)."""
    within = (block_sums.diagonal() - sizes) / (sizes * (sizes - 1.0))
    between = block_sums / (sizes[:, None] * sizes[None, :])
    upper = torch.triu_indices(len(sizes), len(sizes), offset=1, device=block_sums.device)
    rows, cols = upper[0], upper[1]
    return within[rows] + within[cols] - 2.0 * between[rows, cols]


def _block_mmd2(x: Tensor, one_hot: Tensor, bandwidths: Sequence[float] | None) -> Tensor:
    """Unbiased MMD² between every pair of classes (k, l), k < l, with one RBF mixture kernel."""
    sq = _sq_dists(x)
    if bandwidths is None:
        bandwidths = _default_bandwidths(sq)
    _check_bandwidths(bandwidths)
    kernel = sum(torch.exp(sq / (-2.0 * float(b) ** 2)) for b in bandwidths) / len(bandwidths)
    block_sums = one_hot.T @ kernel @ one_hot  # (k, k): Σ of kernel values between two classes
    return _mmd2_from_sums(block_sums, one_hot.sum(0))


def sampled_bandwidths(
    x: Tensor, sample: int = MEDIAN_SAMPLE, generator: torch.Generator | None = None
) -> list[float]:
    """The median-heuristic bandwidths of ``x`` from the pairwise distances of at most
    ``sample`` of its rows (drawn without replacement; all rows when there are fewer)."""
    if x.shape[0] > sample:
        rows = torch.randperm(x.shape[0], generator=generator, device="cpu")[:sample]
        x = x[rows.to(x.device)]
    return _default_bandwidths(_sq_dists(x.detach()))


def random_fourier_features(
    x: Tensor,
    bandwidths: Sequence[float],
    n_features: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """φ(x), (n, 2·D'), with φ(x)·φ(y) an unbiased estimate of the RBF mixture kernel
    mean_σ exp(−‖x − y‖²/(2σ²)) and ‖φ(x)‖ = 1: D' = ``n_features`` // len(bandwidths) (at
    least 1) frequencies ω ~ N(0, I/σ²) per bandwidth, features [cos ωᵀx, sin ωᵀx]/√(D'·B).
    The frequencies are drawn with ``generator`` (on the CPU, so a seed gives the same draw on
    every device)."""
    _check_bandwidths(bandwidths)
    if n_features < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    per_bandwidth = max(1, n_features // len(bandwidths))
    scales = torch.tensor(
        [1.0 / float(b) for b in bandwidths], dtype=torch.float64
    ).repeat_interleave(per_bandwidth)
    omega = torch.randn(x.shape[1], scales.numel(), generator=generator, dtype=torch.float64)
    omega = (omega * scales).to(device=x.device, dtype=x.dtype)
    projection = x @ omega
    norm = 1.0 / math.sqrt(scales.numel())
    return torch.cat([projection.cos(), projection.sin()], dim=1) * norm


def _block_mmd2_rff(
    x: Tensor,
    one_hot: Tensor,
    bandwidths: Sequence[float] | None,
    n_features: int,
    generator: torch.Generator | None,
) -> Tensor:
    """As ``_block_mmd2``, with the kernel sums from random Fourier features: O(n·D)."""
    x = x - x.mean(0)
    if bandwidths is None:
        bandwidths = sampled_bandwidths(x, generator=generator)
    features = random_fourier_features(x, bandwidths, n_features, generator)
    class_sums = one_hot.T @ features  # (k, 2D)
    return _mmd2_from_sums(class_sums @ class_sums.T, one_hot.sum(0))


def mmd2(x: Tensor, y: Tensor, bandwidths: Sequence[float] | None = None) -> Tensor:
    """Unbiased squared MMD between samples x (m, d) and y (n, d), m, n >= 2.

    Kernel: mean of RBF kernels exp(−‖a − b‖² / (2σ²)) over the bandwidths σ; by default the
    median pairwise distance of the pooled sample times (0.25, 0.5, 1, 2, 4), computed without
    grad. Unbiased, so it can be slightly negative when x and y share a distribution. Memory is
    O((m + n)²).
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need x (m, d) and y (n, d), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"need at least 2 points per sample, got {x.shape[0]} and {y.shape[0]}")
    one_hot = torch.zeros(x.shape[0] + y.shape[0], 2, dtype=x.dtype, device=x.device)
    one_hot[: x.shape[0], 0] = 1.0
    one_hot[x.shape[0] :, 1] = 1.0
    return _block_mmd2(torch.cat([x, y]), one_hot, bandwidths)[0]


def d2d_loss(
    emb: Tensor,
    labels: Tensor,
    bandwidths: Sequence[float] | None = None,
    *,
    estimator: MMDEstimator | str = MMDEstimator.EXACT,
    n_features: int = 1024,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean over class pairs of the unbiased MMD² between the classes' embeddings (labels −1
    ignored).

    Classes with fewer than 2 users are skipped (the unbiased estimator needs 2). One kernel for
    all pairs: by default the bandwidths come from the users with a known label (all of them for
    ``exact``, a subsample for ``rff``), so that the pairs are measured on one scale. ``exact``:
    memory O(|U|²); ``rff``: ``n_features`` random frequencies drawn with ``generator``, memory
    O(|U|·n_features).
    """
    x, one_hot = _known_one_hot(emb, labels, min_size=2)
    if MMDEstimator(estimator) is MMDEstimator.RFF:
        return _block_mmd2_rff(x, one_hot, bandwidths, n_features, generator).mean()
    return _block_mmd2(x, one_hot, bandwidths).mean()
