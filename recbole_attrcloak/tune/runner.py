"""Run a sweep on Ray Tune, wave by wave (one wave unless the spec names a ``waves`` key): train
each group's model once (``unlearn: none``, which also audits the original), then run each
trial of the wave on its group's checkpoint, reusing that audit when the trial audits the same
way. Last, the selected trial is rerun with a fresh k-fold audit (``kfold_check``).

Each job writes into its own folder of the work directory (``workdir``): ``report.json`` when
it finished, ``error.json`` when it raised. A job whose folder holds a report is never run
again, which is what ``resume`` relies on; anything else in a folder is a leftover and is
cleared first. A deadline stops starting jobs; Tune's time budget stops the running ones.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd

from recbole_attrcloak.quick_start import run
from recbole_attrcloak.tune import ray_compat
from recbole_attrcloak.tune.cluster import ray_session
from recbole_attrcloak.tune.results import after_stage, kfold_gaps, tune_metrics
from recbole_attrcloak.tune.spec import CHECKPOINT_KEY, METRICS, Spec, Trial, load_spec
from recbole_attrcloak.tune.summary import collect, select, write_outputs
from recbole_attrcloak.tune.workdir import (
    REPORT,
    check_folder,
    claim,
    clear,
    read_outcome,
    record_error,
    status,
    train_folder,
    trial_folder,
)

with warnings.catch_warnings():  # Ray 2.6 imports the deprecated pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    import ray
    from ray import tune
    from ray.tune import Callback


@dataclass
class SweepResult:
    """The trials table (trials.csv) and where the sweep's files are."""

    table: pd.DataFrame
    output_dir: Path
    work_dir: Path


@dataclass(frozen=True)
class Deadline:
    """No job starts after ``start`` (epoch seconds); jobs still running ``grace_s`` later are
    stopped (Tune's ``time_budget_s``). ``start`` None: no deadline."""

    start: float | None = None
    grace_s: float = 60.0

    def budget(self) -> float | None:
        """Seconds left for a Tuner, None without a deadline."""
        return None if self.start is None else self.start + self.grace_s - time.time()

    def passed(self) -> bool:
        """Whether jobs may no longer start."""
        return self.start is not None and time.time() > self.start


def output_folder(spec: Spec, output_dir: str | Path | None) -> Path:
    """Where trials.csv, pareto.csv, pareto.png and summary.md go."""
    return Path(output_dir or Path("outputs/sweeps") / spec.name).resolve()


def work_folder(spec: Spec, out: Path) -> Path:
    """Trial folders and checkpoints: the spec's ``work_dir``, else ``<output_dir>/work``."""
    return Path(spec.work_dir).resolve() if spec.work_dir else out / "work"


def run_sweep(
    spec: str | Path | Mapping[str, Any] | Spec,
    output_dir: str | Path | None = None,
    *,
    ray_address: str | None = None,
    resume: bool = False,
    overrides: Mapping[str, Any] = (),
    progress: bool = True,
    deadline_s: float | None = None,
    grace_s: float = 60.0,
) -> SweepResult:
    """Run every trial of ``spec`` and write trials.csv, pareto.csv, pareto.png and summary.md
    into ``output_dir`` (default ``outputs/sweeps/<name>``).

    ``overrides`` (config values for every trial) apply when ``spec`` is a path or a dict.
    Trial outputs and checkpoints go to the spec's ``work_dir`` (default ``output_dir/work``).
    A work directory that already holds results is refused unless ``resume``, which runs only
    the jobs without a report, and always when its results come from other code.
    ``ray_address`` (or ``RAY_ADDRESS``) joins a running cluster; otherwise a local Ray starts
    on this machine's cores, unless one is already initialised. ``deadline_s``: no job starts
    later than this many seconds from now; running jobs are stopped ``grace_s`` after it.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec, overrides)
    out = output_folder(spec, output_dir)
    work = work_folder(spec, out)
    options = {"ray_address": ray_address, "resume": resume, "progress": progress}
    seconds = run_trials(spec, work, deadline_s=deadline_s, grace_s=grace_s, **options)
    return SweepResult(write_outputs(spec, work, out, seconds), out, work)


def run_trials(
    spec: Spec,
    work: Path,
    *,
    ray_address: str | None = None,
    resume: bool = False,
    progress: bool = True,
    deadline_s: float | None = None,
    grace_s: float = 60.0,
) -> dict[str, float]:
    """Run every job of ``spec`` into the work folder ``work`` (run_sweep without its output
    files; the benchmark scripts summarise the folder themselves); return the seconds per
    phase."""
    deadline = Deadline(None if deadline_s is None else time.time() + deadline_s, grace_s)
    seconds = {"training": 0.0, "trials": 0.0}
    with ray_session(ray_address, spec.resources):
        claim(work, spec, resume)
        for wave in spec.wave_list():
            tic = time.perf_counter()
            _fit("train", _train_jobs(spec, wave, work, deadline), spec, work, progress, deadline)
            seconds["training"] += time.perf_counter() - tic
            tic = time.perf_counter()
            _fit("unlearn", _trial_jobs(spec, wave, work, deadline), spec, work, progress, deadline)
            seconds["trials"] += time.perf_counter() - tic
        if spec.kfold_check:
            tic = time.perf_counter()
            _fit("check", _check_jobs(spec, work, deadline), spec, work, progress, deadline)
            seconds["k-fold check"] = time.perf_counter() - tic
    return seconds


def _label(trial: Trial, keys: list[str], training: bool = False) -> str:
    config = trial.training_config() if training else trial.config
    hidden = ("unlearn", CHECKPOINT_KEY)
    shown = [f"{k}={config[k]}" for k in keys if k in config and k not in hidden]
    loads = "audit of checkpoint" if CHECKPOINT_KEY in config else "training"
    what = loads if training else config["unlearn"]
    return " ".join([trial.model, trial.dataset, what, *shown])


def _job(spec: Spec, trial: Trial, config: dict, folder: Path, deadline: Deadline) -> dict:
    """What one Tune trial runs: ``quick_start.run`` of ``config`` into ``folder``, with the
    audit's worker processes following the trial's CPUs; a ``checkpoint`` key of the config
    becomes the run's checkpoint (the model is loaded, not trained)."""
    config = dict(config)
    checkpoint = config.pop(CHECKPOINT_KEY, None)
    return {
        "model": trial.model,
        "dataset": trial.dataset,
        "config_files": list(spec.config_files),
        "config": config | {"audit_n_jobs": max(1, int(spec.resources["cpu"]))},
        "checkpoint": checkpoint,
        "output_dir": str(folder),
        "not_after": deadline.start,
    }


