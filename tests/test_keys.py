"""Every setting of ours is checked when the config is built (before any data is read or a model
trained), from one table (``keys.KEYS``): bad values, unknown keys with a "did you mean",
malformed config files, and sweep specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recbole_attrcloak.config import PROPERTIES, build_config
from recbole_attrcloak.tune import SpecError, load_spec
from tests.conftest import toy_config

# (key, a bad value, what the message says)
BAD_VALUES = [
    ("ldp_epsilon", 0, "> 0"),
    ("ldp_epsilon", float("inf"), "> 0"),
    ("blurme_p", 0.0, "in (0, 1]"),
    ("blurme_p", 1.5, "in (0, 1]"),
    ("blurme_c", 0, "> 0"),
    ("blurme_strategy", "magic", "one of ['greedy', 'sampled']"),
    ("u2u_lambda", -1.0, ">= 0"),
    ("d2d_lambda", -0.5, ">= 0"),
    ("rap_lambda", -1.0, ">= 0"),
    ("rap_hidden_size", 0, "an integer >= 1"),
    ("du_regularizer", "none", "one of ['ranking', 'l2']"),
    ("du_topn", 1, "an integer >= 2"),
    ("du_steps", 0, "an integer >= 1"),
    ("du_learner", "foo", "one of"),
    ("du_learning_rate", 0, "in (0, 1]"),
    ("au_target_ratio", 0, "> 0"),
    ("au_ridge", 0, "> 0"),
    ("au_shrinkage", 1.5, "'auto' or in [0, 1]"),
    ("au_shrinkage", "sometimes", "'auto' or in [0, 1]"),
    ("au_dd_topk", 0, "an integer >= 1"),
    ("au_learning_rate", 1e38, "in (0, 1]"),
    ("au_learning_rate", 0, "in (0, 1]"),
    ("au_alpha", -1, "unset (~) or in [0, 1]"),
    ("au_learner", "foo", "one of ['adam'"),
    ("au_relative_lr", "yes", "true or false"),
    ("au_max_steps", 2.5, "an integer >= 1"),
    ("au_tol", 1.0, "in [0, 1)"),
    ("au_permutations", 0, "an integer >= 1"),
    ("au_min_class_size", 0, "an integer >= 1"),
    ("au_check_every", 0, "an integer >= 1"),
    ("au_patience", 0, "an integer >= 1"),
    ("au_target_tol", -0.1, ">= 0"),
    ("au_mode", "both", "one of ['dd', 'df']"),
    ("au_dd_retention", "all", "one of"),
    ("au_solver", "magic", "one of"),
    ("au_covariance", "full", "one of"),
    ("au_target", "half", "one of"),
    ("audit", "medium", "one of ['quick', 'full', 'kfold']"),
    ("audit_n_jobs", 0, "an integer >= 1"),
    ("audit_seed", "abc", "an integer"),
    ("sensitive_attributes", [], "a non-empty list"),
]


@pytest.mark.parametrize(("key", "value", "wants"), BAD_VALUES)
def test_bad_values_are_refused_when_the_config_is_built(toy_root, key, value, wants):
    with pytest.raises(ValueError) as error:
        build_config("BPR", "toy", overrides=toy_config(toy_root, **{key: value}))
    assert f"{key} must be {wants}" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"au_learner": "Adam", "du_learner": "sgd"},  # RecBole's learner names, any case
        {"au_shrinkage": "auto"},
        {"au_shrinkage": 0.3, "au_alpha": None},
        {"au_solver": "fixed", "au_alpha": 0.5},
        {"au_max_steps": 20.0, "au_learning_rate": 1},
        {"sensitive_attributes": "gender, age"},
        {"ldp_epsilon": 1, "blurme_p": 1, "u2u_lambda": 0},
    ],
)
def test_good_values_pass(toy_root, settings):
    config = build_config("BPR", "toy", overrides=toy_config(toy_root, **settings))
    if "sensitive_attributes" in settings:
        assert config["sensitive_attributes"] == ["gender", "age"]


def test_the_fixed_solver_needs_an_alpha(toy_root):
    with pytest.raises(ValueError, match=r"au_solver=fixed needs au_alpha in \[0, 1\]"):
        build_config("BPR", "toy", overrides=toy_config(toy_root, au_solver="fixed"))


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("au_learnig_rate", "au_learning_rate"),
        ("au_dd_top_k", "au_dd_topk"),
        ("ldp_epsilom", "ldp_epsilon"),
        ("blurme_pp", "blurme_p"),
        ("u2u_lamda", "u2u_lambda"),
        ("d2d_lambd", "d2d_lambda"),
        ("rap_hidden", "rap_hidden_size"),
        ("du_step", "du_steps"),
        ("audit_sed", "audit_seed"),
        ("sensitve_attributes", "sensitive_attributes"),  # no prefix, but one letter off ours
        ("unlern", "unlearn"),
        ("audits", "audit"),
    ],
)
def test_unknown_keys_are_refused_with_the_closest_key(toy_root, typo, meant):
    with pytest.raises(ValueError, match=rf"unknown setting '{typo}' \(did you mean '{meant}'\?\)"):
        build_config("BPR", "toy", overrides=toy_config(toy_root, **{typo: 0.3}))


def test_recbole_keys_near_ours_are_not_typos(toy_root):
    # NeuMF's key given to BPR, and RecBole's own learner keys: close to rap_hidden_size,
    # du_learner and du_learning_rate, but not ours
    settings = {"mlp_hidden_size": [8], "hidden_size": 8, "learner": "adam"}
    build_config("BPR", "toy", overrides=toy_config(toy_root, **settings))


def test_an_unknown_key_of_ours_without_a_close_match(toy_root):
    with pytest.raises(ValueError, match=r"unknown setting 'au_zzz' \(see properties"):
        build_config("BPR", "toy", overrides=toy_config(toy_root, au_zzz=1))


def test_typos_in_config_files_are_refused_too(toy_root, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("au_learnig_rate: 0.3\n")
    with pytest.raises(ValueError, match="did you mean 'au_learning_rate'"):
        build_config("BPR", "toy", [str(path)], toy_config(toy_root))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: [1, 2\n", r"not valid YAML \(.* at line 2, column 1\)"),
        ("epochs: 1\n  seed: 2\n", r"not valid YAML \(mapping values are not allowed here"),
        ("- epochs\n- 1\n", "expected 'key: value' lines, got a list"),
    ],
)
def test_malformed_config_files_are_one_line_errors(toy_root, tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        build_config("BPR", "toy", [str(path)], toy_config(toy_root))
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_an_empty_config_file_is_fine(toy_root, tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    config = build_config("BPR", "toy", [str(tmp_path / "empty.yaml")], toy_config(toy_root))
    assert config["epochs"] == 8


def test_the_table_and_the_properties_name_the_same_keys():
    from recbole_attrcloak.keys import KEYS, PREFIXES, check_values

    defaults = {}
    for name in ("overall.yaml", "baselines.yaml"):
        defaults |= yaml.safe_load((PROPERTIES / name).read_text())
    ours = {k for k in defaults if k.startswith(PREFIXES)} | {
        "unlearn",
        "audit",
        "sensitive_attributes",
    }
    assert ours == set(KEYS)
    check_values(defaults)  # every default passes its own check


def _spec(**config) -> dict:
    return {"config": {"model": "BPR", "dataset": "ml-100k", **config}}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"au_learnig_rate": 0.3}, "did you mean 'au_learning_rate'"),
        ({"unlearn": "ldp", "ldp_epsilon": {"grid": [1.0, 0.0]}}, "ldp_epsilon must be > 0"),
        ({"unlearn": "magic"}, "unknown --unlearn method 'magic'"),
        ({"au_dd_topk": {"choice": [0]}}, "au_dd_topk must be an integer >= 1"),
        (
            {"unlearn": "rap", "model": {"grid": ["BPR", "NGCF"]}},
            "rap applies to BPR, NeuMF, LightGCN, not NGCF",
        ),
    ],
)
def test_sweep_specs_are_checked_before_anything_runs(config, message):
    with pytest.raises(SpecError, match=message):
        load_spec(_spec(**config))


def test_sweep_overrides_are_checked_too():
    with pytest.raises(SpecError, match="au_alpha must be"):
        load_spec(_spec(), overrides={"au_alpha": 2})


def test_sweep_config_files_count_for_the_checks(tmp_path: Path):
    path = tmp_path / "fixed.yaml"
    path.write_text("au_solver: fixed\n")
    spec = {**_spec(au_alpha=0.5), "config_files": [str(path)]}
    assert len(load_spec(spec).trials) == 1
    with pytest.raises(SpecError, match="au_solver=fixed needs au_alpha"):
        load_spec({**_spec(), "config_files": [str(path)]})
