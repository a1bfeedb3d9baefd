"""Attribute-leakage audits: how well attackers infer sensitive attributes from user embeddings.

``audit_representations(X, attributes, AuditSettings.preset("full"))`` runs every attacker under
the paper's shadow protocol and a k-fold protocol, with permutation tests; docs/audit.md explains
the report. ``python -m recbole_attrcloak.audit`` audits exported embeddings offline.
"""

from recbole_attrcloak.audit.attackers import ATTACKERS, make_attacker
from recbole_attrcloak.audit.core import AuditSettings, audit_representations

__all__ = ["ATTACKERS", "AuditSettings", "audit_representations", "make_attacker"]
