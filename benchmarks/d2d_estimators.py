"""D2D-R's MMD² estimators side by side (``d2d_estimator: exact | rff``) on a trained BPR model.

Two parts, written to ``<out>/<dataset>.md`` and ``.json`` with the command, date and machine:

1. **Estimates** on the model's user embeddings: L_dist (D2D's distinguishability, the mean over
   the sensitive attributes of the class-pair MMD²) and its gradient by the exact estimator and
   by random Fourier features with several feature counts (``--draws`` fresh draws each): value,
   spread, the gradient's cosine to the exact one, seconds per evaluation with its backward.
2. **D2D-R runs** (``run_d2d``, the defaults but the estimator): seconds, L_dist before and after
   measured with the exact estimator, test NDCG@10. ``--exact-steps`` caps the exact run's steps
   where it is too slow to finish (its seconds per step are then what the row shows).

    python benchmarks/d2d_estimators.py --dataset ml-100k
    python benchmarks/d2d_estimators.py --dataset ml-1m --epochs 5 --exact-steps 3
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from _common import DEFAULT_CONFIG, REPO, command_line
from _data import prepare_data

from recbole_attrcloak import compat
from recbole_attrcloak.backbone import evaluate_utility
from recbole_attrcloak.config import build_config
from recbole_attrcloak.context import RunContext
from recbole_attrcloak.losses import d2d_loss
from recbole_attrcloak.provenance import machine, machine_line
from recbole_attrcloak.quick_start import load_context
from recbole_attrcloak.registry import user_side
from recbole_attrcloak.unlearning.distance_unlearning import run_d2d

RESULTS = REPO / "benchmarks" / "results" / "d2d_estimators"


def _context(args: argparse.Namespace, work: Path) -> RunContext:
    """The data and a BPR model: ``--checkpoint``'s, or one trained now (saved under ``work``)."""
    overrides: dict[str, Any] = {
        **prepare_data(args.dataset, args.data_root),
        "seed": args.seed,
        "show_progress": False,
        "checkpoint_dir": str(work),
    }
    if args.epochs:
        overrides["epochs"] = args.epochs
    config = build_config("BPR", args.dataset, [str(DEFAULT_CONFIG)], overrides)
    ckpt = compat.load_checkpoint(args.checkpoint) if args.checkpoint else None
    ctx, path = load_context(config, ckpt, args.checkpoint, work)
    print(f"model: {path}", file=sys.stderr)
    return ctx


def _labels(ctx: RunContext) -> dict[str, torch.Tensor]:
    return {n: torch.as_tensor(lab.codes, dtype=torch.long) for n, lab in ctx.attributes.items()}


def l_dist(reps: torch.Tensor, labels: dict[str, torch.Tensor], **options) -> torch.Tensor:
    """D2D-R's distinguishability: the mean over attributes of ``d2d_loss``."""
    return torch.stack([d2d_loss(reps, lab, **options) for lab in labels.values()]).mean()


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    tic = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - tic


def estimates(ctx: RunContext, features: Sequence[int], draws: int, seed: int) -> list[dict]:
    """Value, spread, gradient cosine and seconds of each estimator on the model's embeddings."""
    with torch.no_grad():
        table = user_side(ctx.model).compute(ctx.model).detach()
    labels = _labels(ctx)

    def evaluate(**options) -> tuple[float, torch.Tensor, float]:
        reps = table.clone().requires_grad_(True)

        def once() -> float:
            value = l_dist(reps, labels, **options)
            value.backward()
            return float(value)

        value, seconds = _timed(once)
        return value, reps.grad.flatten(), seconds

    exact, exact_grad, exact_s = evaluate(estimator="exact")
    rows = [{"estimator": "exact", "features": None, "mean": exact, "std": 0.0, "draws": 1,
             "cosine": 1.0, "seconds": exact_s}]  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    for count in features:
        values, cosines, seconds = [], [], []
        for _ in range(draws):
            value, grad, secs = evaluate(estimator="rff", n_features=count, generator=generator)
            values.append(value)
            cosines.append(float(torch.nn.functional.cosine_similarity(grad, exact_grad, dim=0)))
            seconds.append(secs)
        rows.append(
            {
                "estimator": "rff",
                "features": count,
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if draws > 1 else 0.0,
                "draws": draws,
                "cosine": statistics.fmean(cosines),
                "seconds": statistics.fmean(seconds),
            }
        )
    return rows


def _exact_l_dist(ctx: RunContext, model: torch.nn.Module) -> float:
    with torch.no_grad():
        return float(l_dist(user_side(model).compute(model), _labels(ctx)))


