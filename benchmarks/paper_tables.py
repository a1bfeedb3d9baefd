"""The paper's Tables IV, V, VI and VII with our implementation: privacy (the audit's attackers
under the shadow and k-fold protocols, balanced and raw accuracy, the two-sided familywise
verdict of every run), utility (NDCG and Hit at 5 and 10) and runtime (each method's seconds,
its device, the paper's A100 seconds, the ratio to the original's training time), for every
(dataset, backbone, method, seed), with issue 12's acceptance view.

A Ray Tune sweep (``recbole_attrcloak.tune``): each (dataset, model, seed) trains the original
model once, or loads it from ``--originals DIR`` (``benchmarks/gpu_originals.py``'s files);
every other method runs on its checkpoint (RAP, BlurMe and LDP-SH then retrain from scratch,
by design). Run the same command again to resume after Ctrl-C.

    python benchmarks/paper_tables.py --quick                      # minutes, on a laptop
    python benchmarks/paper_tables.py --originals outputs/originals --workers 12 --gpu \
        --out outputs/bench/pt
    python benchmarks/paper_tables.py --summarise-only outputs/bench/pt   # on any machine

Writes jobs.csv, runs.csv, privacy.csv, utility.csv, runtime.csv, acceptance.csv, terms.csv
(where each AttrCloak run ended against the random-relabeling null), null.csv (each AttrCloak
run's audit against its permuted-label null, both directions; each headed by its provenance),
tradeoff.png and summary.md (rendered from the CSVs) under --results, and the generated blocks
of the READMEs when --results is the default folder.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
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
    acceptance_table,
    cell_table,
    group_name,
    per_seed,
    privacy_table,
    runs_table,
)
from _null import null_table
from _originals import original_source
from _paper import paper_attack, paper_seconds, paper_value
from _tables import (
    LABELS,
    RETRAINING,
    UTILITY,
    backbones,
    load_run,
    provenance,
    settings_of,
    write_csv,
)
from _terms import terms_table
from matplotlib import colormaps
from matplotlib.figure import Figure

from recbole_attrcloak.defences import CATALOGUE as METHODS
from recbole_attrcloak.tune import ClusterError, CodeVersionError, SpecError
from recbole_attrcloak.tune.results import order_rows

QUICK_METHODS = ("original", "attrcloak-dd", "attrcloak-df", "u2u", "d2d", "ldp")
KEYS = ["dataset", "model", "method"]
CSVS = ("jobs", "runs", "privacy", "utility", "runtime", "acceptance", "terms", "null")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options, with the defaults that depend on --quick filled in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--datasets", help="comma-separated, list order = priority")
    parser.add_argument("--models", help="comma-separated (default BPR,NeuMF,LightGCN)")
    parser.add_argument("--methods", help=f"comma-separated of {','.join(METHODS)} (default all)")
    parser.add_argument("--seeds", help="comma-separated RecBole seeds (default 2020,2021,2022)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="ml-100k, BPR, one seed, 5 epochs, the post-training methods and LDP-SH, the quick "
        "audit; results under outputs/bench/paper_tables-quick",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.datasets = split_list(args.datasets or ("ml-100k" if quick else "ml-100k,ml-1m"))
    args.models = split_list(args.models or ("BPR" if quick else "BPR,NeuMF,LightGCN"))
    args.methods = (
        split_list(args.methods) if args.methods else list(QUICK_METHODS if quick else METHODS)
    )
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    args.seeds = [int(s) for s in split_list(args.seeds or ("2020" if quick else "2020,2021,2022"))]
    finish_arguments(args, "paper_tables")
    return args


def plan(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One trial config per (dataset, model, seed, defence), seed-major so that a run cut short
    by its deadline still has whole seeds (each seed is a wave: its original models first,
    then its defences); within a seed the retraining defences (the longest) first, each in
    --datasets and --models order. The original models are the training groups; a group whose
    checkpoint is in --originals loads it."""
    given = sources(args.source)
    unavailable, notes, keyed, originals = {}, [], [], {}
    for d_index, dataset in enumerate(args.datasets):
        try:
            data = prepare_data(dataset, args.data_root, given.get(dataset))
        except DataUnavailable as exc:
            unavailable[dataset] = str(exc)
            print(f"not run: {dataset}: {exc}", file=sys.stderr)
            continue
        for m_index, model in enumerate(args.models):
            methods = []
            for method in args.methods:
                supported = backbones(method)
                if supported and model not in supported:
                    notes.append(
                        f"{model}: {LABELS[method]} not run (implemented for the "
                        f"{', '.join(supported)} backbone only)"
                    )
                else:
                    methods.append(method)
            defences = [m for m in methods if m != "original"] or ["original"]
            for s_index, seed in enumerate(args.seeds):
                base = run_config(args, model, dataset, seed) | data
                base = original_source(args, base, {}, originals)
                for method in defences:
                    phase = 0 if method in RETRAINING else 1
                    keyed.append(((s_index, phase, d_index, m_index), base | method_config(method)))
    keyed.sort(key=lambda pair: pair[0])
    settings = {
        "datasets": args.datasets,
        "models": args.models,
        "methods": args.methods,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "set": args.set,
        "audit": args.audit,
        "originals": originals,
        "unavailable": unavailable,
        "notes": sorted(set(notes)),
    }
    return [config for _, config in keyed], settings


def meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """A job's columns in jobs.csv and the tables: its name, dataset, model, seed, method, its
    training group's name and whether the group was trained here or loaded (``source``)."""
    seed, method = row["config"].get("seed"), row["method"]
    job = f"{row['dataset']}/{row['model']}/seed{seed}/{method}"
    source = "checkpoint" if row["config"].get("checkpoint") else "trained"
    return {"job": job, "dataset": row["dataset"], "model": row["model"], "seed": seed} | {
        "method": method,
        "group": group_name(row["dataset"], row["model"], seed),
        "source": source,
    }


# --- the CSVs -------------------------------------------------------------------------------


def utility_table(cells: pd.DataFrame) -> pd.DataFrame:
    """utility.csv: test utility per (dataset, model, method), NDCG@10 kept, the paper's."""
    rows = []
    for _, r in cells.iterrows():
        row = {k: r[k] for k in KEYS}
        for i, metric in enumerate(UTILITY):
            row |= {metric: r[metric], f"{metric}_std": r[f"{metric}:std"]}
            row[f"paper_{metric}"] = paper_value(
                r["dataset"], r["model"], r["method"], "utility", i
            )
        row["ndcg@10_retention"] = r["retention@ndcg@10"]
        row["ndcg@10_retention_std"] = r["retention@ndcg@10:std"]
        rows.append(row | {"n_seeds": r["n"]})
    return pd.DataFrame(rows)


def runtime_table(cells: pd.DataFrame) -> pd.DataFrame:
    """runtime.csv (Table VI): each method's seconds (the original: its training; a defence: its
    unlearning or retraining) and device, the original's training seconds and device, their
    ratio, the work done, and the paper's A100 seconds."""
    rows = []
    for _, r in cells.iterrows():
        rows.append(
            {k: r[k] for k in KEYS}
            | {"seconds": r["seconds"], "seconds_std": r["seconds:std"], "device": r["device"]}
            | {"original_train_s": r["original_train_s"], "train_device": r["train_device"]}
            | {"ratio_to_training": r["ratio"], "ratio_std": r["ratio:std"]}
            | {"epochs": r["epochs"], "steps": r["steps"], "source": r["source"]}
            | {"paper_seconds": paper_seconds(r["dataset"], r["method"]), "n_seeds": r["n"]}
        )
    return pd.DataFrame(rows)


def _paper_attack(group: Mapping[str, Any], attr: str, attacker: str) -> float:
    return paper_attack(group["dataset"], group["model"], group["method"], attr, attacker)


