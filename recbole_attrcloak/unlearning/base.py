"""What the post-training defences share: only the user side takes gradients, RecBole's
optimiser over the user-side parameters (hook ``_build_optimizer(params=...)``), each user's
original top items, and — for U2U-R and D2D-R — a RecBole ``Trainer`` whose per-batch loss is
the defence's objective (hook ``_train_epoch(loss_func=...)``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from recbole.data.interaction import Interaction
from recbole.trainer import Trainer
from torch import Tensor, nn

from recbole_attrcloak.backbone import clear_cached_representations
from recbole_attrcloak.engine import param_groups
from recbole_attrcloak.registry import UserSide, user_side


@contextlib.contextmanager
def only_user_side(model: nn.Module) -> Iterator[UserSide]:
    """Inside the block only the user-side parameters of ``model`` take gradients; afterwards all
    do again and cached full-sort representations (GNNs, DMF) are dropped."""
    side = user_side(model)
    names = {name for name, _ in side.parameters(model)}
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
    try:
        yield side
    finally:
        for param in model.parameters():
            param.requires_grad_(True)
        clear_cached_representations(model)


class UserSideTrainer(Trainer):
    """RecBole trainer whose optimiser holds only the user-side parameters (with its own learner
    and learning rate, no weight decay) and whose per-batch loss is :meth:`objective`.
    ``reference`` holds the original user representations (padding row dropped).

    With ``relative_lr`` each user-side tensor gets ``learning_rate`` × its own RMS: Adam's step
    is about the learning rate per entry whatever the gradient's scale, so an absolute rate moves
    a table of small entries (NeuMF's MLP table, RMS 0.05) five times further, relative to its
    scale, than one of large entries (its MF table, 0.26)."""

    def __init__(
        self,
        config,
        model: nn.Module,
        side: UserSide,
        learner: str,
        learning_rate: float,
        relative_lr: bool = False,
    ) -> None:
        self.side = side
        self.user_params = [p for _, p in side.parameters(model)]
        self.user_learner, self.user_learning_rate = learner, learning_rate
        self.param_groups = param_groups(self.user_params, learning_rate, relative_lr)
        super().__init__(config, model)
        with torch.no_grad():
            self.reference = side.compute(model).detach()[1:].clone()

    def _build_optimizer(self, **kwargs):
        kwargs.setdefault("params", self.param_groups)
        kwargs.setdefault("learner", self.user_learner)
        kwargs.setdefault("learning_rate", self.user_learning_rate)
        kwargs.setdefault("weight_decay", 0.0)
        return super()._build_optimizer(**kwargs)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        return super()._train_epoch(
            train_data,
            epoch_idx,
            loss_func=loss_func or self.objective,
            show_progress=show_progress,
        )

    def objective(self, interaction: Interaction) -> Tensor:
        """The loss of one optimisation step."""
        raise NotImplementedError


def user_side_optimizer(
    config, model: nn.Module, groups: list[dict], learner: str, learning_rate: float
) -> torch.optim.Optimizer:
    """RecBole's optimiser for ``learner`` over the parameter groups ``groups`` (e.g.
    ``engine.param_groups``), no weight decay: ``Trainer._build_optimizer(params=...)``, so
    learner names mean what they mean in RecBole."""
    return Trainer(config, model)._build_optimizer(
        params=groups, learner=learner, learning_rate=learning_rate, weight_decay=0.0
    )


def all_scores(model: nn.Module, users: Tensor) -> Tensor:
    """Scores of ``users`` × all items, (len(users), n_items), by the model's full-sort scorer,
    or its pointwise scorer where it has none (as RecBole's evaluator does)."""
    try:
        return model.full_sort_predict(Interaction({model.USER_ID: users})).view(len(users), -1)
    except NotImplementedError:
        items = torch.arange(model.n_items, device=users.device)
        pairs = Interaction(
            {
                model.USER_ID: users.repeat_interleave(len(items)),
                model.ITEM_ID: items.repeat(len(users)),
            }
        )
        return model.predict(pairs).view(len(users), -1)


@torch.no_grad()
def original_top_items(
    model: nn.Module, n: int, exclude: Tensor | None = None, batch: int = 256
) -> tuple[Tensor, Tensor]:
    """Each real user's top-``n`` items (best first) under the current model and their scores,
    both (n_users − 1, n). ``exclude`` (bool, (n_users − 1, n_items)) leaves items out, e.g. a
    user's training items, which RecBole's full-sort evaluation masks too."""
    model.eval()
    users = torch.arange(1, model.n_users, device=model.device)
    items, scores = [], []
    for chunk in users.split(batch):
        all_items = all_scores(model, chunk)
        all_items[:, 0] = -torch.inf  # RecBole's padding item
        if exclude is not None:
            all_items[exclude[chunk - 1]] = -torch.inf
        top = all_items.topk(n, dim=1)
        items.append(top.indices)
        scores.append(top.values)
    return torch.cat(items), torch.cat(scores)
