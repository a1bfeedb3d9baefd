"""Where AttrCloak's utility goes (issue 12, "report where the utility goes: which users and items
move most"), and what a closed-form linear eraser costs on the same models.

    python benchmarks/utility_where.py --runs outputs/bench/NAME --leace \
        --out benchmarks/results/utility_where

For every AttrCloak run of a grid's run folder (``paper_tables.py --out``; the trials keep the
unlearned checkpoint and name their original), the original and the unlearned model are scored
on the test split with RecBole's own full-sort evaluation, per user (NDCG@10 from RecBole's
``NDCG`` metric on the collected top-k) and per item (how often it is in a top 10). Per run:

- how far users moved: each user's displacement over the RMS norm of the original users, by
  activity quartile (training interactions) and by class of each attribute;
- where NDCG@10 was lost: per activity quartile, and the share of the total loss carried by the
  quarter of users that moved most; Spearman's ρ between a user's displacement and its change;
- items: the share of top-10 slots held by the 20 % most popular items (training
  interactions), before and after, and the mean overlap of each user's two top-10 lists.

``--leace`` adds, for the BPR originals (one table, the representation itself), LEACE (Belrose
et al., 2023: the least-squares change of the representations after which no linear classifier
does better than the class prior) for each attribute alone and for all of them, scored the same
way: what erasing the linear information alone costs. LEACE collapses the representations along
the K − 1 (whitened) directions that separate an attribute's K classes, however little they
leak there; AttrCloak moves users only as far as its target needs. Writes ``where.csv`` and
``where.md``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import command_line
from scipy.stats import spearmanr
from speed import load

from recbole_attrcloak import compat
from recbole_attrcloak.backbone import clear_cached_representations, user_representations
from recbole_attrcloak.provenance import machine, machine_line

ATTRIBUTES = ("gender", "age", "occupation")


def per_user_scores(ctx, model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, NDCG@10 per user, top-10 item ids per user) on the test split, from RecBole's
    full-sort evaluation of ``model`` (the scores it ranks, its collected top-k)."""
    from recbole.evaluator.metrics import NDCG
    from recbole.utils import get_trainer

    config = ctx.config
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    clear_cached_representations(model)
    captured: dict[str, Any] = {"tops": []}
    full_sort = trainer._full_sort_batch_eval
    evaluate = trainer.evaluator.evaluate

    def batch(batched):
        out = full_sort(batched)
        captured["tops"].append(out[1].topk(10, dim=1).indices.cpu())
        return out

    def keep(struct):
        captured["topk"] = struct.get("rec.topk").clone()
        return evaluate(struct)

    trainer._full_sort_batch_eval = batch
    trainer.evaluator.evaluate = keep
    trainer.evaluate(ctx.test_data, load_best_model=False, show_progress=False)
    topk = captured["topk"]
    pos_index, pos_len = topk[:, :-1].bool().numpy(), topk[:, -1].numpy()
    ndcg = NDCG(config).metric_info(pos_index, pos_len)[:, 9]
    users = np.asarray(ctx.test_data.uid_list)
    return users, ndcg, torch.cat(captured["tops"]).numpy()


def leace(x: np.ndarray, codes: Sequence[np.ndarray]) -> np.ndarray:
    """LEACE of ``x`` (n, d) for the one-hot classes ``codes`` (each (n,), −1 unknown: a class
    of its own): x − Σ^{1/2} P Σ^{−1/2} (x − μ), P the projection on the whitened
    cross-covariance's column space."""
    mu = x.mean(0)
    xc = x - mu
    values, vectors = np.linalg.eigh(xc.T @ xc / len(x))
    values = np.clip(values, 1e-12, None)
    root = vectors @ np.diag(values**0.5) @ vectors.T
    inv_root = vectors @ np.diag(values**-0.5) @ vectors.T
    onehots = []
    for c in codes:
        z = np.eye(int(c.max()) + 2)[c + 1]
        onehots.append(z - z.mean(0))
    cross = inv_root @ (xc.T @ np.concatenate(onehots, 1)) / len(x)
    u, s, _ = np.linalg.svd(cross, full_matrices=False)
    u = u[:, s > 1e-9]  # whitened, unit-scale: smaller is rounding (nothing left to erase)
    return x - xc @ inv_root @ (u @ u.T) @ root


