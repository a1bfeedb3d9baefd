"""A sweep's outputs: trials.csv, pareto.csv, pareto.png and summary.md.

Selection and the Pareto front use only the validation split and the shadow-protocol audit;
test metrics appear in the tables, never in a choice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from recbole_attrcloak.audit import ATTACKERS
from recbole_attrcloak.report import atomic_path
from recbole_attrcloak.tune.spec import Spec, Trial

REPORT, ERROR = "report.json", "error.json"
POINT_COLUMNS = ["trial_id", "model", "dataset", "method", "label", "valid_retention"]
POINT_COLUMNS += ["privacy_gap", "test_retention"]


def shadow_gaps(privacy: Mapping[str, Any]) -> dict[str, float]:
    """Per attribute, the largest |balanced accuracy − chance| over the shadow-protocol
    attackers (an attacker far below chance leaks too: flipping its guesses beats chance)."""
    gaps = {}
    for attr, entry in privacy.items():
        scores = [entry[a]["balanced_accuracy"]["mean"] for a in ATTACKERS if a in entry]
        gaps[attr] = max((abs(s - entry["chance"]) for s in scores), default=math.nan)
    return gaps


def _after(report: Mapping[str, Any]) -> Mapping[str, Any]:
    stages = report["stages"]
    return stages.get("unlearned", stages["original"])


def tune_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """What a trial reports to Tune: validation NDCG@10 and its retention, the shadow audit's
    largest gap to chance, and ``score`` = retention − gap."""
    before = report["stages"]["original"]["valid_utility"].get("ndcg@10", math.nan)
    after = _after(report)["valid_utility"].get("ndcg@10", math.nan)
    retention = after / before if before else math.nan
    gap = max(shadow_gaps(_after(report)["privacy"]).values(), default=math.nan)
    return {
        "valid_ndcg@10": after,
        "valid_retention": retention,
        "privacy_gap": gap,
        "score": retention - gap,
    }


def read_outcome(folder: Path) -> tuple[dict | None, str | None]:
    """A job folder's report, or its recorded error; (None, None) when it has neither."""
    if (folder / REPORT).is_file():
        return json.loads((folder / REPORT).read_text()), None
    if (folder / ERROR).is_file():
        return None, json.loads((folder / ERROR).read_text())["error"]
    return None, None


def _row(trial: Trial, swept: list[str], report: dict | None, error: str | None) -> dict:
    row: dict[str, Any] = {
        "trial_id": trial.trial_id,
        "status": "ok" if report else "failed" if error else "missing",
        "model": trial.model,
        "dataset": trial.dataset,
        "unlearn": trial.config["unlearn"],
    }
    row |= {k: trial.config.get(k) for k in swept if k not in row}
    if report is None:
        return row | {"error": error}
    row |= tune_metrics(report)
    original, after = report["stages"]["original"], _after(report)
    row["valid_ndcg@10_original"] = original["valid_utility"].get("ndcg@10")
    row["privacy_gap_original"] = max(shadow_gaps(original["privacy"]).values(), default=math.nan)
    for attr, gap in shadow_gaps(after["privacy"]).items():
        row[f"{attr}_gap"] = gap
    for stage, suffix in ((after, ""), (original, "_original")):
        for attr, entry in stage["privacy"].items():
            for attacker in ATTACKERS:
                if attacker in entry:
                    row[f"{attr}_{attacker}{suffix}"] = entry[attacker]["balanced_accuracy"]["mean"]
            for attacker, value in entry.get("kfold", {}).items():
                row[f"{attr}_{attacker}_kfold{suffix}"] = value["balanced_accuracy"]["mean"]
    row["test_ndcg@10_original"] = original["utility"].get("ndcg@10")
    row["test_ndcg@10"] = after["utility"].get("ndcg@10")
    row["test_retention"] = report.get("retention", {}).get("ndcg@10", 1.0)
    seconds = report["seconds"]
    row["unlearn_s"] = seconds.get("unlearn", 0.0)
    row["audit_s"] = seconds.get("audit_unlearned", seconds.get("audit_original", 0.0))
    row["trial_s"] = seconds.get("total")
    return row | {"output_dir": report["output_dir"], "error": None}


def collect(spec: Spec, work: Path) -> pd.DataFrame:
    """One row per trial of ``spec``: config, validation and test utility, shadow (and k-fold)
    balanced accuracy per attribute and attacker, seconds, status and error."""
    swept = spec.swept_keys()
    rows = []
    for trial in spec.trials:
        report, error = read_outcome(work / "trials" / trial.trial_id)
        row = _row(trial, swept, report, error)
        train_report, _ = read_outcome(work / "train" / trial.group_id)
        row["train_s"] = train_report["seconds"].get("train") if train_report else None
        rows.append(row)
    table = pd.DataFrame(rows)
    last = ["train_s", "unlearn_s", "audit_s", "trial_s", "output_dir", "error"]
    return table[[c for c in table.columns if c not in last] + [c for c in last if c in table]]


