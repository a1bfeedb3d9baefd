"""Gaussian variational upper bound of I(user embedding; sensitive attribute), AttrCloak Eq. 12-19.

Each class of an attribute and the whole population are modelled as Gaussians; the bound is the
class-size weighted KL divergence of the class Gaussians from the global one. See docs/losses.md
for the deviations from the paper (covariance shrinkage, split terms, random-label hinge).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

COVARIANCES = ("paper", "shrinkage")
TARGETS = ("zero", "random_labels")
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
    C_j/(r·C_j⁰) − 1 of the last evaluation (the stopping test: ≤ a tolerance).

    The statistics are computed in float32 when ``covariance="shrinkage"`` and ridge ≥ 1e-3 (the
    ridge then bounds the condition number of Σ_g by about d/ridge, and float32 is ~1.7× faster),
    else in float64; the loss is returned in the embedding dtype.
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
        min_class_size: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
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
        self.covariance = covariance
        self.shrinkage = shrinkage if shrinkage == "auto" else float(shrinkage)
        self.ridge = float(ridge)
        float32_ok = covariance == "shrinkage" and self.ridge >= _FLOAT32_MIN_RIDGE
        self.dtype = torch.float32 if float32_ok else torch.float64
        self.target = target
        self.n_permutations = int(n_permutations)
        if not target_ratio > 0.0:
            raise ValueError(f"target_ratio must be > 0, got {target_ratio}")
        self.target_ratio = float(target_ratio)
        self.attributes: tuple[str, ...] = tuple(labels)
        self.dropped_classes: dict[str, list[int]] = {}
        self.n_users = -1
        # Per attribute: the users it covers, grouped by class, their compact class codes (0..K-1)
        # and the class sizes.
        self._class_sizes: list[list[int]] = []
        for j, name in enumerate(self.attributes):
            users, sizes, dropped = self._prepare(name, labels[name], min_class_size)
            codes = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
            self.register_buffer(f"_users_{j}", users, persistent=False)
            self.register_buffer(f"_codes_{j}", codes, persistent=False)
            self._class_sizes.append(sizes)
            self.dropped_classes[name] = dropped
        self._generator = torch.Generator().manual_seed(seed)
        self._reference: list[tuple[float, float]] | None = None
        self.max_excess = math.inf

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
        if not bool(torch.isfinite(emb).all()):
            raise ValueError("emb contains NaN or inf")

    def _attribute_users(self, j: int, emb: Tensor) -> Tensor:
        users = getattr(self, f"_users_{j}").to(emb.device)
        return emb.index_select(0, users).to(self.dtype)

    def _terms(self, j: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Weighted mean and covariance terms (M_j, C_j) of Eq. 18; x: users grouped by class.

        Computed after whitening by the global Gaussian (z = L⁻¹(x − μ_g), Σ_g = LLᵀ), where
        Σ_g becomes I: the mean term of class k is ½‖z̄_k‖² and its covariance term
        ½[tr Σ̃_k − log det Σ̃_k − d] with Σ̃_k = L⁻¹Σ_kL⁻ᵀ = (1−λ_k)T_k + λ_k·I + (1−λ_k)·ε·L⁻¹L⁻ᵀ
        (T_k the whitened class scatter; λ = 0 for ``paper``). One triangular solve for all users
        replaces one per class.
        """
        n, d = x.shape
        sizes = self._class_sizes[j]
        codes = getattr(self, f"_codes_{j}").to(x.device)
        counts = torch.tensor(sizes, dtype=x.dtype, device=x.device)
        weights = counts / n
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        centred = x - x.mean(0)
        scatter_g = centred.T @ centred / n
        if self.covariance == "paper":
            eps = torch.tensor(self.ridge, dtype=x.dtype, device=x.device)
            lam = torch.zeros(len(sizes), 1, 1, dtype=x.dtype, device=x.device)
        else:
            total_var = scatter_g.diagonal().sum()
            if not bool(total_var > 0):
                raise ValueError(f"attribute {self.attributes[j]!r}: embeddings have zero variance")
            eps = self.ridge * total_var / d
            if self.shrinkage == "auto":
                lam = (d / (counts + d))[:, None, None]
            else:
                lam = torch.full((len(sizes), 1, 1), self.shrinkage, dtype=x.dtype, device=x.device)
        chol_g = torch.linalg.cholesky(scatter_g + eps * eye)
        z = torch.linalg.solve_triangular(chol_g, centred.T, upper=False).T
        means = torch.zeros(len(sizes), d, dtype=x.dtype, device=x.device).index_add(0, codes, z)
        means = means / counts[:, None]
        within = z - means[codes]
        scatter = torch.stack([c.T @ c for c in within.split(sizes)]) / counts[:, None, None]
        inv_chol = torch.linalg.solve_triangular(chol_g, eye, upper=False)
        cov_k = (1.0 - lam) * (scatter + eps * (inv_chol @ inv_chol.T)) + lam * eye
        log_det = 2.0 * torch.linalg.cholesky(cov_k).diagonal(dim1=-2, dim2=-1).log().sum(-1)
        cov_terms = 0.5 * (cov_k.diagonal(dim1=-2, dim2=-1).sum(-1) - log_det - d)
        return weights @ (0.5 * means.square().sum(1)), weights @ cov_terms

    def _attribute_losses(self, emb: Tensor) -> list[Tensor]:
        if self.target == "zero":
            return [
                sum(self._terms(j, self._attribute_users(j, emb)))
                for j in range(len(self.attributes))
            ]
        if self._reference is None:
            self.refresh_reference(emb)
        excesses = torch.stack(
            [
                torch.stack(self._terms(j, self._attribute_users(j, emb)))
                / (self.target_ratio * torch.tensor(refs, dtype=self.dtype, device=emb.device))
                - 1.0
                for j, refs in enumerate(self._reference)
            ]
        )
        self.max_excess = float(excesses.detach().max())
        return list(torch.relu(excesses).square().sum(1))

    def forward(self, emb: Tensor) -> Tensor:
        """L_AU (Eq. 19) for the user embedding table emb (n_users, d): scalar, differentiable."""
        self._check_embeddings(emb)
        return torch.stack(self._attribute_losses(emb)).mean().to(emb.dtype)

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
        the labels at random. The permutations come from the module's seeded generator, so a run
        is deterministic; each call draws fresh ones. target="zero" does not use the levels.
        """
        self._check_embeddings(emb)
        reference = []
        for j in range(len(self.attributes)):
            x = self._attribute_users(j, emb.detach())
            total = torch.zeros(2, dtype=self.dtype, device=x.device)
            for _ in range(self.n_permutations):
                perm = torch.randperm(x.shape[0], generator=self._generator).to(x.device)
                total += torch.stack(self._terms(j, x[perm]))
            mean_ref, cov_ref = (total / self.n_permutations).tolist()
            reference.append((mean_ref, cov_ref))
        self._reference = reference
