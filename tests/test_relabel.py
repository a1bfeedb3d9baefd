"""The random-relabeling objective (losses/relabel.py): calibrated against its permutation null,
blind to nothing a kernel sees, differentiable, and honest about what it drops."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from recbole_attrcloak.losses import LeakageObjective, RelabelingNull, default_critics
from recbole_attrcloak.losses.kernel_critics import Critic, CriticMetric, critic_features
from tests.attacks import kfold_balanced_accuracy


def _noise(n: int = 400, d: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _ring(n: int = 500, d: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes on rings of radius 1 and 2 in the first two coordinates (same mean, and a
    difference a linear critic cannot see), Gaussian noise elsewhere."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.4).long()
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    angle = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    radius = torch.where(y == 1, 2.0, 1.0) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    x[:, 0], x[:, 1] = radius * torch.cos(angle), radius * torch.sin(angle)
    return x, y


def test_z_scores_follow_the_permutation_null_on_noise():
    x = _noise()
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (len(x),), generator=g)
    zs = []
    for r in range(80):
        shuffled = labels[torch.randperm(len(x), generator=g)]
        objective = RelabelingNull({"a": shuffled}, n_features=64, seed=r)
        zs.append(torch.stack(list(objective.zscores(x).values())))
    zs = torch.stack(zs)
    # the 9 critics of one labeling are correlated: the mean of 80 labelings' z has an SE of
    # about 0.08 (30 labelings gave −0.24 for one seed, 150 gave −0.08)
    assert zs.mean().abs() < 0.2  # every critic centred on its null ...
    assert zs.mean(0).abs().max() < 0.4
    assert 0.85 < float(zs.std()) < 1.15  # ... with the null's spread


def test_planted_class_means_are_seen_by_every_linear_critic():
    x = _noise()
    y = (torch.arange(len(x)) % 2).long()
    x[y == 1, 0] += 0.8
    zs = RelabelingNull({"a": y}, seed=0).zscores(x)
    linear = [float(z) for (attr, critic), z in zs.items() if critic.startswith("linear")]
    assert min(linear) > 5


def test_ring_leakage_is_seen_by_the_gaussian_kernels_only():
    x, y = _ring()
    zs = RelabelingNull({"a": y}, seed=0).zscores(x)
    linear = max(abs(float(z)) for (_, c), z in zs.items() if c.startswith("linear"))
    rbf = max(float(z) for (_, c), z in zs.items() if c.startswith("rbf1/"))
    assert linear < 3
    assert rbf > 8


def test_features_are_drawn_afresh_but_the_check_is_fixed():
    x, y = _ring()
    objective = RelabelingNull({"a": y}, seed=0)
    first, second = (objective(x.clone().requires_grad_()) for _ in range(2))  # two steps
    assert float(first) != float(second)  # a new draw of random features per call
    assert objective.check(x) == objective.check(x)


def test_implements_the_objective_protocol_and_reports_every_statistic():
    x, y = _ring()
    objective = RelabelingNull({"gender": y}, tolerance=2.0, seed=0)
    assert isinstance(objective, LeakageObjective)
    objective(x)
    terms = objective.terms()
    assert len(terms) == len(default_critics())
    assert all(t.name.startswith("gender/") and t.target == 0.0 for t in terms)
    worst = max(abs(t.value) for t in terms)
    assert objective.progress() == {
        "max_abs_z": pytest.approx(worst),
        "beyond_tolerance": pytest.approx(worst - 2.0),
        "checked": 1.0,  # a call without gradient is always checked
    }
    assert objective.distance() == pytest.approx(worst - 2.0)
    assert [t.met for t in terms] == [abs(t.value) <= 2.0 for t in terms]


def test_unknown_users_and_small_classes_are_left_out():
    x = _noise(300)
    codes = torch.arange(300) % 3
    codes[:50] = -1  # unknown (RecBole's padding user is one)
    codes[50] = 7  # a class of one user
    objective = RelabelingNull({"a": codes}, min_class_size=2, seed=0)
    assert objective.dropped_classes == {"a": (7,)}
    z_all = objective.zscores(x)
    moved = x.clone()
    moved[:51] += 100.0  # the unknown users and the dropped class change nothing ...
    objective_again = RelabelingNull({"a": codes}, min_class_size=2, seed=0)
    objective_again.zscores(x)  # same standardisation as the first
    draw = objective._check_draws[0]
    before = objective.zscores(x, draw)
    after = objective.zscores(moved, draw)
    assert all(torch.isclose(before[k], after[k]) for k in before)
    assert set(z_all) == set(before)
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        RelabelingNull({"a": torch.tensor([0, 0, 0, 1, -1])}, min_class_size=2)
    with pytest.raises(ValueError, match="at least one attribute"):
        RelabelingNull({})


def test_gradient_matches_finite_differences():
    x, y = _ring(n=40, d=3)
    critics = (Critic(None, 1.0), Critic(1.0, math.inf), Critic(4.0, 0.1))
    objective = RelabelingNull({"a": y}, critics=critics, n_features=8, seed=0)
    objective.zscores(x)  # fixes the standardisation
    draw = objective._check_draws[0]

    def loss(reps: torch.Tensor) -> torch.Tensor:  # the statistics' excesses over their null
        excesses = [excess for excess, _ in objective.statistics(reps, draw).values()]
        return torch.stack(excesses).square().sum()

    torch.autograd.gradcheck(loss, (x.clone().requires_grad_(),), eps=1e-6, atol=1e-4)


# --- the engine with each objective on planted leakage a Gaussian model cannot see ----------


def _au_settings(**overrides) -> dict:
    import yaml

    from recbole_attrcloak.config import PROPERTIES

    defaults = yaml.safe_load((PROPERTIES / "overall.yaml").read_text())
    return {**{k: v for k, v in defaults.items() if k.startswith("au_")}, **overrides}


def _kurtosis_leak(n: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0 on a circle of radius 2 in two coordinates, class 1 Gaussian with the same mean
    and covariance there (E r² = 4): the classes differ only beyond the second moment."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.5).long()
    x = torch.randn(n, 3, generator=g)
    angle = torch.rand(n, generator=g) * 2 * math.pi
    ring = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    x[:, :2] = torch.where(y[:, None] == 0, ring, x[:, :2] * math.sqrt(2))
    return x, y


def _attack(x: torch.Tensor, y: torch.Tensor, attacker: str) -> float:
    """5-fold balanced accuracy of a scikit-learn attacker on standardised inputs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = {"knn": KNeighborsClassifier(15), "logreg": LogisticRegression(C=0.05)}[attacker]
    return kfold_balanced_accuracy(x, y, make_pipeline(StandardScaler(), model))


