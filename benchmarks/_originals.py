"""Original models trained elsewhere, for ``--originals DIR``: ``benchmarks/gpu_originals.py``
writes ``{model}-{dataset}-{seed}[-{key}{value}…].pth`` and a ``.json`` beside it with the
training seconds and the device (ml-1m's on an H200, ml-100k's on this CPU). A training group
whose checkpoint is in DIR loads it instead of training; Table VI's ratio then uses the
training time the ``.json`` records.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbole_attrcloak import compat
from recbole_attrcloak.tune.spec import (
    CHECKPOINT_KEY,
    is_unlearning_key,
    parse_yaml,
    training_config,
)
from recbole_attrcloak.tune.workdir import recorded_trials

#: Keys that do not change the trained model: not compared with the checkpoint's config.
NOT_TRAINING = frozenset(
    {"epochs", "eval_batch_size", "show_progress", "data_path", "use_gpu", "gpu_id"}
)


@dataclass(frozen=True)
class Original:
    """A checkpoint of an original model and what its ``.json`` says about its training."""

    path: Path
    train_seconds: float
    device: str
    info: Mapping[str, Any]

    def record(self) -> dict[str, Any]:
        """What run.json keeps of it (the summaries read this, not the file)."""
        keep = ("best_epoch", "epochs_cap", "python", "torch", "settings")
        return (
            {"path": str(self.path), "train_seconds": self.train_seconds}
            | {"device": self.device}
            | {k: self.info[k] for k in keep if k in self.info}
        )


def stem(model: str, dataset: str, seed: int, settings: Mapping[str, Any]) -> str:
    """gpu_originals.py's file name without suffix: the extra keys sorted, ``-{key}{value}``."""
    suffix = "".join(f"-{k}{v}" for k, v in sorted(settings.items()))
    return f"{model}-{dataset}-{seed}{suffix}"


def find_original(
    folder: Path, model: str, dataset: str, seed: int, settings: Mapping[str, Any]
) -> Original | None:
    """The checkpoint in ``folder`` of the group (model, dataset, seed) trained with
    ``settings`` (the group's training keys beyond the defaults, e.g. ``embedding_size``), or
    None. The file named for exactly these settings wins; else the file without a suffix when
    its checkpoint's own config has these values (d = 128 is the default's file). A file that
    exists but contradicts the group (its ``.json`` names another model, dataset or seed, or its
    config another value of a setting) is an error, never silently used."""
    training = {k: v for k, v in settings.items() if k not in NOT_TRAINING}
    exact = folder / f"{stem(model, dataset, seed, training)}.pth"
    base = folder / f"{stem(model, dataset, seed, {})}.pth"
    for path in dict.fromkeys([exact, base]):
        if not path.is_file():
            continue
        info = _info(path)
        for key, want in (("model", model), ("dataset", dataset), ("seed", seed)):
            if str(info.get(key)) != str(want):
                raise ValueError(
                    f"{path.with_suffix('.json')} says {key} {info.get(key)!r}, "
                    f"the file name {want!r}"
                )
        differs = _differing(path, training)
        if differs and path == exact:
            raise ValueError(f"{path} was trained with {differs}, its name says {training}")
        if differs:
            continue
        return Original(path.resolve(), float(info["train_seconds"]), str(info["device"]), info)
    return None


def _info(path: Path) -> dict[str, Any]:
    """The ``.json`` beside a checkpoint; its training seconds and device are required."""
    meta = path.with_suffix(".json")
    if not meta.is_file():
        raise ValueError(f"{path} has no {meta.name} beside it (training seconds, device)")
    info = json.loads(meta.read_text())
    missing = [k for k in ("train_seconds", "device") if k not in info]
    if missing:
        raise ValueError(f"{meta} lacks {missing}")
    return info


def _differing(path: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings whose value in the checkpoint's config is another (key: its value)."""
    if not settings:
        return {}
    compat.apply_recbole_shims()  # the pickled Config reads numpy's old aliases on numpy 2
    try:
        config = compat.load_checkpoint(path)["config"]
    except compat.CheckpointError as exc:
        raise ValueError(str(exc)) from None
    return {k: config[k] for k, v in settings.items() if config[k] != v}


def original_source(
    args: argparse.Namespace, base: dict[str, Any], varied: dict[str, Any], record: dict
) -> dict[str, Any]:
    """``base`` (a group's shared config) loading the group's original checkpoint from
    ``--originals`` when the folder holds it (recorded under the group's name in ``record``,
    run.json's ``originals``), else unchanged: the group trains. ``varied``: the keys the
    script varies per group beyond model, dataset and seed (e.g. ``embedding_size``)."""
    if args.originals is None:
        return base
    model, dataset, seed = base["model"], base["dataset"], base["seed"]
    sets = {k: parse_yaml(v) for k, _, v in (s.partition("=") for s in args.set)}
    settings = {k: v for k, v in (sets | varied).items() if not is_unlearning_key(k)}
    original = find_original(args.originals, model, dataset, seed, settings)
    name = "/".join(str(v) for v in (dataset, model, *varied.values(), seed))
    if original is None:
        record[name] = {"path": None, "trained": "here (no checkpoint in --originals)"}
        return base
    record[name] = original.record()
    return base | {CHECKPOINT_KEY: str(original.path)}


def check_sources(work: Path, trials: Sequence) -> None:
    """Refuse a run folder whose groups were trained where this plan loads a checkpoint (or
    the other way round, or another checkpoint): a folder mixes one or the other, never both
    for the same group."""

    def key(trial: Any) -> str:  # the group: model, dataset and training keys, not the file
        config = {k: v for k, v in training_config(trial.config).items() if k != CHECKPOINT_KEY}
        return json.dumps([trial.model, trial.dataset, config], sort_keys=True, default=str)

    recorded = {key(t): t.config.get(CHECKPOINT_KEY) for t in recorded_trials(work)}
    for trial in trials:
        before = recorded.get(key(trial), trial.config.get(CHECKPOINT_KEY))
        if before != trial.config.get(CHECKPOINT_KEY):
            now = trial.config.get(CHECKPOINT_KEY) or "trained"
            raise ValueError(
                f"{work} holds {trial.model} on {trial.dataset} "
                f"{'trained' if before is None else 'from ' + str(before)}, this run would use "
                f"{now}: pass the same --originals as the run that started it, or a new --out"
            )
