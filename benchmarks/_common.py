"""Shared by the benchmark scripts: the methods and datasets, a job pool that runs
``run_recbole_au.py`` jobs as subprocesses, the machine/command header, and the collection of
the jobs' report.json files.

No Ray here: the full runs happen on machines without it. Each job writes its own folder
(``report.json`` when it succeeded), so a run can be resumed, cut short by a deadline, or
summarised on another machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "run_recbole_au.py"
DEFAULT_CONFIG = REPO / "configs" / "default.yaml"
README = REPO / "benchmarks" / "README.md"
REPORT, JOB, LOG, ERROR = "report.json", "job.json", "job.log", "error.txt"

# Method name → run_recbole_au.py arguments. "original" trains the model every other method of
# the same (dataset, model, seed) loads with --checkpoint.
METHODS: dict[str, list[str]] = {
    "original": ["--unlearn", "none"],
    "attrcloak-dd": ["--unlearn", "attrcloak", "--au_mode", "dd"],
    "attrcloak-df": ["--unlearn", "attrcloak", "--au_mode", "df"],
    "rap": ["--unlearn", "rap"],
    "blurme": ["--unlearn", "blurme"],
    "ldp": ["--unlearn", "ldp"],
    "u2u": ["--unlearn", "u2u"],
    "d2d": ["--unlearn", "d2d"],
}
LABELS = {
    "original": "Original",
    "attrcloak-dd": "AttrCloak-DD",
    "attrcloak-df": "AttrCloak-DF",
    "rap": "RAP",
    "blurme": "BlurMe",
    "ldp": "LDP-SH",
    "u2u": "U2U-R",
    "d2d": "D2D-R",
}
RETRAINING = frozenset({"rap", "blurme", "ldp"})  # train a new model from scratch
BPR_ONLY = frozenset({"rap"})  # RAP is implemented as RAPBPR; other backbones are refused
ATTACKERS = ("mlp", "xgboost")
ATTACKER_LABELS = {"mlp": "MLP", "xgboost": "XGB"}
UTILITY = ("ndcg@5", "ndcg@10", "hit@5", "hit@10")
# Evaluation batching only: RecBole scores NeuMF (no full_sort_predict) with eval_batch_size //
# n_items users per batch, one user per batch on ml-1m with the default 4096.
MODEL_OVERRIDES = {"NeuMF": ["--eval_batch_size=524288"]}


@dataclass(frozen=True)
class DatasetSpec:
    """The audited attributes of a dataset and, where its atomic files must be made first,
    the name of its release for ``recbole-attrcloak-convert`` and a default source folder."""

    attributes: tuple[str, ...]
    converter: str | None = None
    source: Path | None = None


_SHARED = REPO.parent / "shared" / "data"
DATASETS = {
    "ml-100k": DatasetSpec(("gender", "age", "occupation")),
    "ml-1m": DatasetSpec(("gender", "age", "occupation"), "ml-1m", _SHARED / "ml-1m"),
    "lastfm-1k": DatasetSpec(("gender", "age", "continent"), "lastfm-1k", _SHARED / "lastfm-1k"),
    "modcloth-mb": DatasetSpec(("body_shape",), "modcloth"),
}


class DataUnavailable(RuntimeError):
    """A dataset's atomic files are missing and cannot be made here."""