def _unlearn(x: torch.Tensor, labels: dict, **settings) -> tuple[torch.Tensor, object]:
    from recbole_attrcloak.engine import AttrCloakSettings, build_objective, table_unlearner

    s = _au_settings(au_mode="df", **settings)
    table = x.clone().requires_grad_(True)
    outcome = table_unlearner(
        table, build_objective(labels, s, 0), AttrCloakSettings.from_settings(s)
    ).run()
    return table.detach(), outcome


def test_the_default_removes_leakage_beyond_two_moments_that_the_gaussian_bound_leaves():
    x, y = _kurtosis_leak()
    assert _attack(x, y, "knn") > 0.65  # planted: a kNN attacker reads it
    assert _attack(x, y, "logreg") < 0.56  # ... a linear one does not (equal means)
    gaussian, _ = _unlearn(x, {"a": y}, au_objective="gaussian")
    assert _attack(gaussian, y, "knn") > 0.62  # the Gaussian bound sees nothing to remove
    relabel, outcome = _unlearn(x, {"a": y}, au_max_steps=300)
    assert outcome.stop_reason == "target_reached"
    assert abs(_attack(relabel, y, "knn") - 0.5) < 0.06


def test_no_overshoot_below_chance_on_noise():
    x = _noise(600, 8).float()
    y = torch.randint(0, 2, (600,), generator=torch.Generator().manual_seed(3))
    after, outcome = _unlearn(x, {"a": y})
    assert outcome.stop_reason == "target_reached"
    moved = float((after - x).norm() / x.norm())
    assert moved < 0.02  # nothing to remove: the state barely moves ...
    assert _attack(after, y, "logreg") > 0.45  # ... and no attacker is pushed below chance


