"""Attribute distinguishability losses of the U2U-R and D2D-R baselines (paper refs. [2], [75])."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

BANDWIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


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


def _block_mmd2(x: Tensor, one_hot: Tensor, bandwidths: Sequence[float] | None) -> Tensor:
    """Unbiased MMD² between every pair of classes (k, l), k < l, with one RBF mixture kernel."""
    sq = _sq_dists(x)
    if bandwidths is None:
        bandwidths = _default_bandwidths(sq)
    if len(bandwidths) == 0 or not all(0.0 < float(b) < float("inf") for b in bandwidths):
        raise ValueError(f"bandwidths must be positive and finite, got {list(bandwidths)}")
    kernel = sum(torch.exp(sq / (-2.0 * float(b) ** 2)) for b in bandwidths) / len(bandwidths)
    block_sums = one_hot.T @ kernel @ one_hot  # (k, k): Σ of kernel values between two classes
    sizes = one_hot.sum(0)
    # Within a class, drop the diagonal k(x, x) = 1 (unbiased estimator).
    within = (block_sums.diagonal() - sizes) / (sizes * (sizes - 1.0))
    between = block_sums / (sizes[:, None] * sizes[None, :])
    upper = torch.triu_indices(len(sizes), len(sizes), offset=1, device=x.device)
    rows, cols = upper[0], upper[1]
    return within[rows] + within[cols] - 2.0 * between[rows, cols]


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


def d2d_loss(emb: Tensor, labels: Tensor, bandwidths: Sequence[float] | None = None) -> Tensor:
    """Mean over class pairs of mmd2 between the classes' embeddings (labels −1 ignored).

    Classes with fewer than 2 users are skipped (the unbiased estimator needs 2). One kernel for all
    pairs: by default the bandwidths come from all users with a known label, so that the pairs are
    measured on one scale. Memory is O(|U|²).
    """
    x, one_hot = _known_one_hot(emb, labels, min_size=2)
    return _block_mmd2(x, one_hot, bandwidths).mean()
