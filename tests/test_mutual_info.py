"""Tests of the Gaussian KL and the MI upper bound L_AU (recbole_attrcloak.losses.mutual_info)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbole_attrcloak.losses import GaussianMIBound, class_moments, gaussian_kl, gaussian_kl_terms


@pytest.fixture(autouse=True)
def _single_thread():
    """Small problems: one thread is as fast and does not stall when the CPUs are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_spd(rng: np.random.Generator, *shape: int) -> np.ndarray:
    d = shape[-1]
    a = rng.standard_normal((*shape[:-1], d, d))
    return a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(d)


def _dense_kl(mu_p, cov_p, mu_q, cov_q) -> float:
    """Reference KL with an explicit inverse and slogdet."""
    d = mu_p.shape[0]
    inv_q = np.linalg.inv(cov_q)
    diff = mu_p - mu_q
    _, logdet_p = np.linalg.slogdet(cov_p)
    _, logdet_q = np.linalg.slogdet(cov_q)
    return 0.5 * (np.trace(inv_q @ cov_p) + diff @ inv_q @ diff - d + logdet_q - logdet_p)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


def test_kl_matches_dense_reference_unbatched():
    rng = np.random.default_rng(0)
    d = 6
    mu_p, mu_q = rng.standard_normal(d), rng.standard_normal(d)
    cov_p, cov_q = _random_spd(rng, d), _random_spd(rng, d)
    got = gaussian_kl(_t(mu_p), _t(cov_p), _t(mu_q), _t(cov_q))
    assert got.shape == ()
    assert float(got) == pytest.approx(_dense_kl(mu_p, cov_p, mu_q, cov_q), rel=1e-10)


