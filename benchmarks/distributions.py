"""Per-dimension embedding distributions by attribute before and after AttrCloak (the paper's
Fig. 4; issue #6, item 3).

    python -m benchmarks.distributions [--quick] [--checkpoint PATH] [--au_mode df|dd]
        [--attribute gender] [--out DIR]

Runs the package's pipeline (``recbole_attrcloak.quick_start.run`` with ``--unlearn attrcloak``
and exported embeddings; without ``--checkpoint`` it first trains the model), then, per
embedding dimension, fits one Gaussian per class of ``--attribute`` before and after unlearning
and compares the classes: overlap coefficient (the area under the smaller density) and KL
divergence, averaged over class pairs (symmetrised). Writes ``dims.csv`` (every dimension),
``summary.md``, ``fig4.png`` (histograms and fitted Gaussians of the most separated dimensions)
and ``kl.png`` (KL per dimension, before against after).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from scipy.integrate import trapezoid

from benchmarks.scale import machine_header, product_fingerprint
from recbole_attrcloak.audit.__main__ import load_stages
from recbole_attrcloak.config import build_config
from recbole_attrcloak.data.attributes import user_attributes
from recbole_attrcloak.quick_start import run

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "distributions"
STAGES = ("original", "unlearned")
GRID_POINTS = 2001


def class_gaussians(x: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class and dimension, the mean and standard deviation, each (k, d)."""
    means = np.stack([x[codes == c].mean(0) for c in range(k)])
    stds = np.stack([x[codes == c].std(0, ddof=1) for c in range(k)])
    return means, stds


def gaussian_kl(
    mu_p: np.ndarray, sd_p: np.ndarray, mu_q: np.ndarray, sd_q: np.ndarray
) -> np.ndarray:
    """KL(N(mu_p, sd_p²) ‖ N(mu_q, sd_q²)) of 1-D Gaussians, elementwise."""
    return np.log(sd_q / sd_p) + (sd_p**2 + (mu_p - mu_q) ** 2) / (2 * sd_q**2) - 0.5


