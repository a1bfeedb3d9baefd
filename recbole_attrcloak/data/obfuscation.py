"""Data obfuscation of the retraining baselines, as pure functions on arrays and frames (no
RecBole): BlurMe (Weinsberg et al., RecSys 2012) adds items indicative of other attribute
classes to each profile; LDP-SH applies randomised response to each user's item set.

Profiles are given as ``user_items[u]``: the item ids user ``u`` interacted with in training.
Item ids run over ``1 .. n_items - 1`` (RecBole's id 0 is the padding item).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.linear_model import LogisticRegression


def check_blurme_p(p: float) -> None:
    """BlurMe's share of extra items must lie in (0, 1]."""
    if not 0.0 < float(p) <= 1.0:
        raise ValueError(f"blurme_p must be in (0, 1], got {p!r}")


def check_epsilon(epsilon: float) -> None:
    """A privacy budget must be positive and finite."""
    if not 0.0 < float(epsilon) < math.inf:
        raise ValueError(f"ldp_epsilon must be > 0 and finite, got {epsilon!r}")


def user_item_lists(users: np.ndarray, items: np.ndarray, n_users: int) -> list[np.ndarray]:
    """Each user's distinct items (sorted), from parallel arrays of interactions."""
    order = np.lexsort((items, users))
    users, items = np.asarray(users)[order], np.asarray(items)[order]
    bounds = np.searchsorted(users, np.arange(n_users + 1))
    return [np.unique(items[bounds[u] : bounds[u + 1]]) for u in range(n_users)]


# --- BlurMe -------------------------------------------------------------------------------


def indicative_weights(
    user_items: Sequence[np.ndarray], codes: np.ndarray, n_items: int, c: float = 1.0
) -> np.ndarray:
    """(n_classes, n_items): how strongly each item indicates each class (> 0: indicative), from
    an L2-regularised logistic regression on the binary user–item matrix of the users with a
    known class (``codes >= 0``).

    Binary: one coefficient vector w; class 1 gets w, class 0 gets −w (Weinsberg et al.).
    Multi-class: the multinomial regression's per-class coefficients. Classes without users get
    zeros.
    """
    codes = np.asarray(codes)
    known = np.flatnonzero(codes >= 0)
    rows = np.repeat(np.arange(len(known)), [len(user_items[u]) for u in known])
    cols = np.concatenate([user_items[u] for u in known]) if len(known) else np.zeros(0, int)
    matrix = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(known), n_items), dtype=np.float64
    )
    present = np.unique(codes[known])
    if len(present) < 2:
        raise ValueError(f"BlurMe needs users of at least 2 classes, got {len(present)}")
    model = LogisticRegression(C=float(c), max_iter=2000).fit(matrix, codes[known])
    coef = model.coef_ if len(present) > 2 else np.vstack([-model.coef_[0], model.coef_[0]])
    weights = np.zeros((int(codes.max()) + 1, n_items))
    weights[model.classes_] = coef
    return weights


def indicative_items(weights: np.ndarray) -> list[np.ndarray]:
    """Per class, the items with a positive weight for it, strongest first."""
    lists = []
    for row in weights:
        order = np.argsort(-row, kind="stable")
        lists.append(order[row[order] > 0])
    return lists


def _interleave(lists: Sequence[np.ndarray]) -> np.ndarray:
    """Round-robin merge by rank (first of each list, then second of each...), duplicates
    dropped."""
    merged: dict[int, None] = {}
    for rank in range(max((len(x) for x in lists), default=0)):
        for items in lists:
            if rank < len(items):
                merged.setdefault(int(items[rank]))
    return np.fromiter(merged, dtype=np.int64, count=len(merged))


def _weighted_order(weights: np.ndarray, own: int, rng: np.random.Generator) -> np.ndarray:
    """The items indicative of a class other than ``own`` in a random order drawn with
    probability ∝ their strongest such weight (weighted sampling without replacement by
    Efraimidis–Spirakis keys)."""
    others = np.delete(weights, own, axis=0).max(0)
    items = np.flatnonzero(others > 0)
    keys = rng.exponential(size=len(items)) / others[items]
    return items[np.argsort(keys, kind="stable")]


