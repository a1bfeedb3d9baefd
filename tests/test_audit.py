import json
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from recbole_attrcloak.audit import AuditSettings, audit_representations
from recbole_attrcloak.audit.core import _strongest
from recbole_attrcloak.audit.metrics import (
    METRICS,
    balanced_accuracy,
    confusion_matrix,
    roc_auc,
    split_metrics,
    summarise,
)
from recbole_attrcloak.audit.protocols import (
    kfold_splits,
    min_class_size,
    prepare_attribute,
    shadow_splits,
)
from recbole_attrcloak.audit.significance import (
    bootstrap_balanced_accuracy,
    combine_folds,
    held_out_scores,
    maxt_adjusted,
    permutation_p_value,
    permutation_settled,
    permutation_summary,
    subset_permutations,
)
from recbole_attrcloak.data.attributes import AttributeLabels

# also in `make test-current`
pytestmark = pytest.mark.current

CHEAP = AuditSettings(
    attackers=("logreg", "knn"), seeds=2, n_folds=3, n_permutations=30, n_resamples=500, n_jobs=1
)
# The whole zoo on 300 users: 90 shadow users (the random forest needs ~80 to split at all),
# logreg refit on 100 shuffles so that its p-value can fall below 0.01.
ZOO = AuditSettings(
    seeds=2, shadow_fraction=0.3, n_folds=3, refit_attackers=("logreg",), n_resamples=300, n_jobs=1
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
def zoo():
    """Every attacker on 300 users, d = 8: "planted" shifts the class means by 1.5 standard
    deviations in 4 dimensions, "noise" is independent of X."""
    rng = np.random.default_rng(0)
    planted = rng.permutation(np.arange(300) % 2)
    noise = rng.permutation(np.arange(300) % 3)
    X = rng.normal(size=(300, 8))
    X[:, :4] += 1.5 * planted[:, None]
    attributes = {"planted": labels("planted", planted), "noise": labels("noise", noise)}
    return audit_representations(X, attributes, ZOO)


def test_report_has_the_documented_shape(zoo):
    entry = zoo["planted"]
    assert set(entry) == {
        "chance",
        "majority",
        "n_users",
        "n_missing",
        "classes",
        "dropped_classes",
        "n_dropped",
        "min_class_size",
        *ZOO.attackers,
        "kfold",
        "significance",
        "strongest",
        "seconds",
    }
    for scores in (entry["logreg"], entry["kfold"]["knn"]):
        assert set(scores) == set(METRICS)
        assert all({"mean", "std"} <= set(scores[m]) for m in METRICS)
    assert set(entry["significance"]) == {"shadow", "kfold"}
    methods = {
        p: {a: t["method"] for a, t in tests.items()} for p, tests in entry["significance"].items()
    }
    assert methods["shadow"] == dict.fromkeys(ZOO.attackers, "held_out")
    assert methods["kfold"] == {
        a: "refit" if a == "logreg" else "held_out_per_fold" for a in ZOO.attackers
    }
    fields = {"observed", "p_value", "p_value_below", "p_familywise", "p_familywise_below"}
    for tests in entry["significance"].values():
        for test in tests.values():
            assert fields | {"null_mean", "null_std", "n_permutations", "ci95"} <= set(test)
    assert len(entry["significance"]["kfold"]["mlp"]["fold_p_values"]) == ZOO.n_folds
    assert set(entry["strongest"]) >= {
        "protocol",
        "attacker",
        "balanced_accuracy",
        "gap_to_chance",
        "p_value",
        "tested",
        "verdict",
    }
    assert (entry["chance"], entry["majority"], entry["n_users"]) == (0.5, 0.5, 300)
    json.dumps(zoo)  # plain Python types only


def test_planted_signal_is_detected_by_every_attacker_under_both_protocols(zoo):
    entry = zoo["planted"]
    for protocol, tests in entry["significance"].items():
        for attacker, test in tests.items():
            assert test["p_value"] < 0.01, (protocol, attacker)
            assert test["p_familywise"] < 0.05, (protocol, attacker)
            assert test["ci95"][0] > 0.5
            assert test["observed"] == pytest.approx(
                (entry if protocol == "shadow" else entry[protocol])[attacker]["balanced_accuracy"][
                    "mean"
                ]
            )
    refit = entry["significance"]["kfold"]["logreg"]
    assert refit["n_permutations"] == 100 and abs(refit["null_mean"] - 0.5) < 0.03
    # no shuffle reaches the observed score: p = 1 / (1 + shuffles), the observed one counted
    assert refit["p_value"] == pytest.approx(1 / 101)
    for test in entry["significance"]["shadow"].values():
        assert test["p_value"] == pytest.approx(1 / 1001)
    for attacker in ("mlp", "knn"):  # three folds at 1/1001 each: 3/2 × the 2nd smallest
        fold = entry["significance"]["kfold"][attacker]
        assert fold["fold_p_values"] == pytest.approx([1 / 1001] * 3)
        assert fold["p_value"] == pytest.approx(1.5 / 1001)
    assert entry["kfold"]["logreg"]["roc_auc"]["mean"] > 0.95
    assert entry["strongest"]["verdict"].startswith("leakage detected")
    assert entry["strongest"]["p_value"] < 0.05


def test_noise_is_not_significant_and_its_intervals_cover_chance(zoo):
    entry = zoo["noise"]
    tests = [
        test for by_attacker in entry["significance"].values() for test in by_attacker.values()
    ]
    assert len(tests) == 2 * len(ZOO.attackers)
    for test in tests:
        assert min(test["p_value"], test["p_value_below"]) > 0.01
        assert min(test["p_familywise"], test["p_familywise_below"]) > 0.05
        assert abs(test["null_mean"] - 1 / 3) < 0.03
    # The bootstrap interval holds the attackers fixed and is somewhat too narrow (docs/audit.md):
    # most, not all, of the 12 intervals cover chance.
    covering = [test["ci95"][0] <= 1 / 3 <= test["ci95"][1] for test in tests]
    assert sum(covering) >= 10
    assert entry["strongest"]["verdict"].startswith("no leakage detectable")
    assert entry["strongest"]["below_chance"] == []


def test_refit_test_stops_once_settled(data):
    X, attributes = data
    settings = replace(CHEAP, protocols=("kfold",), attackers=("logreg",), n_permutations=400)
    entry = audit_representations(X, {"noise": attributes["noise"]}, settings)["noise"]
    assert entry["significance"]["kfold"]["logreg"]["n_permutations"] < 100


def test_below_chance_is_flagged_as_over_correction():
    """Twins share an embedding but not a label: a nearest-neighbour attacker predicts the twin's
    (wrong) label whenever the twin is in its training set, so it scores far below chance."""
    rng = np.random.default_rng(1)
    X = np.repeat(rng.normal(size=(150, 8)), 2, axis=0)
    y = np.tile([0, 1], 150)
    settings = replace(CHEAP, attackers=("knn",), n_permutations=100)
    entry = audit_representations(X, {"twins": labels("twins", y)}, settings)["twins"]
    assert entry["kfold"]["knn"]["balanced_accuracy"]["mean"] < 0.3
    assert entry["significance"]["kfold"]["knn"]["p_value_below"] < 0.01
    assert "kfold/knn" in entry["strongest"]["below_chance"]
    assert entry["strongest"]["verdict"].startswith("below chance: over-correction")


def test_same_seed_same_numbers_whatever_the_parallelism(data):
    X, attributes = data
    settings = replace(CHEAP, n_permutations=10, n_held_out_permutations=100, n_resamples=100)
    runs = [
        audit_representations(X, {"noise": attributes["noise"]}, replace(settings, n_jobs=n_jobs))
        for n_jobs in (1, 2)
    ]
    for run in runs:
        run["noise"].pop("seconds")
    assert runs[0] == runs[1]
    assert runs[0]["noise"]["significance"]["kfold"]["logreg"]["method"] == "refit"


def test_quick_preset_tests_the_shadow_attackers_without_refits(data):
    X, attributes = data
    quick = replace(AuditSettings.preset("quick"), n_jobs=1)
    entry = audit_representations(X, {"planted": attributes["planted"]}, quick)["planted"]
    assert "kfold" not in entry and "mlp" in entry
    assert set(entry["significance"]) == {"shadow"}
    for test in entry["significance"]["shadow"].values():
        assert test["method"] == "held_out" and test["p_value"] < 0.01
    assert entry["strongest"]["verdict"].startswith("leakage detected (shadow/")


def test_without_permutations_the_verdict_falls_back_on_the_interval(data):
    X, attributes = data
    settings = replace(CHEAP, n_permutations=0, n_held_out_permutations=0)
    entry = audit_representations(X, {"planted": attributes["planted"]}, settings)["planted"]
    assert entry["significance"] == {"shadow": {}, "kfold": {}}
    assert entry["strongest"]["p_value"] is None
    assert entry["strongest"]["verdict"] == "leakage detected (95% CI, no permutation test)"


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
    assert entry["dropped_classes"] == {"tiny": 3} and entry["n_dropped"] == 3
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


def test_familywise_p_value_is_exact():
    """Whichever row of an exchangeable set is the observed one, the familywise p-value (the
    smallest max-T adjusted p) takes each value 1/n, 2/n, ..., 1 exactly once: P(p <= j/n) = j/n."""
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 5)) * [1, 2, 3, 4, 5] + rng.normal(size=(40, 1))
    familywise = [maxt_adjusted(np.roll(scores, -row, axis=0)).min() for row in range(40)]
    assert sorted(familywise) == pytest.approx(np.arange(1, 41) / 40)


