"""benchmarks/utility_where.py's reference eraser (LEACE) and its groupings, on planted data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their helpers by bare name

import utility_where  # noqa: E402


def _planted(n: int = 600, d: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    y = rng.integers(0, 3, n)
    x[:, 0] += 2.0 * (y == 1) - 1.5 * (y == 2)  # three classes apart along the first axis
    return x, y


def test_leace_equalises_the_class_means_and_leaves_the_rest():
    x, y = _planted()
    means = np.stack([x[y == k].mean(0) for k in range(3)])
    assert np.abs(means - x.mean(0)).max() > 0.5  # planted
    erased = utility_where.leace(x, [y])
    means = np.stack([erased[y == k].mean(0) for k in range(3)])
    assert np.abs(means - erased.mean(0)).max() < 1e-8  # no linear classifier beats the prior
    # only the (two-dimensional) span the classes need moves: most of x is untouched
    assert np.linalg.matrix_rank(erased - x, tol=1e-8) == 2
    # the change is an oblique projection: erasing again changes nothing
    assert np.abs(utility_where.leace(erased, [y]) - erased).max() < 1e-8


def test_quartiles_split_users_into_four_equal_groups():
    q = utility_where._quartiles(np.array([5.0, 1.0, 3.0, 2.0, 8.0, 7.0, 4.0, 6.0]))
    assert q.tolist() == [2, 0, 1, 0, 3, 3, 1, 2]