def prepare_data(name: str, data_root: Path, source: Path | None = None) -> list[str]:
    """The ``--data_path`` argument for ``name``, converting its original release into
    ``data_root`` first when the atomic files are missing (ml-100k ships with RecBole)."""
    if name == "ml-100k":
        return []
    data_root = data_root.resolve()
    inter = data_root / name / f"{name}.inter"
    spec = DATASETS.get(name)
    source = source or (spec.source if spec else None)
    if not inter.is_file():
        if spec is None or spec.converter is None or source is None or not source.exists():
            raise DataUnavailable(
                f"no {inter} and no original release to convert (pass --source {name}=PATH)"
            )
        argv = [sys.executable, "-m", "recbole_attrcloak.data.convert", spec.converter]
        done = subprocess.run(
            [*argv, str(source.resolve()), str(data_root), "--name", name],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise DataUnavailable(f"converting {source} failed: {done.stderr.strip()}")
        print(done.stdout.strip(), flush=True)
    return [f"--data_path={data_root}"]


@dataclass
class Job:
    """One ``run_recbole_au.py`` run in ``RUN_DIR/name``. ``needs``: the job whose trained
    checkpoint this one loads with --checkpoint (it starts only after that one succeeded)."""

    name: str
    args: list[str]
    meta: dict[str, Any]
    needs: str | None = None


def base_args(
    model: str,
    dataset: str,
    seed: int,
    attributes: Sequence[str],
    data_args: Sequence[str],
    gpu: bool,
    epochs: int | None,
    extra: Sequence[str] = (),
) -> list[str]:
    """Arguments shared by every job of one (dataset, model, seed): the same config, data,
    split seed and audit, so the methods all see the original model's split."""
    args = ["-m", model, "-d", dataset, "--config_files", str(DEFAULT_CONFIG)]
    args += ["--audit", "quick", "--attributes", ",".join(attributes), *data_args]
    args += [f"--seed={seed}", f"--audit_seed={seed}", "--show_progress=False"]
    args += ["--use_gpu=True", "--gpu_id=0"] if gpu else ["--use_gpu=False"]
    if epochs is not None:
        args.append(f"--epochs={epochs}")
    return args + MODEL_OVERRIDES.get(model, []) + list(extra)


def plan_group(
    prefix: str, meta: Mapping[str, Any], args: Sequence[str], methods: Iterable[str]
) -> list[Job]:
    """The original model's job and one job per other method loading its checkpoint."""
    original = Job(
        f"{prefix}/original", [*args, *METHODS["original"]], {**meta, "method": "original"}
    )
    jobs = [original]
    for method in methods:
        if method != "original":
            jobs.append(
                Job(
                    f"{prefix}/{method}",
                    [*args, *METHODS[method]],
                    {**meta, "method": method},
                    needs=original.name,
                )
            )
    return jobs


# --- the job pool -------------------------------------------------------------------------


@dataclass
class PoolSettings:
    """``deadline``: seconds after the start after which no job starts; jobs still running
    ``grace`` seconds after it are stopped. ``timeout``: the longest one job may run."""

    workers: int = 1
    timeout: float = 3600.0
    deadline: float | None = None
    grace: float = 60.0


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    started: float
    log: Any


def _job_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(key, "1")  # the pool's workers share the cores
    return env


def run_jobs(jobs: Sequence[Job], run_dir: Path, settings: PoolSettings) -> dict[str, str]:
    """Run ``jobs`` (list order is priority order) with at most ``settings.workers`` at a time;
    return each job's status: ok, cached (report already there), failed, timeout, skipped
    (its checkpoint's job did not succeed) or not started (deadline)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = _job_env()
    start = time.monotonic()
    status: dict[str, str] = {}
    pending = list(jobs)
    running: list[_Running] = []

    def say(text: str) -> None:
        print(f"[{time.monotonic() - start:7.1f}s] {text}", flush=True)

    try:
        while pending or running:
            now = time.monotonic() - start
            for item in list(running):
                outcome = _poll(item, run_dir, settings, now, start)
                if outcome is not None:
                    running.remove(item)
                    status[item.job.name] = outcome
                    say(f"{outcome:7s} {item.job.name} ({time.monotonic() - item.started:.0f} s)")
                    if outcome != "ok":
                        say(f"        {_tail(run_dir / item.job.name / ERROR, 1)}")
            launchable = settings.deadline is None or now < settings.deadline
            for job in list(pending):
                need = status.get(job.needs) if job.needs else "ok"
                if (run_dir / job.name / REPORT).is_file():
                    status[job.name] = "cached"
                    say(f"cached  {job.name}")
                elif need is None:
                    continue  # its checkpoint's job has not ended yet
                elif need not in ("ok", "cached"):
                    status[job.name] = "skipped"
                elif launchable and len(running) < settings.workers:
                    running.append(_launch(job, run_dir, env))
                    say(f"start   {job.name} ({len(running)} running)")
                else:
                    continue
                pending.remove(job)
            if not launchable and not running:
                break
            time.sleep(0.2)
    finally:
        for item in running:
            _stop(item.proc)
            item.log.close()
    for job in pending:
        status.setdefault(job.name, "not started")
    return status


def _launch(job: Job, run_dir: Path, env: Mapping[str, str]) -> _Running:
    folder = run_dir / job.name
    shutil.rmtree(folder, ignore_errors=True)  # a failed earlier attempt's partial files
    folder.mkdir(parents=True)
    argv = [sys.executable, str(CLI), *job.args, "--output_dir", "."]
    if job.needs:
        report = json.loads((run_dir / job.needs / REPORT).read_text())
        checkpoint = (run_dir / job.needs / report["checkpoint"]["original"]).resolve()
        argv += ["--checkpoint", str(checkpoint)]
        argv += ["--original_report", str((run_dir / job.needs / REPORT).resolve())]
    (folder / JOB).write_text(json.dumps({"meta": job.meta, "argv": argv[1:]}, indent=2) + "\n")
    log = open(folder / LOG, "wb")  # closed when the job ends
    # A session of its own: a timeout stops the job's whole process group (audit workers too).
    proc = subprocess.Popen(
        argv,
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(env),
        start_new_session=True,
    )
    return _Running(job, proc, time.monotonic(), log)


def _poll(
    item: _Running, run_dir: Path, settings: PoolSettings, now: float, start: float
) -> str | None:
    """The job's status once it has ended (or been stopped), else None."""
    folder = run_dir / item.job.name
    elapsed = time.monotonic() - item.started
    late = settings.deadline is not None and now > settings.deadline + settings.grace
    if item.proc.poll() is None:
        if elapsed <= settings.timeout and not late:
            return None
        _stop(item.proc)
        item.log.close()
        why = "timeout" if elapsed > settings.timeout else "deadline"
        reason = f"stopped after {elapsed:.0f} s ({why})"
        outcome = "timeout"
    else:
        item.log.close()
        if item.proc.returncode == 0 and (folder / REPORT).is_file():
            outcome, reason = "ok", ""
        else:
            outcome, reason = "failed", f"exit code {item.proc.returncode}"
    record = json.loads((folder / JOB).read_text())
    record |= {"status": outcome, "wall_s": elapsed, "started_s": item.started - start}
    (folder / JOB).write_text(json.dumps(record, indent=2) + "\n")
    if outcome != "ok":
        (folder / ERROR).write_text(f"{reason}\n{_tail(folder / LOG, 40)}\n")
    return outcome


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the job's own process group, SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int) -> str:
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
    return "\n".join(text[-lines:])


# --- machine, command and run record ------------------------------------------------------


def machine() -> dict[str, Any]:
    """Where the jobs run: usable cores, CPU model, GPUs, memory and software versions."""
    info: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)), "cpu": platform.processor()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        info["cpu"] = names[0].strip() if names else info["cpu"]
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        kib = re.search(r"^MemTotal:\s*(\d+)", meminfo.read_text(), re.M)
        info["memory_gib"] = round(int(kib.group(1)) / 2**20) if kib else None
    info["gpu"] = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]) or "none"
    info["python"] = platform.python_version()
    for package in ("torch", "recbole", "xgboost-cpu", "xgboost", "scikit-learn"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    commit = _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    info["commit"] = f"{commit}{' (with uncommitted changes)' if dirty else ''}" or "unknown"
    info["threads_per_job"] = os.environ.get("OMP_NUM_THREADS", "1")
    return info


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return " / ".join(done.stdout.split("\n")).strip(" /") if done.returncode == 0 else ""


def command_line() -> str:
    """This process's command, as typed (relative to the repository root when inside it)."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return shlex.join(["python", str(shown), *sys.argv[1:]])


def now() -> str:
    """The current UTC time, as written in the results."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def record_invocation(run_dir: Path, entry: Mapping[str, Any]) -> None:
    """Append one invocation (command, machine, times, job counts) to RUN_DIR/run.json."""
    path = run_dir / "run.json"
    runs = json.loads(path.read_text()) if path.is_file() else []
    path.write_text(json.dumps([*runs, dict(entry)], indent=2) + "\n")


def invocations(run_dir: Path) -> list[dict[str, Any]]:
    """The invocations recorded in RUN_DIR/run.json, oldest first."""
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.is_file() else []


def header(title: str, run_dir: Path, summarised_by: str) -> list[str]:
    """The Markdown top of a result file: the exact commands, dates and machines."""
    lines = [
        f"# {title}",
        "",
        f"Generated by `{summarised_by}` on {now()}; do not edit by hand.",
        "",
    ]
    runs = invocations(run_dir)
    if not runs:
        lines += ["No record of the run that made these jobs (no run.json).", ""]
    for i, run in enumerate(runs, 1):
        m = run["machine"]
        counts = ", ".join(f"{v} {k}" for k, v in sorted(run["counts"].items()))
        lines += [
            f"Run {i} of {len(runs)}, started {run['started']}, wall {run['wall_s']:.0f} s "
            f"({counts}):",
            "",
            f"    {run['command']}",
            "",
            f"Machine: {m['cores']} cores ({m['cpu']}), GPU: {m['gpu']}, "
            f"{m.get('memory_gib', '?')} GiB RAM; {run['workers']} parallel jobs, "
            f"{m['threads_per_job']} thread(s) each, device {run['device']}; Python {m['python']}, "
            f"torch {m.get('torch', '?')}, RecBole {m.get('recbole', '?')}; commit {m['commit']}.",
            "",
        ]
    return lines


# --- arguments shared by the scripts ------------------------------------------------------


def add_pool_arguments(parser: argparse.ArgumentParser) -> None:
    """--workers, --gpu, --timeout, --deadline, --grace, --out, --results, --summarise-only,
    --data_root, --source, --epochs and --set."""
    add = parser.add_argument
    add("--workers", type=int, default=1, help="jobs at a time (default 1)")
    add("--gpu", action="store_true", help="let RecBole use CUDA device 0 (default: CPU only)")
    add("--timeout", type=float, default=3600, help="seconds one job may run (default 3600)")
    add("--deadline", type=float, help="seconds after which no job starts (default: none)")
    add(
        "--grace",
        type=float,
        default=60,
        help="jobs still running this long after the deadline are stopped",
    )
    add("--out", type=Path, help="run folder holding one folder per job (resumable)")
    add("--results", type=Path, help="where the Markdown/CSV/PNG go")
    add(
        "--summarise-only",
        dest="summarise_only",
        type=Path,
        metavar="RUN_DIR",
        help="run no job: summarise the report.json files under RUN_DIR",
    )
    add(
        "--data_root",
        type=Path,
        default=REPO / "outputs" / "data",
        help="RecBole data_path of the converted datasets (default outputs/data)",
    )
    add(
        "--source",
        action="append",
        default=[],
        metavar="DATASET=PATH",
        help="an original release to convert when DATASET's atomic files are missing "
        "(default for ml-1m: ../shared/data/ml-1m)",
    )
    add(
        "--epochs",
        type=_epochs,
        default={},
        metavar="N|DATASET=N,...",
        help="cap on training epochs (early stopping still applies), for all or per dataset",
    )
    add(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a RecBole/recbole-attrcloak key for every job, e.g. --set embedding_size=64",
    )
    add("--attributes", help="comma-separated attributes (default: the dataset's own)")


def finish_arguments(args: argparse.Namespace, name: str, quick_epochs: int = 5) -> None:
    """Defaults that depend on --quick: the run folder outputs/bench/NAME (NAME-quick), the
    results benchmarks/results/NAME (quick: RUN/results), the epoch cap (quick: 5), and the
    README block, rewritten only when the results go to their default folder."""
    if args.quick and not args.epochs:
        args.epochs = {"*": quick_epochs}
    args.out = args.out or REPO / "outputs" / "bench" / (f"{name}-quick" if args.quick else name)
    default = REPO / "benchmarks" / "results" / name
    args.results = args.results or (args.out / "results" if args.quick else default)
    args.readme = README if args.results.resolve() == default else None


def split_list(text: str) -> list[str]:
    """A comma-separated option as a list, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _epochs(text: str) -> dict[str, int]:
    if "=" not in text:
        return {"*": int(text)}
    return {k.strip(): int(v) for k, v in (part.split("=", 1) for part in text.split(","))}


def epochs_text(caps: Mapping[str, int]) -> str:
    """``--epochs`` as written in the results, e.g. "ml-1m: 30" or "none"."""
    return ", ".join(f"{'all' if k == '*' else k}: {v}" for k, v in caps.items()) or "none"


def epochs_for(caps: Mapping[str, int], dataset: str) -> int | None:
    """The epoch cap of ``dataset`` (its own, else the global one), or None."""
    return caps.get(dataset, caps.get("*"))


def sources(items: Sequence[str]) -> dict[str, Path]:
    """``--source DATASET=PATH`` values as a mapping."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--source expects DATASET=PATH, got {item!r}")
        out[name] = Path(path)
    return out


