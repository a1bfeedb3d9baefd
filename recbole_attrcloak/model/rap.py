"""RAP (Beigi et al., WSDM 2020) as RecBole model variants: ``RAPBPR``, ``RAPNeuMF``,
``RAPLightGCN``.

In-training adversarial learning: the backbone's own loss L_rec plus an attacker per sensitive
attribute (``losses.AttributeAdversary``) predicting the attribute from the backbone's user
representation, the one the registry audits: BPR's user table, NeuMF's two user tables
concatenated, LightGCN's propagated user embedding. One step of RecBole's normal trainer descends
L_att for the attackers and plays the game ``rap_game`` for the recommender: ``minimax`` descends
L_rec − λ·L_att (gradient reversal; Beigi et al.), ``confusion`` descends L_rec + λ·L_conf (the
attackers' predictions pushed toward uniform); λ = ``rap_lambda``. ``calculate_loss`` returns
(L_rec, L_att), which RecBole logs as ``train_loss1`` and ``train_loss2``.

Train a variant directly (``--model RAPNeuMF``; the sensitive attributes come from the dataset's
.user file, the backbone's RecBole defaults from its model YAML) or with ``--unlearn rap``
(``retrain.run_rap``), which retrains a run's data from scratch as ``RAP<backbone>``. The registry
registers the variants, their trainer and their user sides (those of the backbones).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from recbole.model.general_recommender import BPR, LightGCN, NeuMF
from recbole.trainer import Trainer
from torch import Tensor

from recbole_attrcloak.data.attributes import load_attributes
from recbole_attrcloak.keys import check_values, with_prefix
from recbole_attrcloak.losses.adversary import AdversaryGame, AttributeAdversary


def check_rap_config(config) -> None:
    """Check the RAP keys (``keys.KEYS``); raise ``ValueError`` with a one-line message."""
    check_values(config, with_prefix("rap_"))


def _size(config, *keys: str) -> int:
    """The sum of the integer config values ``keys`` (an embedding width)."""
    missing = [key for key in keys if config[key] is None]
    if missing:
        raise ValueError(f"RAP needs {', '.join(missing)} (the backbone's embedding size)")
    return sum(int(config[key]) for key in keys)


class RAPMixin:
    """The adversary on top of a RecBole model: put it first in the bases (``class
    RAPX(RAPMixin, X)``) and define ``backbone``, ``representation_size`` and
    ``user_representation``."""

    #: The RecBole model the variant extends (its defaults YAML is layered by ``build_config``).
    backbone: ClassVar[str]

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        check_rap_config(config)
        self.rap_lambda = float(config["rap_lambda"])
        labels = load_attributes(config, dataset)
        self.attribute_names = list(labels)
        self.adversary = AttributeAdversary(
            self.representation_size(config),
            {name: len(lab.classes) for name, lab in labels.items()},
            int(config["rap_hidden_size"]),
            self.rap_lambda,
            AdversaryGame(config["rap_game"]),
        )
        for name, lab in labels.items():
            self.register_buffer(f"labels_{name}", torch.as_tensor(lab.codes), persistent=False)

    def representation_size(self, config) -> int:
        """Width of ``user_representation``."""
        raise NotImplementedError

    def user_representation(self, users: Tensor) -> Tensor:
        """The backbone's user representation of ``users`` (with autograd), as the registry
        computes it for all users."""
        raise NotImplementedError

    def attacker_loss(self, users: Tensor, representations: Tensor) -> Tensor:
        """L_att: mean over attributes of the attackers' cross-entropy on ``users`` (unknown
        values ignored), ``representations`` seen through the gradient reversal."""
        targets = {name: getattr(self, f"labels_{name}")[users] for name in self.attribute_names}
        return self.adversary(representations, targets)

    def calculate_loss(self, interaction) -> tuple[Tensor, Tensor]:
        """(L_rec, L_att) on the batch; L_att on the batch's distinct users, whose representation
        receives −λ·∇L_att."""
        users = torch.unique(interaction[self.USER_ID])
        main = super().calculate_loss(interaction)
        return main, self.attacker_loss(users, self.user_representation(users))


class RAPBPR(RAPMixin, BPR):
    """BPR trained against attribute attackers on its user table."""

    backbone = "BPR"

    def representation_size(self, config) -> int:
        return _size(config, "embedding_size")

    def user_representation(self, users: Tensor) -> Tensor:
        return self.user_embedding(users)


class RAPNeuMF(RAPMixin, NeuMF):
    """NeuMF (the paper's NCF) trained against attribute attackers on its two user tables
    concatenated (GMF then MLP)."""

    backbone = "NeuMF"

    def representation_size(self, config) -> int:
        return _size(config, "mf_embedding_size", "mlp_embedding_size")

    def user_representation(self, users: Tensor) -> Tensor:
        return torch.cat([self.user_mf_embedding(users), self.user_mlp_embedding(users)], dim=1)


class RAPLightGCN(RAPMixin, LightGCN):
    """LightGCN trained against attribute attackers on its propagated user embedding (the
    gradient reversal reaches every embedding the propagation mixes in)."""

    backbone = "LightGCN"
    _propagated: tuple[Tensor, Tensor] | None = None

    def representation_size(self, config) -> int:
        return _size(config, "embedding_size")

    def forward(self) -> tuple[Tensor, Tensor]:
        """LightGCN's propagation, computed once per training batch (shared by L_rec and L_att)."""
        if self._propagated is not None:
            return self._propagated
        return super().forward()

    def user_representation(self, users: Tensor) -> Tensor:
        return self.forward()[0][users]

    def calculate_loss(self, interaction) -> tuple[Tensor, Tensor]:
        self._propagated = super().forward()
        try:
            return super().calculate_loss(interaction)
        finally:
            self._propagated = None


#: The RAP variant of each backbone it is implemented for.
RAP_VARIANTS: dict[str, type] = {cls.backbone: cls for cls in (RAPBPR, RAPNeuMF, RAPLightGCN)}


class RAPTrainer(Trainer):
    """RecBole's trainer, also keeping each epoch's mean (L_rec, L_att) per batch (RecBole
    keeps only their sum)."""

    def __init__(self, config, model) -> None:
        super().__init__(config, model)
        self.loss_parts: list[tuple[float, float]] = []

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        total = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        self.loss_parts.append(tuple(part / len(train_data) for part in total))
        return total
