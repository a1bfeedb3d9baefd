"""RAP as RecBole model variants (RAPBPR, RAPNeuMF, RAPLightGCN) on the toy dataset, whose
interactions carry a planted gender signal: registration, the user representation the adversary
plays against, both games against a fresh attacker, and the defence through the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed
from sklearn.model_selection import StratifiedKFold, cross_val_score

from recbole_attrcloak import compat
from recbole_attrcloak.audit import make_attacker
from recbole_attrcloak.backbone import fit_model, user_representations
from recbole_attrcloak.config import build_config
from recbole_attrcloak.data.attributes import load_attributes
from recbole_attrcloak.defences import DEFENCES
from recbole_attrcloak.model.rap import RAP_VARIANTS, RAPTrainer
from recbole_attrcloak.quick_start import run
from recbole_attrcloak.registry import get_model, get_trainer, user_side
from tests.conftest import toy_config

BACKBONES = ("BPR", "NeuMF", "LightGCN")


def _train(root, out, backbone: str, **keys):
    """RAP<backbone> trained on the toy data (gender only) with ``keys``; (model, trainer,
    gender codes without the padding user)."""
    name = f"RAP{backbone}"
    settings = {"sensitive_attributes": ["gender"], "epochs": 12, "stopping_step": 100, **keys}
    config = build_config(name, "toy", overrides=toy_config(root, **settings))
    config["checkpoint_dir"] = str(out)
    init_seed(config["seed"], True)
    dataset = create_dataset(config)
    train, valid, _ = data_preparation(config, dataset)
    model = get_model(name)(config, train._dataset).to(config["device"])
    trainer = fit_model(config, model, train, valid)
    return model, trainer, load_attributes(config, dataset)["gender"].codes[1:]


def _fresh_attack(model, codes: np.ndarray) -> float:
    """Balanced accuracy of a fresh logistic-regression attacker (5-fold) on the registry's
    user representations of ``model``."""
    known = codes >= 0
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = cross_val_score(
        make_attacker("logreg", 0),
        user_representations(model)[known],
        codes[known],
        cv=folds,
        scoring="balanced_accuracy",
    )
    return float(scores.mean())


def test_the_defence_table_lists_every_variant():
    assert DEFENCES["rap"].backbones == tuple(RAP_VARIANTS) == BACKBONES


@pytest.mark.parametrize("backbone", BACKBONES)
def test_variant_is_registered_with_its_backbones_user_side(backbone, toy_root):
    name = f"RAP{backbone}"
    variant = get_model(name)
    assert variant is RAP_VARIANTS[backbone] and issubclass(variant, get_model(backbone))
    assert get_trainer(None, name) is RAPTrainer
    config = build_config(name, "toy", overrides=toy_config(toy_root))
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    model = variant(config, train._dataset)
    side = user_side(model)
    assert side.params == user_side(get_model(backbone)(config, train._dataset)).params
    # the adversary plays against exactly the representation the audit reads
    with torch.no_grad():
        model.eval()
        batch = model.user_representation(torch.arange(dataset.user_num))
    torch.testing.assert_close(batch, side.compute(model).detach(), rtol=1e-6, atol=1e-6)
    assert model.adversary.attackers["gender"][0].in_features == batch.shape[1]
    assert not any(n.startswith("adversary") for n, _ in side.parameters(model))


@pytest.mark.parametrize(
    ("backbone", "weight", "ceiling"),
    [("BPR", 20.0, 0.7), ("NeuMF", 20.0, 0.7), ("LightGCN", 100.0, 0.85)],
)
def test_confusion_game_lowers_a_fresh_attacker(backbone, weight, ceiling, toy_root, tmp_path):
    """Without the adversary (λ = 0) a fresh attacker (standardised logistic regression) reads the
    planted gender from the user representations; with the confusion game it falls toward chance
    (0.5), and the in-training attacker never gets ahead. LightGCN needs a larger λ and keeps
    more: its propagated representation averages in the embeddings of the user's items, a
    signal the user side cannot drop (docs/baselines.md)."""
    free, _, codes = _train(toy_root, tmp_path / "free", backbone, rap_lambda=0.0)
    game, trainer, _ = _train(
        toy_root, tmp_path / "game", backbone, rap_lambda=weight, rap_game="confusion"
    )
    assert _fresh_attack(free, codes) > 0.95
    assert _fresh_attack(game, codes) < ceiling
    # chance for the in-training attacker: 0.64 nats (1/3 vs 2/3); without the game it reaches 0
    assert min(att for _, att in trainer.loss_parts) > 0.45


@pytest.mark.parametrize("backbone", ["BPR", "NeuMF"])
def test_minimax_game_holds_the_adversary_near_chance(backbone, toy_root, tmp_path):
    """Without the adversary (λ = 0) the attacker learns the planted gender and its loss falls;
    with the minimax game (λ = 5) the recommender's updates undo what the attacker learns, so
    its loss ends near the chance-level start. (On LightGCN the attacker gets ahead and its
    softmax saturates: docs/baselines.md.)"""
    _, free, _ = _train(toy_root, tmp_path / "free", backbone, rap_lambda=0.0)
    _, adversarial, _ = _train(toy_root, tmp_path / "adv", backbone, rap_lambda=5.0)
    free_loss = [att for _, att in free.loss_parts]
    adv_loss = [att for _, att in adversarial.loss_parts]
    assert free_loss[-1] < 0.3 * free_loss[0]
    assert adv_loss[-1] > 0.75 * adv_loss[0]
    assert adv_loss[-1] - free_loss[-1] > 2 * (adv_loss[0] - free_loss[0]) + 0.3


@pytest.mark.parametrize("backbone", BACKBONES)
def test_pipeline_runs_rap_on_each_backbone(backbone, toy_root, tmp_path):
    report = run(
        backbone,
        "toy",
        config_dict=toy_config(toy_root, epochs=2, rap_game="confusion"),
        unlearn="rap",
        output_dir=str(tmp_path / "out"),
        export_embeddings=True,
    )
    name = f"RAP{backbone}"
    info = report["unlearning"]
    assert info["model"] == name and info["game"] == "confusion"
    assert len(info["loss_parts"]["attacker"]) == info["epochs"] == 2
    unlearned = report["stages"]["unlearned"]
    assert set(unlearned["privacy"]) == {"gender", "age"}
    assert unlearned["utility"]["ndcg@10"] > 0
    # named after the run; the checkpoint holds the variant, which stock RecBole loads
    assert report["checkpoint"]["checkpoint"].endswith(f"{backbone}-toy-rap.pth")
    saved = compat.load_checkpoint(report["checkpoint"]["checkpoint"])
    assert saved["config"]["model"] == name
    stages = np.load(report["embeddings"])
    assert stages["original"].shape == stages["unlearned"].shape  # the same representation


def test_rap_refuses_another_backbone_before_training(toy_root, tmp_path):
    with pytest.raises(
        ValueError, match=r"--unlearn rap applies to BPR, NeuMF, LightGCN, not NGCF"
    ):
        run(
            "NGCF",
            "toy",
            config_dict=toy_config(toy_root),
            unlearn="rap",
            output_dir=str(tmp_path / "o"),
        )
    assert not (tmp_path / "o").exists()
