"""Markdown pieces shared by the benchmark summaries, rendered from their CSVs alone (so that
``python benchmarks/check.py`` can re-render and compare them): the provenance head, the
attacks of one cell under both protocols, each run's verdicts, and the acceptance view."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from _grid import ALPHA, BARS
from _tables import LABELS

from recbole_attrcloak.audit import ATTACKERS
from recbole_attrcloak.tune.results import markdown_table, pm

ATTACKER_NAMES = {
    "mlp": "MLP",
    "xgboost": "XGB",
    "logreg": "LogReg",
    "svm_rbf": "SVM",
    "knn": "kNN",
    "random_forest": "RF",
}


def head_lines(title: str, head: Sequence[str]) -> list[str]:
    """The top of a summary: its title, then every provenance line as a paragraph."""
    lines = [f"# {title}", ""]
    for line in head:
        lines += [line, ""]
    return lines


def select(frame: pd.DataFrame, where: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of ``frame`` whose columns equal ``where``'s values."""
    for key, value in where.items():
        frame = frame[frame[key] == value]
    return frame


def method_order(methods: Sequence[str]) -> list[str]:
    """Methods in the catalogue's order."""
    return [m for m in LABELS if m in set(methods)]


def attack_tables(privacy: pd.DataFrame, where: Mapping[str, Any]) -> list[str]:
    """Per attribute: balanced accuracy of every attacker, shadow / k-fold (mean ± std over
    seeds) per method, and the worst |mean − chance| over both protocols."""
    part = select(privacy, where)
    lines = []
    for attr in dict.fromkeys(part["attribute"]):
        rows_of = part[part["attribute"] == attr]
        attackers = [a for a in ATTACKERS if a in set(rows_of["attacker"])]
        first = rows_of.iloc[0]
        lines += [
            f"**{attr}**: chance {first['chance']:.3f}, majority {first['majority']:.3f}. Balanced "
            "accuracy, shadow / k-fold, mean ± std over seeds; worst: the largest |mean − "
            "chance| over both protocols.",
            "",
        ]
        rows = []
        for method in method_order(rows_of["method"]):
            mine = rows_of[rows_of["method"] == method]
            cells = [_protocols(mine[mine["attacker"] == a]) for a in attackers]
            worst = mine.loc[mine["gap"].idxmax()]
            where_worst = f"{worst['protocol']} {ATTACKER_NAMES[worst['attacker']]}"
            n = int(mine["n_seeds"].max())
            rows.append([LABELS[method], n, *cells, f"{worst['gap']:.3f} ({where_worst})"])
        names = [ATTACKER_NAMES[a] for a in attackers]
        lines += markdown_table(["method", "n", *names, "worst"], rows)
    return lines


def _protocols(rows: pd.DataFrame) -> str:
    cells = []
    for protocol in ("shadow", "kfold"):
        r = rows[rows["protocol"] == protocol]
        ok = not r.empty
        cells.append(
            pm(r["balanced_accuracy"].iloc[0], r["balanced_accuracy_std"].iloc[0]) if ok else "–"
        )
    return " / ".join(cells)


def verdict_table(runs: pd.DataFrame, where: Mapping[str, Any]) -> list[str]:
    """Each run's two-sided familywise p-value and verdict per attribute (the audit's
    ``strongest``), and whether the test rejects at 0.05 on some attribute."""
    part = select(runs, where) if not runs.empty else runs
    attributes = [c.split("/")[0] for c in part.columns if c.endswith("/p_two_sided")]
    if part.empty or part[[f"{a}/p_two_sided" for a in attributes]].isna().all(axis=None):
        return ["No per-run verdicts in these results.", ""]
    rows = []
    for _, r in part.iterrows():
        cells = [_verdict(r[f"{a}/p_two_sided"], r[f"{a}/verdict"]) for a in attributes]
        rejected = "–" if pd.isna(r["rejected"]) else ("**yes**" if _true(r["rejected"]) else "no")
        p_run = r.get("p_run", float("nan"))
        verdict = "–" if pd.isna(p_run) else f"{p_run:.2g}" + (" **yes**" if p_run <= ALPHA else "")
        rows.append([LABELS[r["method"]], int(r["seed"]), *cells, rejected, verdict])
    lines = [
        f"**Verdicts**: per run and attribute, the audit's two-sided familywise p-value and "
        f"verdict (leak: above chance, below: over-correction, none); rejected: p ≤ {ALPHA} on "
        "some attribute; run p: the run's familywise p over its attributes (the smallest times "
        f"their number, the report's verdict), **yes** at or below {ALPHA}.",
        "",
    ]
    return lines + markdown_table(["method", "seed", *attributes, "rejected", "run p"], rows)


