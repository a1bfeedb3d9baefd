"""A sweep's outputs: trials.csv, pareto.csv, pareto.png and summary.md.

Selection and the Pareto front use only the validation split and the shadow-protocol audit;
test metrics appear in the tables, never in a choice. The selected trial's gap is checked by a
fresh k-fold audit (``kfold_check``), since the shadow audit that chose it flatters it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from recbole_attrcloak.provenance import describe, machine, machine_line
from recbole_attrcloak.report import atomic_path
from recbole_attrcloak.tune.results import (
    after_stage,
    fmt,
    kfold_gaps,
    markdown_table,
    pareto_mask,
    shadow_gaps,
    stage_columns,
    tune_metrics,
)
from recbole_attrcloak.tune.spec import Spec, Trial
from recbole_attrcloak.tune.workdir import (
    check_folder,
    read_outcome,
    read_record,
    status,
    train_folder,
    trial_folder,
)

POINT_COLUMNS = ["trial_id", "model", "dataset", "method", "label", "valid_retention"]
POINT_COLUMNS += ["privacy_gap", "test_retention"]


def _attack_columns(stage: Mapping[str, Any], suffix: str) -> dict[str, float]:
    """Balanced accuracy per attribute and attacker as trials.csv names it: ``gender_mlp``,
    ``gender_mlp_kfold`` (+ ``suffix``)."""
    out = {}
    for column, value in stage_columns(stage).items():
        parts = column.split("/")
        if parts[-1] == "balanced_accuracy":
            kfold = "_kfold" if parts[1] == "kfold" else ""
            out[f"{parts[0]}_{parts[-2]}{kfold}{suffix}"] = value
    return out


def _row(trial: Trial, swept: list[str], folder: Path) -> dict:
    report, error = read_outcome(folder)
    row: dict[str, Any] = {
        "trial_id": trial.trial_id,
        "status": status(folder),
        "model": trial.model,
        "dataset": trial.dataset,
        "unlearn": trial.config["unlearn"],
    }
    row |= {k: trial.config.get(k) for k in swept if k not in row}
    if report is None:
        return row | {"error": error}
    row |= tune_metrics(report)
    original, after = report["stages"]["original"], after_stage(report)
    row["valid_ndcg@10_original"] = original["valid_utility"].get("ndcg@10")
    row["privacy_gap_original"] = max(shadow_gaps(original["privacy"]).values(), default=math.nan)
    for attr, gap in shadow_gaps(after["privacy"]).items():
        row[f"{attr}_gap"] = gap
    row |= _attack_columns(after, "") | _attack_columns(original, "_original")
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
        row = _row(trial, swept, trial_folder(work, trial.trial_id))
        train_report, _ = read_outcome(train_folder(work, trial.group_id))
        row["train_s"] = train_report["seconds"].get("train") if train_report else None
        rows.append(row)
    table = pd.DataFrame(rows)
    last = ["train_s", "unlearn_s", "audit_s", "trial_s", "output_dir", "error"]
    return table[[c for c in table.columns if c not in last] + [c for c in last if c in table]]


def originals(spec: Spec, work: Path) -> pd.DataFrame:
    """The untouched models (one per training group): retention 1 and their own gap."""
    rows = []
    for group_id, trial in spec.groups().items():
        report, _ = read_outcome(train_folder(work, group_id))
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


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    rows = ([fmt(v) for v in row] for row in frame.itertuples(index=False))
    return markdown_table(list(frame.columns), rows)[:-1]


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


def select(spec: Spec, table: pd.DataFrame) -> pd.Series | None:
    """The finished trial with the best ``spec.metric`` (validation and shadow audit only)."""
    ok = table[table["status"] == "ok"]
    if ok.empty:
        return None
    return ok.sort_values(spec.metric, ascending=spec.mode == "min", kind="stable").iloc[0]


def _pairs(spec: Spec) -> str:
    pairs = dict.fromkeys(f"{t.model} on {t.dataset}" for t in spec.trials)
    return ", ".join(pairs) or "no trials"


def kfold_lines(spec: Spec, best: pd.Series, work: Path, candidates: int) -> list[str]:
    """What the fresh k-fold audit of the selected trial found, or why its shadow gap stands
    unchecked (and is optimistic)."""
    optimistic = (
        f"The selected gap {best['privacy_gap']:.3f} comes from the same shadow audit that chose "
        f"this trial among {candidates} finished: it is optimistic "
        "(the best of several noisy estimates)"
    )
    report, error = read_outcome(check_folder(work, best["trial_id"]))
    if report is None:
        why = "not run (`kfold_check: false`)" if not spec.kfold_check else f"failed: {error}"
        return [f"{optimistic}; its k-fold check was {why}.", ""]
    after, original = after_stage(report), report["stages"]["original"]
    gap = max(kfold_gaps(after["privacy"]).values(), default=math.nan)
    gap_original = max(kfold_gaps(original["privacy"]).values(), default=math.nan)
    rerun = tune_metrics(report)["valid_retention"]
    audit = after.get("audit", {})
    return [
        f"**k-fold check of the selected trial** (`check/{best['trial_id']}`: the trial rerun "
        f"after the selection with a fresh audit, preset `{audit.get('preset')}`, seed "
        f"{audit.get('seed')}, {len(kfold_gaps(after['privacy']))} attribute(s), the k-fold "
        f"protocol): largest |balanced accuracy − chance| **{gap:.3f}** (the original model: "
        f"{gap_original:.3f}); the rerun's validation retention {rerun:.3f}. {optimistic}; the "
        "k-fold number is the one to quote.",
        "",
    ]


def summary(
    spec: Spec,
    table: pd.DataFrame,
    points: pd.DataFrame,
    seconds: Mapping[str, float],
    work: Path,
) -> str:
    """summary.md: what ran, the selection and its k-fold check, the Pareto front, a compact
    table of all trials, failures."""
    ok = table[table["status"] == "ok"]
    failed = table[table["status"] != "ok"]
    swept = [k for k in spec.swept_keys() if k in table]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Sweep `{spec.name}`: {_pairs(spec)}",
        "",
        f"Written on {now}. {machine_line(machine())} Trials run by code "
        f"{describe(read_record(work).get('code'))} (sweep.json).",
        "",
        f"{len(table)} trials ({len(ok)} finished, {len(failed)} failed or not run) in "
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
    best = select(spec, table)
    if best is not None:
        config = ", ".join(f"{k}={fmt(best[k])}" for k in ["unlearn", *swept] if k in best)
        lines += [
            f"**Selected** (best {spec.metric}, {spec.mode}): trial `{best['trial_id']}`, "
            f"{best['model']} on {best['dataset']} ({config}): validation retention "
            f"{best['valid_retention']:.3f}, shadow gap {best['privacy_gap']:.3f}; test NDCG@10 "
            f"{best['test_ndcg@10']:.4f} (retention {best['test_retention']:.3f}).",
            "",
            *kfold_lines(spec, best, work, len(ok)),
        ]
    lines += ["## Pareto-optimal points (per model and dataset)", ""]
    front = points[points["pareto"]].sort_values(["model", "dataset", "valid_retention"])
    lines += _markdown_table(front[POINT_COLUMNS]) + [""]
    lines += solver_comparison(table, points)
    lines += ["## All trials", ""]
    columns = ["trial_id", "status", "model", "dataset", "unlearn"]
    columns += [k for k in swept if k not in columns]
    columns += ["valid_retention", "privacy_gap", "score", "test_ndcg@10", "test_retention"]
    columns += ["trial_s"]
    lines += _markdown_table(table[[c for c in columns if c in table]]) + [""]
    if len(failed):
        lines += ["## Failed trials (and trials not run)", ""]
        lines += [f"- `{r.trial_id}` ({r.status}): {r.error}" for r in failed.itertuples()]
        lines += [""]
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
        tmp.write_text(summary(spec, table, points, seconds, work), encoding="utf-8")
    return table
