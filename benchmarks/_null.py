"""The audit of every AttrCloak run read against its own null, in both directions: null.csv
(per run, attribute, protocol and attacker: the balanced accuracy on the true labels, the mean
of the same attack on permuted labels, and the one-sided p-values above and below) and the
``null_default`` block (per backbone and mode, the attacks farthest above and below their null,
and how many per-attack tests fall at p ≤ 0.05 in each direction against what chance gives).
An attacker far below its null leaks as much as one above it: inverting its predictions reads
the attribute.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from _grid import ALPHA, MODES
from _tables import read_csv
from _terms import attrcloak_reports

from recbole_attrcloak.tune.results import markdown_table


def null_table(reports: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per AttrCloak run, attribute, protocol and attacker of the unlearned stage's
    permutation tests (``privacy.<attribute>.significance`` of report.json)."""
    rows = []
    for run, report in attrcloak_reports(reports):
        privacy = report["stages"]["unlearned"]["privacy"]
        for attribute, result in privacy.items():
            for protocol, tests in (result.get("significance") or {}).items():
                for attacker, test in tests.items():
                    observed, null = test["observed"], test["null_mean"]
                    rows.append(
                        {k: run[k] for k in keys}
                        | {"seed": int(run["seed"]), "attribute": attribute}
                        | {"protocol": protocol, "attacker": attacker, "observed": observed}
                        | {"null_mean": null, "minus_null": observed - null}
                        | {"p_above": test["p_value"], "p_below": test["p_value_below"]}
                    )
    columns = [*keys, "seed", "attribute", "protocol", "attacker", "observed", "null_mean"]
    return pd.DataFrame(rows, columns=[*columns, "minus_null", "p_above", "p_below"])


def _extreme(group: pd.DataFrame, largest: bool) -> str:
    """The attack whose mean (over seeds) balanced accuracy minus its null mean is largest
    (or smallest), as ``+0.012 (age, kfold/logreg)``."""
    means = group.groupby(["attribute", "protocol", "attacker"])["minus_null"].mean()
    key = means.idxmax() if largest else means.idxmin()
    return f"{means[key]:+.3f} ({key[0]}, {key[1]}/{key[2]})"


def null_block(results: Path, link: str) -> str:
    """Per backbone and mode: the attacks farthest above and below their permuted-label null
    (mean over seeds) and the per-attack tests at p ≤ 0.05 in each direction."""
    table, _, _ = read_csv(results / "null.csv")
    rows = []
    for (model, method), group in table.groupby(["model", "method"], sort=False):
        tests = len(group)
        above, below = ((group[c] <= ALPHA).sum() for c in ("p_above", "p_below"))
        rows.append(
            [
                model,
                MODES[method].upper(),
                group["seed"].nunique(),
                _extreme(group, True),
                _extreme(group, False),
                f"{above} / {below} of {tests} (chance: {ALPHA * tests:.1f} each)",
            ]
        )
    head = (
        f"The unlearned embeddings' audit against its own null (the same attack on permuted "
        f"labels), from [null.csv]({link}/null.csv): balanced accuracy minus the null's mean, "
        f"mean over seeds, for the attack farthest above and farthest below; and the per-attack "
        f"one-sided tests at p ≤ {ALPHA} above / below (every attribute, protocol, attacker and "
        f"seed; each attack's test counts once, the trees' folds combined):"
    )
    header = ["model", "mode", "seeds", "farthest above", "farthest below", "tests at p ≤ 0.05"]
    return "\n".join([head, "", *markdown_table(header, rows)])