def _train_jobs(spec: Spec, wave: list[Trial], work: Path, deadline: Deadline) -> dict:
    """One job per training group of ``wave`` without a report: the group's first trial's
    training config and audit keys, ``unlearn: none`` (on the group's ``checkpoint`` when it
    names one: then the job only audits it)."""
    jobs, first = {}, spec.groups()
    for group_id in dict.fromkeys(t.group_id for t in wave):
        folder = train_folder(work, group_id)
        if not (folder / REPORT).is_file():
            trial = first[group_id]
            config = trial.training_config() | trial.audit_config()
            jobs[group_id] = _job(spec, trial, config, folder, deadline)
            jobs[group_id]["label"] = _label(trial, spec.swept_keys(), training=True)
    return jobs


def _trial_jobs(spec: Spec, wave: list[Trial], work: Path, deadline: Deadline) -> dict:
    """One job per trial of ``wave`` without a report whose group's model is trained; a trial
    of a failed group is recorded as failed, one of a group not trained yet stays not run."""
    jobs, first = {}, spec.groups()
    for trial in wave:
        folder, group = trial_folder(work, trial.trial_id), train_folder(work, trial.group_id)
        if (folder / REPORT).is_file():
            continue
        report, error = read_outcome(group)
        if report is None:
            if status(group) == "failed":
                clear(folder)
                record_error(folder, f"training failed: {error}", "")
            continue
        job = _job(spec, trial, trial.config, folder, deadline)
        job["label"] = _label(trial, spec.swept_keys())
        job["checkpoint"] = report["checkpoint"]["original"]
        if trial.audit_config() == first[trial.group_id].audit_config():
            job["original"] = str(group / REPORT)  # audited the same way: reuse it
        jobs[trial.trial_id] = job
    return jobs


def _check_jobs(spec: Spec, work: Path, deadline: Deadline) -> dict:
    """The selected trial rerun on its checkpoint with a fresh audit that has the k-fold
    protocol (``kfold``, or ``full`` when the sweep audits with it) and the next audit seed."""
    best = select(spec, collect(spec, work))
    if best is None or (check_folder(work, best["trial_id"]) / REPORT).is_file():
        return {}
    trial = next(t for t in spec.trials if t.trial_id == best["trial_id"])
    report, _ = read_outcome(trial_folder(work, trial.trial_id))
    audited = after_stage(report)
    preset = {"quick": "kfold"}.get(audited["audit"]["preset"], audited["audit"]["preset"])
    config = trial.config | {"audit": preset, "audit_seed": audited["audit"]["seed"] + 1}
    job = _job(spec, trial, config, check_folder(work, trial.trial_id), deadline)
    group = read_outcome(train_folder(work, trial.group_id))[0]
    job |= {"label": f"k-fold check of {trial.trial_id}"}
    job |= {"checkpoint": group["checkpoint"]["original"]}
    return {trial.trial_id: job}


