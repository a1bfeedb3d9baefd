"""The AttrCloak engine on plain tensors: its stop rule, its retention strategies, the two spaces
of its step, and the same trajectory as the RecBole adapter on the same tensors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from recbole_attrcloak.engine import (
    OPTIMIZERS,
    AttrCloakSettings,
    DistanceRetention,
    RankingRetention,
    StopReason,
    StopRule,
    TrainLossRetention,
    Unlearner,
    build_objective,
    build_optimizer,
    param_groups,
)
from recbole_attrcloak.losses import GaussianMIBound, LeakageObjective, TermReport

ROOT = Path(__file__).resolve().parents[1]


class _Shrink:
    """A leakage objective with a known answer: the mean squared entry of the representation,
    met at or below ``target`` (a stand-in for L_AU that the engine must treat the same)."""

    def __init__(self, target: float, scale: float = 1.0) -> None:
        self.target, self.scale, self.value = target, scale, None

    def __call__(self, reps: torch.Tensor) -> torch.Tensor:
        loss = self.scale * reps.square().mean()
        self.value = float(loss.detach())
        return loss

    def distance(self) -> float:
        return max(0.0, self.value - self.target)

    def terms(self) -> list[TermReport]:
        met = self.value <= self.target
        return [TermReport("shrink", self.value, self.target, None, met)]

    def progress(self) -> dict[str, float]:
        return {"distance": self.distance()}


def _unlearner(objective, table: torch.Tensor, rule: StopRule, lr: float = 0.05) -> Unlearner:
    param = table.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([param], lr=lr)
    retention = DistanceRetention(table)
    return Unlearner(lambda: param, [param], objective, retention, optimizer, rule)


def _table(n: int = 40, d: int = 4) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0)) + 1.0


def test_objectives_implement_the_protocol():
    labels = {"g": torch.tensor([0, 1] * 20)}
    bound = GaussianMIBound(labels, target="random_labels", target_tol=0.02)
    assert isinstance(bound, LeakageObjective) and isinstance(_Shrink(0.1), LeakageObjective)
    assert bound.distance() == float("inf") and bound.terms() == []
    emb = _table()
    emb[labels["g"] == 1, 0] += 3.0  # a planted signal far above the random-label level
    bound(emb)
    terms = bound.terms()
    assert [t.name for t in terms] == ["g/mean", "g/covariance"]
    mean = terms[0]
    assert mean.target == pytest.approx(mean.reference) and not mean.met  # target_ratio 1
    assert bound.distance() == pytest.approx(bound.max_excess - 0.02)
    assert bound.progress() == {"excess": bound.max_excess}
    zero = GaussianMIBound(labels, target="zero")
    loss = float(zero(emb))
    assert zero.distance() == pytest.approx(loss) and zero.progress() == {}
    assert sum(t.value for t in zero.terms()) == pytest.approx(loss, rel=1e-6)


def test_run_stops_at_the_first_state_that_meets_the_target_and_keeps_it():
    table = _table()
    objective = _Shrink(target=0.3)
    unlearner = _unlearner(objective, table, StopRule(200, 5, 1e-3, 50), lr=0.5)
    outcome = unlearner.run()
    l_au = outcome.trace["l_au"]
    assert outcome.stop_reason == StopReason.TARGET_REACHED
    assert l_au[0] > 0.3 and all(v > 0.3 for v in l_au[: outcome.kept_step])
    assert l_au[outcome.kept_step] <= 0.3 and outcome.steps_run == outcome.kept_step + 1
    assert outcome.final == pytest.approx(l_au[outcome.kept_step])  # the kept state is returned
    assert outcome.initial == pytest.approx(l_au[0])
    assert outcome.terms[0].met and list(outcome.trace) == ["l_au", "distance", "l_r", "alpha_u"]
    # one α_u per step; at the original state the retention has no gradient: α_u = 1
    alpha = outcome.trace["alpha_u"]
    assert len(alpha) == outcome.steps_run and alpha[0] == 1.0


def test_a_state_that_already_meets_the_target_is_returned_unchanged():
    table = _table()
    unlearner = _unlearner(_Shrink(target=10.0), table, StopRule(50, 5, 1e-3, 50), lr=0.5)
    outcome = unlearner.run()
    assert outcome.stop_reason == StopReason.TARGET_REACHED
    assert (outcome.steps_run, outcome.kept_step) == (1, 0)
    assert torch.equal(unlearner.params[0].detach(), table)  # the one step taken is undone


def test_run_stops_on_a_stall_after_halving_the_learning_rate():
    # L_AU is flat (no gradient): only retention acts, nothing gets closer to the target
    class Flat(_Shrink):
        def __call__(self, reps):
            loss = 0.0 * reps.sum() + 1.0
            self.value = float(loss.detach())
            return loss

    unlearner = _unlearner(Flat(target=0.5), _table(), StopRule(100, 2, 1e-3, 4), lr=0.1)
    outcome = unlearner.run()
    assert outcome.stop_reason == StopReason.STALLED
    assert outcome.steps_run == 6 and outcome.kept_step == 0  # checks after 2, 4 and 6 steps
    # chunk 1 found the first state (closer than nothing); chunk 2 brought nothing: one halving
    assert unlearner.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_run_stops_after_max_steps_on_the_closest_state():
    table = _table()
    unlearner = _unlearner(_Shrink(target=-1.0), table, StopRule(12, 5, 0.0, 100))
    outcome = unlearner.run()
    assert outcome.stop_reason == StopReason.MAX_STEPS and outcome.steps_run == 12
    l_au = outcome.trace["l_au"]
    assert outcome.kept_step == min(range(12), key=l_au.__getitem__)
    assert torch.allclose(unlearner.params[0], unlearner.kept[0])


def test_run_keeps_the_closest_state_when_later_steps_overshoot():
    # Adam at a large rate overshoots: L_AU (never at its target) falls to a minimum at step 3
    # and rises after it; the run returns the state of step 3, not its last state
    table = _table()
    param = table.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([param], lr=1.0)
    objective, rule = _Shrink(target=-1.0), StopRule(12, 100, 0.0, 100)
    unlearner = Unlearner(
        lambda: param, [param], objective, DistanceRetention(table), optimizer, rule
    )
    outcome = unlearner.run()
    l_au = outcome.trace["l_au"]
    best = min(range(len(l_au)), key=l_au.__getitem__)
    assert outcome.stop_reason == StopReason.MAX_STEPS and outcome.steps_run == 12
    assert 0 < best < 11 and l_au[-1] > 1.2 * l_au[best]  # a real overshoot
    assert outcome.kept_step == best
    assert outcome.final == pytest.approx(l_au[best], rel=1e-6)
    assert float(objective(param.detach())) == pytest.approx(l_au[best], rel=1e-6)


def test_stall_rule():
    rule = StopRule(max_steps=100, check_every=5, tol=0.1, patience=3)
    assert not rule.stalled([10.0, 8.0, 7.5, 7.4])  # 8.0 was the last fall by 10 %
    assert rule.stalled([10.0, 8.0, 7.5, 7.4, 7.3])  # four steps since
    assert not rule.stalled([10.0, 8.0, 7.5, 7.4, 7.0])


def test_stall_rule_waits_patience_steps_after_the_last_relative_fall():
    rule = StopRule(max_steps=100, check_every=1, tol=0.5, patience=2)
    assert not rule.stalled([])
    assert not rule.stalled([8.0, 4.0])  # 4.0 is no fall by half of 8: one step since 8
    assert rule.stalled([8.0, 4.0, 4.0])  # two steps since
    assert not rule.stalled([8.0, 3.9, 3.0])  # 3.9 halves 8: one step since
    assert rule.stalled([8.0, 3.9, 3.0, 2.9])  # 3.0 and 2.9 do not halve 3.9
    assert not rule.stalled([8.0, 3.9, 3.0, 1.9])  # 1.9 does
    assert not StopRule(100, 1, 0.0, 2).stalled([3.0, 2.0, 1.0, 0.5])  # tol 0: any fall


def test_distance_retention_gradient_and_padding_row():
    reference = _table(10, 3)
    reps = (reference + 0.5).requires_grad_(True)
    retention = DistanceRetention(reference[1:], first_row=1)
    value, grad = retention(reps, [reps])
    loss = retention.loss(reps)
    (auto,) = torch.autograd.grad(loss, reps)
    assert value == pytest.approx(float(loss.detach())) and value == pytest.approx(6.75)
    torch.testing.assert_close(grad, auto)
    assert float(grad[0].abs().max()) == 0.0 and retention.bounds == (0.1, 1.0)


def test_train_loss_retention_cycles_through_its_batches():
    weight = torch.tensor(2.0, requires_grad=True)
    seen = []

    def loss(batch):
        seen.append(batch)
        return weight * batch, weight * 0.0  # a tuple of parts is summed

    retention = TrainLossRetention(loss, [1.0, 2.0, 3.0])
    values = [retention(weight, [weight]) for _ in range(5)]
    assert seen == [1.0, 2.0, 3.0, 1.0, 2.0]
    assert [v for v, _ in values] == [2.0, 4.0, 6.0, 2.0, 4.0]
    assert float(values[1][1]) == 2.0 and retention.bounds == (0.0, 1.0)


def test_ranking_retention_pulls_the_original_top_items_up():
    n_users, n_items, d = 6, 12, 4
    gen = torch.Generator().manual_seed(1)
    users = torch.randn(n_users, d, generator=gen, requires_grad=True)
    items = torch.randn(n_items, d, generator=gen)
    top = torch.tensor([[1, 2]] * n_users)
    excluded = torch.zeros(n_users, n_items, dtype=torch.bool)
    excluded[:, :3] = True  # padding item 0 and the top items are never negatives

    def score(u, i):
        return (users[u] * items[i]).sum(1)

    retention = RankingRetention(score, top, excluded, users.detach().clone(), 0, gen)
    value, grad = retention(users, [users])
    assert value > 0 and grad.shape == (n_users * d,)
    # the distance part is zero at the original state: a unit ranking gradient, whose step
    # lowers the BPR loss of every user's top items against all its allowed negatives
    assert float(grad.norm()) == pytest.approx(1.0, rel=1e-5)

    def full_bpr(table):
        scores = table @ items.T
        pos = scores.gather(1, top)[:, :, None]
        neg = scores[:, 3:][:, None, :]
        return float(-torch.nn.functional.logsigmoid(pos - neg).mean())

    moved = users.detach() - 0.05 * grad.view(n_users, d)
    assert full_bpr(moved) < full_bpr(users.detach())


def test_ranking_retention_scores_its_number_of_pairs_per_user():
    n_users, n_items, d = 5, 20, 3
    gen = torch.Generator().manual_seed(2)
    users = torch.randn(n_users, d, generator=gen, requires_grad=True)
    items = torch.randn(n_items, d, generator=gen)
    top = torch.tensor([[1, 2, 3]] * n_users)
    excluded = torch.zeros(n_users, n_items, dtype=torch.bool)
    excluded[:, :4] = True
    seen = []

    def score(u, i):
        seen.append(u.clone())
        return (users[u] * items[i]).sum(1)

    for pairs in (16, 3):
        seen.clear()
        retention = RankingRetention(score, top, excluded, users.detach(), 0, gen, pairs=pairs)
        retention(users, [users])
        # positives then negatives, ``pairs`` of each per user
        assert torch.equal(torch.bincount(seen[0], minlength=n_users), torch.full((5,), 2 * pairs))


def test_representation_steps_are_pulled_back_through_the_representation():
    # reps = 3·table: the parameter's gradient is 3 × the step in representation space
    table = _table(8, 2).requires_grad_(True)
    before = table.detach().clone()
    optimizer = torch.optim.SGD([table], lr=0.1)
    rule = StopRule(1, 1, 0.0, 10)
    objective = _Shrink(target=-1.0)
    unlearner = Unlearner(
        lambda: 3.0 * table, [table], objective, DistanceRetention(3.0 * before), optimizer, rule
    )
    unlearner.step()
    reps = (3.0 * before).requires_grad_(True)
    (g_au,) = torch.autograd.grad(objective(reps), reps)
    # at the original state the retention gradient is zero: the step is α_u·ĝ_au with α_u = 1
    expected = before - 0.1 * 3.0 * g_au / g_au.norm()
    torch.testing.assert_close(table.detach(), expected)


def test_parameter_space_step_with_fixed_weights():
    # DD-style: the retention lives in parameter space. With the fixed solver (α_u = 1/4) one
    # SGD step is −lr·(¼ ∇L_AU + ¾ ∇L_R) w.r.t. the parameter, L_AU reached through reps = 3·θ.
    table = _table(6, 3)
    theta = table.clone().requires_grad_(True)
    anchor = torch.ones_like(table)

    def retention_loss(batch):
        return batch * (theta - anchor).square().sum()

    objective = _Shrink(target=-1.0)
    unlearner = Unlearner(
        lambda: 3.0 * theta,
        [theta],
        objective,
        TrainLossRetention(retention_loss, [2.0]),
        torch.optim.SGD([theta], lr=0.1),
        StopRule(1, 1, 0.0, 10),
        solver="fixed",
        fixed_alpha=0.25,
    )
    unlearner.step()
    start = table.clone().requires_grad_(True)
    l_au = objective(3.0 * start)
    l_r = 2.0 * (start - anchor).square().sum()
    (grad,) = torch.autograd.grad(0.25 * l_au + 0.75 * l_r, start)
    torch.testing.assert_close(theta.detach(), table - 0.1 * grad)
    assert unlearner.trace["alpha_u"] == [0.25]
    assert unlearner.trace["l_au"] == [pytest.approx(float(l_au.detach()))]
    assert unlearner.trace["l_r"] == [pytest.approx(float(l_r.detach()))]


def test_clip_grad_norm_bounds_the_step():
    table = _table()
    steps = {}
    for clip in (None, {"max_norm": 1e-3}):
        param = table.clone().requires_grad_(True)
        unlearner = Unlearner(
            lambda p=param: p,
            [param],
            _Shrink(target=-1.0),
            DistanceRetention(table),
            torch.optim.SGD([param], lr=1.0),
            StopRule(1, 1, 0.0, 10),
            clip_grad_norm=clip,
        )
        unlearner.step()
        steps[clip is None] = float((param.detach() - table).norm())
    assert steps[True] > 0.5  # unclipped: the unit direction at lr 1
    assert steps[False] == pytest.approx(1e-3, rel=1e-3)


def test_optimizers_match_recboles_learner_names():
    from recbole.trainer import Trainer

    param = torch.nn.Parameter(torch.ones(3))
    for name, cls in OPTIMIZERS.items():
        groups = param_groups([param], 0.02, relative=False)
        ours = build_optimizer(name.upper(), groups, 0.02)
        host = SimpleNamespace(
            config={"reg_weight": None},
            logger=None,
            model=torch.nn.Linear(1, 1),
            learner="adam",
            learning_rate=0.001,
            weight_decay=0.0,
        )
        theirs = Trainer._build_optimizer(
            host, params=groups, learner=name, learning_rate=0.02, weight_decay=0.0
        )
        assert type(ours) is type(theirs) is cls
        assert ours.defaults == theirs.defaults
    with pytest.raises(ValueError, match="unknown learner"):
        build_optimizer("adamax", param_groups([param], 0.02, False), 0.02)


def test_engine_imports_no_framework():
    code = (
        "import sys, recbole_attrcloak.engine; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'recbole', 'ray', 'sklearn'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def trained(toy_root, tmp_path_factory):
    from tests.conftest import toy_context

    return toy_context(toy_root, tmp_path_factory.mktemp("engine"), epochs=3, au_max_steps=40)


@pytest.mark.parametrize(
    ("mode", "objective"),
    [("df", "relabel"), ("dd", "relabel"), ("df", "gaussian"), ("dd", "gaussian")],
)
def test_adapter_and_engine_follow_the_same_trajectory(trained, mode, objective):
    """``--unlearn attrcloak`` on a trained BPR, and the engine built here by hand on a copy of
    its user table (the same tensors): the same steps, trace and unlearned table, for the
    default objective and the Gaussian bound."""
    import copy
    import dataclasses

    from recbole.data.interaction import Interaction

    from recbole_attrcloak.unlearning.attrcloak import run_attrcloak, training_history
    from recbole_attrcloak.unlearning.base import original_top_items

    config = copy.deepcopy(trained.config)
    config["au_mode"], config["au_objective"] = mode, objective
    adapter = run_attrcloak(dataclasses.replace(trained, config=config))

    model = copy.deepcopy(trained.model)
    table = model.user_embedding.weight
    seed = int(config["seed"])
    labels = {n: torch.as_tensor(lab.codes) for n, lab in trained.attributes.items()}
    bound = build_objective(labels, config, seed)
    settings = AttrCloakSettings.from_settings(config)
    original = table.detach()[1:].clone()
    if mode == "df":
        retention = DistanceRetention(original, first_row=1)
    else:
        history = training_history(trained.train_data, model)
        top, _ = original_top_items(model, settings.dd_topk, history)
        model.eval()

        def score(users, items):
            return model.predict(Interaction({"user_id": users, "item_id": items}))

        generator = torch.Generator().manual_seed(seed)
        excluded = history.scatter(1, top, True)
        retention = RankingRetention(score, top, excluded, original, 1, generator)
    groups = param_groups([table], settings.learning_rate, settings.relative_lr)
    optimizer = build_optimizer(settings.learner, groups, settings.learning_rate)
    engine = Unlearner(
        lambda: table,
        [table],
        bound,
        retention,
        optimizer,
        settings.stop,
        solver=settings.solver,
        fixed_alpha=settings.fixed_alpha,
        normalize_step=settings.normalize_step,
    ).run()

    info = adapter.info
    assert info["steps"] == engine.kept_step and info["stop_reason"] == engine.stop_reason
    assert len(engine.trace["l_au"]) > 3  # a real trajectory, not a first-step stop
    for key, values in engine.trace.items():
        assert info["trace"][key] == pytest.approx(values, rel=1e-6, abs=1e-9), key
    assert info["final_l_au"] == pytest.approx(engine.final, rel=1e-6)
    assert [t["name"] for t in info["terms"]] == [t.name for t in engine.terms]
    unlearned = adapter.model.user_embedding.weight.detach()
    torch.testing.assert_close(unlearned, table.detach(), rtol=1e-6, atol=1e-7)
    assert not torch.equal(unlearned, trained.model.user_embedding.weight.detach())


def test_relative_learning_rates_scale_with_each_tensors_rms():
    table = torch.full((2, 2), 0.5)  # RMS 0.5
    bias = torch.zeros(3)  # no scale of its own: the RMS of all user-side entries, sqrt(1/7)
    groups = param_groups([table, bias], 0.02, relative=True)
    assert [g["params"] for g in groups] == [[table], [bias]]
    assert groups[0]["lr"] == pytest.approx(0.01)
    assert groups[1]["lr"] == pytest.approx(0.02 * (1 / 7) ** 0.5)
    (single,) = param_groups([table, bias], 0.02, relative=False)
    assert single["lr"] == 0.02 and single["params"] == [table, bias]


class _MeanAtZero(_Shrink):
    """L_AU = (mean entry)²: a normalised step moves the mean by the learning rate, so a fixed
    step that does not divide the distance jumps over the target and back for ever."""

    def __call__(self, reps: torch.Tensor) -> torch.Tensor:
        loss = reps.mean().square()
        self.value = float(loss.detach())
        return loss


def _normalised(table, objective, lr: float, steps: int, adapt: bool):
    """(unlearner, optimizer): relabel's recipe (normalised SGD along L_AU alone) on ``table``."""
    param = table.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([param], lr=lr)
    unlearner = Unlearner(
        lambda: param,
        [param],
        objective,
        DistanceRetention(table),
        optimizer,
        StopRule(steps, 10, 0.0, 1000, halve_lr=False),
        solver="fixed",
        fixed_alpha=1.0,
        normalize_step=True,
        adapt_step=adapt,
    )
    return unlearner, optimizer


