"""One-vs-rest critics (``au_class_critics``): every class of a multi-class attribute against the
others, with every critic. A trace over K classes weighs each class mean by the noise of all
K, so a large class that stands apart barely moves it; the one-vs-rest statistics see it."""

from __future__ import annotations

import torch

from recbole_attrcloak.losses import RelabelingNull
from tests.attacks import kfold_balanced_accuracy
from tests.test_relabel import _unlearn


def _one_large_class(amplitude: float, d: int = 8, seed: int = 0):
    """A class of 300 users shifted by ``amplitude`` along the first coordinate, beside 20
    classes of 35 users that differ in nothing."""
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.zeros(300, dtype=torch.long), torch.arange(1, 21).repeat_interleave(35)])
    y = y[torch.randperm(len(y), generator=g)]
    x = torch.randn(len(y), d, generator=g, dtype=torch.float64)
    x[y == 0, 0] += amplitude
    return x.float(), y


def _scores(x: torch.Tensor, labels: dict, reference: torch.Tensor, **kw) -> dict:
    objective = RelabelingNull(labels, seed=5, **kw)
    objective.check(reference)  # the original fixes the standardisation
    objective.check(x)
    return objective.checked


def _balanced_attack(x: torch.Tensor, member: torch.Tensor) -> float:
    """5-fold balanced accuracy of a class-weighted logistic regression on one class vs rest."""
    from sklearn.linear_model import LogisticRegression

    return kfold_balanced_accuracy(x, member, LogisticRegression(class_weight="balanced"))


def test_each_class_statistic_is_that_of_its_own_two_class_labeling():
    x, y = _one_large_class(0.3)
    together = _scores(x, {"a": y}, x, class_critics=True)
    for k in (0, 7):
        alone = _scores(x, {"b": (y == k).long()}, x)
        for (_attr, critic), z in alone.items():
            assert abs(together[f"a={k}", critic] - z) < 1e-3 * max(1.0, abs(z))


def test_class_statistics_follow_the_permutation_null_on_noise():
    x = torch.randn(600, 8, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 5, (600,), generator=g)
    zs = []
    for _ in range(12):
        shuffled = labels[torch.randperm(600, generator=g)]
        checked = _scores(x, {"a": shuffled}, x, class_critics=True, n_features=64)
        zs += [z for (attr, _), z in checked.items() if "=" in attr]
    zs = torch.tensor(zs)
    assert len(zs) == 12 * 5 * 9
    assert abs(float(zs.mean())) < 0.2 and 0.8 < float(zs.std()) < 1.2


def test_two_classes_add_nothing_and_more_statistics_get_a_wider_bound():
    x, y = _one_large_class(0.0)
    binary = RelabelingNull({"g": (y == 0).long()}, class_critics=True, seed=0)
    binary.check(x)
    assert all("=" not in attr for attr, _ in binary.checked)
    many = RelabelingNull({"a": y}, class_critics=True, seed=0)
    many.check(x)
    assert sum("=" in attr for attr, _ in many.checked) == 21 * 9
    assert many.class_tolerance > many.tolerance + 0.5
    assert {t.name.split("/")[0] for t in many.terms()} >= {"a", "a=0", "a=20"}


def test_a_large_class_apart_is_left_by_the_class_sums_and_removed_by_class_critics():
    x, y = _one_large_class(0.45)
    member = (y == 0).long()
    planted = _scores(x, {"a": y}, x, class_critics=True)
    assert max(abs(z) for (attr, _), z in planted.items() if attr == "a") < 3
    assert max(z for (attr, _), z in planted.items() if attr == "a=0") > 8
    assert _balanced_attack(x, member) > 0.56  # planted: an attacker reads the class

    sums, outcome = _unlearn(x, {"a": y}, au_max_steps=300, au_class_critics=False)
    assert outcome.stop_reason == "target_reached"  # every K-class statistic met ...
    left = _scores(sums, {"a": y}, x, class_critics=True)
    assert max(z for (attr, _), z in left.items() if attr == "a=0") > 8  # ... the class is left
    assert _balanced_attack(sums, member) > 0.56

    classes, outcome = _unlearn(x, {"a": y}, au_max_steps=300, au_class_critics=True)
    assert outcome.stop_reason == "target_reached"
    removed = _scores(classes, {"a": y}, x, class_critics=True)
    assert max(abs(z) for (attr, _), z in removed.items() if attr == "a=0") < 3.1
    assert abs(_balanced_attack(classes, member) - 0.5) < 0.035
    assert float((classes - x).norm() / x.norm()) < 0.06
