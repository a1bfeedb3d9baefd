"""Is an attacker's balanced accuracy more (or less) than chance can explain?

The null hypothesis of every test: the embeddings carry no information about the attribute, i.e.
the users' embedding rows are exchangeable whatever their labels. Permuting rows among users then
leaves the distribution of any statistic unchanged, which makes these permutation tests exact:

- refit: the attack is rerun with the embedding rows shuffled over all users (labels, splits and
  attacker seeds fixed);
- held-out: the trained attackers are held fixed and only the rows of users that none of them
  was trained on are shuffled, which costs no fit at all.

One set of shuffles serves every attacker of a test, so the null distribution of the *strongest*
attacker is known too: Westfall & Young's single-step max-T gives familywise-adjusted p-values.

The bootstrap confidence interval resamples *users* (Poisson weights, shared by every split a
user is tested in) with the trained attackers held fixed. It says how much the score depends on
which users happened to be tested, not how much it would vary with retraining, so it is too
narrow to test against chance (by ~1.4x for 5-fold on pure noise; docs/audit.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from recbole_attrcloak.audit.metrics import balanced_accuracy


def permutation_p_value(observed: float, null: Sequence[float] | np.ndarray) -> float:
    """One-sided permutation p-value ``(1 + #{null >= observed}) / (1 + len(null))``.

    The +1 counts the observed labelling as one of the permutations, so p is never 0. For the
    lower tail, negate both arguments.
    """
    null = np.asarray(null, dtype=float)
    return float((1 + np.count_nonzero(null >= observed)) / (1 + null.size))


def permutation_settled(observed: float, null: np.ndarray, enough: int = 10) -> bool:
    """True once at least ``enough`` null scores lie on each side of ``observed`` (ties count for
    both). Stopping there is Besag & Clifford's sequential Monte Carlo test: the p-values of the
    permutations run so far stay valid (slightly conservative), and both are already large."""
    return min(np.count_nonzero(null >= observed), np.count_nonzero(null <= observed)) >= enough


def permutation_summary(scores: np.ndarray) -> dict[str, float | int]:
    """Both one-sided p-values and the null's mean and std; ``scores[0]`` is the observed score,
    the rest the null scores of one attacker."""
    observed, null = float(scores[0]), scores[1:]
    return {
        "observed": observed,
        "p_value": permutation_p_value(observed, null),
        "p_value_below": permutation_p_value(-observed, -null),
        "null_mean": float(np.mean(null)),
        "null_std": float(np.std(null, ddof=1)) if len(null) > 1 else 0.0,
        "n_permutations": int(len(null)),
    }


def maxt_adjusted(scores: np.ndarray, two_sided: bool = False) -> np.ndarray:
    """Westfall–Young single-step max-T adjusted p-values (upper tail), one per column.

    ``scores`` is (1 + n_permutations, n_attackers): row 0 observed, the other rows the same
    permutations scored by every attacker. Each column is standardised by its mean and standard
    deviation over all rows (so attackers with a wider null do not dominate; a function of the set
    of rows, which keeps them exchangeable); the adjusted p of column j is the share of rows whose
    largest standardised score reaches column j's observed one. Its minimum over the columns is
    an exact p-value for "the strongest attacker beats chance", with no Bonferroni penalty.
    ``two_sided``: the same on |z|, for "some attacker differs from chance, above or below" (an
    attacker far below chance leaks as much: invert its predictions).
    """
    spread = scores.std(axis=0)
    z = (scores - scores.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    if two_sided:
        z = np.abs(z)
    largest = np.sort(z.max(axis=1))
    return (len(z) - np.searchsorted(largest, z[0])) / len(z)


def combine_folds(p_values: Sequence[float]) -> float:
    """One valid p-value from the per-fold p-values of the same attacker: ``K/r`` times the r-th
    smallest of the K, with r = ceil(K/2) (Rüschendorf's quantile rule; the folds' tests are
    dependent, and this bound holds under any dependence)."""
    ordered = np.sort(np.asarray(p_values, dtype=float))
    r = math.ceil(len(ordered) / 2)
    return float(min(1.0, len(ordered) / r * ordered[r - 1]))


def subset_permutations(
    n_users: int, subset: np.ndarray, n_permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """Row indices (1 + n_permutations, n_users): row 0 the identity, each other row a random
    permutation of ``subset`` among itself (the other users keep their own row)."""
    perms = np.tile(np.arange(n_users), (n_permutations + 1, 1))
    for row in perms[1:]:
        row[subset] = rng.permutation(subset)
    return perms


def split_balanced_accuracy(y: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced accuracy of each row of predictions ``preds`` (n_rows, n_test) for labels ``y``
    ((n_test,), or one row of labels per row of predictions)."""
    cells = y * n_classes + preds + (np.arange(len(preds)) * n_classes**2)[:, None]
    counts = np.bincount(cells.ravel(), minlength=len(preds) * n_classes**2)
    return balanced_accuracy(counts.reshape(len(preds), n_classes, n_classes))


def held_out_scores(
    y: np.ndarray,
    tests: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    perms: np.ndarray,
    n_classes: int,
) -> np.ndarray:
    """Mean balanced accuracy over splits of fixed attackers, for each row of ``perms``.

    ``tests[s]`` are split s's test users, ``preds[s]`` their predicted classes. Row b of
    ``perms`` gives user u the embedding (hence the prediction) of user ``perms[b, u]``; it may
    only move users within every split's test set, so no attacker's training changes.
    """
    scores = np.zeros(len(perms))
    for test, pred in zip(tests, preds, strict=True):
        by_user = np.full(perms.shape[1], -1)
        by_user[test] = pred
        scores += split_balanced_accuracy(y[test], by_user[perms[:, test]], n_classes)
    return scores / len(tests)


def bootstrap_weights(n_users: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson(1) bootstrap weights of shape (n_boot, n_users), shared by all attackers."""
    return rng.poisson(1.0, size=(n_boot, n_users)).astype(np.int32)


def bootstrap_balanced_accuracy(
    weights: np.ndarray,
    tests: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    n_classes: int,
) -> np.ndarray:
    """Mean balanced accuracy over splits for each bootstrap replicate, shape (n_boot,).

    ``tests[s]`` are the user indices tested in split ``s`` (columns of ``weights``),
    ``labels[s]`` and ``preds[s]`` their true and predicted classes.
    """
    scores = np.zeros(len(weights))
    for test, y, pred in zip(tests, labels, preds, strict=True):
        cells = y * n_classes + pred
        order = np.argsort(cells, kind="stable")
        present, starts = np.unique(cells[order], return_index=True)
        confusion = np.zeros((len(weights), n_classes**2))
        confusion[:, present] = np.add.reduceat(weights[:, test[order]], starts, axis=1)
        scores += balanced_accuracy(confusion.reshape(-1, n_classes, n_classes))
    return scores / len(tests)


def interval(replicates: np.ndarray, level: float = 0.95) -> list[float]:
    """Percentile interval ``[lo, hi]`` of bootstrap replicates."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(replicates, [tail, 100 - tail])
    return [float(lo), float(hi)]
