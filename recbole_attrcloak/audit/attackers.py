"""Attribute-inference attackers: scikit-learn-style classifiers from user embeddings to a label.

All attackers weight classes inversely to their frequency, because the audit's headline metric is
balanced accuracy: an attacker that only learns the majority class reads nothing. Each one is
single-threaded (the audit parallelises over fits) and deterministic under its seed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-sample weights n / (k · n_class), as scikit-learn's ``class_weight="balanced"``."""
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (len(y) / (len(counts) * counts))[inverse]


def validation_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, validation) indices for early stopping that never fail on tiny classes.

    Each class gives ``round(fraction · n_class)`` members to validation but keeps at least one for
    training, so a class seen once is still learnt.
    """
    train, val = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_val = min(int(round(fraction * len(members))), len(members) - 1)
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


class MLPAttacker(ClassifierMixin, BaseEstimator):
    """The paper's three-layer MLP: two ReLU hidden layers and a softmax output, Adam.

    Inputs are standardised; training stops when the class-weighted validation log-loss has not
    improved for ``patience`` epochs, and the best epoch's weights are kept.
    """

    def __init__(
        self,
        hidden: tuple[int, int] = (128, 64),
        alpha: float = 1e-3,
        learning_rate: float = 1e-3,
        max_epochs: int = 200,
        patience: int = 10,
        validation_fraction: float = 0.15,
        random_state: int = 0,
    ) -> None:
        self.hidden = hidden
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> MLPAttacker:
        rng = np.random.default_rng(self.random_state)
        self.classes_ = np.unique(y)
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        train, val = validation_split(y, self.validation_fraction, rng)
        weights = balanced_weights(y)
        self.network_ = MLPClassifier(
            hidden_layer_sizes=self.hidden,
            alpha=self.alpha,
            learning_rate_init=self.learning_rate,
            batch_size=min(64, len(train)),
            random_state=self.random_state,
        )
        val_columns = np.searchsorted(self.classes_, y[val])
        best_loss, best_state, stale = np.inf, None, 0
        for _ in range(self.max_epochs):
            self.network_.partial_fit(Z[train], y[train], weights[train], classes=self.classes_)
            if not len(val):
                continue
            proba = self.network_.predict_proba(Z[val])[np.arange(len(val)), val_columns]
            loss = -np.average(np.log(np.clip(proba, 1e-12, None)), weights=weights[val])
            if loss < best_loss - 1e-4:
                best_loss, stale = loss, 0
                best_state = copy.deepcopy((self.network_.coefs_, self.network_.intercepts_))
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            self.network_.coefs_, self.network_.intercepts_ = best_state
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "network_")
        return self.network_.predict_proba(self.scaler_.transform(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class XGBoostAttacker(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees (XGBoost ``hist``, multi-class softprob), early-stopped.

    Boosting stops when the class-weighted log-loss on an internal validation split has not
    improved for ``early_stopping_rounds`` rounds; shallow trees and 64 histogram bins keep a
    21-class fit well under a second.
    """

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.1,
        max_depth: int = 3,
        max_bin: int = 64,
        subsample: float = 0.8,
        colsample_bytree: float = 0.5,
        early_stopping_rounds: int = 15,
        validation_fraction: float = 0.15,
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.max_bin = max_bin
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> XGBoostAttacker:
        from xgboost import XGBClassifier  # imported here: xgboost is slow to import

        rng = np.random.default_rng(self.random_state)
        self.classes_, codes = np.unique(y, return_inverse=True)
        train, val = validation_split(codes, self.validation_fraction, rng)
        weights = balanced_weights(codes)
        self.booster_ = XGBClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            max_bin=self.max_bin,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            tree_method="hist",
            objective="multi:softprob" if len(self.classes_) > 2 else "binary:logistic",
            eval_metric="mlogloss" if len(self.classes_) > 2 else "logloss",
            early_stopping_rounds=self.early_stopping_rounds if len(val) else None,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )
        eval_args = (
            {"eval_set": [(X[val], codes[val])], "sample_weight_eval_set": [weights[val]]}
            if len(val)
            else {}
        )
        self.booster_.fit(
            X[train], codes[train], sample_weight=weights[train], verbose=False, **eval_args
        )
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "booster_")
        return self.booster_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class SVMAttacker(ClassifierMixin, BaseEstimator):
    """RBF-kernel SVM on standardised inputs; ``predict_proba`` is a softmax of its OvR scores.

    The scores are not calibrated probabilities, but they rank users correctly for ROC-AUC without
    the internal cross-validation of Platt scaling, which fails on classes with few members.
    """

    def __init__(self, C: float = 1.0, random_state: int = 0) -> None:
        self.C = C
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> SVMAttacker:
        self.model_ = make_pipeline(
            StandardScaler(),
            SVC(
                C=self.C,
                gamma="scale",
                class_weight="balanced",
                decision_function_shape="ovr",
                break_ties=True,
                random_state=self.random_state,
            ),
        ).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        scores = self.model_.decision_function(X)
        if scores.ndim == 1:
            scores = np.column_stack([-scores, scores]) / 2
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _logreg(seed: int) -> Pipeline:
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=0.05, class_weight="balanced", max_iter=2000, random_state=seed),
    )


def _knn(seed: int) -> Pipeline:
    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=15, weights="distance"))


def _random_forest(seed: int) -> RandomForestClassifier:
    # Half-size bootstrap samples and leaves of >= 10 users: 3x faster than the defaults, and
    # stronger on weak signals.
    return RandomForestClassifier(
        n_estimators=100,
        min_samples_leaf=10,
        max_samples=0.5,
        class_weight="balanced",
        n_jobs=1,
        random_state=seed,
    )


ATTACKERS: dict[str, Callable[[int], BaseEstimator]] = {
    "mlp": lambda seed: MLPAttacker(random_state=seed),
    "xgboost": lambda seed: XGBoostAttacker(random_state=seed),
    "logreg": _logreg,
    "svm_rbf": lambda seed: SVMAttacker(random_state=seed),
    "knn": _knn,
    "random_forest": _random_forest,
}
"""Attacker factories by name; each takes a seed and returns an unfitted estimator."""


def make_attacker(name: str, seed: int) -> BaseEstimator:
    """A fresh, unfitted attacker ``name`` seeded with ``seed``."""
    if name not in ATTACKERS:
        raise ValueError(f"unknown attacker {name!r}; choose from: {', '.join(ATTACKERS)}")
    return ATTACKERS[name](seed)
