"""Activation checkpointing of the critic families (losses/recompute.py): above ``segment_rows``
users a step recomputes each family in its backward pass. The loss and its gradient must be
those of the plain pass, call after call (the families' random draws made once, outside the
recomputation), while the forward pass keeps far fewer bytes for the backward."""

from __future__ import annotations

import torch
import yaml

from recbole_attrcloak.config import PROPERTIES
from recbole_attrcloak.losses import RelabelingNull
from recbole_attrcloak.losses.kernel_critics import default_critics


def _planted(n: int = 300, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Users with a gender shift along one axis and a three-class age that stretches another."""
    g = torch.Generator().manual_seed(seed)
    gender = (torch.rand(n, generator=g) < 0.4).long()
    age = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[:, 0] += 0.6 * gender
    x[:, 1] *= 1.0 + 0.5 * age
    return x, {"gender": gender, "age": age}


def _objective(labels: dict, segment_rows: int | None) -> RelabelingNull:
    """Every family of the default on: kernels with ridges and squares, contrasts, one-vs-rest,
    the quadratic and the cross-fitted critics (ridge and diagonal)."""
    return RelabelingNull(
        labels,
        critics=default_critics((1.0,), (float("inf"), 0.1), squares=True),
        n_features=32,
        class_critics=True,
        crossfit=(1.0,),
        crossfit_diagonal=(2.0,),
        contrasts=True,
        quadratic=True,
        margin=0.0,
        seed=3,
        segment_rows=segment_rows,
    )


def _steps(objective: RelabelingNull, x: torch.Tensor, calls: int = 2) -> list:
    """The loss and its gradient at ``x`` and at two moved states (fresh draws each call)."""
    with torch.no_grad():
        objective(x)  # the original state fixes the standardisation
    out = []
    for i in range(calls):
        state = (x + 0.05 * i * torch.sin(x)).requires_grad_()
        loss = objective(state)
        (grad,) = torch.autograd.grad(loss, state)
        out.append((loss.detach(), grad))
    return out


def _saved_bytes(objective: RelabelingNull, x: torch.Tensor) -> int:
    """Bytes the forward pass of one step keeps for its backward pass."""
    with torch.no_grad():
        objective(x)
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    state = x.clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        objective(state)
    return total[0]


def test_recomputed_families_give_the_plain_loss_and_gradient_call_after_call():
    x, labels = _planted()
    plain = _steps(_objective(labels, None), x)
    recomputed = _steps(_objective(labels, 0), x)
    for (loss_a, grad_a), (loss_b, grad_b) in zip(plain, recomputed, strict=True):
        assert float(loss_a) > 0.0 and float(grad_a.norm()) > 0.0  # the planted leak pulls
        torch.testing.assert_close(loss_b, loss_a, rtol=1e-10, atol=0.0)
        torch.testing.assert_close(grad_b, grad_a, rtol=1e-8, atol=1e-12)


def test_recomputed_families_keep_a_fraction_of_the_bytes_for_the_backward_pass():
    x, labels = _planted()
    plain = _saved_bytes(_objective(labels, None), x)
    recomputed = _saved_bytes(_objective(labels, 0), x)
    assert recomputed < 0.2 * plain, (recomputed, plain)


def test_small_user_sets_are_not_recomputed():
    x, labels = _planted()
    default = _saved_bytes(_objective(labels, 10 * len(x)), x)
    assert default == _saved_bytes(_objective(labels, None), x)


def test_the_setting_sets_from_how_many_users_a_step_recomputes():
    settings = yaml.safe_load((PROPERTIES / "overall.yaml").read_text())
    _, labels = _planted()
    assert RelabelingNull.from_settings(labels, settings, 0).segment_rows == 50_000
    never = RelabelingNull.from_settings(labels, {**settings, "au_recompute_users": None}, 0)
    always = RelabelingNull.from_settings(labels, {**settings, "au_recompute_users": 0}, 0)
    assert never.segment_rows is None and always.segment_rows == 0


def test_a_recomputation_reuses_the_cross_fitted_nulls_of_its_first_pass(monkeypatch):
    """The permutation nulls carry no gradient: the backward pass's recomputation takes them
    from the first pass instead of refitting every permutation again."""
    import recbole_attrcloak.losses.crossfit as crossfit

    x, labels = _planted()
    groups = crossfit._groups_of

    def null_passes(segment_rows: int | None) -> int:
        calls = [0]

        def counting(permutations, values_each):
            calls[0] += 1
            return groups(permutations, values_each)

        monkeypatch.setattr(crossfit, "_groups_of", counting)
        objective = _objective(labels, segment_rows)
        with torch.no_grad():
            objective(x)
        state = x.clone().requires_grad_()
        loss = objective(state)
        calls[0] = 0  # from here: the step's backward pass
        torch.autograd.grad(loss, state)
        return calls[0]

    assert null_passes(None) == 0
    assert null_passes(0) == 0
