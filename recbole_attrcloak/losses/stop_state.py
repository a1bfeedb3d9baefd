"""What the stop reads of the random-relabeling objective (``losses.relabel``): each statistic's
tolerance and margin, and from the last check's z-scores the largest |z|, the distance to the
target, the per-term report and the per-step progress.

Pure torch; no RecBole, Ray or scikit-learn import.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recbole_attrcloak.losses.objective import TermReport


class StopState:
    """Mixin of ``RelabelingNull``: reads its ``checked`` (statistic → z of the last check, or
    of the step's own draw when ``estimated``), its tolerances and margins (``tolerance``,
    ``margin``; ``class_tolerance``/``class_margin`` for the one-vs-rest labelings in
    ``class_labelings``; ``axis_tolerance``/``axis_margin`` for the per-direction critics) and
    keeps ``_bound_cache``."""

    checked: dict[tuple[str, str], float]
    estimated: bool
    _bound_cache: tuple[tuple, Tensor] | None

    def _bound_table(self, keys: tuple[tuple[str, str], ...], like: Tensor) -> Tensor:
        """(n, 2) tolerance and margin of the statistics ``keys``, kept while the keys stay."""
        if self._bound_cache is None or self._bound_cache[0] != keys:
            table = [self._bounds(k) for k in keys]
            self._bound_cache = keys, torch.tensor(table, dtype=like.dtype, device=like.device)
        return self._bound_cache[1]

    def _bounds(self, key: tuple[str, str]) -> tuple[float, float]:
        """(tolerance, margin) of a statistic: the per-direction critics' are calibrated to
        their number (``losses.directions.family_tolerance``)."""
        if key[1].startswith("axis"):
            return self.axis_tolerance, self.axis_margin
        if key[0] in self.class_labelings:  # one class against the rest
            return self.class_tolerance, self.class_margin
        return self.tolerance, self.margin

    @property
    def max_abs_z(self) -> float:
        """The largest |z| of the last check."""
        return max(abs(v) for v in self.checked.values())

    def distance(self) -> float:
        """How far the last state is from looking like a random relabeling: the largest |z|
        beyond the tolerance (0 once every statistic is within it)."""
        return max(0.0, *(abs(z) - self._bounds(k)[0] for k, z in self.checked.items()))

    def terms(self) -> list[TermReport]:
        """Every (attribute, critic) statistic of the last check as a z-score against the
        random-relabeling null (target 0: what random labels show on average)."""
        return [
            TermReport(
                f"{attr}/{critic}/z", z, 0.0, None, abs(z) <= self._bounds((attr, critic))[0]
            )
            for (attr, critic), z in self.checked.items()
        ]

    def progress(self) -> dict[str, float]:
        """The largest |z| of the last state, how far any statistic is beyond its tolerance
        (0 at the target) and whether the check scored it (1) or the step's own draw (0),
        traced per step."""
        return {
            "max_abs_z": self.max_abs_z,
            "beyond_tolerance": self.distance(),
            "checked": float(not self.estimated),
        }