def test_familywise_p_values_by_hand():
    # Both columns hold 2, 0, -1, -1 (standardised alike); the observed row tops the first and
    # sits second in the second. Rows 0 and 1 each reach a maximum of 2 (standardised), so the
    # strongest observed score is matched by 2 of 4 rows: p = 1/2, not the first column's 1/4.
    scores = np.array([[2.0, 0.0], [0.0, 2.0], [-1.0, -1.0], [-1.0, -1.0]])
    np.testing.assert_allclose(maxt_adjusted(scores), [2 / 4, 2 / 4])
    np.testing.assert_allclose(maxt_adjusted(scores[:, :1]), [1 / 4])  # one attacker: its own p


def test_familywise_p_values_are_bonferroni_adjusted_across_test_groups(data):
    """Three groups of tests share no shuffles: shadow held-out (logreg, knn), k-fold refit
    (logreg) and k-fold held-out per fold (knn). Within a group of one attacker the max-T
    adjusted p-value is the attacker's own p-value, so its familywise p-value is 3 × its p-value
    (at most 1); the shadow group's, 3 × what it is when the shadow group is tested alone."""
    X, attributes = data
    settings = replace(
        CHEAP, refit_attackers=("logreg",), n_permutations=30, n_held_out_permutations=100
    )
    both = audit_representations(X, attributes, settings)
    alone = audit_representations(X, attributes, replace(settings, protocols=("shadow",)))
    groups = 3
    for name in ("planted", "noise"):
        tests = both[name]["significance"]
        assert tests["kfold"]["logreg"]["method"] == "refit"
        assert tests["kfold"]["knn"]["method"] == "held_out_per_fold"
        for test in tests["kfold"].values():
            for tail in ("", "_below"):
                expected = min(1.0, groups * test[f"p_value{tail}"])
                assert test[f"p_familywise{tail}"] == pytest.approx(expected), (name, tail)
        for attacker, test in tests["shadow"].items():
            single = alone[name]["significance"]["shadow"][attacker]
            assert test["p_value"] == single["p_value"]  # the same shuffles
            for tail in ("", "_below"):
                expected = min(1.0, groups * single[f"p_familywise{tail}"])
                assert test[f"p_familywise{tail}"] == pytest.approx(expected), (name, tail)
    planted = both["planted"]["significance"]
    assert planted["kfold"]["logreg"]["p_familywise"] == pytest.approx(3 / 31)  # not clipped
    assert planted["shadow"]["logreg"]["p_familywise"] == pytest.approx(3 / 101)


