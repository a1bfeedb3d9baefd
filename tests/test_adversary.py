"""The RAP adversary on plain tensors (recbole_attrcloak.losses.adversary): what each game sends
to the attackers and to the representations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recbole_attrcloak.losses import AdversaryGame, AttributeAdversary


def _setup(game: AdversaryGame, weight: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    reps = torch.randn(40, 6, generator=g, dtype=torch.float64)
    targets = {
        "gender": torch.randint(0, 2, (40,), generator=g),
        "age": torch.randint(-1, 4, (40,), generator=g),  # -1: unknown
    }
    torch.manual_seed(seed)
    adversary = AttributeAdversary(6, {"gender": 2, "age": 4}, 8, weight, game).double()
    return reps, targets, adversary


def _plain(adversary: AttributeAdversary, reps, targets) -> torch.Tensor:
    """The attackers' mean cross-entropy, computed by hand."""
    terms = []
    for name, attacker in adversary.attackers.items():
        known = targets[name] >= 0
        terms.append(F.cross_entropy(attacker(reps[known]), targets[name][known]))
    return torch.stack(terms).mean()


def _grads(adversary, reps, loss):
    params = list(adversary.parameters())
    return torch.autograd.grad(loss, [reps, *params], allow_unused=True)


@pytest.mark.parametrize("game", list(AdversaryGame))
def test_value_and_attacker_gradient_are_the_plain_cross_entropy(game):
    reps, targets, adversary = _setup(game, 3.0)
    reps.requires_grad_(True)
    value = adversary(reps, targets)
    want = _plain(adversary, reps, targets)
    torch.testing.assert_close(value, want)
    got = _grads(adversary, reps, value)[1:]
    expected = _grads(adversary, reps, want)[1:]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_minimax_reverses_the_gradient_on_the_representations():
    reps, targets, adversary = _setup(AdversaryGame.MINIMAX, 3.0)
    reps.requires_grad_(True)
    got = _grads(adversary, reps, adversary(reps, targets))[0]
    plain = _grads(adversary, reps, _plain(adversary, reps, targets))[0]
    assert plain.abs().sum() > 0
    torch.testing.assert_close(got, -3.0 * plain)


def test_confusion_pushes_the_predictions_toward_uniform():
    reps, targets, adversary = _setup(AdversaryGame.CONFUSION, 3.0)
    reps.requires_grad_(True)
    got = _grads(adversary, reps, adversary(reps, targets))[0]
    terms = []
    for name, attacker in adversary.attackers.items():
        known = targets[name] >= 0
        terms.append(-F.log_softmax(attacker(reps[known]), 1).mean())
    uniform_ce = torch.stack(terms).mean()
    torch.testing.assert_close(got, 3.0 * _grads(adversary, reps, uniform_ce)[0])
    # one small step along the pushed direction makes the attackers less sure
    with torch.no_grad():
        before = float(uniform_ce)
        after = float(
            torch.stack(
                [
                    -F.log_softmax(a((reps - 1e-3 * got)[targets[n] >= 0]), 1).mean()
                    for n, a in adversary.attackers.items()
                ]
            ).mean()
        )
    assert after < before


@pytest.mark.parametrize("game", list(AdversaryGame))
def test_weight_zero_leaves_the_representations_alone(game):
    reps, targets, adversary = _setup(game, 0.0)
    reps.requires_grad_(True)
    assert float(_grads(adversary, reps, adversary(reps, targets))[0].abs().sum()) == 0.0


def test_minimax_push_vanishes_for_a_confident_attacker_confusion_does_not():
    """A confident, correct attacker: its cross-entropy is ~0, so minimax sends (almost) nothing
    to the representations, while the confusion loss is largest there."""
    pushes = {}
    for game in AdversaryGame:
        reps = torch.tensor([[4.0], [-4.0]] * 10, dtype=torch.float64, requires_grad=True)
        targets = {"gender": torch.tensor([1, 0] * 10)}
        adversary = AttributeAdversary(1, {"gender": 2}, 1, 1.0, game).double()
        with torch.no_grad():  # logits (5 - 10·relu(x), 10·relu(x) - 5): margin >= 10
            hidden, out = adversary.attackers["gender"][0], adversary.attackers["gender"][2]
            hidden.weight.fill_(1.0), hidden.bias.fill_(0.0)
            out.weight.copy_(torch.tensor([[-10.0], [10.0]], dtype=torch.float64))
            out.bias.copy_(torch.tensor([5.0, -5.0], dtype=torch.float64))
        value = adversary(reps, targets)
        assert value.item() < 1e-3
        pushes[game] = float(torch.autograd.grad(value, reps)[0].abs().sum())
    assert pushes[AdversaryGame.MINIMAX] < 1e-2 < pushes[AdversaryGame.CONFUSION]


def test_bad_arguments():
    with pytest.raises(ValueError, match="weight must be >= 0"):
        AttributeAdversary(4, {"g": 2}, 8, -1.0)
    with pytest.raises(ValueError, match=">= 2 classes"):
        AttributeAdversary(4, {"g": 1}, 8, 1.0)
    with pytest.raises(ValueError, match="positive sizes"):
        AttributeAdversary(0, {"g": 2}, 8, 1.0)
    with pytest.raises(ValueError, match="'zero-sum' is not a valid AdversaryGame"):
        AttributeAdversary(4, {"g": 2}, 8, 1.0, "zero-sum")
