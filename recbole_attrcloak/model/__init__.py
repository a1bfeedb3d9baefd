"""RecBole model variants of ours (RAPBPR, RAPNeuMF, RAPLightGCN), registered by name in
``recbole_attrcloak.registry``."""

from recbole_attrcloak.model.rap import (
    RAP_VARIANTS,
    RAPBPR,
    RAPLightGCN,
    RAPMixin,
    RAPNeuMF,
    RAPTrainer,
)

__all__ = ["RAPBPR", "RAP_VARIANTS", "RAPLightGCN", "RAPMixin", "RAPNeuMF", "RAPTrainer"]
