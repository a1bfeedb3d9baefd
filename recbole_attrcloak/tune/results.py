"""Reading results, shared by sweeps (trials.csv, summary.md) and the benchmark scripts: what a
trial reports to Tune, a report.json as flat columns, one row per job of a work folder, and the
small table helpers (means over seeds, gaps to chance, Markdown).

Flat column names: test utility as RecBole names it (``ndcg@10``), validation utility
``valid/ndcg@10``, per attribute ``ATTR/chance`` and ``ATTR/majority``, per shadow-protocol
attacker ``ATTR/ATTACKER/balanced_accuracy`` and ``…/accuracy`` (means over the audit's
repeats), per k-fold attacker ``ATTR/kfold/ATTACKER/…``; the audit's verdict per attribute
``ATTR/p_two_sided`` (the two-sided familywise permutation p-value it rests on, NaN without a
permutation test), ``ATTR/verdict`` and ``ATTR/strongest`` (``protocol/attacker``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbole_attrcloak.audit import ATTACKERS
from recbole_attrcloak.defences import method_name
from recbole_attrcloak.tune.spec import Trial
from recbole_attrcloak.tune.workdir import read_outcome, status, train_folder, trial_folder

METRICS_PER_ATTACKER = ("balanced_accuracy", "accuracy")


def shadow_gaps(privacy: Mapping[str, Any]) -> dict[str, float]:
    """Per attribute, the largest |balanced accuracy − chance| over the shadow-protocol
    attackers (an attacker far below chance leaks too: flipping its guesses beats chance)."""
    gaps = {}
    for attr, entry in privacy.items():
        scores = [entry[a]["balanced_accuracy"]["mean"] for a in ATTACKERS if a in entry]
        gaps[attr] = max((abs(s - entry["chance"]) for s in scores), default=math.nan)
    return gaps


def kfold_gaps(privacy: Mapping[str, Any]) -> dict[str, float]:
    """``shadow_gaps`` for the k-fold protocol's attackers (NaN without a k-fold audit)."""
    return shadow_gaps(
        {a: {"chance": e["chance"], **e.get("kfold", {})} for a, e in privacy.items()}
    )


def after_stage(report: Mapping[str, Any]) -> Mapping[str, Any]:
    """The stage a report stands for: after the defence, else the original model."""
    stages = report["stages"]
    return stages.get("unlearned", stages["original"])


def tune_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """What a trial reports to Tune: validation NDCG@10 and its retention, the shadow audit's
    largest gap to chance, and ``score`` = retention − gap."""
    before = report["stages"]["original"]["valid_utility"].get("ndcg@10", math.nan)
    after = after_stage(report)["valid_utility"].get("ndcg@10", math.nan)
    retention = after / before if before else math.nan
    gap = max(shadow_gaps(after_stage(report)["privacy"]).values(), default=math.nan)
    return {
        "valid_ndcg@10": after,
        "valid_retention": retention,
        "privacy_gap": gap,
        "score": retention - gap,
    }


def stage_columns(stage: Mapping[str, Any]) -> dict[str, float]:
    """One audited stage as flat columns (see the module's docstring)."""
    row: dict[str, float] = dict(stage["utility"])
    row |= {f"valid/{k}": v for k, v in stage.get("valid_utility", {}).items()}
    for attr, entry in stage["privacy"].items():
        row[f"{attr}/chance"], row[f"{attr}/majority"] = entry["chance"], entry["majority"]
        for protocol, results in (("", entry), ("kfold/", entry.get("kfold", {}))):
            for attacker in ATTACKERS:
                for metric in METRICS_PER_ATTACKER if attacker in results else ():
                    row[f"{attr}/{protocol}{attacker}/{metric}"] = results[attacker][metric]["mean"]
        strongest = entry.get("strongest", {})
        p_value = strongest.get("p_value_two_sided")
        row[f"{attr}/p_two_sided"] = math.nan if p_value is None else float(p_value)
        row[f"{attr}/verdict"] = strongest.get("verdict", "")
        row[f"{attr}/strongest"] = f"{strongest.get('protocol')}/{strongest.get('attacker')}"
    return row


def flatten(report: Mapping[str, Any], folder: Path | None = None) -> dict[str, Any]:
    """A report.json as flat columns: the stage it stands for, ``retention@ndcg@10``, seconds
    (``train_s``, ``defence_s``, ``seconds`` = the job's own work: the defence, else the
    training) and the work done (``steps`` of the defence, ``epochs`` of its retraining, else
    of the training as counted in ``folder``'s recbole.log)."""
    row: dict[str, Any] = stage_columns(after_stage(report))
    row["retention@ndcg@10"] = report.get("retention", {}).get("ndcg@10", 1.0)
    seconds = report["seconds"]
    row["train_s"] = seconds.get("train", math.nan)
    row["defence_s"] = seconds.get("unlearn", math.nan)
    row["seconds"] = seconds.get("unlearn", row["train_s"])
    unlearning = report.get("unlearning", {})
    row["steps"] = unlearning.get("steps", math.nan)
    row["device"] = report.get("device", "")
    log = folder / "recbole.log" if folder is not None else None
    row["epochs"] = unlearning.get("epochs", _epochs_run(log))
    return row


