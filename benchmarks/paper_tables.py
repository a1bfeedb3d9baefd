"""The paper's Tables IV, V, VI and VII with our implementation: privacy (MLP and XGBoost
attackers, balanced and raw accuracy per attribute), utility (NDCG and Hit at 5 and 10) and
runtime (each defence's wall time over the original model's training time), for every
(dataset, backbone, method, seed), with the paper's own numbers beside ours.

A Ray Tune sweep (``recbole_attrcloak.tune``): each (dataset, model, seed) trains the original
model once; every other method loads its checkpoint (RAP, BlurMe and LDP-SH then retrain from
scratch, by design). Run the same command again to resume after Ctrl-C.

    python benchmarks/paper_tables.py --quick                      # minutes, on a laptop
    python benchmarks/paper_tables.py --workers 12 --gpu --deadline 420 --out outputs/bench/pt
    python benchmarks/paper_tables.py --summarise-only outputs/bench/pt   # on any machine

Writes summary.md, privacy.csv, utility.csv, runtime.csv, targets.csv, jobs.csv and
tradeoff.png under --results, and the headline block of benchmarks/README.md when --results is
the default folder.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
    ATTACKER_LABELS,
    ATTACKERS,
    LABELS,
    RETRAINING,
    UTILITY,
    backbones,
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
from matplotlib import colormaps
from matplotlib.figure import Figure

from recbole_attrcloak.defences import CATALOGUE as METHODS
from recbole_attrcloak.tune import ClusterError, CodeVersionError, SpecError
from recbole_attrcloak.tune.results import (
    aggregate,
    attributes_in,
    gap_columns,
    markdown_table,
    order_rows,
    pm,
)

QUICK_METHODS = ("original", "attrcloak-dd", "attrcloak-df", "u2u", "d2d", "ldp")
KEYS = ["dataset", "model", "method"]
PAPER_ATTRIBUTES = ("gender", "age", "occupation")
OTHER_DATASETS = {  # the paper's other two datasets: converter name and what to pass
    "modcloth-mb": "--datasets modcloth-mb --source modcloth-mb=PATH/df_modcloth.csv",
    "lastfm-1k": "--datasets lastfm-1k --source lastfm-1k=PATH/lastfm-dataset-1K",
}


def _paper(
    xgb: tuple[float, ...],
    mlp: tuple[float, ...],
    utility: tuple[float, ...],
    seconds: float | None = None,
) -> dict[str, Any]:
    return {"xgboost": xgb, "mlp": mlp, "utility": utility, "seconds": seconds}


# The paper's own numbers (Wu et al., AttrCloak, ICDE 2025), typed in as reference. Privacy:
# raw attack accuracy for (gender, age, occupation); utility: (NDCG@5, NDCG@10, HR@5, HR@10);
# seconds: running time. NeuMF stands for the paper's NCF backbone: Table IV (privacy),
# Table V (utility), Table VI (time, backbone not stated: the paper's default NCF).
# LightGCN: Table VII (ml-100k only, no times). The paper has no BPR backbone.
PAPER: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("ml-100k", "NeuMF"): {
        "original": _paper(
            (0.7626, 0.4496, 0.2281), (0.7414, 0.3289, 0.2454), (0.8116, 0.7721, 0.7979, 0.7479)
        ),
        "attrcloak-dd": _paper(
            (0.5822, 0.1989, 0.0995),
            (0.5928, 0.1724, 0.0358),
            (0.8172, 0.7769, 0.8034, 0.7524),
            235.78,
        ),
        "rap": _paper(
            (0.9310, 0.8143, 0.6034),
            (0.6286, 0.2056, 0.0995),
            (0.5819, 0.5590, 0.5784, 0.5473),
            580.35,
        ),
        "blurme": _paper(
            (0.6300, 0.3170, 0.1525),
            (0.6605, 0.2162, 0.0902),
            (0.8053, 0.7685, 0.7941, 0.7464),
            678.69,
        ),
        "ldp": _paper(
            (0.6698, 0.2692, 0.1472),
            (0.6976, 0.2586, 0.0690),
            (0.6183, 0.5838, 0.6174, 0.5695),
            414.76,
        ),
        "attrcloak-df": _paper(
            (0.5995, 0.2401, 0.1419),
            (0.6088, 0.1950, 0.0528),
            (0.7728, 0.7531, 0.7661, 0.7409),
            12.81,
        ),
        "u2u": _paper(
            (0.9987, 0.9947, 0.9788),
            (0.6300, 0.2003, 0.1056),
            (0.6952, 0.6735, 0.6895, 0.6619),
            8.98,
        ),
        "d2d": _paper(
            (0.6538, 0.2798, 0.1989),
            (0.6340, 0.2162, 0.0531),
            (0.6685, 0.6439, 0.6614, 0.6294),
            7.45,
        ),
    },
    ("ml-1m", "NeuMF"): {
        "original": _paper(
            (0.7955, 0.4164, 0.1995), (0.7243, 0.3526, 0.1660), (0.6473, 0.6095, 0.6324, 0.5853)
        ),
        "attrcloak-dd": _paper(
            (0.5608, 0.1692, 0.1024),
            (0.5217, 0.1656, 0.0406),
            (0.6554, 0.6176, 0.6404, 0.5934),
            1322.18,
        ),
        "rap": _paper(
            (0.9917, 0.9611, 0.8079),
            (0.5235, 0.1829, 0.0257),
            (0.6518, 0.6224, 0.6285, 0.5979),
            4317.50,
        ),
        "blurme": _paper(
            (0.6641, 0.2957, 0.1482),
            (0.6177, 0.1573, 0.0803),
            (0.6468, 0.6089, 0.6306, 0.5840),
            4266.94,
        ),
        "ldp": _paper(
            (0.6854, 0.3171, 0.1217),
            (0.6475, 0.1838, 0.0828),
            (0.4907, 0.4691, 0.4928, 0.4609),
            2972.77,
        ),
        "attrcloak-df": _paper(
            (0.6203, 0.2503, 0.0772),
            (0.6169, 0.1821, 0.0555),
            (0.6523, 0.6217, 0.6277, 0.5958),
            39.20,
        ),
        "u2u": _paper(
            (0.9999, 0.9992, 0.9999),
            (0.6036, 0.2036, 0.0927),
            (0.6750, 0.6243, 0.6467, 0.5904),
            111.36,
        ),
        "d2d": _paper(
            (0.7113, 0.3180, 0.1551),
            (0.6537, 0.2045, 0.0348),
            (0.6318, 0.6017, 0.5981, 0.5668),
            56.98,
        ),
    },
    ("ml-100k", "LightGCN"): {
        "original": _paper(
            (0.7029, 0.3422, 0.1923), (0.7520, 0.3382, 0.2255), (0.8125, 0.7847, 0.7997, 0.7657)
        ),
        "attrcloak-dd": _paper(
            (0.5557, 0.1499, 0.0849), (0.5530, 0.1645, 0.0836), (0.8218, 0.7944, 0.8017, 0.7768)
        ),
        "rap": _paper(
            (0.8302, 0.6525, 0.4748), (0.5477, 0.1790, 0.0838), (0.6019, 0.5726, 0.5870, 0.5471)
        ),
        "blurme": _paper(
            (0.6008, 0.2294, 0.1300), (0.6061, 0.2255, 0.0902), (0.8136, 0.7875, 0.8000, 0.7794)
        ),
        "ldp": _paper(
            (0.6565, 0.1923, 0.1194), (0.6260, 0.2719, 0.1326), (0.6391, 0.6144, 0.6251, 0.4962)
        ),
        "attrcloak-df": _paper(
            (0.5066, 0.1698, 0.1154), (0.5782, 0.2069, 0.0716), (0.7470, 0.7203, 0.7343, 0.7018)
        ),
        "u2u": _paper(
            (0.9151, 0.6989, 0.8422), (0.5875, 0.2149, 0.0796), (0.6606, 0.6255, 0.6476, 0.6033)
        ),
        "d2d": _paper(
            (0.6273, 0.2228, 0.1658), (0.6153, 0.2480, 0.0822), (0.6371, 0.6150, 0.6359, 0.6036)
        ),
    },
}
PAPER_TABLES = {
    ("ml-100k", "NeuMF"): "Tables IV, V, VI",
    ("ml-1m", "NeuMF"): "Tables IV, V, VI",
    ("ml-100k", "LightGCN"): "Table VII",
}


@dataclass(frozen=True)
class Target:
    """One of issue #6's targets: ``column`` of ``method``'s mean over seeds must stay at most
    (``sense`` "max") or at least ("min") ``threshold`` on each of ``datasets``."""

    label: str
    method: str
    datasets: tuple[str, ...]
    column: str
    threshold: float
    sense: str = "max"


BOTH = ("ml-100k", "ml-1m")
TARGETS = (
    Target("AttrCloak-DF unlearning ≤ 2 s", "attrcloak-df", ("ml-100k",), "defence_s", 2.0),
    Target("AttrCloak-DF unlearning ≤ 5 s", "attrcloak-df", ("ml-1m",), "defence_s", 5.0),
    Target("AttrCloak-DD ≤ 25 % of training", "attrcloak-dd", ("ml-1m",), "ratio", 0.25),
    Target("DD: every bal. acc within 0.03 of chance", "attrcloak-dd", BOTH, "max_gap", 0.03),
    Target("DF: every bal. acc within 0.03 of chance", "attrcloak-df", BOTH, "max_gap", 0.03),
    Target("DD: NDCG@10 kept ≥ 99 %", "attrcloak-dd", BOTH, "retention@ndcg@10", 0.99, "min"),
    Target("DF: NDCG@10 kept ≥ 97 %", "attrcloak-df", BOTH, "retention@ndcg@10", 0.97, "min"),
)


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
        help="ml-100k, BPR, one seed, 5 epochs, the post-training methods and LDP-SH; "
        "results under outputs/bench/paper_tables-quick",
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
    --datasets and --models order. The original models are the training groups."""
    given = sources(args.source)
    unavailable, notes, keyed = {}, [], []
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
        "unavailable": unavailable,
        "notes": sorted(set(notes)),
    }
    return [config for _, config in keyed], settings


def meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """A job's columns in jobs.csv and the tables: dataset, model, seed, method, its name."""
    seed, method = row["config"].get("seed"), row["method"]
    job = f"{row['dataset']}/{row['model']}/seed{seed}/{method}"
    return {"job": job, "dataset": row["dataset"], "model": row["model"], "seed": seed} | {
        "method": method
    }


# --- summary ------------------------------------------------------------------------------


def per_seed(reports: pd.DataFrame) -> pd.DataFrame:
    """The reports with gap columns, their own original model's training time and NDCG@10,
    and the ratio of each job's time to that training time."""
    frame = pd.concat([reports, gap_columns(reports)], axis=1)
    originals = frame[frame["method"] == "original"].set_index(["dataset", "model", "seed"])
    own = originals[["train_s", "ndcg@10"]].add_prefix("original_")
    frame = frame.join(own, on=["dataset", "model", "seed"])
    frame["ratio"] = frame["seconds"] / frame["original_train_s"]
    return frame


def _method_order(methods: Sequence[str]) -> list[str]:
    return [m for m in METHODS if m in set(methods)]


def _paper_value(
    dataset: str, model: str, method: str, kind: str, index: int | None = None
) -> float:
    entry = PAPER.get((dataset, model), {}).get(method)
    if entry is None or entry[kind] is None:
        return math.nan
    return entry[kind] if index is None else entry[kind][index]


