"""Is an attacker's balanced accuracy more (or less) than chance can explain?

Two resampling schemes, each answering a different question:

- a permutation test: the attack is rerun on shuffled labels over the same splits; the shuffled
  runs give the null distribution of the statistic (mean balanced accuracy over splits) when the
  embeddings carry no information about the attribute, whatever the attacker or the class sizes;
- a bootstrap confidence interval of the same statistic, resampling *users* (Poisson weights,
  shared by every split a user is tested in) with the trained attackers held fixed. It says how
  much the score depends on which users happened to be tested, not how much it would vary with
  retraining, so it is too narrow to test against chance: two users in different folds help
  each other's attacker in both directions, which widens the spread of a cross-validated score
  (by ~1.4x for 5-fold on pure noise; docs/audit.md).
"""

from __future__ import annotations

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


def permutation_summary(observed: float, null: np.ndarray) -> dict[str, float | int]:
    """Both one-sided p-values and the null distribution's mean and std for one attacker."""
    return {
        "observed": float(observed),
        "p_value": permutation_p_value(observed, null),
        "p_value_below": permutation_p_value(-observed, -null),
        "null_mean": float(np.mean(null)),
        "null_std": float(np.std(null, ddof=1)) if len(null) > 1 else 0.0,
        "n_permutations": int(len(null)),
    }


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