def test_kl_matches_dense_reference_batched_and_broadcast():
    rng = np.random.default_rng(1)
    d = 5
    mu_p, cov_p = rng.standard_normal((3, 4, d)), _random_spd(rng, 3, 4, d)
    mu_q, cov_q = rng.standard_normal((3, 4, d)), _random_spd(rng, 3, 4, d)
    got = gaussian_kl(_t(mu_p), _t(cov_p), _t(mu_q), _t(cov_q)).numpy()
    assert got.shape == (3, 4)
    want = np.array(
        [
            [_dense_kl(mu_p[i, j], cov_p[i, j], mu_q[i, j], cov_q[i, j]) for j in range(4)]
            for i in range(3)
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # One q broadcast against a batch of p (the way GaussianMIBound uses it).
    got = gaussian_kl(_t(mu_p[0]), _t(cov_p[0]), _t(mu_q[0, 0]), _t(cov_q[0, 0])).numpy()
    want = [_dense_kl(mu_p[0, j], cov_p[0, j], mu_q[0, 0], cov_q[0, 0]) for j in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_kl_terms_sum_to_kl_and_match_their_definitions():
    rng = np.random.default_rng(2)
    d = 4
    mu_p, cov_p = rng.standard_normal((5, d)), _random_spd(rng, 5, d)
    mu_q, cov_q = rng.standard_normal(d), _random_spd(rng, d)
    mean_t, cov_t = gaussian_kl_terms(_t(mu_p), _t(cov_p), _t(mu_q), _t(cov_q))
    kl = gaussian_kl(_t(mu_p), _t(cov_p), _t(mu_q), _t(cov_q))
    torch.testing.assert_close(mean_t + cov_t, kl)
    inv_q = np.linalg.inv(cov_q)
    diff = mu_p - mu_q
    want_mean = 0.5 * np.einsum("ki,ij,kj->k", diff, inv_q, diff)
    np.testing.assert_allclose(mean_t.numpy(), want_mean, rtol=1e-10)
    assert (cov_t >= 0).all()


def test_kl_of_a_gaussian_with_itself_is_zero():
    rng = np.random.default_rng(3)
    mu, cov = _t(rng.standard_normal(7)), _t(_random_spd(rng, 7))
    assert abs(float(gaussian_kl(mu, cov, mu, cov))) < 1e-10


def test_kl_terms_by_hand():
    # Δμ = (1, 2), Σq = diag(2, 8): mean term ½ (1²/2 + 2²/8) = 1/2, whatever Σp.
    # Σp = diag(1, 4) = Σq / 2: covariance term ½ (d/2 − d·log(1/2) − d) = log 2 − 1/2.
    mu_p, mu_q = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    cov_q = torch.diag(torch.tensor([2.0, 8.0], dtype=torch.float64))
    mean_t, cov_t = gaussian_kl_terms(mu_p, cov_q / 2, mu_q, cov_q)
    assert float(mean_t) == pytest.approx(0.5, rel=1e-12)
    assert float(cov_t) == pytest.approx(np.log(2) - 0.5, rel=1e-12)
    mean_t, cov_t = gaussian_kl_terms(2 * mu_p, cov_q, mu_q, cov_q)  # twice the shift: 4×
    assert (float(mean_t), float(cov_t)) == pytest.approx((2.0, 0.0), abs=1e-12)


def test_bound_terms_of_a_pure_mean_shift_by_hand():
    # Two classes of the same four points, shifted by ∓1 along x: class means ∓(1, 0),
    # class scatters I, global mean 0, global scatter diag(2, 1). With covariance="paper"
    # (Σ = S + rI) and weights 1/2: M = ½ · 1/(2 + r); C = ½ [tr − log det − 2] with
    # Σg⁻¹Σk = diag((1 + r)/(2 + r), 1).
    square = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    shift = torch.tensor([1.0, 0.0], dtype=torch.float64)
    emb = torch.cat([square - shift, square + shift])
    r = 1e-6
    bound = GaussianMIBound({"g": torch.arange(8) // 4}, covariance="paper", ridge=r, target="zero")
    loss = float(bound(emb))
    mean_term, cov_term = (t.value for t in bound.terms())
    ratio = (1 + r) / (2 + r)
    assert mean_term == pytest.approx(0.5 / (2 + r), rel=1e-9)
    assert cov_term == pytest.approx(0.5 * (ratio + 1 - np.log(ratio) - 2), rel=1e-9)
    assert loss == pytest.approx(mean_term + cov_term, rel=1e-12)


def _two_class_data(n: int = 30, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = {
        "gender": torch.arange(n) % 2,
        "age": torch.tensor([i % 3 if i % 7 else -1 for i in range(n)]),
    }
    emb[labels["gender"] == 1] += 0.5
    return emb, labels


@pytest.mark.parametrize("covariance", ["paper", "shrinkage"])
def test_gradcheck(covariance):
    emb, labels = _two_class_data()
    bound = GaussianMIBound(labels, covariance=covariance, target="zero")
    emb.requires_grad_(True)
    assert torch.autograd.gradcheck(bound, (emb,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_loss_dtype_and_per_attribute_match_forward():
    emb, labels = _two_class_data()
    bound = GaussianMIBound(labels, target="zero")
    loss32 = bound(emb.float())
    assert loss32.dtype == torch.float32
    values = bound.per_attribute(emb)
    assert list(values) == ["gender", "age"] == list(bound.attributes)
    assert float(bound(emb)) == pytest.approx(np.mean(list(values.values())), rel=1e-12)


def _dense_terms(
    emb: np.ndarray,
    labels: np.ndarray,
    covariance: str,
    shrinkage: float | str = 0.1,
    ridge: float = 1e-6,
) -> tuple[float, float]:
    """(M_j, C_j) of Eq. 13-18 written out with loops, explicit inverses and slogdet."""
    x = emb[labels >= 0]
    lab = labels[labels >= 0]
    n, d = x.shape
    mu_g = x.mean(0)
    s_g = (x - mu_g).T @ (x - mu_g) / n
    eps = ridge * np.trace(s_g) / d if covariance == "shrinkage" else ridge
    cov_g = s_g + eps * np.eye(d)
    inv_g = np.linalg.inv(cov_g)
    mean_term = kl = 0.0
    for c in np.unique(lab):
        xc = x[lab == c]
        mu = xc.mean(0)
        s_k = (xc - mu).T @ (xc - mu) / len(xc)
        if covariance == "shrinkage":
            lam = d / (len(xc) + d) if shrinkage == "auto" else shrinkage
            s_k = (1 - lam) * s_k + lam * s_g
        w = len(xc) / n
        kl += w * _dense_kl(mu, s_k + eps * np.eye(d), mu_g, cov_g)
        mean_term += w * 0.5 * (mu - mu_g) @ inv_g @ (mu - mu_g)
    return mean_term, kl - mean_term


@pytest.mark.parametrize("covariance", ["paper", "shrinkage"])
def test_zero_target_matches_dense_reference(covariance):
    rng = np.random.default_rng(8)
    n, d = 90, 5
    labels = rng.choice([-1, 0, 1, 2], size=n, p=[0.1, 0.5, 0.3, 0.1])
    emb = rng.standard_normal((n, d)) + 0.3 * labels[:, None] + 4.0
    emb[labels == 2] *= 1.7
    bound = GaussianMIBound({"a": torch.from_numpy(labels)}, covariance=covariance, target="zero")
    got = bound.per_attribute(torch.from_numpy(emb))["a"]
    assert got == pytest.approx(sum(_dense_terms(emb, labels, covariance)), rel=1e-9)


@pytest.mark.parametrize(
    "covariance, shrinkage, ridge, dtype",
    [
        ("shrinkage", "auto", 0.1, torch.float32),  # the defaults: float32 statistics
        ("shrinkage", 0.0, 1e-3, torch.float32),  # classes smaller than d, no shrinkage
        ("shrinkage", "auto", 1e-4, torch.float64),  # small ridge: float64
        ("paper", 0.1, 1e-4, torch.float64),
    ],
)
def test_whitened_terms_match_dense_reference(covariance, shrinkage, ridge, dtype):
    rng = np.random.default_rng(12)
    n, d = 120, 16
    labels = np.arange(n) % 9  # classes of 13-14 users, fewer than d
    scales = np.logspace(0, -2, d)  # an anisotropic spectrum, as trained embeddings have
    emb = rng.standard_normal((n, d)) * scales + 0.2 * scales * (labels[:, None] % 3)
    bound = GaussianMIBound(
        {"a": torch.from_numpy(labels)},
        covariance=covariance,
        shrinkage=shrinkage,
        ridge=ridge,
        target="zero",
    )
    assert bound.dtype == dtype
    (got,) = bound._attribute_terms(torch.from_numpy(emb))
    want = _dense_terms(emb, labels, covariance, shrinkage, ridge)
    rel = 1e-4 if dtype == torch.float32 else 1e-9
    assert [float(t) for t in got] == pytest.approx(want, rel=rel)


def test_unknown_users_are_left_out_entirely():
    emb, labels = _two_class_data(n=40)
    bound = GaussianMIBound(labels, target="zero")
    known = labels["age"] >= 0
    sub = GaussianMIBound({"age": labels["age"][known]}, target="zero")
    full = bound.per_attribute(emb)["age"]
    # Moving the unknown users far away must not change the term.
    moved = emb.clone()
    moved[~known] += 100.0
    assert bound.per_attribute(moved)["age"] == pytest.approx(full, rel=1e-12)
    assert sub.per_attribute(emb[known])["age"] == pytest.approx(full, rel=1e-12)


def test_shrinkage_is_affine_invariant_and_paper_collapses():
    g = torch.Generator().manual_seed(4)
    n, d = 300, 8
    labels = {"a": torch.arange(n) % 3, "b": (torch.arange(n) // 7) % 2}
    emb = torch.randn(n, d, generator=g, dtype=torch.float64)
    emb[labels["a"] == 0, :2] += 0.7
    emb[labels["b"] == 1] *= 1.5
    # A well-conditioned invertible map (condition number 4): the εI floor of the shrinkage
    # covariance is the only non-invariant part, and it matters only for directions whose variance
    # falls near ridge × the mean variance.
    q1 = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
    q2 = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
    a = q1 @ torch.diag(torch.linspace(0.5, 2.0, d, dtype=torch.float64)) @ q2
    b = torch.randn(d, generator=g, dtype=torch.float64)
    transformed = 3.0 * emb @ a + b
    for target in ("zero", "random_labels"):
        first = GaussianMIBound(labels, target=target, seed=1)
        second = GaussianMIBound(labels, target=target, seed=1)
        assert float(first(emb)) > 0.01
        assert float(first(emb)) == pytest.approx(float(second(transformed)), rel=1e-5)
    shrink = GaussianMIBound(labels, target="zero")
    assert float(shrink(1e-3 * emb)) == pytest.approx(float(shrink(emb)), rel=1e-9)
    # The paper's constant ridge: shrinking every embedding lowers the loss (collapse).
    paper = GaussianMIBound(labels, covariance="paper", target="zero")
    assert float(paper(1e-3 * emb)) < 0.5 * float(paper(emb))


@pytest.mark.parametrize("covariance", ["paper", "shrinkage"])
def test_classes_smaller_than_d_are_finite(covariance):
    d = 16
    labels = {"occ": torch.arange(40) // 5}  # 8 classes of 5 users
    emb = torch.randn(40, d, generator=torch.Generator().manual_seed(5), requires_grad=True)
    loss = GaussianMIBound(labels, covariance=covariance, target="zero")(emb)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(emb.grad).all()
    assert emb.grad.abs().sum() > 0


def _planted(n: int = 600, d: int = 16, seed: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes with a planted mean shift and a planted covariance difference."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    emb = torch.randn(n, d, generator=g)
    ones = labels == 1
    emb[ones, :3] *= 2.5
    emb[ones] += torch.linspace(2.0, 0.5, d)
    return emb, labels


def _balanced_accuracy_nearest_centroid(emb: np.ndarray, labels: np.ndarray) -> float:
    """LDA-style attacker: pooled-covariance whitening + nearest centroid, train/test halves."""
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    classes = np.unique(labels)
    means = np.stack([emb[train][labels[train] == c].mean(0) for c in classes])
    resid = emb[train] - means[np.searchsorted(classes, labels[train])]
    cov = resid.T @ resid / len(train) + 1e-6 * np.eye(emb.shape[1])
    prec = np.linalg.inv(cov)
    diff = emb[test][:, None, :] - means[None]
    pred = classes[np.einsum("nki,ij,nkj->nk", diff, prec, diff).argmin(1)]
    truth = labels[test]
    return float(np.mean([(pred[truth == c] == c).mean() for c in classes]))


def test_minimising_removes_a_planted_signal():
    emb, labels = _planted()
    bound = GaussianMIBound({"gender": labels}, target="zero")
    before_acc = _balanced_accuracy_nearest_centroid(emb.numpy(), labels.numpy())
    param = emb.clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=0.03)
    start = float(bound(emb))
    for _ in range(150):
        opt.zero_grad()
        bound(param).backward()
        opt.step()
    end = float(bound(param.detach()))
    after = param.detach()
    after_acc = _balanced_accuracy_nearest_centroid(after.numpy(), labels.numpy())
    assert before_acc > 0.9
    assert end < 0.1 * start
    assert after_acc < 0.6
    # Both planted differences are gone: class covariances now match as well.
    cov = [torch.cov(after[labels == c].T) for c in (0, 1)]
    ratio = torch.linalg.eigvals(torch.linalg.solve(cov[0], cov[1])).real
    assert ratio.max() < 1.5 and ratio.min() > 1 / 1.5


def test_random_labels_target_is_zero_without_signal_and_positive_with_it():
    g = torch.Generator().manual_seed(7)
    n, d = 600, 16
    labels = {"gender": torch.randint(0, 2, (n,), generator=g), "age": torch.arange(n) % 5}
    noise = torch.randn(n, d, generator=g)
    bound = GaussianMIBound(labels, seed=3)
    null = float(bound(noise))
    planted, planted_labels = _planted(n, d)
    signal = float(GaussianMIBound({"gender": planted_labels}, seed=3)(planted))
    # relative excess over the random-label level: small without signal (one labelling vs the
    # average of five), far larger with it
    assert null < 0.5
    assert signal > 1.0 and signal > 4 * null


def test_random_labels_hinges_mean_and_covariance_terms_separately():
    # Planted mean shift, identical class covariances: M_j is far above its random-label level,
    # C_j below it. The loss is (M_j/M_j⁰ − 1)² alone (a joint hinge would subtract the C_j
    # slack), and max_excess is M_j/M_j⁰ − 1.
    g = torch.Generator().manual_seed(9)
    base = torch.randn(150, 6, generator=g, dtype=torch.float64)
    emb = torch.cat([base, base + 0.4])
    labels = torch.arange(300) // 150
    bound = GaussianMIBound({"g": labels}, seed=2)
    bound.refresh_reference(emb)
    ((mean_ref, cov_ref),) = bound._reference
    mean_term, cov_term = _dense_terms(emb.numpy(), labels.numpy(), "shrinkage")
    assert mean_term > mean_ref + 0.05
    assert cov_term < cov_ref
    assert float(bound(emb)) == pytest.approx((mean_term / mean_ref - 1.0) ** 2, rel=1e-9)
    assert bound.max_excess == pytest.approx(mean_term / mean_ref - 1.0, rel=1e-9)
    stricter = GaussianMIBound({"g": labels}, seed=2, target_ratio=0.5)
    stricter.refresh_reference(emb)
    excess = mean_term / (0.5 * mean_ref) - 1.0
    assert float(stricter(emb)) == pytest.approx(excess**2, rel=1e-9)
    assert stricter.max_excess == pytest.approx(excess, rel=1e-9)


def test_random_labels_reference_is_seeded_and_hinge_has_no_grad_below_it():
    emb, labels = _planted(200, 8)
    loss_a = GaussianMIBound({"g": labels}, seed=11)(emb)
    loss_b = GaussianMIBound({"g": labels}, seed=11)(emb)
    assert float(loss_a) == float(loss_b)
    # Both classes hold the same points: M_j = C_j = 0, below any random partition.
    twin = emb[labels == 0].repeat_interleave(2, dim=0)
    bound = GaussianMIBound({"g": labels})
    bound.refresh_reference(twin)
    param = twin.clone().requires_grad_(True)
    loss = bound(param)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert float(param.grad.abs().sum()) == 0.0


def test_errors_and_dropped_classes():
    n = 20
    emb = torch.randn(n, 3)
    good = torch.arange(n) % 2
    with pytest.raises(ValueError, match="'x'.*no user with a known value"):
        GaussianMIBound({"x": torch.full((n,), -1)})
    with pytest.raises(ValueError, match="'x'.*fewer than 2 classes"):
        GaussianMIBound({"x": torch.zeros(n, dtype=torch.long)})
    with pytest.raises(ValueError, match="'x'.*1-D"):
        GaussianMIBound({"x": good.reshape(2, -1)})
    with pytest.raises(ValueError, match="'y'.*length 19"):
        GaussianMIBound({"x": good, "y": good[:-1]})
    with pytest.raises(ValueError, match="covariance"):
        GaussianMIBound({"x": good}, covariance="ledoit")
    with pytest.raises(ValueError, match="target"):
        GaussianMIBound({"x": good}, target="one")
    with pytest.raises(ValueError, match="shrinkage"):
        GaussianMIBound({"x": good}, shrinkage=1.5)
    with pytest.raises(ValueError, match="ridge"):
        GaussianMIBound({"x": good}, ridge=0.0)
    bound = GaussianMIBound({"x": good}, target="zero")
    bad = emb.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        bound(bad)
    with pytest.raises(ValueError, match="shape"):
        bound(emb[:-1])
    # A single-user class is dropped, listed, and its user ignored.
    single = good.clone()
    single[0] = 2
    bound = GaussianMIBound({"x": single, "ok": good}, target="zero")
    assert bound.dropped_classes == {"x": [2], "ok": []}
    moved = emb.clone()
    moved[0] += 50.0
    assert bound.per_attribute(moved)["x"] == pytest.approx(bound.per_attribute(emb)["x"])
    # Dropping may leave fewer than 2 classes.
    lonely = torch.zeros(n, dtype=torch.long)
    lonely[0] = 1
    with pytest.raises(ValueError, match="'x'.*fewer than 2 classes with >= 2 users"):
        GaussianMIBound({"x": lonely})


def _whitened_terms(
    x: torch.Tensor, sizes: list[int], covariance: str, shrinkage: float | str, ridge: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M_j, C_j) as the bound computed them before the class statistics: every user whitened,
    class means and scatters from (n, d) tensors. x: the covered users grouped by class."""
    n, d = x.shape
    codes = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    counts = torch.tensor(sizes, dtype=x.dtype)
    eye = torch.eye(d, dtype=x.dtype)
    centred = x - x.mean(0)
    scatter_g = centred.T @ centred / n
    if covariance == "paper":
        eps = torch.tensor(ridge, dtype=x.dtype)
        lam = torch.zeros(len(sizes), 1, 1, dtype=x.dtype)
    else:
        eps = ridge * scatter_g.diagonal().sum() / d
        lam = d / (counts + d) if shrinkage == "auto" else torch.full_like(counts, shrinkage)
        lam = lam[:, None, None]
    chol_g = torch.linalg.cholesky(scatter_g + eps * eye)
    z = torch.linalg.solve_triangular(chol_g, centred.T, upper=False).T
    means = torch.zeros(len(sizes), d, dtype=x.dtype).index_add(0, codes, z) / counts[:, None]
    within = z - means[codes]
    scatter = torch.stack([c.T @ c for c in within.split(sizes)]) / counts[:, None, None]
    inv_chol = torch.linalg.solve_triangular(chol_g, eye, upper=False)
    cov_k = (1.0 - lam) * (scatter + eps * (inv_chol @ inv_chol.T)) + lam * eye
    log_det = 2.0 * torch.linalg.cholesky(cov_k).diagonal(dim1=-2, dim2=-1).log().sum(-1)
    cov_terms = 0.5 * (cov_k.diagonal(dim1=-2, dim2=-1).sum(-1) - log_det - d)
    weights = counts / n
    return weights @ (0.5 * means.square().sum(1)), weights @ cov_terms


def _dense_loss(
    emb: torch.Tensor, labels: dict, min_class_size: int, seed: int, **kw
) -> tuple[torch.Tensor, list[list[float]]]:
    """L_AU computed the former way (float64, (n, d) copies per attribute), and the random-label
    levels (M_j⁰, C_j⁰) from the same seeded permutations as the bound's first refresh."""
    generator = torch.Generator().manual_seed(seed)
    losses, levels = [], []
    for lab in labels.values():
        counts = torch.bincount(lab[lab >= 0])
        kept = counts >= min_class_size
        covered = torch.nonzero((lab >= 0) & kept[lab.clamp(min=0)]).flatten()
        users = covered[torch.argsort(lab[covered], stable=True)]
        sizes = counts[kept].tolist()
        x = emb.index_select(0, users)
        terms = torch.stack(
            _whitened_terms(x, sizes, kw["covariance"], kw["shrinkage"], kw["ridge"])
        )
        if kw["target"] == "zero":
            losses.append(terms.sum())
            continue
        reference = torch.zeros(2, dtype=emb.dtype)
        with torch.no_grad():
            for _ in range(kw["n_permutations"]):
                perm = torch.randperm(len(users), generator=generator)
                args = (kw["covariance"], kw["shrinkage"], kw["ridge"])
                reference += torch.stack(_whitened_terms(x[perm], sizes, *args))
        reference /= kw["n_permutations"]
        levels.append(reference.tolist())
        losses.append(torch.relu(terms / (kw["target_ratio"] * reference) - 1.0).square().sum())
    return torch.stack(losses).mean(), levels


def _several_attributes(n: int = 160, d: int = 6) -> tuple[torch.Tensor, dict]:
    """Three attributes with unknown values, a class below min_class_size=3 and a planted
    signal; users 0-4 have no known value at all."""
    g = torch.Generator().manual_seed(13)
    labels = {
        "g": torch.randint(0, 2, (n,), generator=g),
        "age": torch.randint(-1, 4, (n,), generator=g),
        "occ": torch.randint(0, 9, (n,), generator=g),
    }
    labels["occ"][labels["occ"] == 8] = 7
    labels["occ"][5:7] = 8  # two users: dropped
    for lab in labels.values():
        lab[:5] = -1
    emb = 2.0 + torch.randn(n, d, generator=g, dtype=torch.float64)
    emb[labels["g"] == 1, 0] += 0.8
    emb[labels["age"] == 2] *= 1.5
    emb[:, 1] += 0.1 * labels["occ"]
    return emb, labels


@pytest.mark.parametrize("target", ["zero", "random_labels"])
@pytest.mark.parametrize(
    "covariance, shrinkage, ridge",
    [("paper", 0.1, 1e-6), ("shrinkage", "auto", 1e-4), ("shrinkage", 0.3, 1e-6)],
)
@pytest.mark.parametrize("chunk_rows", [0, 7])
def test_class_statistics_match_the_dense_computation(
    monkeypatch, target, covariance, shrinkage, ridge, chunk_rows
):
    if chunk_rows:  # pieces of 7 users: class and chunk boundaries do not coincide
        monkeypatch.setattr(class_moments, "_CHUNK_BYTES", chunk_rows * 6 * 8)
    emb, labels = _several_attributes()
    kw = dict(covariance=covariance, shrinkage=shrinkage, ridge=ridge, target=target)
    kw |= dict(n_permutations=3, target_ratio=0.5)
    bound = GaussianMIBound(labels, min_class_size=3, seed=5, **kw)
    assert bound.dtype == torch.float64
    assert bound.dropped_classes["occ"] == [8]
    param = emb.clone().requires_grad_(True)
    loss = bound(param)
    loss.backward()
    dense_param = emb.clone().requires_grad_(True)
    dense, levels = _dense_loss(dense_param, labels, 3, 5, **kw)
    dense.backward()
    if target == "random_labels":
        np.testing.assert_allclose(bound._reference, levels, rtol=1e-9)
    assert float(loss.detach()) > 0.01
    assert float(loss.detach()) == pytest.approx(float(dense.detach()), rel=1e-9)
    torch.testing.assert_close(param.grad, dense_param.grad, rtol=1e-8, atol=1e-12)
    assert param.grad.abs().sum() > 0
    assert float(param.grad[:5].abs().max()) == 0.0  # users no attribute covers


def test_float32_statistics_match_the_dense_computation():
    emb, labels = _several_attributes(n=400, d=12)
    kw = dict(covariance="shrinkage", shrinkage="auto", ridge=0.1, target="zero")
    bound = GaussianMIBound(labels, min_class_size=3, **kw)
    assert bound.dtype == torch.float32
    param = emb.float().requires_grad_(True)
    loss = bound(param)
    loss.backward()
    dense_param = emb.clone().requires_grad_(True)
    dense, _ = _dense_loss(dense_param, labels, 3, 0, **kw, n_permutations=1)
    dense.backward()
    assert loss.dtype == torch.float32
    assert float(loss.detach()) == pytest.approx(float(dense.detach()), rel=1e-4)
    torch.testing.assert_close(param.grad.double(), dense_param.grad, rtol=1e-3, atol=1e-6)


def test_autograd_keeps_no_copy_of_the_embeddings():
    emb, labels = _several_attributes(n=2000)
    param = emb.float().requires_grad_(True)
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    bound = GaussianMIBound(labels, shrinkage="auto", ridge=0.1, min_class_size=3)
    bound.refresh_reference(param)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        bound(param).backward()
    large = [t for t in saved if t.numel() >= param.shape[0]]
    assert large and all(t.data_ptr() == param.data_ptr() for t in large)
    assert torch.isfinite(param.grad).all()