def attributes_for(dataset: str, override: str | None) -> tuple[str, ...]:
    """The attributes to audit: ``--attributes``, else the dataset's own."""
    if override:
        return tuple(a.strip() for a in override.split(",") if a.strip())
    spec = DATASETS.get(dataset)
    return spec.attributes if spec else ("gender", "age", "occupation")


def execute(
    jobs: Sequence[Job], run_dir: Path, args: argparse.Namespace, settings: Mapping[str, Any]
) -> dict[str, str]:
    """Run the jobs, then record the invocation and the plan in the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = [{"name": j.name, "meta": j.meta, "needs": j.needs} for j in jobs]
    (run_dir / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    started, tic = now(), time.monotonic()
    status = run_jobs(
        jobs,
        run_dir,
        PoolSettings(args.workers, args.timeout, args.deadline, args.grace),
    )
    counts: dict[str, int] = {}
    for value in status.values():
        counts[value] = counts.get(value, 0) + 1
    record_invocation(
        run_dir,
        {
            "command": command_line(),
            "started": started,
            "wall_s": time.monotonic() - tic,
            "machine": machine(),
            "workers": args.workers,
            "device": "cuda:0" if args.gpu else "cpu",
            "counts": counts,
            "settings": dict(settings),
        },
    )
    print(f"jobs: {counts}", flush=True)
    return status


# --- results ------------------------------------------------------------------------------


def plan(run_dir: Path) -> list[dict[str, Any]]:
    """The jobs the run folder's latest invocation planned (plan.json)."""
    path = run_dir / "plan.json"
    return json.loads(path.read_text()) if path.is_file() else []


