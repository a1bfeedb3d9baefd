"""The baseline defences on the toy dataset: U2U-R, D2D-R, BlurMe, LDP-SH (RAP: test_rap.py)."""

from __future__ import annotations

import copy
import dataclasses

import pandas as pd
import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from recbole_attrcloak import compat
from recbole_attrcloak.backbone import evaluate_utility, fit_model
from recbole_attrcloak.context import RunContext
from recbole_attrcloak.defences import DEFENCES
from recbole_attrcloak.model.rap import RAPBPR
from recbole_attrcloak.quick_start import run
from recbole_attrcloak.registry import get_model
from recbole_attrcloak.retrain import run_blurme, run_ldp, run_rap
from recbole_attrcloak.unlearning.base import only_user_side
from recbole_attrcloak.unlearning.distance_unlearning import (
    METHODS,
    DistanceUnlearningTrainer,
    run_d2d,
    run_u2u,
)
from tests.conftest import toy_config, toy_context


def _context(root, out, model_name="BPR", **extra) -> RunContext:
    return toy_context(root, out, model_name, **extra)


@pytest.fixture(scope="module")
def toy_ctx(toy_root, tmp_path_factory) -> RunContext:
    return _context(toy_root, tmp_path_factory.mktemp("baselines"), du_steps=30)


def _with(ctx: RunContext, tmp_path=None, **keys) -> RunContext:
    """``ctx`` with a copied config (and output folder) carrying ``keys``."""
    config = copy.deepcopy(ctx.config)
    for key, value in keys.items():
        config[key] = value
    return dataclasses.replace(ctx, config=config, output_dir=tmp_path or ctx.output_dir)


@pytest.mark.parametrize(
    ("defence", "estimator"), [(run_u2u, None), (run_d2d, "rff"), (run_d2d, "exact")]
)
@pytest.mark.parametrize("regularizer", ["ranking", "l2"])
def test_distance_unlearning_changes_only_user_parameters(toy_ctx, defence, estimator, regularizer):
    before = {k: v.clone() for k, v in toy_ctx.model.state_dict().items()}
    keys = {"du_regularizer": regularizer, "d2d_estimator": estimator or "rff"}
    result = defence(_with(toy_ctx, **keys))
    after = result.model.state_dict()
    assert torch.equal(after["item_embedding.weight"], before["item_embedding.weight"])
    assert not torch.equal(after["user_embedding.weight"], before["user_embedding.weight"])
    assert torch.equal(toy_ctx.model.user_embedding.weight, before["user_embedding.weight"])
    assert all(p.requires_grad for p in result.model.parameters())
    info = result.info
    assert info["final_distinguishability"] < info["initial_distinguishability"]
    assert info["steps"] == 30 and len(info["trace"]["distinguishability"]) == 30
    assert result.context is None
    assert info.get("estimator") == estimator


@torch.no_grad()
def _full_scores(model) -> torch.Tensor:
    """Scores of every real user × every real item (the padding item scored -inf)."""
    from recbole.data.interaction import Interaction

    model.eval()
    users = torch.arange(1, model.n_users)
    scores = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
    scores[:, 0] = -torch.inf
    return scores


def _ranking_kept(before, after, n: int = 10) -> float:
    """Mean share of each user's top-n items under ``before`` still in its top-n under ``after``."""
    old = _full_scores(before).topk(n, dim=1).indices
    new = _full_scores(after).topk(n, dim=1).indices
    return float((old[:, :, None] == new[:, None, :]).any(2).float().mean())


@pytest.mark.parametrize(("method", "weight"), [("u2u", 100.0), ("d2d", 10.0)])
@pytest.mark.parametrize("regularizer", ["ranking", "l2"])
def test_a_larger_lambda_keeps_more_of_the_original_ranking(toy_ctx, method, weight, regularizer):
    """λ = 0 only pulls the classes together; the regulariser at weight λ > 0 holds the users'
    original top-10 items (measured here from the full-sort scores, not by the regulariser)."""
    key = DEFENCES[method].load()
    runs = {
        lam: key(_with(toy_ctx, du_regularizer=regularizer, **{f"{method}_lambda": lam}))
        for lam in (0.0, weight)
    }
    kept = {lam: _ranking_kept(toy_ctx.model, run.model) for lam, run in runs.items()}
    free, held = runs[0.0].info, runs[weight].info
    assert free["initial_regularizer"] == pytest.approx(0.0, abs=1e-6)  # the original: 0
    assert held["initial_regularizer"] == pytest.approx(0.0, abs=1e-6)
    assert kept[weight] > kept[0.0] + 0.3, kept
    assert held["final_regularizer"] < 0.5 * free["final_regularizer"]
    # the price: less of the distinguishability is removed
    assert held["final_distinguishability"] > free["final_distinguishability"]


