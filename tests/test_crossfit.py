"""Cross-fitted classifier critics (``au_crossfit``, losses/crossfit.py): an attacker's decisions on
held-out users against label permutations, in both directions."""

from __future__ import annotations

import torch

from recbole_attrcloak.losses import RelabelingNull
from recbole_attrcloak.losses.crossfit import crossfit_statistics, diagonal_statistics, random_folds
from tests.test_relabel import _unlearn


def _noise_and_labels(n: int = 600, d: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=g)


def _z(x: torch.Tensor, y: torch.Tensor, seed: int, permutations: int = 64) -> float:
    g = torch.Generator().manual_seed(seed)
    folds = random_folds(len(y), 5, g, "cpu")
    perms = torch.stack([torch.randperm(len(y), generator=g) for _ in range(permutations)])
    [(excess, spread)] = crossfit_statistics(x, [(y, int(y.max()) + 1)], folds, perms, 1.0, 0.25)
    return float(excess / spread)


def _equalised(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Every class mean set to the population mean: the over-correction of exact moment
    matching (an attacker trained on some users then reads the others below chance)."""
    out = x.clone()
    for k in y.unique():
        out[y == k] -= out[y == k].mean(0) - x.mean(0)
    return out


def test_z_scores_on_noise_follow_the_permutation_null():
    zs = []
    for seed in range(8):
        x, y = _noise_and_labels(seed=seed)
        zs.append(_z(x, y, seed))
    zs = torch.tensor(zs)
    assert abs(float(zs.mean())) < 0.6 and float(zs.abs().max()) < 3


def test_leakage_is_seen_above_chance_and_over_correction_below_it():
    x, y = _noise_and_labels()
    shifted = x.clone()
    shifted[y == 1, 0] += 1.0
    assert min(_z(shifted, y, s) for s in range(3)) > 4
    assert max(_z(_equalised(x, y), y, s) for s in range(3)) < -3


def test_the_statistic_is_differentiable_in_the_features():
    x, y = _noise_and_labels(n=200, d=6)
    x = x.clone().requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    folds = random_folds(len(y), 5, g, "cpu")
    perms = torch.stack([torch.randperm(len(y), generator=g) for _ in range(8)])
    [(excess, _)] = crossfit_statistics(x, [(y, 3)], folds, perms, 1.0, 0.25)
    (grad,) = torch.autograd.grad(excess, x)
    assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0


def test_the_objective_names_its_crossfit_terms():
    x, y = _noise_and_labels(n=300)
    objective = RelabelingNull({"a": y}, crossfit=[1.0, 0.1], seed=0)
    objective(x.float())
    names = {t.name for t in objective.terms()}
    assert {"a/crossfit/ridge=1/z", "a/crossfit/ridge=0.1/z"} <= names


def test_unlearning_with_crossfit_critics_undoes_an_over_correction():
    x, y = _noise_and_labels(n=600, d=24)
    over = _equalised(x, y).float()
    assert _z(over.double(), y, 11) < -3  # an attacker reads the classes inverted
    repaired, outcome = _unlearn(over, {"a": y}, au_max_steps=200, au_crossfit=[1.0])
    assert outcome.stop_reason == "target_reached"
    assert abs(_z(repaired.double(), y, 11)) < 2.5
    assert float((repaired - over).norm() / over.norm()) < 0.1


def _refitted(x, y, k, folds, perm, ridge=1.0, temperature=0.25):
    """Soft balanced accuracy of a ridge fitted on each fold's complement, by hand."""
    from recbole_attrcloak.losses.attribute_labels import _balanced_onehot

    codes = y[perm]
    targets = _balanced_onehot(codes, k, dtype=x.dtype)
    scores = torch.zeros(len(y), k, dtype=x.dtype)
    for fold in folds:
        train = torch.ones(len(y), dtype=torch.bool)
        train[fold] = False
        mean = x[train].mean(0)
        xc, t = x[train] - mean, targets[train]
        gram = xc.T @ xc
        lam = ridge * gram.diagonal().mean()
        w = torch.linalg.solve(
            gram + lam * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ (t - t.mean(0))
        )
        scores[fold] = (x[fold] - mean) @ w
    return scores, codes


def test_each_fold_is_a_ridge_refitted_on_the_other_users_for_every_permutation():
    x, y = _noise_and_labels(n=153, d=5)  # folds of 31 and 30 rows: the batched fit pads
    x[y == 2, 1] += 0.7
    g = torch.Generator().manual_seed(1)
    folds = random_folds(len(y), 5, g, "cpu")
    perms = torch.stack([torch.randperm(len(y), generator=g) for _ in range(6)])
    [(excess, spread)] = crossfit_statistics(x, [(y, 3)], folds, perms, 1.0, 0.25)
    true_scores, _ = _refitted(x, y, 3, folds, torch.arange(len(y)))
    scale = 0.25 * true_scores.std()

    def soft(scores, codes):
        prob = torch.softmax(scores / scale, -1)[torch.arange(len(codes)), codes]
        return torch.stack([prob[codes == c].mean() for c in range(3)]).mean()

    null = torch.stack([soft(*_refitted(x, y, 3, folds, p)) for p in perms])
    expected = soft(true_scores, y)
    torch.testing.assert_close(excess, expected - null.mean())
    torch.testing.assert_close(spread, null.std())


def _diagonal_z(x: torch.Tensor, y: torch.Tensor, seed: int, threshold: float = 2.0) -> float:
    g = torch.Generator().manual_seed(seed)
    folds = random_folds(len(y), 5, g, "cpu")
    perms = torch.stack([torch.randperm(len(y), generator=g) for _ in range(48)])
    k = int(y.max()) + 1
    [(excess, spread)] = diagonal_statistics(x, [(y, k)], folds, perms, threshold, 0.25)
    return float(excess / spread)


def test_the_diagonal_critic_follows_the_null_on_noise_and_reads_a_few_shifted_coordinates():
    zs = torch.tensor([_diagonal_z(*_noise_and_labels(seed=s), seed=s) for s in range(8)])
    assert abs(float(zs.mean())) < 0.8 and float(zs.abs().max()) < 3
    x, y = _noise_and_labels(n=900, d=64)
    sparse = x.clone()
    sparse[:, :3] += 0.45 * (y == 1)[:, None]  # one class apart on three raw coordinates
    assert min(_diagonal_z(sparse, y, s) for s in range(3)) > 4
    # spread over every coordinate instead (the same total shift), no coordinate stands out
    dense = x.clone()
    dense += 0.45 * (3 / 64) ** 0.5 * (y == 1)[:, None]
    assert max(_diagonal_z(dense, y, s) for s in range(3)) < _diagonal_z(sparse, y, 0) / 2


def test_the_diagonal_critic_is_per_coordinate_class_means_refitted_on_the_other_users():
    from recbole_attrcloak.losses.crossfit import _diagonal_scores, _padded, fold_layout

    x, y = _noise_and_labels(n=123, d=4)  # folds of 25 and 24 rows: one padded
    x[y == 2, 1] += 0.8
    onehot = torch.nn.functional.one_hot(y, 3).to(x.dtype)
    folds = random_folds(len(y), 5, torch.Generator().manual_seed(3), "cpu")
    index, _, _ = fold_layout(folds, len(y))
    xf = _padded(x, index)
    moments = []
    for fold in folds:
        train = torch.ones(len(y), dtype=torch.bool)
        train[fold] = False
        moments.append((x[train].mean(0), x[train].var(0)))
    mean, var = (torch.stack(m) for m in zip(*moments, strict=True))
    got = _diagonal_scores(xf, xf - mean[:, None], _padded(onehot, index), mean, var, 2.0)
    for i, fold in enumerate(folds):
        train = torch.ones(len(y), dtype=torch.bool)
        train[fold] = False
        xt, yt = x[train], y[train]
        expected = torch.zeros(len(fold), 3, dtype=x.dtype)
        for k in range(3):  # by hand: class k's shift over the variance, kept where |z| > 2
            n = (yt == k).sum()
            shift = xt[yt == k].mean(0) - mean[i]
            keep = torch.sigmoid(2.0 * ((shift / (var[i] / n).sqrt()).abs() - 2.0))
            expected[:, k] = (x[fold] - mean[i]) @ (shift / var[i] * keep)
        torch.testing.assert_close(got[i, : len(fold)], expected)
    # the identity as the only "permutation": the true labeling is its own null
    folds = random_folds(len(y), 5, torch.Generator().manual_seed(3), "cpu")
    identity = torch.arange(len(y))[None]
    [(excess, _)] = diagonal_statistics(x, [(y, 3)], folds, identity, 2.0, 0.25)
    assert float(excess) == 0.0


def test_the_objective_reports_a_diagonal_critic_per_threshold():
    x, y = _noise_and_labels(n=300, d=8)
    objective = RelabelingNull({"a": y}, crossfit=[1.0], crossfit_diagonal=[2.0, 3.0], seed=0)
    objective(x)
    names = {t.name for t in objective.terms() if "crossfit" in t.name}
    assert names == {
        "a/crossfit/ridge=1/z",
        "a/crossfit/diagonal=2/z",
        "a/crossfit/diagonal=3/z",
    }


def test_the_null_scored_in_groups_of_permutations_is_the_null_scored_at_once(monkeypatch):
    """Large user sets score the permutations a few at a time (``NULL_VALUES``): the same
    statistics, the same gradient."""
    import recbole_attrcloak.losses.crossfit as crossfit

    x, y = _noise_and_labels(n=200, d=6)
    x[y == 2, 1] += 1.5  # a planted leak: the statistics are not at their null
    labelings = [(y, 3), ((y == 0).long(), 2)]
    g = torch.Generator().manual_seed(1)
    folds = random_folds(len(y), 5, g, "cpu")
    perms = torch.stack([torch.randperm(len(y), generator=g) for _ in range(8)])

    def scored() -> tuple[list, list]:
        z = x.clone().requires_grad_(True)
        ridge = crossfit_statistics(z, labelings, folds, perms, 1.0, 0.25)
        diagonal = diagonal_statistics(z, labelings, folds, perms, 2.0, 0.25)
        stats = [t for pair in ridge + diagonal for t in pair]
        (grad,) = torch.autograd.grad(sum(e for e, _ in ridge + diagonal), z)
        return stats, grad

    whole, whole_grad = scored()
    monkeypatch.setattr(crossfit, "NULL_VALUES", 3 * len(y) * 5)  # three permutations a group
    grouped, grouped_grad = scored()
    assert len(crossfit._groups_of(perms, len(y) * 5)) == 3
    for a, b in zip(whole, grouped, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grouped_grad, whole_grad, rtol=1e-10, atol=1e-12)
    assert float(whole[0] / whole[1]) > 2  # the planted class is read