def test_the_settings_choose_critics_features_tolerance_and_margin():
    x, y = _ring(n=200)
    settings = {
        "au_kernel_gammas": [2.0],
        "au_critic_ridges": ["inf", 0.5],
        "au_features": 32,
        "au_directions": 0,
        "au_direction_basis": "principal",
        "au_spectral": 0,
        "au_neighbours": [],
        "au_class_critics": False,
        "au_crossfit": [],
        "au_crossfit_diagonal": [],
        "au_contrasts": False,
        "au_quadratic": True,
        "au_squares": False,
        "au_check_draws": 5,
        "au_block_critics": True,
        "au_label_weights": "class",
        "au_z_tol": 1.5,
        "au_z_margin": 0.25,
        "au_check_slack": 3.0,
        "au_min_class_size": 3,
        "au_recompute_users": 1000,
    }
    objective = RelabelingNull.from_settings({"a": y}, settings, seed=4)
    assert (objective.seed, objective.check_slack, objective.check_draws) == (4, 3.0, 5)
    assert objective.segment_rows == 1000
    rare = y.clone()
    rare[:2] = 2  # a class of two users: below au_min_class_size
    assert RelabelingNull.from_settings({"a": rare}, settings, 0).dropped_classes == {"a": (2,)}
    assert objective.critics == default_critics([2.0], [math.inf, 0.5])
    assert (objective.n_features, objective.tolerance, objective.margin) == (32, 1.5, 0.25)
    assert objective.terms() == []  # nothing checked yet
    objective(x)
    names = sorted(t.name for t in objective.terms())
    critics = [c.name for c in default_critics([2.0], [math.inf, 0.5])] + ["quadratic"]
    assert names == sorted(f"a/{c}/z" for c in critics)


def test_label_moments_by_hand():
    # classes of 2 and 3 users: ỹ_u = 1[y_u = k]/n_k − 1/5
    codes = torch.tensor([0, 0, 1, 1, 1])
    (attr,) = RelabelingNull({"a": codes}, seed=0).attributes
    y = torch.zeros(5, 2, dtype=torch.float64)
    y[torch.arange(5), codes] = 1.0
    y = y / y.sum(0) - 1 / 5
    inner = y @ y.T
    pairs = [float(inner[u, v]) ** 2 for u in range(5) for v in range(5) if u != v]
    assert attr.pair_sq == pytest.approx(sum(pairs) / len(pairs))
    assert attr.label_sq == pytest.approx(float(y.square().sum()))
    torch.testing.assert_close(attr.labels, y)
    # a class of one user, kept with min_class_size=1: its label is 1 − 1/m
    (single,) = RelabelingNull({"a": torch.tensor([0, 0, 1, 1, 2])}, min_class_size=1).attributes
    assert float(single.labels[4, 2]) == pytest.approx(1 - 1 / 5)


@pytest.mark.parametrize("weights", ["class", "scatter"])
def test_scatter_weights_see_a_large_classs_shift_that_class_weights_drown(weights):
    """A shift of a large class's mean by four of its own standard errors: with ``scatter``
    (each class in units of its own noise) it is seen as clearly as the same shift of a small
    class; with ``class`` (each class mean alike) the small class's noise drowns it."""
    g = torch.Generator().manual_seed(11)
    codes = torch.cat([torch.zeros(400), torch.ones(400), torch.full((20,), 2)]).long()
    zs = {}
    for shifted, size in ((0, 400), (2, 20)):
        x = torch.randn(len(codes), 4, generator=g, dtype=torch.float64)
        x[codes == shifted, 0] += 4.0 / math.sqrt(size)  # four standard errors of its mean
        objective = RelabelingNull(
            {"a": codes}, critics=default_critics((), (math.inf,)), label_weights=weights
        )
        zs[shifted] = float(objective.zscores(x)["a", "linear/ridge=inf"])
    assert zs[2] > 3
    if weights == "scatter":
        assert zs[0] > 3
    else:
        assert zs[0] < 1.5


def test_linear_critics_do_not_see_the_scale_of_later_representations():
    # The first call fixes the standardisation; a linear critic's z (U and its null spread both
    # scale with the square of the representations) is then the same at any scale.
    x = _noise()
    y = (torch.arange(len(x)) % 2).long()
    objective = RelabelingNull({"a": y}, seed=0)
    objective.zscores(x)
    planted = x.clone()
    planted[y == 1, 0] += 0.3
    draw = objective._check_draws[0]
    big, small = objective.zscores(planted, draw), objective.zscores(1e-3 * planted, draw)
    linear = [k for k in big if k[1].startswith("linear")]
    assert len(linear) == 3 and max(float(big[k]) for k in linear) > 2
    for key in linear:
        assert float(small[key]) == pytest.approx(float(big[key]), rel=1e-6)


