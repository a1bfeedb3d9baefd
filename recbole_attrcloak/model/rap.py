"""RAP (Beigi et al., WSDM 2020) on a BPR backbone: the model ``RAPBPR``.

In-training adversarial learning: an MLP attacker per sensitive attribute predicts the attribute
from the user embedding and minimises its cross-entropy L_att; the recommender minimises
L_BPR − λ·L_att. Both are trained by RecBole's normal trainer in one pass: the attacker's input
goes through a gradient-reversal layer, so one optimiser step descends L_att for the attacker
and L_BPR − λ·L_att for the embeddings. ``calculate_loss`` returns (L_BPR, L_att), which RecBole
logs as ``train_loss1`` and ``train_loss2``.

Train it directly (``--model RAPBPR``; the sensitive attributes come from the dataset's .user
file) or with ``--unlearn rap`` (``retrain.run_rap``), which retrains a BPR run's data from
scratch as RAPBPR. The registry registers the model, its trainer and its user side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.general_recommender import BPR
from recbole.trainer import Trainer
from torch import Tensor, nn

from recbole_attrcloak.data.attributes import load_attributes
from recbole_attrcloak.keys import check_values, with_prefix


def check_rap_config(config) -> None:
    """Check the RAP keys (``keys.KEYS``) and that the backbone has an ``embedding_size``; raise
    ``ValueError`` with a one-line message."""
    check_values(config, with_prefix("rap_"))
    if config["embedding_size"] is None:
        raise ValueError("RAPBPR needs embedding_size (BPR's default is 64)")


class _GradientReversal(torch.autograd.Function):
    """Identity forward; multiplies the gradient by −λ backward."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: float) -> Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.weight * grad, None


class RAPBPR(BPR):
    """BPR trained against attribute attackers (one MLP per sensitive attribute)."""

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        check_rap_config(config)
        self.rap_lambda = float(config["rap_lambda"])
        labels = load_attributes(config, dataset)
        self.attribute_names = list(labels)
        hidden = int(config["rap_hidden_size"])
        self.attackers = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Linear(self.embedding_size, hidden),
                    nn.ReLU(),
                    nn.Linear(hidden, len(lab.classes)),
                )
                for name, lab in labels.items()
            }
        )
        for name, lab in labels.items():
            self.register_buffer(f"labels_{name}", torch.as_tensor(lab.codes), persistent=False)

    def attacker_loss(self, users: Tensor, embeddings: Tensor) -> Tensor:
        """Mean over attributes of the attackers' cross-entropy on ``users`` (unknown values
        ignored; 0 for an attribute no user in the batch gave)."""
        terms = []
        for name in self.attribute_names:
            target = getattr(self, f"labels_{name}")[users]
            logits = self.attackers[name](embeddings)
            total = F.cross_entropy(logits, target, ignore_index=-1, reduction="sum")
            terms.append(total / (target >= 0).sum().clamp_min(1))
        return torch.stack(terms).mean()

    def calculate_loss(self, interaction) -> tuple[Tensor, Tensor]:
        """(L_BPR, L_att) on the batch; L_att on the batch's distinct users, whose embeddings
        receive −λ·∇L_att."""
        users = torch.unique(interaction[self.USER_ID])
        reversed_emb = _GradientReversal.apply(self.user_embedding(users), self.rap_lambda)
        return super().calculate_loss(interaction), self.attacker_loss(users, reversed_emb)


class RAPTrainer(Trainer):
    """RecBole's trainer, also keeping each epoch's mean (L_BPR, L_att) per batch (RecBole
    keeps only their sum)."""

    def __init__(self, config, model) -> None:
        super().__init__(config, model)
        self.loss_parts: list[tuple[float, float]] = []

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        total = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        self.loss_parts.append(tuple(part / len(train_data) for part in total))
        return total
