"""DD's ranking retention with fewer sampled pairs per user: the NDCG@10 it keeps and its wall
time (issue 12: DD ≤ 25 % of the original's training time, with the recommendations kept).

    python benchmarks/dd_pairs.py --originals DIR --model BPR --seeds 2020,2021,2022 \
        --pairs 64,16,8 --out benchmarks/results/dd_pairs

For each seed: load the original checkpoint ``DIR/<model>-ml-100k-<seed>.pth`` as the CLI loads
it and unlearn it in DD with the product's defaults but ``au_dd_pairs`` (each value of
``--pairs``, one run each, one at a time), then score the unlearned model's test NDCG@10 with
RecBole's evaluator against the original's. Wall time from the defence's start to its return
(as ``speed.py``; the bar itself is ``speed.py``'s, against a freshly timed training). Writes
``dd_pairs.csv`` and ``dd_pairs.md``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from _common import run_study, study_head, study_parser
from speed import load

from recbole_attrcloak.backbone import evaluate_utility, user_representations
from recbole_attrcloak.unlearning.attrcloak import run_attrcloak


def ndcg(ctx, model) -> float:
    """Test NDCG@10 of ``model`` with the context's config and loaders."""
    return evaluate_utility(ctx.config, model, ctx.valid_data, ctx.test_data)["test"]["ndcg@10"]


def displacement(before, after) -> float:
    """How far the user side moved: ‖after − before‖_F / ‖before‖_F."""
    return float(((after - before) ** 2).sum() ** 0.5 / (before**2).sum() ** 0.5)


def pairs_runs(
    model: str, seed: int, originals: Path, pairs: list[int], work: Path
) -> list[dict[str, Any]]:
    """One DD run per number of pairs on the seed's original: NDCG@10 kept, steps, stop rule,
    seconds and how far the user side moved (relative Frobenius norm)."""
    ctx = load(originals / f"{model}-ml-100k-{seed}.pth", work)
    base = ndcg(ctx, ctx.model)
    before = user_representations(ctx.model)
    rows = []
    for count in pairs:
        ctx.config["au_mode"] = "dd"
        ctx.config["au_dd_pairs"] = count
        tic = time.perf_counter()
        result = run_attrcloak(ctx)
        seconds = time.perf_counter() - tic
        moved = displacement(before, user_representations(result.model))
        rows.append(
            {
                "model": model,
                "seed": seed,
                "pairs": count,
                "ndcg_original": round(base, 4),
                "ndcg_kept_pct": round(100 * ndcg(ctx, result.model) / base, 2),
                "steps": result.info["steps"],
                "stop_reason": result.info["stop_reason"],
                "seconds": round(seconds, 2),
                "moved": round(moved, 4),
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], command: str, header: str) -> str:
    """dd_pairs.md: per number of pairs, each seed's NDCG@10 kept and seconds, and their means."""
    seeds = sorted({r["seed"] for r in rows})
    counts = sorted({r["pairs"] for r in rows}, reverse=True)
    by = {(r["pairs"], r["seed"]): r for r in rows}
    title = "DD's ranking retention with fewer pairs per user (ml-100k, CPU)"
    note = (
        "Cells: NDCG@10 kept (%), steps, seconds of the DD run (product defaults but "
        "`au_dd_pairs`), one run at a time."
    )
    lines = [
        *study_head(title, command, header, note),
        "| pairs per user | " + " | ".join(f"seed {s}" for s in seeds) + " | mean kept "
        "| median s |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    for count in counts:
        cells = [by[count, s] for s in seeds if (count, s) in by]
        shown = [f"{c['ndcg_kept_pct']:.2f} %, {c['steps']}, {c['seconds']:.2f} s" for c in cells]
        kept = statistics.mean(c["ndcg_kept_pct"] for c in cells)
        median = statistics.median(c["seconds"] for c in cells)
        lines.append(f"| {count} | " + " | ".join(shown) + f" | {kept:.2f} % | {median:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__, "dd_pairs")
    parser.add_argument("--pairs", default="64,16,8", help="au_dd_pairs values, one run each")
    args = parser.parse_args(argv)
    pairs = [int(p) for p in args.pairs.split(",")]

    def one_seed(seed: int, work: Path) -> list[dict[str, Any]]:
        return pairs_runs(args.model, seed, Path(args.originals), pairs, work)

    return run_study(args.seeds, one_seed, Path(args.out), "dd_pairs", markdown)


if __name__ == "__main__":
    raise SystemExit(main())