def test_the_standardisation_makes_every_coordinates_scale_irrelevant():
    # The first call's per-coordinate scale is divided out: the same users with coordinates
    # stretched by 10⁻² … 10² (a planted signal on the shrunk one) give the same z-scores.
    x = _noise()
    y = (torch.arange(len(x)) % 2).long()
    x[y == 1, 0] += 0.5
    stretched = x * torch.logspace(-2, 2, x.shape[1], dtype=torch.float64)
    plain = RelabelingNull({"a": y}, n_features=64, seed=5)
    scaled = RelabelingNull({"a": y}, n_features=64, seed=5)
    plain.check(x)
    scaled.check(stretched)
    assert max(plain.checked.values()) > 5
    assert scaled.checked == pytest.approx(plain.checked, rel=1e-6)
    # the same seed, the same check draw: a run's stopping decisions are reproducible
    again = RelabelingNull({"a": y}, n_features=64, seed=5)
    assert again.check(x) == plain.check(x) and again.checked == plain.checked


def test_a_statistic_exactly_at_the_tolerance_meets_it():
    # distance() is 0 exactly when every term is met, also at the boundary |z| = tolerance.
    x, y = _ring(n=200)
    objective = RelabelingNull({"a": y}, n_features=32, seed=0)
    objective.check(x)
    objective.tolerance = objective.max_abs_z
    assert objective.distance() == 0.0
    assert all(t.met for t in objective.terms())


def test_the_null_mean_is_exact_also_for_an_attribute_known_on_some_users():
    # Attribute "b" is known on 6 of the 8 rows (its own, uncentred subset of the features).
    # Over every relabeling of those 6 users (3 and 3), U − E_π U averages to 0 exactly.
    x = _noise(n=8, d=3, seed=2)
    critics = (Critic(None, math.inf), Critic(None, 1.0))
    excess = {c.name: [] for c in critics}
    for ones in itertools.combinations(range(6), 3):
        b = torch.full((8,), -1)
        b[:6] = 0
        b[list(ones)] = 1
        a = torch.arange(8) % 2
        stats = RelabelingNull({"a": a, "b": b}, critics=critics, seed=0).statistics(x)
        for c in critics:
            excess[c.name].append(float(stats["b", c.name][0]))
    for name, values in excess.items():
        spread = max(abs(v) for v in values)
        assert spread > 1e-3, name
        assert abs(sum(values) / len(values)) < 1e-9 * spread, name


def test_a_margin_above_every_z_leaves_nothing_to_pull():
    x = _noise()
    y = torch.arange(len(x)) % 3
    assert float(RelabelingNull({"a": y}, n_features=32, margin=1e3, seed=0)(x)) == 0.0


@pytest.mark.parametrize("gamma", [1.0, 4.0])
def test_random_features_approximate_the_gaussian_kernel(gamma):
    # ⟨φ(z), φ(z')⟩ ≈ exp(−γ‖z − z'‖²/d) for the critic's bandwidth (d = 4 coordinates).
    z = _noise(n=6, d=4, seed=7) * 0.6
    critics = (Critic(1.0, math.inf), Critic(4.0, math.inf))
    objective = RelabelingNull({"a": torch.tensor([0, 1] * 3)}, critics=critics, n_features=2000)
    objective.check(z)  # fixes the standardisation
    z_in = (z - objective.shift) / objective.scale  # what the features see
    draws = [critic_features(z_in, gamma, objective._draw()) for _ in range(10)]
    approx = sum(phi @ phi.T for phi in draws) / len(draws)  # 20 000 features in all
    kernel = torch.exp(-gamma * torch.cdist(z_in, z_in).square() / 4)
    torch.testing.assert_close(approx, kernel, atol=0.03, rtol=0)


def test_the_pair_sum_of_the_null_spread_by_hand():
    # Σ_{u≠v} ⟨f_u, f_v⟩²_M, with and without a metric M
    f = _noise(n=7, d=3, seed=1)
    a = torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for metric in (None, a @ a.T + torch.eye(3, dtype=torch.float64)):
        m = torch.eye(3, dtype=torch.float64) if metric is None else metric
        inner = f @ m @ f.T
        expected = float(inner.square().sum() - inner.diagonal().square().sum())
        assert float(CriticMetric(f, metric).whole[2]) == pytest.approx(expected)


