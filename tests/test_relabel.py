"""The random-relabeling objective (losses/relabel.py): calibrated against its permutation null,
blind to nothing a kernel sees, differentiable, and honest about what it drops."""

from __future__ import annotations

import math

import pytest
import torch

from recbole_attrcloak.losses import LeakageObjective, RelabelingNull, default_critics
from recbole_attrcloak.losses.relabel import Critic


def _noise(n: int = 400, d: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _ring(n: int = 500, d: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes on rings of radius 1 and 2 in the first two coordinates (same mean, and a
    difference a linear critic cannot see), Gaussian noise elsewhere."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.4).long()
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    angle = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    radius = torch.where(y == 1, 2.0, 1.0) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    x[:, 0], x[:, 1] = radius * torch.cos(angle), radius * torch.sin(angle)
    return x, y


def test_z_scores_follow_the_permutation_null_on_noise():
    x = _noise()
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (len(x),), generator=g)
    zs = []
    for r in range(30):
        shuffled = labels[torch.randperm(len(x), generator=g)]
        objective = RelabelingNull({"a": shuffled}, n_features=64, seed=r)
        zs.append(torch.stack(list(objective.zscores(x).values())))
    zs = torch.stack(zs)
    assert zs.mean().abs() < 0.2  # every critic centred on its null ...
    assert zs.mean(0).abs().max() < 0.6
    assert 0.7 < float(zs.std()) < 1.3  # ... with the null's spread


def test_planted_class_means_are_seen_by_every_linear_critic():
    x = _noise()
    y = (torch.arange(len(x)) % 2).long()
    x[y == 1, 0] += 0.8
    zs = RelabelingNull({"a": y}, seed=0).zscores(x)
    linear = [float(z) for (attr, critic), z in zs.items() if critic.startswith("linear")]
    assert min(linear) > 5


def test_ring_leakage_is_seen_by_the_gaussian_kernels_only():
    x, y = _ring()
    zs = RelabelingNull({"a": y}, seed=0).zscores(x)
    linear = max(abs(float(z)) for (_, c), z in zs.items() if c.startswith("linear"))
    rbf = max(float(z) for (_, c), z in zs.items() if c.startswith("rbf1/"))
    assert linear < 3
    assert rbf > 8


def test_features_are_drawn_afresh_but_the_check_is_fixed():
    x, y = _ring()
    objective = RelabelingNull({"a": y}, seed=0)
    first, second = objective(x), objective(x)
    assert float(first) != float(second)  # a new draw of random features per call
    assert objective.check(x) == objective.check(x)


def test_implements_the_objective_protocol_and_reports_every_statistic():
    x, y = _ring()
    objective = RelabelingNull({"gender": y}, tolerance=2.0, seed=0)
    assert isinstance(objective, LeakageObjective)
    objective(x)
    terms = objective.terms()
    assert len(terms) == len(default_critics())
    assert all(t.name.startswith("gender/") and t.target == 0.0 for t in terms)
    worst = max(abs(t.value) for t in terms)
    assert objective.progress() == {"max_abs_z": pytest.approx(worst)}
    assert objective.distance() == pytest.approx(worst - 2.0)
    assert [t.met for t in terms] == [abs(t.value) <= 2.0 for t in terms]


def test_unknown_users_and_small_classes_are_left_out():
    x = _noise(300)
    codes = torch.arange(300) % 3
    codes[:50] = -1  # unknown (RecBole's padding user is one)
    codes[50] = 7  # a class of one user
    objective = RelabelingNull({"a": codes}, min_class_size=2, seed=0)
    assert objective.dropped_classes == {"a": (7,)}
    z_all = objective.zscores(x)
    moved = x.clone()
    moved[:51] += 100.0  # the unknown users and the dropped class change nothing ...
    objective_again = RelabelingNull({"a": codes}, min_class_size=2, seed=0)
    objective_again.zscores(x)  # same standardisation as the first
    draw = objective._check_draw
    before = objective.zscores(x, draw)
    after = objective.zscores(moved, draw)
    assert all(torch.isclose(before[k], after[k]) for k in before)
    assert set(z_all) == set(before)
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        RelabelingNull({"a": torch.tensor([0, 0, 0, 1, -1])}, min_class_size=2)


def test_gradient_matches_finite_differences():
    x, y = _ring(n=40, d=3)
    critics = (Critic(None, 1.0), Critic(1.0, math.inf), Critic(4.0, 0.1))
    objective = RelabelingNull({"a": y}, critics=critics, n_features=8, seed=0)
    objective.zscores(x)  # fixes the standardisation
    draw = objective._check_draw

    def loss(reps: torch.Tensor) -> torch.Tensor:  # the statistics' excesses over their null
        excesses = [excess for excess, _ in objective.statistics(reps, draw).values()]
        return torch.stack(excesses).square().sum()

    torch.autograd.gradcheck(loss, (x.clone().requires_grad_(),), eps=1e-6, atol=1e-4)
