"""Retraining defences: a new backbone is trained from scratch with RecBole's trainer. RAP
trains the backbone against attribute attackers (``model.rap``: RAPBPR, RAPNeuMF,
RAPLightGCN); BlurMe and LDP-SH
obfuscate the training interactions first.

The obfuscated data is a derived atomic dataset under ``<output_dir>/derived/<dataset>-<method>``
(never next to the user's files), written as RecBole pre-split benchmark files
(``NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter``) so that validation and test
are exactly the original splits; the ``.user`` and ``.item`` files are copied.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from recbole_attrcloak.backbone import fit_model, training_summary
from recbole_attrcloak.context import DefenceResult, RunContext
from recbole_attrcloak.data.attributes import load_attributes
from recbole_attrcloak.data.obfuscation import (
    blurme_additions,
    flip_probability,
    indicative_weights,
    randomized_response,
    user_item_lists,
    with_profiles,
)
from recbole_attrcloak.keys import BlurMeStrategy, check_values, with_prefix
from recbole_attrcloak.model.rap import RAP_VARIANTS, check_rap_config
from recbole_attrcloak.registry import get_model

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")

# The derived files hold already processed interactions: filtering and normalising them again
# would change them (and RecBole's filtering would break the benchmark file sizes).
_ALREADY_APPLIED = {
    "rm_dup_inter": None,
    "val_interval": None,
    "user_inter_num_interval": "[0,inf)",
    "item_inter_num_interval": "[0,inf)",
    "normalize_all": False,
    "normalize_field": None,
    "discretization": None,
    "threshold": None,
}


def split_frames(ctx: RunContext) -> dict[str, pd.DataFrame]:
    """The train/valid/test interactions of ``ctx`` in internal ids (user, item, and the rating
    and time columns when loaded)."""
    dataset = ctx.dataset
    fields = [dataset.uid_field, dataset.iid_field]
    extra = (dataset.config["RATING_FIELD"], dataset.time_field)
    fields += [f for f in extra if f in dataset.inter_feat]
    frames = {}
    for split, loader in zip(SPLITS, (ctx.train_data, ctx.valid_data, ctx.test_data), strict=True):
        inter = loader._dataset.inter_feat
        frames[split] = pd.DataFrame({f: inter[f].cpu().numpy() for f in fields})
    return frames


def write_derived(ctx: RunContext, name: str, frames: dict[str, pd.DataFrame]) -> Path:
    """Write ``frames`` (internal ids) as the benchmark files of dataset ``name`` under
    ``<output_dir>/derived/name``, with the original ``.user``/``.item`` files; return the
    folder."""
    dataset = ctx.dataset
    folder = Path(ctx.output_dir) / "derived" / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        out = frame.copy()
        for field in (dataset.uid_field, dataset.iid_field):
            out[field] = dataset.id2token(field, out[field].to_numpy())
        out.columns = [f"{f}:{dataset.field2type[f].value}" for f in frame.columns]
        out.to_csv(folder / f"{name}.{split}.inter", sep="\t", index=False)
    source = Path(ctx.config["data_path"])
    for suffix in ("user", "item"):
        original = source / f"{ctx.config['dataset']}.{suffix}"
        if original.is_file():
            shutil.copyfile(original, folder / f"{name}.{suffix}")
    return folder


def derived_config(ctx: RunContext, name: str, folder: Path, columns: list[str]) -> Config:
    """``ctx``'s config (same model, training and evaluation keys) pointed at the derived dataset.

    A copy rather than a fresh ``build_config``: the original dataset's RecBole properties
    (``load_col``, field names...) would not be found under the derived dataset's name.
    """
    config = copy.deepcopy(ctx.config)
    load_col = dict(config["load_col"] or {})
    load_col["inter"] = columns
    updates = {
        **_ALREADY_APPLIED,
        "dataset": name,
        "data_path": str(folder),
        "benchmark_filename": list(SPLITS),
        "load_col": load_col,
        "checkpoint_dir": str(folder),
    }
    for key, value in updates.items():
        config[key] = value
    config.dataset = name
    return config


def retrain_on_derived(
    ctx: RunContext, method: str, train: pd.DataFrame
) -> tuple[RunContext, dict[str, Any]]:
    """Train ``ctx``'s model class from scratch with ``train`` (internal ids) replacing the
    training split; return the new context and the training summary."""
    frames = split_frames(ctx)
    frames["train"] = train[list(frames["train"].columns)]
    name = f"{ctx.config['dataset']}-{method}"
    folder = write_derived(ctx, name, frames)
    config = derived_config(ctx, name, folder, list(train.columns))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    summary = training_summary(fit_model(config, model, train_data, valid_data))
    labels = load_attributes(config, dataset)
    new = RunContext(
        config, dataset, train_data, valid_data, test_data, model, labels, ctx.output_dir
    )
    return new, {"derived_dataset": str(folder), **summary}


def _profiles(ctx: RunContext, train: pd.DataFrame) -> list[np.ndarray]:
    dataset = ctx.dataset
    return user_item_lists(
        train[dataset.uid_field].to_numpy(), train[dataset.iid_field].to_numpy(), dataset.user_num
    )


def _fill(ctx: RunContext, train: pd.DataFrame) -> dict[str, str]:
    """How added interactions get their rating and time: the user's mean rating (BlurMe) and
    the user's latest time."""
    fill = {ctx.config["RATING_FIELD"]: "mean", ctx.config["TIME_FIELD"]: "max"}
    return {column: how for column, how in fill.items() if column in train}


