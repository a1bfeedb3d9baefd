"""benchmarks/item_refit.py and attribute_cost.py: the refit outside the user side and the
docs blocks of both studies."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their helpers by bare name

from tests.conftest import toy_context  # noqa: E402


def test_the_refit_trains_the_items_and_leaves_the_user_side_bit_for_bit(toy_root, tmp_path):
    from item_refit import refit_outside_users

    ctx = toy_context(toy_root, tmp_path / "run")
    model = copy.deepcopy(ctx.model)
    users = model.user_embedding.weight.detach().clone()
    items = model.item_embedding.weight.detach().clone()
    epochs = ctx.config["epochs"]
    info = refit_outside_users(ctx, model, 2, tmp_path / "refit")
    assert info["trained"] == "item_embedding.weight"
    assert torch.equal(model.user_embedding.weight, users)
    assert not torch.equal(model.item_embedding.weight, items)  # trained and kept
    assert all(p.requires_grad for p in model.parameters())
    assert ctx.config["epochs"] == epochs  # the context's config is left as it was


def test_the_item_refit_block_averages_each_backbone_and_mode(tmp_path):
    import _studies_md

    rows = [
        {
            "model": "BPR",
            "seed": seed,
            "mode": mode,
            "valid_original": 0.24,
            "valid_unlearned": 0.23,
            "valid_refit": refit,
            "kept_unlearned_pct": 98.0,
            "kept_refit_pct": kept,
            "users_unchanged": same,
        }
        for seed, mode, refit, kept, same in [
            (1, "dd", 0.22, 97.0, True),
            (2, "dd", 0.24, 99.0, False),
            (1, "df", 0.23, 98.5, True),
        ]
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "item_refit.csv", index=False)
    block = _studies_md.item_refit_block(tmp_path, "link")
    assert "| BPR | DD | 2 | 0.2400 → 0.2300 → 0.2300 | 98.00 → 98.00 | 1 of 2 |" in block
    assert "| BPR | DF | 1 | 0.2400 → 0.2300 → 0.2300 | 98.00 → 98.50 | 1 of 1 |" in block
    assert "No item-refit results" in _studies_md.item_refit_block(tmp_path / "none", "link")


def test_the_attribute_cost_block_has_each_set_and_mode_with_its_range(tmp_path):
    import _studies_md

    rows = [
        {"model": "BPR", "seed": seed, "attributes": names, "mode": mode, "ndcg_kept_pct": kept}
        | {"steps": 10, "stop_reason": "target_reached", "moved": moved}
        for seed, names, mode, kept, moved in [
            (1, "gender", "dd", 99.0, 0.05),
            (2, "gender", "dd", 100.0, 0.07),
            (1, "gender+age", "df", 97.5, 0.1),
        ]
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "attribute_cost.csv", index=False)
    block = _studies_md.attribute_cost_block(tmp_path, "link")
    assert "| gender | DD | 2 | 99.50 % | 99.00–100.00 % | 0.060 |" in block
    assert "| gender + age | DF | 1 | 97.50 % | 97.50–97.50 % | 0.100 |" in block
    assert "No attribute-cost results" in _studies_md.attribute_cost_block(tmp_path / "x", "l")
