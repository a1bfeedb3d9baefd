"""BlurMe and LDP data transforms on synthetic profiles (no RecBole)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recbole_attrcloak.data.obfuscation import (
    blurme_additions,
    flip_probability,
    indicative_items,
    indicative_weights,
    randomized_response,
    user_item_lists,
    with_profiles,
)

N_USERS, N_ITEMS = 120, 61  # items 1..60; 0 is RecBole's padding item


def _profiles(seed: int = 0) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Gender 0 prefers items 1-30, gender 1 items 31-60; a 3-class attribute with unknowns."""
    rng = np.random.default_rng(seed)
    gender = np.arange(N_USERS) % 2
    three = np.where(np.arange(N_USERS) % 7 == 0, -1, np.arange(N_USERS) % 3)
    profiles = []
    for u in range(N_USERS):
        own = np.arange(1, 31) if gender[u] == 0 else np.arange(31, 61)
        size = rng.integers(5, 15)
        liked = rng.choice(own, size=size, replace=False)
        other = rng.choice(np.arange(1, N_ITEMS), size=3, replace=False)
        profiles.append(np.unique(np.concatenate([liked, other])))
    return profiles, {"gender": gender, "three": three}


def test_indicative_items_follow_the_planted_preference():
    profiles, codes = _profiles()
    lists = indicative_items(indicative_weights(profiles, codes["gender"], N_ITEMS))
    assert len(lists) == 2
    assert set(lists[0][:10]) <= set(range(1, 31)) and set(lists[1][:10]) <= set(range(31, 61))
    assert not set(lists[0]) & set(lists[1])


def _weights(profiles, codes) -> dict[str, np.ndarray]:
    return {name: indicative_weights(profiles, code, N_ITEMS) for name, code in codes.items()}


@pytest.mark.parametrize("sampled", [False, True])
@pytest.mark.parametrize("p", [0.05, 0.3, 1.0])
def test_blurme_adds_the_expected_items(p, sampled):
    profiles, codes = _profiles()
    weights = _weights(profiles, codes)
    lists = {name: indicative_items(w) for name, w in weights.items()}
    rng = np.random.default_rng(0) if sampled else None
    users, items = blurme_additions(profiles, codes, weights, p, rng)
    for u, rated in enumerate(profiles):
        added = items[users == u]
        candidates = {
            int(item)
            for name, code in codes.items()
            for cls, items in enumerate(lists[name])
            if code[u] >= 0 and cls != code[u]
            for item in items
        }
        expected = min(math.ceil(p * len(rated)), len(candidates - set(rated.tolist())))
        assert len(added) == expected
        assert len(set(added.tolist())) == len(added)
        assert not set(added.tolist()) & set(rated.tolist())
        assert set(added.tolist()) <= candidates


def test_blurme_binary_is_greedy_on_the_opposite_list():
    profiles, codes = _profiles()
    gender = {"gender": codes["gender"]}
    weights = _weights(profiles, gender)
    users, items = blurme_additions(profiles, gender, weights, 0.2)
    for u in (0, 1, 2):
        opposite = indicative_items(weights["gender"])[1 - gender["gender"][u]]
        unrated = [int(i) for i in opposite if i not in set(profiles[u].tolist())]
        assert items[users == u].tolist() == unrated[: math.ceil(0.2 * len(profiles[u]))]


def test_blurme_sampled_spreads_the_additions_over_the_list():
    profiles, codes = _profiles()
    gender = {"gender": codes["gender"]}
    weights = _weights(profiles, gender)
    _, greedy = blurme_additions(profiles, gender, weights, 0.2)
    _, sampled = blurme_additions(profiles, gender, weights, 0.2, np.random.default_rng(0))
    assert len(sampled) == len(greedy)
    assert len(set(sampled.tolist())) > 2 * len(set(greedy.tolist()))


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_ldp_flip_rate_matches_epsilon(epsilon):
    rng = np.random.default_rng(1)
    n_items = 201
    profiles = [np.flatnonzero(rng.random(n_items - 1) < 0.2) + 1 for _ in range(3000)]
    reported = randomized_response(profiles, n_items, epsilon, np.random.default_rng(2))
    ones = sum(len(x) for x in profiles)
    zeros = 3000 * (n_items - 1) - ones
    dropped = sum(len(np.setdiff1d(a, b)) for a, b in zip(profiles, reported, strict=True))
    added = sum(len(np.setdiff1d(b, a)) for a, b in zip(profiles, reported, strict=True))
    q = flip_probability(epsilon)
    assert q == pytest.approx(1 / (1 + math.exp(epsilon)))
    for flips, n in ((dropped, ones), (added, zeros)):
        rate = flips / n
        assert abs(rate - q) < 5 * math.sqrt(q * (1 - q) / n)
        assert math.log((1 - rate) / rate) == pytest.approx(epsilon, abs=0.1)
    assert all(((x >= 1) & (x < n_items)).all() for x in reported)


def test_user_item_lists_and_with_profiles():
    frame = pd.DataFrame(
        {"u": [1, 1, 2, 2, 2], "i": [3, 1, 2, 2, 5], "rating": [1.0, 3.0, 2.0, 2.0, 5.0]}
    )
    lists = user_item_lists(frame["u"].to_numpy(), frame["i"].to_numpy(), 3)
    assert [x.tolist() for x in lists] == [[], [1, 3], [2, 5]]
    out = with_profiles(frame.drop_duplicates(), "u", "i", [[], [1, 4], [2]], {"rating": "mean"})
    assert out.to_dict("list") == {"u": [1, 1, 2], "i": [1, 4, 2], "rating": [3.0, 2.0, 2.0]}


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5])
def test_blurme_rejects_bad_p(p):
    profiles, codes = _profiles()
    with pytest.raises(ValueError, match="blurme_p must be in"):
        blurme_additions(profiles, codes, {}, p)


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("inf")])
def test_ldp_rejects_bad_epsilon(epsilon):
    with pytest.raises(ValueError, match="ldp_epsilon must be > 0"):
        randomized_response([np.array([1])], 5, epsilon, np.random.default_rng(0))
