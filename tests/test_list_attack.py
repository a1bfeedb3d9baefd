"""The recommendation-list attacker (audit/list_attack.py): planted list preferences are read,
lists independent of the labels follow the permutation null."""

from __future__ import annotations

import numpy as np
import pytest

from recbole_attrcloak.audit.list_attack import list_kernel, list_leakage
from recbole_attrcloak.data.attributes import AttributeLabels


def _labels(codes: np.ndarray) -> AttributeLabels:
    return AttributeLabels("a", codes, tuple(str(c) for c in range(int(codes.max()) + 1)))


def _lists(y: np.ndarray, planted: int, seed: int) -> np.ndarray:
    """Top-10 lists over 300 items; users of class 1 get ``planted`` of theirs from items 0-19."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in y:
        block = rng.choice(20, planted, replace=False) if label == 1 else np.array([], dtype=int)
        rest = rng.choice(np.arange(20, 300), 10 - len(block), replace=False)
        rows.append(np.concatenate([block, rest]))
    return np.array(rows)


def test_list_kernel_counts_the_items_two_lists_share():
    top = np.array([[1, 2, 3], [3, 4, 5], [9, 8, 7]])
    assert list_kernel(top).tolist() == [[3, 1, 0], [1, 3, 0], [0, 0, 3]]


def test_planted_list_preferences_are_read_above_chance():
    y = np.random.default_rng(0).integers(0, 2, 400)
    result = list_leakage(_lists(y, planted=2, seed=1), _labels(y), n_permutations=100)
    assert result.balanced_accuracy > 0.6 and result.chance == 0.5
    assert result.p_value_two_sided <= 0.01 and result.p_value <= 0.01 and result.z > 4
    assert result.p_value_below > 0.9


def test_lists_independent_of_the_labels_follow_the_null():
    rng = np.random.default_rng(2)
    p_values, zs = [], []
    for seed in range(12):
        y = rng.integers(0, 3, 300)
        result = list_leakage(_lists(y, planted=0, seed=seed), _labels(y), n_permutations=60)
        p_values.append(result.p_value_two_sided)
        zs.append(result.z)
    assert 0.3 < np.mean(p_values) < 0.7  # uniform p-values average 0.5
    assert abs(np.mean(zs)) < 0.8 and max(abs(z) for z in zs) < 3.5


def test_unknown_values_and_small_classes_are_left_out():
    y = np.random.default_rng(3).integers(0, 2, 200)
    y[:10] = -1
    y[10:13] = 2  # a class of three users: fewer than one per fold
    result = list_leakage(_lists(y, planted=0, seed=4), _labels(y), n_permutations=10)
    assert (result.n_users, result.n_classes) == (187, 2)
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        list_leakage(_lists(y, 0, 5), _labels(np.where(y == 1, 1, -1)), n_permutations=5)