def _paper_attack(dataset: str, model: str, method: str, attr: str, attacker: str) -> float:
    if attr not in PAPER_ATTRIBUTES:
        return math.nan
    return _paper_value(dataset, model, method, attacker, PAPER_ATTRIBUTES.index(attr))


def privacy_rows(agg: pd.DataFrame, attributes: Sequence[str]) -> pd.DataFrame:
    """privacy.csv: one row per (dataset, model, method, attribute, attacker)."""
    rows = []
    for _, r in agg.iterrows():
        for attr in attributes:
            if f"{attr}/chance" not in r or pd.isna(r[f"{attr}/chance"]):
                continue
            for attacker in ATTACKERS:
                col = f"{attr}/{attacker}"
                paper = _paper_attack(r["dataset"], r["model"], r["method"], attr, attacker)
                rows.append(
                    {
                        "dataset": r["dataset"],
                        "model": r["model"],
                        "method": r["method"],
                        "attribute": attr,
                        "attacker": attacker,
                        "balanced_accuracy": r[f"{col}/balanced_accuracy"],
                        "balanced_accuracy_std": r[f"{col}/balanced_accuracy:std"],
                        "accuracy": r[f"{col}/accuracy"],
                        "accuracy_std": r[f"{col}/accuracy:std"],
                        "chance": r[f"{attr}/chance"],
                        "majority": r[f"{attr}/majority"],
                        "paper_accuracy": paper,
                        "n_seeds": r["n"],
                    }
                )
    return pd.DataFrame(rows)