def test_fold_p_values_combine_by_the_median_rule():
    assert combine_folds([0.01, 0.02, 0.5, 0.03, 0.2]) == pytest.approx(5 / 3 * 0.03)
    assert combine_folds([0.01, 0.04]) == pytest.approx(2 * 0.01)
    assert combine_folds([0.9, 0.8, 0.7]) == 1.0


def test_held_out_shuffles_move_only_untrained_users():
    rng = np.random.default_rng(0)
    subset = np.array([1, 3, 4, 6])
    perms = subset_permutations(8, subset, 50, rng)
    assert (perms[0] == np.arange(8)).all()
    outside = np.setdiff1d(np.arange(8), subset)
    assert (perms[:, outside] == outside).all()
    assert all(sorted(row[subset]) == list(subset) for row in perms)
    assert len({tuple(row) for row in perms}) > 10

    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    tests, preds = [np.array([1, 3, 4, 6, 7])], [np.array([1, 1, 0, 0, 1])]
    swap = np.arange(8)
    swap[[3, 4]] = [4, 3]  # user 3 gets user 4's embedding, hence its prediction (0), and back
    by_hand = balanced_accuracy_score(y[tests[0]], [1, 0, 1, 0, 1])
    scores = held_out_scores(y, tests, preds, np.stack([np.arange(8), swap]), 2)
    np.testing.assert_allclose(scores, [balanced_accuracy_score(y[tests[0]], preds[0]), by_hand])


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


