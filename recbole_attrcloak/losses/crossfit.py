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
# The most null scores (users × permutations × label columns) held at once: the permutations
# are scored in groups under it (all at once on ml-100k and ml-1m; one at a time at 10^6 users,
# where all 32 of a check would take 4 GB per copy).
NULL_VALUES = 2**25


def random_folds(m: int, n_folds: int, generator: torch.Generator, device) -> list[Tensor]:
    """A random split of ``m`` rows into ``n_folds`` folds of (nearly) equal size."""
    order = torch.randperm(m, generator=generator, device=device)
    return list(order.chunk(n_folds))


def _soft_balanced(scores: Tensor, codes: Tensor, counts: Tensor, temperature: Tensor) -> Tensor:
    """Mean over classes of the mean softmax probability of the true class; ``scores`` (R, m,
    K) for R labelings ``codes`` (R, m) with the same class sizes ``counts`` (K,)."""
    scaled = scores / temperature
    # the true class's probability as exp(s_y − max s) / Σ exp(s − max s), the max without
    # gradient (it cancels): on CPU, softmax over the short last axis of a few classes took
    # three times as long, logsumexp a third longer
    shifted = (scaled - scaled.detach().amax(-1, keepdim=True)).exp()
    true = shifted.gather(-1, codes.unsqueeze(-1)).squeeze(-1) / shifted.sum(-1)
    per_class = torch.zeros(len(true), len(counts), dtype=true.dtype, device=true.device)
    return (per_class.scatter_add(1, codes, true) / counts).mean(-1)


def fold_layout(folds: Sequence[Tensor], m: int) -> tuple[Tensor, Tensor, Tensor]:
    """The folds as one (F, f) index of rows, padded with ``m`` (a zero row appended to the
    data), the number of real rows in each fold (F,), and where each row sits in that layout
    flattened (m,): every fold is then scored by batched products, not a loop, and one gather
    puts the scores back in the rows' order."""
    width = max(len(f) for f in folds)
    index = torch.full((len(folds), width), m, dtype=torch.long, device=folds[0].device)
    place = torch.empty(m, dtype=torch.long, device=folds[0].device)
    for i, fold in enumerate(folds):
        index[i, : len(fold)] = fold
        place[fold] = i * width + torch.arange(len(fold), device=fold.device)
    sizes = torch.tensor([len(f) for f in folds], device=folds[0].device)
    return index, sizes, place


def _padded(x: Tensor, index: Tensor, rows: Tensor | None = None) -> Tensor:
    """``x``'s rows (m, C) at ``index`` (F, f), a zero row where the index is the padding:
    (F, f, C); with ``rows`` (R, m), row shuffles (label permutations), the shuffled rows at
    ``index`` for each, side by side: (F, f, R·C), in one gather (no (R, m, C) copy first).
    The shuffles then act as R·C more columns: one batched product per fold scores them all
    (in an (R, F, f, C) layout, broadcasting the folds' rows over R copied them R times)."""
    padded = torch.cat([x, x.new_zeros(1, x.shape[-1])])
    if rows is None:
        return padded[index]
    tail = torch.full((len(rows), 1), len(x), dtype=rows.dtype, device=rows.device)
    gathered = padded[torch.cat([rows, tail], 1)[:, index].permute(1, 2, 0)]  # (F, f, R, C)
    return gathered.flatten(2)


