"""AttrCloak on other backbones and the guards around what gets written."""

from __future__ import annotations

import pytest
import torch

from recbole_attrcloak import report
from recbole_attrcloak.quick_start import run
from recbole_attrcloak.registry import UserSide
from tests.conftest import toy_config


@pytest.mark.parametrize(
    "model_name, mode, retention",
    [("LightGCN", "dd", "train_loss"), ("NeuMF", "df", "train_loss"), ("BPR", "dd", "ranking")],
)
def test_only_user_side_changes(model_name, mode, retention, toy_root, tmp_path):
    result = run(
        model_name,
        "toy",
        config_dict=toy_config(
            toy_root,
            epochs=3,
            au_mode=mode,
            au_max_steps=10,
            au_dd_retention=retention,
            au_dd_topk=10,
            au_target="zero",
        ),
        unlearn="attrcloak",
        output_dir=str(tmp_path / "out"),
    )
    before = torch.load(result["checkpoint"]["original"], weights_only=False)["state_dict"]
    after = torch.load(result["checkpoint"]["weights"], weights_only=True)["state_dict"]
    user = {
        "LightGCN": ["user_embedding.weight"],
        "BPR": ["user_embedding.weight"],
        "NeuMF": ["user_mf_embedding.weight", "user_mlp_embedding.weight"],
    }[model_name]
    assert result["unlearning"]["steps"] == 10
    for name, value in before.items():
        if name in user:
            assert not torch.equal(value, after[name]), name
        else:
            assert torch.equal(value, after[name]), name


def test_nan_weights_are_never_written(tmp_path):
    model = torch.nn.Embedding(3, 2)
    model.other_parameter_name = []
    model.other_parameter = lambda: None
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    target = tmp_path / "bad.pth"
    with pytest.raises(FloatingPointError, match="non-finite"):
        report.save_recbole_checkpoint(target, {"model": "X"}, model)
    assert list(tmp_path.iterdir()) == []


def test_model_without_user_side_parameters():
    side = UserSide(("user_embedding.",))
    with pytest.raises(ValueError, match="no user-side parameters"):
        side.parameters(torch.nn.Linear(2, 2))