def test_ranking_regulariser_penalises_shrinking_score_gaps_only(toy_ctx):
    """Scaling BPR's user vectors by c scales every score gap by c: the regulariser stays 0
    for c = 2 (gaps grow) and is the mean original gap / 2 for c = 1/2, computed here from the
    original model's sorted top-N scores."""
    model = copy.deepcopy(toy_ctx.model)
    top_n = int(toy_ctx.config["du_topn"])
    top = _full_scores(model).topk(top_n, dim=1).values
    mean_gap = float((top[:, :-1] - top[:, 1:]).mean())
    labels = {n: torch.as_tensor(lab.codes) for n, lab in toy_ctx.attributes.items()}
    table = model.user_embedding.weight
    with only_user_side(model) as side:
        trainer = DistanceUnlearningTrainer(toy_ctx.config, model, side, labels, METHODS["u2u"])
        values = {1.0: trainer.losses()[1]}
        with torch.no_grad():
            table.mul_(2.0)
        values[2.0] = trainer.losses()[1]
        with torch.no_grad():
            table.mul_(0.25)
        values[0.5] = trainer.losses()[1]
    assert values[1.0] == pytest.approx(0.0, abs=1e-6)
    assert values[2.0] == pytest.approx(0.0, abs=1e-6)
    assert mean_gap > 0.01 and values[0.5] == pytest.approx(mean_gap / 2, rel=1e-3)


def test_rap_adversary_holds_the_attacker_at_chance(toy_root, tmp_path):
    """Without the adversary (λ = 0) the attacker learns the planted gender and its loss falls;
    with it the recommender's updates undo what the attacker learns, so the attacker's loss stays
    near its chance-level start and the gap to λ = 0 widens as training goes on."""
    keys = {"epochs": 12, "stopping_step": 100}
    free = _context(toy_root, tmp_path / "free", "RAPBPR", rap_lambda=0.0, **keys)
    adversarial = _context(toy_root, tmp_path / "adv", "RAPBPR", rap_lambda=5.0, **keys)
    trainers = {}
    for name, ctx in (("free", free), ("adv", adversarial)):
        init_seed(ctx.config["seed"], True)
        model = RAPBPR(ctx.config, ctx.train_data._dataset).to(ctx.config["device"])
        trainers[name] = fit_model(ctx.config, model, ctx.train_data, ctx.valid_data)
    free_loss = [att for _, att in trainers["free"].loss_parts]
    adv_loss = [att for _, att in trainers["adv"].loss_parts]
    assert free_loss[-1] < 0.3 * free_loss[0]
    assert adv_loss[-1] > 0.75 * adv_loss[0]
    assert adv_loss[-1] - free_loss[-1] > 2 * (adv_loss[0] - free_loss[0]) + 0.3


def test_rff_d2d_removes_what_the_exact_mmd_measures(toy_ctx):
    """D2D-R with the RFF estimator lowers the exact MMD² about as much as D2D-R with the exact
    one, and its draws are seeded: the same run gives the same model."""
    from recbole_attrcloak.losses import d2d_loss
    from recbole_attrcloak.registry import user_side

    def exact_mmd(model) -> float:
        with torch.no_grad():
            reps = user_side(model).compute(model)
            codes = torch.as_tensor(toy_ctx.attributes["gender"].codes)
            return float(d2d_loss(reps, codes))

    keys = {"sensitive_attributes": ["gender"], "du_steps": 60, "d2d_lambda": 0.1}
    runs = {e: run_d2d(_with(toy_ctx, d2d_estimator=e, **keys)) for e in ("exact", "rff")}
    before = exact_mmd(toy_ctx.model)
    after = {e: exact_mmd(r.model) for e, r in runs.items()}
    assert after["exact"] < 0.1 * before
    assert after["rff"] < 0.1 * before and abs(after["rff"] - after["exact"]) < 0.05 * before
    again = run_d2d(_with(toy_ctx, d2d_estimator="rff", **keys)).model.user_embedding.weight
    assert torch.equal(again, runs["rff"].model.user_embedding.weight)


def _tokens(dataset, frame: pd.DataFrame) -> set[tuple[str, str]]:
    users = dataset.id2token(dataset.uid_field, frame[dataset.uid_field].to_numpy())
    items = dataset.id2token(dataset.iid_field, frame[dataset.iid_field].to_numpy())
    return set(zip(users.tolist(), items.tolist(), strict=True))


def _split(ctx: RunContext, loader) -> pd.DataFrame:
    inter = loader._dataset.inter_feat
    fields = [ctx.dataset.uid_field, ctx.dataset.iid_field]
    return pd.DataFrame({f: inter[f].numpy() for f in fields})


