"""Configuration: RecBole's ``Config`` with our ``properties/*.yaml`` layered under the user's.

We build plain ``recbole.config.Config`` objects (no subclass), so that checkpoints we write
unpickle with stock RecBole, without this package installed.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from recbole.config import Config

from recbole_attrcloak import compat
from recbole_attrcloak.audit.settings import AuditPreset
from recbole_attrcloak.engine import DDRetention, Mode, Objective
from recbole_attrcloak.losses import Covariance, Solver, Target
from recbole_attrcloak.registry import get_model

PROPERTIES = Path(__file__).parent / "properties"

# Keys whose values name a mode: the values of the enums that parse them.
_CHOICES: dict[str, tuple[str, ...]] = {
    key: tuple(member.value for member in enum)
    for key, enum in (
        ("au_mode", Mode),
        ("au_objective", Objective),
        ("au_dd_retention", DDRetention),
        ("au_solver", Solver),
        ("au_covariance", Covariance),
        ("au_target", Target),
        ("audit", AuditPreset),
    )
}


def property_files(model_name: str) -> list[str]:
    """Our defaults: ``properties/overall.yaml``, ``properties/baselines.yaml``, then
    ``properties/model/<Model>.yaml``."""
    files = [
        PROPERTIES / "overall.yaml",
        PROPERTIES / "baselines.yaml",
        PROPERTIES / "model" / f"{model_name}.yaml",
    ]
    return [str(f) for f in files if f.is_file()]


def backbone_files(model_class: type) -> list[str]:
    """RecBole's defaults YAML of the backbone a model of ours extends (``RAPNeuMF`` →
    ``NeuMF.yaml``): RecBole looks its model YAML up by model name, so a variant would otherwise
    miss its backbone's keys. Kept apart from ``property_files``: these are architecture keys,
    which a checkpoint's own values must keep."""
    backbone = getattr(model_class, "backbone", None)
    if not isinstance(backbone, str):
        return []
    path = Path(inspect.getfile(Config)).parent.parent / "properties" / "model" / f"{backbone}.yaml"
    return [str(path)] if path.is_file() else []


def build_config(
    model: str,
    dataset: str,
    config_files: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """A RecBole Config for ``model`` on ``dataset``: RecBole defaults < the backbone's RecBole
    defaults (a variant of ours) < our properties < the user's config files < ``overrides`` <
    RecBole's ``--key=value`` command-line arguments."""
    for path in config_files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"config file not found: {path}")
    model_class = get_model(model)
    compat.apply_recbole_shims()  # before Config.compatibility_settings reads numpy's aliases
    config = Config(
        model=model_class,
        dataset=dataset,
        config_file_list=[*backbone_files(model_class), *property_files(model), *config_files],
        config_dict=dict(overrides or {}),
    )
    check_config(config)
    return config


# Keys that define the data and its split: a checkpoint's own values must stay.
_DATA_KEYS = frozenset(
    {
        "model",
        "dataset",
        "eval_args",
        "load_col",
        "benchmark_filename",
        "checkpoint_dir",
        "MODEL_TYPE",
        "MODEL_INPUT_TYPE",
        "eval_type",
    }
)


def checkpoint_settings(fresh: Config) -> dict[str, Any]:
    """What a loaded checkpoint's config takes over from a fresh ``build_config``: our keys
    (with the user's values), explicit overrides and the data location, but never the keys that
    define the data and its split."""
    ours = {}
    for path in property_files(fresh["model"]):
        ours.update(yaml.safe_load(Path(path).read_text()) or {})
    chosen = {key: fresh[key] for key in ours}
    chosen.update(fresh.variable_config_dict)
    chosen.update(fresh.cmd_config_dict)
    if "data_path" in {**fresh.file_config_dict, **chosen}:
        chosen["data_path"] = fresh["data_path"]  # where the data lives here, resolved by RecBole
    return {k: v for k, v in chosen.items() if k not in _DATA_KEYS}


def check_config(config: Config) -> None:
    """Validate our keys; raise ``ValueError`` with a one-line message."""
    attributes = config["sensitive_attributes"]
    if isinstance(attributes, str):
        attributes = [a.strip() for a in attributes.split(",") if a.strip()]
        config["sensitive_attributes"] = attributes
    if not attributes or not all(isinstance(a, str) for a in attributes):
        raise ValueError("sensitive_attributes must be a non-empty list of .user column names")
    for key, choices in _CHOICES.items():
        if config[key] not in choices:
            raise ValueError(f"{key} must be one of {list(choices)}, got {config[key]!r}")
    alpha = config["au_alpha"]
    if config["au_solver"] == Solver.FIXED and (alpha is None or not 0.0 <= float(alpha) <= 1.0):
        raise ValueError(f"au_solver=fixed needs au_alpha in [0, 1], got {alpha!r}")
    for key in ("au_max_steps", "au_patience", "au_permutations", "au_check_every", "audit_n_jobs"):
        if int(config[key]) < 1:
            raise ValueError(f"{key} must be a positive integer, got {config[key]!r}")
    if float(config["au_learning_rate"]) <= 0:
        raise ValueError(f"au_learning_rate must be > 0, got {config['au_learning_rate']!r}")
    if not isinstance(config["au_relative_lr"], bool):
        raise ValueError(f"au_relative_lr must be true or false, got {config['au_relative_lr']!r}")
    if float(config["au_target_tol"]) < 0:
        raise ValueError(f"au_target_tol must be >= 0, got {config['au_target_tol']!r}")
