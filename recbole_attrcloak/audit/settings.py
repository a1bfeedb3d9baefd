"""What an audit runs: the protocols, attackers, permutation tests and their sizes, and the two
presets (``audit: quick | full``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from recbole_attrcloak.audit.attackers import ATTACKERS, make_attacker
from recbole_attrcloak.audit.protocols import (
    PROTOCOLS,
)


class AuditPreset(StrEnum):
    """``audit``: the named settings of :meth:`AuditSettings.preset`."""

    QUICK = "quick"
    FULL = "full"
    KFOLD = "kfold"


@dataclass
class AuditSettings:
    """What an audit runs. The defaults are the ``full`` preset.

    Every (protocol, attacker) pair gets a permutation test (docs/audit.md). Audited
    ``refit_attackers`` (by default the cheap ones, a few hundredths of a second per fit) are
    retrained on up to ``n_permutations`` shuffles under the k-fold protocol; every other pair is
    tested with its trained attackers held fixed, on ``n_held_out_permutations`` shuffles of the
    users they were not trained on (no fit at all).
    ``n_resamples``: bootstrap resamples behind each confidence interval. ``alpha``: the level at
    which the verdict calls a difference from chance significant.
    """

    protocols: tuple[str, ...] = PROTOCOLS
    attackers: tuple[str, ...] = tuple(ATTACKERS)
    seeds: int = 3
    shadow_fraction: float = 0.2
    n_folds: int = 5
    kfold_repeats: int = 1
    n_permutations: int = 100
    n_held_out_permutations: int = 1000
    refit_attackers: tuple[str, ...] = ("logreg", "knn")
    n_resamples: int = 2000
    alpha: float = 0.05
    n_jobs: int = 2
    seed: int = 2020

    def __post_init__(self) -> None:
        self.protocols = tuple(self.protocols)
        self.attackers = tuple(self.attackers)
        if not self.protocols or not self.attackers:
            raise ValueError("an audit needs at least one protocol and one attacker")
        for protocol in self.protocols:
            if protocol not in PROTOCOLS:
                raise ValueError(
                    f"unknown protocol {protocol!r}; choose from: {', '.join(PROTOCOLS)}"
                )
        for attacker in self.attackers:
            make_attacker(attacker, 0)
        self.refit_attackers = tuple(self.refit_attackers)
        for attacker in self.refit_attackers:
            make_attacker(attacker, 0)
        if not 0 < self.shadow_fraction < 1:
            raise ValueError(f"shadow_fraction must lie in (0, 1), got {self.shadow_fraction}")
        if self.seeds < 1 or self.n_folds < 2 or self.kfold_repeats < 1:
            raise ValueError("seeds and kfold_repeats must be >= 1, n_folds >= 2")
        if min(self.n_permutations, self.n_held_out_permutations) < 0 or self.n_resamples < 1:
            raise ValueError("permutation counts must be >= 0 and n_resamples >= 1")

    @classmethod
    def preset(cls, name: str) -> AuditSettings:
        """``full``: both protocols, every attacker, permutation tests (the defaults).
        ``quick``: the paper's shadow protocol with its MLP and XGBoost (held-out tests only).
        ``kfold``: quick's attackers under the k-fold protocol (a sweep's check of the trial
        it selected with the quick audit)."""
        if name == AuditPreset.FULL:
            return cls()
        if name in (AuditPreset.QUICK, AuditPreset.KFOLD):
            protocol = "shadow" if name == AuditPreset.QUICK else "kfold"
            return cls(protocols=(protocol,), attackers=("mlp", "xgboost"))
        choices = ", ".join(p.value for p in AuditPreset)
        raise ValueError(f"unknown audit preset {name!r}; choose from: {choices}")
