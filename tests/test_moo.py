"""Tests of the closed-form α_u solver (Eq. 26) and flat_grad (recbole_attrcloak.losses.moo)."""

from __future__ import annotations

import math

import pytest
import torch

from recbole_attrcloak.losses import LossWeights, flat_grad, solve_alpha


def _v(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def _check(weights: LossWeights, alpha: float, w_au: float, w_r: float) -> None:
    assert weights.alpha_u == pytest.approx(alpha)
    assert weights.w_au == pytest.approx(w_au)
    assert weights.w_r == pytest.approx(w_r)


def test_paper_hand_worked_cases():
    # (g_r − g_au)ᵀ g_r / ‖g_au − g_r‖²:
    # orthogonal unit vectors: ((-1, 1)·(0, 1)) / 2 = 0.5
    _check(solve_alpha(_v(1, 0), _v(0, 1), solver="paper"), 0.5, 0.5, 0.5)
    # g_au = (2, 0), g_r = (1, 0): ((-1, 0)·(1, 0)) / 1 = −1 → clipped to 0
    _check(solve_alpha(_v(2, 0), _v(1, 0), solver="paper"), 0.0, 0.0, 1.0)
    # g_au = (2, 0), g_r = (0, 1): ((-2, 1)·(0, 1)) / 5 = 0.2 (interior)
    _check(solve_alpha(_v(2, 0), _v(0, 1), solver="paper"), 0.2, 0.2, 0.8)
    # g_au = (0, 1), g_r = (3, 1): ((3, 0)·(3, 1)) / 9 = 1 → upper bound
    _check(solve_alpha(_v(0, 1), _v(3, 1), solver="paper"), 1.0, 1.0, 0.0)
    # g_au = (1, 1), g_r = (−1, 2): ((−2, 1)·(−1, 2)) / ‖(2, −1)‖² = 4/5 (interior)
    _check(solve_alpha(_v(1, 1), _v(-1, 2), solver="paper"), 0.8, 0.8, 0.2)


def test_paper_result_is_the_min_norm_point():
    g = torch.Generator().manual_seed(0)
    g_au, g_r = torch.randn(50, generator=g), torch.randn(50, generator=g)
    alpha = solve_alpha(g_au, g_r, solver="paper").alpha_u
    grid = torch.linspace(0, 1, 1001)
    norms = torch.stack([(a * g_au + (1 - a) * g_r).norm() for a in grid])
    assert alpha == pytest.approx(float(grid[norms.argmin()]), abs=1e-3)


def test_paper_clipping_to_df_bounds():
    _check(solve_alpha(_v(2, 0), _v(0, 1), solver="paper", bounds=(0.4, 0.4)), 0.4, 0.4, 0.6)
    with pytest.raises(ValueError, match="bounds"):
        solve_alpha(_v(2, 0), _v(0, 1), bounds=(0.0, 1.5))
    _check(solve_alpha(_v(2, 0), _v(1, 0), solver="paper", bounds=(0.1, 1.0)), 0.1, 0.1, 0.9)
    _check(solve_alpha(_v(2, 0), _v(0, 1), solver="paper", bounds=(0.1, 1.0)), 0.2, 0.2, 0.8)
    _check(solve_alpha(_v(2, 0), _v(0, 1), solver="paper", bounds=(0.3, 0.6)), 0.3, 0.3, 0.7)


@pytest.mark.parametrize("solver", ["paper", "normalized"])
def test_equal_gradients_give_half_then_clipped(solver):
    g = _v(3, 4)
    weights = solve_alpha(g, g.clone(), solver=solver)
    assert weights.alpha_u == 0.5
    assert solve_alpha(g, g.clone(), solver=solver, bounds=(0.7, 1.0)).alpha_u == 0.7


def test_zero_retention_gradient():
    # DF at step 0: L_Reg = 0 and its gradient vanishes.
    _check(solve_alpha(_v(1, 2), _v(0, 0), solver="paper", bounds=(0.1, 1.0)), 0.1, 0.1, 0.9)
    norm = math.sqrt(5)
    _check(
        solve_alpha(_v(1, 2), _v(0, 0), bounds=(0.1, 0.9), solver="normalized"),
        0.9,
        0.9 / norm,
        0.0,
    )


def test_zero_unlearning_gradient():
    _check(solve_alpha(_v(0, 0), _v(3, 4), solver="paper", bounds=(0.1, 1.0)), 0.1, 0.1, 0.9)
    _check(
        solve_alpha(_v(0, 0), _v(3, 4), bounds=(0.1, 1.0), solver="normalized"), 0.1, 0.0, 0.9 / 5
    )


@pytest.mark.parametrize("solver", ["paper", "normalized"])
def test_both_gradients_zero(solver):
    weights = solve_alpha(torch.zeros(4), torch.zeros(4), solver=solver, bounds=(0.1, 1.0))
    assert weights.alpha_u == 0.1
    assert all(math.isfinite(w) for w in (weights.w_au, weights.w_r))
    if solver == "normalized":
        assert (weights.w_au, weights.w_r) == (0.0, 0.0)


def test_tiny_gradients_never_give_nan():
    def v64(*xs: float) -> torch.Tensor:
        return torch.tensor(xs, dtype=torch.float64)

    for g_au, g_r in [(v64(1e-200, 0), v64(0, 1e-200)), (v64(1e-310, 0), v64(0, 1))]:
        for solver in ("paper", "normalized"):
            weights = solve_alpha(g_au, g_r, solver=solver)
            assert all(math.isfinite(x) for x in (weights.alpha_u, weights.w_au, weights.w_r))


def test_normalized_is_scale_invariant():
    # Non-parallel gradients: the min-norm point of two unit vectors is always 0.5.
    weights = solve_alpha(_v(300, 0), _v(0.01, 0.02), solver="normalized")
    norm_r = math.sqrt(0.01**2 + 0.02**2)
    _check(weights, 0.5, 0.5 / 300, 0.5 / norm_r)
    combined = weights.w_au * _v(300, 0) + weights.w_r * _v(0.01, 0.02)
    unit = 0.5 * _v(1, 0) + 0.5 * _v(0.01, 0.02) / norm_r
    torch.testing.assert_close(combined, unit)
    # Raw Eq. 26 on the same gradients hardly moves the unlearning objective.
    assert solve_alpha(_v(300, 0), _v(0.01, 0.02), solver="paper").alpha_u < 1e-5
    # Parallel but opposite unit vectors: still 0.5 (the step is zero), then clipped.
    assert solve_alpha(_v(2, 0), _v(-5, 0), solver="normalized").alpha_u == pytest.approx(0.5)
    assert solve_alpha(_v(2, 0), _v(-5, 0), bounds=(0.6, 1.0), solver="normalized").alpha_u == 0.6


def test_fixed():
    _check(solve_alpha(_v(1, 0), _v(0, 1), solver="fixed", fixed_alpha=0.8), 0.8, 0.8, 0.2)
    _check(solve_alpha(_v(0, 0), _v(0, 0), solver="fixed", fixed_alpha=0.0), 0.0, 0.0, 1.0)
    # both ends of [0, 1] are allowed: all unlearning, or all retention
    _check(solve_alpha(_v(1, 0), _v(0, 1), solver="fixed", fixed_alpha=1.0), 1.0, 1.0, 0.0)
    _check(solve_alpha(_v(3, 4), _v(0, 1), solver="fixed_unit", fixed_alpha=1.0), 1.0, 0.2, 0.0)
    # fixed_unit by hand: α/‖g_au‖ and (1 − α)/‖g_r‖
    _check(solve_alpha(_v(3, 4), _v(0, 2), solver="fixed_unit", fixed_alpha=0.6), 0.6, 0.12, 0.2)


def test_bad_arguments():
    g = _v(1, 0)
    with pytest.raises(ValueError, match="solver"):
        solve_alpha(g, g, solver="mgda")
    with pytest.raises(ValueError, match="bounds"):
        solve_alpha(g, g, bounds=(0.5, 0.2))
    with pytest.raises(ValueError, match="bounds"):
        solve_alpha(g, g, bounds=(-0.1, 1.0))
    with pytest.raises(ValueError, match="fixed_alpha"):
        solve_alpha(g, g, solver="fixed")
    with pytest.raises(ValueError, match="fixed_alpha"):
        solve_alpha(g, g, solver="fixed", fixed_alpha=1.2)
    with pytest.raises(ValueError, match="fixed_alpha"):
        solve_alpha(g, g, solver="paper", fixed_alpha=0.5)
    with pytest.raises(ValueError, match="size"):
        solve_alpha(g, _v(1, 0, 0))
    with pytest.raises(ValueError, match="NaN"):
        solve_alpha(_v(float("nan"), 0), g)


def test_flat_grad():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([[3.0]], requires_grad=True)
    unused = torch.zeros(2, 2, requires_grad=True)
    loss = (a**2).sum() + 5 * b.sum()
    got = flat_grad(loss, [a, b, unused])
    torch.testing.assert_close(got, torch.tensor([2.0, 4.0, 5.0, 0.0, 0.0, 0.0, 0.0]))
    # retain_graph=True by default: the same graph can be differentiated again.
    torch.testing.assert_close(flat_grad(loss, [a], retain_graph=False), torch.tensor([2.0, 4.0]))
    constant = torch.tensor(0.0)
    torch.testing.assert_close(flat_grad(constant, [a, b]), torch.zeros(3))


def test_projected_removes_only_the_conflicting_part():
    # Conflict: g_r = (-1, 1) against g_au = (1, 0) is projected to (0, 1); α = 0.5 and the
    # step is 0.5·(1, 0) + 0.5·(0, 1), written back as weights on the raw gradients.
    weights = solve_alpha(_v(1, 0), _v(-1, 1))
    assert weights.alpha_u == pytest.approx(0.5)
    step = weights.w_au * _v(1, 0) + weights.w_r * _v(-1, 1)
    assert torch.allclose(step, _v(0.5, 0.5))
    # No conflict: the same as "normalized".
    same = solve_alpha(_v(1, 0), _v(1, 1))
    assert same == solve_alpha(_v(1, 0), _v(1, 1), solver="normalized")
    # Exactly opposed: nothing is left of the retention gradient, the step is pure unlearning.
    opposed = solve_alpha(_v(2, 0), _v(-5, 0))
    assert opposed.alpha_u == 1.0
    assert torch.allclose(opposed.w_au * _v(2, 0) + opposed.w_r * _v(-5, 0), _v(1, 0))
    # The unlearning objective always decreases to first order.
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        g_au, g_r = (
            torch.randn(8, generator=gen, dtype=torch.float64),
            torch.randn(8, generator=gen, dtype=torch.float64),
        )
        w = solve_alpha(g_au, g_r)
        assert float((w.w_au * g_au + w.w_r * g_r) @ g_au) > 0


def _reference(g_au: torch.Tensor, g_r: torch.Tensor, solver: str) -> tuple[float, torch.Tensor]:
    """Eq. 26 on explicit float64 vectors (the direct form the Gram-matrix solver replaces): α_u
    in [0, 1] and the step α_u·a + (1 − α_u)·b."""
    a, b = g_au.double(), g_r.double()
    if solver == "projected" and float(a @ b) < 0:
        b = b - float(a @ b) / float(a @ a) * a
    if solver != "paper":
        a, b = a / a.norm(), b / b.norm()
    diff = a - b
    alpha = min(max(float(-(diff @ b)) / float(diff @ diff), 0.0), 1.0)
    return alpha, alpha * a + (1.0 - alpha) * b


@pytest.mark.parametrize("solver", ["paper", "normalized", "projected"])
def test_gram_form_matches_direct_float64_on_long_float32_vectors(monkeypatch, solver):
    # Chunks of 1000 entries cut the 12 345-entry vectors unevenly; float32 input as in a run.
    monkeypatch.setattr("recbole_attrcloak.losses.moo._CHUNK", 1000)
    gen = torch.Generator().manual_seed(1)
    for scale_r in (0.01, 1.0, 30.0):
        g_au = torch.randn(12_345, generator=gen)
        g_r = scale_r * (torch.randn(12_345, generator=gen) - 0.5 * g_au)
        w = solve_alpha(g_au, g_r, solver=solver, bounds=(0.0, 1.0))
        alpha, step = _reference(g_au, g_r, solver)
        assert w.alpha_u == pytest.approx(alpha, rel=1e-6)
        ours = w.w_au * g_au.double() + w.w_r * g_r.double()
        assert torch.allclose(ours, step, rtol=1e-5, atol=1e-9 * float(step.abs().max()))


@pytest.mark.parametrize("alpha", [0.5, 0.9])
def test_fixed_projected_never_holds_the_unlearning_direction_back(alpha):
    g_au = torch.tensor([2.0, 0.0])
    conflicting = torch.tensor([-3.0, 3.0])  # g_auᵀg_r < 0: projected to (0, 3), length 3
    w = solve_alpha(g_au, conflicting, solver="fixed_projected", fixed_alpha=alpha)
    step = w.w_au * g_au + w.w_r * conflicting
    torch.testing.assert_close(step, torch.tensor([alpha, 1.0 - alpha]))  # α·ĝ_au + (1−α)·ĝ_r'
    agreeing = torch.tensor([3.0, 3.0])  # no conflict: the same weights as fixed_unit
    projected = solve_alpha(g_au, agreeing, solver="fixed_projected", fixed_alpha=alpha)
    unit = solve_alpha(g_au, agreeing, solver="fixed_unit", fixed_alpha=alpha)
    assert (projected.w_au, projected.w_r) == pytest.approx((unit.w_au, unit.w_r))
    plain = solve_alpha(g_au, conflicting, solver="fixed_unit", fixed_alpha=alpha)
    held_back = plain.w_au * g_au + plain.w_r * conflicting
    assert float(held_back[0]) < alpha  # fixed_unit lets retention cancel part of the step


@pytest.mark.parametrize("g_r", [(0.5, 1.0), (0.01, 3.0), (2.0, 0.001)])
def test_projected_leaves_agreeing_gradients_of_any_scale_alone(g_r):
    # g_auᵀg_r > 0 (small or large): no projection, exactly the "normalized" weights (and, for
    # "fixed_projected", the "fixed_unit" ones).
    g_au, retention = _v(1, 0), _v(*g_r)
    assert solve_alpha(g_au, retention) == solve_alpha(g_au, retention, solver="normalized")
    fixed = solve_alpha(g_au, retention, solver="fixed_projected", fixed_alpha=0.3)
    assert fixed == solve_alpha(g_au, retention, solver="fixed_unit", fixed_alpha=0.3)


@pytest.mark.parametrize("solver", ["projected", "fixed_projected"])
def test_exactly_opposed_gradients_leave_no_rounding_residue(solver):
    # g_r = −c·g_au in float: the projection leaves only rounding error of either sign, which
    # must count as zero (a residue would get weight 1/‖residue‖ and swamp the step).
    gen = torch.Generator().manual_seed(3)
    fixed = 0.7 if solver == "fixed_projected" else None
    for _ in range(40):
        g_au = torch.randn(7, generator=gen, dtype=torch.float64)
        scale = float(torch.rand(1, generator=gen, dtype=torch.float64)) * 10 + 0.1
        w = solve_alpha(g_au, -scale * g_au, solver=solver, fixed_alpha=fixed)
        step = w.w_au * g_au + w.w_r * (-scale * g_au)
        expected = (1.0 if fixed is None else fixed) * g_au / g_au.norm()
        assert w.alpha_u == pytest.approx(1.0 if fixed is None else fixed)
        assert w.w_r == 0.0
        torch.testing.assert_close(step, expected)


@pytest.mark.parametrize("solver", ["fixed_unit", "fixed_projected"])
def test_fixed_unit_gives_a_zero_gradient_weight_zero(solver):
    w = solve_alpha(_v(3, 4), _v(0, 0), solver=solver, fixed_alpha=0.6)
    _check(w, 0.6, 0.6 / 5, 0.0)
    w = solve_alpha(_v(0, 0), _v(3, 4), solver=solver, fixed_alpha=0.6)
    _check(w, 0.6, 0.0, 0.4 / 5)


@pytest.mark.parametrize("solver", ["projected", "normalized", "fixed_unit", "fixed_projected"])
def test_an_underflowing_unlearning_gradient_against_a_conflicting_one_stays_finite(solver):
    # ‖g_au‖² underflows to 0 while g_auᵀg_r < 0 does not: no projection (no division by 0).
    fixed = 0.5 if solver.startswith("fixed") else None
    w = solve_alpha(_v(1e-200, 0), _v(-1, 1), solver=solver, fixed_alpha=fixed)
    assert all(math.isfinite(x) for x in (w.alpha_u, w.w_au, w.w_r))
    assert w.w_au == 0.0


def test_gradients_equal_up_to_rounding_count_as_equal():
    # g_r = (1 + 10⁻⁷)·g_au at a large scale: ‖g_au − g_r‖² is 10⁻¹⁴ of ‖g_au‖², below the
    # relative tolerance: α = 0.5 (Eq. 26 on the raw numbers would give about 10⁷, clipped to 1).
    gen = torch.Generator().manual_seed(4)
    for _ in range(10):
        g = 1e3 * torch.randn(5, generator=gen, dtype=torch.float64)
        assert solve_alpha(g, (1 + 1e-7) * g, solver="paper").alpha_u == 0.5


@pytest.mark.parametrize("scale", [0.25, 4.0])
def test_fixed_projected_projects_whatever_the_unlearning_gradients_length(scale):
    g_au = _v(scale, 0)
    w = solve_alpha(g_au, _v(-3, 3), solver="fixed_projected", fixed_alpha=0.5)
    step = w.w_au * g_au + w.w_r * _v(-3, 3)
    torch.testing.assert_close(step, _v(0.5, 0.5))
