"""paper_tables' Markdown, rendered from its CSVs alone: summary.md and the generated blocks
of benchmarks/README.md (``paper_tables``) and README.md (``originals``, ``attrcloak``).
``python benchmarks/check.py`` renders them again from the committed CSVs and compares."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from _markdown import (
    acceptance_lines,
    attack_tables,
    criterion_text,
    fraction,
    head_lines,
    method_order,
    select,
    verdict_table,
)
from _paper import PAPER, PAPER_TABLES, paper_value
from _tables import LABELS, backbones, epochs_text, job_counts, read_csv, write_text

from recbole_attrcloak.tune.results import markdown_table, pm

TITLE = "Privacy, utility and runtime (the paper's Tables IV–VII)"
OTHER_DATASETS = {  # the paper's other two datasets: what to pass
    "modcloth-mb": "--datasets modcloth-mb --source modcloth-mb=PATH/df_modcloth.csv",
    "lastfm-1k": "--datasets lastfm-1k --source lastfm-1k=PATH/lastfm-dataset-1K",
}
DIFFERENCES = """\
- **Accuracy vs balanced accuracy.** The paper reports raw attack accuracy. On imbalanced
  attributes raw accuracy sits near the majority rate even for an attacker that learnt
  nothing, so compare balanced accuracy with chance (1/k) instead.
- **Evaluation.** Our utility is full ranking over all items (configs/default.yaml). The paper's
  NDCG/HR values (HR@10 below HR@5) are far above what full ranking gives on these data and
  most likely come from sampled negatives (`configs/paper.yaml`, `uni100`), so only the ratios
  to each table's own original are comparable, not the absolute values.
- **Backbones and training.** NeuMF is RecBole's: trained with BCE on sampled negatives (the
  paper's NCF: BPR loss), a GMF and an MLP user table (audited and unlearned together), lr and
  batch of configs/default.yaml (the paper's: configs/paper.yaml). LightGCN has RecBole's 2
  layers (the paper: 3). Epoch caps (see "Setup") may stop training before early stopping.
- **Attackers.** The paper's shadow protocol (attacker trained on a stratified fifth of the
  users) and, with `--audit full`, the k-fold protocol and the whole attacker zoo
  (docs/audit.md): the k-fold attackers train on four fifths of the users and are stronger.
- **Runtime.** Measured on the device in the tables, several jobs at a time; the paper's
  times are on an A100 and include training "until the model converges".