def check_blurme_config(config) -> None:
    """Check the BlurMe keys (``keys.KEYS``); raise ``ValueError`` with a one-line message."""
    check_values(config, with_prefix("blurme_"))


def run_blurme(ctx: RunContext) -> DefenceResult:
    """``--unlearn blurme``: add other-class indicative items to every training profile
    (all sensitive attributes in turn), then retrain."""
    config = ctx.config
    check_blurme_config(config)
    started = time.perf_counter()
    p, strategy = float(config["blurme_p"]), BlurMeStrategy(config["blurme_strategy"])
    train = split_frames(ctx)["train"]
    profiles = _profiles(ctx, train)
    codes = {name: lab.codes for name, lab in ctx.attributes.items()}
    weights = {
        name: indicative_weights(profiles, code, ctx.dataset.item_num, float(config["blurme_c"]))
        for name, code in codes.items()
    }
    rng = np.random.default_rng(int(config["seed"])) if strategy == BlurMeStrategy.SAMPLED else None
    users, items = blurme_additions(profiles, codes, weights, p, rng)
    for user, item in zip(users, items, strict=True):
        profiles[user] = np.append(profiles[user], item)
    uid, iid = ctx.dataset.uid_field, ctx.dataset.iid_field
    obfuscated = with_profiles(train, uid, iid, profiles, _fill(ctx, train))
    seconds = time.perf_counter() - started
    new, summary = retrain_on_derived(ctx, "blurme", obfuscated)
    info = {
        "p": p,
        "c": float(config["blurme_c"]),
        "strategy": strategy.value,
        "driving_attributes": list(codes),
        "indicative_items": {n: [int((w > 0).sum()) for w in ws] for n, ws in weights.items()},
        "added_interactions": len(items),
        "train_interactions": [len(train), len(obfuscated)],
        "obfuscation_seconds": seconds,
        **summary,
    }
    return DefenceResult(new.model, info, new)


def run_ldp(ctx: RunContext) -> DefenceResult:
    """``--unlearn ldp``: randomised response on every user's training item vector, then
    retrain."""
    check_values(ctx.config, with_prefix("ldp_"))
    started = time.perf_counter()
    epsilon = float(ctx.config["ldp_epsilon"])
    train = split_frames(ctx)["train"]
    profiles = _profiles(ctx, train)
    rng = np.random.default_rng(int(ctx.config["seed"]))
    reported = randomized_response(profiles, ctx.dataset.item_num, epsilon, rng)
    uid, iid = ctx.dataset.uid_field, ctx.dataset.iid_field
    obfuscated = with_profiles(train, uid, iid, reported, _fill(ctx, train))
    kept = sum(len(np.intersect1d(a, b)) for a, b in zip(profiles, reported, strict=True))
    seconds = time.perf_counter() - started
    new, summary = retrain_on_derived(ctx, "ldp", obfuscated)
    info = {
        "epsilon": epsilon,
        "flip_probability": flip_probability(epsilon),
        "kept_interactions": int(kept),
        "added_interactions": int(len(obfuscated) - kept),
        "train_interactions": [len(train), len(obfuscated)],
        "obfuscation_seconds": seconds,
        **summary,
    }
    return DefenceResult(new.model, info, new)


def run_rap(ctx: RunContext) -> DefenceResult:
    """``--unlearn rap``: train the run's backbone from scratch as its RAP variant
    (``RAP_VARIANTS``: BPR, NeuMF, LightGCN) on the run's data."""
    backbone = ctx.config["model"]
    variant = RAP_VARIANTS.get(backbone)
    if variant is None:
        raise ValueError(
            f"--unlearn rap retrains one of {sorted(RAP_VARIANTS)} as its RAP variant, "
            f"not {backbone}"
        )
    check_rap_config(ctx.config)
    name = variant.__name__
    config = copy.deepcopy(ctx.config)
    config["model"] = name
    config.model, config.model_class = name, variant
    config["checkpoint_dir"] = str(ctx.output_dir / "retrain")
    init_seed(config["seed"], config["reproducibility"])
    model = variant(config, ctx.train_data._dataset).to(config["device"])
    trainer = fit_model(config, model, ctx.train_data, ctx.valid_data)
    info = {
        "model": name,
        "lambda": model.rap_lambda,
        "game": model.adversary.game.value,
        "hidden_size": int(config["rap_hidden_size"]),
        **training_summary(trainer),
        "loss_parts": {
            "recommender": [a for a, _ in trainer.loss_parts],
            "attacker": [b for _, b in trainer.loss_parts],
        },
    }
    return DefenceResult(model, info, dataclasses.replace(ctx, config=config, model=model))