def job_table(run_dir: Path) -> pd.DataFrame:
    """One row per job found under ``run_dir`` or in its plan: meta, status, wall seconds and,
    for failures, the last line of the error."""
    rows: dict[str, dict[str, Any]] = {
        j["name"]: {"job": j["name"], **j["meta"]} for j in plan(run_dir)
    }
    for path in sorted(run_dir.glob(f"**/{JOB}")):
        name = str(path.parent.relative_to(run_dir))
        record = json.loads(path.read_text())
        row = rows.setdefault(name, {"job": name, **record["meta"]})
        row["wall_s"] = record.get("wall_s")
        row["status"] = (
            "ok" if (path.parent / REPORT).is_file() else record.get("status", "interrupted")
        )
        if row["status"] != "ok":
            row["error"] = _tail(path.parent / ERROR, 1)
    for row in rows.values():
        row.setdefault("status", "not started")
    return pd.DataFrame(list(rows.values()))


def load_reports(run_dir: Path) -> pd.DataFrame:
    """One row per finished job: its meta (dataset, model, seed, method, …) plus the
    numbers of the stage it stands for (the original job: the trained model; any other job:
    the model after its defence)."""
    rows = []
    for path in sorted(run_dir.glob(f"**/{REPORT}")):
        job_file = path.parent / JOB
        if not job_file.is_file():
            continue
        meta = json.loads(job_file.read_text())["meta"]
        rows.append({"job": str(path.parent.relative_to(run_dir)), **meta, **flatten(path)})
    return pd.DataFrame(rows)


