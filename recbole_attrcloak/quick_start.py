"""One run of the pipeline, the same for the CLI, notebooks and every Ray Tune trial:

load or train a RecBole model → audit it → apply a defence → audit again → write the report.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.trainer import Trainer
from recbole.utils import init_logger, init_seed

from recbole_attrcloak import compat, report
from recbole_attrcloak.audit import AuditSettings, audit_representations
from recbole_attrcloak.config import build_config, check_config, checkpoint_settings
from recbole_attrcloak.context import RunContext
from recbole_attrcloak.data.attributes import AttributeLabels, encode_attribute, read_user_file
from recbole_attrcloak.registry import (
    clear_cached_representations,
    get_defence,
    get_model,
    get_trainer,
    user_side,
)

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """The dataset cannot be audited as asked (missing .user file, unknown attribute...)."""


def run(
    model: str = "BPR",
    dataset: str = "ml-100k",
    config_files: Sequence[str] = (),
    config_dict: Mapping[str, Any] | None = None,
    checkpoint: str | None = None,
    unlearn: str | None = None,
    attributes: Sequence[str] | None = None,
    output_dir: str | None = None,
    export_embeddings: bool = False,
    progress: bool = False,
    original_stage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the pipeline and return the report (also written to ``output_dir``).

    ``config_dict`` takes any RecBole or recbole-attrcloak key; ``unlearn`` and ``attributes``
    are shortcuts for the ``unlearn`` and ``sensitive_attributes`` keys. ``original_stage`` is
    the original model's audit from an earlier run on the same checkpoint (a sweep's cache, or
    ``--original_report``): it is reused instead of auditing the original again, and must have
    been audited with the same preset and seed.
    """
    started = time.perf_counter()
    compat.apply_recbole_shims()  # numpy >= 2 / scipy >= 1.13; also in every Ray Tune trial
    overrides = dict(config_dict or {})
    if unlearn is not None:
        overrides["unlearn"] = unlearn
    if attributes is not None:
        overrides["sensitive_attributes"] = list(attributes)
    defence = get_defence(overrides.get("unlearn", "none"))
    out = _prepare_output_dir(output_dir, model, dataset, overrides.get("unlearn", "none"))

    seconds: dict[str, float] = {}
    tic = time.perf_counter()
    config, ckpt = _load_config(model, dataset, config_files, overrides, checkpoint)
    config["checkpoint_dir"] = str(out)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    log_handler = _log_to(out / "recbole.log")
    try:
        data = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, data)
        labels = load_attributes(config, data)
        model_obj, checkpoint_path = _model(config, train_data, valid_data, ckpt, checkpoint)
        seconds["load" if ckpt else "train"] = time.perf_counter() - tic
        ctx = RunContext(config, data, train_data, valid_data, test_data, model_obj, labels, out)
        settings = AuditSettings.preset(config["audit"])
        settings.seed = int(config["audit_seed"])
        audited_with = {"preset": str(config["audit"]), "seed": settings.seed}

        stages: dict[str, Any] = {}
        embeddings: dict[str, np.ndarray] = {}
        tic = time.perf_counter()
        if original_stage is None:
            stages["original"], embeddings["original"] = audit_model(
                ctx, model_obj, settings, progress
            )
            stages["original"]["audit"] = audited_with
            seconds["audit_original"] = time.perf_counter() - tic
        else:
            if original_stage.get("audit") != audited_with:
                raise ValueError(
                    f"the reused original audit ran with {original_stage.get('audit')}, "
                    f"this run audits with {audited_with}"
                )
            stages["original"] = copy.deepcopy(dict(original_stage))
            embeddings["original"] = user_representations(model_obj)

        tokens = user_tokens(data)
        result: dict[str, Any] = {}
        if defence is not None:
            tic = time.perf_counter()
            outcome = defence(ctx)
            seconds["unlearn"] = time.perf_counter() - tic
            result = outcome.info
            after = outcome.context or ctx
            stem = out / f"{after.config['model']}-{after.config['dataset']}-{config['unlearn']}"
            result["checkpoint"] = report.save_recbole_checkpoint(
                stem.with_suffix(".pth"), after.config, outcome.model
            )
            result["weights"] = report.save_weights(
                Path(f"{stem}-weights.pt"), after.config, outcome.model
            )
            tic = time.perf_counter()
            stages["unlearned"], reps = audit_model(after, outcome.model, settings, progress)
            stages["unlearned"]["audit"] = audited_with
            embeddings["unlearned"] = _align(reps, user_tokens(after.dataset), tokens)
            seconds["audit_unlearned"] = time.perf_counter() - tic
        seconds["total"] = time.perf_counter() - started

        content = report.build(config, checkpoint_path, stages, result, seconds, labels)
        content["output_dir"] = str(out)
        if export_embeddings:
            content["embeddings"] = report.save_embeddings(
                out / "embeddings.npz", tokens, embeddings
            )
        report.write(out, content)
        return content
    finally:
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()


def user_tokens(dataset) -> np.ndarray:
    """The users' RecBole tokens in internal-id order, without the padding user."""
    return np.asarray(dataset.field2id_token[dataset.uid_field][1:]).astype(str)


