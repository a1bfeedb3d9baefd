"""What a model's recommendation lists reveal: an attacker that sees each user's top-k list.

The audit's attackers read the user representations alone. Whoever holds the released model
also holds its item side, and so each user's recommendations: a function of the user's
representation that stresses exactly the directions the recommendations use. This attacker
reads the lists: each user is the binary vector of the k items it is shown, and a kernel ridge
classifier on those vectors (linear kernel: the number of items two lists share), fitted on the
users of four folds, predicts the fifth's class. Its balanced accuracy (mean over the audit's
stratified folds) is compared with the same attacker on randomly permuted labels, as the audit
does (docs/audit.md): the folds' ridge solves do not depend on the labels, so every permutation
costs one matrix product. Classes, folds, scores and p-values are the audit's own
(``protocols``, ``metrics``, ``significance``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recbole_attrcloak.audit.protocols import kfold_splits, min_class_size, prepare_attribute
from recbole_attrcloak.audit.significance import (
    maxt_adjusted,
    permutation_summary,
    split_balanced_accuracy,
)
from recbole_attrcloak.data.attributes import AttributeLabels


@dataclass(frozen=True)
class ListLeakage:
    """The list attacker's balanced accuracy against its permutation null."""

    balanced_accuracy: float
    chance: float
    null_mean: float
    null_std: float
    p_value: float  # above the null
    p_value_below: float  # below it (over-correction)
    p_value_two_sided: float  # either way (the audit's two-sided test of one attacker)
    n_users: int
    n_classes: int
    n_permutations: int

    @property
    def z(self) -> float:
        """(balanced accuracy − null mean) in null standard deviations."""
        return (self.balanced_accuracy - self.null_mean) / max(self.null_std, 1e-12)


def list_kernel(top_items: np.ndarray) -> np.ndarray:
    """(n, n): the number of items the top-k lists of two users share (``top_items``: (n, k)
    item ids; the linear kernel of the lists' binary indicator vectors)."""
    top = np.asarray(top_items)
    _, cols = np.unique(top, return_inverse=True)
    indicator = np.zeros((len(top), int(cols.max()) + 1), dtype=np.float64)
    np.put_along_axis(indicator, cols.reshape(top.shape), 1.0, axis=1)
    return indicator @ indicator.T


def list_leakage(
    top_items: np.ndarray,
    labels: AttributeLabels,
    *,
    n_folds: int = 5,
    ridge: float = 1.0,
    n_permutations: int = 200,
    seed: int = 0,
) -> ListLeakage:
    """The list attacker on ``top_items`` ((n, k) item ids, one row per entry of
    ``labels.codes``): users of unknown value or of a class too small for ``n_folds`` folds are
    left out (``protocols.prepare_attribute``, as the audit's k-fold protocol does). Targets
    are class-balanced (1/n_c per class among a fold's training users); ``ridge`` is relative
    to the list length."""
    kept = prepare_attribute(labels, min_class_size("kfold", shadow_fraction=0.2, n_folds=n_folds))
    y, n_classes = kept.y, len(kept.classes)
    rng = np.random.default_rng(seed)
    kernel = list_kernel(np.asarray(top_items)[kept.users])
    lam = ridge * float(np.diag(kernel).mean())
    labelings = np.stack([y] + [rng.permutation(y) for _ in range(n_permutations)])  # (P+1, n)
    scores = np.zeros(len(labelings))
    splits = kfold_splits(y, n_folds=n_folds, repeats=1, seed=seed)
    for split in splits:
        train, test = split.train, split.test
        gram = kernel[np.ix_(train, train)] + lam * np.eye(len(train))
        solve = np.linalg.solve(gram, kernel[np.ix_(train, test)])  # (n_train, n_test)
        onehot = labelings[:, train, None] == np.arange(n_classes)  # (P+1, n_train, K)
        targets = onehot / np.maximum(onehot.sum(1, keepdims=True), 1)
        pred = np.einsum("tj,ptk->pjk", solve, targets).argmax(2)  # (P+1, n_test)
        scores += split_balanced_accuracy(labelings[:, test], pred, n_classes)
    scores /= len(splits)
    summary = permutation_summary(scores)
    return ListLeakage(
        balanced_accuracy=summary["observed"],
        chance=1.0 / n_classes,
        null_mean=summary["null_mean"],
        null_std=summary["null_std"],
        p_value=summary["p_value"],
        p_value_below=summary["p_value_below"],
        p_value_two_sided=float(maxt_adjusted(scores[:, None], two_sided=True)[0]),
        n_users=len(y),
        n_classes=n_classes,
        n_permutations=n_permutations,
    )