def blurme_additions(
    user_items: Sequence[np.ndarray],
    codes: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray],
    p: float,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """BlurMe's obfuscation: the (user, item) pairs to add.

    User u gets k = ceil(p·|I_u|) items it has not rated (fewer only when the candidates run
    out), taken in order from one candidate queue per attribute whose value u gave, the queues in
    turn. Greedy (``rng`` None): the queue is the other classes' indicative lists merged
    round-robin by rank (binary: the opposite class's list, strongest first, as in the paper).
    Sampled (``rng`` given): the same items in a per-user random order drawn ∝ weight
    (Weinsberg et al.'s "sampled" strategy), so that users of a class do not all get the same
    few items.
    """
    check_blurme_p(p)
    greedy = {
        name: [
            _interleave([x for other, x in enumerate(indicative_items(w)) if other != own])
            for own in range(len(w))
        ]
        for name, w in weights.items()
    }
    add_users: list[int] = []
    add_items: list[int] = []
    for user, rated in enumerate(user_items):
        k = math.ceil(p * len(rated))
        known = [(name, int(codes[name][user])) for name in weights if codes[name][user] >= 0]
        if rng is None:
            queues = [greedy[name][own] for name, own in known]
        else:
            queues = [_weighted_order(weights[name], own, rng) for name, own in known]
        taken = set(rated.tolist())
        positions = [0] * len(queues)
        added = 0
        while added < k and any(pos < len(q) for pos, q in zip(positions, queues, strict=True)):
            for i, queue in enumerate(queues):
                while positions[i] < len(queue) and int(queue[positions[i]]) in taken:
                    positions[i] += 1
                if positions[i] < len(queue) and added < k:
                    item = int(queue[positions[i]])
                    taken.add(item)
                    add_users.append(user)
                    add_items.append(item)
                    added += 1
    return np.asarray(add_users, dtype=np.int64), np.asarray(add_items, dtype=np.int64)


# --- LDP ----------------------------------------------------------------------------------


def flip_probability(epsilon: float) -> float:
    """Randomised response on one bit: report it flipped with probability 1/(1 + e^ε), truthfully
    with e^ε/(1 + e^ε); the likelihood ratio of any report is then at most e^ε."""
    check_epsilon(epsilon)
    return 1.0 / (1.0 + math.exp(float(epsilon)))


def randomized_response(
    user_items: Sequence[np.ndarray], n_items: int, epsilon: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Each user's reported item set: randomised response on every bit of the user's binary
    vector over the items 1 .. n_items − 1.

    Each held item is kept with probability 1 − q, each other item is added with probability q,
    q = ``flip_probability(epsilon)``. Sampled sparsely, but with exactly the per-bit
    distribution: the number of added items is Binomial(n_missing, q), drawn uniformly among the
    missing items.
    """
    q = flip_probability(epsilon)
    universe = np.arange(1, n_items)
    reported = []
    for held in user_items:
        kept = held[rng.random(len(held)) >= q]
        missing = np.setdiff1d(universe, held, assume_unique=True)
        added = rng.choice(missing, size=rng.binomial(len(missing), q), replace=False)
        reported.append(np.sort(np.concatenate([kept, added]).astype(np.int64)))
    return reported


# --- rebuilding an interaction frame ----------------------------------------------------


def with_profiles(
    frame: pd.DataFrame,
    user_field: str,
    item_field: str,
    user_items: Sequence[np.ndarray],
    fill: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """``frame`` reduced or extended to the given profiles: rows of (user, item) pairs still in
    ``user_items`` are kept as they are; new pairs get, per column in ``fill``, the user's
    "mean" or "max" over the user's original rows (BlurMe rates added items at the user's mean
    rating), or the column mean for users without rows. Other columns of new rows are NaN."""
    n_users = len(user_items)
    users = np.repeat(np.arange(n_users), [len(x) for x in user_items])
    items = np.concatenate(user_items) if n_users else np.zeros(0, dtype=np.int64)
    wanted = pd.DataFrame({user_field: users, item_field: items})
    merged = wanted.merge(frame, on=[user_field, item_field], how="left", indicator=True)
    new = merged["_merge"] == "left_only"
    for column, how in (fill or {}).items():
        per_user = frame.groupby(user_field)[column].agg(how)
        values = merged.loc[new, user_field].map(per_user).fillna(frame[column].mean())
        merged.loc[new, column] = values
    return merged.drop(columns="_merge")[list(frame.columns)]
