"""The paper's Fig. 6 with our implementation: privacy and utility of the original model,
AttrCloak-DD and AttrCloak-DF as the embedding size d grows (BPR on ml-100k by default; the
paper used ModCloth, which is not available here).

A Ray Tune sweep (``recbole_attrcloak.tune``): each (d, seed) trains the original model once,
AttrCloak DD and DF run on its checkpoint. Run the same command again to resume after Ctrl-C.

    python benchmarks/embedding_size.py --quick                    # d = 32, 64; one seed
    python benchmarks/embedding_size.py --workers 12 --gpu --out outputs/bench/es
    python benchmarks/embedding_size.py --summarise-only outputs/bench/es

Writes summary.md, embedding_size.csv, jobs.csv and embedding_size.png under --results, and
the embedding_size block of benchmarks/README.md when --results is the default folder.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from _common import (
    DataUnavailable,
    add_arguments,
    command_line,
    finish_arguments,
    method_config,
    prepare_data,
    run_config,
    run_or_locate,
    sources,
    split_list,
)
from _tables import (
    ATTACKERS,
    LABELS,
    UTILITY,
    epochs_text,
    header,
    job_counts,
    load_run,
    privacy_cells,
    privacy_header,
    readme_link,
    settings_of,
    update_readme,
    write_csv,
    write_text,
)
from matplotlib.figure import Figure

from recbole_attrcloak.tune import ClusterError, CodeVersionError, SpecError
from recbole_attrcloak.tune.results import (
    aggregate,
    attributes_in,
    gap_columns,
    markdown_table,
    order_rows,
    pm,
)

METHODS = ("original", "attrcloak-dd", "attrcloak-df")
KEYS = ["embedding_size", "method"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options, with the defaults that depend on --quick filled in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--dims", help="embedding sizes (default 32,64,128,256,512)")
    parser.add_argument("--dataset", default="ml-100k", help="dataset (default ml-100k)")
    parser.add_argument("--model", default="BPR", help="a model sized by embedding_size")
    parser.add_argument("--seeds", help="comma-separated RecBole seeds (default 2020,2021,2022)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="d = 32, 64, one seed, 5 epochs; results under outputs/bench/embedding_size-quick",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.dims = [
        int(d) for d in split_list(args.dims or ("32,64" if quick else "32,64,128,256,512"))
    ]
    args.seeds = [int(s) for s in split_list(args.seeds or ("2020" if quick else "2020,2021,2022"))]
    finish_arguments(args, "embedding_size")
    return args


def plan(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """For each seed (a wave, so that a deadline leaves whole seeds) and d: the original model
    (a training group) and AttrCloak DD and DF on its checkpoint."""
    try:
        data = prepare_data(args.dataset, args.data_root, sources(args.source).get(args.dataset))
    except DataUnavailable as exc:
        raise ValueError(f"{args.dataset}: {exc}") from None
    configs = []
    for seed in args.seeds:
        for d in args.dims:
            base = run_config(args, args.model, args.dataset, seed) | data
            base["embedding_size"] = d
            configs += [base | method_config(m) for m in METHODS if m != "original"]
    settings = {
        "dataset": args.dataset,
        "model": args.model,
        "dims": args.dims,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "set": args.set,
    }
    return configs, settings


def meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """A job's columns in jobs.csv and the tables: dataset, model, seed, d, method, its name."""
    config, method = row["config"], row["method"]
    seed, d = config.get("seed"), config.get("embedding_size")
    job = f"{row['dataset']}/{row['model']}/d{d}/seed{seed}/{method}"
    columns = {"dataset": row["dataset"], "model": row["model"], "seed": seed}
    return {"job": job, **columns, "embedding_size": d, "method": method}


def table(agg: pd.DataFrame, attributes: Sequence[str]) -> pd.DataFrame:
    """embedding_size.csv: per d and method, balanced accuracy per attribute and attacker, the
    largest gap to chance, test utility, NDCG@10 kept and the unlearning time."""
    columns = [f"{a}/{t}/balanced_accuracy" for a in attributes for t in ATTACKERS]
    columns += ["max_gap", *UTILITY, "retention@ndcg@10", "seconds", "steps", "epochs"]
    out = agg[KEYS].copy()
    for column in columns:
        out[column] = agg[column]
        out[f"{column}_std"] = agg[f"{column}:std"]
    out["n_seeds"] = agg["n"]
    return out


