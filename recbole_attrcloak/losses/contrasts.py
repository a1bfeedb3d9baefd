"""Contrast statistics (``au_contrasts``): per attribute and kernel, the z of the kernel's most
whitened critic (the smallest ridge) minus the z of its raw one, over the spread of that
difference under label permutations.

Both are U-statistics over the same pairs of users with the same labels, so under permutations
they move together: their correlation ρ is Σ_{u≠v} k_uv k'_uv / √(Σ k_uv² · Σ k'_uv²) with the
pairs taken as independent, as for their spreads (``kernel_critics.pair_correlation``), and the
difference of the two z has spread √(2 − 2ρ). A state whose raw statistic sits high while the
whitened one sits low (the class means still apart along the high-variance directions,
over-corrected along the others) passes each critic alone, not this.

Pure torch; no RecBole, Ray or scikit-learn import.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import torch
from torch import Tensor

from recbole_attrcloak.losses.attribute_labels import LabelBlock
from recbole_attrcloak.losses.kernel_critics import INF, Critic, CriticMetric, pair_correlation


def contrast_statistics(
    metrics: Mapping[Critic, CriticMetric],
    blocks: Sequence[LabelBlock],
    class_labelings: Collection[str],
    scored: Mapping[tuple[str, str], tuple[Tensor, Tensor]],
) -> dict[tuple[str, str], tuple[Tensor, Tensor]]:
    """(attribute, ``<kernel>/contrast``) → (z_whitened − z_raw, √(2 − 2ρ)) for every attribute
    of ``blocks`` but the one-vs-rest labelings, from one kernel's critics ``metrics`` and their
    (excess, spread) in ``scored``; empty when the kernel has no raw or no ridged critic."""
    ridged = [c for c in metrics if c.ridge != INF]
    raw = next((c for c in metrics if c.ridge == INF), None)
    if raw is None or not ridged:
        return {}
    low = min(ridged, key=lambda c: c.ridge)
    kernel = raw.name.split("/")[0]
    found = {}
    for block in blocks:
        names = [n for n in block.names if n not in class_labelings]
        if not names:
            continue
        rho = pair_correlation(metrics[raw], metrics[low], block)
        spread = torch.sqrt((2.0 - 2.0 * rho).clamp_min(1e-6))
        for name in names:
            (e_low, s_low), (e_raw, s_raw) = scored[name, low.name], scored[name, raw.name]
            found[name, f"{kernel}/contrast"] = (e_low / s_low - e_raw / s_raw, spread)
    return found
