"""Post-training defences move the user side only: for every backbone with a registered user side,
every post-training defence of the defence table and each of its modes, every other parameter
stays bit-identical and every optimiser that steps holds user-side parameters only."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from recbole_attrcloak.defences import DEFENCES, Kind
from recbole_attrcloak.registry import USER_SIDE, user_side
from tests.conftest import toy_context

#: The modes of each post-training defence, as config keys (few steps: only what moves matters).
#: A new post-training defence fails ``test_every_post_training_defence_is_covered`` until it
#: is listed here.
MODES: dict[str, dict[str, dict]] = {
    "attrcloak": {
        # the default objective, held to |z| = 0 (never met): every step taken
        "df-relabel": {"au_mode": "df", "au_z_tol": 0.0, "au_z_margin": 0.0},
        "dd-relabel": {"au_mode": "dd", "au_z_tol": 0.0, "au_z_margin": 0.0},
        "df": {"au_mode": "df", "au_objective": "gaussian"},
        "dd-ranking": {"au_mode": "dd", "au_dd_retention": "ranking", "au_objective": "gaussian"},
        "dd-train_loss": {
            "au_mode": "dd",
            "au_dd_retention": "train_loss",
            "au_objective": "gaussian",
        },
    },
    "u2u": {"ranking": {"du_regularizer": "ranking"}, "l2": {"du_regularizer": "l2"}},
    "d2d": {"ranking": {"du_regularizer": "ranking"}, "l2": {"du_regularizer": "l2"}},
}
FEW_STEPS = {
    # the Gaussian bound's target zero is never met: the run takes every step and keeps a moved
    # state
    "au_max_steps": 4,
    "au_check_every": 2,
    "au_target": "zero",
    "au_dd_topk": 10,
    "du_steps": 4,
    "du_topn": 5,
}
POST_TRAINING = sorted(name for name, d in DEFENCES.items() if d.kind is Kind.POST_TRAINING)
CASES = [
    (backbone, defence, mode)
    for backbone in sorted(USER_SIDE)
    for defence in POST_TRAINING
    if DEFENCES[defence].applies_to(backbone)
    for mode in MODES.get(defence, {})
]


def test_every_post_training_defence_is_covered():
    assert POST_TRAINING and set(POST_TRAINING) <= set(MODES)
    assert {"BPR", "NeuMF", "LightGCN", "NGCF", "DMF", "ENMF"} <= set(USER_SIDE)


@pytest.fixture(scope="module")
def trained(toy_root, tmp_path_factory):
    """One backbone per name, trained for one epoch of three batches on the toy data (how well
    does not matter here), built on first use."""
    cache = {}

    def get(name: str):
        if name not in cache:
            out = tmp_path_factory.mktemp(name)
            cache[name] = toy_context(
                toy_root, out, name, epochs=1, train_batch_size=1024, **FEW_STEPS
            )
        return cache[name]

    return get


@pytest.mark.parametrize(("backbone", "defence", "mode"), CASES)
def test_only_user_side_parameters_move(trained, backbone, defence, mode):
    ctx = trained(backbone)
    config = copy.deepcopy(ctx.config)
    for key, value in MODES[defence][mode].items():
        config[key] = value
    before = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}

    stepped: list[list[torch.Tensor]] = []

    def record(optimizer, args, kwargs):
        stepped.append([p for group in optimizer.param_groups for p in group["params"]])

    hook = register_optimizer_step_pre_hook(record)
    try:
        result = DEFENCES[defence].load()(dataclasses.replace(ctx, config=config))
    finally:
        hook.remove()

    model = result.model
    user = {name for name, _ in user_side(model).parameters(model)}
    assert user and not any("item" in name for name in user), user
    after = model.state_dict()
    assert set(after) == set(before)
    for name, value in before.items():
        if name not in user:
            assert torch.equal(after[name], value), f"{name} changed"
    moved = [name for name in sorted(user) if not torch.equal(after[name], before[name])]
    # the relabel cases may keep the original state (the closest to |z| = 0 under the check
    # draw) after steps that moved the user side: the optimiser check below still applies
    assert moved or result.info.get("steps") == 0, "no user-side parameter moved"
    # the defence worked on a copy: the original model is untouched
    for name, value in ctx.model.state_dict().items():
        assert torch.equal(value, before[name]), f"the original model's {name} changed"

    # every optimiser step updated user-side parameters of the returned model, nothing else
    assert stepped, "no optimiser step"
    names = {id(p): name for name, p in model.named_parameters()}
    for params in stepped:
        held = [names.get(id(p), "<not a parameter of the returned model>") for p in params]
        assert set(held) <= user, sorted(set(held) - user)
