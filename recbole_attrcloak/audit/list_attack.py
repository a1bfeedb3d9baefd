"""What a model's recommendation lists reveal: an attacker that sees each user's top-k list.

The audit's attackers read the user representations alone. Whoever holds the released model
also holds its item side, and so each user's recommendations: a function of the user's
representation that stresses exactly the directions the recommendations use. This attacker
reads the lists: each user is the binary vector of the k items it is shown, and a kernel ridge
classifier on those vectors (linear kernel: the number of items two lists share), fitted on the
users of k − 1 folds, predicts the others' class. Its balanced accuracy is compared with the same
attacker on randomly permuted labels (the audit's null, docs/audit.md): the folds' ridge solves
do not depend on the labels, so every permutation costs one matrix product.

Pure numpy; no RecBole, torch or scikit-learn import.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ListLeakage:
    """The list attacker's balanced accuracy against its permutation null."""

    balanced_accuracy: float
    chance: float
    null_mean: float
    null_std: float
    p_value: float  # one-sided, above the null
    p_value_two_sided: float  # |bacc − null mean| against the null's own deviations
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


def stratified_folds(codes: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number per user, each class dealt round-robin over the folds in a random order."""
    folds = np.empty(len(codes), dtype=np.int64)
    offset = 0
    for value in np.unique(codes):
        members = rng.permutation(np.flatnonzero(codes == value))
        folds[members] = (np.arange(len(members)) + offset) % n_folds
        offset += len(members)
    return folds


def _balanced_accuracy(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced accuracy of every column of ``truth``/``pred`` (n, P): the mean recall over the
    classes present."""
    scores = np.zeros(truth.shape[1])
    present = np.zeros(truth.shape[1])
    for c in range(n_classes):
        members = truth == c
        count = members.sum(0)
        hits = (members & (pred == c)).sum(0)
        scores += np.where(count > 0, hits / np.maximum(count, 1), 0.0)
        present += count > 0
    return scores / present


def list_leakage(
    top_items: np.ndarray,
    codes: np.ndarray,
    *,
    n_folds: int = 5,
    ridge: float = 1.0,
    n_permutations: int = 200,
    min_class_size: int = 5,
    seed: int = 0,
) -> ListLeakage:
    """The list attacker on ``top_items`` ((n, k) item ids per user) against ``codes`` (n,
    class codes, −1 unknown): users of unknown value or of a class with fewer than
    ``min_class_size`` users are left out, as the audit does. Targets are class-balanced
    (1/n_c per class among a fold's training users); ``ridge`` is relative to the mean list
    length. p-values: (1 + #null at least as extreme) / (1 + ``n_permutations``)."""
    codes = np.asarray(codes)
    counts = np.bincount(codes[codes >= 0]) if (codes >= 0).any() else np.zeros(0, dtype=int)
    kept_classes = np.flatnonzero(counts >= min_class_size)
    if len(kept_classes) < 2:
        raise ValueError(f"fewer than 2 classes with at least {min_class_size} users")
    users = np.flatnonzero(np.isin(codes, kept_classes))
    y = np.searchsorted(kept_classes, codes[users])
    n_classes, n = len(kept_classes), len(users)
    rng = np.random.default_rng(seed)
    kernel = list_kernel(np.asarray(top_items)[users])
    lam = ridge * float(np.diag(kernel).mean())
    folds = stratified_folds(y, n_folds, rng)
    labels = np.column_stack([y] + [rng.permutation(y) for _ in range(n_permutations)])
    pred = np.empty_like(labels)
    for f in range(n_folds):
        test, train = folds == f, folds != f
        k_train = kernel[np.ix_(train, train)]
        solve = np.linalg.solve(
            k_train + lam * np.eye(int(train.sum())), kernel[np.ix_(train, test)]
        )
        onehot = labels[train][:, :, None] == np.arange(n_classes)  # (n_train, P + 1, K)
        targets = onehot / np.maximum(onehot.sum(0, keepdims=True), 1)
        scores = np.einsum("tj,tpk->jpk", solve, targets)  # (n_test, P + 1, K)
        pred[test] = scores.argmax(2)
    bacc = _balanced_accuracy(labels, pred, n_classes)
    observed, null = float(bacc[0]), bacc[1:]
    centre = float(null.mean())
    return ListLeakage(
        balanced_accuracy=observed,
        chance=1.0 / n_classes,
        null_mean=centre,
        null_std=float(null.std(ddof=1)),
        p_value=float((1 + (null >= observed).sum()) / (1 + len(null))),
        p_value_two_sided=float(
            (1 + (np.abs(null - centre) >= abs(observed - centre)).sum()) / (1 + len(null))
        ),
        n_users=n,
        n_classes=n_classes,
        n_permutations=len(null),
    )