def utility_rows(agg: pd.DataFrame) -> pd.DataFrame:
    """utility.csv: test utility per (dataset, model, method), with the paper's values."""
    rows = []
    for _, r in agg.iterrows():
        row = {k: r[k] for k in KEYS}
        for i, metric in enumerate(UTILITY):
            row[metric] = r[metric]
            row[f"{metric}_std"] = r[f"{metric}:std"]
            row[f"paper_{metric}"] = _paper_value(
                r["dataset"], r["model"], r["method"], "utility", i
            )
        row["ndcg@10_retention"] = r["retention@ndcg@10"]
        row["ndcg@10_retention_std"] = r["retention@ndcg@10:std"]
        rows.append(row | {"n_seeds": r["n"]})
    return pd.DataFrame(rows)


def runtime_rows(agg: pd.DataFrame) -> pd.DataFrame:
    """runtime.csv: each defence's wall time and its ratio to the original's training time."""
    rows = []
    for _, r in agg.iterrows():
        rows.append(
            {k: r[k] for k in KEYS}
            | {
                "seconds": r["seconds"],
                "seconds_std": r["seconds:std"],
                "original_train_s": r["original_train_s"],
                "ratio_to_training": r["ratio"],
                "ratio_std": r["ratio:std"],
                "epochs": r["epochs"],
                "steps": r["steps"],
                "paper_seconds": _paper_value(r["dataset"], r["model"], r["method"], "seconds"),
                "n_seeds": r["n"],
            }
        )
    return pd.DataFrame(rows)


def target_rows(agg: pd.DataFrame) -> pd.DataFrame:
    """targets.csv: each target per (dataset, model) measured, with the margin and, where
    missed, what the number is made of."""
    rows = []
    for t in TARGETS:
        for _, r in agg[(agg["method"] == t.method) & agg["dataset"].isin(t.datasets)].iterrows():
            value = r[t.column]
            margin = value - t.threshold if t.sense == "max" else t.threshold - value
            met = margin <= 0
            rows.append(
                {
                    "target": t.label,
                    "dataset": r["dataset"],
                    "model": r["model"],
                    "measured": value,
                    "measured_std": r[f"{t.column}:std"],
                    "threshold": t.threshold,
                    "met": bool(met),
                    "missed_by": 0.0 if met else margin,
                    "detail": _detail(r, t.column),
                    "n_seeds": r["n"],
                }
            )
    columns = ["target", "dataset", "model", "measured", "measured_std", "threshold", "met"]
    return pd.DataFrame(rows, columns=[*columns, "missed_by", "detail", "n_seeds"])