def flatten(path: Path) -> dict[str, Any]:
    """A report.json as flat columns: ``ATTR/ATTACKER/METRIC`` (shadow protocol means),
    ``ATTR/chance``, ``ATTR/majority``, the test utility, retention, seconds and epochs."""
    report = json.loads(path.read_text())
    stage = report["stages"].get("unlearned", report["stages"]["original"])
    row: dict[str, Any] = {k: stage["utility"].get(k, math.nan) for k in UTILITY}
    for attr, entry in stage["privacy"].items():
        row[f"{attr}/chance"] = entry["chance"]
        row[f"{attr}/majority"] = entry["majority"]
        for attacker in ATTACKERS:
            for metric in ("balanced_accuracy", "accuracy"):
                row[f"{attr}/{attacker}/{metric}"] = entry[attacker][metric]["mean"]
    row["retention@ndcg@10"] = report.get("retention", {}).get("ndcg@10", 1.0)
    seconds = report["seconds"]
    row["train_s"] = seconds.get("train", math.nan)
    row["defence_s"] = seconds.get("unlearn", math.nan)
    row["seconds"] = seconds.get("unlearn", row["train_s"])  # the job's own work
    unlearning = report.get("unlearning", {})
    row["steps"] = unlearning.get("steps", math.nan)
    row["epochs"] = unlearning.get("epochs", _epochs_run(path.parent / "recbole.log"))
    return row


