"""README.md's ``ablation`` block (the paper's Fig. 5), rendered from the α_u ablation sweep's
trials.csv (``run_recbole_au.py --tune configs/sweeps/ablation.yaml``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from _tables import read_csv

from recbole_attrcloak.tune.results import markdown_table


def readme_block(results: Path, link: str) -> str:
    """Per mode, every trial: the solver and α_u, validation NDCG@10 kept, the shadow audit's
    largest gap to chance, test NDCG@10 kept and the sweep's score (the best in bold)."""
    path = results / "trials.csv"
    if not path.is_file():
        return f"No ablation results in [`{link}`]({link}) yet."
    trials, _, _ = read_csv(path)
    trials = trials[trials["status"] == "ok"]
    lines = [
        f"From [`{link}/trials.csv`]({link}/trials.csv) (generated; the sweep's own "
        f"[`summary.md`]({link}/summary.md) has its settings and timings). Gap: the shadow "
        "audit's largest |balanced accuracy − chance|; score: validation kept − gap (the best "
        "per mode in bold).",
        "",
    ]
    rows = []
    for mode, part in trials.groupby("au_mode", sort=False):
        best = part["score"].idxmax()
        for i, r in part.iterrows():
            alpha = "dynamic" if pd.isna(r["au_alpha"]) else f"{r['au_alpha']:g}"
            cells = [
                str(mode).upper(),
                r["au_solver"],
                alpha,
                f"{r['valid_retention']:.1%}",
                f"{r['privacy_gap']:.3f}",
                f"{r['test_retention']:.1%}",
                f"{r['score']:.3f}",
            ]
            rows.append([f"**{c}**" for c in cells] if i == best else cells)
    header = ["mode", "solver", "α_u", "valid kept", "gap", "test kept", "score"]
    return "\n".join(lines + markdown_table(header, rows)).rstrip()
