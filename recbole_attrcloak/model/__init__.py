"""RecBole model variants of ours, registered by name in ``recbole_attrcloak.registry.MODELS``."""

from recbole_attrcloak.model import rap  # noqa: F401  (registers RAPBPR)
