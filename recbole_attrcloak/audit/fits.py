"""Fitting attackers: seeds per component, one split's fit and prediction, and refits on
shuffled embeddings (the null scores of a refit permutation test)."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from recbole_attrcloak.audit.attackers import make_attacker
from recbole_attrcloak.audit.protocols import (
    Split,
)
from recbole_attrcloak.audit.significance import (
    held_out_scores,
)


def derived_seed(seed: int, *parts: str | int) -> int:
    """A seed for one component, independent of the order in which components run."""
    entropy = [seed, *(zlib.crc32(str(part).encode()) for part in parts)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@contextmanager
def _fit_environment() -> Iterator[None]:
    """One BLAS thread per fit (the audit parallelises over fits) and no convergence chatter."""
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _class_proba(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` with one column per class, zero for classes absent from training."""
    proba = np.zeros((len(X), n_classes))
    proba[:, model.classes_] = model.predict_proba(X)
    return proba


def fit_predict(
    X: np.ndarray, y: np.ndarray, splits: Sequence[Split], attacker: str, seeds: Sequence[int]
) -> list[np.ndarray]:
    """Train ``attacker`` on each split's training users; class probabilities of its test users."""
    n_classes = int(y.max()) + 1
    with _fit_environment():
        probas = []
        for s, seed in zip(splits, seeds, strict=True):
            model = make_attacker(attacker, seed).fit(X[s.train], y[s.train])
            probas.append(_class_proba(model, X[s.test], n_classes))
    return probas


def null_scores(
    X: np.ndarray,
    y: np.ndarray,
    perms: np.ndarray,
    splits: Sequence[Split],
    attacker: str,
    seeds: Sequence[int],
) -> np.ndarray:
    """Mean balanced accuracy over splits of ``attacker`` retrained on ``X[perm]`` (the labels,
    splits and seeds fixed), for each row ``perm`` of ``perms``."""
    identity, n_classes = np.arange(len(y))[None], int(y.max()) + 1
    tests = [s.test for s in splits]
    scores = np.zeros(len(perms))
    for row, perm in enumerate(perms):
        probas = fit_predict(X[perm], y, splits, attacker, seeds)
        preds = [proba.argmax(axis=1) for proba in probas]
        scores[row] = held_out_scores(y, tests, preds, identity, n_classes)[0]
    return scores