def plot(agg: pd.DataFrame, path: Path) -> None:
    """Largest gap to chance and NDCG@10 against d, one line per method."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    privacy, utility = fig.subplots(1, 2)
    for method in METHODS:
        part = agg[agg["method"] == method].sort_values("embedding_size")
        if part.empty:
            continue
        for ax, column in ((privacy, "max_gap"), (utility, "ndcg@10")):
            ax.errorbar(
                part["embedding_size"],
                part[column],
                yerr=part[f"{column}:std"].fillna(0),
                marker="o",
                capsize=2,
                label=LABELS[method],
            )
    privacy.axhline(0.03, color="grey", linestyle="--", linewidth=1, label="target 0.03")
    privacy.set_ylabel("largest |balanced accuracy − chance|")
    utility.set_ylabel("NDCG@10 (test, full ranking)")
    dims = sorted(agg["embedding_size"].unique())
    for ax in (privacy, utility):
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.set_xlabel("embedding size d")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", flush=True)


def summarise(run_dir: Path, results: Path, command: str, readme: Path | None) -> None:
    """Write every result file of ``run_dir`` into ``results``."""
    settings = settings_of(run_dir)
    jobs, reports = load_run(run_dir, meta)
    title = "Embedding size: privacy and utility against d (the paper's Fig. 6)"
    lines = header(title, run_dir, command)
    lines += [
        "## Setup",
        "",
        f"- {settings.get('model')} on {settings.get('dataset')}, d ∈ {settings.get('dims')}, "
        f"seeds {settings.get('seeds')}; `configs/default.yaml` with `embedding_size` = d, "
        f"full-sort evaluation; epoch caps: {epochs_text(settings.get('epochs') or {})}; "
        "extra settings: "
        f"{', '.join(settings.get('set', [])) or 'none'}. The paper's Fig. 6 used ModCloth's "
        "body shape, not available here.",
        "- Audit `quick` (shadow protocol, MLP and XGBoost, 3 repeats); balanced accuracy, "
        "mean ± std over seeds; max gap = largest |balanced accuracy − chance|.",
        f"- Jobs: {job_counts(jobs)} (jobs.csv).",
        "",
    ]
    results.mkdir(parents=True, exist_ok=True)
    write_csv(jobs, results / "jobs.csv")
    if reports.empty:
        write_text(results / "summary.md", "\n".join([*lines, "No job has finished yet.", ""]))
        return
    frame = pd.concat([reports, gap_columns(reports)], axis=1)
    frame = order_rows(
        frame, {"embedding_size": sorted(frame["embedding_size"]), "method": METHODS}
    )
    agg = aggregate(frame, KEYS)
    attributes = attributes_in(agg)
    write_csv(table(agg, attributes), results / "embedding_size.csv")
    plot(agg, results / "embedding_size.png")

    rows = []
    for _, r in agg.iterrows():
        training = " (training)" if r["method"] == "original" else ""
        rows.append(
            [
                int(r["embedding_size"]),
                LABELS[r["method"]],
                *privacy_cells(r, attributes, "balanced_accuracy"),
                pm(r["max_gap"], r["max_gap:std"]),
                pm(r["ndcg@10"], r["ndcg@10:std"], 4),
                pm(r["retention@ndcg@10"], r["retention@ndcg@10:std"]),
                pm(r["seconds"], r["seconds:std"], 1) + training,
                int(r["n"]),
            ]
        )
    cells = ["d", "method", *privacy_header(attributes), "max gap", "NDCG@10", "NDCG@10 kept"]
    lines += markdown_table([*cells, "seconds", "n"], rows)
    lines += ["![privacy and utility against d](embedding_size.png)", ""]
    write_text(results / "summary.md", "\n".join(lines))
    if readme is not None:
        update_readme(readme, "embedding_size", "\n".join(headline(agg, results)))


def headline(agg: pd.DataFrame, results: Path) -> list[str]:
    """The README block: per d, each method's largest gap to chance and NDCG@10 kept."""
    link = readme_link(results)
    dims = sorted(agg["embedding_size"].unique())
    rows = []
    for method in METHODS:
        cells = []
        for d in dims:
            r = agg[(agg["embedding_size"] == d) & (agg["method"] == method)]
            cells.append(
                "–"
                if r.empty
                else f"{r.iloc[0]['max_gap']:.3f} / {r.iloc[0]['retention@ndcg@10']:.1%}"
            )
        rows.append([LABELS[method], *cells])
    lines = [
        f"From [`{link}/summary.md`]({link}/summary.md) (generated; means over seeds). Each "
        "cell: largest |balanced accuracy − chance| / NDCG@10 kept.",
        "",
    ]
    return lines + markdown_table(["method", *(f"d = {d}" for d in dims)], rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or locate) the jobs, then write the results. Bad settings and a cluster that cannot
    run them: one line, exit 2; Ctrl-C: one line, exit 130 (run the command again to resume)."""
    args = parse_args(argv)
    try:
        run_dir = run_or_locate(args, plan, "embedding_size")
    except (ClusterError, CodeVersionError, SpecError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    summarise(run_dir, args.results, command_line(), args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