def test_a_step_far_from_the_target_skips_the_check_and_one_near_it_does_not():
    x, y = _ring()
    objective = RelabelingNull({"a": y}, tolerance=2.0, check_slack=2.0, seed=0)
    far = x.clone().requires_grad_(True)
    loss = objective(far)
    assert objective.estimated and objective.progress()["checked"] == 0.0
    # the step's own draw stands in, and puts the ring far beyond its tolerance
    assert objective.distance() > 2.0
    fresh = objective.checked
    objective.check(x)
    assert not objective.estimated and objective.checked != fresh
    assert loss.requires_grad  # the loss is the step's draw either way
    near = _noise(500, 12, seed=1).requires_grad_(True)
    objective = RelabelingNull({"a": y}, tolerance=2.0, check_slack=2.0, seed=0)
    objective(near)
    assert not objective.estimated  # within the slack: the fixed draws decide
    assert objective.distance() == 0.0
    always = RelabelingNull({"a": y}, tolerance=2.0, check_slack=math.inf, seed=0)
    always(x.clone().requires_grad_(True))
    assert not always.estimated


def test_skipping_far_checks_leaves_the_run_and_its_stop_unchanged():
    x, y = _kurtosis_leak()
    # only the linear and Gaussian critics: no fixed critic then fails a check's first stage,
    # and with no slack every step's check is a full one
    only = {"au_max_steps": 300, "au_squares": False, "au_quadratic": False}
    skipped, a = _unlearn(x, {"a": y}, au_check_slack=2.0, **only)
    every, b = _unlearn(x, {"a": y}, au_check_slack=math.inf, **only)
    assert a.stop_reason == b.stop_reason == "target_reached"
    assert 0.0 in a.trace["checked"] and a.trace["checked"][-1] == 1.0
    assert set(b.trace["checked"]) == {1.0}
    # the checks use fixed draws, the steps the objective's generator: the same states
    assert (a.kept_step, a.steps_run) == (b.kept_step, b.steps_run)
    torch.testing.assert_close(skipped, every)


def test_block_critics_see_a_leak_that_an_over_correction_in_another_block_cancels():
    # block 1: one class shifted on one coordinate (a leak); block 2: every class mean set to
    # the overall mean (an over-correction). The concatenation's statistics, sums over the two,
    # land within the tolerance; each block's own statistics do not.
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (800,), generator=g)
    a = torch.randn(800, 32, generator=g, dtype=torch.float64)
    b = torch.randn(800, 32, generator=g, dtype=torch.float64)
    a[y == 1, 0] += 0.4
    for k in (0, 1):
        b[y == k] -= b[y == k].mean(0) - b.mean(0)
    x = torch.cat([a, b], 1)
    critics = default_critics((1.0,), (math.inf,))
    plain = RelabelingNull({"a": y}, critics=critics, seed=0)
    plain.check(x)
    assert plain.distance() == 0.0  # the concatenation looks like a random relabeling
    blocks = RelabelingNull({"a": y}, critics=critics, blocks=[32, 32], seed=0)
    blocks.check(x)
    z = blocks.checked
    assert z["a", "linear/ridge=inf"] == pytest.approx(plain.checked["a", "linear/ridge=inf"])
    assert z["a", "linear/ridge=inf@block1"] > 3.5  # the leak ...
    assert z["a", "linear/ridge=inf@block2"] < -3  # ... and the over-correction
    assert blocks.distance() > 1.0
    # and unlearning with them brings each block to the target
    from recbole_attrcloak.engine import AttrCloakSettings, table_unlearner

    settings = _au_settings(au_mode="df", au_class_critics=False, au_crossfit=[])
    table = x.clone().requires_grad_(True)
    objective = RelabelingNull(
        {"a": y}, critics=critics, blocks=[32, 32], margin=1.5, seed=0, check_slack=2.0
    )
    outcome = table_unlearner(table, objective, AttrCloakSettings.from_settings(settings)).run()
    assert outcome.stop_reason == "target_reached"
    assert all(abs(v) <= 2.0 for v in objective.checked.values())
