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
from recbole_attrcloak.engine import DDRetention, Mode
from recbole_attrcloak.keys import Regularizer, check_names, check_values
from recbole_attrcloak.registry import get_model

PROPERTIES = Path(__file__).parent / "properties"


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
    files = [path for path in config_files if read_config_file(path)]  # RecBole fails on empty
    model_class = get_model(model)
    compat.apply_recbole_shims()  # before Config.compatibility_settings reads numpy's aliases
    config = Config(
        model=model_class,
        dataset=dataset,
        config_file_list=[*backbone_files(model_class), *property_files(model), *files],
        config_dict=dict(overrides or {}),
    )
    given = {**config.file_config_dict, **config.variable_config_dict, **config.cmd_config_dict}
    check_names(given, known=config.internal_config_dict)
    check_config(config)
    return config


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The keys of a YAML config file (empty for an empty file); a missing file, malformed YAML
    or anything but a mapping raise with a one-line message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        content = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.FullLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"config file {path}: not valid YAML ({exc.problem}{where})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"config file {path}: not valid YAML ({' '.join(str(exc).split())})"
        ) from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(
            f"config file {path}: expected 'key: value' lines, got a {type(content).__name__}"
        )
    return content


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
    """Check every key of ours (``keys.KEYS``) that ``config`` holds; raise ``ValueError`` with a
    one-line message. A comma-separated ``sensitive_attributes`` becomes a list."""
    attributes = config["sensitive_attributes"]
    if isinstance(attributes, str):
        config["sensitive_attributes"] = [a.strip() for a in attributes.split(",") if a.strip()]
    check_values(config)


def check_against_data(config: Config, n_items: int) -> None:
    """The keys that must fit the dataset, for the defence that reads them: AttrCloak-DD's
    ``au_dd_topk`` and U2U-R/D2D-R's ``du_topn`` are counts of each user's top items, so they
    must leave other items (``n_items``: real items, padding excluded)."""
    method = config["unlearn"]
    ranking_dd = config["au_mode"] == Mode.DD and config["au_dd_retention"] == DDRetention.RANKING
    if method == "attrcloak" and ranking_dd and int(config["au_dd_topk"]) >= n_items:
        raise ValueError(
            f"au_dd_topk must be below the number of items ({n_items}), got {config['au_dd_topk']}"
        )
    if method in ("u2u", "d2d") and config["du_regularizer"] == Regularizer.RANKING:
        if int(config["du_topn"]) > n_items:
            raise ValueError(
                f"du_topn must be at most the number of items ({n_items}), got {config['du_topn']}"
            )
