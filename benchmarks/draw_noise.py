"""How far one draw of the relabel objective's randomness moves its z-scores at one state: the
noise behind ``au_check_draws`` (issue 12, the stop rule).

    python benchmarks/draw_noise.py --originals DIR --model BPR --seeds 2020,2021,2022 \
        --draws 40 --out benchmarks/results/draw_noise

For each seed: load the original checkpoint ``DIR/<model>-ml-100k-<seed>.pth`` as the CLI
loads it, unlearn it with the product's defaults in DF (the state where the stop decides), and
score that state with ``--draws`` fresh draws of the objective (random features, folds and label
permutations: what a step sees). Each statistic's z is already in null standard deviations, so
its SD across draws is the noise one draw adds that the permutation null does not hold. Per
critic family (attribute-level and one-vs-rest apart): the mean and the largest of those SDs, and
the SD of the stop's average over 2 and over ``au_check_draws`` draws (SD/√n; the folds of the
cross-fitted critics are averaged over 2 draws whatever ``au_check_draws``). Writes
``draw_noise.csv`` and ``draw_noise.md``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from _common import run_study, study_head, study_parser
from speed import load

from recbole_attrcloak.engine import build_objective
from recbole_attrcloak.losses.stop_state import CHECK_DRAWS, random_feature_critic
from recbole_attrcloak.unlearning.attrcloak import run_attrcloak
from recbole_attrcloak.unlearning.base import only_user_side


def family(attribute: str, critic: str) -> tuple[str, str]:
    """(critic family, scope): ``rbf4/ridge=0.1`` for ``rbf4/ridge=0.1@block1``, the
    cross-fitted critics by kind; scope ``one-vs-rest`` for a class against the rest."""
    name = re.sub(r"@block\d+$", "", critic)
    return name, "one-vs-rest" if "=" in attribute else "attribute"


def draw_sd(model: str, seed: int, originals: Path, draws: int, work: Path) -> list[dict]:
    """Per critic family, the SD of each statistic's z over ``draws`` fresh draws at the state
    where the default DF run stops."""
    ctx = load(originals / f"{model}-ml-100k-{seed}.pth", work)
    config = ctx.config
    config["au_mode"] = "df"
    result = run_attrcloak(ctx)
    labels = {
        name: torch.as_tensor(lab.codes, dtype=torch.long, device=config["device"])
        for name, lab in ctx.attributes.items()
    }
    with torch.no_grad(), only_user_side(ctx.model) as side:
        original = side.compute(ctx.model).detach()
        state = side.compute(result.model).detach()
        objective = build_objective(labels, config, seed, side.blocks(ctx.model))
        objective.check(original)  # the standardisation, as in the run
        runs = [objective.zscores(state) for _ in range(draws)]
    keys = list(runs[0])
    values = torch.tensor([[float(run[k]) for k in keys] for run in runs])
    spread = values.std(0)
    grouped: dict[tuple[str, str], list[float]] = {}
    for key, sd in zip(keys, spread.tolist(), strict=True):
        grouped.setdefault(family(*key), []).append(sd)
    check = int(config["au_check_draws"])
    rows = []
    for (name, scope), sds in sorted(grouped.items()):
        mean = sum(sds) / len(sds)
        n_check = check if random_feature_critic(name) else CHECK_DRAWS
        rows.append(
            {
                "model": model,
                "seed": seed,
                "critic": name,
                "scope": scope,
                "statistics": len(sds),
                "draw_sd_mean": round(mean, 3),
                "draw_sd_max": round(max(sds), 3),
                "stop_sd_2_draws": round(mean / math.sqrt(CHECK_DRAWS), 3),
                "stop_sd_default": round(mean / math.sqrt(n_check), 3),
                "df_steps": result.info["steps"],
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], command: str, header: str, draws: int) -> str:
    """draw_noise.md: the per-family table, each seed's columns side by side."""
    seeds = sorted({r["seed"] for r in rows})
    families = sorted({(r["critic"], r["scope"]) for r in rows}, key=lambda f: (f[1], f[0]))
    by = {(r["critic"], r["scope"], r["seed"]): r for r in rows}
    title = "One draw's noise in the relabel objective's z (ml-100k, at the DF stop)"
    note = (
        f"Each statistic's z at the state where the default DF run stopped, over {draws} fresh "
        "draws (features, folds, permutations); z is in null SDs, so its SD across draws is "
        "noise the permutation null does not hold. Cells: mean SD over the family's statistics "
        "(largest); the stop's SD with the default number of check draws."
    )
    lines = [
        *study_head(title, command, header, note),
        "| critic | scope | " + " | ".join(f"seed {s}" for s in seeds) + " | stop SD, 2 draws "
        "| stop SD, default |",
        "|---|---|" + "---|" * (len(seeds) + 2),
    ]
    for name, scope in families:
        cells = [by.get((name, scope, s)) for s in seeds]
        found = [c for c in cells if c]
        two = sum(c["stop_sd_2_draws"] for c in found) / len(found)
        default = sum(c["stop_sd_default"] for c in found) / len(found)
        shown = [f"{c['draw_sd_mean']:.2f} ({c['draw_sd_max']:.2f})" if c else "" for c in cells]
        lines.append(
            f"| {name} | {scope} | " + " | ".join(shown) + f" | {two:.2f} | {default:.2f} |"
        )
    kept = {r["seed"]: r["df_steps"] for r in rows}
    steps = ", ".join(f"seed {s}: {kept[s]}" for s in seeds)
    lines += ["", f"The DF runs' kept steps: {steps}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__, "draw_noise")
    parser.add_argument("--draws", type=int, default=40)
    args = parser.parse_args(argv)

    def one_seed(seed: int, work: Path) -> list[dict[str, Any]]:
        return draw_sd(args.model, seed, Path(args.originals), args.draws, work)

    def render(rows: list[dict[str, Any]], command: str, header: str) -> str:
        return markdown(rows, command, header, args.draws)

    return run_study(args.seeds, one_seed, Path(args.out), "draw_noise", render)


if __name__ == "__main__":
    raise SystemExit(main())
