"""Sweep specs: the YAML format (docs/tune.md), its validation, and its expansion into trials
and the training groups they share.

Trials are expanded here, not by Tune's samplers, so that a trial's config, and therefore its
id, is the same on every run of the spec: resuming a sweep recognises finished trials by id.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from recbole_attrcloak.config import PROPERTIES, property_files, read_config_file
from recbole_attrcloak.defences import check_backbone, check_method
from recbole_attrcloak.keys import PREFIXES, check_names, check_values

#: Search entries: ``{grid: [...]}`` multiplies the trials, the others are drawn per sample.
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
#: Metrics each trial reports to Tune (validation split and shadow audit only).
METRICS = ("score", "valid_retention", "privacy_gap", "valid_ndcg@10")
_TOP_LEVEL = {
    "name",
    "work_dir",
    "config_files",
    "config",
    "search",
    "num_samples",
    "sampler_seed",
    "resources_per_trial",
    "max_concurrent_trials",
    "metric",
    "mode",
    "waves",
    "kfold_check",
}
#: Keys that only change the audit: trials differing in them share one trained model.
AUDIT_KEYS = frozenset({"sensitive_attributes", "audit", "audit_seed", "audit_n_jobs"})
#: Not a RecBole key: a training group whose config names a checkpoint loads it instead of
#: training (its original job audits the checkpoint, its trials run on it).
CHECKPOINT_KEY = "checkpoint"


class SpecError(ValueError):
    """A sweep spec that cannot be run as written."""


class _Loader(yaml.SafeLoader):
    """YAML with ``1e-3`` read as a float (YAML 1.1 wants ``1.0e-3``), as RecBole reads it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+)$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """YAML as the spec reads it (``1e-3`` is a float)."""
    return yaml.load(text, Loader=_Loader)


@dataclass(frozen=True)
class Trial:
    """One pipeline run: ``quick_start.run(model, dataset, config_files, config)`` on the
    checkpoint of its training group."""

    trial_id: str
    group_id: str
    model: str
    dataset: str
    config: dict[str, Any]

    def training_config(self) -> dict[str, Any]:
        """The config of the group's training run: the trial's without the unlearning and
        audit keys."""
        return training_config(self.config)

    def audit_config(self) -> dict[str, Any]:
        """The trial's audit keys (``AUDIT_KEYS``) as given in the spec."""
        return {k: self.config[k] for k in sorted(AUDIT_KEYS) if k in self.config}


@dataclass
class Spec:
    """A parsed sweep spec."""

    name: str
    trials: list[Trial]
    config_files: tuple[str, ...] = ()
    work_dir: str | None = None
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1.0, "gpu": 0.0})
    max_concurrent_trials: int | None = None
    metric: str = "score"
    mode: str = "max"
    waves: str | None = None
    kfold_check: bool = True

    def groups(self) -> dict[str, Trial]:
        """One representative trial per training group, in first-seen order."""
        first: dict[str, Trial] = {}
        for trial in self.trials:
            first.setdefault(trial.group_id, trial)
        return first

    def wave_list(self) -> list[list[Trial]]:
        """The trials in waves: one per value of the ``waves`` key, in first-seen order (all
        trials in one wave without it). Each wave trains its groups, then runs its trials."""
        if self.waves is None:
            return [list(self.trials)]
        waves: dict[str, list[Trial]] = {}
        for trial in self.trials:
            value = json.dumps(trial.config.get(self.waves), sort_keys=True, default=str)
            waves.setdefault(value, []).append(trial)
        return list(waves.values())

    def swept_keys(self) -> list[str]:
        """Config keys whose value differs between trials, in first-seen order."""
        keys = dict.fromkeys(k for t in self.trials for k in t.config)
        return [
            k
            for k in keys
            if len({json.dumps(t.config.get(k), sort_keys=True) for t in self.trials}) > 1
        ]


