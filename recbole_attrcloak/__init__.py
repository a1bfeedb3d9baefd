"""recbole-attrcloak: attribute-leakage audits and post-training attribute unlearning
for RecBole models."""

__version__ = "0.1.0"
