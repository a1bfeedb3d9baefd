"""AttrCloak on other backbones and the guards around what gets written."""

from __future__ import annotations

import pytest
import scipy.sparse
import torch

from recbole_attrcloak import report
from recbole_attrcloak.engine import sample_outside
from recbole_attrcloak.quick_start import run
from recbole_attrcloak.registry import UserSide
from recbole_attrcloak.unlearning.attrcloak import training_history
from recbole_attrcloak.unlearning.base import original_top_items
from tests.conftest import toy_config


@pytest.mark.parametrize(
    "model_name, mode, retention",
    [
        pytest.param("LightGCN", "dd", "train_loss", marks=pytest.mark.current),
        ("NeuMF", "df", "train_loss"),
        ("BPR", "dd", "ranking"),
    ],
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
    assert len(result["unlearning"]["trace"]["l_au"]) == 10  # target zero: never met
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


@pytest.mark.parametrize(
    ("objective", "traced", "tol_key", "tol"),
    [
        ("gaussian", "excess", "au_target_tol", 0.02),
        ("relabel", "beyond_tolerance", "au_z_tol", 2.0),
    ],
)
def test_df_keeps_the_first_state_that_meets_the_target(
    toy_root, tmp_path, objective, traced, tol_key, tol
):
    result = run(
        "BPR",
        "toy",
        config_dict=toy_config(
            toy_root, epochs=3, au_mode="df", au_objective=objective, **{tol_key: tol}
        ),
        unlearn="attrcloak",
        output_dir=str(tmp_path / "out"),
    )
    outcome = result["unlearning"]
    distance = outcome["trace"][traced]
    kept = outcome["steps"]
    bound = tol if objective == "gaussian" else 0.0  # relabel traces the excess over its bounds
    assert outcome["stop_reason"] == "target_reached"
    assert distance[0] > bound  # the planted gender signal is beyond its target at the start
    assert distance[kept] <= bound and all(e > bound for e in distance[:kept])
    if objective == "gaussian":  # the returned model is the kept state: every term near target
        assert outcome["final_l_au"] <= 2 * tol**2 + 1e-9
    else:  # every z-score of the kept state is within its tolerance (the axes' and the
        # one-vs-rest labelings' ("attribute=class") calibrated to their number)
        assert all(t["met"] for t in outcome["terms"])
        own = [t for t in outcome["terms"] if "/axis" not in t["name"]]
        own = [t for t in own if "=" not in t["name"].split("/")[0]]
        assert own and all(abs(t["value"]) <= tol for t in own)


class _FixedScores(torch.nn.Module):
    """Two real users (ids 1, 2) scoring five items (0 = padding) by a fixed table."""

    USER_ID = "user_id"
    n_users, n_items, device = 3, 5, torch.device("cpu")
    table = torch.tensor([[0.0] * 5, [9.0, 1.0, 4.0, 3.0, 2.0], [9.0, 5.0, 1.0, 2.0, 3.0]])

    def full_sort_predict(self, interaction):
        return self.table[interaction[self.USER_ID]]


def test_top_items_leave_out_the_excluded_items():
    model = _FixedScores()
    items, scores = original_top_items(model, 2)
    assert items.tolist() == [[2, 3], [1, 4]]  # padding item 0 never counts
    exclude = torch.zeros(2, 5, dtype=torch.bool)
    exclude[0, 2] = exclude[1, 1] = True  # e.g. each user's training item
    items, scores = original_top_items(model, 2, exclude)
    assert items.tolist() == [[3, 4], [4, 3]]
    assert scores.tolist() == [[3.0, 2.0], [3.0, 2.0]]


def test_training_history_marks_each_users_training_items():
    class _Data:
        class _dataset:  # noqa: N801 - RecBole's attribute name
            @staticmethod
            def inter_matrix(form):
                return scipy.sparse.coo_matrix(([1.0, 1.0, 1.0], ([1, 1, 2], [3, 4, 1])), (3, 5))

    history = training_history(_Data(), _FixedScores())
    want = [[True, False, False, True, True], [True, True, False, False, False]]
    assert history.tolist() == want  # item 0, RecBole's padding, counts as seen


def test_negatives_are_drawn_outside_the_excluded_items():
    torch.manual_seed(0)
    excluded = torch.zeros(200, 10, dtype=torch.bool)
    excluded[:, :5] = True  # items 1..4 (and the padding item 0) are never negatives
    rows = torch.arange(200).repeat(3)
    picks = sample_outside(excluded, rows, tries=64)
    assert len(picks) == 600 and picks.min() >= 5 and picks.max() <= 9
    # Nothing allowed: still a valid item id (the last draw), never the padding item.
    picks = sample_outside(torch.ones(50, 10, dtype=torch.bool), torch.arange(50), tries=4)
    assert picks.min() >= 1 and picks.max() <= 9
