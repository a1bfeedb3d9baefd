"""The stop of the random-relabeling objective (``losses.relabel``): the check that scores a state
with the fixed check draws, each statistic's tolerance and margin, and from the last check's
z-scores the largest |z|, the distance to the target, the per-term report and the per-step
progress.

Pure torch; no RecBole, Ray or scikit-learn import.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

import torch
from torch import Tensor

from recbole_attrcloak.losses.kernel_critics import RANDOM_KERNEL
from recbole_attrcloak.losses.objective import TermReport

CHECK_DRAWS = 2  # fixed draws (features, folds) whose mean z decides the stop


class Scope(Enum):
    """Which statistics a call scores: all of them, only those of the random features (the
    check's extra draws), only those no draw changes (the linear and squares critics, their
    contrasts, the quadratic and per-direction critics: the check's first stage), or all that a
    draw changes (the random features' and the cross-fitted critics' folds: the check's first
    ``CHECK_DRAWS`` draws, after its first stage)."""

    ALL = "all"
    RANDOM = "random"
    FIXED = "fixed"
    DRAWN = "drawn"


def random_feature_critic(critic: str) -> bool:
    """Whether a critic's statistic depends on the random features (a Gaussian kernel's, or its
    contrast): those the check averages over ``check_draws`` draws, the rest over
    ``CHECK_DRAWS``."""
    return critic.startswith(RANDOM_KERNEL)


class StopState:
    """Mixin of ``RelabelingNull``: scores a state with its check draws (``_check_draws``,
    through ``zscores``) into ``checked`` (statistic → z of the last check, or of the step's own
    draw when ``estimated``), reads its tolerances and margins (``tolerance``, ``margin``;
    ``class_tolerance``/``class_margin`` for the one-vs-rest labelings in ``class_labelings``;
    ``axis_tolerance``/``axis_margin`` for the per-direction critics) and keeps
    ``_bound_cache``."""

    checked: dict[tuple[str, str], float]
    estimated: bool
    _bound_cache: tuple[tuple, Tensor] | None
    # the last state a full check found at the target, and that check's z
    _passed: tuple[Tensor, dict[tuple[str, str], float]] | None = None
    # the statistics no draw changes (the keys of the first check's first stage)
    _fixed_keys: tuple[tuple[str, str], ...] | None = None

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

    @torch.no_grad()
    def check(self, reps: Tensor, estimate: Mapping[tuple[str, str], float] | None = None) -> float:
        """The largest |z| under the fixed check draws, each statistic's z averaged over them
        (for stopping and keeping states): ``CHECK_DRAWS`` draws score every critic, the rest
        only those of the random features. One draw's random-feature and fold noise made runs
        wait on a statistic that only that draw showed beyond its tolerance.

        The statistics no draw changes are scored once, first (their mean over the draws is
        their value); ``estimate`` (a step's own z of this state, every statistic) already holds
        them, and the check takes them from it. When one of them is beyond its tolerance
        the state cannot meet the target whatever the draws show: the check stops there, with
        ``estimate`` standing in for the rest (``estimated``). On ml-100k BPR every check that
        failed had a linear statistic beyond its tolerance; the stop decisions are the same as
        the full check's. (``RelabelingNull`` has no such stage with spectral or neighbour
        critics: their check rebuilds, with every critic, the nulls and graph the loss
        reuses.)"""
        if not self._ready:
            self._setup(reps)
        self._checks += 1
        reps = reps.detach()
        totals: dict[tuple[str, str], list[float]] = {}
        drawn = Scope.ALL
        if self.staged_check:
            if estimate is not None and self._fixed_keys is not None:
                # the step's own draw scored them on this state, and no draw changes them
                totals = {k: [estimate[k]] for k in self._fixed_keys}
            else:
                fixed = self.zscores(reps, self._check_draws[0], Scope.FIXED)
                totals = {k: [float(z)] for k, z in fixed.items()}
                self._fixed_keys = tuple(totals)
            if estimate is not None and self._beyond_fixed(totals):
                self.checked = {**estimate, **{k: v[0] for k, v in totals.items()}}
                self.estimated, self._passed = True, None
                return self.max_abs_z
            drawn = Scope.DRAWN
        for i, draw in enumerate(self._check_draws):
            # beyond on a critic without random features: no need to average those any further
            if i == CHECK_DRAWS and self._beyond_fixed(totals):
                break
            scope = Scope.RANDOM if i >= CHECK_DRAWS else drawn
            for key, z in self.zscores(reps, draw, scope).items():
                totals.setdefault(key, []).append(float(z))
        self.checked = {k: sum(v) / len(v) for k, v in totals.items()}
        self.estimated = False
        # a run ends on the state that met the target: its final scoring reuses this check
        self._passed = (reps.clone(), dict(self.checked)) if self.distance() <= 0.0 else None
        return self.max_abs_z

    def _beyond_fixed(self, totals: Mapping[tuple[str, str], list[float]]) -> bool:
        """Whether a statistic without random features (its mean so far) is beyond its
        tolerance."""
        return any(
            abs(sum(v) / len(v)) > self._bounds(k)[0]
            for k, v in totals.items()
            if not random_feature_critic(k[1])
        )

    def _reuse_passed(self, reps: Tensor) -> bool:
        """Whether ``reps`` is the last state a full check found at the target (then its z are
        ``checked`` again): a run's final scoring of the kept state scores no draw twice."""
        if self._passed is None or self._passed[0].shape != reps.shape:
            return False
        if not torch.equal(self._passed[0], reps.detach()):
            return False
        self.checked, self.estimated = dict(self._passed[1]), False
        return True
