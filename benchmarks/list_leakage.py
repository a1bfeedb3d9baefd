"""Do the recommendations themselves leak? The list attacker (``audit/list_attack.py``) on every
original and AttrCloak model of a ``paper_tables.py`` run folder.

For each model: every user's top-k items by RecBole's full-sort scorer, training items masked
(what RecBole's evaluator ranks), for each ``--k``; then, per sensitive attribute, the list
attacker's 5-fold balanced accuracy against ``--permutations`` label permutations. Writes
``lists.csv`` (one row per model, k and attribute) and ``summary.md`` (per backbone, method and
k: runs whose two-sided p ≤ 0.05, mean z) with the command, date and machine.

    python benchmarks/list_leakage.py --run outputs/bench/NAME --out benchmarks/results/list_leakage
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from _common import command_line
from recbole.utils import init_seed

from recbole_attrcloak import compat
from recbole_attrcloak.audit.list_attack import list_leakage
from recbole_attrcloak.backbone import clear_cached_representations
from recbole_attrcloak.data.attributes import AttributeLabels
from recbole_attrcloak.provenance import machine, machine_line
from recbole_attrcloak.quick_start import _load_config, load_context
from recbole_attrcloak.unlearning.attrcloak import training_history
from recbole_attrcloak.unlearning.base import original_top_items

FIELDS = (
    "dataset",
    "model",
    "seed",
    "method",
    "k",
    "attribute",
    "balanced_accuracy",
    "chance",
    "null_mean",
    "null_std",
    "z",
    "p_value",
    "p_value_below",
    "p_two_sided",
    "n_users",
    "n_permutations",
)


def groups(run: Path) -> dict[tuple[str, str, int], list[tuple[str, Path]]]:
    """(dataset, model, seed) → [(method, checkpoint)] of the run folder's trials: the original
    first, then its AttrCloak models."""
    found: dict[tuple[str, str, int], list[tuple[str, Path]]] = {}
    for report_file in sorted((run / "work" / "trials").glob("*/report.json")):
        report = json.loads(report_file.read_text())
        if report.get("method") != "attrcloak":
            continue
        original = Path(report["checkpoint"]["original"])
        info = json.loads(original.with_suffix(".json").read_text())
        key = (report["dataset"], report["model"], int(info["seed"]))
        unlearned = report_file.parent / Path(report["checkpoint"]["checkpoint"]).name
        found.setdefault(key, [("original", original)])
        found[key].append((f"attrcloak-{report['unlearning']['mode']}", unlearned))
    return found


def group_lists(
    dataset: str, model: str, checkpoints: list[tuple[str, Path]], k: int, work: Path
) -> tuple[dict[str, np.ndarray], dict[str, AttributeLabels]]:
    """Every user's top-``k`` items (training items masked) under each checkpoint of one group,
    and the attributes, both without RecBole's padding user. The data, its split (RecBole
    seeded as in training: unseeded, it draws another split) and the model are built once, from
    the original; the other checkpoints' weights are loaded into that model."""
    _, original = checkpoints[0]
    config, ckpt = _load_config(model, dataset, [], {"show_progress": False}, str(original))
    init_seed(config["seed"], config["reproducibility"])
    ctx, _ = load_context(config, ckpt, str(original), work)
    history = training_history(ctx.train_data, ctx.model)
    lists = {}
    for method, path in checkpoints:
        if path != original:
            other = compat.load_checkpoint(path)
            if other["config"]["seed"] != config["seed"]:
                raise ValueError(f"{path}: seed {other['config']['seed']}, not {config['seed']}")
            ctx.model.load_state_dict(other["state_dict"])
            ctx.model.load_other_parameter(other.get("other_parameter"))
            clear_cached_representations(ctx.model)
        lists[method] = original_top_items(ctx.model, k, history)[0].cpu().numpy()
    attributes = {
        name: AttributeLabels(name, labels.codes[1:], labels.classes)
        for name, labels in ctx.attributes.items()
    }
    return lists, attributes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a paper_tables.py run folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--summarise-only",
        dest="summarise_only",
        action="store_true",
        help="rebuild summary.md from --out's lists.csv (no model is loaded)",
    )
    parser.add_argument("--k", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args(argv)
    if args.summarise_only:
        lines = (args.out / "lists.csv").read_text().splitlines()
        header = [line[2:] for line in lines if line.startswith("# ")]
        rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
        for row in rows:
            for field in ("z", "p_two_sided"):
                row[field] = float(row[field])
        summarise(args.out, rows, header)
        return
    if args.run is None:
        parser.error("--run is required unless --summarise-only")
    compat.apply_recbole_shims()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for (dataset, model, seed), checkpoints in groups(args.run).items():
            lists, attributes = group_lists(dataset, model, checkpoints, max(args.k), Path(work))
            for method, items in lists.items():
                for k in args.k:
                    for name, labels in attributes.items():
                        r = list_leakage(
                            items[:, :k], labels, n_permutations=args.permutations, seed=args.seed
                        )
                        rows.append(
                            {
                                "dataset": dataset,
                                "model": model,
                                "seed": seed,
                                "method": method,
                                "k": k,
                                "attribute": name,
                                "balanced_accuracy": round(r.balanced_accuracy, 4),
                                "chance": round(r.chance, 4),
                                "null_mean": round(r.null_mean, 4),
                                "null_std": round(r.null_std, 4),
                                "z": round(r.z, 2),
                                "p_value": round(r.p_value, 4),
                                "p_value_below": round(r.p_value_below, 4),
                                "p_two_sided": round(r.p_value_two_sided, 4),
                                "n_users": r.n_users,
                                "n_permutations": r.n_permutations,
                            }
                        )
            print(f"{dataset} {model} {seed}: done", file=sys.stderr, flush=True)
    header = [
        f"Generated by `{command_line()}` on "
        f"{datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; do not edit by hand.",
        machine_line(machine()),
    ]
    write(args.out, rows, header)


def write(out: Path, rows: list[dict], header: list[str]) -> None:
    """``lists.csv`` and ``summary.md``."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "lists.csv").open("w", newline="") as handle:
        handle.writelines(f"# {line}\n" for line in header)
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    summarise(out, rows, header)


def summarise(out: Path, rows: list[dict], header: list[str]) -> None:
    """``summary.md``: per backbone, method and k, the runs whose lists leak each attribute,
    and per method and k the runs whose lists leak some attribute (familywise)."""
    lines = ["# Recommendation lists against their permutation null", ""]
    lines += [line + "  " for line in header]
    lines += [
        "",
        f"The list attacker (`recbole_attrcloak/audit/list_attack.py`): each user's top-k items "
        f"(training items masked), kernel ridge on the shared items, 5-fold, balanced accuracy "
        f"against {int(rows[0]['n_permutations'])} label permutations. A cell: runs with "
        "two-sided p ≤ 0.05 of those run, and the mean z (null standard deviations) over them.",
        "",
    ]
    attributes = list(dict.fromkeys(r["attribute"] for r in rows))
    lines.append("| model | method | k | " + " | ".join(attributes) + " |")
    lines.append("|---|---|---|" + "---|" * len(attributes))
    models_seen = list(dict.fromkeys(r["model"] for r in rows))
    groups = sorted(
        dict.fromkeys((r["model"], r["method"], r["k"]) for r in rows),
        key=lambda g: (models_seen.index(g[0]), g[1] != "original", g[1], g[2]),
    )
    for model, method, k in groups:
        cells = []
        for name in attributes:
            sel = [
                r
                for r in rows
                if (r["model"], r["method"], r["k"], r["attribute"]) == (model, method, k, name)
            ]
            rejected = sum(r["p_two_sided"] <= 0.05 for r in sel)
            cells.append(f"{rejected} of {len(sel)}, z {np.mean([r['z'] for r in sel]):+.1f}")
        lines.append(f"| {model} | {method} | {k} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Runs whose lists leak some attribute (the smallest two-sided p times the number of "
        "attributes at or below 0.05, as the report's verdict corrects):",
        "",
    ]
    runs: dict[tuple, list[float]] = {}
    for r in rows:
        key = (r["method"], int(r["k"]), r["model"], r["seed"])
        runs.setdefault(key, []).append(r["p_two_sided"])
    for method, k in sorted(dict.fromkeys((m, k) for m, k, _, _ in runs)):
        ps = [min(v) * len(v) for (m, kk, _, _), v in runs.items() if (m, kk) == (method, k)]
        lines.append(f"- {method}, k = {k}: {sum(p <= 0.05 for p in ps)} of {len(ps)} runs")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'summary.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
