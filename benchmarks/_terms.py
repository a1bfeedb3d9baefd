"""Where each AttrCloak run ended against the random-relabeling null: terms.csv (the final z of
every attribute-level statistic of L_AU, from each run's report.json, and the largest |z| of its
one-vs-rest statistics), and the ``terms`` block, which puts the final z of the linear and
cross-fitted statistics beside what the audit's linear attacker reads, both signed: an
over-correction shows as negative values in both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from _grid import MODES
from _tables import read_csv

from recbole_attrcloak.tune.results import markdown_table
from recbole_attrcloak.tune.workdir import read_outcome

# the statistics the block shows (critic names of losses.relabel / losses.crossfit)
BLOCK_CRITICS = (
    "linear/ridge=inf",
    "linear/ridge=0.1",
    "linear/contrast",
    "crossfit/ridge=1",
    "crossfit/diagonal=2",
)


def attrcloak_reports(reports: pd.DataFrame) -> Iterator[tuple[pd.Series, dict[str, Any]]]:
    """Each finished AttrCloak run of ``reports`` (``load_run``'s rows) with its report.json."""
    for _, run in reports[reports["method"].isin(MODES)].iterrows():
        folder = run.get("folder")
        report = read_outcome(Path(folder))[0] if isinstance(folder, str) and folder else None
        if report is not None:
            yield run, report


def terms_table(reports: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per AttrCloak run and term: ``keys``, the seed, the run's stop rule and kept
    step, the term (attribute/critic, with its column block if any), its final z and whether
    it met its tolerance. One-vs-rest terms (attribute=class) are summarised per attribute and
    critic by the largest |z| (``term``: attribute=*/critic, ``z``: that |z|)."""
    rows = []
    for run, report in attrcloak_reports(reports):
        unlearning = report.get("unlearning") or {}
        base = {k: run[k] for k in keys} | {
            "seed": int(run["seed"]),
            "stop_reason": unlearning.get("stop_reason"),
            "kept_step": unlearning.get("steps"),
        }
        classes: dict[str, tuple[float, bool]] = {}
        for term in unlearning.get("terms") or []:
            attribute, _, critic = term["name"].removesuffix("/z").partition("/")
            if "=" in attribute:  # one class against the rest: keep the worst
                key = f"{attribute.split('=')[0]}=*/{critic}"
                z, met = classes.get(key, (0.0, True))
                classes[key] = (max(z, abs(float(term["value"]))), met and bool(term["met"]))
            else:
                name, z, met = f"{attribute}/{critic}", term["value"], bool(term["met"])
                rows.append(base | {"term": name, "z": z, "met": met})
        rows += [base | {"term": k, "z": z, "met": met} for k, (z, met) in classes.items()]
    columns = [*keys, "seed", "stop_reason", "kept_step", "term", "z", "met"]
    return pd.DataFrame(rows, columns=columns)


def terms_block(results: Path, link: str) -> str:
    """Mean final z (over seeds) of the linear and cross-fitted statistics of each attribute,
    per backbone and mode, beside the k-fold logistic regression's mean balanced accuracy minus
    chance (signed) from privacy.csv."""
    terms, _, _ = read_csv(results / "terms.csv")
    privacy, _, _ = read_csv(results / "privacy.csv")
    logreg = privacy[(privacy["protocol"] == "kfold") & (privacy["attacker"] == "logreg")]
    gap = logreg.set_index(["model", "method", "attribute"])["signed_gap"]
    terms = terms[~terms["term"].str.contains("@block")]  # the whole representation only
    terms = terms.assign(
        attribute=terms["term"].str.split("/").str[0],
        critic=terms["term"].str.split("/", n=1).str[1],
    )
    terms = terms[terms["critic"].isin(BLOCK_CRITICS) & ~terms["attribute"].str.contains("=")]
    means = terms.groupby(["model", "method", "attribute", "critic"], sort=False)["z"].mean()
    seeds = terms.groupby(["model", "method"], sort=False)["seed"].nunique()
    rows = []
    for (model, method, attribute), z in means.groupby(level=[0, 1, 2], sort=False):
        z = z.droplevel([0, 1, 2])
        rows.append(
            {
                "model": model,
                "mode": MODES[method].upper(),
                "attribute": attribute,
                **{f"z {c}": f"{z[c]:+.2f}" if c in z else "–" for c in BLOCK_CRITICS},
                "logreg": f"{gap.get((model, method, attribute), float('nan')):+.3f}",
                "seeds": int(seeds[(model, method)]),
            }
        )
    head = (
        f"Final z of each attribute's linear and cross-fitted statistics (mean over seeds; a "
        f"random relabeling's z has mean 0 and SD about 1) and the audit's k-fold logistic "
        f"regression (mean balanced accuracy − chance, signed), from "
        f"[terms.csv]({link}/terms.csv) and [privacy.csv]({link}/privacy.csv):"
    )
    header = ["model", "mode", "attribute", *(f"z {c}" for c in BLOCK_CRITICS)]
    header += ["k-fold logreg − chance", "seeds"]
    return "\n".join([head, "", *markdown_table(header, [r.values() for r in rows])])