def plot_tradeoff(privacy: pd.DataFrame, utility: pd.DataFrame, path: Path) -> None:
    """Privacy (the worst |mean balanced accuracy − chance| over every attack) against NDCG@10
    kept: one panel per (dataset, model), one colour per method."""
    worst = privacy.groupby(KEYS, sort=False)["gap"].max().rename("worst").reset_index()
    points = utility.merge(worst, on=KEYS)
    datasets, models = list(dict.fromkeys(points["dataset"])), list(dict.fromkeys(points["model"]))
    fig = Figure(figsize=(3.6 * len(models) + 1.6, 3.2 * len(datasets)), layout="constrained")
    axes = fig.subplots(len(datasets), len(models), squeeze=False)
    colours = dict(zip(METHODS, colormaps["tab10"].colors, strict=False))
    for (i, dataset), (j, model) in itertools.product(enumerate(datasets), enumerate(models)):
        ax = axes[i][j]
        part = points[(points["dataset"] == dataset) & (points["model"] == model)]
        for _, r in part.iterrows():
            ax.errorbar(
                r["worst"],
                r["ndcg@10_retention"],
                yerr=np.nan_to_num(r["ndcg@10_retention_std"]),
                fmt="o",
                capsize=2,
                color=colours[r["method"]],
                label=LABELS[r["method"]],
            )
        ax.set_title(f"{dataset} · {model}", fontsize=9)
        ax.set_xlabel("worst |mean balanced accuracy − chance|", fontsize=8)
        ax.set_ylabel("NDCG@10 kept", fontsize=8)
        ax.grid(alpha=0.3)
    legend = {}  # one entry per method, across panels
    for ax in axes.flat:
        handles, labels = ax.get_legend_handles_labels()
        legend.update(zip(labels, handles, strict=True))
    fig.legend(legend.values(), legend.keys(), loc="outside right center", fontsize=8)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", flush=True)


def tables(reports: pd.DataFrame, settings: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The CSVs but jobs.csv, from one row per finished job (``load_run``'s reports)."""
    orders = {k: settings.get(f"{k}s", []) for k in ("dataset", "model")} | {"method": METHODS}
    frame = order_rows(per_seed(reports, settings.get("originals") or {}), orders)
    cells = cell_table(frame, KEYS)
    privacy = privacy_table(frame, KEYS, _paper_attack)
    extra = ["source", "device", "seconds", "ndcg@10", "original_ndcg@10", "retention@ndcg@10"]
    runs = runs_table(frame, [*KEYS[:2], "seed", "method"], extra)
    acceptance = acceptance_table(privacy, runs, cells, ["dataset", "model"])
    return {
        "runs": runs,
        "privacy": privacy,
        "utility": utility_table(cells),
        "runtime": runtime_table(cells),
        "acceptance": acceptance,
        "terms": terms_table(reports, KEYS),
        "null": null_table(reports, KEYS),
    }


def summarise(run_dir: Path, results: Path, command: str, readme: bool = False) -> None:
    """Write every result file of ``run_dir`` into ``results``: the CSVs, then the Markdown
    rendered from them (and, with ``readme``, the READMEs' generated blocks)."""
    from _paper_md import write_markdown

    settings = settings_of(run_dir)
    jobs, reports = load_run(run_dir, meta)
    head = provenance(run_dir, command)
    results.mkdir(parents=True, exist_ok=True)
    for name in CSVS[1:]:  # no stale tables of an earlier summary beside a new jobs.csv
        (results / f"{name}.csv").unlink(missing_ok=True)
    write_csv(jobs, results / "jobs.csv", head, settings)
    if not reports.empty:
        made = tables(reports, settings)
        for name, table in made.items():
            write_csv(table, results / f"{name}.csv", head, settings)
        plot_tradeoff(made["privacy"], made["utility"], results / "tradeoff.png")
    write_markdown(results, readme)


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or locate) the jobs, then write the results. Bad settings and a cluster that cannot
    run them: one line, exit 2; Ctrl-C: one line, exit 130 (run the command again to resume)."""
    args = parse_args(argv)
    try:
        run_dir = run_or_locate(args, plan, "paper_tables")
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