"""


def load(results: Path) -> tuple[dict[str, pd.DataFrame], list[str], dict[str, Any]]:
    """The CSVs of a results folder (those present), their provenance and settings."""
    tables, head, settings = {}, [], {}
    for path in sorted(results.glob("*.csv")):
        tables[path.stem], head, settings = read_csv(path)
    return tables, head, settings


def summary_markdown(results: Path) -> str:
    """summary.md from the CSVs of ``results``."""
    t, head, settings = load(results)
    lines = head_lines(TITLE, head) + setup_lines(settings, t.get("jobs", pd.DataFrame()))
    if "privacy" not in t:
        return "\n".join([*lines, "No job has finished yet.", "", *_not_run(settings, set())])
    lines += [
        "## Acceptance (issue 12)",
        "",
        *acceptance_lines(t["acceptance"], ["dataset", "model"]),
    ]
    lines += ["## Runtime (the paper's Table VI)", "", *runtime_lines(t["runtime"])]
    for dataset, model in dict.fromkeys(
        zip(t["utility"]["dataset"], t["utility"]["model"], strict=True)
    ):
        lines += section(t, dataset, model)
    lines += _not_run(settings, set(t["utility"]["dataset"]))
    lines += ["## Differences from the paper", "", DIFFERENCES]
    lines += [
        "Files: `runs.csv` (one row per run: verdicts, seconds, device), `privacy.csv` (per "
        "attacker and protocol), `utility.csv`, `runtime.csv`, `acceptance.csv`, `jobs.csv`, "
        "`tradeoff.png` (worst gap to chance against NDCG@10 kept).",
        "",
    ]
    return "\n".join(lines)


def setup_lines(settings: Mapping[str, Any], jobs: pd.DataFrame) -> list[str]:
    """The Setup section: what ran, with which settings."""
    audit = settings.get("audit", "quick")
    audits = {
        "full": "`full`: the shadow and 5-fold protocols, the six attackers of docs/audit.md, "
        "permutation tests and the two-sided familywise verdict per attribute",
        "quick": "`quick`: the paper's shadow protocol with MLP and XGBoost, held-out "
        "permutation tests (no k-fold protocol)",
    }
    originals = settings.get("originals") or {}
    loaded = sum(1 for v in originals.values() if v.get("path"))
    lines = [
        "## Setup",
        "",
        f"- Datasets {', '.join(settings.get('datasets', []))}; models "
        f"{', '.join(settings.get('models', []))}; seeds {settings.get('seeds')} (each seed "
        "changes RecBole's random split and initialisation and the audit's draws).",
        "- `configs/default.yaml`, full-sort evaluation; epoch caps: "
        f"{epochs_text(settings.get('epochs') or {})}; extra settings: "
        f"{', '.join(settings.get('set', [])) or 'none'}.",
        f"- Original models: {loaded} of {len(originals)} loaded from `--originals` "
        "(their training seconds and device from the checkpoint's .json), the others trained "
        "in the run."
        if originals
        else "- Original models: trained in the run.",
        f"- Audit {audits.get(audit, audit)}. Original rows come from the training group's job; "
        "every other row from the trial that loaded its checkpoint and applied the defence.",
        f"- Jobs: {job_counts(jobs)} (jobs.csv; a failed job's message and traceback are in "
        "its folder's error.json).",
    ]
    lines += [f"- {note}." for note in settings.get("notes", [])]
    return [*lines, ""]


def runtime_lines(runtime: pd.DataFrame) -> list[str]:
    """Per dataset: every method's seconds (device) and ratio to the same seed's original
    training, per backbone, and the paper's A100 seconds."""
    lines = [
        "Seconds: the original's training (from its .json when loaded), else the defence "
        "(unlearning, or retraining for RAP, BlurMe, LDP-SH), mean ± std over seeds, device in "
        "brackets; ×: over the same seed's original training. The paper's Table VI: A100, "
        "backbone not stated (its default NCF).",
        "",
    ]
    for dataset, part in runtime.groupby("dataset", sort=False):
        models = list(dict.fromkeys(part["model"]))
        rows = []
        for method in method_order(part["method"]):
            cells = []
            for model in models:
                r = select(part, {"model": model, "method": method})
                if r.empty:
                    cells += ["–", "–"]
                    continue
                r = r.iloc[0]
                device = r["device"] if isinstance(r["device"], str) and r["device"] else "?"
                cells += [f"{pm(r['seconds'], r['seconds_std'], 1)} ({device})"]
                cells += [pm(r["ratio_to_training"], r["ratio_std"], 2)]
            theirs = part[part["method"] == method]["paper_seconds"].max()
            rows.append([LABELS[method], *cells, "–" if pd.isna(theirs) else f"{theirs:.2f}"])
        header = [c for m in models for c in (f"{m} s", f"{m} ×")]
        lines += [f"**{dataset}**", "", *markdown_table(["method", *header, "paper A100 s"], rows)]
    return lines


