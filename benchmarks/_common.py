"""Shared by the benchmark scripts: their options, the datasets, and running the planned
(dataset, model, seed, method) runs as a Ray Tune sweep with ``recbole_attrcloak.tune``.

A run folder (``--out``) holds ``work/``, the sweep's work folder (one folder per training
group and per defence, ``sweep.json``), and ``run.json``, one entry per invocation (command,
machine, settings, job counts). Running the same command again resumes; ``--summarise-only``
rebuilds the results from the folder on any machine. Tables: ``_tables.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _data import DATASETS
from _originals import check_sources

from recbole_attrcloak.defences import CATALOGUE as METHODS
from recbole_attrcloak.provenance import machine, machine_line
from recbole_attrcloak.tune import load_spec
from recbole_attrcloak.tune.results import job_rows
from recbole_attrcloak.tune.runner import run_trials
from recbole_attrcloak.tune.spec import (
    parse_yaml,
)
from recbole_attrcloak.tune.workdir import recorded_trials

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "default.yaml"
# Evaluation batching only: RecBole scores NeuMF (no full_sort_predict) with eval_batch_size //
# n_items users per batch, one user per batch on ml-1m with the default 4096.
MODEL_OVERRIDES: dict[str, dict[str, Any]] = {"NeuMF": {"eval_batch_size": 524288}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark script shares (README: "How the scripts run")."""
    add, listed = parser.add_argument, {"action": "append", "default": []}
    add("--workers", type=int, help="trials at a time (Tune's max_concurrent_trials)")
    add("--cpus_per_trial", type=float, default=1.0, help="CPUs Ray reserves per trial")
    add("--gpu", type=float, nargs="?", const=-1.0, default=0.0, help="GPUs per trial")
    add("--deadline", type=float, help="seconds after which no trial starts (default: none)")
    add("--grace", type=float, default=60, help="then seconds until running trials stop")
    add("--ray_address", help="join this Ray cluster (default: a local Ray on this machine)")
    add("--out", type=Path, help="run folder (resumable: run the same command again)")
    add("--results", type=Path, help="where the Markdown/CSV/PNG go")
    add("--summarise-only", dest="summarise_only", type=Path, metavar="RUN_DIR")
    add("--data_root", type=Path, default=REPO / "outputs" / "data", help="converted datasets")
    add("--source", metavar="DATASET=PATH", help="a release to convert if missing", **listed)
    add("--epochs", type=_epochs, default={}, metavar="N|DATASET=N,...", help="epoch caps")
    add("--set", metavar="KEY=VALUE", help="a config key for every run", **listed)
    add("--attributes", help="comma-separated attributes (default: the dataset's own)")
    add("--audit", choices=("quick", "full"), help="audit preset (default full; --quick: quick)")
    add("--originals", type=Path, metavar="DIR", help="original checkpoints to load, not train")


def finish_arguments(args: argparse.Namespace, name: str, quick_epochs: int = 5) -> None:
    """Defaults that depend on --quick: the run folder outputs/bench/NAME (NAME-quick), the
    results benchmarks/results/NAME (quick: RUN/results), the epoch cap (quick: 5), and the
    README block, rewritten only when the results go to their default folder."""
    if args.quick and not args.epochs:
        args.epochs = {"*": quick_epochs}
    args.audit = args.audit or ("quick" if args.quick else "full")
    if args.originals is not None and not args.originals.is_dir():
        raise SystemExit(_bad(f"--originals {args.originals} is not a folder"))
    args.out = args.out or REPO / "outputs" / "bench" / (f"{name}-quick" if args.quick else name)
    default = REPO / "benchmarks" / "results" / name
    args.results = args.results or (args.out / "results" if args.quick else default)
    args.readme = REPO / "benchmarks" / "README.md" if args.results.resolve() == default else None
    if args.gpu < 0:
        args.gpu = 1.0 / (args.workers or 1)


def _bad(message: str) -> int:
    """Bad input: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def split_list(text: str) -> list[str]:
    """A comma-separated option as a list, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _epochs(text: str) -> dict[str, int]:
    if "=" not in text:
        return {"*": int(text)}
    return {k.strip(): int(v) for k, v in (part.split("=", 1) for part in text.split(","))}


def sources(items: Sequence[str]) -> dict[str, Path]:
    """``--source DATASET=PATH`` values as a mapping."""
    pairs = [item.partition("=") for item in items]
    if any(not sep for _, sep, _ in pairs):
        raise ValueError(f"--source expects DATASET=PATH, got {items}")
    return {name: Path(path) for name, _, path in pairs}


def run_config(args: argparse.Namespace, model: str, dataset: str, seed: int) -> dict[str, Any]:
    """Settings shared by every run of one (dataset, model, seed): the same config, data, split
    seed and audit, so that every method sees the original model's split."""
    spec = DATASETS.get(dataset)
    attributes = split_list(args.attributes or "") or list(spec.attributes if spec else ())
    config = {"model": model, "dataset": dataset, "seed": seed, "audit_seed": seed}
    config |= {"audit": args.audit, "sensitive_attributes": attributes, "show_progress": False}
    epochs = args.epochs.get(dataset, args.epochs.get("*"))
    config |= {"epochs": epochs} if epochs is not None else {}
    config |= MODEL_OVERRIDES.get(model, {})
    return config | {k: parse_yaml(v) for k, _, v in (s.partition("=") for s in args.set)}