def overlap(mu_p: np.ndarray, sd_p: np.ndarray, mu_q: np.ndarray, sd_q: np.ndarray) -> np.ndarray:
    """Overlap coefficient ∫ min(p, q) of 1-D Gaussians, elementwise (trapezoid on a grid
    spanning ±8 standard deviations of both)."""
    low = np.minimum(mu_p - 8 * sd_p, mu_q - 8 * sd_q)
    high = np.maximum(mu_p + 8 * sd_p, mu_q + 8 * sd_q)
    grid = np.linspace(low, high, GRID_POINTS, axis=-1)

    def density(mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
        z = (grid - mu[..., None]) / sd[..., None]
        return np.exp(-0.5 * z**2) / (sd[..., None] * np.sqrt(2 * np.pi))

    return trapezoid(np.minimum(density(mu_p, sd_p), density(mu_q, sd_q)), grid, axis=-1)


def separation(x: np.ndarray, codes: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per dimension: symmetrised KL and overlap coefficient between the classes' Gaussians,
    averaged over class pairs, plus each class's mean and standard deviation."""
    means, stds = class_gaussians(x, codes, k)
    pairs = list(itertools.combinations(range(k), 2))
    kl = [
        (
            gaussian_kl(means[a], stds[a], means[b], stds[b])
            + gaussian_kl(means[b], stds[b], means[a], stds[a])
        )
        / 2
        for a, b in pairs
    ]
    ovl = [overlap(means[a], stds[a], means[b], stds[b]) for a, b in pairs]
    return {"kl": np.mean(kl, 0), "overlap": np.mean(ovl, 0), "mean": means, "std": stds}


def dims_table(stats: dict[str, dict[str, np.ndarray]], classes: Sequence[str]) -> list[dict]:
    """One CSV row per dimension: class Gaussians, overlap and KL before/after, and changes."""
    before, after = (stats[s] for s in STAGES)
    rows = []
    for i in range(len(before["kl"])):
        row: dict[str, Any] = {"dim": i}
        for stage, st in zip(("before", "after"), (before, after), strict=True):
            for c, name in enumerate(classes):
                row[f"mean_{name}_{stage}"] = st["mean"][c, i]
                row[f"std_{name}_{stage}"] = st["std"][c, i]
        for key in ("overlap", "kl"):
            row[f"{key}_before"], row[f"{key}_after"] = before[key][i], after[key][i]
            row[f"{key}_change_pct"] = 100 * (after[key][i] / before[key][i] - 1)
        rows.append(row)
    return rows


def plot_fig4(
    stages: dict[str, np.ndarray],
    codes: np.ndarray,
    classes: Sequence[str],
    stats: dict[str, dict[str, np.ndarray]],
    dims: Sequence[int],
    path: Path,
) -> None:
    """Paper Fig. 4: per chosen dimension, class histograms and fitted Gaussians (dashed),
    before (top row) and after (bottom row) unlearning, on shared bins."""
    fig = Figure(figsize=(3.2 * len(dims), 6))
    axes = fig.subplots(2, len(dims), squeeze=False)
    colours = [colormaps["tab10"](c) for c in range(len(classes))]
    for col, dim in enumerate(dims):
        values = np.concatenate([stages[s][:, dim] for s in STAGES])
        bins = np.linspace(values.min(), values.max(), 41)
        grid = np.linspace(bins[0], bins[-1], 400)
        for row, stage in enumerate(STAGES):
            ax, st = axes[row, col], stats[stage]
            for c, name in enumerate(classes):
                x = stages[stage][codes == c, dim]
                ax.hist(x, bins=bins, density=True, alpha=0.45, color=colours[c], label=name)
                mu, sd = st["mean"][c, dim], st["std"][c, dim]
                pdf = np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
                ax.plot(grid, pdf, "--", color=colours[c])
            ax.set_title(
                f"dim {dim} {'before' if row == 0 else 'after'}: "
                f"OVL {st['overlap'][dim]:.2f}, KL {st['kl'][dim]:.3f}",
                fontsize=9,
            )
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")


def plot_kl(stats: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """KL between the classes per dimension, after against before (log–log, diagonal: same)."""
    before, after = stats["original"]["kl"], stats["unlearned"]["kl"]
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.loglog(before, after, "o", alpha=0.6)
    span = [min(before.min(), after.min()), max(before.max(), after.max())]
    ax.loglog(span, span, "k--", label="no change")
    ax.set_xlabel("KL between classes before unlearning")
    ax.set_ylabel("KL after unlearning")
    ax.set_title("per embedding dimension")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")


def summary_markdown(
    report: dict, stats: dict[str, dict[str, np.ndarray]], attribute: str, top: Sequence[int]
) -> str:
    """Counts and medians over dimensions, the top dimensions, and the run's own audit."""
    before, after = (stats[s] for s in STAGES)
    fell = int((after["kl"] < before["kl"]).sum())
    rose = int((after["overlap"] > before["overlap"]).sum())
    d = len(before["kl"])
    info = report["unlearning"]
    privacy = {s: report["stages"][s]["privacy"][attribute] for s in STAGES}
    attackers = [a for a in ("mlp", "xgboost") if a in privacy["original"]]
    attacks = ", ".join(
        f"{a} {privacy['original'][a]['balanced_accuracy']['mean']:.3f} → "
        f"{privacy['unlearned'][a]['balanced_accuracy']['mean']:.3f}"
        for a in attackers
    )
    lines = [
        f"- {report['model']} on {report['dataset']}, AttrCloak-{info['mode'].upper()} "
        f"(`{info['solver']}` solver), {info['steps']} steps, stopped: {info['stop_reason']}; "
        f"test NDCG@10 kept {100 * report['retention']['ndcg@10']:.1f} %.",
        f"- {attribute}: balanced accuracy of the run's own audit (shadow protocol), "
        f"{attacks} (chance {privacy['original']['chance']:.3f}).",
        f"- KL between the {attribute} classes fell in {fell} of {d} dimensions; median KL "
        f"{np.median(before['kl']):.4f} → {np.median(after['kl']):.4f}, "
        f"sum {before['kl'].sum():.3f} → {after['kl'].sum():.3f}.",
        f"- Overlap coefficient rose in {rose} of {d} dimensions; median "
        f"{np.median(before['overlap']):.3f} → {np.median(after['overlap']):.3f}, "
        f"minimum {before['overlap'].min():.3f} → {after['overlap'].min():.3f}.",
        "",
        f"The {len(top)} dimensions with the largest KL before unlearning (`fig4.png`):",
        "",
        "| dim | overlap before → after (change) | KL before → after (change) |",
        "|---|---|---|",
    ]
    for i in top:
        ovl_b, ovl_a, kl_b, kl_a = (
            before["overlap"][i],
            after["overlap"][i],
            before["kl"][i],
            after["kl"][i],
        )
        lines.append(
            f"| {i} | {ovl_b:.3f} → {ovl_a:.3f} ({100 * (ovl_a / ovl_b - 1):+.1f} %) "
            f"| {kl_b:.4f} → {kl_a:.4f} ({100 * (kl_a / kl_b - 1):+.1f} %) |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributions", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 training epochs, 4 dimensions")
    parser.add_argument("--model", default="BPR")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--config_files", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--checkpoint", help="a RecBole checkpoint (default: train one now)")
    parser.add_argument("--au_mode", default="df", choices=("df", "dd"))
    parser.add_argument("--attribute", default="gender", help="the .user column to plot")
    parser.add_argument("--audit", default="quick", choices=("quick", "full"))
    parser.add_argument("--top", type=int, help="dimensions in fig4.png (default 6, quick 4)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the results")
    parser.add_argument(
        "--work_dir", help="pipeline output: checkpoints, report, embeddings (default: saved/…)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the pipeline, compare the per-dimension distributions, write the results."""
    args = _parser().parse_args(argv)
    args_given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", "benchmarks.distributions", *args_given])
    config_files = args.config_files.split()
    overrides = {"au_mode": args.au_mode, "audit": args.audit}
    if args.quick:
        overrides["epochs"] = 2
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    work_dir = args.work_dir or str(ROOT / "saved" / "benchmarks" / f"distributions-{stamp}")
    code = product_fingerprint()
    report = run(
        args.model,
        args.dataset,
        config_files=config_files,
        config_dict=overrides,
        checkpoint=args.checkpoint,
        unlearn="attrcloak",
        output_dir=work_dir,
        export_embeddings=True,
    )
    tokens, stages = load_stages(report["embeddings"], None)
    config = build_config(args.model, args.dataset, config_files, {})
    user_file = Path(config["data_path"]) / f"{args.dataset}.user"
    labels = user_attributes(str(user_file), [args.attribute], tokens)[args.attribute]
    known = labels.codes >= 0
    codes, k = labels.codes[known], len(labels.classes)
    stages = {s: stages[s][known].astype(np.float64) for s in STAGES}
    stats = {s: separation(stages[s], codes, k) for s in STAGES}
    top = np.argsort(-stats["original"]["kl"])[: args.top or (4 if args.quick else 6)].tolist()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = dims_table(stats, labels.classes)
    with open(out / "dims.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_fig4(stages, codes, labels.classes, stats, top, out / "fig4.png")
    plot_kl(stats, out / "kl.png")
    source = f"checkpoint `{args.checkpoint}`" if args.checkpoint else "a model trained by the run"
    text = "\n".join(
        [
            f"# Embedding distributions by {args.attribute}, before and after AttrCloak "
            f"(paper Fig. 4)",
            "",
            machine_header(command),
            "",
            f"From {source}; product code `{code}` (`benchmarks/scale.py` fingerprint of the "
            "losses, defaults and AttrCloak loop). Per dimension, one Gaussian per "
            f"{args.attribute} class "
            f"({', '.join(labels.classes)}; {int(known.sum())} users); KL is the symmetrised KL "
            "between the classes' Gaussians, overlap the area under the smaller density "
            "(both averaged over class pairs). Every dimension: `dims.csv`; KL after against "
            "before: `kl.png`.",
            "",
            summary_markdown(report, stats, args.attribute, top),
        ]
    )
    (out / "summary.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
