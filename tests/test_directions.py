"""Per-direction and spectral critics (losses/directions.py): leakage concentrated in one
direction among many, which the kernel critics' sums dilute, is seen and removed, and the
statistics follow their permutation null on noise."""

from __future__ import annotations

import math

import pytest
import torch

from recbole_attrcloak.losses import RelabelingNull
from recbole_attrcloak.losses.attribute_labels import _attribute
from recbole_attrcloak.losses.directions import (
    direction_basis,
    direction_statistics,
    family_tolerance,
    principal_axes,
    spectral_matrix,
)
from tests.test_relabel import _attack, _unlearn


def _concentrated(amplitude: float, n: int = 1000, d: int = 48, k: int = 8, seed: int = 0):
    """k classes whose means differ along the first coordinate only, noise in d dimensions."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    x[:, 0] += amplitude * (2 * y.double() / (k - 1) - 1)
    return x, y


def test_one_leaking_direction_is_diluted_in_the_sums_but_seen_by_spectra_and_axes():
    x, y = _concentrated(0.3)
    x[:, 1:3] += 0.7 * x[:, :1]  # a shared factor: the leaking direction is the top axis
    objective = RelabelingNull({"a": y}, spectral=2, directions=4, seed=0)
    objective.check(x)
    z = {critic: value for (_, critic), value in objective.checked.items()}
    sums = [v for c, v in z.items() if "axis" not in c and "/top" not in c]
    assert max(abs(v) for v in sums) < 2.5  # every kernel critic: about the tolerance
    assert z["linear/ridge=inf/top1"] > 4  # the best discriminant direction is not
    assert abs(z["linear/ridge=inf/top2"]) < 2  # and it is the only one
    assert z["axis1"] > 6  # nor is the principal axis that carries the class means
    assert max(abs(z[f"axis{j}"]) for j in (2, 3, 4)) < 3


def test_spectral_z_scores_follow_the_permutation_null_on_noise():
    x, _ = _concentrated(0.0, n=600, d=16)
    g = torch.Generator().manual_seed(5)
    zs = []
    for r in range(20):
        y = torch.randint(0, 4, (len(x),), generator=g)
        objective = RelabelingNull({"a": y}, critics=(), spectral=3, seed=r)
        objective.critics = RelabelingNull({"a": y}).critics[:3]  # the linear critics
        objective.check(x)
        zs += [z for (_, c), z in objective.checked.items() if "/top" in c]
    zs = torch.tensor(zs)
    assert zs.mean().abs() < 0.3
    assert 0.7 < float(zs.std()) < 1.4


def test_direction_null_matches_permutations():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64) ** 3  # heavy tails
    attr = _attribute("a", torch.randint(0, 3, (300,), generator=g), 2)
    excess, spread = direction_statistics(x, attr.labels, attr.label_sq, attr.pair_sq)
    perms = []
    for _ in range(2000):
        p = torch.randperm(300, generator=g)
        e, _ = direction_statistics(x, attr.labels[p], attr.label_sq, attr.pair_sq)
        perms.append(e)
    perms = torch.stack(perms)
    assert torch.allclose(
        perms.mean(0), torch.zeros(3, dtype=torch.float64), atol=0.1 * float(spread.min())
    )
    assert torch.allclose(perms.std(0), spread, rtol=0.15)


def test_the_trace_of_the_spectral_matrix_is_the_linear_u_statistic():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(50, 4, generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.randint(0, 3, (50,), generator=g)).double()
    u = sum(float(f[a] @ f[b] * (y[a] @ y[b])) for a in range(50) for b in range(50) if a != b)
    assert abs(float(spectral_matrix(f, f, f.square().sum(1), y).trace()) - u) < 1e-9


def test_principal_axes_give_unit_variance_projections():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(400, 6, generator=g, dtype=torch.float64) * torch.arange(1.0, 7.0)
    proj = x @ principal_axes(x, 3)
    assert torch.allclose(proj.var(0), torch.ones(3, dtype=torch.float64), atol=1e-9)
    assert proj.var(0).shape == (3,)


def test_the_spectral_critics_move_a_planted_direction_towards_chance():
    x, y = _concentrated(0.6, n=800, d=32, k=4)
    x = x.float()
    assert _attack(x, y, "logreg") > 0.33  # planted: a linear attacker reads it (chance 0.25)
    after, outcome = _unlearn(x, {"a": y}, au_spectral=3, au_max_steps=300)
    assert outcome.stop_reason == "target_reached"
    assert abs(_attack(after, y, "logreg") - 0.25) < 0.06


def test_the_axes_tolerance_grows_with_their_number_as_the_null_maximum_does():
    assert family_tolerance(2.0, 27, 27) == pytest.approx(2.0)
    bounds = [family_tolerance(2.0, 27, n) for n in (27, 48, 192, 384)]
    assert bounds == sorted(bounds) and bounds[-1] < 3.2
    g = torch.Generator().manual_seed(6)
    for n in (27, 192):  # null z-scores meet their family's bound equally often
        draws = torch.randn(20000, n, generator=g, dtype=torch.float64).abs().amax(1)
        met = float((draws <= family_tolerance(2.0, 27, n)).double().mean())
        assert met == pytest.approx(math.erf(2.0 / math.sqrt(2.0)) ** 27, abs=0.015)


def test_the_axes_on_noise_barely_move_the_state_and_push_no_attacker_below_chance():
    x = torch.randn(600, 16, generator=torch.Generator().manual_seed(7))
    y = torch.randint(0, 3, (600,), generator=torch.Generator().manual_seed(8))
    after, _ = _unlearn(x, {"a": y}, au_directions=16, au_spectral=0)
    assert float((after - x).norm() / x.norm()) < 0.05
    assert _attack(after, y, "logreg") > 0.30  # chance: 1/3
    objective = RelabelingNull({"a": y}, directions=16, tolerance=2.0, margin=1.5)
    objective.check(x.double())
    assert objective.axis_tolerance > objective.tolerance
    assert objective.axis_margin - objective.margin == pytest.approx(
        objective.axis_tolerance - objective.tolerance
    )


def _one_coordinate(amplitude: float, n: int = 1000, d: int = 128, seed: int = 0):
    """Two classes whose means differ along the first raw coordinate only, under three strong
    factors shared by all coordinates (as in trained embeddings): the factors inflate the
    kernel critics' null spread, and the principal axes mix the leaking coordinate with others."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x += 3.0 * torch.randn(n, 3, generator=g) @ torch.randn(3, d, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    x[:, 0] += amplitude * (2 * y.float() - 1)
    return x, y