def _epochs_run(log: Path) -> float:
    """Training epochs in a job's RecBole log (for the original model's training)."""
    if not log.is_file():
        return math.nan
    count = len(re.findall(r"epoch \d+ training \[time", log.read_text(errors="replace")))
    return count or math.nan


def attributes_in(frame: pd.DataFrame) -> list[str]:
    """The audited attributes, in the order they appear in the columns."""
    return list(dict.fromkeys(c.split("/")[0] for c in frame.columns if c.endswith("/chance")))


def gap_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row, ``|balanced accuracy − chance|`` per attribute and attacker (``gap/ATTR/ATT``)
    and their maximum (``max_gap``): far below chance leaks too (flip the guesses)."""
    gaps = {}
    for attr in attributes_in(frame):
        for attacker in ATTACKERS:
            column = f"{attr}/{attacker}/balanced_accuracy"
            if column in frame:
                gaps[f"gap/{attr}/{attacker}"] = (frame[column] - frame[f"{attr}/chance"]).abs()
    out = pd.DataFrame(gaps, index=frame.index)
    out["max_gap"] = out.max(axis=1) if gaps else math.nan
    return out


def aggregate(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Mean, std and count over seeds of every numeric column, grouped by ``keys``; columns
    ``COL``, ``COL:std`` and ``n``."""
    numeric = [
        c for c in frame.columns if c not in keys and pd.api.types.is_numeric_dtype(frame[c])
    ]
    numeric = [c for c in numeric if c != "seed"]
    grouped = frame.groupby(list(keys), sort=False)[numeric]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = mean.join(std.add_suffix(":std"))
    out["n"] = frame.groupby(list(keys), sort=False).size()
    return out.reset_index()


