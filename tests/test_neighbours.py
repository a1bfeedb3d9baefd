"""Neighbourhood critics (losses/neighbours.py): the exact nearest-neighbour graph, a statistic
calibrated against label permutations, and local leakage that kNN attackers read and the
Gaussian kernels' random features miss, seen and removed."""

from __future__ import annotations

import torch

from recbole_attrcloak.losses import RelabelingNull
from recbole_attrcloak.losses.attribute_labels import _attribute
from recbole_attrcloak.losses.neighbours import edge_distances, graph_statistic, knn_graph
from tests.test_relabel import _attack, _unlearn


def _clusters(n: int = 800, d: int = 32, purity: float = 0.6, seed: int = 0):
    """40 small clusters; a user's label is its cluster's (mod 4) with probability ``purity``:
    same-label neighbours, and no class-mean difference to speak of."""
    g = torch.Generator().manual_seed(seed)
    cluster = torch.randint(0, 40, (n,), generator=g)
    centres = torch.randn(40, d, generator=g, dtype=torch.float64)
    x = 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64) + centres[cluster]
    y = torch.randint(0, 4, (n,), generator=g)
    y = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < purity, cluster % 4, y)
    return x, y


def test_the_graph_is_each_rows_nearest_other_rows():
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    idx, dist_sq = knn_graph(x, 7, chunk=64)  # several chunks
    full = torch.cdist(x, x).square()
    full.fill_diagonal_(torch.inf)
    near, which = full.topk(7, dim=1, largest=False)
    assert torch.equal(idx, which)
    torch.testing.assert_close(dist_sq, near)


def test_the_statistic_follows_its_permutation_null():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 6, generator=g, dtype=torch.float64)
    attr = _attribute("a", torch.randint(0, 3, (300,), generator=g), 2)
    idx, dist_sq = knn_graph(x, 10)
    scale = dist_sq.mean(1)
    edges = edge_distances(x, idx)
    excess, spread = graph_statistic(edges, idx, scale, attr.labels, attr.label_sq, attr.pair_sq)
    draws = []
    for _ in range(1500):
        labels = attr.labels[torch.randperm(300, generator=g)]
        draw = graph_statistic(edges, idx, scale, labels, attr.label_sq, attr.pair_sq)[0]
        draws.append(float(draw))
    draws = torch.tensor(draws, dtype=torch.float64)
    assert abs(float(draws.mean())) < 0.1 * float(spread)  # the null mean is exact
    assert 0.8 < float(draws.std() / spread) < 1.25  # the pair formula, with mutual edges


def test_local_leakage_is_seen_by_the_neighbourhood_critics():
    x, y = _clusters()
    objective = RelabelingNull({"a": y}, neighbours=[15, 50], seed=0)
    objective.check(x)
    assert objective.checked["a", "knn15"] > 10
    noise = RelabelingNull({"a": y[torch.randperm(len(y))]}, neighbours=[15, 50], seed=0)
    noise.check(x)
    assert abs(noise.checked["a", "knn15"]) < 3


def test_the_neighbourhood_critics_remove_what_a_knn_attacker_reads_and_the_kernels_leave():
    x, y = _clusters(purity=0.5)
    x = x.float()
    assert _attack(x, y, "knn") > 0.4  # planted: chance is 0.25
    only = {"au_class_critics": False, "au_crossfit": []}  # the kernel critics alone
    kernels, outcome = _unlearn(x, {"a": y}, au_max_steps=400, au_neighbours=[], **only)
    assert outcome.stop_reason == "target_reached"
    assert _attack(kernels, y, "knn") > 0.4  # every kernel critic at target, kNN still reads it
    after, outcome = _unlearn(x, {"a": y}, au_max_steps=400, au_neighbours=[15, 50], **only)
    assert outcome.stop_reason == "target_reached"
    assert abs(_attack(after, y, "knn") - 0.25) < 0.05
