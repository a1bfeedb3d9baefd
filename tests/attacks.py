"""The tests' own attacker: 5-fold balanced accuracy of a scikit-learn classifier on planted
data (the audit's attackers are tested in tests/test_audit*.py; these check the losses)."""

from __future__ import annotations

from typing import Any

import torch


def kfold_balanced_accuracy(x: torch.Tensor, y: torch.Tensor, model: Any) -> float:
    """Balanced accuracy of ``model``'s out-of-fold predictions of ``y`` from ``x`` (5
    stratified folds, shuffled with a fixed seed)."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    pred = cross_val_predict(model, x.numpy(), y.numpy(), cv=folds)
    return float(balanced_accuracy_score(y.numpy(), pred))
