"""What every post-training defence shares: a RecBole ``Trainer`` whose optimiser holds only the
user-side parameters (hook ``_build_optimizer(params=...)``) and whose per-batch loss is the
defence's objective (hook ``_train_epoch(loss_func=...)``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from recbole.data.interaction import Interaction
from recbole.trainer import Trainer
from torch import Tensor, nn

from recbole_attrcloak.registry import UserSide, clear_cached_representations, user_side


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
    ``reference`` holds the original user representations (padding row dropped)."""

    def __init__(
        self, config, model: nn.Module, side: UserSide, learner: str, learning_rate: float
    ) -> None:
        self.side = side
        self.user_params = [p for _, p in side.parameters(model)]
        self.user_learner, self.user_learning_rate = learner, learning_rate
        super().__init__(config, model)
        with torch.no_grad():
            self.reference = side.compute(model).detach()[1:].clone()

    def _build_optimizer(self, **kwargs):
        kwargs.setdefault("params", self.user_params)
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
def original_top_items(model: nn.Module, n: int, batch: int = 256) -> tuple[Tensor, Tensor]:
    """Each real user's top-``n`` items (best first) under the current model and their scores,
    both (n_users − 1, n)."""
    model.eval()
    users = torch.arange(1, model.n_users, device=model.device)
    items, scores = [], []
    for chunk in users.split(batch):
        all_items = all_scores(model, chunk)
        all_items[:, 0] = -torch.inf  # RecBole's padding item
        top = all_items.topk(n, dim=1)
        items.append(top.indices)
        scores.append(top.values)
    return torch.cat(items), torch.cat(scores)