def test_split_metrics_on_unbalanced_classes_match_scikit_learn():
    """70 / 23 / 7 %: balanced accuracy is no longer plain accuracy, and both match sklearn."""
    rng = np.random.default_rng(3)
    y = rng.permutation(np.repeat([0, 1, 2], [210, 70, 20]))
    proba = rng.dirichlet(np.ones(3), len(y))
    proba[y == 0, 0] += 0.4  # the majority class is recognised best
    proba[y == 1, 1] += 0.2
    proba /= proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    scores = split_metrics(y, proba)
    assert set(scores) == set(METRICS)
    assert scores["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert scores["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert scores["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert scores["roc_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    assert abs(scores["balanced_accuracy"] - scores["accuracy"]) > 0.05  # they differ here


@pytest.mark.parametrize("majority", [0, 1])
def test_a_majority_class_predictor_scores_one_half(majority):
    y = np.where(np.arange(100) < 71, majority, 1 - majority)  # 71 % in the majority class
    proba = np.zeros((100, 2))
    proba[:, majority] = 0.8
    proba[:, 1 - majority] = 0.2
    scores = split_metrics(y, proba)
    assert scores["balanced_accuracy"] == 0.5 == balanced_accuracy_score(y, proba.argmax(1))
    assert scores["accuracy"] == pytest.approx(0.71)
    assert scores["roc_auc"] == 0.5


def test_audit_reports_balanced_accuracy_on_unbalanced_classes():
    """Classes of 180 / 80 / 40 users; X shows one bit: 1 for class 1 and half of class 2, 0
    for class 0 and the other half of class 2. Weighting classes inversely to their size (as
    every attacker does), the attacker predicts 0 where the bit is 0 and 1 where it is 1: class
    recalls (1, 1, 0) in every split, balanced accuracy exactly 2/3, accuracy about 0.87.
    With classes of 70 / 30 % and the same X for everybody, whatever constant class an attacker
    predicts, its balanced accuracy is exactly 1/2 (accuracy 0.7 or 0.3)."""
    y = np.repeat([0, 1, 2], [180, 80, 40])
    bit = ((y == 1) | ((y == 2) & (np.arange(300) % 2 == 0))).astype(float)
    X = np.column_stack([bit, np.zeros(300)])
    settings = replace(CHEAP, attackers=("logreg",), n_permutations=10, n_resamples=100)
    visible = audit_representations(X, {"visible": labels("visible", y)}, settings)["visible"]
    assert visible["majority"] == pytest.approx(0.6) and visible["chance"] == pytest.approx(1 / 3)
    for scores in (visible["logreg"], visible["kfold"]["logreg"]):
        assert scores["balanced_accuracy"]["mean"] == pytest.approx(2 / 3)
        assert scores["balanced_accuracy"]["std"] == pytest.approx(0, abs=1e-12)
        assert scores["balanced_accuracy"]["ci95"] == pytest.approx([2 / 3, 2 / 3])
        assert scores["accuracy"]["mean"] == pytest.approx(260 / 300, abs=0.02)
    for test in (t for tests in visible["significance"].values() for t in tests.values()):
        assert test["observed"] == pytest.approx(2 / 3)
    assert visible["strongest"]["balanced_accuracy"] == pytest.approx(2 / 3)

    y = (np.arange(300) % 10 >= 7).astype(int)
    blind = audit_representations(np.ones((300, 2)), {"blind": labels("blind", y)}, settings)
    blind = blind["blind"]
    for scores in (blind["logreg"], blind["kfold"]["logreg"]):
        assert scores["balanced_accuracy"]["mean"] == pytest.approx(0.5)
        assert scores["accuracy"]["mean"] in (pytest.approx(0.7), pytest.approx(0.3))
    assert blind["majority"] == pytest.approx(0.7)


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
    with pytest.raises(ValueError, match="unknown attacker 'lr'"):
        AuditSettings(refit_attackers=("lr",))
    assert AuditSettings().refit_attackers == ("logreg", "knn")
    with pytest.raises(ValueError, match="permutation counts"):
        AuditSettings(n_held_out_permutations=-1)
    with pytest.raises(ValueError, match="at least one protocol"):
        AuditSettings(protocols=())
    with pytest.raises(ValueError, match="at least one protocol and one attacker"):
        AuditSettings(attackers=())
    for fraction in (0.0, 1.0):
        with pytest.raises(ValueError, match="shadow_fraction"):
            AuditSettings(shadow_fraction=fraction)
    with pytest.raises(ValueError, match="quick, full"):
        AuditSettings.preset("thorough")
    quick = AuditSettings.preset("quick")
    assert (quick.protocols, quick.attackers) == (("shadow",), ("mlp", "xgboost"))
    kfold = AuditSettings.preset("kfold")  # a sweep's check of the trial selected with quick
    assert (kfold.protocols, kfold.attackers) == (("kfold",), ("mlp", "xgboost"))
    assert AuditSettings.preset("full") == AuditSettings()


def test_inputs_are_validated(data):
    X, attributes = data
    with pytest.raises(ValueError, match="400 users, representations 399"):
        audit_representations(X[:-1], attributes, CHEAP)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        audit_representations(bad, attributes, CHEAP)


def test_familywise_p_values_standardise_each_attackers_null():
    # Column 0's null is ten times wider than column 1's; standardised, the observed row tops
    # every permutation only in column 1 (raw, column 0 would dominate every maximum).
    wide = 10 * np.array([0.0, 1.0, 1.0, -2.0])
    narrow = np.array([2.0, 0.0, -1.0, -1.0])
    np.testing.assert_allclose(maxt_adjusted(np.column_stack([wide, narrow])), [3 / 4, 1 / 4])


def test_permutation_summary_and_summarise_by_hand():
    summary = permutation_summary(np.array([0.7, 0.5, 0.6, 0.4]))
    assert summary["null_mean"] == pytest.approx(0.5)
    assert summary["null_std"] == pytest.approx(0.1)
    assert summary["p_value"] == pytest.approx(1 / 4) and summary["n_permutations"] == 3
    assert permutation_summary(np.array([0.7, 0.5]))["null_std"] == 0.0
    one = summarise([dict.fromkeys(METRICS, 0.6)])
    assert all(one[m] == {"mean": 0.6, "std": 0.0} for m in METRICS)


def _pair(mean: float, p_two: float, observed: float, p: float, p_below: float) -> tuple:
    metrics = {"balanced_accuracy": {"mean": mean, "ci95": (mean - 0.05, mean + 0.05)}}
    test = {
        "p_familywise_two_sided": p_two,
        "observed": observed,
        "null_mean": 0.5,
        "p_familywise": p,
        "p_familywise_below": p_below,
    }
    return metrics, test


def _verdict(**pairs: tuple) -> dict:
    keys = {name: tuple(name.split("_")) for name in pairs}
    metrics = {keys[n]: pair[0] for n, pair in pairs.items()}
    tests = {keys[n]: pair[1] for n, pair in pairs.items()}
    return _strongest(metrics, tests, chance=0.5, alpha=0.05)


def test_the_verdict_rests_on_the_smallest_two_sided_familywise_p_value():
    # The significant pair is not the first by name: the verdict still finds it.
    leak = _verdict(
        kfold_logreg=_pair(0.55, 0.5, 0.55, 0.3, 0.9), shadow_mlp=_pair(0.54, 0.01, 0.7, 0.01, 1.0)
    )
    assert leak["tested"] == "shadow/mlp" and leak["verdict"].startswith("leakage detected")
    assert leak["p_value"] == 0.01 and leak["below_chance"] == []
    # Nothing significant: no pair is listed below chance.
    clean = _verdict(
        kfold_logreg=_pair(0.5, 0.5, 0.5, 0.5, 0.5), shadow_mlp=_pair(0.49, 0.3, 0.48, 0.9, 0.2)
    )
    assert clean["below_chance"] == [] and clean["verdict"].startswith("no leakage detectable")
    # Two-sided significant below the null mean while the one-sided familywise p is not: the
    # pair is still named as over-correction.
    over = _verdict(
        kfold_logreg=_pair(0.5, 0.6, 0.5, 0.5, 0.5), shadow_mlp=_pair(0.45, 0.02, 0.4, 1.0, 0.08)
    )
    assert over["below_chance"] == ["shadow/mlp"]
    assert over["verdict"].startswith("below chance: over-correction (shadow/mlp;")


def test_a_shadow_split_needs_one_expected_member_in_the_shadow_set():
    # ceil(1 / fraction), at least 2; 1 / 0.2 is 5 in floating point, 1 / 0.3 is 3.33...
    sizes = [min_class_size("shadow", shadow_fraction=f, n_folds=3) for f in (0.2, 0.3, 0.5, 0.9)]
    assert sizes == [5, 4, 2, 2]
    assert min_class_size("kfold", shadow_fraction=0.2, n_folds=7) == 7