def _detail(r: pd.Series, column: str) -> str:
    """What a target's number is made of: steps and seconds per step for times, the worst
    attribute/attacker for privacy, the NDCG@10 values for retention."""
    if column in ("defence_s", "ratio"):
        steps = r["steps"]
        per = r["defence_s"] / steps if steps and not math.isnan(steps) else math.nan
        text = f"{steps:.0f} steps × {per:.3f} s" if not math.isnan(per) else ""
        if column == "ratio":
            text += f"; defence {r['defence_s']:.1f} s / training {r['original_train_s']:.1f} s"
        return text
    if column == "max_gap":
        gaps = {c: r[c] for c in r.index if c.startswith("gap/") and not c.endswith(":std")}
        worst = max(gaps, key=lambda c: gaps[c])
        _, attr, attacker = worst.split("/")
        return f"worst: {attr} {ATTACKER_LABELS[attacker]} {gaps[worst]:.3f} from chance"
    return f"NDCG@10 {r['original_ndcg@10']:.4f} → {r['ndcg@10']:.4f}"


def _with_paper(ours: Sequence[str], theirs: Sequence[float]) -> list[str]:
    """Our cells with the paper's value in brackets where it has one."""
    return [o if math.isnan(t) else f"{o} ({t:.4f})" for o, t in zip(ours, theirs, strict=True)]


def section(agg: pd.DataFrame, dataset: str, model: str, attributes: Sequence[str]) -> list[str]:
    """The four tables of one (dataset, model)."""
    part = agg[(agg["dataset"] == dataset) & (agg["model"] == model)].set_index("method")
    attributes = [a for a in attributes if part[f"{a}/chance"].notna().any()]
    methods = _method_order(part.index)
    paper = PAPER.get((dataset, model), {})
    title = f"{dataset} · {model}" + (" (the paper's NCF)" if model == "NeuMF" else "")
    lines = [f"## {title}", ""]
    ref = PAPER_TABLES.get((dataset, model))
    lines += [f"Paper's numbers: {ref}." if ref else "The paper has no numbers for this pair.", ""]
    if "original" in part.index:
        o = part.loc["original"]
        lines += [
            f"Original model: {pm(o['epochs'], o['epochs:std'], 0)} epochs, trained in "
            f"{pm(o['train_s'], o['train_s:std'], 1)} s (data loading included). n: seeds "
            "per row.",
            "",
        ]

    cells = privacy_header(attributes)
    rows = []
    for m in methods:
        r = part.loc[m]
        values = privacy_cells(r, attributes, "balanced_accuracy")
        rows.append([LABELS[m], *values, pm(r["max_gap"], r["max_gap:std"]), int(r["n"])])
    chance = [f"{part.iloc[0][f'{a}/chance']:.3f}" for a in attributes for _ in ATTACKERS]
    rows.append(["chance (1/k)", *chance, "", ""])
    lines += ["**Privacy: balanced accuracy** (shadow protocol, mean ± std over seeds)", ""]
    lines += markdown_table(["method", *cells, "max gap", "n"], rows)

    rows = []
    for m in _method_order([*methods, *paper]):
        ran = m in part.index
        ours = privacy_cells(part.loc[m], attributes, "accuracy") if ran else ["–"] * len(cells)
        theirs = [_paper_attack(dataset, model, m, a, t) for a in attributes for t in ATTACKERS]
        rows.append([LABELS[m] + ("" if ran else _not_run(m, model)), *_with_paper(ours, theirs)])
    majority = [f"{part.iloc[0][f'{a}/majority']:.3f}" for a in attributes for _ in ATTACKERS]
    rows.append(["majority class", *majority])
    lines += ["**Privacy: raw accuracy**, ours (paper's in brackets)", ""]
    lines += markdown_table(["method", *cells], rows)

    rows = []
    for m in _method_order([*methods, *paper]):
        ran = m in part.index
        r = part.loc[m] if ran else None
        ours = [pm(r[k], r[f"{k}:std"], 4) if ran else "–" for k in UTILITY]
        theirs = [_paper_value(dataset, model, m, "utility", i) for i in range(len(UTILITY))]
        ours.append(pm(r["retention@ndcg@10"], r["retention@ndcg@10:std"]) if ran else "–")
        theirs.append(theirs[1] / _paper_value(dataset, model, "original", "utility", 1))
        label = LABELS[m] + ("" if ran else _not_run(m, model))
        rows.append([label, *_with_paper(ours, theirs)])
    lines += ["**Utility**: test split, full ranking, ours (paper's in brackets)", ""]
    utility = ["NDCG@5", "NDCG@10", "Hit@5", "Hit@10", "NDCG@10 kept"]
    lines += markdown_table(["method", *utility], rows)

    rows = []
    for m in methods:
        r = part.loc[m]
        work = f"{r['epochs']:.0f} epochs" if not math.isnan(r["epochs"]) else ""
        work = work or (f"{r['steps']:.0f} steps" if not math.isnan(r["steps"]) else "")
        theirs = _paper_value(dataset, model, m, "seconds")
        rows.append(
            [
                LABELS[m] + (" (training)" if m == "original" else ""),
                pm(r["seconds"], r["seconds:std"], 1),
                pm(r["ratio"], r["ratio:std"], 2),
                work,
                "–" if math.isnan(theirs) else f"{theirs:.2f}",
            ]
        )
    lines += ["**Runtime**: wall seconds of the defence (retraining included)", ""]
    lines += markdown_table(["method", "seconds", "× original training", "work", "paper s"], rows)
    return lines


