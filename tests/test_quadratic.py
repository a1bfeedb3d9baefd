"""The second-moment critics against the permutation null: the quadratic one (``au_quadratic``,
losses/quadratic.py; no (m, m) matrix carries a gradient) and the squared coordinates
(``au_squares``)."""

from __future__ import annotations

import torch

from recbole_attrcloak.losses import RelabelingNull
from recbole_attrcloak.losses.attribute_labels import _attribute, label_blocks
from recbole_attrcloak.losses.kernel_critics import default_critics
from recbole_attrcloak.losses.quadratic import pair_square_sum, quadratic_statistics
from tests.attacks import kfold_balanced_accuracy
from tests.test_relabel import _noise, _unlearn


def _covariance_leak(n: int = 600, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes with the same mean and the same variance on every coordinate: their first two
    coordinates are correlated +0.8 in one class and −0.8 in the other (a difference in the
    covariance alone, which no linear critic and no per-coordinate statistic sees)."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.4).long()
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    sign = torch.where(y == 1, 1.0, -1.0).double()
    x[:, 1] = 0.8 * sign * x[:, 0] + 0.6 * x[:, 1]
    return x, y


def _spread_covariance_leak(n: int = 800, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes with the same mean whose covariances differ a little in every pair of
    coordinates (one class mapped by I + R, R a random symmetric matrix of Frobenius norm 1): the
    kind of leak the ml-1m runs left, spread over many products."""
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(n, generator=g) < 0.4).long()
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    r = torch.randn(d, d, generator=g, dtype=torch.float64)
    r = r + r.T
    x[y == 1] = x[y == 1] @ (torch.eye(d, dtype=torch.float64) + r / r.norm())
    return x, y


def _brute_force(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """U = Σ_{u≠v} ⟨f_u − f̄, f_v − f̄⟩⟨ỹ_u, ỹ_v⟩ with the outer products f_u written out."""
    zc = z - z.mean(0)
    feats = torch.stack([torch.outer(r, r).flatten() / z.shape[1] for r in zc])
    feats = feats - feats.mean(0)
    kernel = feats @ feats.T
    kernel.fill_diagonal_(0.0)
    return ((labels @ labels.T) * kernel).sum()


def test_every_labeling_matches_the_written_out_features_and_the_null_moments():
    z = _noise(120, 4)
    g = torch.Generator().manual_seed(2)
    attributes = [
        _attribute("g", torch.randint(0, 2, (120,), generator=g), 2),
        _attribute("o", torch.randint(0, 4, (120,), generator=g), 2),
    ]
    blocks, _ = label_blocks(attributes, class_critics=True)
    stats = quadratic_statistics(z, blocks)
    block = blocks[0]
    assert block.names == ("g", "o", "o=0", "o=1", "o=2", "o=3")
    for j, name in enumerate(block.names):
        labels = block.labels[:, block.segments[:, j] > 0]
        excess, spread = stats[name, "quadratic"]
        null = torch.stack(
            [_brute_force(z, labels[torch.randperm(120, generator=g)]) for _ in range(300)]
        )
        u = _brute_force(z, labels)
        assert torch.isclose(excess, u - null.mean(), atol=4 * float(null.std()) / 300**0.5)
        assert 0.8 < float(spread / null.std()) < 1.25


def test_the_spread_sum_is_exact_and_its_sample_close():
    zc = _noise(300, 5)
    zc = zc - zc.mean(0)
    second = zc.T @ zc / len(zc)
    feats = torch.stack([torch.outer(r, r).flatten() / 5 for r in zc])
    feats = feats - feats.mean(0)
    kernel = feats @ feats.T
    kernel.fill_diagonal_(0.0)
    assert torch.isclose(pair_square_sum(zc, second), kernel.square().sum())
    sample = torch.randperm(300, generator=torch.Generator().manual_seed(0))[:200]
    assert abs(float(pair_square_sum(zc, second, sample) / kernel.square().sum()) - 1) < 0.1


def test_z_follows_the_null_on_noise_and_sees_a_covariance_difference():
    g = torch.Generator().manual_seed(1)
    zs = []
    for r in range(60):
        x = _noise(300, 6, seed=r)
        blocks, _ = label_blocks(
            [_attribute("a", torch.randint(0, 3, (300,), generator=g), 2)], False
        )
        (excess, spread) = quadratic_statistics(x, blocks)["a", "quadratic"]
        zs.append(float(excess / spread))
    zs = torch.tensor(zs)
    assert abs(float(zs.mean())) < 0.35 and 0.7 < float(zs.std()) < 1.3
    x, y = _covariance_leak()
    objective = RelabelingNull({"a": y}, critics=default_critics(), quadratic=True, seed=0)
    z = {critic: float(v) for (_, critic), v in objective.zscores(x).items()}
    assert z["quadratic"] > 8  # planted ...
    assert max(abs(v) for c, v in z.items() if c.startswith("linear")) < 3  # ... beyond the means


def _logreg_attack(feats: torch.Tensor, y: torch.Tensor, c: float) -> float:
    """5-fold balanced accuracy of a class-balanced logistic regression on ``feats``."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    return kfold_balanced_accuracy(feats.double(), y, model)


def _products_attack(x: torch.Tensor, y: torch.Tensor) -> float:
    """The attack on every pair product of coordinates."""
    rows, cols = torch.triu_indices(x.shape[1], x.shape[1])
    return _logreg_attack(x[:, rows] * x[:, cols], y, 0.05)


def test_unlearning_with_the_quadratic_critic_removes_a_covariance_leak():
    x, y = _spread_covariance_leak()
    assert _products_attack(x, y) > 0.64  # planted
    settings = {"au_kernel_gammas": [1.0], "au_features": 64, "au_max_steps": 300}
    left, _ = _unlearn(x.float(), {"a": y}, au_quadratic=False, **settings)
    assert _products_attack(left, y) > 0.58  # the linear and Gaussian critics leave it
    after, outcome = _unlearn(x.float(), {"a": y}, au_quadratic=True, **settings)
    assert outcome.stop_reason == "target_reached"
    terms = {t.name: t.value for t in outcome.terms}
    assert abs(terms["a/quadratic/z"]) <= 2.0
    assert abs(_products_attack(after, y) - 0.5) < 0.04  # neither above chance nor below it


def _variance_leak(n: int = 800, d: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes with the same means, one with its first 12 coordinates 1.25 times as spread:
    a difference in the coordinates' variances (their squares' means)."""
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(n, generator=g) < 0.4).long()
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[y == 1, :12] *= 1.25
    return x, y


def _squares_attack(x: torch.Tensor, y: torch.Tensor) -> float:
    """The attack on the squared standardised coordinates."""
    return _logreg_attack(((x - x.mean(0)) / x.std(0)).square(), y, 0.1)


def test_the_squares_critic_removes_a_variance_leak_the_quadratic_one_dilutes():
    x, y = _variance_leak()
    assert _squares_attack(x, y) > 0.65  # planted
    settings = {"au_kernel_gammas": [1.0], "au_features": 64, "au_max_steps": 300}
    diluted, outcome = _unlearn(x.float(), {"a": y}, au_squares=False, **settings)
    assert outcome.stop_reason == "target_reached"  # every statistic within its tolerance ...
    assert _squares_attack(diluted, y) > 0.6  # ... and the variances still read
    after, outcome = _unlearn(x.float(), {"a": y}, au_squares=True, **settings)
    assert outcome.stop_reason == "target_reached"
    terms = {t.name: t.value for t in outcome.terms}
    assert max(abs(terms[f"a/squares/ridge={r}/z"]) for r in ("inf", "1", "0.1")) <= 2.0
    assert abs(_squares_attack(after, y) - 0.5) < 0.05
