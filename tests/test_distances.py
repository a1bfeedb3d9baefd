"""Tests of the U2U / D2D baseline losses (recbole_attrcloak.losses.distances): the exact
estimators against naive loops, the random-Fourier-feature MMD² against the exact one."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from recbole_attrcloak.losses import d2d_loss, mmd2, random_fourier_features, u2u_loss
from recbole_attrcloak.losses.distances import _default_bandwidths, _sq_dists, sampled_bandwidths


def test_u2u_matches_naive_double_loop():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(25, 4, generator=g, dtype=torch.float64) + 10.0
    labels = torch.randint(-1, 3, (25,), generator=g)
    assert (labels == -1).any() and len(set(labels.tolist()) - {-1}) == 3
    naive = sum(
        float((emb[i] - emb[j]).square().sum())
        for i, j in itertools.combinations(range(25), 2)
        if labels[i] >= 0 and labels[j] >= 0 and labels[i] != labels[j]
    )
    assert float(u2u_loss(emb, labels)) == pytest.approx(naive, rel=1e-10)
    got32 = u2u_loss(emb.float(), labels)
    assert got32.dtype == torch.float32
    assert float(got32) == pytest.approx(naive, rel=1e-5)


def test_u2u_gradient_pulls_classes_together():
    emb = torch.tensor([[0.0], [0.0], [2.0], [9.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, -1])
    loss = u2u_loss(emb, labels)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(8.0)
    torch.testing.assert_close(emb.grad, torch.tensor([[-4.0], [-4.0], [8.0], [0.0]]))


def test_mmd2_small_for_same_distribution_and_positive_for_shifted():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(500, 8, generator=g), torch.randn(500, 8, generator=g)
    shifted = torch.randn(500, 8, generator=g) + 1.5  # mean shift of 4.2 along the diagonal
    assert abs(float(mmd2(x, y))) < 0.01
    assert float(mmd2(x, shifted)) > 0.1


def test_mmd2_matches_naive_unbiased_estimator():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randn(9, 3, generator=g, dtype=torch.float64) + 0.5
    bandwidths = [0.5, 2.0]

    def k(a: torch.Tensor, b: torch.Tensor) -> float:
        sq = float((a - b).square().sum())
        return sum(math.exp(-sq / (2 * s**2)) for s in bandwidths) / 2

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(a, b) for a in x for b in y) / (7 * 9)
    assert float(mmd2(x, y, bandwidths)) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_d2d_is_mean_of_pairwise_mmd2_and_has_finite_grad():
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(60, 5, generator=g, dtype=torch.float64)
    labels = torch.arange(60) % 4 - 1  # classes 0, 1, 2 and unknown users
    labels[1] = 3  # a single-user class: skipped
    emb[labels == 0] += 1.0
    emb.requires_grad_(True)
    bandwidths = [0.7, 1.4]
    loss = d2d_loss(emb, labels, bandwidths)
    pairs = [(0, 1), (0, 2), (1, 2)]
    want = sum(mmd2(emb[labels == a], emb[labels == b], bandwidths) for a, b in pairs) / 3
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-10)
    d2d_loss(emb, labels).backward()
    assert torch.isfinite(emb.grad).all()
    assert emb.grad.abs().sum() > 0


def test_bad_inputs():
    emb = torch.randn(10, 3)
    with pytest.raises(ValueError, match="2 classes"):
        u2u_loss(emb, torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="2 classes"):
        d2d_loss(emb, torch.full((10,), -1))
    with pytest.raises(ValueError, match="labels"):
        u2u_loss(emb, torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="2 points"):
        mmd2(emb[:1], emb)
    with pytest.raises(ValueError, match="bandwidths"):
        mmd2(emb[:5], emb[5:], [0.0])


def _three_classes(n: int = 900, d: int = 16, shift: float = 0.3, seed: int = 4):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64) * 0.2
    labels = torch.randint(0, 3, (n,), generator=g)
    labels[::50] = -1  # unknown users
    emb[labels == 0, 0] += shift
    return emb, labels


def test_random_fourier_features_estimate_the_mixture_kernel():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    bandwidths = [0.7, 2.0]
    phi = random_fourier_features(x, bandwidths, 20000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(phi.square().sum(1), torch.ones(6, dtype=torch.float64))
    sq = torch.cdist(x, x).square()
    kernel = sum(torch.exp(-sq / (2 * b**2)) for b in bandwidths) / 2
    assert float((phi @ phi.T - kernel).abs().max()) < 0.03


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_rff_d2d_matches_the_exact_estimate(shift):
    """One draw of 4096 features lands within 0.001 of the exact MMD² (0.015 for the shifted
    classes; a draw's spread is 0.0003), and the mean of 20 draws of 1024 within 0.0004, which
    doubling the bandwidths (a kernel twice as wide: 0.001 off) would miss: the estimator is
    unbiased for the same kernel."""
    emb, labels = _three_classes(shift=shift)
    bandwidths = [0.2, 0.5, 1.0]
    exact = float(d2d_loss(emb, labels, bandwidths))
    assert (exact > 0.005) == (shift > 0)

    def rff(features: int, seed: int) -> float:
        generator = torch.Generator().manual_seed(seed)
        return float(
            d2d_loss(
                emb, labels, bandwidths, estimator="rff", n_features=features, generator=generator
            )
        )

    assert abs(rff(4096, 0) - exact) < 1e-3
    assert abs(sum(rff(1024, s) for s in range(20)) / 20 - exact) < 4e-4
    # with its own (subsampled median) bandwidths, still on the exact estimate's scale
    default = float(
        d2d_loss(
            emb,
            labels,
            estimator="rff",
            n_features=4096,
            generator=torch.Generator().manual_seed(1),
        )
    )
    assert abs(default - float(d2d_loss(emb, labels))) < 2e-3


def test_rff_d2d_gradient_points_where_the_exact_one_does():
    emb, labels = _three_classes(shift=0.2)

    def grad(**options) -> torch.Tensor:
        x = emb.clone().requires_grad_(True)
        d2d_loss(x, labels, [0.2, 0.5, 1.0], **options).backward()
        return x.grad.flatten()

    exact = grad()
    rff = grad(estimator="rff", n_features=4096, generator=torch.Generator().manual_seed(2))
    assert float(torch.nn.functional.cosine_similarity(exact, rff, dim=0)) > 0.9
    other = grad(estimator="rff", n_features=4096, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(rff, other)  # a fresh draw per call


def test_sampled_bandwidths_follow_the_full_median():
    emb, _ = _three_classes(n=3000)
    full = _default_bandwidths(_sq_dists(emb))
    sampled = sampled_bandwidths(emb, 1024, torch.Generator().manual_seed(0))
    assert sampled != full
    for a, b in zip(sampled, full, strict=True):
        assert a == pytest.approx(b, rel=0.03)


def test_bad_rff_inputs():
    emb, labels = _three_classes(n=60)
    with pytest.raises(ValueError, match="n_features must be >= 1"):
        d2d_loss(emb, labels, estimator="rff", n_features=0)
    with pytest.raises(ValueError, match="'magic' is not a valid MMDEstimator"):
        d2d_loss(emb, labels, estimator="magic")