def section(t: Mapping[str, pd.DataFrame], dataset: str, model: str) -> list[str]:
    """The tables of one (dataset, model): attacks, verdicts, raw accuracy and utility beside
    the paper's."""
    where = {"dataset": dataset, "model": model}
    title = f"{dataset} · {model}" + (" (the paper's NCF)" if model == "NeuMF" else "")
    ref = PAPER_TABLES.get((dataset, model))
    lines = [f"## {title}", ""]
    lines += [f"Paper's numbers: {ref}." if ref else "The paper has no numbers for this pair.", ""]
    lines += attack_tables(t["privacy"], where)
    lines += verdict_table(t.get("runs", pd.DataFrame()), where)
    utility = select(t["utility"], where).set_index("method")
    paper = PAPER.get((dataset, model), {})
    raw = select(t["privacy"], where | {"protocol": "shadow"})
    raw = raw[raw["attacker"].isin(("mlp", "xgboost"))]
    attributes = list(dict.fromkeys(raw["attribute"]))
    rows = []
    for m in method_order([*utility.index, *paper]):
        mine = raw[raw["method"] == m]
        cells = []
        for a in attributes:
            for attacker in ("mlp", "xgboost"):
                r = mine[(mine["attribute"] == a) & (mine["attacker"] == attacker)]
                ours = pm(r["accuracy"].iloc[0], r["accuracy_std"].iloc[0]) if len(r) else "–"
                theirs = r["paper_accuracy"].iloc[0] if len(r) else math.nan
                cells.append(ours if pd.isna(theirs) else f"{ours} ({theirs:.4f})")
        rows.append([LABELS[m] + ("" if m in utility.index else _absent(m, model)), *cells])
    if attributes:
        majority = [f"{raw[raw['attribute'] == a]['majority'].iloc[0]:.3f}" for a in attributes]
        rows.append(["majority class", *[v for v in majority for _ in (0, 1)]])
        cells = [f"{a} {x}" for a in attributes for x in ("MLP", "XGB")]
        lines += ["**Raw accuracy** (shadow protocol), ours (paper's in brackets)", ""]
        lines += markdown_table(["method", *cells], rows)
    rows = []
    utility_keys = ["ndcg@5", "ndcg@10", "hit@5", "hit@10"]
    for m in method_order([*utility.index, *paper]):
        ran = m in utility.index
        r = utility.loc[m] if ran else None
        ours = [pm(r[k], r[f"{k}_std"], 4) if ran else "–" for k in utility_keys]
        theirs = [paper_value(dataset, model, m, "utility", i) for i in range(4)]
        ours.append(pm(r["ndcg@10_retention"], r["ndcg@10_retention_std"]) if ran else "–")
        theirs.append(theirs[1] / paper_value(dataset, model, "original", "utility", 1))
        cells = [o if pd.isna(p) else f"{o} ({p:.4f})" for o, p in zip(ours, theirs, strict=True)]
        rows.append([LABELS[m] + ("" if ran else _absent(m, model)), *cells])
    lines += ["**Utility**: test split, full ranking, ours (paper's in brackets)", ""]
    header = ["method", "NDCG@5", "NDCG@10", "Hit@5", "Hit@10", "NDCG@10 kept"]
    return lines + markdown_table(header, rows)


def _absent(method: str, model: str) -> str:
    supported = backbones(method)
    return (
        f" ({', '.join(supported)} only here)"
        if supported and model not in supported
        else " (not run)"
    )


def _not_run(settings: Mapping[str, Any], done: set[str]) -> list[str]:
    lines = ["## Not run here", ""]
    for dataset, reason in settings.get("unavailable", {}).items():
        lines.append(f"- **{dataset}**: {reason}.")
    for dataset, how in OTHER_DATASETS.items():
        if dataset not in done and dataset not in settings.get("unavailable", {}):
            lines.append(f"- **{dataset}**: not run here (no data on this machine); `{how}`.")
    return [*lines, ""]


# --- the READMEs' generated blocks ------------------------------------------------------------


def _worst(privacy: pd.DataFrame, protocol: str) -> str:
    part = privacy[privacy["protocol"] == protocol]
    return "–" if part.empty else f"{part['gap'].max():.3f}"


