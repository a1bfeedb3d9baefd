"""Attribute-leakage audits: how well attackers infer sensitive attributes from user embeddings.

``audit_representations(X, attributes, AuditSettings.preset("full"))`` runs every attacker under
the paper's shadow protocol and a k-fold protocol, with permutation tests; docs/audit.md explains
the report. ``python -m recbole_attrcloak.audit`` audits exported embeddings offline.
"""

from recbole_attrcloak.audit.attackers import ATTACKERS, make_attacker
from recbole_attrcloak.audit.core import audit_representations, overall_verdict
from recbole_attrcloak.audit.settings import AuditPreset, AuditSettings

__all__ = [
    "ATTACKERS",
    "AuditPreset",
    "AuditSettings",
    "audit_representations",
    "make_attacker",
    "overall_verdict",
]
