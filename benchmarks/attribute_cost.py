"""What each sensitive attribute costs: the NDCG@10 kept and the displacement when AttrCloak
unlearns one attribute alone, against all of them at once (issue 12: "report where the utility
goes"; its NDCG@10 bars are for the three attributes of ml-100k together).

    python benchmarks/attribute_cost.py --originals DIR --model BPR --seeds 2020,2021,2022 \
        --out benchmarks/results/attribute_cost

For each seed: load the original checkpoint ``DIR/<model>-ml-100k-<seed>.pth`` as the CLI loads
it and, for each attribute set of ``--sets`` (``+`` joins attributes; ``all``: every attribute
the dataset holds), unlearn only those attributes in DD and in DF with the product's defaults,
then score the test NDCG@10 with RecBole's evaluator against the original's and how far the user
side moved (relative Frobenius norm). Writes ``attribute_cost.csv`` and ``attribute_cost.md``.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from _common import run_study, study_head, study_parser
from dd_pairs import displacement, ndcg
from speed import load

from recbole_attrcloak.backbone import user_representations
from recbole_attrcloak.unlearning.attrcloak import run_attrcloak


def cost_runs(model: str, seed: int, originals: Path, sets: list[str], work: Path) -> list[dict]:
    """DD and DF on the seed's original for every attribute set: NDCG@10 kept, steps, stop rule
    and the user side's displacement."""
    ctx = load(originals / f"{model}-ml-100k-{seed}.pth", work)
    every = dict(ctx.attributes)
    base = ndcg(ctx, ctx.model)
    before = user_representations(ctx.model)
    chosen = [list(every) if names == "all" else names.split("+") for names in sets]
    missing = sorted({n for names in chosen for n in names} - set(every))
    if missing:  # before any unlearning
        raise SystemExit(f"attribute_cost: {missing} not among {sorted(every)}")
    rows = []
    try:
        for names in chosen:
            ctx.attributes = {n: every[n] for n in names}
            for mode in ("dd", "df"):
                ctx.config["au_mode"] = mode
                result = run_attrcloak(ctx)
                moved = displacement(before, user_representations(result.model))
                rows.append(
                    {
                        "model": model,
                        "seed": seed,
                        "attributes": "+".join(names),
                        "mode": mode,
                        "ndcg_kept_pct": round(100 * ndcg(ctx, result.model) / base, 2),
                        "steps": result.info["steps"],
                        "stop_reason": result.info["stop_reason"],
                        "moved": round(moved, 4),
                    }
                )
    finally:
        ctx.attributes = every
    return rows


def markdown(rows: list[dict[str, Any]], command: str, header: str) -> str:
    """attribute_cost.md: per attribute set and mode, each seed's NDCG@10 kept and displacement,
    and their means."""
    seeds = sorted({r["seed"] for r in rows})
    title = "What each attribute costs (ml-100k, CPU)"
    note = (
        "Cells: NDCG@10 kept (%), the user side's displacement (relative Frobenius norm) and "
        "steps, unlearning only the attributes of the row with the product's defaults."
    )
    lines = [
        *study_head(title, command, header, note),
        "| attributes | mode | " + " | ".join(f"seed {s}" for s in seeds) + " | mean kept "
        "| mean moved |",
        "|---|---|" + "---|" * (len(seeds) + 2),
    ]
    keys = dict.fromkeys((r["attributes"], r["mode"]) for r in rows)
    for names, mode in keys:
        cells = {r["seed"]: r for r in rows if (r["attributes"], r["mode"]) == (names, mode)}
        shown = [
            f"{c['ndcg_kept_pct']:.2f} %, {c['moved']:.3f}, {c['steps']}" if c else ""
            for c in (cells.get(s) for s in seeds)
        ]
        kept = statistics.mean(c["ndcg_kept_pct"] for c in cells.values())
        moved = statistics.mean(c["moved"] for c in cells.values())
        row = " | ".join([names, mode.upper(), *shown, f"{kept:.2f} %", f"{moved:.3f}"])
        lines.append(f"| {row} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__, "attribute_cost")
    parser.add_argument(
        "--sets", default="gender,age,occupation,all", help="attribute sets, `+` joins"
    )
    args = parser.parse_args(argv)
    sets = args.sets.split(",")

    def one_seed(seed: int, work: Path) -> list[dict[str, Any]]:
        return cost_runs(args.model, seed, Path(args.originals), sets, work)

    return run_study(args.seeds, one_seed, Path(args.out), "attribute_cost", markdown)


if __name__ == "__main__":
    raise SystemExit(main())
