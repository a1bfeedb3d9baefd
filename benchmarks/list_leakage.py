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
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from _common import command_line
from recbole.utils import init_seed

from recbole_attrcloak import compat
from recbole_attrcloak.audit.list_attack import list_leakage
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
    "p_two_sided",
    "n_users",
)


def models(run: Path) -> Iterator[tuple[str, str, int, str, Path]]:
    """(dataset, model, seed, method, checkpoint) of every original and AttrCloak model of the
    run folder's trials (each original once)."""
    seen = set()
    for report_file in sorted((run / "work" / "trials").glob("*/report.json")):
        report = json.loads(report_file.read_text())
        if report.get("method") != "attrcloak":
            continue
        original = Path(report["checkpoint"]["original"])
        info = json.loads(original.with_suffix(".json").read_text())
        key = (report["dataset"], report["model"], int(info["seed"]))
        if key not in seen:
            seen.add(key)
            yield (*key, "original", original)
        unlearned = report_file.parent / Path(report["checkpoint"]["checkpoint"]).name
        yield (*key, f"attrcloak-{report['unlearning']['mode']}", unlearned)


def top_lists(model: str, dataset: str, checkpoint: Path, ks: Sequence[int], work: Path):
    """Every user's top-max(ks) items (training items masked) and the attributes' codes, both
    without RecBole's padding user."""
    config, ckpt = _load_config(model, dataset, [], {"show_progress": False}, str(checkpoint))
    init_seed(config["seed"], config["reproducibility"])  # RecBole's split: the training one
    ctx, _ = load_context(config, ckpt, str(checkpoint), work)
    with torch.no_grad():
        history = training_history(ctx.train_data, ctx.model)
        items, _ = original_top_items(ctx.model, max(ks), history)
    codes = {name: labels.codes[1:] for name, labels in ctx.attributes.items()}
    return items.cpu().numpy(), codes


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
        given = re.search(r"--permutations[ =](\d+)", header[0]) if header else None
        args.permutations = int(given.group(1)) if given else args.permutations
        summarise(args.out, rows, header, args.permutations)
        return
    if args.run is None:
        parser.error("--run is required unless --summarise-only")
    compat.apply_recbole_shims()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for dataset, model, seed, method, checkpoint in models(args.run):
            items, codes = top_lists(model, dataset, checkpoint, args.k, Path(work))
            for k in args.k:
                for name, y in codes.items():
                    r = list_leakage(
                        items[:, :k], y, n_permutations=args.permutations, seed=args.seed
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
                            "p_two_sided": round(r.p_value_two_sided, 4),
                            "n_users": r.n_users,
                        }
                    )
            print(f"{dataset} {model} {seed} {method}: done", file=sys.stderr, flush=True)
    header = [
        f"Generated by `{command_line()}` on "
        f"{datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; do not edit by hand.",
        machine_line(machine()),
    ]
    write(args.out, rows, header, args)


def write(out: Path, rows: list[dict], header: list[str], args: argparse.Namespace) -> None:
    """``lists.csv`` and ``summary.md``."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "lists.csv").open("w", newline="") as handle:
        handle.writelines(f"# {line}\n" for line in header)
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    summarise(out, rows, header, args.permutations)


def summarise(out: Path, rows: list[dict], header: list[str], permutations: int) -> None:
    """``summary.md``: per backbone, method and k, the runs whose lists leak each attribute,
    and per method and k the runs whose lists leak some attribute (familywise)."""
    lines = ["# Recommendation lists against their permutation null", ""]
    lines += [line + "  " for line in header]
    lines += [
        "",
        f"The list attacker (`recbole_attrcloak/audit/list_attack.py`): each user's top-k items "
        f"(training items masked), kernel ridge on the shared items, 5-fold, balanced accuracy "
        f"against {permutations} label permutations. A cell: runs with two-sided p ≤ 0.05 "
        "of those run, and the mean z (null standard deviations) over them.",
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
