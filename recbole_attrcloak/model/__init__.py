"""RecBole model variants of ours (RAPBPR), registered by name in ``recbole_attrcloak.registry``."""

from recbole_attrcloak.model.rap import RAPBPR, RAPTrainer

__all__ = ["RAPBPR", "RAPTrainer"]
