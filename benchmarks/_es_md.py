"""embedding_size's Markdown, rendered from its CSVs alone: summary.md and the
``embedding_size`` block of benchmarks/README.md."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from _markdown import acceptance_lines, attack_tables, fraction, head_lines, select, verdict_table
from _paper_md import load
from _tables import LABELS, epochs_text, job_counts, write_text

from recbole_attrcloak.tune.results import markdown_table, pm

TITLE = "Embedding size: privacy and utility against d (the paper's Fig. 6)"
CELL = ["dataset", "model", "embedding_size"]


def summary_markdown(results: Path) -> str:
    """summary.md from the CSVs of ``results``."""
    t, head, settings = load(results)
    lines = head_lines(TITLE, head) + _setup(settings, t.get("jobs", pd.DataFrame()))
    if "privacy" not in t:
        return "\n".join([*lines, "No job has finished yet.", ""])
    lines += ["## Acceptance (issue 12: the same test and band at every d)", ""]
    lines += acceptance_lines(t["acceptance"], CELL)
    table = t["embedding_size"]
    rows = []
    for _, r in table.iterrows():
        training = " (training)" if r["method"] == "original" else ""
        rows.append(
            [
                int(r["embedding_size"]),
                LABELS[r["method"]],
                pm(r["ndcg@10"], r["ndcg@10_std"], 4),
                pm(r["retention@ndcg@10"], r["retention@ndcg@10_std"]),
                f"{pm(r['seconds'], r['seconds_std'], 1)}{training} ({r['device']})",
                int(r["n_seeds"]),
            ]
        )
    lines += ["## Utility and time", ""]
    header = ["d", "method", "NDCG@10", "NDCG@10 kept", "seconds (device)", "n"]
    lines += markdown_table(header, rows)
    for d in dict.fromkeys(table["embedding_size"]):
        where = {"embedding_size": int(d)}
        lines += [f"## d = {int(d)}", "", *attack_tables(t["privacy"], where)]
        lines += verdict_table(t.get("runs", pd.DataFrame()), where)
    lines += ["![privacy and utility against d](embedding_size.png)", ""]
    return "\n".join(lines)


def _setup(settings: Mapping[str, Any], jobs: pd.DataFrame) -> list[str]:
    originals = settings.get("originals") or {}
    loaded = sum(1 for v in originals.values() if v.get("path"))
    return [
        "## Setup",
        "",
        f"- {settings.get('model')} on {settings.get('dataset')}, d ∈ {settings.get('dims')}, "
        f"seeds {settings.get('seeds')}; `configs/default.yaml` with `embedding_size` = d, "
        f"full-sort evaluation; epoch caps: {epochs_text(settings.get('epochs') or {})}; "
        f"extra settings: {', '.join(settings.get('set', [])) or 'none'}. The paper's Fig. 6 "
        "used ModCloth's body shape, not available here.",
        f"- Original models: {loaded} of {len(originals)} loaded from `--originals`, the "
        "others trained in the run."
        if originals
        else "- Original models: trained in the run.",
        f"- Audit `{settings.get('audit', 'quick')}` (docs/audit.md); balanced accuracy, mean ± "
        "std over seeds.",
        f"- Jobs: {job_counts(jobs)} (jobs.csv).",
        "",
    ]


def readme_block(results: Path, link: str) -> str:
    """The README block: per d, each method's worst gap to chance (shadow / k-fold) and NDCG@10
    kept."""
    t, _, _ = load(results)
    lines = [f"From [`{link}/summary.md`]({link}/summary.md) (generated from its CSVs)."]
    if "privacy" not in t:
        return "\n".join([*lines, "No job has finished yet."])
    lines[0] += (
        " Each cell: worst |mean balanced accuracy − chance| over attributes and attackers, "
        "shadow / k-fold / NDCG@10 kept (means over n seeds)."
    )
    table, privacy = t["embedding_size"], t["privacy"]
    dims = [int(d) for d in dict.fromkeys(table["embedding_size"])]
    rows = []
    for method in dict.fromkeys(table["method"]):
        cells = []
        for d in dims:
            where = {"embedding_size": d, "method": method}
            r, p = select(table, where), select(privacy, where)
            if r.empty:
                cells.append("–")
                continue
            worst = [p[p["protocol"] == x]["gap"].max() for x in ("shadow", "kfold")]
            gaps = " / ".join("–" if pd.isna(w) else f"{w:.3f}" for w in worst)
            cells.append(f"{gaps} / {fraction(r['retention@ndcg@10'].iloc[0])}")
        rows.append([LABELS[method], *cells])
    n = {d: int(table[table["embedding_size"] == d]["n_seeds"].max()) for d in dims}
    lines += ["", *markdown_table(["method", *(f"d = {d} (n = {n[d]})" for d in dims)], rows)]
    return "\n".join(lines)


def write_markdown(results: Path, readme: bool) -> None:
    """summary.md of ``results`` and, with ``readme``, every generated block."""
    write_text(results / "summary.md", summary_markdown(results))
    if readme:
        from _blocks import write_blocks

        write_blocks()
