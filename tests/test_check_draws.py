"""The stop's check draws (``au_check_draws``, losses/relabel.py): a Gaussian critic's z is
averaged over more fixed draws of the random features than the folds, which cuts the draw noise
the permutation null does not hold, and the extra draws are skipped when a critic without random
features already puts the state beyond its tolerance."""

from __future__ import annotations

import math

import torch

from recbole_attrcloak.losses import RelabelingNull


def _ring(n: int = 400, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes on rings of radius 1 and 1.3 (a weak leak only a Gaussian kernel sees)."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.5).long()
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    angle = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    radius = torch.where(y == 1, 1.3, 1.0)
    x[:, 0], x[:, 1] = radius * torch.cos(angle), radius * torch.sin(angle)
    return x, y


def _checked(x: torch.Tensor, y: torch.Tensor, draws: int, seed: int) -> dict:
    objective = RelabelingNull({"a": y}, n_features=32, check_draws=draws, seed=seed)
    objective.check(x)
    return objective.checked


def test_more_check_draws_cut_the_random_feature_noise_of_the_stop():
    x, y = _ring()
    key = ("a", "rbf4/ridge=inf")
    spread = {}
    for draws in (2, 8):
        values = torch.tensor([_checked(x, y, draws, seed)[key] for seed in range(24)])
        spread[draws] = float(values.std())
    # the mean of 8 draws against 2: a quarter of the variance, half the SD (sampling error of
    # 24 seeds aside); without the extra draws the two spreads are alike
    assert spread[8] < 0.7 * spread[2]
    # the linear critics have no random features: the same z whatever the number of draws
    linear = ("a", "linear/ridge=inf")
    assert _checked(x, y, 2, 3)[linear] == _checked(x, y, 8, 3)[linear]


def test_the_extra_draws_score_only_the_random_feature_critics():
    x, y = _ring()
    objective = RelabelingNull({"a": y}, n_features=32, check_draws=4, seed=0)
    objective.check(x)  # fixes the standardisation and the check draws
    names = {critic for _, critic in objective.statistics_at(x, 3, random_only=True)}
    assert names and all(name.startswith("rbf") for name in names)
    assert {critic for _, critic in objective.statistics_at(x, 0)} > names


def test_extra_draws_are_skipped_once_a_linear_critic_is_beyond_its_tolerance(monkeypatch):
    x, y = _ring()
    calls = []
    original = RelabelingNull.zscores

    def counting(self, reps, draw=None, random_only=False):
        calls.append(random_only)
        return original(self, reps, draw, random_only)

    monkeypatch.setattr(RelabelingNull, "zscores", counting)
    objective = RelabelingNull({"a": y}, n_features=32, check_draws=6, seed=0)
    objective.check(x)
    assert calls == [False, False, True, True, True, True]  # weak ring: every draw scored
    shifted = x.clone()
    shifted[y == 1, 3] += 1.0  # a class-mean shift: the linear critics far beyond tolerance
    calls.clear()
    objective.check(shifted)
    assert calls == [False, False]
    assert objective.distance() > 0.0


def test_the_loss_without_gradient_is_the_checks_the_same_at_the_same_state():
    x, y = _ring()
    objective = RelabelingNull({"a": y}, n_features=32, check_draws=4, seed=0, margin=0.0)
    with torch.no_grad():
        first, second = float(objective(x)), float(objective(x))
    assert first == second  # fresh draws gave a different value at every call
    expected = sum(z * z for z in objective.checked.values()) / len(objective.checked)
    assert abs(first - expected) < 1e-6 * max(expected, 1.0)
    with_gradient = objective(x.clone().requires_grad_())  # a step: this call's fresh draw
    assert float(with_gradient) != first
