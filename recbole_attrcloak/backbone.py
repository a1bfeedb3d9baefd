"""The trained recommender (the backbone) as every layer above sees it: train it, score it,
read its user representations, and drop its cached full-sort representations.

Below the pipeline (``quick_start``) and the defences, above the registry: the retraining
defences train a new backbone with the same function the pipeline uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from recbole.trainer import Trainer

from recbole_attrcloak import compat
from recbole_attrcloak.registry import get_trainer, user_side


def fit_model(config, model: torch.nn.Module, train_data, valid_data) -> Trainer:
    """Train ``model`` with the trainer for ``config``'s model and load its best epoch on the
    validation metric."""
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True, show_progress=config["show_progress"])
    model.load_state_dict(compat.load_checkpoint(trainer.saved_model_file)["state_dict"])
    return trainer


def training_summary(trainer: Trainer) -> dict[str, Any]:
    """Epochs run, best validation score and the per-epoch training loss, for the report."""
    return {
        "epochs": len(trainer.train_loss_dict),
        "best_valid_score": float(trainer.best_valid_score),
        "train_loss": list(trainer.train_loss_dict.values()),
    }


#: RecBole's caches of computed representations (``other_parameter_name`` of the GNNs and DMF),
#: which RecBole itself drops in ``calculate_loss``. Other names there are real state (Pop's
#: ``item_cnt``, ItemKNN's ``pred_mat``, EASE's ``item_similarity``…) and are never touched.
CACHED_REPRESENTATIONS = frozenset(
    {"restore_user_e", "restore_item_e", "restore_entity_e", "i_embedding"}
)


def clear_cached_representations(model: torch.nn.Module) -> None:
    """Drop the full-sort caches of GNN/DMF models (``restore_user_e``, ``i_embedding``...), so
    scores and saved checkpoints reflect the current parameters."""
    for name in getattr(model, "other_parameter_name", []):
        if name in CACHED_REPRESENTATIONS:
            setattr(model, name, None)


def evaluate_utility(config, model: torch.nn.Module, valid_data, test_data) -> dict:
    """NDCG/Hit at the configured cut-offs on the validation and test splits."""
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    clear_cached_representations(model)
    results = {}
    for split, data in (("valid", valid_data), ("test", test_data)):
        scores = trainer.evaluate(data, load_best_model=False, show_progress=False)
        results[split] = {k: float(v) for k, v in scores.items()}
    return results


def user_representations(model: torch.nn.Module) -> np.ndarray:
    """All users' representations (n_users, d), without the padding row."""
    with torch.no_grad():
        return user_side(model).compute(model).detach().cpu().numpy()[1:]
