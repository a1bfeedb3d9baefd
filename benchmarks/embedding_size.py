"""The paper's Fig. 6 with our implementation: privacy and utility of the original model,
AttrCloak-DD and AttrCloak-DF as the embedding size d grows (BPR on ml-100k by default; the
paper used ModCloth, which is not available here).

A Ray Tune sweep (``recbole_attrcloak.tune``): each (d, seed) trains the original model once,
or loads it from ``--originals DIR`` (``{model}-{dataset}-{seed}-embedding_size{d}.pth``, or
the file without a suffix for the checkpoint's own d); AttrCloak DD and DF run on its
checkpoint. Run the same command again to resume after Ctrl-C.

    python benchmarks/embedding_size.py --quick                    # d = 32, 64; one seed
    python benchmarks/embedding_size.py --workers 12 --gpu --out outputs/bench/es
    python benchmarks/embedding_size.py --summarise-only outputs/bench/es

Writes jobs.csv, runs.csv, privacy.csv, embedding_size.csv, acceptance.csv (each headed by its
provenance), embedding_size.png and summary.md (rendered from the CSVs) under --results, and
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
    add_arguments,
    command_line,
    finish_arguments,
    method_config,
    run_config,
    run_or_locate,
    sources,
    split_list,
)
from _data import DataUnavailable, prepare_data
from _grid import (
    BARS,
    acceptance_table,
    cell_table,
    group_name,
    per_seed,
    privacy_table,
    runs_table,
)
from _originals import original_source
from _tables import LABELS, UTILITY, load_run, provenance, settings_of, write_csv
from matplotlib.figure import Figure

from recbole_attrcloak.tune import ClusterError, CodeVersionError, SpecError
from recbole_attrcloak.tune.results import order_rows

METHODS = ("original", "attrcloak-dd", "attrcloak-df")
KEYS = ["dataset", "model", "embedding_size", "method"]
CSVS = ("jobs", "runs", "privacy", "embedding_size", "acceptance")


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
    configs, originals = [], {}
    for seed in args.seeds:
        for d in args.dims:
            base = run_config(args, args.model, args.dataset, seed) | data
            base["embedding_size"] = d
            base = original_source(args, base, {"embedding_size": d}, originals)
            configs += [base | method_config(m) for m in METHODS if m != "original"]
    settings = {
        "dataset": args.dataset,
        "model": args.model,
        "dims": args.dims,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "set": args.set,
        "audit": args.audit,
        "originals": originals,
    }
    return configs, settings


def meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """A job's columns in jobs.csv and the tables: its name, dataset, model, seed, d, method,
    its training group's name and whether that group was trained here or loaded."""
    config, method = row["config"], row["method"]
    seed, d = config.get("seed"), config.get("embedding_size")
    job = f"{row['dataset']}/{row['model']}/d{d}/seed{seed}/{method}"
    columns = {"dataset": row["dataset"], "model": row["model"], "seed": seed}
    source = "checkpoint" if config.get("checkpoint") else "trained"
    group = group_name(row["dataset"], row["model"], seed, [d])
    return {"job": job, **columns, "embedding_size": d, "method": method} | {
        "group": group,
        "source": source,
    }


def table(cells: pd.DataFrame) -> pd.DataFrame:
    """embedding_size.csv: per d and method, test utility, NDCG@10 kept, seconds (unlearning,
    or the original's training) and device, the work done, n (seeds)."""
    columns = [*UTILITY, "retention@ndcg@10", "seconds", "ratio", "steps", "epochs"]
    out = cells[KEYS].copy()
    for column in columns:
        out[column] = cells[column]
        out[f"{column}_std"] = cells[f"{column}:std"]
    out["device"], out["train_device"] = cells["device"], cells["train_device"]
    out["n_seeds"] = cells["n"]
    return out


def plot(privacy: pd.DataFrame, utility: pd.DataFrame, path: Path) -> None:
    """The worst gap to chance (both protocols) and NDCG@10 against d, one line per method."""
    worst = privacy.groupby(KEYS, sort=False)["gap"].max().rename("worst").reset_index()
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    for method in METHODS:
        gaps = worst[worst["method"] == method].sort_values("embedding_size")
        part = utility[utility["method"] == method].sort_values("embedding_size")
        if part.empty:
            continue
        left.plot(gaps["embedding_size"], gaps["worst"], marker="o", label=LABELS[method])
        right.errorbar(
            part["embedding_size"],
            part["ndcg@10"],
            yerr=part["ndcg@10_std"].fillna(0),
            marker="o",
            capsize=2,
            label=LABELS[method],
        )
    left.axhline(BARS["ml-100k"].band, color="grey", linestyle="--", linewidth=1, label="band")
    left.set_ylabel("worst |mean balanced accuracy − chance|")
    right.set_ylabel("NDCG@10 (test, full ranking)")
    dims = sorted(utility["embedding_size"].unique())
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.set_xlabel("embedding size d")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", flush=True)


def summarise(run_dir: Path, results: Path, command: str, readme: bool = False) -> None:
    """Write every result file of ``run_dir`` into ``results``: the CSVs, then the Markdown
    rendered from them (and, with ``readme``, the READMEs' generated blocks)."""
    from _es_md import write_markdown

    settings = settings_of(run_dir)
    jobs, reports = load_run(run_dir, meta)
    head = provenance(run_dir, command)
    results.mkdir(parents=True, exist_ok=True)
    for name in CSVS[1:]:
        (results / f"{name}.csv").unlink(missing_ok=True)
    write_csv(jobs, results / "jobs.csv", head, settings)
    if not reports.empty:
        frame = per_seed(reports, settings.get("originals") or {})
        dims = sorted(frame["embedding_size"].unique())
        frame = order_rows(frame, {"embedding_size": dims, "method": METHODS})
        cells = cell_table(frame, KEYS)
        privacy = privacy_table(frame, KEYS)
        extra = ["source", "device", "seconds", "ndcg@10", "original_ndcg@10", "retention@ndcg@10"]
        runs = runs_table(frame, [*KEYS[:3], "seed", "method"], extra)
        cell = ["dataset", "model", "embedding_size"]
        acceptance = acceptance_table(privacy, runs, cells, cell, speeds=())
        utility = table(cells)
        tables = {"runs": runs, "privacy": privacy, "embedding_size": utility}
        for name, frame_ in (tables | {"acceptance": acceptance}).items():
            write_csv(frame_, results / f"{name}.csv", head, settings)
        plot(privacy, utility, results / "embedding_size.png")
    write_markdown(results, readme)


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
    summarise(run_dir, args.results, command_line(), args.readme is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
