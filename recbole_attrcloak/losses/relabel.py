"""Leakage measured against a random relabeling: the objective of ``au_objective: relabel``.

For every sensitive attribute and every *critic* (a feature map of the standardised user
representations, optionally whitened with a ridge), the statistic is the unbiased (U-statistic)
HSIC between the features and the attribute's balanced, centred one-hot labels (or, with
``label_weights="scatter"``, each class scaled by 1/√n_k: ``attribute_labels._balanced_onehot``):

    U = Σ_{u≠v} ⟨f_u, f_v⟩ ⟨ỹ_u, ỹ_v⟩,     ỹ_u[k] = 1[y_u = k]/n_k − 1/m.

Averaged over random folds, U is what a class-mean critic fitted on some users scores on the
others: U > 0 means a classifier transfers (leakage), U < 0 that it transfers *inverted*
(over-correction, which leaks as much). Under a random relabeling of the same users (the null the
audit's permutation tests use), U has an exactly known mean and a known spread, so each statistic
becomes a z-score: z = (U − E_π U) / sd_π U. The loss is the mean z² over attributes and critics;
its target is z = 0 — what a random relabeling shows, neither more dependence nor less — and the
run is "at target" once every |z| is within a tolerance (``au_z_tol``: 2 null standard
deviations by default, about the largest |z| that one random relabeling shows over 27
statistics). The loss only pulls a statistic while |z| exceeds a margin: mean of
max(|z| − margin, 0)².

Critics: the linear kernel (class means; with a ridge, the LDA/logistic direction) and Gaussian
kernels through random Fourier features (nonlinear dependence: kNN, RBF-SVM, trees). The random
features are **drawn afresh at every call**: with fixed features an optimiser satisfies those D
features exactly while the kernel as a whole still leaks. ``check`` scores the representations
with fixed draws (no gradient) for stopping decisions that do not depend on the draw; a step
checks only near the target (``check_slack``).

Spectral critics (``spectral`` > 0) add, for every linear critic, its largest eigenvalues of the
class-mean matrix (the best discriminant directions) against fixed label permutations;
per-direction critics (``directions`` > 0) the class means along each top principal axis alone
(``losses.directions``).

One-vs-rest critics (``class_critics``) score every class of a multi-class attribute against
the others with every critic (``attribute_labels.one_vs_rest``); cross-fitted critics
(``crossfit``) score what a ridge classifier fitted on some users decides for the others,
optionally also a per-coordinate diagonal one (``crossfit_diagonal``; ``losses.crossfit``).
Contrasts (``contrasts``) score, per attribute and kernel, the whitened critic's z minus the raw
one's against their joint null (random labels move the two together).
The stop reads each statistic's z averaged over fixed draws: ``CHECK_DRAWS`` of the folds (and
of everything else), ``check_draws`` of the random features. One draw of 256 features moves a
Gaussian critic's z by about one null SD at the same state (ml-100k BPR:
``benchmarks/results/draw_noise/``), noise that the permutation null does not hold: with two
draws, runs spent most of their steps waiting on a statistic that only the check's features
showed beyond its tolerance. A step's check scores the statistics no draw changes first and
stops at one beyond its tolerance (``losses.stop_state``: the state cannot be at the target).

Pure torch; no RecBole, Ray or scikit-learn import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor

from recbole_attrcloak.losses.attribute_labels import (
    _Attribute,
    _attribute,
    _rest,
    block_to,
    label_blocks,
)
from recbole_attrcloak.losses.contrasts import contrast_statistics
from recbole_attrcloak.losses.crossfit import CrossFitCritics
from recbole_attrcloak.losses.directions import (
    SpectralCritics,
    axis_statistics,
    direction_basis,
    family_tolerance,
)
from recbole_attrcloak.losses.kernel_critics import (
    INF,
    Critic,
    default_critics,
    fourier_draw,
    kernel_statistics,
)
from recbole_attrcloak.losses.neighbours import NeighbourCritics
from recbole_attrcloak.losses.quadratic import pair_samples, quadratic_statistics
from recbole_attrcloak.losses.recompute import SEGMENT_ROWS, segmented
from recbole_attrcloak.losses.stop_state import CHECK_DRAWS, Scope, StopState


class RelabelingNull(StopState):
    """The leakage objective: mean z² of the critics' U-statistics against the permutation null.

    ``labels``: attribute name → class codes per representation row (−1: unknown, e.g. RecBole's
    padding row). The first call's representations (the original ones) fix the standardisation,
    so that the critics see what a scale-invariant attacker sees. ``n_features`` random
    Fourier features per Gaussian kernel. The target is met once every |z| under the fixed check
    draw is at most ``tolerance`` (in null standard deviations).

    Implements ``losses.LeakageObjective``: a call also scores the state with the fixed check
    draws (no gradient; in a step only near the target, ``check_slack``), which ``distance()``
    and ``terms()`` report. ``blocks``: the widths of the representation's column blocks (more
    than one: each is also scored on its own, its statistics named ``critic@blockN``).
    """

    def __init__(
        self,
        labels: Mapping[str, Tensor],
        *,
        critics: Sequence[Critic] | None = None,
        n_features: int = 256,
        min_class_size: int = 2,
        directions: int = 0,
        direction_basis: str = "principal",
        spectral: int = 0,
        neighbours: Sequence[int] = (),
        class_critics: bool = False,
        crossfit: Sequence[float] = (),
        crossfit_diagonal: Sequence[float] = (),
        contrasts: bool = False,
        quadratic: bool = False,
        check_draws: int = CHECK_DRAWS,
        label_weights: str = "class",
        permutations: int = 32,
        refresh: int = 10,
        tolerance: float = 2.0,
        margin: float = 0.0,
        check_slack: float = INF,
        blocks: Sequence[int] = (),
        seed: int = 0,
        segment_rows: int | None = SEGMENT_ROWS,
    ) -> None:
        if not labels:
            raise ValueError("RelabelingNull needs at least one attribute")
        # every setting but the seed and the blocks, for the objectives of the column blocks
        options = {k: v for k, v in locals().items() if k not in ("self", "labels", "blocks")}
        self.critics = tuple(critics or default_critics())
        self.n_features = int(n_features)
        self.directions = int(directions)
        self.direction_basis = str(direction_basis)
        self.spectral, self.permutations, self.refresh = int(spectral), int(permutations), refresh
        self.neighbours = tuple(sorted({int(k) for k in neighbours}))
        self.contrasts = bool(contrasts)
        self.quadratic = bool(quadratic)
        self.check_draws = max(int(check_draws), CHECK_DRAWS)
        self.crossfit = None
        if crossfit or crossfit_diagonal:
            self.crossfit = CrossFitCritics(crossfit, seed, crossfit_diagonal)
        self._neighbours = NeighbourCritics(self.neighbours)
        self._checks = 0
        self.tolerance = float(tolerance)
        self.margin = float(margin)
        # neighbour graphs and spectral nulls are rebuilt at checks: those critics check always
        self.check_slack = INF if neighbours or spectral else float(check_slack)
        # a step's check may stop at a certain failure (``StopState.check``) unless it rebuilds
        # what the loss reuses (the neighbour graph, the spectral nulls)
        self.staged_check = not (neighbours or spectral)
        self.estimated = False  # the last state's z came from the step's own draw
        self.seed = int(seed)
        self.segment_rows = segment_rows  # users from which a step recomputes each family
        self.attributes = [
            _attribute(n, c, min_class_size, label_weights) for n, c in labels.items()
        ]
        # the rows any attribute covers; each attribute's users as positions among them
        self.rows = torch.cat([a.users for a in self.attributes]).unique()
        self.attributes = [
            _Attribute(a.name, torch.searchsorted(self.rows, a.users), a.codes, a.labels, *_rest(a))
            for a in self.attributes
        ]
        # every labeling the kernel critics score (one-vs-rest ones for every class of an
        # attribute with more than two classes), grouped by their users
        self.blocks, self.class_labelings = label_blocks(self.attributes, class_critics)
        self.checked: dict[tuple[str, str], float] = {}
        self._bound_cache: tuple[tuple, Tensor] | None = None  # (keys, their bounds)
        self._ready = False
        # column blocks of the representation (e.g. NeuMF's MF and MLP embeddings), each also
        # scored on its own: a leak in one block can cancel an over-correction in another
        self.column_blocks: list[tuple[slice, RelabelingNull]] = []
        if len(blocks) > 1:
            start = 0
            for i, width in enumerate(blocks):
                block = RelabelingNull(labels, **(options | {"seed": seed + 101 * (i + 1)}))
                self.column_blocks.append((slice(start, start + int(width)), block))
                start += int(width)

    @classmethod
    def from_settings(
        cls,
        labels: Mapping[str, Tensor],
        settings: Mapping[str, Any],
        seed: int,
        blocks: Sequence[int] = (),
    ) -> RelabelingNull:
        """The objective configured by the ``au_*`` keys (a dict or a RecBole ``Config``):
        ``au_kernel_gammas``, ``au_squares``, ``au_critic_ridges``, ``au_features``,
        ``au_directions``, ``au_spectral``, ``au_neighbours``, ``au_class_critics``,
        ``au_crossfit``, ``au_crossfit_diagonal``, ``au_contrasts``, ``au_quadratic``,
        ``au_check_draws``, ``au_label_weights``, ``au_z_tol``, ``au_z_margin``,
        ``au_check_slack``, ``au_min_class_size``, ``au_recompute_users``; ``blocks``: the
        widths of the representation's column blocks when ``au_block_critics`` is on."""
        return cls(
            labels,
            critics=default_critics(
                [float(g) for g in settings["au_kernel_gammas"]],
                [float(r) for r in settings["au_critic_ridges"]],
                squares=bool(settings["au_squares"]),
            ),
            n_features=int(settings["au_features"]),
            min_class_size=int(settings["au_min_class_size"]),
            directions=int(settings["au_directions"]),
            direction_basis=str(settings["au_direction_basis"]),
            spectral=int(settings["au_spectral"]),
            neighbours=[int(k) for k in settings["au_neighbours"]],
            class_critics=bool(settings["au_class_critics"]),
            crossfit=[float(r) for r in settings["au_crossfit"]],
            crossfit_diagonal=[float(t) for t in settings["au_crossfit_diagonal"]],
            contrasts=bool(settings["au_contrasts"]),
            quadratic=bool(settings["au_quadratic"]),
            check_draws=int(settings["au_check_draws"]),
            label_weights=str(settings["au_label_weights"]),
            tolerance=float(settings["au_z_tol"]),
            margin=float(settings["au_z_margin"]),
            check_slack=float(settings["au_check_slack"]),
            blocks=blocks if settings["au_block_critics"] else (),
            seed=seed,
            segment_rows=None if (rows := settings["au_recompute_users"]) is None else int(rows),
        )

    def _setup(self, reference: Tensor) -> None:
        """Fix the standardisation from the first (original) representations and move the
        labels to their device."""
        device = reference.device
        self.rows = self.rows.to(device)
        self.attributes = [
            _Attribute(
                a.name, a.users.to(device), a.codes.to(device), a.labels.to(device), *_rest(a)
            )
            for a in self.attributes
        ]
        self.blocks = [block_to(b, device, reference.dtype) for b in self.blocks]
        ref = reference.detach()[self.rows].to(torch.float64)
        mean, std = ref.mean(0), ref.std(0)
        # a coordinate constant in the original (a dead unit of a tower, as DMF's: its spread a
        # millionth of the table's typical one, or none) gets that typical spread: divided by
        # its own, a step's change of it would become a z of millions, whose square and fourth
        # power (the second-moment critics) overflow; any other scale is divided out as it is
        typical = max(float(std.mean()), 1e-12)
        std = torch.where(std > 1e-6 * typical, std, torch.full_like(std, typical))
        self.dtype = reference.dtype
        self.shift, self.scale = mean.to(self.dtype), std.to(self.dtype)
        self.dim = reference.shape[1]
        self.axes = None  # the per-direction critics' principal axes (losses.directions)
        self.axis_tolerance, self.axis_margin = self.tolerance, self.margin
        n_critics = len(self.critics) + self.quadratic
        n_kernel = n_critics * len(self.attributes)
        n_class = len(self.class_labelings) * n_critics
        self.class_tolerance = family_tolerance(self.tolerance, n_kernel, n_class)
        self.class_margin = self.margin + self.class_tolerance - self.tolerance
        if self.directions:
            axes = direction_basis((ref - mean) / std, self.directions, self.direction_basis)
            self.axes = axes.to(self.dtype)
            n_axes = self.axes.shape[1] * len(self.attributes)
            self.axis_tolerance = family_tolerance(self.tolerance, n_kernel, n_axes)
            self.axis_margin = self.margin + self.axis_tolerance - self.tolerance
        self.generator = torch.Generator(device=device).manual_seed(self.seed)
        self._spectral = None
        if self.spectral:
            self._spectral = SpectralCritics(
                self.attributes, self.spectral, self.permutations, self.seed + 1
            )
        self._check_draws = [self._draw() for _ in range(self.check_draws)]
        # the rows whose pairs estimate the quadratic critic's null spread, per large block
        self._pair_rows = pair_samples(self.blocks, self.seed + 3) if self.quadratic else None
        self._ready = True

    @property
    def dropped_classes(self) -> dict[str, tuple[int, ...]]:
        """Class codes left out of each attribute's statistics."""
        return {a.name: a.dropped for a in self.attributes if a.dropped}

    def _draw(self) -> dict[float, tuple[Tensor, Tensor]]:
        """Fresh random Fourier features for every Gaussian bandwidth."""
        gammas = sorted({c.gamma for c in self.critics if c.random})
        return fourier_draw(gammas, self.dim, self.n_features, self.generator, self.dtype)

    def zscores(
        self, reps: Tensor, draw: dict | None = None, scope: Scope = Scope.ALL
    ) -> dict[tuple[str, str], Tensor]:
        """z-score of every (attribute, critic) statistic of ``scope``; differentiable in
        ``reps`` (the null's spread is a scale and carries no gradient). The first call fixes the
        standardisation (the original representations)."""
        stats = self.statistics(reps, draw, scope)
        if not stats:
            return {}
        # one division for all: a few hundred scalar ops (and their backward) took a tenth of
        # a step on ml-100k
        excess = torch.stack([e for e, _ in stats.values()])
        spread = torch.stack([s for _, s in stats.values()])
        return dict(zip(stats, (excess / spread).unbind(), strict=True))

    def statistics(
        self, reps: Tensor, draw: dict | None = None, scope: Scope = Scope.ALL
    ) -> dict[tuple[str, str], tuple[Tensor, Tensor]]:
        """For every (attribute, critic) of ``scope``: U − E_π U (differentiable) and sd_π U
        (no gradient), with ``draw``'s random features (a fresh draw if None)."""
        if not self._ready:
            self._setup(reps)
        draw = draw if draw is not None else self._draw()
        # which check draw this is (None: a fresh draw); the first rebuilds what the loss
        # calls then reuse
        index = next((i for i, d in enumerate(self._check_draws) if d is draw), None)
        refresh = index == 0 and (self._checks - 1) % self.refresh == 0
        z_in = (reps[self.rows].to(self.dtype) - self.shift) / self.scale
        out = {}
        for gamma, random in dict.fromkeys((c.gamma, c.random) for c in self.critics):
            # RANDOM and DRAWN leave out the fixed feature maps (linear, squares), FIXED the
            # Gaussian ones
            if scope is not Scope.ALL and random != (scope in (Scope.RANDOM, Scope.DRAWN)):
                continue
            kernel = [c for c in self.critics if c.gamma == gamma]
            # the spectral critics keep state between calls: their kernel is never recomputed
            spectral = self.spectral and gamma is None and scope is Scope.ALL
            family = partial(self._kernel_family, gamma=gamma, kernel=kernel, draw=draw)
            family = partial(family, spectral_refresh=refresh) if spectral else family
            out.update(segmented(family, z_in, None if spectral else self.segment_rows))
        fixed, drawn = scope in (Scope.ALL, Scope.FIXED), scope in (Scope.ALL, Scope.DRAWN)
        if self.quadratic and fixed:
            family = partial(quadratic_statistics, blocks=self.blocks, samples=self._pair_rows)
            out.update(segmented(family, z_in, self.segment_rows))
        if self.axes is not None and fixed:
            out.update(axis_statistics(z_in, self.axes, self.attributes))
        if self.neighbours and drawn:
            out.update(self._neighbours.statistics(z_in, self.attributes, index == 0))
        if self.crossfit is not None and drawn:
            splits = self.crossfit.splits(self.attributes, len(z_in), self.generator, index)
            family = partial(
                self.crossfit.statistics, attributes=self.attributes, splits=splits, nulls={}
            )
            out.update(segmented(family, z_in, self.segment_rows))
        for b, (columns, block) in enumerate(self.column_blocks, 1):
            stats = block.statistics_at(reps[:, columns], index, scope)
            for (name, critic), stat in stats.items():
                out[name, f"{critic}@block{b}"] = stat
        return out

    def _kernel_family(
        self,
        z: Tensor,
        gamma: float | str | None,
        kernel: Sequence[Critic],
        draw: dict,
        spectral_refresh: bool | None = None,
    ) -> dict[tuple[str, str], tuple[Tensor, Tensor]]:
        """One kernel's statistics (``kernel``: its critics), with its spectral critics when
        ``spectral_refresh`` is not None, and its contrasts."""
        out, metrics = kernel_statistics(z, gamma, kernel, draw, self.blocks)
        if spectral_refresh is not None:
            out.update(self._spectral.statistics(metrics, spectral_refresh))
        if self.contrasts:
            out.update(contrast_statistics(metrics, self.blocks, self.class_labelings, out))
        return out

    def _skip_fresh(self) -> None:
        """Draw from the generators what a fresh ``statistics`` call would (random features,
        folds and permutations, the column blocks' too), without scoring anything."""
        self._draw()
        if self.crossfit is not None:
            self.crossfit.splits(self.attributes, len(self.rows), self.generator, None)
        for _, block in self.column_blocks:
            block._skip_fresh()

    def statistics_at(
        self, reps: Tensor, check: int | None, scope: Scope = Scope.ALL
    ) -> dict[tuple[str, str], tuple[Tensor, Tensor]]:
        """``statistics`` with the check draw of index ``check`` (None: a fresh draw)."""
        if not self._ready:
            self._setup(reps)
        draw = None if check is None else self._check_draws[check]
        return self.statistics(reps, draw, scope)

    def __call__(self, reps: Tensor) -> Tensor:
        """Mean of max(|z| − margin, 0)² over attributes and critics, with fresh random
        features and folds. Also scores ``reps`` with the fixed check draws: always when no
        gradient is taken (a run's first and final scoring; the final one reuses the check of
        the state that met the target, ``_reuse_passed``), in a step only once this
        draw puts every statistic within ``check_slack`` of its tolerance. Farther away the
        state cannot be at the target, and this draw's z stand in for the check's (``estimated``;
        two thirds of a step's time saved). Without gradient the loss is that of the check's z:
        a run's first and final scoring then compare like with like (one fresh draw's loss moved
        threefold at the same state on the toy data of tests/test_pipeline.py)."""
        if not (torch.is_grad_enabled() and reps.requires_grad):  # a scoring, not a step
            if not self._reuse_passed(reps):
                self.check(reps)
            self._skip_fresh()  # drawn, unused, in every call: the steps see the same draws
            zs = torch.tensor(list(self.checked.values()), dtype=reps.dtype, device=reps.device)
            bounds = self._bound_table(tuple(self.checked), zs)
            return torch.relu(zs.abs() - bounds[:, 1]).square().mean()
        scored = self.zscores(reps)
        zs = torch.stack(list(scored.values()))
        bounds = self._bound_table(tuple(scored), zs)
        beyond = float((zs.detach().abs() - bounds[:, 0]).max())
        if beyond <= self.check_slack:
            estimate = dict(zip(scored, zs.detach().tolist(), strict=True))
            self.check(reps, estimate=estimate if self.staged_check else None)
        else:
            self.checked = dict(zip(scored, zs.detach().tolist(), strict=True))
            self.estimated = True
        return torch.relu(zs.abs() - bounds[:, 1]).square().mean()
