"""Gaussian variational upper bound of I(user embedding; sensitive attribute), AttrCloak Eq. 12-19.

Each class of an attribute and the whole population are modelled as Gaussians; the bound is the
class-size weighted KL divergence of the class Gaussians from the global one. See docs/losses.md
for the deviations from the paper (covariance shrinkage, split terms, random-label hinge).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import torch
from torch import Tensor

from recbole_attrcloak.losses.class_moments import ClassMoments, Group, class_moments
from recbole_attrcloak.losses.objective import TermReport


class Covariance(StrEnum):
    """Covariance estimator of the class Gaussians (``au_covariance``)."""

    PAPER = "paper"
    SHRINKAGE = "shrinkage"


class Target(StrEnum):
    """What L_AU is pushed towards (``au_target``)."""

    ZERO = "zero"
    RANDOM_LABELS = "random_labels"


COVARIANCES = tuple(Covariance)
TARGETS = tuple(Target)
# Smallest relative ridge at which the shrinkage statistics are computed in float32.
_FLOAT32_MIN_RIDGE = 1e-3


def gaussian_kl_terms(
    mu_p: Tensor, cov_p: Tensor, mu_q: Tensor, cov_q: Tensor
) -> tuple[Tensor, Tensor]:
    """Split KL(N(mu_p, cov_p) || N(mu_q, cov_q)) into its mean and covariance parts.

    mean term = ½ (μp−μq)ᵀ Σq⁻¹ (μp−μq); covariance term = ½ [tr(Σq⁻¹Σp) − log det(Σq⁻¹Σp) − d].
    Their sum is Eq. 17. Shapes: mu (..., d), cov (..., d, d), batch dimensions broadcast. Uses
    Cholesky factors and triangular solves (no explicit inverse) for accuracy and stable gradients;
    the covariances must be symmetric positive definite.
    """
    d = mu_p.shape[-1]
    for name, mu, cov in (("p", mu_p, cov_p), ("q", mu_q, cov_q)):
        if mu.shape[-1] != d or cov.shape[-2:] != (d, d):
            raise ValueError(
                f"gaussian_kl: mean/covariance of {name} have shapes {tuple(mu.shape)} and "
                f"{tuple(cov.shape)}, expected (..., {d}) and (..., {d}, {d})"
            )
    chol_p = torch.linalg.cholesky(cov_p)
    chol_q = torch.linalg.cholesky(cov_q)
    whitened_diff = torch.linalg.solve_triangular(chol_q, (mu_p - mu_q).unsqueeze(-1), upper=False)
    mean_term = 0.5 * whitened_diff.square().sum(dim=(-2, -1))
    # tr(Σq⁻¹Σp) = ‖Lq⁻¹Lp‖_F²; log det(Σq⁻¹Σp) = 2 Σ log diag(Lp) − 2 Σ log diag(Lq).
    trace = torch.linalg.solve_triangular(chol_q, chol_p, upper=False).square().sum(dim=(-2, -1))
    log_det_ratio = 2.0 * (
        chol_p.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        - chol_q.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    )
    cov_term = 0.5 * (trace - log_det_ratio - d)
    mean_term, cov_term = torch.broadcast_tensors(mean_term, cov_term)
    return mean_term, cov_term


def gaussian_kl(mu_p: Tensor, cov_p: Tensor, mu_q: Tensor, cov_q: Tensor) -> Tensor:
    """KL(N(mu_p, cov_p) || N(mu_q, cov_q)) of Eq. 17, batched over leading dimensions."""
    mean_term, cov_term = gaussian_kl_terms(mu_p, cov_p, mu_q, cov_q)
    return mean_term + cov_term


class GaussianMIBound(torch.nn.Module):
    """L_AU of Eq. 19: mean over attributes of a Gaussian upper bound of I(embedding; attribute).

    ``labels[name]`` holds one class code (0..k-1) per user, -1 where the value is unknown; those
    users are left out of that attribute's term entirely (class and global Gaussians). Classes with
    fewer than ``min_class_size`` users are left out the same way and listed in
    ``dropped_classes[name]``.

    ``covariance="paper"``: Σ_k = S_k + ridge·I and Σ_g = S_g + ridge·I (Eq. 14, 16). The constant
    ridge lets the loss be lowered by shrinking all embeddings below it (collapse).
    ``covariance="shrinkage"``: Σ_k = (1−λ)·S_k + λ·S_g + εI, Σ_g = S_g + εI, λ = ``shrinkage``
    or, with ``shrinkage="auto"``, λ_k = d/(n_k + d) per class (small classes lean on S_g, whose
    estimate is better: their own covariance is mostly sampling noise), and
    ε = ridge·tr(S_g)/d: invariant to scaling, translation and rotation of the embeddings (and to
    any invertible affine map up to the ε term) and well defined for classes smaller than d.

    ``target="zero"``: L_j = Σ_k (n_k/N)·KL_k (Eq. 18). ``target="random_labels"``:
    L_j = relu(M_j/(r·M_j⁰) − 1)² + relu(C_j/(r·C_j⁰) − 1)² (r = ``target_ratio``) with M_j, C_j
    the weighted mean and covariance parts of Eq. 18 and M_j⁰, C_j⁰ their average over
    ``n_permutations`` random permutations of the known labels, set by :meth:`refresh_reference`
    (called on the first forward if never called). Nothing is pushed below what an
    attribute-independent partition of the same sizes shows. The hinge is squared so that a term
    near its target pulls with a force proportional to its excess: with a plain hinge, terms that
    hover at their targets (whose gradient switches on and off, scaled by 1/M_j⁰) drown the one
    term still far above it. ``max_excess`` holds the largest M_j/(r·M_j⁰) − 1 or
    C_j/(r·C_j⁰) − 1 of the last evaluation; the target is met once it is at most
    ``target_tol`` (``zero``: once L_AU is 0).

    It implements ``losses.objective.LeakageObjective``: ``distance()``, ``terms()`` and
    ``progress()`` describe the last evaluation.

    Everything follows from per-class sums and scatters of the embeddings, gathered in chunks of
    rows (``ClassMoments``): O(n·d²) time, and beyond the input and its gradient O(K·d²) memory
    instead of several (n, d) copies per attribute. The statistics are computed in float32 when
    ``covariance="shrinkage"`` and ridge ≥ 1e-3 (the ridge then bounds the condition number of
    Σ_g by about d/ridge, and float32 is ~1.7× faster), else in float64; the loss is returned in
    the embedding dtype.
    """

    def __init__(
        self,
        labels: Mapping[str, Tensor],
        *,
        covariance: str = "shrinkage",
        shrinkage: float | str = 0.1,
        ridge: float = 1e-6,
        target: str = "random_labels",
        n_permutations: int = 5,
        target_ratio: float = 1.0,
        target_tol: float = 0.0,
        min_class_size: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {list(COVARIANCES)}, got {covariance!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {list(TARGETS)}, got {target!r}")
        if not target_tol >= 0.0:
            raise ValueError(f"target_tol must be >= 0, got {target_tol}")
        if shrinkage != "auto" and not 0.0 <= float(shrinkage) <= 1.0:
            raise ValueError(f"shrinkage must be 'auto' or in [0, 1], got {shrinkage}")
        if not ridge > 0.0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        if n_permutations < 1:
            raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
        if min_class_size < 1:
            raise ValueError(f"min_class_size must be >= 1, got {min_class_size}")
        if len(labels) == 0:
            raise ValueError("labels must name at least one attribute")
        self.covariance = Covariance(covariance)
        self.shrinkage = shrinkage if shrinkage == "auto" else float(shrinkage)
        self.ridge = float(ridge)
        float32_ok = self.covariance == Covariance.SHRINKAGE and self.ridge >= _FLOAT32_MIN_RIDGE
        self.dtype = torch.float32 if float32_ok else torch.float64
        self.target = Target(target)
        self.target_tol = float(target_tol)
        self.n_permutations = int(n_permutations)
        if not target_ratio > 0.0:
            raise ValueError(f"target_ratio must be > 0, got {target_ratio}")
        self.target_ratio = float(target_ratio)
        self.attributes: tuple[str, ...] = tuple(labels)
        self.dropped_classes: dict[str, list[int]] = {}
        self.n_users = -1
        # Per attribute: the users it covers, grouped by class, and the class sizes.
        self._class_sizes: list[list[int]] = []
        for j, name in enumerate(self.attributes):
            users, sizes, dropped = self._prepare(name, labels[name], min_class_size)
            self.register_buffer(f"_users_{j}", users, persistent=False)
            self._class_sizes.append(sizes)
            self.dropped_classes[name] = dropped
        self._generator = torch.Generator().manual_seed(seed)
        self._reference: list[tuple[float, float]] | None = None
        self.max_excess = math.inf
        # The last evaluation: L_AU and the (M_j, C_j) terms, (n_attributes, 2).
        self._last_loss: Tensor | None = None
        self._last_terms: Tensor | None = None

    @classmethod
    def from_settings(
        cls, labels: Mapping[str, Tensor], settings: Mapping[str, Any], seed: int
    ) -> GaussianMIBound:
        """The bound configured by the ``au_*`` keys of ``properties/overall.yaml`` (a dict or a
        RecBole ``Config``): ``au_covariance``, ``au_shrinkage``, ``au_ridge``, ``au_target``,
        ``au_permutations``, ``au_target_ratio``, ``au_target_tol``, ``au_min_class_size``."""
        shrinkage = settings["au_shrinkage"]
        return cls(
            labels,
            covariance=settings["au_covariance"],
            shrinkage=shrinkage if shrinkage == "auto" else float(shrinkage),
            ridge=float(settings["au_ridge"]),
            target=settings["au_target"],
            n_permutations=int(settings["au_permutations"]),
            target_ratio=float(settings["au_target_ratio"]),
            target_tol=float(settings["au_target_tol"]),
            min_class_size=int(settings["au_min_class_size"]),
            seed=seed,
        )

    def _prepare(
        self, name: str, lab: Tensor, min_class_size: int
    ) -> tuple[Tensor, list[int], list[int]]:
        """Validate one attribute's labels; return users by class, class sizes, dropped codes."""
        if lab.dim() != 1:
            raise ValueError(f"labels[{name!r}] must be 1-D, got shape {tuple(lab.shape)}")
        if lab.dtype.is_floating_point or lab.dtype.is_complex or lab.dtype == torch.bool:
            raise ValueError(f"labels[{name!r}] must hold integer class codes, got {lab.dtype}")
        if self.n_users < 0:
            self.n_users = lab.shape[0]
        elif lab.shape[0] != self.n_users:
            raise ValueError(
                f"labels[{name!r}] has length {lab.shape[0]}, expected n_users={self.n_users}"
            )
        lab = lab.detach().to("cpu", torch.long)
        if bool((lab < -1).any()):
            raise ValueError(f"labels[{name!r}] has codes below -1 (-1 marks an unknown value)")
        known = lab >= 0
        if not bool(known.any()):
            raise ValueError(f"attribute {name!r} has no user with a known value")
        counts = torch.bincount(lab[known])
        if int((counts > 0).sum()) < 2:
            raise ValueError(f"attribute {name!r} has fewer than 2 classes with users")
        kept = counts >= min_class_size
        dropped = torch.nonzero((counts > 0) & ~kept).flatten().tolist()
        if int(kept.sum()) < 2:
            raise ValueError(
                f"attribute {name!r} has fewer than 2 classes with >= {min_class_size} users"
            )
        covered = torch.nonzero(known & kept[lab.clamp(min=0)]).flatten()
        order = torch.argsort(lab[covered], stable=True)
        return covered[order], counts[kept].tolist(), dropped

    def _check_embeddings(self, emb: Tensor) -> None:
        if emb.dim() != 2 or emb.shape[0] != self.n_users:
            raise ValueError(
                f"emb must have shape (n_users={self.n_users}, d), got {tuple(emb.shape)}"
            )
        if not emb.dtype.is_floating_point:
            raise ValueError(f"emb must be floating point, got {emb.dtype}")
        # aminmax propagates NaN and keeps ±inf, without isfinite's (n, d) temporaries (~1.7 GB
        # for 1e6 × 128 float32).
        if not bool(torch.isfinite(torch.stack(torch.aminmax(emb))).all()):
            raise ValueError("emb contains NaN or inf")

    def _groups(self, device: torch.device) -> tuple[Group, ...]:
        """Per attribute: its covered users grouped by class (on ``device``), the class sizes."""
        return tuple(
            (getattr(self, f"_users_{j}").to(device), sizes)
            for j, sizes in enumerate(self._class_sizes)
        )

    def _terms(self, j: int, sums: Tensor, scatters: Tensor) -> tuple[Tensor, Tensor]:
        """Weighted mean and covariance terms (M_j, C_j) of Eq. 18 from the class statistics.

        ``sums``/``scatters``: s_k = Σ(x − c), Q_k = Σ(x − c)(x − c)ᵀ over class k's users, for
        any constant c. Moments: μ_k − c = s_k/n_k, S_k = Q_k/n_k − (μ_k − c)(μ_k − c)ᵀ, and the
        same over all classes for the global Gaussian. After whitening by Σ_g = LLᵀ (where Σ_g
        becomes I), the mean term of class k is ½‖L⁻¹(μ_k − μ_g)‖² and its covariance term
        ½[tr Σ̃_k − log det Σ̃_k − d] with Σ̃_k = L⁻¹Σ_kL⁻ᵀ = (1−λ_k)·L⁻¹(S_k + εI)L⁻ᵀ + λ_k·I
        (λ = 0 for ``paper``).
        """
        d = sums.shape[1]
        sizes = self._class_sizes[j]
        counts = sums.new_tensor(sizes)
        n = counts.sum()
        eye = torch.eye(d, dtype=sums.dtype, device=sums.device)
        means = sums / counts[:, None]
        mean_g = sums.sum(0) / n
        scatter_g = scatters.sum(0) / n - torch.outer(mean_g, mean_g)
        scatter = scatters / counts[:, None, None] - means[:, :, None] * means[:, None, :]
        if self.covariance == Covariance.PAPER:
            eps = sums.new_tensor(self.ridge)
            lam = sums.new_zeros(len(sizes), 1, 1)
        else:
            total_var = scatter_g.diagonal().sum()
            if not bool(total_var > 0):
                raise ValueError(f"attribute {self.attributes[j]!r}: embeddings have zero variance")
            eps = self.ridge * total_var / d
            if self.shrinkage == "auto":
                lam = (d / (counts + d))[:, None, None]
            else:
                lam = sums.new_full((len(sizes), 1, 1), self.shrinkage)
        chol_g = torch.linalg.cholesky(scatter_g + eps * eye)
        whitened_diff = torch.linalg.solve_triangular(chol_g, (means - mean_g).T, upper=False)
        half = torch.linalg.solve_triangular(chol_g, scatter + eps * eye, upper=False)
        whitened = torch.linalg.solve_triangular(chol_g, half.mT, upper=False)
        cov_k = (1.0 - lam) * whitened + lam * eye
        log_det = 2.0 * torch.linalg.cholesky(cov_k).diagonal(dim1=-2, dim2=-1).log().sum(-1)
        cov_terms = 0.5 * (cov_k.diagonal(dim1=-2, dim2=-1).sum(-1) - log_det - d)
        weights = counts / n
        return weights @ (0.5 * whitened_diff.square().sum(0)), weights @ cov_terms

    def _attribute_terms(self, emb: Tensor) -> list[tuple[Tensor, Tensor]]:
        """(M_j, C_j) per attribute, from class statistics gathered in one chunked pass each."""
        shift = emb.detach().mean(0).to(self.dtype)
        moments = ClassMoments.apply(emb, shift, self._groups(emb.device))
        return [
            self._terms(j, moments[2 * j], moments[2 * j + 1]) for j in range(len(self.attributes))
        ]

    def _attribute_losses(self, emb: Tensor) -> list[Tensor]:
        if self.target == Target.ZERO:
            terms = self._attribute_terms(emb)
            self._last_terms = torch.stack([torch.stack(t) for t in terms]).detach()
            return [mean + cov for mean, cov in terms]
        if self._reference is None:
            self.refresh_reference(emb)
        terms = [torch.stack(t) for t in self._attribute_terms(emb)]
        self._last_terms = torch.stack(terms).detach()
        excesses = torch.stack(
            [
                values
                / (self.target_ratio * torch.tensor(refs, dtype=self.dtype, device=emb.device))
                - 1.0
                for values, refs in zip(terms, self._reference, strict=True)
            ]
        )
        self.max_excess = float(excesses.detach().max())
        return list(torch.relu(excesses).square().sum(1))

    def forward(self, emb: Tensor) -> Tensor:
        """L_AU (Eq. 19) for the user embedding table emb (n_users, d): scalar, differentiable."""
        self._check_embeddings(emb)
        loss = torch.stack(self._attribute_losses(emb)).mean().to(emb.dtype)
        self._last_loss = loss.detach()
        return loss

    def distance(self) -> float:
        """How far the last evaluation is from the target (0 = met): the largest relative
        excess of a term over its target beyond ``target_tol`` (``random_labels``), or L_AU
        itself (``zero``); inf before the first evaluation."""
        if self._last_loss is None:
            return math.inf
        if self.target == Target.ZERO:
            return max(0.0, float(self._last_loss))
        return max(0.0, self.max_excess - self.target_tol)

    def progress(self) -> dict[str, float]:
        """The largest relative excess of the last evaluation (``random_labels``; traced)."""
        return {} if self.target == Target.ZERO else {"excess": self.max_excess}

    def terms(self) -> list[TermReport]:
        """M_j and C_j of every attribute at the last evaluation against their targets: r times
        the random-label level (``random_labels``) or 0 (``zero``)."""
        if self._last_terms is None:
            return []
        values = self._last_terms.tolist()
        out = []
        for j, name in enumerate(self.attributes):
            for k, part in enumerate(("mean", "covariance")):
                value = float(values[j][k])
                if self.target == Target.ZERO:
                    reference, target, met = None, 0.0, value <= 0.0
                else:
                    reference = float(self._reference[j][k])
                    target = self.target_ratio * reference
                    met = value / target - 1.0 <= self.target_tol
                out.append(TermReport(f"{name}/{part}", value, target, reference, met))
        return out

    @torch.no_grad()
    def per_attribute(self, emb: Tensor) -> dict[str, float]:
        """L_j per attribute name, for logging."""
        self._check_embeddings(emb)
        losses = self._attribute_losses(emb)
        return {name: float(loss) for name, loss in zip(self.attributes, losses, strict=True)}

    @torch.no_grad()
    def refresh_reference(self, emb: Tensor) -> None:
        """Set M_j⁰, C_j⁰: the mean/covariance terms averaged over random label permutations.

        Permuting the users of an attribute while keeping its class sizes is the same as assigning
        the labels at random: it only regroups the users. The attribute's totals are the same for
        every permutation, so the largest class's statistics are the totals minus the others',
        and a permutation costs a pass over the users outside it. The permutations come from the
        module's seeded generator, so a run is deterministic; each call draws fresh ones.
        target="zero" does not use the levels.
        """
        self._check_embeddings(emb)
        shift = emb.mean(0).to(self.dtype)
        reference = []
        for j, (users, sizes) in enumerate(self._groups(emb.device)):
            sum_all, scatter_all = class_moments(emb, shift, (users, [len(users)]))
            largest = max(range(len(sizes)), key=sizes.__getitem__)
            total = torch.zeros(2, dtype=self.dtype, device=emb.device)
            for _ in range(self.n_permutations):
                perm = torch.randperm(len(users), generator=self._generator).to(emb.device)
                sums, scatters = class_moments(emb, shift, (users[perm], sizes), largest)
                sums[largest] = sum_all[0] - sums.sum(0)
                scatters[largest] = scatter_all[0] - scatters.sum(0)
                total += torch.stack(self._terms(j, sums, scatters))
            mean_ref, cov_ref = (total / self.n_permutations).tolist()
            reference.append((mean_ref, cov_ref))
        self._reference = reference