def _fit(
    phase: str, jobs: dict[str, dict], spec: Spec, work: Path, progress: bool, deadline: Deadline
) -> None:
    """One Tuner over ``jobs`` (a grid over their ids, in order), one trial per job."""
    budget = deadline.budget()
    if not jobs or (budget is not None and budget <= 0):
        return
    trainable = tune.with_resources(tune.with_parameters(_trainable, jobs=jobs), spec.resources)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        trainable,
        param_space={"job": tune.grid_search(list(jobs))},
        tune_config=ray_compat.tune_config(
            metric=spec.metric,
            mode=spec.mode,
            max_concurrent_trials=spec.max_concurrent_trials,
            time_budget_s=budget,
            trial_name_creator=_job_name,
            trial_dirname_creator=_job_name,
            # one worker process runs trial after trial (imports, audit pool); not on GPUs,
            # where a fresh process per trial is the safe way to release device memory
            reuse_actors=not spec.resources["gpu"],
        ),
        run_config=ray_compat.RunConfig(
            name=f"{phase}-{stamp}",
            storage_path=str(work / "ray"),
            failure_config=ray_compat.FailureConfig(max_failures=0),
            callbacks=[_Progress(phase, jobs)] if progress else None,
            verbose=0,
        ),
    )
    # verbose=0 silences only the legacy output engine; without Tune's SIGINT handler, Ctrl-C
    # stops the sweep (resume it later) instead of ending this phase and starting the next.
    quiet = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_SIGINT_HANDLER": "1"}
    quiet |= ray_compat.FIT_ENVIRONMENT
    with mock.patch.dict(os.environ, quiet):
        results = tuner.fit()
    for result in results:
        job = jobs.get((result.config or {}).get("job"))
        if job is None:  # Tune could not read the trial back (e.g. its worker was killed for
            continue  # memory): no status in its folder, so a resumed run starts it again
        folder = Path(job["output_dir"])
        if result.error and status(folder) not in ("ok", "failed"):
            message = f"{type(result.error).__name__}: {result.error}".splitlines()[0]
            record_error(folder, message, str(result.error))


def _job_name(trial) -> str:
    return str(trial.config["job"])


def _trainable(config: dict[str, Any], jobs: dict[str, dict]) -> None:
    ray_compat.report(execute(jobs[config["job"]]))


def execute(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run one job with ``quick_start.run`` on the device Ray assigned; return the metrics for
    Tune. A job that raises is recorded in ``error.json`` and reported as failed; one whose
    deadline (``not_after``) has passed is skipped without a trace."""
    nothing = {m: math.nan for m in METRICS}
    if job.get("not_after") is not None and time.time() > job["not_after"]:
        return {"failed": 0, "skipped": 1} | nothing
    folder = Path(job["output_dir"])
    clear(folder)
    gpus = ray.get_gpu_ids() if ray.is_initialized() else []
    device = {"use_gpu": bool(gpus)} | ({"gpu_id": ",".join(map(str, gpus))} if gpus else {})
    try:
        original = None
        if job.get("original"):
            original = json.loads(Path(job["original"]).read_text())["stages"]["original"]
        # RecBole reads --key=value from sys.argv: keep the Ray worker's own flags out.
        with mock.patch.object(sys, "argv", sys.argv[:1]):
            report = run(
                job["model"],
                job["dataset"],
                config_files=job["config_files"],
                config_dict=dict(job["config"]) | device,
                checkpoint=job.get("checkpoint"),
                output_dir=str(folder),
                original_stage=original,
            )
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        record_error(folder, message, traceback.format_exc())
        return {"failed": 1, "error": message} | nothing
    finally:
        stop_audit_workers()
    kfold = max(kfold_gaps(after_stage(report)["privacy"]).values(), default=math.nan)
    return {"failed": 0, "skipped": 0, "kfold_gap": kfold} | tune_metrics(report)


def stop_audit_workers() -> None:
    """Stop joblib's worker processes (loky), which otherwise outlive the audit by ~300 s and
    become orphans when Ray ends the trial's process."""
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


class _Progress(Callback):
    """One line per finished job."""

    def __init__(self, phase: str, jobs: Mapping[str, dict]) -> None:
        self.phase, self.jobs, self.done = phase, jobs, 0

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.done += 1
        job = self.jobs[trial.config["job"]]
        if result.get("skipped"):
            outcome = "not started (deadline)"
        elif result.get("failed"):
            outcome = f"FAILED {result.get('error')}"
        else:
            gap = result["privacy_gap"]
            kind = "gap" if not math.isnan(gap) else "k-fold gap"
            gap = gap if not math.isnan(gap) else result.get("kfold_gap", math.nan)
            outcome = f"valid retention {result['valid_retention']:.3f}, {kind} {gap:.3f}"
        seconds = result.get("time_total_s", 0.0)
        print(
            f"[{self.phase} {self.done}/{len(self.jobs)}] {job['label']}: {outcome} "
            f"({seconds:.0f} s)",
            flush=True,
        )
