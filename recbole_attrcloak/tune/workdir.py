"""A sweep's work folder: ``sweep.json`` (every trial run into it, and the code version that ran
them), ``train/<group_id>/``, ``trials/<trial_id>/`` and ``check/<trial_id>/`` (one pipeline
run each), and ``ray/`` (Tune's own logs).

A job folder holding ``report.json`` is finished and never run again; ``error.json`` records a
job that raised; a folder with neither was interrupted. Results of other code are never mixed
in: a work folder whose recorded code version differs is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from recbole_attrcloak.provenance import code_version, describe, same_code
from recbole_attrcloak.report import atomic_path
from recbole_attrcloak.tune.spec import Spec, Trial

REPORT, ERROR, SWEEP = "report.json", "error.json", "sweep.json"


class CodeVersionError(ValueError):
    """A work folder that holds results of other code."""


def train_folder(work: Path, group_id: str) -> Path:
    """Where a training group's model is trained and audited."""
    return work / "train" / group_id


def trial_folder(work: Path, trial_id: str) -> Path:
    """Where a trial runs its defence on the group's checkpoint."""
    return work / "trials" / trial_id


def check_folder(work: Path, trial_id: str) -> Path:
    """Where the k-fold check of a selected trial runs."""
    return work / "check" / trial_id


def claim(work: Path, spec: Spec, resume: bool) -> None:
    """Refuse to mix a new sweep into old results (unless ``resume``) or results of other code
    (ever); then record the trials (added to those already recorded) and the code version."""
    record = read_record(work)
    if any((work / part).exists() for part in ("train", "trials")):
        if not resume:
            raise FileExistsError(
                f"{work} already holds a sweep: pass --resume to finish it, or choose another "
                "--output_dir / work_dir"
            )
        if not same_code(record.get("code")):
            raise CodeVersionError(
                f"cannot resume: {work} holds results of code {describe(record.get('code'))}, "
                f"this is {describe(code_version())}; choose another --output_dir"
            )
    work.mkdir(parents=True, exist_ok=True)
    trials = {t["trial_id"]: t for t in record.get("trials", [])}
    for t in spec.trials:
        trials[t.trial_id] = {"trial_id": t.trial_id, "group_id": t.group_id, "model": t.model}
        trials[t.trial_id] |= {"dataset": t.dataset, "config": t.config}
    content = {"name": spec.name, "config_files": list(spec.config_files)}
    content |= {"code": code_version(), "trials": list(trials.values())}
    with atomic_path(work / SWEEP) as tmp:
        tmp.write_text(json.dumps(content, indent=2, default=str) + "\n")


def read_record(work: Path) -> dict[str, Any]:
    """``sweep.json`` of ``work`` (empty when there is none)."""
    path = work / SWEEP
    return json.loads(path.read_text()) if path.is_file() else {}


def recorded_trials(work: Path) -> list[Trial]:
    """Every trial ever run into ``work``, in the order first recorded."""
    return [Trial(**t) for t in read_record(work).get("trials", [])]


def read_outcome(folder: Path) -> tuple[dict | None, str | None]:
    """A job folder's report, or its recorded error; (None, None) when it has neither."""
    if (folder / REPORT).is_file():
        return json.loads((folder / REPORT).read_text()), None
    if (folder / ERROR).is_file():
        return None, json.loads((folder / ERROR).read_text())["error"]
    return None, None


def status(folder: Path) -> str:
    """ok (a report), failed (an error), interrupted (started, neither) or not started."""
    if (folder / REPORT).is_file():
        return "ok"
    if (folder / ERROR).is_file():
        return "failed"
    return "interrupted" if folder.exists() else "not started"


def record_error(folder: Path, message: str, trace: str) -> None:
    """Write ``error.json`` (one-line message and traceback) into a job folder."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"error": message, "traceback": trace}
    (folder / ERROR).write_text(json.dumps(payload, indent=2) + "\n")


def clear(folder: Path) -> None:
    """Remove what an earlier, unfinished attempt left in a job folder."""
    if folder.exists():
        shutil.rmtree(folder)