def _first_coordinate_z(x: torch.Tensor, y: torch.Tensor) -> float:
    attr = _attribute("a", y, 2)
    z = (x.double() - x.double().mean(0)) / x.double().std(0)
    excess, spread = direction_statistics(
        z[:, :1] - z[:, :1].mean(0), attr.labels, attr.label_sq, attr.pair_sq
    )
    return float(excess[0] / spread[0])


def test_a_leak_in_one_coordinate_is_left_by_the_kernels_and_removed_by_coordinate_critics():
    x, y = _one_coordinate(0.14)
    assert _first_coordinate_z(x, y) > 5  # planted
    settings = {"au_max_steps": 300, "au_crossfit": []}
    kernels, outcome = _unlearn(x, {"a": y}, **settings)  # the kernel critics alone
    # every kernel critic within its tolerance from the start: nothing moves, the coordinate leaks
    assert outcome.stop_reason == "target_reached" and outcome.kept_step == 0
    assert _first_coordinate_z(kernels, y) > 5
    coords, outcome = _unlearn(
        x, {"a": y}, au_directions=128, au_direction_basis="coordinates", **settings
    )
    assert outcome.stop_reason == "target_reached"
    assert abs(_first_coordinate_z(coords, y)) < 2.5
    assert float((coords - x).norm() / x.norm()) < 0.1


def test_the_coordinate_basis_is_the_standardised_coordinates_themselves():
    x = torch.randn(50, 6, dtype=torch.float64)
    assert torch.equal(direction_basis(x, 4, "coordinates"), torch.eye(6, 4, dtype=torch.float64))
    assert direction_basis(x, 9, "coordinates").shape == (6, 6)
    with pytest.raises(ValueError, match="direction basis"):
        direction_basis(x, 4, "rows")
