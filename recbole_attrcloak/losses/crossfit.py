"""Cross-fitted classifier critics: what an attacker that trains on some users reads on the others,
by its *decisions*, against label permutations.

The U-statistics of ``losses.relabel`` average the held-out inner-product score of a class-mean
critic over all splits. An attacker decides by an argmax over classes, and the two can disagree:
on ml-100k BPR (seed 2021, DF with one-vs-rest critics), every kernel and one-vs-rest statistic
met its tolerance while five linear classifiers (logistic regression, ridge, LDA, nearest
centroid) read age far below chance under 5-fold cross-validation. Here, for each fold, a ridge
classifier is fitted in closed form on the other folds' users (balanced, centred one-hot
targets), scores the fold's users, and a softmax at a temperature relative to the scores'
spread turns the scores into soft decisions; the statistic is the soft balanced accuracy (the
mean over classes of the mean probability of the true class). Its null is the same statistic
for label permutations, refitted (the fold's solve does not depend on the labels: one product
per permutation), so each statistic is a z-score, target 0, and both directions count.

Pure torch; no RecBole, Ray or scikit-learn import.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from recbole_attrcloak.losses.attribute_labels import _Attribute, _balanced_onehot

# Folds, label permutations per call and softmax temperature (relative to the spread of the
# held-out scores); the check's permutations per check draw (a steadier null spread).
FOLDS, PERMUTATIONS, TEMPERATURE, CHECK_PERMUTATIONS = 5, 16, 0.25, 32


def random_folds(m: int, n_folds: int, generator: torch.Generator, device) -> list[Tensor]:
    """A random split of ``m`` rows into ``n_folds`` folds of (nearly) equal size."""
    order = torch.randperm(m, generator=generator, device=device)
    return list(order.chunk(n_folds))


def _soft_balanced(scores: Tensor, codes: Tensor, counts: Tensor, temperature: Tensor) -> Tensor:
    """Mean over classes of the mean softmax probability of the true class; ``scores`` (R, m,
    K) for R labelings ``codes`` (R, m) with the same class sizes ``counts`` (K,)."""
    scaled = scores / temperature
    # the true class's probability as exp(s_y − logsumexp s): on CPU, softmax over the short
    # last axis of a few classes took three times as long
    true = (scaled.gather(-1, codes.unsqueeze(-1)).squeeze(-1) - scaled.logsumexp(-1)).exp()
    per_class = torch.zeros(len(true), len(counts), dtype=true.dtype, device=true.device)
    return (per_class.scatter_add(1, codes, true) / counts).mean(-1)


def crossfit_statistics(
    x: Tensor,
    labelings: Sequence[tuple[Tensor, int]],
    folds: list[Tensor],
    permutations: Tensor,
    ridge: float,
    temperature: float,
) -> list[tuple[Tensor, Tensor]]:
    """For every labeling (codes (m,) in 0…K−1, K) of the same users: (s − mean of the null,
    sd of the null) of its cross-fitted soft balanced accuracy s.

    ``x`` (m, d) the users' features (differentiable), ``folds`` a partition of the rows,
    ``permutations`` (R, m) row shuffles of the labels for the null (no gradient). Each fold's
    ridge (relative to the mean feature variance) is fitted on the other rows, once for every
    labeling and permutation; its scores on the fold are divided by ``temperature`` × their
    spread before the softmax. The training rows' cross-products are the whole set's minus the
    fold's (computed once, not once per fold). Cost O(m·d² + d³) per fold, O(m·d·K) per labeling
    and permutation."""
    m, d = x.shape
    widths = [k for _, k in labelings]
    true_y = torch.cat([_balanced_onehot(c, k, dtype=x.dtype) for c, k in labelings], 1)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    # Xᵀ[X Y] over all rows; a fold's training part is this minus the fold's own rows. The
    # targets need no centring: the training rows' features are centred.
    gram_all, xy_all = x.T @ x, x.T @ true_y
    x_sum, y_sum = x.sum(0), true_y.sum(0)
    with torch.no_grad():
        # a permutation keeps the class sizes (and the targets' column sums): its targets are
        # the true targets' rows, shuffled
        null_y = true_y[permutations]  # (R, m, C)
        null_xy_all = torch.einsum("md,rmc->drc", x.detach(), null_y)
    parts, null_parts = [], []
    for fold in folds:
        xf, yf = x[fold], true_y[fold]
        n_train = m - len(fold)
        mean = (x_sum - xf.sum(0)) / n_train
        gram = gram_all - xf.T @ xf - n_train * torch.outer(mean, mean)
        chol = torch.linalg.cholesky(gram + ridge * gram.diagonal().mean() * eye)
        xy = xy_all - xf.T @ yf - torch.outer(mean, y_sum - yf.sum(0))
        test = xf - mean
        parts.append(test @ torch.cholesky_solve(xy, chol))
        with torch.no_grad():
            null_f = null_y[:, fold]  # (R, f, C)
            null_xy = null_xy_all - torch.einsum("fd,rfc->drc", xf.detach(), null_f)
            null_xy -= mean.detach()[:, None, None] * (y_sum - null_f.sum(1))[None]
            weights = torch.cholesky_solve(null_xy.reshape(d, -1), chol.detach())
            null_parts.append((test.detach() @ weights).reshape(len(fold), len(permutations), -1))
    order = torch.cat(folds).argsort()
    scores = torch.cat(parts)[order].split(widths, 1)  # rows back in their places
    with torch.no_grad():
        null_scores = torch.cat(null_parts)[order].transpose(0, 1).split(widths, 2)
    return [
        _excess(codes, k, score, null_score, permutations, temperature)
        for (codes, k), score, null_score in zip(labelings, scores, null_scores, strict=True)
    ]


def _excess(
    codes: Tensor, k: int, score: Tensor, null_score: Tensor, permutations: Tensor, temperature
) -> tuple[Tensor, Tensor]:
    """(s − mean of the null, sd of the null) of the soft balanced accuracy of the held-out
    ``score`` (m, K) against ``null_score`` (R, m, K) of the permuted labels."""
    counts = torch.bincount(codes, minlength=k).to(score.dtype).clamp_min(1.0)
    scale = temperature * score.detach().std().clamp_min(1e-12)
    soft = _soft_balanced(score[None], codes[None], counts, scale)[0]
    with torch.no_grad():
        null = _soft_balanced(null_score, codes[permutations], counts, scale)
    return soft - null.mean(), null.std().clamp_min(1e-12)


def diagonal_statistics(
    x: Tensor,
    labelings: Sequence[tuple[Tensor, int]],
    folds: list[Tensor],
    permutations: Tensor,
    threshold: float,
    temperature: float,
) -> list[tuple[Tensor, Tensor]]:
    """As ``crossfit_statistics``, with a *diagonal* classifier in place of the ridge: per
    coordinate, each class's mean shift on the training rows over the coordinate's variance,
    kept softly where that shift's |z| (against the class's standard error) exceeds
    ``threshold`` (a sigmoid of width ½). What an attacker that picks coordinates one at a time
    reads (forests and boosted trees split on raw coordinates): a shift on a few coordinates
    that a ridge fitted on all of them, among shared factors, dilutes. A fold's training class
    sums are all rows' minus the fold's. Cost O(R·m·K·d) per labeling and fold."""
    m = len(x)
    moments = []  # each fold's training mean and variance serve every labeling
    for fold in folds:
        train = torch.ones(m, dtype=torch.bool, device=x.device)
        train[fold] = False
        xt = x[train]
        moments.append((fold, xt.mean(0), xt.var(0).clamp_min(1e-12)))
    order = torch.cat(folds).argsort()
    out = []
    for codes, k in labelings:
        onehot = torch.nn.functional.one_hot(codes, k).to(x.dtype)[None]  # (1, m, K)
        totals = class_totals(x, onehot)
        score = torch.cat(
            [_diagonal_scores(x, onehot, totals, *fm, threshold)[0] for fm in moments]
        )
        with torch.no_grad():
            null_onehot, xd = onehot[0][permutations], x.detach()  # (R, m, K)
            null_totals = class_totals(xd, null_onehot)
            null_score = torch.cat(
                [
                    _diagonal_scores(
                        xd, null_onehot, null_totals, f, mean.detach(), var.detach(), threshold
                    )
                    for f, mean, var in moments
                ],
                1,
            )[:, order]
        out.append(_excess(codes, k, score[order], null_score, permutations, temperature))
    return out


def class_totals(x: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor]:
    """(R, K, d) class sums of the rows ``x`` (m, d) and (R, K) class sizes of the labelings
    ``onehot`` (R, m, K)."""
    return onehot.transpose(1, 2) @ x, onehot.sum(1)


def _diagonal_scores(
    x: Tensor,
    onehot: Tensor,
    totals: tuple[Tensor, Tensor],
    fold: Tensor,
    mean: Tensor,
    var: Tensor,
    threshold: float,
) -> Tensor:
    """(R, f, K) scores of the ``fold``'s rows by the diagonal classifiers of the labelings
    ``onehot`` (R, m, K) fitted on the other rows (their ``mean`` and ``var``); ``totals``: the
    labelings' ``class_totals`` over all rows, of which a fold's training rows have all but the
    fold's own (half the products of summing the training rows fold by fold)."""
    fold_onehot = onehot[:, fold]
    sums = totals[0] - fold_onehot.transpose(1, 2) @ x[fold]  # (R, K, d)
    n_train = totals[1] - fold_onehot.sum(1)  # (R, K)
    size = n_train.clamp_min(1.0)[..., None]
    shift = (sums - n_train[..., None] * mean) / size  # class mean − mean (0 if empty)
    z = shift / (var / size).sqrt()
    weights = shift / var * torch.sigmoid(2.0 * (z.abs() - threshold))
    return (x[fold] - mean) @ weights.transpose(1, 2)


