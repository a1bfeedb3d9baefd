"""Lookup tables: models and trainers (ours first, then RecBole's) and the user side of each
model. (The defences selectable with ``--unlearn`` are in ``defences.py``.)

The *user side* of a model is what AttrCloak may change: the parameters that produce the user
representation the scorer consumes, and a function computing that representation for all users.

Register a custom model in one line::

    register_user_side("MyModel", params=["user_embedding."])            # default representation
    register_user_side("MyGNN", params=["user_embedding."], representation=lambda m: m.forward()[0])
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from recbole_attrcloak.model import RAP_VARIANTS, RAPTrainer

_RECBOLE_MODEL_PACKAGES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
)

#: Our RecBole model classes by name.
MODELS: dict[str, type] = {cls.__name__: cls for cls in RAP_VARIANTS.values()}
#: Our trainer classes by model name.
TRAINERS: dict[str, type] = dict.fromkeys(MODELS, RAPTrainer)


def get_model(name: str) -> type:
    """The model class called ``name``: one of ours, else RecBole's (without its exlib models,
    whose import needs lightgbm)."""
    if name in MODELS:
        return MODELS[name]
    for package in _RECBOLE_MODEL_PACKAGES:
        module_path = f"recbole.model.{package}.{name.lower()}"
        if importlib.util.find_spec(module_path) is not None:
            module = importlib.import_module(module_path)
            if hasattr(module, name):
                return getattr(module, name)
    raise ValueError(f"unknown model '{name}': neither a RecBole model nor one of {sorted(MODELS)}")


def get_trainer(model_type, model_name: str) -> type:
    """Our trainer for ``model_name`` if we have one, else RecBole's choice."""
    if model_name in TRAINERS:
        return TRAINERS[model_name]
    from recbole.utils import get_trainer as recbole_get_trainer

    return recbole_get_trainer(model_type, model_name)


@dataclass(frozen=True)
class UserSide:
    """How to find and compute a model's user representation."""

    params: tuple[str, ...]
    representation: Callable[[nn.Module], torch.Tensor] | None = None

    def parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """The user-side parameters (name, tensor), in registration order."""
        named = dict(model.named_parameters())
        chosen = [
            (n, p) for prefix in self.params for n, p in named.items() if n.startswith(prefix)
        ]
        if not chosen:
            raise ValueError(
                f"model {type(model).__name__} has no parameter matching {list(self.params)}: "
                "it has no user-side parameters to unlearn"
            )
        return chosen

    def blocks(self, model: nn.Module) -> list[int]:
        """The widths of the embedding tables whose concatenation is the representation (NeuMF:
        its MF and MLP tables), empty when a function computes it or there is one table."""
        if self.representation is not None:
            return []
        widths = [
            module.embedding_dim
            for name, module in model.named_modules()
            if isinstance(module, nn.Embedding)
            and any(f"{name}.weight".startswith(prefix) for prefix in self.params)
        ]
        return widths if len(widths) > 1 else []

    def compute(self, model: nn.Module) -> torch.Tensor:
        """All users' representations, shape (n_users, d), row 0 being RecBole's padding user.

        Computed in eval mode (no dropout) but with autograd, so losses can flow back into the
        user-side parameters.
        """
        with _eval_mode(model):
            if self.representation is not None:
                return self.representation(model)
            tables = [
                module.weight
                for name, module in model.named_modules()
                if isinstance(module, nn.Embedding)
                and any(f"{name}.weight".startswith(prefix) for prefix in self.params)
            ]
            if not tables:
                raise ValueError(
                    f"model {type(model).__name__}: the user-side parameters {list(self.params)} "
                    "are not embedding tables; register a representation function"
                )
            return torch.cat(tables, dim=1)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


USER_SIDE: dict[str, UserSide] = {}


def register_user_side(
    model_name: str,
    params: Sequence[str],
    representation: Callable[[nn.Module], torch.Tensor] | None = None,
) -> None:
    """Declare the user side of ``model_name``: parameter-name prefixes and, unless the user
    representation is the concatenation of those embedding tables, a function computing it."""
    USER_SIDE[model_name] = UserSide(tuple(params), representation)


def _all_users(model: nn.Module) -> torch.Tensor:
    return torch.arange(model.n_users, device=model.device)


register_user_side("BPR", ["user_embedding."])
register_user_side("ENMF", ["user_embedding."])
register_user_side("NeuMF", ["user_mf_embedding.", "user_mlp_embedding."])
register_user_side("LightGCN", ["user_embedding."], lambda m: m.forward()[0])
register_user_side("NGCF", ["user_embedding."], lambda m: m.forward()[0])
register_user_side(
    "DMF",
    ["user_linear.", "user_fc_layers."],
    lambda m: m.user_fc_layers(m.get_user_embedding(_all_users(m))),
)
# A RAP variant (RAPBPR ...) has the user side of its backbone.
USER_SIDE.update({v.__name__: USER_SIDE[v.backbone] for v in RAP_VARIANTS.values()})


def user_side(model: nn.Module) -> UserSide:
    """The registered user side of ``model``, or the default rule for plain embedding models.

    Default rule: a model whose ``user_embedding`` is an ``nn.Embedding`` with one row per user
    is treated like BPR (representation = that table).
    """
    name = type(model).__name__
    if name in USER_SIDE:
        return USER_SIDE[name]
    table = getattr(model, "user_embedding", None)
    if isinstance(table, nn.Embedding) and table.num_embeddings == getattr(model, "n_users", -1):
        return UserSide(("user_embedding.",))
    raise ValueError(
        f"model {name} has no user representation to audit or unlearn; supported: "
        f"{', '.join(sorted(USER_SIDE))} and models whose user_embedding has one row per user "
        f"(others: recbole_attrcloak.registry.register_user_side('{name}', params=[...]))"
    )