def _not_run(method: str, model: str) -> str:
    supported = backbones(method)
    if supported and model not in supported:
        return f" ({', '.join(supported)} only here)"
    return " (not run)"


def target_lines(targets: pd.DataFrame) -> list[str]:
    """The Targets table of summary.md."""
    if targets.empty:
        return ["No AttrCloak run on ml-100k or ml-1m yet: no target can be judged.", ""]
    rows = []
    for _, t in targets.iterrows():
        measured = pm(t["measured"], t["measured_std"])
        verdict = "met" if t["met"] else f"**missed** by {t['missed_by']:.3f}"
        rows.append([t["target"], f"{t['dataset']} · {t['model']}", measured, verdict, t["detail"]])
    return markdown_table(["target", "run", "measured (mean ± std)", "verdict", "made of"], rows)


DIFFERENCES = """\
- **Accuracy vs balanced accuracy.** The paper reports raw attack accuracy. On imbalanced
  attributes raw accuracy sits near the majority rate (row "majority class") even for an
  attacker that learnt nothing, so compare balanced accuracy with chance (1/k) instead.
- **Evaluation.** Our utility is full ranking over all items (configs/default.yaml). The paper's
  NDCG/HR values (0.6–0.8, HR@10 below HR@5) are far above what full ranking gives on these
  data and most likely come from sampled negatives (`configs/paper.yaml`, `uni100`), so only
  the ratios to each table's own original are comparable, not the absolute values.
- **Backbones and training.** NeuMF is RecBole's: trained with BCE on sampled negatives (the
  paper's NCF: BPR loss), 64-d GMF and 64-d MLP user tables (audited and unlearned together,
  128-d), lr 1e-3 and batch 2048 (the paper: lr 1e-4, batch 512). LightGCN has RecBole's 2
  layers (the paper: 3). Epoch caps (see "Setup") may stop training before early stopping.
- **RAP** exists here as RAPBPR only: it is reported for BPR, not for NeuMF or LightGCN.
- **Attackers.** The paper's shadow protocol (attacker trained on a stratified 20 % of users),
  three repeats per audit; the stronger 5-fold protocol of `--audit full` is not run here.
- **Runtime.** Measured on the machine in the header, several jobs at a time; the paper's
  times are on an A100 and include training "until the model converges".
"""