def order_rows(frame: pd.DataFrame, orders: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """``frame`` sorted by the given value orders of its columns (e.g. methods as in METHODS)."""
    keys = {c: frame[c].map({v: i for i, v in enumerate(o)}) for c, o in orders.items()}
    ranks = pd.DataFrame(keys).fillna(len(frame))
    return frame.loc[ranks.sort_values(list(orders), kind="stable").index].reset_index(drop=True)


def privacy_header(attributes: Sequence[str]) -> list[str]:
    """Column names for one attribute × attacker cell each."""
    return [f"{a} {ATTACKER_LABELS[t]}" for a in attributes for t in ATTACKERS]


def privacy_cells(row: Mapping[str, Any], attributes: Sequence[str], metric: str) -> list[str]:
    """``metric`` (balanced_accuracy or accuracy) as mean ± std per attribute and attacker."""
    return [
        pm(row[f"{a}/{t}/{metric}"], row[f"{a}/{t}/{metric}:std"])
        for a in attributes
        for t in ATTACKERS
    ]


def job_counts(jobs: pd.DataFrame) -> str:
    """E.g. ``"2 failed, 40 ok"`` from job_table's status column."""
    counts = jobs["status"].value_counts().to_dict() if not jobs.empty else {}
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"


def readme_link(results: Path) -> str:
    """``results`` as a link from benchmarks/README.md."""
    results = results.resolve()
    return str(
        results.relative_to(README.parent) if results.is_relative_to(README.parent) else results
    )


def pm(mean: float, std: float = math.nan, digits: int = 3) -> str:
    """``mean ± std`` (the std left out when there is one seed), ``–`` when missing."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table, followed by a blank line."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def write_text(path: Path, text: str) -> None:
    """Write a result file and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", flush=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a result table as CSV and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.6g")
    print(f"wrote {path}", flush=True)


def update_readme(readme: Path, key: str, text: str) -> None:
    """Replace the block between ``<!-- BEGIN key -->`` and ``<!-- END key -->`` in
    ``readme`` (the script-written part of benchmarks/README.md)."""
    begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
    content = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    if begin not in content or end not in content:
        print(f"{readme} has no {begin} … {end} block; not updated", flush=True)
        return
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_text(readme, f"{head}{begin}\n{text.rstrip()}\n{end}{tail}")


def settings_of(run_dir: Path) -> dict[str, Any]:
    """The settings of the run folder's invocations merged (empty when there is none): lists
    joined in order of first appearance, mappings updated, other values the latest. A folder
    filled by several commands (say ml-100k on one machine, ml-1m on another) then summarises
    all its datasets, models and seeds."""
    merged: dict[str, Any] = {}
    for run in invocations(run_dir):
        for key, value in run["settings"].items():
            before = merged.get(key)
            if isinstance(value, list) and isinstance(before, list):
                merged[key] = list(dict.fromkeys([*before, *value]))
            elif isinstance(value, dict) and isinstance(before, dict):
                merged[key] = {**before, **value}
            else:
                merged[key] = value
    return merged


def run_or_locate(
    args: argparse.Namespace,
    plan_jobs: Callable[[argparse.Namespace], tuple[list[Job], dict[str, Any]]],
) -> Path:
    """The run folder to summarise: ``--summarise-only RUN_DIR`` as it is, or ``--out`` after
    running the planned jobs into it."""
    if args.summarise_only is not None:
        if not args.summarise_only.is_dir():
            raise SystemExit(f"error: {args.summarise_only} is not a folder")
        return args.summarise_only
    jobs, settings = plan_jobs(args)
    execute(jobs, args.out, args, settings)
    return args.out
