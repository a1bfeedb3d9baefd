"""AttrCloak's wall time against the original's training (issue 12: DF ≤ 2 s on ml-100k BPR and
DD ≤ 25 % of the original's training time, on CPU).

    python benchmarks/speed.py --model BPR --seeds 2020,2021,2022 --out benchmarks/results/speed

For each seed, one job at a time on an otherwise idle machine: train the original as the grids'
originals were trained (``gpu_originals.py``: ``configs/default.yaml``, an epoch cap of
``--epochs``, RecBole's early stopping), timed; then unlearn that checkpoint with the product's
defaults in DF and in DD (``--unlearn attrcloak`` without the audit: the model, data and split
loaded as the CLI loads them, then ``run_attrcloak``), timed from the defence's start to its
return. Torch keeps its default number of threads (what a user of the CLI gets). Writes
``speed.csv`` and ``speed.md``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import gpu_originals
from _common import run_study, study_head, study_parser

MODES = ("df", "dd")


def load(checkpoint: Path, work: Path):
    """The checkpoint's data, split and model, loaded as the CLI loads them."""
    from recbole.utils import init_seed

    from recbole_attrcloak.quick_start import _load_config, load_context

    info = json.loads(checkpoint.with_suffix(".json").read_text())
    overrides = {"show_progress": False}
    config, ckpt = _load_config(info["model"], info["dataset"], [], overrides, str(checkpoint))
    init_seed(config["seed"], config["reproducibility"])  # the checkpoint's split
    ctx, _ = load_context(config, ckpt, str(checkpoint), work)
    return ctx


def unlearn_seconds(ctx, mode: str) -> dict[str, Any]:
    """Unlearn the loaded model with the product's defaults in ``mode`` (it works on a copy);
    the defence's wall time, its steps and stop rule."""
    from recbole_attrcloak.unlearning.attrcloak import run_attrcloak

    ctx.config["au_mode"] = mode
    tic = time.perf_counter()
    result = run_attrcloak(ctx)
    seconds = time.perf_counter() - tic
    return {
        "seconds": seconds,
        "steps": result.info["steps"],
        "stop_reason": result.info["stop_reason"],
    }


def measure(model: str, seed: int, epochs: int, work: Path) -> dict[str, Any]:
    """Train one original (timed) and unlearn it in every mode (timed)."""
    import recbole

    data_path = Path(recbole.__file__).parent / "dataset_example"
    args = ["--model", model, "--dataset", "ml-100k", "--seed", str(seed)]
    args += ["--data_path", str(data_path), "--epochs", str(epochs), "--out", str(work)]
    gpu_originals.main(args)
    checkpoint = work / f"{model}-ml-100k-{seed}.pth"
    trained = json.loads(checkpoint.with_suffix(".json").read_text())
    row: dict[str, Any] = {
        "model": model,
        "seed": seed,
        "train_s": trained["train_seconds"],
        "best_epoch": trained["best_epoch"],
        "epochs_cap": epochs,
    }
    ctx = load(checkpoint, work / "run")  # once: both modes unlearn a copy of its model
    for mode in MODES:
        timed = unlearn_seconds(ctx, mode)
        row |= {f"{mode}_{k}": v for k, v in timed.items()}
        row[f"{mode}_share"] = timed["seconds"] / row["train_s"]
    return row


def markdown(rows: list[dict[str, Any]], command: str, header: str) -> str:
    """speed.md: the table per seed, the medians and issue 12's two bars."""
    title = "AttrCloak's wall time against the original's training (ml-100k, CPU)"
    note = (
        "One job at a time; torch's default threads; the original trained with "
        "`benchmarks/gpu_originals.py` (`configs/default.yaml`, epoch cap, RecBole's early "
        "stopping), then unlearned with the product's defaults (`run_attrcloak`, no audit)."
    )
    lines = [
        *study_head(title, command, header, note),
        "| model | seed | original training s (best epoch) | DF s | DF steps (stop) "
        "| DD s | DD steps (stop) | DD / training |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['train_s']:.1f} ({r['best_epoch']}) "
            f"| {r['df_seconds']:.2f} | {r['df_steps']} ({r['df_stop_reason']}) "
            f"| {r['dd_seconds']:.2f} | {r['dd_steps']} ({r['dd_stop_reason']}) "
            f"| {100 * r['dd_share']:.1f} % |"
        )
    df = statistics.median(r["df_seconds"] for r in rows)
    dd = statistics.median(r["dd_share"] for r in rows)
    lines += [
        "",
        f"- DF ≤ 2 s: median {df:.2f} s over {len(rows)} seeds: "
        + ("met" if df <= 2.0 else "**not met**")
        + f"; worst {max(r['df_seconds'] for r in rows):.2f} s.",
        f"- DD ≤ 25 % of the original's training: median {100 * dd:.1f} %: "
        + ("met" if dd <= 0.25 else "**not met**")
        + f"; worst {100 * max(r['dd_share'] for r in rows):.1f} %.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__, "speed", originals=False)
    parser.add_argument("--epochs", type=int, default=100, help="the originals' epoch cap")
    args = parser.parse_args(argv)

    def one_seed(seed: int, work: Path) -> list[dict[str, Any]]:
        return [measure(args.model, seed, args.epochs, work)]

    return run_study(args.seeds, one_seed, Path(args.out), "speed", markdown)


if __name__ == "__main__":
    raise SystemExit(main())