def readme_block(results: Path, link: str) -> str:
    """benchmarks/README.md's ``paper_tables`` block: per method and (dataset, model) the worst
    gap to chance under each protocol, NDCG@10 kept and time over training; then the
    acceptance criteria not met."""
    t, _, _ = load(results)
    lines = [f"From [`{link}/summary.md`]({link}/summary.md) (generated from its CSVs)."]
    if "privacy" not in t:
        return "\n".join([*lines, "No job has finished yet."])
    lines[0] += (
        " Each cell: worst |mean balanced accuracy − chance| over attributes and attackers, "
        "shadow / k-fold / NDCG@10 kept / seconds over the original's training (means over n "
        "seeds)."
    )
    lines.append("")
    utility, runtime, privacy = t["utility"], t["runtime"], t["privacy"]
    pairs = list(dict.fromkeys(zip(utility["dataset"], utility["model"], strict=True)))
    rows = []
    for method in method_order(utility["method"]):
        cells = []
        for dataset, model in pairs:
            where = {"dataset": dataset, "model": model, "method": method}
            u, r, p = select(utility, where), select(runtime, where), select(privacy, where)
            if u.empty:
                cells.append("–")
                continue
            ratio = r["ratio_to_training"].iloc[0]
            cells.append(
                f"{_worst(p, 'shadow')} / {_worst(p, 'kfold')} / "
                f"{fraction(u['ndcg@10_retention'].iloc[0])} / {ratio:.2f}×"
            )
        rows.append([LABELS[method], *cells])
    n = {
        pair: int(select(utility, dict(zip(["dataset", "model"], pair, strict=True))).n_seeds.max())
        for pair in pairs
    }
    lines += markdown_table(["method", *(f"{d} · {m} (n = {n[d, m]})" for d, m in pairs)], rows)
    judged = t["acceptance"][t["acceptance"]["met"].notna()]
    missed = judged[~judged["met"].map(lambda v: str(v).lower() in ("true", "1", "1.0"))]
    lines.append(
        f"Acceptance (issue 12): {len(judged) - len(missed)} of {len(judged)} criteria met."
    )
    for _, r in missed.iterrows():
        where = " · ".join(str(r[k]) for k in ("dataset", "model", "mode") if pd.notna(r[k]))
        lines.append(f"- not met: {where}: {r['criterion']}: {criterion_text(r)}")
    return "\n".join(lines)


def originals_block(results: Path, link: str) -> str:
    """README.md's ``originals`` block: the leakage of the original models (the highest mean
    balanced accuracy per attribute under each protocol) and their test NDCG@10."""
    t, _, _ = load(results)
    if "privacy" not in t:
        return f"No results in [`{link}`]({link}/summary.md) yet."
    privacy = t["privacy"][t["privacy"]["method"] == "original"]
    utility = t["utility"][t["utility"]["method"] == "original"]
    attributes = list(dict.fromkeys(privacy["attribute"]))
    chance = {a: privacy[privacy["attribute"] == a]["chance"].iloc[0] for a in attributes}
    rows = []
    for _, u in utility.iterrows():
        part = select(privacy, {"dataset": u["dataset"], "model": u["model"]})
        cells = []
        for a in attributes:
            best = [
                part[(part["attribute"] == a) & (part["protocol"] == p)]
                for p in ("shadow", "kfold")
            ]
            cells.append(
                " / ".join(f"{b['balanced_accuracy'].max():.3f}" if len(b) else "–" for b in best)
            )
        rows.append(
            [f"{u['model']} · {u['dataset']}", int(u["n_seeds"]), f"{u['ndcg@10']:.4f}", *cells]
        )
    header = [f"{a} (chance {chance[a]:.3f})" for a in attributes]
    lines = [
        f"From [`{link}/summary.md`]({link}/summary.md) (generated): the strongest attacker's "
        "balanced accuracy per attribute, shadow / k-fold protocol, and test NDCG@10 (full "
        "ranking), means over n seeds.",
        "",
    ]
    return "\n".join(
        lines + markdown_table(["model · dataset", "n", "NDCG@10", *header], rows)
    ).rstrip()