def crossfit_statistics(
    x: Tensor,
    labelings: Sequence[tuple[Tensor, int]],
    folds: list[Tensor],
    permutations: Tensor,
    ridge: float,
    temperature: float,
    nulls: dict[int, Tensor] | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """For every labeling (codes (m,) in 0…K−1, K) of the same users: (s − mean of the null,
    sd of the null) of its cross-fitted soft balanced accuracy s.

    ``x`` (m, d) the users' features (differentiable), ``folds`` a partition of the rows,
    ``permutations`` (R, m) row shuffles of the labels for the null (no gradient). Each fold's
    ridge (relative to the mean feature variance) is fitted on the other rows, once for every
    labeling and permutation; its scores on the fold are divided by ``temperature`` × their
    spread before the softmax. The training rows' cross-products are the whole set's minus the
    fold's (computed once, not once per fold), and the folds are fitted together (batched
    Cholesky factors). Cost O(m·d² + F·d³), O(m·d·K) per labeling and permutation.

    ``nulls``: each labeling's null (by position) once a first pass of the same call filled it
    (it fills an empty one): a recomputation in the backward pass (``losses.recompute``) takes
    it from there instead of refitting every permutation."""
    m, d = x.shape
    widths = [k for _, k in labelings]
    true_y = torch.cat([_balanced_onehot(c, k, dtype=x.dtype) for c, k in labelings], 1)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    index, sizes, place = fold_layout(folds, m)
    xf, yf = _padded(x, index), _padded(true_y, index)  # (F, f, d), (F, f, C)
    n_train = (m - sizes).to(x.dtype)  # (F,)
    # Xᵀ[X Y] over all rows; a fold's training part is this minus the fold's own rows. The
    # targets need no centring: the training rows' features are centred.
    x_sum, y_sum = x.sum(0), true_y.sum(0)
    mean = (x_sum - xf.sum(1)) / n_train[:, None]  # (F, d)
    gram = (
        x.T @ x
        - xf.transpose(1, 2) @ xf
        - n_train[:, None, None] * mean[:, :, None] * mean[:, None]
    )
    scale = ridge * gram.diagonal(dim1=1, dim2=2).mean(1)
    chol = torch.linalg.cholesky(gram + scale[:, None, None] * eye)
    y_rest = y_sum - yf.sum(1)  # (F, C)
    xy = x.T @ true_y - xf.transpose(1, 2) @ yf - mean[:, :, None] * y_rest[:, None]
    test = xf - mean[:, None]  # (F, f, d)
    scores = (test @ torch.cholesky_solve(xy, chol)).flatten(0, 1)[place].split(widths, 1)
    soft = [
        _soft(codes, k, score, temperature)
        for (codes, k), score in zip(labelings, scores, strict=True)
    ]
    nulls = {} if nulls is None else nulls
    if not nulls:
        parts: list[list[Tensor]] = [[] for _ in labelings]
        with torch.no_grad():
            # a permutation keeps the class sizes (and the targets' column sums): its targets
            # are the true targets' rows, shuffled
            c = true_y.shape[1]
            for part in _groups_of(permutations, m * c):
                r = len(part)
                null_f = _padded(true_y, index, part)  # (F, f, r·C)
                own = xf.detach().transpose(1, 2) @ null_f  # each fold's X_fᵀY_f: (F, d, r·C)
                null_xy = own.sum(0, keepdim=True) - own  # the training rows': the other folds'
                null_rest = y_sum.repeat(r) - null_f.sum(1)  # (F, r·C)
                null_xy -= mean.detach()[:, :, None] * null_rest[:, None]
                weights = torch.cholesky_solve(null_xy, chol.detach())
                null_scores = (test.detach() @ weights).flatten(0, 1)[place].view(m, r, c)
                null_scores = null_scores.transpose(0, 1).split(widths, 2)
                for null, (codes, _), (_, counts, softmax), null_score in zip(
                    parts, labelings, soft, null_scores, strict=True
                ):
                    null.append(_soft_balanced(null_score, codes[part], counts, softmax))
        nulls.update((j, torch.cat(null)) for j, null in enumerate(parts))
    return [_excess(s, nulls[j]) for j, (s, _, _) in enumerate(soft)]


def _groups_of(permutations: Tensor, values_each: int) -> tuple[Tensor, ...]:
    """``permutations`` in groups of at most ``NULL_VALUES`` // ``values_each`` (at least one)."""
    return permutations.split(max(1, NULL_VALUES // max(values_each, 1)))


def _soft(codes: Tensor, k: int, score: Tensor, temperature: float) -> tuple[Tensor, ...]:
    """The soft balanced accuracy of the held-out ``score`` (m, K) of ``codes``, with the class
    counts and the softmax scale that its null shares."""
    counts = torch.bincount(codes, minlength=k).to(score.dtype).clamp_min(1.0)
    scale = temperature * score.detach().std().clamp_min(1e-12)
    return _soft_balanced(score[None], codes[None], counts, scale)[0], counts, scale


def _excess(soft: Tensor, null: Tensor) -> tuple[Tensor, Tensor]:
    """(s − mean of the null, sd of the null) of a soft balanced accuracy ``soft`` against the
    same statistic ``null`` (R,) of the permuted labels."""
    return soft - null.mean(), null.std().clamp_min(1e-12)


def diagonal_statistics(
    x: Tensor,
    labelings: Sequence[tuple[Tensor, int]],
    folds: list[Tensor],
    permutations: Tensor,
    threshold: float,
    temperature: float,
    nulls: dict[int, Tensor] | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """As ``crossfit_statistics`` (``nulls`` too), with a *diagonal* classifier in place of the
    ridge: per coordinate, each class's mean shift on the training rows over the coordinate's
    variance, kept softly where that shift's |z| (against the class's standard error) exceeds
    ``threshold`` (a sigmoid of width ½). What an attacker that picks coordinates one at a time
    reads (forests and boosted trees split on raw coordinates): a shift on a few coordinates
    that a ridge fitted on all of them, among shared factors, dilutes. A fold's training class
    sums (and moments) are all rows' minus the fold's; the folds are scored together. Cost
    O(R·m·K·d) per labeling."""
    m = len(x)
    index, sizes, place = fold_layout(folds, m)
    xf = _padded(x, index)  # (F, f, d)
    n_train = (m - sizes).to(x.dtype)[:, None]  # (F, 1)
    mean = (x.sum(0) - xf.sum(1)) / n_train  # (F, d)
    sq = x.square().sum(0) - xf.square().sum(1)
    var = ((sq - n_train * mean.square()) / (n_train - 1.0)).clamp_min(1e-12)
    centred = xf - mean[:, None]  # (F, f, d)
    nulls = {} if nulls is None else nulls
    out = []
    for j, (codes, k) in enumerate(labelings):
        onehot = torch.nn.functional.one_hot(codes, k).to(x.dtype)  # (m, K)
        score = _diagonal_scores(xf, centred, _padded(onehot, index), mean, var, threshold)
        soft, counts, softmax = _soft(codes, k, score.flatten(0, 1)[place], temperature)
        if j not in nulls:
            null = []
            with torch.no_grad():
                for part in _groups_of(permutations, m * k):
                    scores = _diagonal_scores(
                        xf.detach(),
                        centred.detach(),
                        _padded(onehot, index, part),  # (F, f, r·K)
                        mean.detach(),
                        var.detach(),
                        threshold,
                    )  # (F, f, r·K)
                    scores = scores.flatten(0, 1)[place].view(m, len(part), k).transpose(0, 1)
                    null.append(_soft_balanced(scores, codes[part], counts, softmax))
            nulls[j] = torch.cat(null)
        out.append(_excess(soft, nulls[j]))
    return out


def _diagonal_scores(
    xf: Tensor,
    centred: Tensor,
    fold_onehot: Tensor,
    mean: Tensor,
    var: Tensor,
    threshold: float,
) -> Tensor:
    """(F, f, C) scores of every fold's rows by the diagonal classifiers of the labelings
    ``fold_onehot`` (F, f, C: one-hot labels of the folds' rows, ``_padded``; C = R·K for R
    labelings of K classes side by side) fitted on the other rows: ``xf`` the folds' rows
    (F, f, d; zero padding), ``centred`` those minus each fold's training ``mean`` (F, d),
    ``var`` (F, d) the training variance. Training class sums are all folds' minus the fold's
    (one-hot products: on the CPU an index_add of the rows, with their copy per labeling, took
    twice as long)."""
    per_fold = xf.transpose(1, 2) @ fold_onehot  # (F, d, C)
    sums = per_fold.sum(0, keepdim=True) - per_fold
    counts = fold_onehot.sum(1)  # (F, C)
    n_train = (counts.sum(0, keepdim=True) - counts)[:, None]  # (F, 1, C)
    size = n_train.clamp_min(1.0)
    shift = (sums - n_train * mean[:, :, None]) / size  # class mean − mean (0 if empty)
    z = shift / (var[:, :, None] / size).sqrt()
    weights = shift / var[:, :, None] * torch.sigmoid(2.0 * (z.abs() - threshold))
    return centred @ weights


def _groups(attributes: Sequence[_Attribute], n_rows: int) -> dict[str, list[_Attribute]]:
    """The attributes by their users: those of all ``n_rows`` rows share folds and fits ("")."""
    groups: dict[str, list[_Attribute]] = {}
    for attr in attributes:
        groups.setdefault("" if len(attr.users) == n_rows else attr.name, []).append(attr)
    return groups


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

    def splits(
        self,
        attributes: Sequence[_Attribute],
        n_rows: int,
        generator: torch.Generator,
        check: int | None,
    ) -> dict[str, tuple[list[Tensor], Tensor]]:
        """The folds and label permutations of every group of attributes (``_groups``): fresh
        from ``generator`` (``check`` None; a scoring that reads only the check draws draws them
        too, unused, so that the steps' draws stay where they were), else the fixed ones of the
        check draw of index ``check``."""
        out = {}
        for key, attrs in _groups(attributes, n_rows).items():
            m, device = len(attrs[0].users), attrs[0].users.device
            if check is None:
                out[key] = self._splits(m, generator, device)
                continue
            if (key, check) not in self._fixed:
                fixed = torch.Generator(device=device).manual_seed(self.seed + 2 + check)
                self._fixed[key, check] = self._splits(m, fixed, device, CHECK_PERMUTATIONS)
            out[key] = self._fixed[key, check]
        return out

    def statistics(
        self,
        z: Tensor,
        attributes: Sequence[_Attribute],
        splits: dict[str, tuple[list[Tensor], Tensor]],
        nulls: dict[tuple[str, str], dict[int, Tensor]] | None = None,
    ) -> dict[tuple[str, str], tuple[Tensor, Tensor]]:
        """(attribute, ``crossfit/ridge=r`` or ``crossfit/diagonal=t``) → (excess, spread) on
        the standardised representations ``z`` with the folds and permutations ``splits``
        (drawn apart, so that a recomputation scores the same ones); ``nulls``: one dict per
        call, shared with its recomputation, which then reuses the first pass's nulls."""
        nulls = {} if nulls is None else nulls
        out = {}
        for key, attrs in _groups(attributes, len(z)).items():
            folds, perms = splits[key]
            rows = z if not key else z[attrs[0].users]
            labelings = [(a.codes, a.labels.shape[1]) for a in attrs]
            for ridge in self.ridges:
                critic = f"crossfit/ridge={ridge:g}"
                memo = nulls.setdefault((key, critic), {})
                scored = crossfit_statistics(
                    rows, labelings, folds, perms, ridge, TEMPERATURE, memo
                )
                for attr, stat in zip(attrs, scored, strict=True):
                    out[attr.name, critic] = stat
            for threshold in self.diagonal:
                critic = f"crossfit/diagonal={threshold:g}"
                memo = nulls.setdefault((key, critic), {})
                scored = diagonal_statistics(
                    rows, labelings, folds, perms, threshold, TEMPERATURE, memo
                )
                for attr, stat in zip(attrs, scored, strict=True):
                    out[attr.name, critic] = stat
        return out
