"""The stop's check draws (``au_check_draws``, losses/relabel.py): a Gaussian critic's z is
averaged over more fixed draws of the random features than the folds, which cuts the draw noise
the permutation null does not hold, and the extra draws are skipped when a critic without random
features already puts the state beyond its tolerance."""

from __future__ import annotations

import math

import torch

from recbole_attrcloak.losses import RelabelingNull
from recbole_attrcloak.losses.kernel_critics import default_critics
from recbole_attrcloak.losses.stop_state import Scope, random_feature_critic


def _ring(n: int = 400, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes on rings of radius 1 and 1.3 (a weak leak only a Gaussian kernel sees)."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.5).long()
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    angle = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    radius = torch.where(y == 1, 1.3, 1.0)
    x[:, 0], x[:, 1] = radius * torch.cos(angle), radius * torch.sin(angle)
    return x, y


def _count_scopes(monkeypatch) -> list:
    """The scope of every ``zscores`` call from now on, in order."""
    calls = []
    original = RelabelingNull.zscores

    def counting(self, reps, draw=None, scope=Scope.ALL):
        calls.append(scope)
        return original(self, reps, draw, scope)

    monkeypatch.setattr(RelabelingNull, "zscores", counting)
    return calls


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


def test_the_extra_draws_score_exactly_the_statistics_the_stop_reads_as_random():
    """The check's extra draws (``Scope.RANDOM``, chosen by critic kind) and its early break
    (``random_feature_critic``, by name) split the statistics the same way, every family and
    column block on."""
    x, y = _ring()
    objective = RelabelingNull(
        {"a": y},
        critics=default_critics(squares=True),
        n_features=32,
        check_draws=4,
        crossfit=[1.0],
        contrasts=True,
        quadratic=True,
        blocks=(4, 4),
        seed=0,
    )
    objective.check(x)  # fixes the standardisation and the check draws
    extra = set(objective.statistics_at(x, 3, Scope.RANDOM))
    whole = objective.statistics_at(x, 0)
    assert extra and extra == {k for k in whole if random_feature_critic(k[1])}
    assert any("@block" in critic for _, critic in extra)
    assert any("contrast" in critic for _, critic in extra)


def test_the_fixed_and_the_drawn_scopes_split_every_statistic_of_a_draw():
    x, y = _ring()
    objective = RelabelingNull(
        {"a": y}, n_features=32, crossfit=[1.0], quadratic=True, contrasts=True, seed=0
    )
    objective.check(x)
    whole = objective.statistics_at(x, 1)
    fixed = objective.statistics_at(x, 1, Scope.FIXED)
    drawn = objective.statistics_at(x, 1, Scope.DRAWN)
    assert not set(fixed) & set(drawn) and set(fixed) | set(drawn) == set(whole)
    assert any("crossfit" in critic for _, critic in drawn)  # the folds are a draw's too
    assert {critic for _, critic in fixed} >= {"quadratic", "linear/ridge=inf"}
    for key, (excess, spread) in whole.items():  # the same values, however scoped
        part, part_spread = (fixed if key in fixed else drawn)[key]
        assert torch.equal(excess, part) and torch.equal(spread, part_spread)


def test_a_check_equals_the_mean_over_its_draws_of_every_statistic():
    x, y = _ring()
    objective = RelabelingNull({"a": y}, n_features=32, check_draws=3, crossfit=[1.0], seed=0)
    objective.check(x)
    expected = {}
    for i in range(3):  # the first two draws score everything, the third the Gaussian critics
        scope = Scope.ALL if i < 2 else Scope.RANDOM
        for key, z in objective.zscores(x, objective._check_draws[i], scope).items():
            expected.setdefault(key, []).append(float(z))
    assert objective.checked.keys() == expected.keys()
    for key, values in expected.items():
        assert abs(objective.checked[key] - sum(values) / len(values)) < 1e-9


def test_extra_draws_are_skipped_once_a_linear_critic_is_beyond_its_tolerance(monkeypatch):
    x, y = _ring()
    calls = _count_scopes(monkeypatch)
    objective = RelabelingNull({"a": y}, n_features=32, check_draws=6, seed=0)
    objective.check(x)
    # weak ring: every draw scored; the critics no draw changes once, first
    assert calls == [Scope.FIXED] + [Scope.DRAWN] * 2 + [Scope.RANDOM] * 4
    shifted = x.clone()
    shifted[y == 1, 3] += 1.0  # a class-mean shift: the linear critics far beyond tolerance
    calls.clear()
    objective.check(shifted)
    assert calls == [Scope.FIXED, Scope.DRAWN, Scope.DRAWN]
    assert objective.distance() > 0.0


def test_a_steps_check_stops_at_a_linear_critic_beyond_tolerance_with_the_same_verdict():
    x, y = _ring()  # the ring's leak is beyond tolerance for the Gaussian critics only
    shifted = x.clone()
    shifted[y == 1, 3] += 0.6  # and a class-mean shift: the linear critics beyond it too
    linear, gaussian = ("a", "linear/ridge=inf"), ("a", "rbf1/ridge=inf")
    for state, early in ((x, False), (shifted, True)):
        full = RelabelingNull({"a": y}, n_features=32, check_draws=4, seed=0)
        staged = RelabelingNull({"a": y}, n_features=32, check_draws=4, seed=0)
        full.check(x)  # the original fixes the standardisation
        staged.check(x)
        full.check(state)
        # what a step's own (fresh) draw says of this state
        estimate = {k: float(z) for k, z in staged.zscores(state).items()}
        staged.check(state, estimate=estimate)
        assert full.distance() > 0.0 and staged.distance() > 0.0  # the same verdict
        assert staged.estimated == early  # stopped after the linear critics only then
        assert abs(staged.checked[linear]) > 2.0 or not early
        assert staged.checked[linear] == full.checked[linear]  # no draw changes it
        if early:  # the rest stood in by the step's own z
            assert staged.checked[gaussian] == estimate[gaussian] != full.checked[gaussian]
        else:
            assert staged.checked == full.checked


def test_a_steps_check_takes_the_fixed_statistics_from_the_steps_own_scores(monkeypatch):
    x, y = _ring()
    x = x[:, 2:]  # the ring's two coordinates dropped: noise, no statistic beyond its tolerance
    objective = RelabelingNull({"a": y}, n_features=32, check_draws=4, quadratic=True, seed=0)
    objective.check(x)  # the original: its first stage finds the fixed statistics
    calls = _count_scopes(monkeypatch)
    estimate = {k: float(z) for k, z in objective.zscores(x).items()}  # a step's own scores
    calls.clear()
    objective.check(x, estimate=estimate)
    assert calls == [Scope.DRAWN, Scope.DRAWN] + [Scope.RANDOM] * 2  # no FIXED pass
    fixed = objective.statistics_at(x, 0, Scope.FIXED)
    assert fixed and all(objective.checked[k] == estimate[k] for k in fixed)


def test_the_final_scoring_of_a_state_that_met_the_target_reuses_its_check(monkeypatch):
    x, y = _ring()
    x = x[:, 2:]  # the ring's two coordinates dropped: noise, at the target
    objective = RelabelingNull({"a": y}, n_features=32, check_draws=4, seed=0)
    objective.check(x)
    assert objective.distance() == 0.0
    kept = dict(objective.checked)
    objective.checked = {key: 9.0 for key in kept}  # e.g. a later step's own estimate
    calls = _count_scopes(monkeypatch)
    with torch.no_grad():
        loss = float(objective(x.clone()))  # the same state, another tensor
    assert calls == [] and objective.checked == kept and not objective.estimated
    expected = sum(z * z for z in kept.values()) / len(kept)  # margin 0: the mean z²
    assert abs(loss - expected) < 1e-6 * max(expected, 1.0)
    moved = x.clone()
    moved[0, 0] += 1e-3  # any other state is checked again
    with torch.no_grad():
        objective(moved)
    assert calls[:3] == [Scope.FIXED, Scope.DRAWN, Scope.DRAWN]
    shifted = x.clone()
    shifted[y == 1, 3] += 1.0  # a failed check forgets the state that passed
    objective.check(shifted)
    calls.clear()
    with torch.no_grad():
        objective(x.clone())
    assert calls[:3] == [Scope.FIXED, Scope.DRAWN, Scope.DRAWN]