def plot_tradeoff(agg: pd.DataFrame, path: Path) -> None:
    """Privacy (largest gap to chance) against NDCG@10 kept: one panel per (dataset, model),
    one colour per method, the privacy target as a dashed line."""
    datasets, models = list(dict.fromkeys(agg["dataset"])), list(dict.fromkeys(agg["model"]))
    fig = Figure(figsize=(3.6 * len(models) + 1.6, 3.2 * len(datasets)), layout="constrained")
    axes = fig.subplots(len(datasets), len(models), squeeze=False)
    colours = dict(zip(METHODS, colormaps["tab10"].colors, strict=False))
    for (i, dataset), (j, model) in itertools.product(enumerate(datasets), enumerate(models)):
        ax = axes[i][j]
        part = agg[(agg["dataset"] == dataset) & (agg["model"] == model)]
        for _, r in part.iterrows():
            ax.errorbar(
                r["max_gap"],
                r["retention@ndcg@10"],
                xerr=np.nan_to_num(r["max_gap:std"]),
                yerr=np.nan_to_num(r["retention@ndcg@10:std"]),
                fmt="o",
                capsize=2,
                color=colours[r["method"]],
                label=LABELS[r["method"]],
            )
        ax.axvline(0.03, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"{dataset} · {model}", fontsize=9)
        ax.set_xlabel("largest |balanced accuracy − chance|", fontsize=8)
        ax.set_ylabel("NDCG@10 kept", fontsize=8)
        ax.grid(alpha=0.3)
    legend = {}  # one entry per method, across panels
    for ax in axes.flat:
        handles, labels = ax.get_legend_handles_labels()
        legend.update(zip(labels, handles, strict=True))
    fig.legend(legend.values(), legend.keys(), loc="outside right center", fontsize=8)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", flush=True)


def setup_lines(settings: Mapping[str, Any], jobs: pd.DataFrame) -> list[str]:
    """The Setup section of summary.md: what ran, with which settings."""
    caps = epochs_text(settings.get("epochs") or {})
    lines = [
        "## Setup",
        "",
        f"- Datasets {', '.join(settings.get('datasets', []))}; models "
        f"{', '.join(settings.get('models', []))}; seeds {settings.get('seeds')} (each seed "
        "changes RecBole's random split and initialisation and the audit's draws).",
        "- `configs/default.yaml` (d = 128, Adam lr 1e-3, batch 2048, RS 8:1:1 split, early "
        f"stopping on valid NDCG@10 after 10 epochs), full-sort evaluation; epoch caps: {caps}; "
        f"extra settings: {', '.join(settings.get('set', [])) or 'none'}.",
        "- Audit `quick`: the paper's shadow protocol with MLP and XGBoost, 3 repeats. Original "
        "rows come from the original model's own job (a training group of the Ray Tune sweep); "
        "every other row from the trial that loaded its checkpoint and applied the defence. "
        "Defaults of every method as in docs/baselines.md and docs/attrcloak.md.",
        f"- Jobs: {job_counts(jobs)} "
        "(jobs.csv; a failed job's message and traceback are in its folder's error.json).",
    ]
    lines += [f"- {note}." for note in settings.get("notes", [])]
    return [*lines, ""]


def not_run_lines(settings: Mapping[str, Any], done: set[str]) -> list[str]:
    """The datasets asked for but not available, and the paper's other two."""
    lines = ["## Not run here", ""]
    for dataset, reason in settings.get("unavailable", {}).items():
        lines.append(f"- **{dataset}**: {reason}.")
    for dataset, how in OTHER_DATASETS.items():
        if dataset not in done and dataset not in settings.get("unavailable", {}):
            lines.append(f"- **{dataset}**: not run here (no data on this machine); `{how}`.")
    return [*lines, ""]