def originals(spec: Spec, work: Path) -> pd.DataFrame:
    """The untouched models (one per training group): retention 1 and their own gap."""
    rows = []
    for group_id, trial in spec.groups().items():
        report, _ = read_outcome(work / "train" / group_id)
        if report:
            gap = max(
                shadow_gaps(report["stages"]["original"]["privacy"]).values(), default=math.nan
            )
            row = {"trial_id": f"original-{group_id}", "model": trial.model}
            rows.append(
                row
                | {"dataset": trial.dataset, "method": "none (original)", "label": "original"}
                | {"valid_retention": 1.0, "privacy_gap": gap, "test_retention": 1.0}
            )
    return pd.DataFrame(rows)


def pareto_mask(retention: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Points no other point beats on both axes (higher retention, lower gap)."""
    keep = np.ones(len(retention), dtype=bool)
    for i in range(len(retention)):
        better = (retention >= retention[i]) & (gap <= gap[i])
        strictly = (retention > retention[i]) | (gap < gap[i])
        keep[i] = not np.any(better & strictly)
    return keep


def method_label(row: Mapping[str, Any]) -> str:
    """The colour of a point: the defence, with AttrCloak's retention mode."""
    if row["unlearn"] == "attrcloak" and isinstance(row.get("au_mode"), str):
        return f"attrcloak-{row['au_mode']}"
    return str(row["unlearn"])


def _point_label(row: Mapping[str, Any], keys: list[str]) -> str:
    if row.get("au_solver") == "fixed":
        return f"α={row['au_alpha']:g}"
    return " ".join(str(row[k]) for k in keys if row.get(k) is not None and not pd.isna(row[k]))


def pareto_table(spec: Spec, table: pd.DataFrame, work: Path) -> pd.DataFrame:
    """Finished trials and the original models with their validation trade-off; ``pareto``
    marks the non-dominated points within each (model, dataset)."""
    ok = table[table["status"] == "ok"].copy()
    extra = [k for k in spec.swept_keys() if k not in ("unlearn", "au_mode", "model", "dataset")]
    ok["method"] = [method_label(r) for r in ok.to_dict("records")]
    ok["label"] = [_point_label(r, extra) for r in ok.to_dict("records")]
    parts = [ok.reindex(columns=POINT_COLUMNS), originals(spec, work)]
    parts = [p for p in parts if len(p)] or [pd.DataFrame(columns=POINT_COLUMNS)]
    points = pd.concat(parts, ignore_index=True).reindex(columns=POINT_COLUMNS)
    points["pareto"] = False
    for _, index in points.groupby(["model", "dataset"]).groups.items():
        part = points.loc[index]
        mask = pareto_mask(part["valid_retention"].to_numpy(), part["privacy_gap"].to_numpy())
        points.loc[index, "pareto"] = mask
    return points


def plot_pareto(points: pd.DataFrame, path: Path) -> None:
    """Largest gap to chance vs NDCG@10 retention (validation), one panel per (model, dataset),
    one colour per method; Pareto-optimal points ringed and joined."""
    panels = list(points.groupby(["model", "dataset"]))
    fig = Figure(figsize=(6.5 * max(len(panels), 1), 5))
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)
    methods = sorted(points["method"].unique())
    colours = {m: colormaps["tab10"](i % 10) for i, m in enumerate(methods)}
    for ax, ((model, dataset), part) in zip(axes[0], panels, strict=False):
        for method, group in part.groupby("method"):
            marker = "*" if method == "none (original)" else "o"
            ax.scatter(
                group["valid_retention"],
                group["privacy_gap"],
                color=colours[method],
                marker=marker,
                s=90 if marker == "*" else 40,
                label=method,
                zorder=3,
            )
        front = part[part["pareto"]].sort_values("valid_retention")
        ax.step(front["valid_retention"], front["privacy_gap"], where="pre", color="grey", lw=1)
        ax.scatter(
            front["valid_retention"],
            front["privacy_gap"],
            facecolors="none",
            edgecolors="black",
            s=160,
            lw=1.2,
            label="Pareto-optimal",
            zorder=4,
        )
        for row in part.itertuples():
            ax.annotate(
                row.label,
                (row.valid_retention, row.privacy_gap),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
        ax.set_xlabel("NDCG@10 retention (validation)")
        ax.set_ylabel("max |balanced accuracy − chance| (shadow audit)")
        ax.set_title(f"{model} on {dataset}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return lines


def _setting(row: Any) -> str:
    mode = getattr(row, "au_mode", None)
    solver = f"α={row.au_alpha:g}" if row.au_solver == "fixed" else row.au_solver
    return f"{mode} {solver}" if isinstance(mode, str) else solver


def solver_comparison(table: pd.DataFrame, points: pd.DataFrame) -> list[str]:
    """For sweeps over ``au_solver``: each dynamic solver against the fixed α_u values of the
    same retention mode (validation numbers), and the AttrCloak settings that dominate it."""
    if "au_solver" not in table or table["au_solver"].nunique() < 2:
        return []
    ok = table[(table["status"] == "ok") & (table["unlearn"] == "attrcloak")]
    pareto = dict(zip(points["trial_id"], points["pareto"], strict=True))
    lines = ["## Dynamic vs fixed α_u (validation split, shadow audit)", ""]
    for mode, part in ok.groupby(ok["au_mode"] if "au_mode" in ok else ok["unlearn"]):
        fixed = part[part["au_solver"] == "fixed"].sort_values("au_alpha")
        for row in part[part["au_solver"] != "fixed"].itertuples():
            ret, gap = row.valid_retention, row.privacy_gap
            better = (ok["valid_retention"] >= ret) & (ok["privacy_gap"] <= gap)
            better &= (ok["valid_retention"] > ret) | (ok["privacy_gap"] < gap)
            dominating = ", ".join(_setting(r) for r in ok[better].itertuples())
            if pareto.get(row.trial_id):
                standing = "Pareto-optimal"
            else:
                standing = f"dominated by {dominating or 'the original model'}"
            lower_gap = ", ".join(
                f"α={r.au_alpha:g} (gap {r.privacy_gap:.3f}, retention {r.valid_retention:.3f})"
                for r in fixed[fixed["privacy_gap"] < gap].itertuples()
            )
            lines.append(
                f"- **{_setting(row)}**: retention {ret:.3f}, gap {gap:.3f}, score "
                f"{row.score:.3f}; {standing}; fixed α with a lower gap: {lower_gap or 'none'}."
            )
        dynamic = part[part["au_solver"] != "fixed"]
        if len(fixed) and len(dynamic):
            best = [frame.loc[frame["score"].idxmax()] for frame in (dynamic, fixed)]
            lines.append(
                f"- **{mode}, best by score**: dynamic {best[0]['au_solver']} "
                f"{_trade_off(best[0])} vs fixed α={best[1]['au_alpha']:g} {_trade_off(best[1])}."
            )
    return lines + [""]


def _trade_off(row: Mapping[str, Any]) -> str:
    return (
        f"(score {row['score']:.3f}: retention {row['valid_retention']:.3f}, "
        f"gap {row['privacy_gap']:.3f})"
    )


def summary(
    spec: Spec, table: pd.DataFrame, points: pd.DataFrame, seconds: Mapping[str, float]
) -> str:
    """summary.md: the selection, the Pareto front, a compact table of all trials, failures."""
    ok = table[table["status"] == "ok"]
    failed = table[table["status"] != "ok"]
    swept = [k for k in spec.swept_keys() if k in table]
    lines = [
        f"# Sweep `{spec.name}`",
        "",
        f"{len(table)} trials ({len(ok)} finished, {len(failed)} failed or missing) in "
        f"{len(spec.groups())} training group(s); this run: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        + f". Resources per trial: {spec.resources}.",
        "",
        "Selection and Pareto front: validation NDCG@10 retention (unlearned / original) and the "
        "shadow-protocol audit's largest |balanced accuracy − chance| over attributes and "
        "attackers (`privacy_gap`); `score` = retention − gap. Test metrics are reported, never "
        "used to choose.",
        "",
    ]
    if len(ok):
        ascending = spec.mode == "min"
        best = ok.sort_values(spec.metric, ascending=ascending).iloc[0]
        config = ", ".join(f"{k}={_fmt(best[k])}" for k in ["unlearn", *swept] if k in best)
        lines += [
            f"**Selected** (best {spec.metric}, {spec.mode}): trial `{best['trial_id']}` "
            f"({config}): validation retention {best['valid_retention']:.3f}, gap "
            f"{best['privacy_gap']:.3f}; test NDCG@10 {best['test_ndcg@10']:.4f} "
            f"(retention {best['test_retention']:.3f}).",
            "",
        ]
    lines += ["## Pareto-optimal points (per model and dataset)", ""]
    front = points[points["pareto"]].sort_values(["model", "dataset", "valid_retention"])
    lines += _markdown_table(front[POINT_COLUMNS]) + [""]
    lines += solver_comparison(table, points)
    lines += ["## All trials", ""]
    columns = ["trial_id", "status", "unlearn", *[k for k in swept if k != "unlearn"]]
    columns += ["valid_retention", "privacy_gap", "score", "test_ndcg@10", "test_retention"]
    columns += ["trial_s"]
    lines += _markdown_table(table[[c for c in columns if c in table]]) + [""]
    if len(failed):
        lines += ["## Failed trials", ""]
        lines += [f"- `{r.trial_id}`: {r.error}" for r in failed.itertuples()] + [""]
    lines += ["Full per-attribute, per-attacker numbers: `trials.csv`; the plot: `pareto.png`."]
    return "\n".join(lines) + "\n"


def write_outputs(spec: Spec, work: Path, out: Path, seconds: Mapping[str, float]) -> pd.DataFrame:
    """Write trials.csv, pareto.csv, pareto.png and summary.md into ``out``; return the trials."""
    out.mkdir(parents=True, exist_ok=True)
    table = collect(spec, work)
    points = pareto_table(spec, table, work)
    for name, frame in (("trials.csv", table), ("pareto.csv", points)):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
    plot_pareto(points, out / "pareto.png")
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(summary(spec, table, points, seconds), encoding="utf-8")
    return table