@pytest.mark.parametrize("adapt", [False, True])
def test_an_adapted_step_settles_where_a_fixed_normalised_step_jumps_over_the_target(adapt):
    unlearner, optimizer = _normalised(_table(), _MeanAtZero(target=1e-4), 0.3, 60, adapt)
    outcome = unlearner.run()
    lr = optimizer.param_groups[0]["lr"]
    if adapt:
        assert outcome.stop_reason == StopReason.TARGET_REACHED
        assert lr < 0.3  # halved after a step that jumped over
    else:
        assert outcome.stop_reason == StopReason.MAX_STEPS and lr == 0.3
        assert min(outcome.trace["l_au"]) > 1e-4  # circling the target at the step's distance


class _Direction(_Shrink):
    """L_AU whose gradient is the next of ``directions`` (a fixed sequence of unit vectors),
    whatever the state: the step's direction is set, not found."""

    def __init__(self, directions: list[torch.Tensor]) -> None:
        super().__init__(target=-1.0)
        self.directions = iter(directions)

    def __call__(self, reps: torch.Tensor) -> torch.Tensor:
        self.value = 1.0
        if not reps.requires_grad:
            return torch.tensor(1.0)
        return (reps * next(self.directions)).sum()


@pytest.mark.parametrize("turn", [True, False])
def test_the_adapted_step_halves_on_a_turn_back_and_not_on_noise(turn):
    table = _table(8, 2)
    e1, e2 = torch.zeros_like(table), torch.zeros_like(table)
    e1[:, 0], e2[:, 1] = 1.0, 1.0
    # a turn back: e1, −e1, e1 ...; noise: successive directions orthogonal, e1, e2, e1 ...
    second = -e1 if turn else e2
    directions = [e1, second, e1, second, e1, second]
    unlearner, optimizer = _normalised(table, _Direction(directions), 0.2, 6, True)
    for _ in directions:
        unlearner.step()
    lr = optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(0.2 * 0.5**5 if turn else 0.2)
