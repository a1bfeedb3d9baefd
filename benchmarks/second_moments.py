"""What attackers read in the unlearned embeddings' second moments, with and without the
second-moment critics (``au_squares``, ``au_quadratic``): the diagnosis behind them, regenerated.

    python benchmarks/second_moments.py --checkpoint DIR/BPR-ml-1m-2020.pth --modes df \
        --out benchmarks/results/second_moments

Load the original checkpoint as the CLI loads it, unlearn it with the product's defaults in each
mode of ``--modes`` with both critics off, with the quadratic one alone and with both (the
default), and score each unlearned user
table with 5-fold attackers (stratified, seed 0) on each attribute of ``--attributes``: the
audit's logistic regression on the standardised coordinates (linear), on their squares (each
coordinate's variance), on the products of the top 32 principal components (covariances), and
the audit's RBF-SVM and random forest. Cells: balanced accuracy − chance (1/K). The audit's
permutation null for the same runs is in the grids (``default_ml1m_*``); here the attackers only
locate what is left. Writes ``second_moments.csv`` and ``second_moments.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import command_line, run_header, split_list, study_head, write_rows
from speed import load

PROBES = ("linear", "squares", "pca32_products", "svm_rbf", "random_forest")
# (au_squares, au_quadratic): neither, the quadratic critic alone, both (the default)
SETTINGS = ((False, False), (False, True), (True, True))


def probe_features(x: np.ndarray, probe: str) -> np.ndarray:
    """The inputs of a probe: the standardised coordinates, their squares, or the pairwise
    products of the top 32 principal components (``losses.directions.principal_axes``: unit
    variance each)."""
    import torch

    from recbole_attrcloak.losses.directions import principal_axes

    z = (x - x.mean(0)) / x.std(0).clip(1e-12)
    if probe == "squares":
        return z**2
    if probe == "pca32_products":
        zt = torch.from_numpy(z)
        pcs = ((zt - zt.mean(0)) @ principal_axes(zt, 32)).numpy()
        rows, cols = np.triu_indices(pcs.shape[1])
        return pcs[:, rows] * pcs[:, cols]
    return z


def probe_gap(x: np.ndarray, y: np.ndarray, probe: str) -> float:
    """5-fold balanced accuracy of ``probe`` on (x, y), minus chance: the audit's attackers
    (``audit.attackers.make_attacker``), its logistic regression on each probe's features."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from recbole_attrcloak.audit.attackers import make_attacker

    if probe in ("svm_rbf", "random_forest"):
        model, feats = make_attacker(probe, 0), x
    else:
        model, feats = make_attacker("logreg", 0), probe_features(x, probe)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    pred = cross_val_predict(model, feats, y, cv=folds)
    return float(balanced_accuracy_score(y, pred)) - 1.0 / len(np.unique(y))


def runs(checkpoint: Path, modes: list[str], attributes: list[str], work: Path) -> list[dict]:
    """One unlearning per mode and setting of the two critics, each probed."""
    from recbole_attrcloak.backbone import evaluate_utility, user_representations
    from recbole_attrcloak.unlearning.attrcloak import run_attrcloak

    ctx = load(checkpoint, work)
    scores = evaluate_utility(ctx.config, ctx.model, ctx.valid_data, ctx.test_data)
    base = scores["test"]["ndcg@10"]
    labels = {n: np.asarray(ctx.attributes[n].codes)[1:] for n in attributes}
    rows = []
    for mode in modes:
        for squares, quadratic in SETTINGS:
            ctx.config["au_mode"], ctx.config["au_squares"] = mode, squares
            ctx.config["au_quadratic"] = quadratic
            tic = time.perf_counter()
            result = run_attrcloak(ctx)
            seconds = time.perf_counter() - tic
            after = evaluate_utility(ctx.config, result.model, ctx.valid_data, ctx.test_data)
            x = user_representations(result.model)
            row: dict[str, Any] = {
                "checkpoint": checkpoint.name,
                "mode": mode,
                "au_squares": squares,
                "au_quadratic": quadratic,
                "steps": result.info["steps"],
                "stop_reason": result.info["stop_reason"],
                "seconds": round(seconds, 1),
                "ndcg_kept_pct": round(100 * after["test"]["ndcg@10"] / base, 2),
            }
            for name, codes in labels.items():
                known = codes >= 0
                for probe in PROBES:
                    gap = probe_gap(x[known], codes[known], probe)
                    row[f"{name}/{probe}"] = round(gap, 3)
            rows.append(row)
            print(row, flush=True)
    return rows


def markdown(rows: list[dict], attributes: list[str], command: str, header: str) -> str:
    """second_moments.md: one row per run, each probe's gap per attribute."""
    title = "What attackers read in the unlearned embeddings' second moments"
    note = (
        "Cells: 5-fold balanced accuracy − chance of each probe (the audit's logistic "
        "regression on the standardised coordinates, on their squares, on the products of the "
        "top 32 principal components; the audit's RBF-SVM and random forest), on the unlearned "
        "user table."
    )
    cols = [f"{a}/{p}" for a in attributes for p in PROBES]
    lines = [
        *study_head(title, command, header, note),
        "| mode | au_squares | au_quadratic | steps | NDCG@10 kept | " + " | ".join(cols) + " |",
        "|---|---|---|---|---|" + "---|" * len(cols),
    ]
    for r in rows:
        cells = " | ".join(f"{r[c]:+.3f}" for c in cols)
        lines.append(
            f"| {r['mode']} | {'on' if r['au_squares'] else 'off'} | "
            f"{'on' if r['au_quadratic'] else 'off'} | {r['steps']} | "
            f"{r['ndcg_kept_pct']:.2f} % | {cells} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import tempfile

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="an original's .pth (and its .json)")
    parser.add_argument("--modes", default="df")
    parser.add_argument("--attributes", default="gender")
    parser.add_argument("--out", required=True, help="folder for second_moments.csv and .md")
    args = parser.parse_args(argv)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file() or not checkpoint.with_suffix(".json").is_file():
        parser.exit(2, f"second_moments.py: no checkpoint and .json at {checkpoint}\n")
    attributes = split_list(args.attributes)
    with tempfile.TemporaryDirectory() as tmp:
        rows = runs(checkpoint, split_list(args.modes), attributes, Path(tmp))
    out = Path(args.out)
    write_rows(out / "second_moments.csv", rows)
    header = f"{run_header()} torch threads: {torch.get_num_threads()}."
    text = markdown(rows, attributes, command_line(), header)
    (out / "second_moments.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
