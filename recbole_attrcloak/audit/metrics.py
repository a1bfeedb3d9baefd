"""Leakage metrics of one attacker on one split's test users, and their summary across splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import f1_score

METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc")


def balanced_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Mean per-class recall over the classes present, for confusion counts of shape (..., k, k).

    Rows are true classes. A class absent from the test users is left out, as scikit-learn does.
    """
    support = confusion.sum(axis=-1)
    hits = np.diagonal(confusion, axis1=-2, axis2=-1)
    recall = np.divide(hits, support, out=np.zeros(hits.shape), where=support > 0)
    return recall.sum(axis=-1) / (support > 0).sum(axis=-1)


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) class pairs, shape (k, k)."""
    return np.bincount(y * n_classes + pred, minlength=n_classes**2).reshape(n_classes, n_classes)


def roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """ROC-AUC: binary for two classes, else the one-vs-rest macro mean over the classes present.

    Computed from ranks (ties averaged), which equals scikit-learn's ``roc_auc_score`` per class.
    """
    n_classes = proba.shape[1]
    if n_classes == 2:
        columns = np.array([1])
    else:
        columns = np.flatnonzero(np.bincount(y, minlength=n_classes) > 0)
    positive = y[:, None] == columns[None, :]
    n_pos = positive.sum(axis=0)
    n_neg = len(y) - n_pos
    ranks = rankdata(proba[:, columns], axis=0)
    auc = ((ranks * positive).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(auc.mean())


def split_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """All :data:`METRICS` for test labels ``y`` and class probabilities ``proba`` (n, k)."""
    pred = proba.argmax(axis=1)
    return {
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": float(balanced_accuracy(confusion_matrix(y, pred, proba.shape[1]))),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "roc_auc": roc_auc(y, proba),
    }


def summarise(per_split: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of every metric across splits (seeds or folds)."""
    summary = {}
    for metric in METRICS:
        values = np.array([scores[metric] for scores in per_split])
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary[metric] = {"mean": float(values.mean()), "std": std}
    return summary
