import json
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from recbole_attrcloak.audit import AuditSettings, audit_representations
from recbole_attrcloak.audit.metrics import METRICS, balanced_accuracy, confusion_matrix, roc_auc
from recbole_attrcloak.audit.protocols import kfold_splits, prepare_attribute, shadow_splits
from recbole_attrcloak.audit.significance import (
    bootstrap_balanced_accuracy,
    permutation_p_value,
    permutation_settled,
)
from recbole_attrcloak.data.attributes import AttributeLabels

CHEAP = AuditSettings(
    attackers=("logreg", "knn"), seeds=2, n_folds=3, n_permutations=30, n_resamples=500, n_jobs=1
)


def labels(name: str, codes: np.ndarray) -> AttributeLabels:
    return AttributeLabels(name, codes, tuple(f"{name}{c}" for c in range(codes.max() + 1)))


@pytest.fixture(scope="module")
def data():
    """400 users, d = 16: "planted" shifts the class means, "noise" is independent of X."""
    rng = np.random.default_rng(0)
    planted = rng.permutation(np.arange(400) % 2)
    noise = rng.permutation(np.arange(400) % 3)
    X = rng.normal(size=(400, 16))
    X[:, :4] += 1.5 * planted[:, None]
    return X, {"planted": labels("planted", planted), "noise": labels("noise", noise)}


@pytest.fixture(scope="module")
def report(data):
    X, attributes = data
    return audit_representations(X, attributes, CHEAP)


def test_report_has_the_documented_shape(report):
    entry = report["planted"]
    assert set(entry) == {
        "chance",
        "majority",
        "n_users",
        "n_missing",
        "classes",
        "dropped_classes",
        "logreg",
        "knn",
        "kfold",
        "significance",
        "strongest",
        "seconds",
    }
    for scores in (entry["logreg"], entry["kfold"]["knn"]):
        assert set(scores) == set(METRICS)
        assert all({"mean", "std"} <= set(scores[m]) for m in METRICS)
    assert set(entry["significance"]) == {"shadow", "kfold"}
    assert set(entry["significance"]["kfold"]) == {"logreg"}  # the default tested attacker
    test = entry["significance"]["kfold"]["logreg"]
    assert {"p_value", "p_value_below", "null_mean", "null_std", "ci95"} <= set(test)
    assert set(entry["strongest"]) >= {
        "protocol",
        "attacker",
        "balanced_accuracy",
        "gap_to_chance",
        "p_value",
        "verdict",
    }
    assert (entry["chance"], entry["majority"], entry["n_users"]) == (0.5, 0.5, 400)
    json.dumps(report)  # plain Python types only


def test_planted_signal_is_detected_by_every_tested_attacker(data):
    X, attributes = data
    settings = replace(CHEAP, n_permutations=100, significance_attackers=("logreg", "knn"))
    entry = audit_representations(X, {"planted": attributes["planted"]}, settings)["planted"]
    for protocol in ("shadow", "kfold"):
        for attacker in ("logreg", "knn"):
            test = entry["significance"][protocol][attacker]
            assert test["p_value"] < 0.01
            assert test["n_permutations"] == 100
            assert abs(test["null_mean"] - 0.5) < 0.03
            assert test["ci95"][0] > 0.5
    assert entry["kfold"]["logreg"]["balanced_accuracy"]["mean"] > 0.9
    assert entry["kfold"]["logreg"]["roc_auc"]["mean"] > 0.95
    assert entry["strongest"]["verdict"].startswith("leakage detected")


def test_noise_is_not_significant_and_its_interval_covers_chance(report):
    entry = report["noise"]
    for protocol, tests in entry["significance"].items():
        for test in tests.values():
            assert test["p_value"] > 0.05, protocol
            assert test["ci95"][0] <= 1 / 3 <= test["ci95"][1]
    assert entry["strongest"]["verdict"].startswith("no leakage detectable")
    assert entry["strongest"]["below_chance"] == []


def test_permutation_test_stops_once_settled(data):
    X, attributes = data
    settings = replace(CHEAP, protocols=("shadow",), n_permutations=400)
    test = audit_representations(X, {"noise": attributes["noise"]}, settings)["noise"]
    assert test["significance"]["shadow"]["logreg"]["n_permutations"] < 100


def test_below_chance_is_flagged_as_over_correction():
    """Twins share an embedding but not a label: a nearest-neighbour attacker always predicts
    the twin's (wrong) label, so it scores far below chance."""
    rng = np.random.default_rng(1)
    X = np.repeat(rng.normal(size=(150, 8)), 2, axis=0)
    y = np.tile([0, 1], 150)
    settings = replace(CHEAP, n_permutations=100, significance_attackers=("knn",))
    entry = audit_representations(X, {"twins": labels("twins", y)}, settings)["twins"]
    assert entry["kfold"]["knn"]["balanced_accuracy"]["mean"] < 0.3
    assert entry["significance"]["kfold"]["knn"]["p_value_below"] < 0.01
    assert "kfold/knn" in entry["strongest"]["below_chance"]
    assert entry["strongest"]["verdict"].startswith("below chance: over-correction")