class CrossFitCritics:
    """The cross-fitted critics of ``losses.relabel.RelabelingNull``, one per ridge and one per
    diagonal classifier's threshold: fresh folds and permutations at every call (from the
    objective's generator), fixed ones, seeded, for each check draw; the attributes of every
    user share them (and each fold's fit)."""

    def __init__(self, ridges: Sequence[float], seed: int, diagonal: Sequence[float] = ()) -> None:
        self.ridges = tuple(float(r) for r in ridges)
        self.diagonal = tuple(float(t) for t in diagonal)
        self.seed = int(seed)
        self._fixed: dict[tuple[str, int], tuple[list[Tensor], Tensor]] = {}

    @staticmethod
    def _splits(
        m: int, generator: torch.Generator, device, n_perms: int = PERMUTATIONS
    ) -> tuple[list[Tensor], Tensor]:
        folds = random_folds(m, FOLDS, generator, device)
        perms = [torch.randperm(m, generator=generator, device=device) for _ in range(n_perms)]
        return folds, torch.stack(perms)

    def statistics(
        self,
        z: Tensor,
        attributes: Sequence[_Attribute],
        generator: torch.Generator,
        check: int | None,
    ) -> dict[tuple[str, str], tuple[Tensor, Tensor]]:
        """(attribute, ``crossfit/ridge=r`` or ``crossfit/diagonal=t``) → (excess, spread) on
        the standardised representations ``z``; ``check``: the index of the check draw, None
        for a fresh one."""
        groups: dict[str, list[_Attribute]] = {}
        for attr in attributes:
            groups.setdefault("" if len(attr.users) == len(z) else attr.name, []).append(attr)
        out = {}
        for key, attrs in groups.items():
            m = len(attrs[0].users)
            if check is None:
                folds, perms = self._splits(m, generator, z.device)
            else:
                if (key, check) not in self._fixed:
                    fixed = torch.Generator(device=z.device).manual_seed(self.seed + 2 + check)
                    self._fixed[key, check] = self._splits(m, fixed, z.device, CHECK_PERMUTATIONS)
                folds, perms = self._fixed[key, check]
            rows = z if not key else z[attrs[0].users]
            labelings = [(a.labels.argmax(1), a.labels.shape[1]) for a in attrs]
            for ridge in self.ridges:
                scored = crossfit_statistics(rows, labelings, folds, perms, ridge, TEMPERATURE)
                for attr, stat in zip(attrs, scored, strict=True):
                    out[attr.name, f"crossfit/ridge={ridge:g}"] = stat
            for threshold in self.diagonal:
                scored = diagonal_statistics(rows, labelings, folds, perms, threshold, TEMPERATURE)
                for attr, stat in zip(attrs, scored, strict=True):
                    out[attr.name, f"crossfit/diagonal={threshold:g}"] = stat
        return out
