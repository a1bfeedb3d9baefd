"""Run a sweep on Ray Tune in two phases: train each group's model once (``unlearn: none``, which
also audits the original), then run every trial on its group's checkpoint, reusing that audit.

Each job writes into its own folder of the work directory: ``report.json`` when it finished,
``error.json`` when it raised. A job whose folder holds a report is never run again, which is
what ``resume`` relies on; anything else in a folder is a leftover and is cleared first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd

from recbole_attrcloak.quick_start import run
from recbole_attrcloak.tune import ray_compat
from recbole_attrcloak.tune.results import ERROR, REPORT, read_outcome, tune_metrics, write_outputs
from recbole_attrcloak.tune.spec import METRICS, Spec, Trial, load_spec

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


def run_sweep(
    spec: str | Path | Mapping[str, Any] | Spec,
    output_dir: str | Path | None = None,
    *,
    ray_address: str | None = None,
    resume: bool = False,
    overrides: Mapping[str, Any] = (),
    progress: bool = True,
) -> SweepResult:
    """Run every trial of ``spec`` and write trials.csv, pareto.csv, pareto.png and summary.md
    into ``output_dir`` (default ``outputs/sweeps/<name>``).

    ``overrides`` (config values for every trial) apply when ``spec`` is a path or a dict.
    Trial outputs and checkpoints go to the spec's ``work_dir`` (default ``output_dir/work``).
    A work directory that already holds results is refused unless ``resume``, which runs only
    the trials without a report. ``ray_address`` (or ``RAY_ADDRESS``) joins a running cluster;
    otherwise a local Ray starts on this machine's cores, unless one is already initialised.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec, overrides)
    out = Path(output_dir or Path("outputs/sweeps") / spec.name).resolve()
    work = Path(spec.work_dir).resolve() if spec.work_dir else out / "work"
    _claim(work, spec, resume)
    seconds: dict[str, float] = {}
    with _ray(ray_address):
        tic = time.perf_counter()
        train_jobs = {
            group_id: _train_job(spec, trial, work / "train" / group_id)
            for group_id, trial in spec.groups().items()
            if not (work / "train" / group_id / REPORT).is_file()
        }
        _fit("train", train_jobs, spec, work, progress)
        seconds["training"] = time.perf_counter() - tic
        tic = time.perf_counter()
        trial_jobs = {}
        for trial in spec.trials:
            folder = work / "trials" / trial.trial_id
            if (folder / REPORT).is_file():
                continue
            group = work / "train" / trial.group_id
            report, error = read_outcome(group)
            if report is None:
                _clear(folder)
                _record_error(folder, f"training failed: {error}", "")
            else:
                trial_jobs[trial.trial_id] = _trial_job(spec, trial, folder, group, report)
        _fit("unlearn", trial_jobs, spec, work, progress)
        seconds["trials"] = time.perf_counter() - tic
    return SweepResult(write_outputs(spec, work, out, seconds), out, work)


def _claim(work: Path, spec: Spec, resume: bool) -> None:
    """Refuse to mix a new sweep into old results; record the expanded trials."""
    if not resume and any((work / part).exists() for part in ("train", "trials")):
        raise FileExistsError(
            f"{work} already holds a sweep: pass --resume to finish it, or choose another "
            "--output_dir / work_dir"
        )
    work.mkdir(parents=True, exist_ok=True)
    trials = [
        {"trial_id": t.trial_id, "group_id": t.group_id, "model": t.model, "dataset": t.dataset}
        | {"config": t.config}
        for t in spec.trials
    ]
    record = {"name": spec.name, "config_files": list(spec.config_files), "trials": trials}
    (work / "sweep.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


@contextlib.contextmanager
def _ray(address: str | None) -> Iterator[None]:
    """Use the initialised Ray, join ``address`` / ``RAY_ADDRESS``, or start a quiet local one
    (shut down again on exit)."""
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, **quiet)
    try:
        yield
    finally:
        ray.shutdown()


def _label(trial: Trial, keys: list[str]) -> str:
    shown = [f"{k}={trial.config[k]}" for k in keys if k in trial.config and k != "unlearn"]
    return " ".join([trial.model, trial.dataset, trial.config["unlearn"], *shown])


def _train_job(spec: Spec, trial: Trial, folder: Path) -> dict[str, Any]:
    keys = [k for k in spec.swept_keys() if k in trial.training_config()]
    return {
        "label": _label(trial, keys),
        "model": trial.model,
        "dataset": trial.dataset,
        "config_files": list(spec.config_files),
        "config": trial.training_config(),
        "output_dir": str(folder),
    }


def _trial_job(
    spec: Spec, trial: Trial, folder: Path, group: Path, group_report: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "label": _label(trial, spec.swept_keys()),
        "model": trial.model,
        "dataset": trial.dataset,
        "config_files": list(spec.config_files),
        "config": trial.config,
        "output_dir": str(folder),
        "checkpoint": group_report["checkpoint"]["original"],
        "original": str(group / REPORT),
    }


def _fit(phase: str, jobs: dict[str, dict], spec: Spec, work: Path, progress: bool) -> None:
    """One Tuner over ``jobs`` (a grid over their ids), one trial per job."""
    if not jobs:
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
        folder = Path(jobs[result.config["job"]]["output_dir"])
        if result.error and not (folder / REPORT).is_file() and not (folder / ERROR).is_file():
            message = f"{type(result.error).__name__}: {result.error}".splitlines()[0]
            _record_error(folder, message, str(result.error))


def _job_name(trial) -> str:
    return str(trial.config["job"])


def _trainable(config: dict[str, Any], jobs: dict[str, dict]) -> None:
    ray_compat.report(execute(jobs[config["job"]]))


def execute(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run one job with ``quick_start.run`` on the device Ray assigned; return the metrics for
    Tune. A job that raises is recorded in ``error.json`` and reported as failed."""
    folder = Path(job["output_dir"])
    _clear(folder)
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
        _record_error(folder, message, traceback.format_exc())
        return {"failed": 1, "error": message} | {m: math.nan for m in METRICS}
    return {"failed": 0} | tune_metrics(report)


def _clear(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)


def _record_error(folder: Path, message: str, trace: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"error": message, "traceback": trace}
    (folder / ERROR).write_text(json.dumps(payload, indent=2) + "\n")


class _Progress(Callback):
    """One line per finished job."""

    def __init__(self, phase: str, jobs: Mapping[str, dict]) -> None:
        self.phase, self.jobs, self.done = phase, jobs, 0

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.done += 1
        job = self.jobs[trial.config["job"]]
        if result.get("failed"):
            outcome = f"FAILED {result.get('error')}"
        else:
            outcome = (
                f"valid retention {result['valid_retention']:.3f}, gap {result['privacy_gap']:.3f}"
            )
        seconds = result.get("time_total_s", 0.0)
        print(
            f"[{self.phase} {self.done}/{len(self.jobs)}] {job['label']}: {outcome} "
            f"({seconds:.0f} s)",
            flush=True,
        )
