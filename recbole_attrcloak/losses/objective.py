"""What the AttrCloak engine needs from a leakage objective (the L_AU of the paper).

The engine (``recbole_attrcloak.engine``) never asks which objective it runs: it calls it on the
user representations, asks how far the last evaluated state is from the objective's target, and
reads a per-term report at the end. ``GaussianMIBound`` implements the protocol; a new objective
implements these four members and plugs in unchanged (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor


@dataclass(frozen=True)
class TermReport:
    """One term of a leakage objective at its last evaluation, against its target."""

    name: str  # e.g. "gender/mean"
    value: float
    target: float  # the objective pushes the term down to this value
    reference: float | None  # the level the target derives from (random labels), if any
    met: bool  # the term is within the objective's tolerance of its target

    def as_dict(self) -> dict[str, str | float | bool | None]:
        """The report entry (JSON-ready)."""
        return asdict(self)


@runtime_checkable
class LeakageObjective(Protocol):
    """A differentiable measure of how much the user representations leak, with a target.

    The engine minimises it together with a retention loss and stops once ``distance()`` is 0.
    """

    def __call__(self, reps: Tensor) -> Tensor:
        """The loss of all users' representations ``reps`` (n_users, d): a differentiable
        scalar. The first call sees the original representations (e.g. to set reference
        levels)."""
        ...

    def distance(self) -> float:
        """How far the state of the last call is from the target: >= 0, and 0 once the target
        is met (tolerance included). The engine keeps the state of smallest distance."""
        ...

    def terms(self) -> list[TermReport]:
        """Every term's value at the last call against its target."""
        ...

    def progress(self) -> dict[str, float]:
        """Extra values of the last call that the engine records per step (may be empty)."""
        ...