def _true(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "1.0")


def _verdict(p_value: float, word: Any) -> str:
    if pd.isna(p_value):
        return "–"
    word = "" if pd.isna(word) else str(word)
    text = f"p={p_value:.2g} {word}".strip()
    return f"**{text}**" if p_value <= ALPHA else text


def criterion_text(r: Mapping[str, Any]) -> str:
    """One criterion of acceptance.csv in words: the value, the threshold, met / not met and
    by how much."""
    label, measured, threshold = r["criterion"], r["measured"], r["threshold"]
    percent = label.startswith("NDCG") or label.startswith("DD ≤")
    value = _number(measured, percent, label)
    if pd.isna(threshold):
        return value
    sense = "≥" if label.startswith("NDCG") else "≤"
    margin = _number(abs(r["margin"]), percent, label, points=True)
    verdict = f"met by {margin}" if _true(r["met"]) else f"**not met** by {margin}"
    return f"{value} ({sense} {_number(threshold, percent, label)}): {verdict}"


def _number(value: float, percent: bool, label: str, points: bool = False) -> str:
    if pd.isna(value):
        return "–"
    if percent:
        return f"{100 * value:.1f} pt" if points else f"{100 * value:.1f} %"
    if "rejected" in label:
        return f"{value:.0f}"
    if label.startswith("DF unlearning"):
        return f"{value:.2f} s"
    return f"{value:.3f}"


def acceptance_lines(acceptance: pd.DataFrame, cell: Sequence[str]) -> list[str]:
    """Issue 12's acceptance view: per cell and mode the runs the two-sided test rejects, the
    worst attacker against the band and NDCG@10 kept against its target; per dataset the
    rejections against what is allowed; the speed targets."""
    if acceptance.empty:
        return ["No AttrCloak run yet: nothing to judge.", ""]
    bands = ", ".join(
        f"{d}: ±{b.band} and NDCG@10 kept ≥ {100 * b.kept['dd']:.0f} % (DD) / "
        f"{100 * b.kept['df']:.0f} % (DF), at most {b.rejections} run(s) rejected"
        for d, b in BARS.items()
    )
    lines = [f"Issue 12's bar ({bands}); means over seeds, n = seeds.", ""]
    per_cell = acceptance[acceptance["mode"].notna()]
    rows = []
    for key, part in per_cell.groupby([*cell, "mode"], sort=False):
        by = dict(zip(part["criterion"], part.to_dict("records"), strict=True))
        rejected = next((v for k, v in by.items() if k.startswith("runs rejected")), None)
        worst = next((v for k, v in by.items() if k.startswith("worst")), None)
        kept = by.get("NDCG@10 kept")
        if worst is None:
            continue
        rows.append(
            [
                " · ".join(_label(c, k) for c, k in zip(cell, key[:-1], strict=True)),
                key[-1].upper(),
                int(part["n_seeds"].max()),
                rejected["detail"] if rejected else "–",
                f"{criterion_text(worst)}; {worst['detail']}",
                criterion_text(kept) if kept else "–",
            ]
        )
    header = ["cell", "mode", "n", "runs rejected", "worst \\|mean − chance\\|", "NDCG@10 kept"]
    lines += markdown_table(header, rows)
    for _, r in acceptance[acceptance["mode"].isna()].iterrows():
        lines.append(f"- {r['dataset']}: {r['criterion']}: {criterion_text(r)} ({r['detail']}).")
    speed = per_cell[per_cell["criterion"].str.contains("≤ 2 s|25 %", regex=True)]
    for _, r in speed.iterrows():
        where = " · ".join(_label(k, r[k]) for k in cell)
        lines.append(f"- {where}: {r['criterion']}: {criterion_text(r)} ({r['detail']}).")
    return [*lines, ""]


def _label(key: str, value: Any) -> str:
    """A cell's key as text (an embedding size as ``d = 64``, also when a CSV read it as a
    float)."""
    return f"d = {int(value)}" if key == "embedding_size" else str(value)


def fraction(value: float) -> str:
    """A share as a percentage with one decimal, ``–`` when missing."""
    return "–" if value is None or math.isnan(value) else f"{value:.1%}"