def summarise(run_dir: Path, results: Path, command: str, readme: Path | None = None) -> None:
    """Write every result file of ``run_dir`` into ``results``."""
    settings = settings_of(run_dir)
    jobs, reports = load_run(run_dir, meta)
    lines = header("Privacy, utility and runtime (the paper's Tables IV–VII)", run_dir, command)
    lines += setup_lines(settings, jobs)
    results.mkdir(parents=True, exist_ok=True)
    write_csv(jobs, results / "jobs.csv")
    if reports.empty:
        lines += ["No job has finished yet.", "", *not_run_lines(settings, set())]
        write_text(results / "summary.md", "\n".join(lines))
        return
    orders = {k: settings.get(f"{k}s", []) for k in ("dataset", "model")} | {"method": METHODS}
    frame = order_rows(per_seed(reports), orders)
    agg = aggregate(frame, KEYS)
    attributes = attributes_in(agg)
    targets = target_rows(agg)
    write_csv(privacy_rows(agg, attributes), results / "privacy.csv")
    write_csv(utility_rows(agg), results / "utility.csv")
    write_csv(runtime_rows(agg), results / "runtime.csv")
    write_csv(targets, results / "targets.csv")
    plot_tradeoff(agg, results / "tradeoff.png")

    lines += ["## Targets (issue #6)", "", *target_lines(targets)]
    for dataset, model in dict.fromkeys(zip(agg["dataset"], agg["model"], strict=True)):
        lines += section(agg, dataset, model, attributes)
    lines += not_run_lines(settings, set(agg["dataset"]))
    lines += ["## Differences from the paper", "", DIFFERENCES]
    lines += ["Files: `privacy.csv`, `utility.csv`, `runtime.csv`, `targets.csv`, `jobs.csv`, "]
    lines += ["`tradeoff.png` (largest gap to chance against NDCG@10 kept).", ""]
    write_text(results / "summary.md", "\n".join(lines))
    if readme is not None:
        update_readme(readme, "paper_tables", "\n".join(headline(agg, targets, results)))


def headline(agg: pd.DataFrame, targets: pd.DataFrame, results: Path) -> list[str]:
    """The block of benchmarks/README.md: per method and (dataset, model) the largest gap to
    chance, the NDCG@10 kept and the time over training (means over seeds), then the targets."""
    link = readme_link(results)
    pairs = list(dict.fromkeys(zip(agg["dataset"], agg["model"], strict=True)))
    lines = [
        f"From [`{link}/summary.md`]({link}/summary.md) (generated; means over seeds, n = "
        "seeds). Each cell: largest |balanced accuracy − chance| over attributes and "
        "attackers / NDCG@10 kept / wall time over the original's training time.",
        "",
    ]
    rows = []
    for method in _method_order(agg["method"]):
        cells = []
        for dataset, model in pairs:
            r = agg[
                (agg["dataset"] == dataset) & (agg["model"] == model) & (agg["method"] == method)
            ]
            if r.empty:
                cells.append("–")
                continue
            r = r.iloc[0]
            kept = r["retention@ndcg@10"]
            cells.append(f"{r['max_gap']:.3f} / {kept:.1%} / {r['ratio']:.2f}×")
        rows.append([LABELS[method], *cells])
    seeds = {
        (d, m): int(agg[(agg["dataset"] == d) & (agg["model"] == m)]["n"].max()) for d, m in pairs
    }
    lines += markdown_table(["method", *(f"{d} · {m} (n = {seeds[d, m]})" for d, m in pairs)], rows)
    if targets.empty:
        return lines
    missed = targets[~targets["met"]]
    lines += [f"Targets: {len(targets) - len(missed)} of {len(targets)} met."]
    lines += [
        f"- missed: {t['target']} on {t['dataset']} · {t['model']}: {t['measured']:.3f} "
        f"(by {t['missed_by']:.3f}; {t['detail']})"
        for _, t in missed.iterrows()
    ]
    return [*lines, ""]


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
    summarise(run_dir, args.results, command_line(), args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