def _align(reps: np.ndarray, tokens: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rows of ``reps`` (ordered like ``tokens``) reordered to ``target``'s order."""
    if np.array_equal(tokens, target):
        return reps
    index = {t: i for i, t in enumerate(tokens)}
    out = np.full((len(target), reps.shape[1]), np.nan, dtype=reps.dtype)
    for row, token in enumerate(target):
        if token in index:
            out[row] = reps[index[token]]
    return out


def _prepare_output_dir(output_dir: str | None, model: str, dataset: str, method: str) -> Path:
    if output_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        output_dir = f"saved/attrcloak/{model}-{dataset}-{method}-{stamp}"
    out = Path(output_dir)
    if (out / "report.json").exists():
        raise FileExistsError(f"{out} already holds a report; choose another --output_dir")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _load_config(
    model: str,
    dataset: str,
    config_files: Sequence[str],
    overrides: dict[str, Any],
    checkpoint: str | None,
) -> tuple[Config, dict | None]:
    """The run's config: fresh, or the checkpoint's own with the user's settings on top."""
    if checkpoint is None:
        return build_config(model, dataset, config_files, overrides), None
    ckpt = compat.load_checkpoint(checkpoint)
    config = ckpt["config"]
    if config["dataset"] != dataset:
        raise compat.CheckpointError(
            f"checkpoint {checkpoint} was trained on dataset '{config['dataset']}', not '{dataset}'"
        )
    if config["model"] != model:
        raise compat.CheckpointError(
            f"checkpoint {checkpoint} holds a {config['model']} model, not {model}"
        )
    fresh = build_config(config["model"], dataset, config_files, overrides)
    for key, value in checkpoint_settings(fresh).items():
        config[key] = value
    check_config(config)
    return config, ckpt


def _model(config: Config, train_data, valid_data, ckpt: dict | None, path: str | None):
    """The checkpoint's model, or one trained now (best validation epoch kept) and its path."""
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    if ckpt is None:
        return model, fit_model(config, model, train_data, valid_data).saved_model_file
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise compat.CheckpointError(
            f"checkpoint {path} does not fit dataset '{config['dataset']}' as loaded here: {first}"
        ) from None
    model.load_other_parameter(ckpt.get("other_parameter"))
    return model, str(path)


def fit_model(config: Config, model: torch.nn.Module, train_data, valid_data) -> Trainer:
    """Train ``model`` with the trainer for ``config``'s model and load its best epoch on the
    validation metric (also used by the retraining defences)."""
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True, show_progress=config["show_progress"])
    model.load_state_dict(compat.load_checkpoint(trainer.saved_model_file)["state_dict"])
    return trainer


def load_attributes(config: Config, dataset) -> dict[str, AttributeLabels]:
    """Sensitive attributes per internal user id (row 0, RecBole's padding user, is unknown).

    Read from the .user atomic file and joined on the users' tokens rather than through
    RecBole's ``load_col``, because RecBole fills missing float values with the column mean,
    which would invent attribute values for users who gave none.
    """
    names = list(config["sensitive_attributes"])
    user_file = Path(config["data_path"]) / f"{config['dataset']}.user"
    if not user_file.is_file():
        raise DataError(
            f"dataset '{config['dataset']}' has no .user file ({user_file}): "
            "sensitive attributes are read from it"
        )
    frame = read_user_file(user_file, names)
    frame = frame.drop_duplicates(subset=frame.columns[0]).set_index(frame.columns[0])
    tokens = np.asarray(dataset.field2id_token[dataset.uid_field]).astype(str)
    aligned = frame.reindex(tokens)
    return {name: encode_attribute(name, aligned[name].tolist()) for name in names}


def audit_model(
    ctx: RunContext, model: torch.nn.Module, settings: AuditSettings, progress: bool = False
) -> tuple[dict[str, Any], np.ndarray]:
    """Utility (RecBole evaluator) and privacy (attackers) of one model; also its user
    representations (without the padding row)."""
    tic = time.perf_counter()
    utility = evaluate_utility(ctx.config, model, ctx.valid_data, ctx.test_data)
    seconds_utility = time.perf_counter() - tic
    reps = user_representations(model).astype(np.float64)
    labels = {name: _drop_padding(lab) for name, lab in ctx.attributes.items()}
    tic = time.perf_counter()
    privacy = audit_representations(reps, labels, settings, progress=progress)
    stage = {
        "utility": utility["test"],
        "valid_utility": utility["valid"],
        "privacy": privacy,
        "embedding": report.spectrum(reps),
        "seconds": {"utility": seconds_utility, "privacy": time.perf_counter() - tic},
    }
    return stage, reps.astype(np.float32)


def user_representations(model: torch.nn.Module) -> np.ndarray:
    """All users' representations (n_users, d), without the padding row."""
    with torch.no_grad():
        return user_side(model).compute(model).detach().cpu().numpy()[1:]


def _drop_padding(labels: AttributeLabels) -> AttributeLabels:
    return AttributeLabels(labels.name, labels.codes[1:], labels.classes)


def evaluate_utility(config: Config, model: torch.nn.Module, valid_data, test_data) -> dict:
    """NDCG/Hit at the configured cut-offs on the validation and test splits."""
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    clear_cached_representations(model)
    results = {}
    for split, data in (("valid", valid_data), ("test", test_data)):
        scores = trainer.evaluate(data, load_best_model=False, show_progress=False)
        results[split] = {k: float(v) for k, v in scores.items()}
    return results


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.getEffectiveLevel(), logging.INFO))  # RecBole's own level, INFO
    return handler
