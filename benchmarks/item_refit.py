"""Is the NDCG@10 that unlearning costs information or misalignment? Refit everything but the
user side on the unlearned users and see what comes back (issue 12: NDCG@10 kept ≥ 99 % DD,
≥ 98 % DF on ml-100k).

    python benchmarks/item_refit.py --originals DIR --model BPR --seeds 2020,2021,2022 \
        --out benchmarks/results/item_refit

For each seed: load the original checkpoint ``DIR/<model>-ml-100k-<seed>.pth`` as the CLI loads
it, unlearn it in DD and in DF with the product's defaults, then train every parameter outside
the registered user side (the item tables; NeuMF's scoring layers too) on the training
interactions with the model's own RecBole trainer (``backbone.fit_model``: the model's loss,
learning rate and early stopping on validation NDCG@10, ``--epochs`` at most) while the user
side stays frozen (no gradient, so the optimiser leaves it). When the user representation does
not depend on those parameters (BPR, NeuMF) the refit model has exactly the unlearned user
representations the audit scored, so it is as private; if the refit recovered the NDCG@10, the
loss would be misalignment between the moved users and the items, which a utility step could
undo. Writes ``item_refit.csv`` and
``item_refit.md``: valid and test NDCG@10 of the original, the unlearned and the refit models.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import run_study, study_head, study_parser
from speed import load

from recbole_attrcloak.backbone import evaluate_utility, fit_model, user_representations
from recbole_attrcloak.registry import user_side
from recbole_attrcloak.unlearning.attrcloak import run_attrcloak


def scores(ctx, model) -> tuple[float, float]:
    """(valid, test) NDCG@10 of ``model`` with the context's config and loaders."""
    out = evaluate_utility(ctx.config, model, ctx.valid_data, ctx.test_data)
    return out["valid"]["ndcg@10"], out["test"]["ndcg@10"]


def refit_outside_users(ctx, model: torch.nn.Module, epochs: int, work: Path) -> dict[str, Any]:
    """Train ``model``'s parameters outside its user side in place with the model's own trainer
    (``backbone.fit_model``: early stopping on validation, the best epoch loaded), the user side
    frozen (no gradient: the optimiser leaves it); what was trained and the seconds."""
    prefixes = user_side(model).params
    trained = [n for n, _ in model.named_parameters() if not n.startswith(prefixes)]
    config = ctx.config
    saved = {k: config[k] for k in ("epochs", "eval_step", "checkpoint_dir")}
    config["epochs"], config["eval_step"], config["checkpoint_dir"] = epochs, 1, str(work)
    try:
        for name, param in model.named_parameters():
            param.requires_grad_(name in trained)
        tic = time.perf_counter()
        fit_model(config, model, ctx.train_data, ctx.valid_data)
        seconds = time.perf_counter() - tic
    finally:
        for key, value in saved.items():
            config[key] = value
        for param in model.parameters():
            param.requires_grad_(True)
    return {"trained": " ".join(trained), "refit_s": round(seconds, 2)}


def refit_runs(model: str, seed: int, originals: Path, epochs: int, work: Path) -> list[dict]:
    """DD and DF on the seed's original, each followed by the refit outside the user side."""
    ctx = load(originals / f"{model}-ml-100k-{seed}.pth", work)
    valid0, test0 = scores(ctx, ctx.model)
    rows = []
    for mode in ("dd", "df"):
        ctx.config["au_mode"] = mode
        result = run_attrcloak(ctx)
        unlearned = user_representations(result.model)
        valid1, test1 = scores(ctx, result.model)
        info = refit_outside_users(ctx, result.model, epochs, work / f"refit-{mode}")
        valid2, test2 = scores(ctx, result.model)
        same = bool(np.array_equal(unlearned, user_representations(result.model)))
        rows.append(
            {
                "model": model,
                "seed": seed,
                "mode": mode,
                "steps": result.info["steps"],
                "valid_original": valid0,
                "valid_unlearned": valid1,
                "valid_refit": valid2,
                "test_original": test0,
                "kept_unlearned_pct": round(100 * test1 / test0, 2),
                "kept_refit_pct": round(100 * test2 / test0, 2),
                "users_unchanged": same,
                **info,
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], command: str, header: str) -> str:
    """item_refit.md: per model, mode and seed, NDCG@10 kept before and after the refit."""
    title = "Refitting the item side on the unlearned users (ml-100k, CPU)"
    note = (
        "Cells: validation NDCG@10 of the original → unlearned → refit model, and the test "
        "NDCG@10 kept (%) unlearned → refit. Refit: every parameter outside the user side "
        "trained on the training interactions with RecBole's trainer (early stopping on "
        "validation NDCG@10, best epoch kept), the user side frozen. `users unchanged`: the "
        "audited user representations are the unlearned ones, to the bit."
    )
    lines = [
        *study_head(title, command, header, note),
        "| model | mode | seed | valid NDCG@10 | test kept (%) | users unchanged | trained |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        valid = f"{r['valid_original']:.4f} → {r['valid_unlearned']:.4f} → {r['valid_refit']:.4f}"
        kept = f"{r['kept_unlearned_pct']:.2f} → {r['kept_refit_pct']:.2f}"
        lines.append(
            f"| {r['model']} | {r['mode'].upper()} | {r['seed']} | {valid} | {kept} "
            f"| {'yes' if r['users_unchanged'] else 'no'} | `{r['trained']}` |"
        )
    lines += ["", "Means over the seeds (test NDCG@10 kept, %):", ""]
    for key in sorted({(r["model"], r["mode"]) for r in rows}):
        cells = [r for r in rows if (r["model"], r["mode"]) == key]
        before = statistics.mean(r["kept_unlearned_pct"] for r in cells)
        after = statistics.mean(r["kept_refit_pct"] for r in cells)
        lines.append(f"- {key[0]} {key[1].upper()}: {before:.2f} unlearned, {after:.2f} refit")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__, "item_refit")
    parser.add_argument("--epochs", type=int, default=30, help="refit epochs at most")
    args = parser.parse_args(argv)

    def one_seed(seed: int, work: Path) -> list[dict[str, Any]]:
        return [
            row
            for model in args.model.split(",")
            for row in refit_runs(model, seed, Path(args.originals), args.epochs, work / model)
        ]

    return run_study(args.seeds, one_seed, Path(args.out), "item_refit", markdown)


if __name__ == "__main__":
    raise SystemExit(main())
