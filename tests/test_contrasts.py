"""Contrast statistics (``au_contrasts``, losses/contrasts.py): a kernel's whitened
critic minus its raw one, against their joint null under label permutations."""

from __future__ import annotations

import numpy as np
import torch

from recbole_attrcloak.losses import RelabelingNull
from recbole_attrcloak.losses.kernel_critics import default_critics
from tests.test_relabel import _unlearn

LINEAR = default_critics([], [float("inf"), 0.1])


def _z(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    objective = RelabelingNull({"a": y}, critics=LINEAR, contrasts=True, seed=0)
    return {k[1]: float(v) for k, v in objective.zscores(x.float()).items()}


def test_the_contrast_follows_the_permutation_null_with_the_predicted_correlation():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g, dtype=torch.float64)
    x = x @ torch.randn(8, 8, generator=g, dtype=torch.float64)  # correlated coordinates
    y = torch.randint(0, 3, (300,), generator=g)
    draws = np.array(
        [list(_z(x, y[torch.randperm(300, generator=g)]).values()) for _ in range(150)]
    )
    raw, whitened, contrast = draws.T
    # the two critics move together under permutations (ρ well above 0), so their plain
    # difference is far narrower than N(0, 2); over √(2 − 2ρ) with ρ from pair_correlation it
    # is a z like the others
    assert np.corrcoef(raw, whitened)[0, 1] > 0.6
    assert np.std(whitened - raw) < 0.8
    assert abs(contrast.mean()) < 0.2 and 0.8 < contrast.std() < 1.2


def _raw_high_whitened_low(n: int = 600, d: int = 24, seed: int = 1):
    """One shared factor; the classes' means equal along every other principal direction (an
    over-correction there) and a little apart along the top one: each critic alone is within
    ±2, but random labels never put the raw one above the whitened one by that much."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ (torch.eye(d) + 1.5).double()
    y = torch.randint(0, 2, (n,), generator=g)
    centred = x - x.mean(0)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    minor = centred @ vt[1:].T
    for k in (0, 1):
        minor[y == k] -= minor[y == k].mean(0)
    along = centred @ vt[0] + 0.14 * s[0] / n**0.5 * (y == 1).double()
    return (minor @ vt[1:] + along[:, None] * vt[0]).float(), y


def test_a_raw_high_whitened_low_state_passes_each_critic_but_not_the_contrast():
    x, y = _raw_high_whitened_low()
    z = _z(x, y)
    assert abs(z["linear/ridge=inf"]) < 2 and abs(z["linear/ridge=0.1"]) < 2
    assert z["linear/contrast"] < -3


def test_unlearning_with_contrasts_brings_the_pattern_back_to_the_null():
    x, y = _raw_high_whitened_low()
    settings = {"au_kernel_gammas": [1.0], "au_max_steps": 200}
    left, without = _unlearn(x, {"a": y}, au_contrasts=False, **settings)
    contrast = "a/linear/contrast/z"
    assert contrast not in {t.name for t in without.terms}
    assert _z(left, y)["linear/contrast"] < -3  # without the contrasts the pattern stays
    repaired, outcome = _unlearn(x, {"a": y}, au_contrasts=True, **settings)
    assert outcome.stop_reason == "target_reached"
    terms = {t.name: t.value for t in outcome.terms}
    assert abs(terms[contrast]) <= 2.0
    assert _z(repaired, y)["linear/contrast"] > -2.5  # on a fresh objective too
    assert float((repaired - x).norm() / x.norm()) < 0.1