def d2d_runs(ctx: RunContext, features: int, exact_steps: int | None) -> list[dict]:
    """D2D-R with each estimator from the same model."""
    before = _exact_l_dist(ctx, ctx.model)
    original = evaluate_utility(ctx.config, ctx.model, ctx.valid_data, ctx.test_data)
    rows = [{"run": "original", "steps": 0, "seconds": 0.0, "l_dist": before,
             "ndcg@10": original["test"]["ndcg@10"]}]  # fmt: skip
    for estimator in ("rff", "exact"):
        config = copy.deepcopy(ctx.config)
        config["d2d_estimator"], config["d2d_features"] = estimator, features
        if estimator == "exact" and exact_steps:
            config["du_steps"] = min(exact_steps, int(config["du_steps"]))
        result, seconds = _timed(lambda c=config: run_d2d(dataclasses.replace(ctx, config=c)))
        utility = evaluate_utility(config, result.model, ctx.valid_data, ctx.test_data)
        rows.append(
            {
                "run": f"D2D-R {estimator}",
                "steps": result.info["steps"],
                "planned_steps": int(ctx.config["du_steps"]),
                "seconds": seconds,
                "l_dist": _exact_l_dist(ctx, result.model),
                "ndcg@10": utility["test"]["ndcg@10"],
            }
        )
    return rows


def markdown(payload: dict[str, Any]) -> str:
    """The results file."""
    s = payload["settings"]
    lines = [
        f"# D2D-R: exact vs random-Fourier-feature MMD² on {s['dataset']} (BPR)",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Date: {payload['date']}. {payload['machine']} {payload['threads']} torch threads; "
        f"load average {payload['load']} at the end (seconds grow with the load).",
        "",
        f"Model: BPR, configs/default.yaml, seed {s['seed']}"
        + (f", {s['epochs']} epochs" if s["epochs"] else ", trained to early stopping")
        + f"; {payload['users']} users, d = {payload['dim']}; attributes "
        f"{', '.join(payload['attributes'])}.",
        "",
        f"## Estimates of L_dist on the trained embeddings ({s['draws']} draws per feature count)",
        "",
        "| estimator | features | L_dist (mean) | spread (std) | gradient cosine to exact | s / evaluation |",  # noqa: E501
        "|---|---|---|---|---|---|",
    ]
    for r in payload["estimates"]:
        lines.append(
            f"| {r['estimator']} | {r['features'] or '–'} | {r['mean']:.6f} | {r['std']:.6f} "
            f"| {r['cosine']:.3f} | {r['seconds']:.3f} |"
        )
    lines += [
        "",
        "## D2D-R runs (defaults but the estimator; L_dist measured exactly)",
        "",
        "| run | steps | seconds | s / step | L_dist | NDCG@10 (test) |",
        "|---|---|---|---|---|---|",
    ]
    for r in payload["runs"]:
        per_step = f"{r['seconds'] / r['steps']:.3f}" if r["steps"] else "–"
        steps = str(r["steps"])
        if r["steps"] < r.get("planned_steps", 0):
            steps += f" of {r['planned_steps']} (capped: `--exact-steps`)"
        lines.append(
            f"| {r['run']} | {steps} | {r['seconds']:.1f} | {per_step} | {r['l_dist']:.6f} "
            f"| {r['ndcg@10']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_root", type=Path, default=REPO / "outputs" / "data")
    parser.add_argument("--checkpoint", help="a BPR checkpoint of --dataset (else trains one)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: early stopping)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--features", default="256,1024,4096", help="RFF feature counts")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--run_features", type=int, default=1024, help="the D2D-R run's count")
    parser.add_argument("--exact-steps", dest="exact_steps", type=int)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--work", type=Path, default=REPO / "outputs" / "d2d_estimators", help="checkpoints"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    compat.apply_recbole_shims()
    work = args.work / args.dataset
    work.mkdir(parents=True, exist_ok=True)
    ctx = _context(args, work)
    features = [int(f) for f in args.features.split(",")]
    payload = {
        "command": command_line(),
        "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine_line(machine()),
        "threads": torch.get_num_threads(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "users": int(ctx.dataset.user_num - 1),
        "dim": int(user_side(ctx.model).compute(ctx.model).shape[1]),
        "attributes": list(ctx.attributes),
        "estimates": estimates(ctx, features, args.draws, args.seed),
        "runs": d2d_runs(ctx, args.run_features, args.exact_steps),
    }
    payload["load"] = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.dataset}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / f"{args.dataset}.md").write_text(markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