def method_config(method: str) -> dict[str, Any]:
    """A catalogue method's own keys (``unlearn`` and the variant's)."""
    return dict(METHODS[method].config)


def run_or_locate(
    args: argparse.Namespace,
    plan: Callable[[argparse.Namespace], tuple[list[dict[str, Any]], dict[str, Any]]],
    name: str,
) -> Path:
    """The run folder to summarise: ``--summarise-only RUN_DIR`` as it is, or ``--out`` after
    running the planned trials (configs, in priority order) into it as one Tune sweep, seed by
    seed, each original model trained once and every defence run on its checkpoint."""
    if args.summarise_only is not None:
        if not args.summarise_only.is_dir():
            raise ValueError(f"--summarise-only {args.summarise_only} is not a folder")
        return args.summarise_only
    configs, settings = plan(args)
    resources = {"cpu": args.cpus_per_trial, "gpu": args.gpu}
    spec = load_spec(
        {"name": name, "config_files": [str(DEFAULT_CONFIG)], "search": configs}
        | {"resources_per_trial": resources, "max_concurrent_trials": args.workers}
        | {"waves": "seed", "kfold_check": False}
    )
    work = args.out / "work"
    check_sources(work, spec.trials)
    before = {r["folder"] for r in _jobs(work) if r["status"] == "ok"}
    started, tic = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), time.monotonic()
    options = {"deadline_s": args.deadline, "grace_s": args.grace}
    run_trials(spec, work, ray_address=args.ray_address, resume=True, **options)
    counts: dict[str, int] = {}
    for row in _jobs(work, spec.trials):
        outcome = "cached" if row["folder"] in before else row["status"]
        counts[outcome] = counts.get(outcome, 0) + 1
    entry = {"command": command_line(), "started": started, "wall_s": time.monotonic() - tic}
    entry |= {"machine": machine(), "workers": args.workers, "resources": resources}
    entry |= {"counts": counts, "settings": settings}
    path = args.out / "run.json"
    runs = json.loads(path.read_text()) if path.is_file() else []
    path.write_text(json.dumps([*runs, entry], indent=2, default=str) + "\n")
    print(f"jobs: {counts}", flush=True)
    return args.out


def _jobs(work: Path, trials: Sequence | None = None) -> list[dict[str, Any]]:
    return job_rows(work, recorded_trials(work) if trials is None else trials)


def command_line() -> str:
    """This process's command, as typed (relative to the repository root when inside it)."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return shlex.join(["python", str(shown), *sys.argv[1:]])


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """``rows`` (dicts with the same keys, in order) as a CSV at ``path``, its folder made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run_header() -> str:
    """The date (UTC) and this machine, as a results file's Markdown twin states them."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"Date: {now}. {machine_line(machine())}"


def study_parser(doc: str, name: str, originals: bool = True) -> argparse.ArgumentParser:
    """The options of a per-seed study (``speed.py``, ``draw_noise.py``, ``dd_pairs.py``):
    ``--originals`` (when it reads checkpoints), ``--model``, ``--seeds`` and ``--out``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if originals:
        parser.add_argument(
            "--originals", required=True, help="folder of <model>-ml-100k-<seed>.pth"
        )
    parser.add_argument("--model", default="BPR")
    parser.add_argument("--seeds", default="2020,2021,2022")
    parser.add_argument("--out", required=True, help=f"folder for {name}.csv and {name}.md")
    return parser


def run_study(
    seeds: str,
    one_seed: Callable[[int, Path], list[dict[str, Any]]],
    out: Path,
    name: str,
    markdown: Callable[[list[dict[str, Any]], str, str], str],
) -> int:
    """Each seed's rows (``one_seed(seed, work)``, a fresh temporary folder each), written to
    ``out/<name>.csv`` and rendered by ``markdown(rows, command, header)`` to ``<name>.md``
    (printed too); the header states the date, machine and torch threads."""
    import tempfile

    import torch

    from recbole_attrcloak import compat

    if hasattr(compat, "apply_runtime_shims"):
        compat.apply_runtime_shims()
    command = command_line()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in seeds.split(",")):
            rows += one_seed(seed, Path(tmp) / str(seed))
    write_rows(out / f"{name}.csv", rows)
    header = f"{run_header()} torch threads: {torch.get_num_threads()}."
    text = markdown(rows, command, header)
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def study_head(title: str, command: str, header: str, note: str) -> list[str]:
    """The opening lines of a study's Markdown twin: its title, command, date and machine, and
    what its cells hold."""
    return [f"# {title}", "", f"Command: `{command}`. {header}", "", note, ""]
