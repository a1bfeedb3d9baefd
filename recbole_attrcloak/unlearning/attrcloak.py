"""AttrCloak (Algorithm 1) on a RecBole model: the thin adapter over ``recbole_attrcloak.engine``.

It parses the ``au_*`` keys once (``AttrCloakSettings``), builds the leakage objective of
``au_objective`` (``engine.build_objective``), the retention strategy of the mode, and
RecBole's optimiser over the user-side parameters (``Trainer._build_optimizer``, so learner
names mean what they mean in RecBole), then runs the engine. What only RecBole knows comes in
as plain callables: the user representation (``registry.UserSide``), pair scores
(``model.predict``) and the training loss (``model.calculate_loss``).

DF: L_R = Σ_u ‖e_u − e_u⁰‖² to the original representations (Eq. 21); no interaction is read.
DD, ``au_dd_retention: ranking`` (default): every user's original ranking of the items it has not
trained on, together with Eq. 21's distance; the training interactions only mask each user's
training items. DD, ``au_dd_retention: train_loss`` (the paper's Eq. 20): the model's own
``calculate_loss`` on the batches of RecBole's train loader, one batch per step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from recbole.data.interaction import Interaction
from torch import Tensor, nn

from recbole_attrcloak.context import DefenceResult, RunContext
from recbole_attrcloak.engine import (
    AttrCloakSettings,
    DistanceRetention,
    RankingRetention,
    Retention,
    RetentionKind,
    TrainLossRetention,
    Unlearner,
    build_objective,
    param_groups,
)
from recbole_attrcloak.losses import LeakageObjective
from recbole_attrcloak.registry import UserSide
from recbole_attrcloak.unlearning.base import (
    only_user_side,
    original_top_items,
    user_side_optimizer,
)


def training_history(train_data, model: nn.Module) -> Tensor:
    """Each real user's training items as a bool matrix (n_users − 1, n_items), the padding
    item included (never a candidate)."""
    matrix = train_data._dataset.inter_matrix(form="coo")
    history = torch.zeros(model.n_users, model.n_items, dtype=torch.bool, device=model.device)
    history[torch.as_tensor(matrix.row), torch.as_tensor(matrix.col)] = True
    history[:, 0] = True
    return history[1:]


def pair_scorer(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """``score(users, items)``: the model's scores of the (user, item) pairs."""

    def score(users: Tensor, items: Tensor) -> Tensor:
        return model.predict(Interaction({model.USER_ID: users, model.ITEM_ID: items}))

    return score


def training_loss(model: nn.Module) -> Callable[[Interaction], Tensor]:
    """``loss(batch)``: the model's training loss on a batch of RecBole's train loader."""

    def loss(batch: Interaction) -> Tensor:
        return model.calculate_loss(batch.to(model.device))

    return loss


def _distance(
    settings: AttrCloakSettings, model, train_data, reference: Tensor, seed: int
) -> Retention:
    return DistanceRetention(reference, first_row=1)  # row 0: RecBole's padding user


def _ranking(
    settings: AttrCloakSettings, model, train_data, reference: Tensor, seed: int
) -> Retention:
    history = training_history(train_data, model)
    top_items, _ = original_top_items(model, settings.dd_topk, history)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    return RankingRetention(
        pair_scorer(model),
        top_items,
        history.scatter(1, top_items, True),
        reference,
        first_row=1,
        generator=generator,
        pairs=settings.dd_pairs,
    )


def _train_loss(
    settings: AttrCloakSettings, model, train_data, reference: Tensor, seed: int
) -> Retention:
    return TrainLossRetention(training_loss(model), train_data)


#: How each retention strategy is built from a RecBole model and its train loader.
RETENTIONS: dict[RetentionKind, Callable[..., Retention]] = {
    RetentionKind.DISTANCE: _distance,
    RetentionKind.RANKING: _ranking,
    RetentionKind.TRAIN_LOSS: _train_loss,
}


def build_unlearner(
    config,
    settings: AttrCloakSettings,
    model: nn.Module,
    side: UserSide,
    objective: LeakageObjective,
    train_data=None,
) -> Unlearner:
    """The engine for ``model``'s user side (inside ``only_user_side``); DF never reads
    ``train_data``."""
    params = [p for _, p in side.parameters(model)]
    groups = param_groups(params, settings.learning_rate, settings.relative_lr)
    optimizer = user_side_optimizer(config, model, groups, settings.learner, settings.learning_rate)
    with torch.no_grad():
        reference = side.compute(model).detach()[1:].clone()
    seed = int(config["seed"])
    retention = RETENTIONS[settings.retention](settings, model, train_data, reference, seed)
    model.eval()  # scores and losses without dropout
    return Unlearner(
        lambda: side.compute(model),
        params,
        objective,
        retention,
        optimizer,
        settings.stop,
        solver=settings.solver,
        fixed_alpha=settings.fixed_alpha,
        clip_grad_norm=config["clip_grad_norm"],
        normalize_step=settings.normalize_step,
        adapt_step=settings.adapt_step,
    )


def run_attrcloak(ctx: RunContext) -> DefenceResult:
    """The ``--unlearn attrcloak`` defence: returns the unlearned copy and its report entry
    (which rule stopped the run, every term of L_AU against its target, the per-step trace)."""
    config = ctx.config
    settings = AttrCloakSettings.from_settings(config)
    model = copy.deepcopy(ctx.model)
    labels = {
        name: torch.as_tensor(lab.codes, dtype=torch.long, device=config["device"])
        for name, lab in ctx.attributes.items()
    }
    with only_user_side(model) as side:
        objective = build_objective(labels, config, int(config["seed"]), side.blocks(model))
        unlearner = build_unlearner(config, settings, model, side, objective, ctx.train_data)
        outcome = unlearner.run(progress=bool(config["show_progress"]))
    info: dict[str, Any] = {
        "mode": settings.mode.value,
        "objective": settings.objective.value,
        "solver": settings.solver.value,
        "initial_l_au": outcome.initial,
        "steps": outcome.kept_step,
        "stop_reason": outcome.stop_reason.value,
        "final_l_au": outcome.final,
        "terms": [term.as_dict() for term in outcome.terms],
        "dropped_classes": {  # left out of L_AU: fewer than au_min_class_size users
            name: {
                lab.classes[c]: int(lab.counts[c]) for c in objective.dropped_classes.get(name, ())
            }
            for name, lab in ctx.attributes.items()
        },
        "trace": outcome.trace,
    }
    return DefenceResult(model, info)