def _unlearning_keys() -> frozenset[str]:
    baselines = PROPERTIES / "baselines.yaml"
    keys = yaml.safe_load(baselines.read_text()) if baselines.is_file() else None
    return frozenset({"unlearn", *(keys or {})})


_BASELINE_KEYS = _unlearning_keys()


def is_unlearning_key(key: str) -> bool:
    """Whether ``key`` only matters after training (the defence and its settings, or the
    audit); trials that differ only in such keys share one trained checkpoint."""
    return key in _BASELINE_KEYS or key in AUDIT_KEYS or key.startswith("au_")


def training_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without its unlearning and audit keys, and with ``unlearn: none``."""
    return {k: v for k, v in config.items() if not is_unlearning_key(k)} | {"unlearn": "none"}


def load_spec(source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] = ()) -> Spec:
    """Parse a spec (a YAML path or a dict); ``overrides`` are config values for every trial,
    winning over the spec's (the command line's ``--key=value``)."""
    if isinstance(source, Mapping):
        raw, default_name = dict(source), "sweep"
    else:
        path = Path(source)
        if not path.is_file():
            raise SpecError(f"sweep spec not found: {path}")
        raw, default_name = parse_yaml(path.read_text()) or {}, path.stem
    if not isinstance(raw, dict):
        raise SpecError("a sweep spec is a YAML mapping")
    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        raise SpecError(f"unknown spec keys {unknown}; allowed: {sorted(_TOP_LEVEL)}")
    config_files = tuple(str(Path(f).resolve()) for f in _as_list(raw.get("config_files")))
    for path in config_files:
        if not Path(path).is_file():
            raise SpecError(f"config file not found: {path}")
    spec = Spec(
        name=str(raw.get("name", default_name)),
        trials=[],
        config_files=config_files,
        work_dir=raw.get("work_dir"),
        resources=_resources(raw.get("resources_per_trial") or {}),
        max_concurrent_trials=raw.get("max_concurrent_trials"),
        metric=str(raw.get("metric", "score")),
        mode=str(raw.get("mode", "max")),
        waves=raw.get("waves"),
        kfold_check=raw.get("kfold_check", True),
    )
    if not isinstance(spec.kfold_check, bool):
        raise SpecError(f"kfold_check is true or false, got {spec.kfold_check!r}")
    if spec.waves is not None and not isinstance(spec.waves, str):
        raise SpecError(f"waves names one config key, got {spec.waves!r}")
    if spec.metric not in METRICS or spec.mode not in ("max", "min"):
        raise SpecError(f"metric must be one of {list(METRICS)} and mode max or min")
    base = dict(raw.get("config") or {})
    if not isinstance(base, dict):
        raise SpecError("'config' is a mapping of config keys to values or search entries")
    spaces = raw.get("search") or [{}]
    spaces = [spaces] if isinstance(spaces, dict) else spaces
    if not isinstance(spaces, list) or not all(isinstance(s, dict) for s in spaces):
        raise SpecError("'search' is a mapping, or a list of mappings (their union)")
    num_samples = int(raw.get("num_samples", 1))
    if num_samples < 1:
        raise SpecError("num_samples must be >= 1")
    rng = np.random.default_rng(int(raw.get("sampler_seed", 0)))
    files_hash = _files_hash(config_files)
    seen: dict[str, Trial] = {}
    for space in spaces:
        for config in _expand({**base, **space}, num_samples, rng):
            config.update(overrides)
            trial = _trial(config, files_hash)
            seen.setdefault(trial.trial_id, trial)
    spec.trials = list(seen.values())
    check_trials(spec)
    for trial in spec.trials:
        path = trial.config.get(CHECKPOINT_KEY)
        if path is not None and not (isinstance(path, str) and Path(path).is_file()):
            raise SpecError(f"{CHECKPOINT_KEY}: no checkpoint file {path!r}")
    return spec


def check_trials(spec: Spec) -> None:
    """Every trial's keys of ours as the run will check them (``keys.KEYS``, over our defaults
    and the spec's config files), before anything starts: a typo or a bad value in a spec is a
    ``SpecError``, not a sweep of failed or silently default trials."""
    defaults: dict[str, dict[str, Any]] = {}  # by model
    for trial in spec.trials:
        try:
            if trial.model not in defaults:
                defaults[trial.model] = {}
                for path in [*property_files(trial.model), *spec.config_files]:
                    defaults[trial.model].update(read_config_file(path))
            settings = defaults[trial.model] | trial.config
            check_names([k for k in trial.config if k.startswith(PREFIXES)])
            check_values(settings)
            check_backbone(check_method(settings.get("unlearn", "none")), trial.model)
        except ValueError as exc:
            raise SpecError(f"{exc} (trial {trial.model} on {trial.dataset})") from None


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value.split() if isinstance(value, str) else list(value)


def _resources(raw: Mapping[str, Any]) -> dict[str, float]:
    unknown = set(raw) - {"cpu", "gpu"}
    if unknown:
        raise SpecError(f"resources_per_trial takes cpu and gpu, not {sorted(unknown)}")
    resources = {"cpu": float(raw.get("cpu", 1)), "gpu": float(raw.get("gpu", 0))}
    if resources["cpu"] <= 0 or resources["gpu"] < 0:
        raise SpecError(f"resources_per_trial needs cpu > 0 and gpu >= 0, got {resources}")
    return resources


def _distribution(key: str, value: Any) -> str | None:
    """The distribution name of a search entry, None for a fixed value."""
    if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS):
        return None
    name, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise SpecError(f"{key}: {{{name}: ...}} takes a non-empty list")
    if name in ("uniform", "loguniform", "randint"):
        if len(args) != 2 or not all(isinstance(a, int | float) for a in args):
            raise SpecError(f"{key}: {{{name}: [low, high]}} takes two numbers, got {args}")
        if not args[0] < args[1] or (name == "loguniform" and args[0] <= 0):
            raise SpecError(f"{key}: {{{name}: {args}}} needs 0 < low < high for loguniform")
    return name


def _draw(name: str, args: list, rng: np.random.Generator) -> Any:
    if name == "choice":
        return args[int(rng.integers(len(args)))]
    if name == "uniform":
        return float(rng.uniform(*args))
    if name == "loguniform":
        return float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
    return int(rng.integers(args[0], args[1]))  # randint: high excluded, as in Tune


def _expand(
    space: Mapping[str, Any], num_samples: int, rng: np.random.Generator
) -> Iterator[dict[str, Any]]:
    """The grid's cartesian product, each point ``num_samples`` times with fresh random draws."""
    kinds = {key: _distribution(key, value) for key, value in space.items()}
    grid_keys = [k for k, kind in kinds.items() if kind == "grid"]
    for point in itertools.product(*(space[k]["grid"] for k in grid_keys)):
        chosen = dict(zip(grid_keys, point, strict=True))
        for _ in range(num_samples):
            config = {}
            for key in sorted(space):
                kind = kinds[key]
                if kind is None:
                    config[key] = space[key]
                elif kind == "grid":
                    config[key] = chosen[key]
                else:
                    config[key] = _draw(kind, space[key][kind], rng)
            yield config


def _files_hash(paths: tuple[str, ...]) -> str:
    digest = hashlib.sha1()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _trial(config: dict[str, Any], files_hash: str) -> Trial:
    """A trial with ids hashed from its content (so the same config always gets the same id)."""
    config = dict(config)
    try:
        model, dataset = str(config.pop("model")), str(config.pop("dataset"))
    except KeyError as exc:
        raise SpecError(f"every trial needs a {exc.args[0]!r} (in 'config' or 'search')") from None
    config.setdefault("unlearn", "none")
    common = {"model": model, "dataset": dataset, "files": files_hash}
    return Trial(
        trial_id=_digest(common | {"config": config}),
        group_id=_digest(common | {"config": training_config(config)}),
        model=model,
        dataset=dataset,
        config=config,
    )
