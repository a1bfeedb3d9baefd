"""The grid's numbers, shared by paper_tables.py and embedding_size.py: from one row per run
(a job's flattened report) to the tables their CSVs hold — privacy per attacker under both
protocols (mean ± std over seeds, n), each run's audit verdicts, and issue 12's acceptance
view (two-sided familywise rejections, the worst attacker against the band, NDCG@10 kept
against its target, the speed targets).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recbole_attrcloak.audit import ATTACKERS
from recbole_attrcloak.audit.core import overall_verdict
from recbole_attrcloak.tune.results import aggregate, attributes_in, gap_columns

PROTOCOLS = {"": "shadow", "kfold/": "kfold"}
ALPHA = 0.05  # the audit's level: a two-sided familywise p-value at or below it rejects
VERDICT_WORDS = {"leakage": "leak", "below chance": "below"}


@dataclass(frozen=True)
class Bar:
    """Issue 12's acceptance on one dataset: every attacker's mean balanced accuracy within
    ``band`` of chance (both protocols), NDCG@10 kept at least ``kept[mode]``, and at most
    ``rejections`` runs of the dataset's AttrCloak runs rejected by the two-sided test."""

    band: float
    kept: Mapping[str, float]
    rejections: int


BARS = {
    "ml-100k": Bar(0.04, {"dd": 0.99, "df": 0.98}, 1),  # 1 of 18 runs: what chance gives
    "ml-1m": Bar(0.02, {"dd": 0.98, "df": 0.97}, 0),  # "the same two-sided test passes"
}
MODES = {"attrcloak-dd": "dd", "attrcloak-df": "df"}


@dataclass(frozen=True)
class Speed:
    """A speed target of issue 12 (CPU): ``column`` of ``method`` on (dataset, model) at most
    ``threshold``."""

    label: str
    method: str
    dataset: str
    model: str
    column: str
    threshold: float


SPEEDS = (
    Speed("DF unlearning ≤ 2 s", "attrcloak-df", "ml-100k", "BPR", "seconds", 2.0),
    Speed("DD ≤ 25 % of the original's training", "attrcloak-dd", "ml-100k", "BPR", "ratio", 0.25),
)


def attacker_columns(frame: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """(attribute, protocol, attacker, column prefix) of every attack the audits ran."""
    found = []
    for attr in attributes_in(frame):
        for prefix, protocol in PROTOCOLS.items():
            for attacker in ATTACKERS:
                column = f"{attr}/{prefix}{attacker}"
                if f"{column}/balanced_accuracy" in frame:
                    found.append((attr, protocol, attacker, column))
    return found


def privacy_table(
    frame: pd.DataFrame,
    keys: Sequence[str],
    paper: Callable[[Mapping, str, str], float] | None = None,
) -> pd.DataFrame:
    """privacy.csv: per ``keys`` (without the seed), attribute, protocol and attacker: mean and
    std over seeds of balanced and raw accuracy, chance, majority, the gap |mean − chance| and
    its sign, n (seeds), and ``paper(row, attribute, attacker)``'s raw accuracy (shadow only)."""
    rows = []
    for group, part in frame.groupby(list(keys), sort=False):
        group = dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True))
        for attr, protocol, attacker, column in attacker_columns(part):
            values = part[f"{column}/balanced_accuracy"].dropna()
            if values.empty:
                continue
            chance = float(part[f"{attr}/chance"].iloc[0])
            mean = float(values.mean())
            accuracy = part[f"{column}/accuracy"].dropna()
            theirs = paper(group, attr, attacker) if paper and protocol == "shadow" else math.nan
            rows.append(
                group
                | {"attribute": attr, "protocol": protocol, "attacker": attacker}
                | {"balanced_accuracy": mean, "balanced_accuracy_std": _std(values)}
                | {"accuracy": float(accuracy.mean()), "accuracy_std": _std(accuracy)}
                | {"chance": chance, "majority": float(part[f"{attr}/majority"].iloc[0])}
                | {"gap": abs(mean - chance), "signed_gap": mean - chance}
                | {"paper_accuracy": theirs, "n_seeds": len(values)}
            )
    return pd.DataFrame(rows)