def attrcloak_block(results: Path, link: str) -> str:
    """README.md's ``attrcloak`` block: AttrCloak DD and DF per (dataset, model) against issue
    12's bar."""
    t, _, _ = load(results)
    if "acceptance" not in t or t["acceptance"].empty:
        return f"No AttrCloak results in [`{link}`]({link}/summary.md) yet."
    lines = [
        f"From [`{link}/summary.md`]({link}/summary.md) (generated; the audit and its settings "
        "are in its Setup).",
        "",
        *acceptance_lines(t["acceptance"], ["dataset", "model"]),
    ]
    rows = []
    runtime = t["runtime"]
    for _, r in runtime[runtime["method"].isin(("attrcloak-dd", "attrcloak-df"))].iterrows():
        rows.append(
            [
                f"{r['model']} · {r['dataset']}",
                LABELS[r["method"]],
                f"{pm(r['seconds'], r['seconds_std'], 1)} ({r['device']})",
                f"{pm(r['original_train_s'], math.nan, 0)} ({r['train_device']})",
                pm(r["ratio_to_training"], r["ratio_std"], 2),
            ]
        )
    header = ["run", "method", "unlearning s", "training s", "× training"]
    return "\n".join(lines + markdown_table(header, rows)).rstrip()


def write_markdown(results: Path, readme: bool) -> None:
    """summary.md of ``results`` and, with ``readme``, every generated block that reads it."""
    write_text(results / "summary.md", summary_markdown(results))
    if readme:
        from _blocks import write_blocks

        write_blocks()


def baselines_block(results: Path, link: str, dataset: str = "ml-100k", model: str = "BPR") -> str:
    """docs/baselines.md's ``baselines`` block: every method of one (dataset, model) cell: the
    strongest attacker's balanced accuracy per attribute (shadow / k-fold), NDCG@10, its share
    kept and the defence's seconds."""
    t, _, _ = load(results)
    where = {"dataset": dataset, "model": model}
    if "privacy" not in t or select(t["utility"], where).empty:
        return f"No {dataset} · {model} results in [`{link}`]({link}/summary.md) yet."
    privacy, utility = select(t["privacy"], where), select(t["utility"], where)
    runtime = select(t["runtime"], where)
    attributes = list(dict.fromkeys(privacy["attribute"]))
    rows = []
    for method in method_order(utility["method"]):
        mine = privacy[privacy["method"] == method]
        cells = []
        for a in attributes:
            best = [mine[(mine["attribute"] == a) & (mine["protocol"] == p)] for p in PROTOCOLS]
            cells.append(" / ".join(_best(b) for b in best))
        u = utility[utility["method"] == method].iloc[0]
        r = runtime[runtime["method"] == method].iloc[0]
        rows.append(
            [LABELS[method], int(u["n_seeds"]), *cells, f"{u['ndcg@10']:.4f}"]
            + [fraction(u["ndcg@10_retention"]), f"{r['seconds']:.1f} ({r['device']})"]
        )
    chance = [f"{privacy[privacy['attribute'] == a]['chance'].iloc[0]:.3f}" for a in attributes]
    rows.append(["chance (1/k)", "", *chance, "", "", ""])
    lines = [
        f"From [`{link}/summary.md`]({link}/summary.md) (generated): per attribute the "
        "strongest attacker's balanced accuracy, shadow / k-fold protocol; seconds: the "
        "defence (retraining included) or the original's training; means over n seeds.",
        "",
    ]
    header = ["method", "n", *attributes, "NDCG@10", "kept", "seconds"]
    return "\n".join(lines + markdown_table(header, rows)).rstrip()


PROTOCOLS = ("shadow", "kfold")


def _best(rows: pd.DataFrame) -> str:
    return f"{rows['balanced_accuracy'].max():.3f}" if len(rows) else "–"