def _quartiles(values: np.ndarray) -> np.ndarray:
    """0..3: the quartile of each value (ties broken by order)."""
    ranks = values.argsort(kind="stable").argsort(kind="stable")
    return (4 * ranks) // len(values)


def describe(ctx, before: dict, after: dict, moved: np.ndarray) -> dict[str, Any]:
    """The row of one unlearned (or erased) model against its original."""
    users = before["users"]
    assert np.array_equal(users, after["users"])
    dataset = ctx.train_data.dataset
    uid, iid = dataset.uid_field, dataset.iid_field
    activity = np.bincount(dataset.inter_feat[uid].numpy(), minlength=dataset.user_num)
    popularity = np.bincount(dataset.inter_feat[iid].numpy(), minlength=dataset.item_num)
    popular = popularity >= np.quantile(popularity[1:], 0.8)
    d_user = moved[users - 1]  # representations drop the padding row 0
    loss = before["ndcg"] - after["ndcg"]
    quart = _quartiles(activity[users])
    most = d_user >= np.quantile(d_user, 0.75)
    row: dict[str, Any] = {
        "ndcg_kept_pct": 100 * after["ndcg"].mean() / before["ndcg"].mean(),
        "moved_rms": float(np.sqrt(np.mean(moved**2))),
        "loss_share_top_moved_quarter_pct": 100 * loss[most].sum() / loss.sum()
        if loss.sum() > 0
        else float("nan"),
        "spearman_moved_vs_loss": float(spearmanr(d_user, loss).statistic),
        "top10_overlap": float(
            np.mean(
                [
                    len(set(a) & set(b)) / 10
                    for a, b in zip(before["tops"], after["tops"], strict=True)
                ]
            )
        ),
        "popular_share_before_pct": 100 * popular[before["tops"]].mean(),
        "popular_share_after_pct": 100 * popular[after["tops"]].mean(),
    }
    for q in range(4):
        sel = quart == q
        row[f"kept_pct_activity_q{q + 1}"] = (
            100 * after["ndcg"][sel].mean() / max(before["ndcg"][sel].mean(), 1e-12)
        )
        row[f"moved_activity_q{q + 1}"] = float(d_user[sel].mean())
    for name in ATTRIBUTES:
        if name not in ctx.attributes:
            continue
        lab = ctx.attributes[name]
        codes = np.asarray(lab.codes)[users]
        shown = [c for c in range(len(lab.classes)) if (codes == c).sum() >= 20]
        row[f"moved_by_{name}"] = "; ".join(
            f"{lab.classes[c]}: {d_user[codes == c].mean():.3f}" for c in shown
        )
    return row


def _scores(ctx, model) -> dict[str, np.ndarray]:
    users, ndcg, tops = per_user_scores(ctx, model)
    return {"users": users, "ndcg": ndcg, "tops": tops}


def _displacement(original: np.ndarray, changed: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.mean(np.sum(original**2, 1)))
    return np.linalg.norm(changed - original, axis=1) / scale