def test_same_seed_same_numbers_whatever_the_parallelism(data):
    X, attributes = data
    quick = AuditSettings.preset("quick")
    runs = [
        audit_representations(X, {"planted": attributes["planted"]}, replace(quick, n_jobs=n_jobs))
        for n_jobs in (1, 2)
    ]
    for run in runs:
        for entry in run.values():
            entry.pop("seconds")
    assert runs[0] == runs[1]
    planted = runs[0]["planted"]
    assert "kfold" not in planted and "mlp" in planted
    assert planted["significance"] == {"shadow": {}} and planted["strongest"]["p_value"] is None
    assert planted["strongest"]["verdict"] == ("leakage detected (95% CI, no permutation test)")


def test_kfold_never_tests_a_training_user():
    y = np.repeat([0, 1, 2], [50, 30, 5])
    splits = kfold_splits(y, n_folds=5, repeats=2, seed=0)
    assert len(splits) == 10
    for repeat in (splits[:5], splits[5:]):
        tested = np.concatenate([split.test for split in repeat])
        assert sorted(tested) == list(range(len(y)))  # every user tested exactly once
    for split in splits:
        assert not set(split.train) & set(split.test)
        assert len(split.train) + len(split.test) == len(y)
        assert set(y[split.test]) == {0, 1, 2}


def test_shadow_split_is_a_stratified_fifth():
    y = np.repeat([0, 1], [80, 20])
    splits = shadow_splits(y, fraction=0.2, seeds=3, seed=0)
    assert len({tuple(split.train) for split in splits}) == 3
    for split in splits:
        assert not set(split.train) & set(split.test)
        assert np.bincount(y[split.train]).tolist() == [16, 4]


def test_tiny_classes_are_dropped_and_reported(data):
    X, _ = data
    codes = np.arange(400) % 2
    codes[:3] = 2  # 3 users: fewer than one per fold
    codes[3:5] = -1
    attribute = AttributeLabels("occupation", codes, ("a", "b", "tiny"))
    prepared = prepare_attribute(attribute, min_size=5)
    assert prepared.classes == ("a", "b") and prepared.dropped_classes == {"tiny": 3}
    assert len(prepared.users) == 395 and not set(prepared.users) & {0, 1, 2, 3, 4}

    settings = replace(CHEAP, n_permutations=0)
    entry = audit_representations(X, {"occupation": attribute}, settings)["occupation"]
    assert entry["dropped_classes"] == {"tiny": 3}
    assert entry["classes"] == ["a", "b"] and entry["chance"] == 0.5
    assert (entry["n_users"], entry["n_missing"]) == (395, 2)


def test_too_few_classes_left_is_an_error():
    attribute = AttributeLabels("gender", np.array([0] * 10 + [1] * 2), ("F", "M"))
    with pytest.raises(ValueError, match="'gender'.*fewer than 2 classes"):
        prepare_attribute(attribute, min_size=5)


def test_permutation_p_value_by_hand():
    null = [0.5, 0.6, 0.7, 0.4]
    assert permutation_p_value(0.6, null) == pytest.approx(3 / 5)  # 0.6 and 0.7 reach it
    assert permutation_p_value(0.8, null) == pytest.approx(1 / 5)
    assert permutation_p_value(-0.6, [-v for v in null]) == pytest.approx(4 / 5)  # lower tail
    assert not permutation_settled(0.6, np.array(null), enough=3)
    assert permutation_settled(0.55, np.array(null * 3), enough=3)


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    proba = rng.dirichlet(np.ones(4), 300)
    proba[y == 1, 1] += 0.3
    pred = proba.argmax(axis=1)
    assert balanced_accuracy(confusion_matrix(y, pred, 4)) == pytest.approx(
        balanced_accuracy_score(y, pred)
    )
    proba /= proba.sum(axis=1, keepdims=True)
    assert roc_auc(y, proba) == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    assert roc_auc(y % 2, proba[:, :2] / proba[:, :2].sum(1, keepdims=True)) == pytest.approx(
        roc_auc_score(y % 2, proba[:, 1] / proba[:, :2].sum(1))
    )


def test_bootstrap_with_unit_weights_reproduces_the_score():
    y = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0, 2])
    weights = np.ones((3, 6), dtype=np.int32)
    scores = bootstrap_balanced_accuracy(weights, [np.arange(6)], [y], [pred], 3)
    np.testing.assert_allclose(scores, balanced_accuracy_score(y, pred))


def test_settings_are_validated():
    with pytest.raises(ValueError, match="unknown protocol"):
        AuditSettings(protocols=("loo",))
    with pytest.raises(ValueError, match="unknown attacker"):
        AuditSettings(attackers=("gbm",))
    with pytest.raises(ValueError, match="significance_attackers"):
        AuditSettings(attackers=("mlp",), significance_attackers=("logreg",))
    assert AuditSettings().significance_attackers == ("logreg",)
    assert AuditSettings(attackers=("mlp", "knn")).significance_attackers == ("mlp",)
    with pytest.raises(ValueError, match="quick, full"):
        AuditSettings.preset("thorough")
    quick = AuditSettings.preset("quick")
    assert (quick.protocols, quick.attackers, quick.n_permutations) == (
        ("shadow",),
        ("mlp", "xgboost"),
        0,
    )
    assert AuditSettings.preset("full") == AuditSettings()


def test_inputs_are_validated(data):
    X, attributes = data
    with pytest.raises(ValueError, match="400 users, representations 399"):
        audit_representations(X[:-1], attributes, CHEAP)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        audit_representations(bad, attributes, CHEAP)