def _std(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def verdict_word(verdict: str) -> str:
    """An audit verdict in one word: leak, below (over-correction) or none."""
    for start, word in VERDICT_WORDS.items():
        if verdict.startswith(start):
            return word
    return "none" if verdict else ""


def _run_p(p_values: pd.Series) -> float:
    """``audit.core.overall_verdict``'s p-value for one run's per-attribute p-values."""
    tested = {
        column.split("/")[0]: {"strongest": {"p_value_two_sided": float(p), "verdict": ""}}
        for column, p in p_values.items()
        if pd.notna(p)
    }
    p_run = overall_verdict(tested, ALPHA)["p_two_sided"]
    return math.nan if p_run is None else float(p_run)


def runs_table(frame: pd.DataFrame, keys: Sequence[str], extra: Sequence[str]) -> pd.DataFrame:
    """runs.csv: one row per run (``keys`` with the seed): ``extra`` columns, and per attribute
    the audit's two-sided familywise p-value, verdict (one word) and strongest attack; then
    the run's smallest p-value, whether the two-sided test rejects on some attribute
    (``rejected``, p ≤ 0.05) and its largest gap to chance over every attack run."""
    out = frame[[*keys, *extra]].copy()
    attributes = attributes_in(frame)
    for attr in attributes:
        out[f"{attr}/p_two_sided"] = frame[f"{attr}/p_two_sided"]
        out[f"{attr}/verdict"] = frame[f"{attr}/verdict"].fillna("").map(verdict_word)
        out[f"{attr}/strongest"] = frame[f"{attr}/strongest"]
    p_values = frame[[f"{a}/p_two_sided" for a in attributes]]
    out["p_min"] = p_values.min(axis=1)
    rejected = (p_values <= ALPHA).any(axis=1).astype(object)
    rejected[p_values.isna().all(axis=1)] = np.nan
    out["rejected"] = rejected
    # the run's familywise p over its attributes, by the report's own overall verdict: a
    # level-0.05 test per run, under which embeddings with no information are rejected in about
    # 1 of 18 runs; ``rejected`` (no correction) rejects up to 1 − 0.95³ ≈ 14 % of such runs
    out["p_run"] = p_values.apply(_run_p, axis=1)
    verdict = (out["p_run"] <= ALPHA).astype(object)
    verdict[p_values.isna().all(axis=1)] = np.nan
    out["rejected_by_verdict"] = verdict
    out["max_gap"] = frame["max_gap"]
    return out


def _worst(privacy: pd.DataFrame) -> tuple[float, str]:
    """The largest |mean balanced accuracy − chance| over every attack, and which."""
    r = privacy.loc[privacy["gap"].idxmax()]
    side = "above" if r["signed_gap"] >= 0 else "below"
    return float(r["gap"]), f"{r['attribute']} {r['protocol']}/{r['attacker']} {side} chance"


def acceptance_table(
    privacy: pd.DataFrame,
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    cell: Sequence[str],
    speeds: Sequence[Speed] = SPEEDS,
) -> pd.DataFrame:
    """acceptance.csv: per AttrCloak ``cell`` (e.g. dataset, model) and mode, each criterion of
    issue 12 with its measured value, threshold, verdict and margin (positive: met by,
    negative: missed by); per dataset the rejections over all its AttrCloak runs; the speed
    targets. ``summary``: means over seeds per cell and method (``retention@ndcg@10``,
    ``seconds``, ``ratio`` and their ``:std``)."""
    rows = []
    attrcloak = runs[runs["method"].isin(MODES)]
    cloaked = privacy[privacy["method"].isin(MODES)]
    for group, part in cloaked.groupby([*cell, "method"], sort=False):
        where = dict(zip([*cell, "method"], group, strict=True))
        bar = BARS.get(where["dataset"])
        mode = MODES[where["method"]]
        mine = attrcloak
        for key, value in where.items():
            mine = mine[mine[key] == value]
        judged = mine["rejected"].dropna().astype(bool)
        base = where | {"mode": mode, "n_seeds": int(part["n_seeds"].max())}
        label = "runs rejected (two-sided familywise p ≤ 0.05)"
        if len(judged):
            rows.append(
                base
                | _criterion(label, int(judged.sum()))
                | {"detail": f"{int(judged.sum())} of {len(judged)} runs"}
            )
        gap, detail = _worst(part)
        threshold = bar.band if bar else math.nan
        rows.append(base | _criterion("worst |mean bal. acc − chance|", gap, threshold, "max"))
        rows[-1]["detail"] = detail
        s = summary
        for key, value in where.items():
            s = s[s[key] == value]
        kept = float(s["retention@ndcg@10"].iloc[0]) if not s.empty else math.nan
        threshold = bar.kept[mode] if bar else math.nan
        rows.append(base | _criterion("NDCG@10 kept", kept, threshold, "min"))
    for dataset, part in attrcloak.groupby("dataset", sort=False):
        bar, judged = BARS.get(dataset), part["rejected"].dropna().astype(bool)
        if judged.empty:
            continue
        limit = bar.rejections if bar else math.nan
        label = "AttrCloak runs rejected, every cell and mode"
        rows.append(
            {"dataset": dataset, "n_seeds": part["seed"].nunique()}
            | _criterion(label, int(judged.sum()), limit, "max")
            | {"detail": f"{int(judged.sum())} of {len(judged)} runs"}
        )
        by_verdict = part["rejected_by_verdict"].dropna().astype(bool)
        label = "AttrCloak runs rejected by the report's verdict (familywise over attributes)"
        rows.append(
            {"dataset": dataset, "n_seeds": part["seed"].nunique()}
            | _criterion(label, int(by_verdict.sum()), limit, "max")
            | {"detail": f"{int(by_verdict.sum())} of {len(by_verdict)} runs"}
        )
    for speed in speeds:
        s = summary[(summary["method"] == speed.method) & (summary["dataset"] == speed.dataset)]
        s = s[s["model"] == speed.model] if "model" in s else s
        for _, r in s.iterrows():
            rows.append(
                {k: r[k] for k in cell}
                | {"method": speed.method, "mode": MODES[speed.method], "n_seeds": int(r["n"])}
                | _criterion(speed.label, float(r[speed.column]), speed.threshold, "max")
                | {"detail": f"on {r.get('device', '?')}"}
            )
    columns = [*cell, "method", "mode", "criterion", "measured", "threshold", "met", "margin"]
    return pd.DataFrame(rows).reindex(columns=[*columns, "detail", "n_seeds"])


def _criterion(
    label: str, measured: float, threshold: float = math.nan, sense: str = "max"
) -> dict[str, object]:
    """A criterion row: met and margin (positive: met by so much) when it has a threshold."""
    if math.isnan(threshold) or math.isnan(measured):
        return {"criterion": label, "measured": measured, "threshold": threshold}
    margin = threshold - measured if sense == "max" else measured - threshold
    return {
        "criterion": label,
        "measured": measured,
        "threshold": threshold,
        "met": bool(margin >= 0),
        "margin": margin,
    }


def group_name(dataset: str, model: str, seed: int, varied: Sequence[object] = ()) -> str:
    """A training group's name in run.json's ``originals`` and the tables:
    ``dataset/model[/varied…]/seed``."""
    return "/".join(str(v) for v in (dataset, model, *varied, seed))


def per_seed(reports: pd.DataFrame, originals: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per finished job with its gaps to chance (``gap_columns``); the original's
    training seconds and device (from the ``.json`` of a loaded checkpoint, ``originals``: the
    run's record by group name) as ``original_train_s``, ``train_device``; its NDCG@10; and
    ``ratio`` = the job's seconds over that training time. Needs ``group``, ``method`` and
    ``source`` columns (the scripts' ``meta``)."""
    frame = pd.concat([reports, gap_columns(reports)], axis=1)
    original = frame["method"] == "original"
    for i in frame.index[original & (frame["source"] == "checkpoint")]:
        info = originals.get(frame.at[i, "group"]) or {}
        frame.at[i, "train_s"] = frame.at[i, "seconds"] = info.get("train_seconds", math.nan)
        frame.at[i, "device"] = info.get("device", "")
    own = frame[original].set_index("group")[["train_s", "ndcg@10", "device"]]
    own.columns = ["original_train_s", "original_ndcg@10", "train_device"]
    frame = frame.join(own, on="group")
    frame["ratio"] = frame["seconds"] / frame["original_train_s"]
    return frame


def cell_table(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Means, stds (``COL:std``) and n over seeds per ``keys`` (``aggregate``), with the devices
    the jobs and their originals' training ran on."""
    cells = aggregate(frame, keys)
    for column in ("device", "train_device", "source"):
        joined = frame.groupby(list(keys), sort=False)[column].agg(
            lambda v: " / ".join(sorted({str(x) for x in v if isinstance(x, str) and x}))
        )
        cells = cells.join(joined, on=list(keys))
    return cells