def runs_of(folder: Path) -> list[tuple[Path, dict]]:
    """The AttrCloak trials of a grid's run folder, with their reports."""
    found = []
    for report in sorted((folder / "work" / "trials").glob("*/report.json")):
        info = json.loads(report.read_text())
        if info.get("method") == "attrcloak":
            found.append((report.parent, info))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="a grid's run folder")
    parser.add_argument("--out", type=Path, required=True, help="where where.csv/.md go")
    parser.add_argument("--leace", action="store_true", help="also LEACE on the BPR originals")
    args = parser.parse_args(argv)
    trials = runs_of(args.runs)
    if not trials:
        print(f"error: no AttrCloak trial under {args.runs}/work/trials", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    by_original: dict[str, list[tuple[Path, dict]]] = {}
    for folder, info in trials:
        by_original.setdefault(info["checkpoint"]["original"], []).append((folder, info))
    for original, runs in sorted(by_original.items()):
        ctx = load(Path(original), Path("/tmp") / "utility_where")
        before = _scores(ctx, ctx.model)
        reps = user_representations(ctx.model)
        seed = int(ctx.config["seed"])
        for folder, info in runs:
            model = copy.deepcopy(ctx.model)
            state = compat.load_checkpoint(folder / Path(info["checkpoint"]["checkpoint"]).name)
            model.load_state_dict(state["state_dict"])
            moved = _displacement(reps, user_representations(model))
            row = {
                "model": info["model"],
                "seed": seed,
                "method": f"attrcloak-{info['unlearning']['mode']}",
            }
            rows.append({**row, **describe(ctx, before, _scores(ctx, model), moved)})
            print(
                rows[-1]["model"],
                seed,
                rows[-1]["method"],
                f"{rows[-1]['ndcg_kept_pct']:.2f}",
                flush=True,
            )
        if args.leace and runs[0][1]["model"] == "BPR":
            table = ctx.model.user_embedding.weight
            codes = [np.asarray(ctx.attributes[n].codes)[1:] for n in ATTRIBUTES]
            choices = [(n, [c]) for n, c in zip(ATTRIBUTES, codes, strict=True)]
            for name, chosen in [*choices, ("all", codes)]:
                model = copy.deepcopy(ctx.model)
                erased = leace(reps.astype(np.float64), chosen)
                with torch.no_grad():
                    model.user_embedding.weight[1:] = torch.as_tensor(erased, dtype=table.dtype)
                moved = _displacement(reps, erased)
                row = {"model": "BPR", "seed": seed, "method": f"leace-{name}"}
                rows.append({**row, **describe(ctx, before, _scores(ctx, model), moved)})
    args.out.mkdir(parents=True, exist_ok=True)
    _write(rows, args.out, command_line())
    return 0


def _write(rows: Sequence[Mapping[str, Any]], out: Path, command: str) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "where.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Where the utility goes (test NDCG@10 per user, top-10 lists per item)",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. {machine_line(machine())} "
        "The unlearned models are the run folder's; their commit is in its `summary.md`.",
        "",
        "moved: a user's displacement over the RMS norm of the original users (mean per group); "
        "kept: NDCG@10 after over before, % (per activity quartile: Q1 least active); loss "
        "share: % of the NDCG@10 lost that the quarter of users that moved most carry; ρ: "
        "Spearman between displacement and NDCG@10 lost; overlap: mean share of a user's "
        "top 10 kept; popular: % of top-10 slots held by the 20 % most popular items.",
        "",
        "| model | seed | method | kept % | moved | kept Q1 / Q2 / Q3 / Q4 | moved Q1 / Q4 "
        "| loss share | ρ | overlap | popular before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kept_q = " / ".join(f"{r[f'kept_pct_activity_q{q}']:.1f}" for q in range(1, 5))
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['method']} | {r['ndcg_kept_pct']:.2f} "
            f"| {r['moved_rms']:.3f} | {kept_q} "
            f"| {r['moved_activity_q1']:.3f} / {r['moved_activity_q4']:.3f} "
            f"| {r['loss_share_top_moved_quarter_pct']:.0f} | {r['spearman_moved_vs_loss']:.2f} "
            f"| {r['top10_overlap']:.2f} | {r['popular_share_before_pct']:.1f} → "
            f"{r['popular_share_after_pct']:.1f} |"
        )
    lines += ["", "Mean displacement by class (classes of at least 20 test users):", ""]
    for r in rows:
        parts = [f"{n}: {r[f'moved_by_{n}']}" for n in ATTRIBUTES if f"moved_by_{n}" in r]
        lines.append(f"- {r['model']} {r['seed']} {r['method']}: " + " | ".join(parts))
    (out / "where.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