@pytest.mark.parametrize("defence", [run_blurme, run_ldp])
def test_retraining_defences_keep_the_evaluation_splits(toy_ctx, tmp_path, defence):
    ctx = _with(toy_ctx, tmp_path, epochs=2, blurme_p=0.25, ldp_epsilon=4.0)
    result = defence(ctx)
    new = result.context
    method = "blurme" if defence is run_blurme else "ldp"
    folder = tmp_path / "derived" / f"toy-{method}"
    assert new.config["data_path"] == str(folder) and new.config["dataset"] == f"toy-{method}"
    assert {p.name for p in folder.iterdir()} >= {
        f"toy-{method}.{s}.inter" for s in ("train", "valid", "test")
    } | {f"toy-{method}.user"}
    for split in ("valid_data", "test_data"):
        original = _tokens(ctx.dataset, _split(ctx, getattr(ctx, split)))
        derived = _tokens(new.dataset, _split(new, getattr(new, split)))
        assert derived == original
    original_train = _tokens(ctx.dataset, _split(ctx, ctx.train_data))
    derived_train = _tokens(new.dataset, _split(new, new.train_data))
    if method == "blurme":
        assert derived_train > original_train
        assert len(derived_train) - len(original_train) == result.info["added_interactions"]
    else:
        assert derived_train != original_train
        assert len(derived_train & original_train) == result.info["kept_interactions"]
    codes = {
        new.dataset.id2token(new.dataset.uid_field, u): c
        for u, c in enumerate(new.attributes["gender"].codes)
    }
    reference = {
        ctx.dataset.id2token(ctx.dataset.uid_field, u): c
        for u, c in enumerate(ctx.attributes["gender"].codes)
    }
    assert codes == reference


@pytest.mark.parametrize(
    ("defence", "key", "value", "message"),
    [
        (run_u2u, "u2u_lambda", -1.0, "u2u_lambda must be >= 0"),
        (run_d2d, "d2d_lambda", -0.5, "d2d_lambda must be >= 0"),
        (run_rap, "rap_lambda", -1.0, "rap_lambda must be >= 0"),
        (run_rap, "rap_game", "zero-sum", "rap_game must be one of"),
        (run_blurme, "blurme_p", 0.0, r"blurme_p must be in \(0, 1\]"),
        (run_blurme, "blurme_p", 1.5, r"blurme_p must be in \(0, 1\]"),
        (run_ldp, "ldp_epsilon", 0.0, "ldp_epsilon must be > 0"),
        (run_ldp, "ldp_epsilon", -2.0, "ldp_epsilon must be > 0"),
        (run_blurme, "blurme_strategy", "magic", "blurme_strategy must be one of"),
        (run_u2u, "du_regularizer", "none", "du_regularizer must be one of"),
        (run_d2d, "d2d_estimator", "approx", "d2d_estimator must be one of"),
        (run_d2d, "d2d_features", 0, "d2d_features must be an integer >= 1"),
    ],
)
def test_bad_hyper_parameters(toy_ctx, tmp_path, defence, key, value, message):
    with pytest.raises(ValueError, match=message):
        defence(_with(toy_ctx, tmp_path, **{key: value}))
    assert not (tmp_path / "derived").exists()


@pytest.mark.parametrize("method", ["blurme"])  # RAP: tests/test_rap.py
def test_pipeline_reports_retrained_defences(toy_root, tmp_path, method):
    report = run(
        "BPR",
        "toy",
        config_dict=toy_config(toy_root, epochs=2),
        unlearn=method,
        output_dir=str(tmp_path / method),
    )
    assert report["method"] == method
    unlearned = report["stages"]["unlearned"]
    assert set(unlearned["privacy"]) == {"gender", "age"}
    # the reported utility is the retrained model's, as stock RecBole evaluates its checkpoint
    checkpoint = compat.load_checkpoint(report["checkpoint"]["checkpoint"])
    config = checkpoint["config"]
    init_seed(config["seed"], config["reproducibility"])
    _, valid, test = data_preparation(config, create_dataset(config))
    model = get_model(config["model"])(config, valid._dataset)
    model.load_state_dict(checkpoint["state_dict"])
    scores = evaluate_utility(config, model, valid, test)["test"]
    assert unlearned["utility"]["ndcg@10"] == pytest.approx(scores["ndcg@10"])
    assert report["retention"]["ndcg@10"] == pytest.approx(
        scores["ndcg@10"] / report["stages"]["original"]["utility"]["ndcg@10"]
    )
    expected = f"BPR-toy-{method}"  # named after the run, whatever model the defence trains
    assert report["checkpoint"]["checkpoint"].endswith(f"{expected}.pth")