def _epochs_run(log: Path | None) -> float:
    """Training epochs in a job's RecBole log (for the original model's training)."""
    if log is None or not log.is_file():
        return math.nan
    count = len(re.findall(r"epoch \d+ training \[time", log.read_text(errors="replace")))
    return count or math.nan


def job_rows(work: Path, trials: Sequence[Trial]) -> list[dict[str, Any]]:
    """One row per job of ``trials`` in ``work``: each training group's ("original") and each
    trial's, with ``kind`` (train or trial), ``method`` (the catalogue name), the ids, folder,
    status, error, wall seconds and, for finished jobs, the flattened report."""
    rows, seen = [], set()
    for trial in trials:
        jobs = [("trial", trial_folder(work, trial.trial_id), trial.config)]
        if trial.group_id not in seen:
            seen.add(trial.group_id)
            jobs.insert(0, ("train", train_folder(work, trial.group_id), trial.training_config()))
        for kind, folder, config in jobs:
            report, error = read_outcome(folder)
            row = {"kind": kind, "trial_id": trial.trial_id, "group_id": trial.group_id}
            row |= {"model": trial.model, "dataset": trial.dataset, "config": config}
            row |= {"method": "original" if kind == "train" else method_name(config)}
            row |= {"status": status(folder), "error": error, "folder": str(folder)}
            if report is not None:
                row |= {"wall_s": report["seconds"].get("total")} | flatten(report, folder)
            rows.append(row)
    return rows


def pareto_mask(retention: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Points no other point beats on both axes (higher retention, lower gap)."""
    keep = np.ones(len(retention), dtype=bool)
    for i in range(len(retention)):
        better = (retention >= retention[i]) & (gap <= gap[i])
        strictly = (retention > retention[i]) | (gap < gap[i])
        keep[i] = not np.any(better & strictly)
    return keep


def attributes_in(frame: pd.DataFrame) -> list[str]:
    """The audited attributes, in the order they appear in the columns."""
    return list(dict.fromkeys(c.split("/")[0] for c in frame.columns if c.endswith("/chance")))


def gap_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row, ``|balanced accuracy − chance|`` per attribute and attacker of each protocol the
    audit ran (``gap/ATTR/ATTACKER`` for the shadow protocol, ``gap/ATTR/kfold/ATTACKER``) and
    their maximum (``max_gap``)."""
    gaps = {}
    for attr in attributes_in(frame):
        for protocol in ("", "kfold/"):
            for attacker in ATTACKERS:
                column = f"{attr}/{protocol}{attacker}/balanced_accuracy"
                if column in frame:
                    gap = (frame[column] - frame[f"{attr}/chance"]).abs()
                    gaps[f"gap/{attr}/{protocol}{attacker}"] = gap
    out = pd.DataFrame(gaps, index=frame.index)
    out["max_gap"] = out.max(axis=1) if gaps else math.nan
    return out


def aggregate(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Mean, std and count over seeds of every numeric column, grouped by ``keys``; columns
    ``COL``, ``COL:std`` and ``n``."""
    numeric = [
        c for c in frame.columns if c not in keys and pd.api.types.is_numeric_dtype(frame[c])
    ]
    numeric = [c for c in numeric if c != "seed"]
    grouped = frame.groupby(list(keys), sort=False)[numeric]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = mean.join(std.add_suffix(":std"))
    out["n"] = frame.groupby(list(keys), sort=False).size()
    return out.reset_index()


def order_rows(frame: pd.DataFrame, orders: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """``frame`` sorted by the given value orders of its columns (e.g. the catalogue's)."""
    keys = {c: frame[c].map({v: i for i, v in enumerate(o)}) for c, o in orders.items()}
    ranks = pd.DataFrame(keys).fillna(len(frame))
    return frame.loc[ranks.sort_values(list(orders), kind="stable").index].reset_index(drop=True)


def pm(mean: float, std: float = math.nan, digits: int = 3) -> str:
    """``mean ± std`` (the std left out when there is one seed), ``–`` when missing."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt(value: Any) -> str:
    """A table cell: floats with 4 decimals, ``–`` for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table, followed by a blank line."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]
