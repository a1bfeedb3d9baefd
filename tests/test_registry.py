"""The registry finds the user-side parameters and representation of each supported model."""

from __future__ import annotations

import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_attrcloak.config import build_config
from recbole_attrcloak.registry import get_model, register_user_side, user_side
from tests.conftest import toy_config

EXPECTED = {
    "BPR": ["user_embedding.weight"],
    "ENMF": ["user_embedding.weight"],
    "NeuMF": ["user_mf_embedding.weight", "user_mlp_embedding.weight"],
    "LightGCN": ["user_embedding.weight"],
    "NGCF": ["user_embedding.weight"],
    "DMF": [
        "user_linear.weight",
        "user_fc_layers.mlp_layers.1.weight",
        "user_fc_layers.mlp_layers.1.bias",
        "user_fc_layers.mlp_layers.4.weight",
        "user_fc_layers.mlp_layers.4.bias",
    ],
}


def _build(model_name: str, root):
    config = build_config(model_name, "toy", overrides=toy_config(root))
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    return get_model(model_name)(config, train._dataset).to(config["device"]), dataset


@pytest.mark.parametrize("model_name", sorted(EXPECTED))
def test_user_side_parameters_and_representation(model_name, toy_root):
    model, dataset = _build(model_name, toy_root)
    side = user_side(model)
    assert [name for name, _ in side.parameters(model)] == EXPECTED[model_name]

    reps = side.compute(model)
    assert reps.shape[0] == dataset.user_num
    model.zero_grad()
    reps.pow(2).sum().backward()
    user_names = set(EXPECTED[model_name])
    for name, param in model.named_parameters():
        if name in user_names:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        elif not name.startswith("item") and "GNNlayers" not in name:
            # GNN propagation mixes item embeddings into user representations; nothing else may
            # feed the user representation
            assert param.grad is None or param.grad.abs().sum() == 0, name


def test_neumf_representation_concatenates_both_user_tables(toy_root):
    model, _ = _build("NeuMF", toy_root)
    reps = user_side(model).compute(model)
    expected = torch.cat([model.user_mf_embedding.weight, model.user_mlp_embedding.weight], 1)
    assert torch.equal(reps, expected)


def test_the_blocks_of_a_representation_are_its_tables_widths(toy_root):
    neumf, _ = _build("NeuMF", toy_root)
    widths = [neumf.user_mf_embedding.embedding_dim, neumf.user_mlp_embedding.embedding_dim]
    assert user_side(neumf).blocks(neumf) == widths
    for name in ("BPR", "LightGCN", "DMF"):  # one table, or a function computes it
        model, _ = _build(name, toy_root)
        assert user_side(model).blocks(model) == []


def test_unknown_model_names_the_fix(toy_root):
    with pytest.raises(ValueError, match="unknown model 'NoSuchModel'"):
        get_model("NoSuchModel")

    class Mystery(torch.nn.Module):
        pass

    with pytest.raises(ValueError, match="register_user_side\\('Mystery'"):
        user_side(Mystery())


def test_register_custom_model():
    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.user_table = torch.nn.Embedding(5, 3)
            self.item_table = torch.nn.Embedding(7, 3)

    register_user_side("Custom", params=["user_table."])
    model = Custom()
    side = user_side(model)
    assert [n for n, _ in side.parameters(model)] == ["user_table.weight"]
    assert torch.equal(side.compute(model), model.user_table.weight)


def test_defence_table_names_every_method_once():
    from recbole_attrcloak.cli import parse_args
    from recbole_attrcloak.defences import CHOICES, DEFENCES, METHODS, get_defence, method_of

    assert get_defence("none") is None
    for name in DEFENCES:
        assert callable(get_defence(name)), name  # every entry point imports
        assert parse_args(["--unlearn", name])[0].unlearn == name
    assert set(CHOICES) == {"none", *DEFENCES}
    assert sorted(METHODS) == sorted(
        ["attrcloak-dd", "attrcloak-df", *set(DEFENCES) - {"attrcloak"}]
    )
    assert method_of({"unlearn": "attrcloak", "au_mode": "dd"}).label == "AttrCloak-DD"
    assert method_of({"unlearn": "u2u", "au_mode": "dd"}).name == "u2u"
    assert method_of({"unlearn": "none"}) is None
    with pytest.raises(ValueError, match=r"attrcloak: the settings must select one variant"):
        method_of({"unlearn": "attrcloak"})
    assert DEFENCES["rap"].applies_to("BPR") and not DEFENCES["rap"].applies_to("NGCF")
    with pytest.raises(ValueError, match="unknown --unlearn method 'magic'"):
        get_defence("magic")
