"""One run of the pipeline, the same for the CLI, notebooks and every Ray Tune trial:

load or train a RecBole model → audit it → apply a defence → audit again → write the report.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_logger, init_seed

from recbole_attrcloak import compat, report
from recbole_attrcloak.audit import AuditSettings, audit_representations, overall_verdict
from recbole_attrcloak.backbone import evaluate_utility, fit_model, user_representations
from recbole_attrcloak.config import (
    build_config,
    check_against_data,
    check_config,
    checkpoint_settings,
)
from recbole_attrcloak.context import DefenceResult, RunContext
from recbole_attrcloak.data.attributes import AttributeLabels, load_attributes
from recbole_attrcloak.defences import DEFENCES, check_backbone, get_defence
from recbole_attrcloak.provenance import device_name
from recbole_attrcloak.registry import get_model, user_side

logger = logging.getLogger(__name__)


class OutputError(ValueError):
    """An ``output_dir`` that cannot be written."""


@dataclass
class _Record:
    """What a run has measured so far: the audited stages, their user representations, and
    the seconds of each step."""

    audited_with: dict[str, Any]
    stages: dict[str, Any] = field(default_factory=dict)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


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
    # every setting is checked before anything is written, read or trained
    config, ckpt = _load_config(
        model, dataset, config_files, _overrides(config_dict, unlearn, attributes), checkpoint
    )
    method = str(config["unlearn"])
    defence = get_defence(method)
    check_backbone(method, model)
    folders = DEFENCES[method].folders if method != "none" else ()
    names = report.output_names(model, dataset, method, export_embeddings, folders)
    out = Path(output_dir or _default_output_dir(model, dataset, method))
    existed = out.is_dir()
    prepare_output_dir(out, names)
    tic = time.perf_counter()
    config["checkpoint_dir"] = str(out)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    log_handler = _log_to(out / report.LOG)
    try:
        try:
            ctx = _prepare(config, out)
        except BaseException:  # nothing trained yet: leave nothing behind
            _discard_log(log_handler, out / report.LOG, None if existed else out)
            raise
        checkpoint_path = _load_or_train(ctx, ckpt, checkpoint)
        settings = _audit_settings(config)
        record = _Record({"preset": str(config["audit"]), "seed": settings.seed})
        record.seconds["load" if ckpt else "train"] = time.perf_counter() - tic
        _original_stage(ctx, settings, record, original_stage, progress)
        result = _defend(ctx, defence, settings, record, progress) if defence else {}
        record.seconds["total"] = time.perf_counter() - started
        content = report.build(
            config, checkpoint_path, record.stages, result, record.seconds, ctx.attributes
        )
        content["output_dir"] = str(out)
        content["device"] = device_name(config["device"])
        if export_embeddings:
            content["embeddings"] = report.save_embeddings(
                out / report.EMBEDDINGS, user_tokens(ctx.dataset), record.embeddings
            )
        report.write(out, content)
        return content
    finally:
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()


def _overrides(
    config_dict: Mapping[str, Any] | None,
    unlearn: str | None,
    attributes: Sequence[str] | None,
) -> dict[str, Any]:
    """The run's config keys: ``config_dict`` with the ``unlearn`` and ``attributes`` shortcuts."""
    overrides = dict(config_dict or {})
    if unlearn is not None:
        overrides["unlearn"] = unlearn
    if attributes is not None:
        overrides["sensitive_attributes"] = list(attributes)
    return overrides


def _prepare(config: Config, out: Path) -> RunContext:
    """Everything before training, where bad input shows: the data and its splits (checked
    against the settings), the sensitive attributes, and an untrained model, which must have a
    user representation."""
    data = create_dataset(config)
    check_against_data(config, n_items=data.item_num - 1)
    train_data, valid_data, test_data = data_preparation(config, data)
    labels = load_attributes(config, data)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    user_side(model)  # raises for a model without one (Pop, ItemKNN…), naming those supported
    return RunContext(config, data, train_data, valid_data, test_data, model, labels, out)


def _load_or_train(ctx: RunContext, ckpt: dict | None, path: str | None) -> str:
    """Load the checkpoint's weights into ``ctx.model``, or train it now (best validation epoch
    kept); return the path of the model's checkpoint."""
    config, model = ctx.config, ctx.model
    if ckpt is None:
        return fit_model(config, model, ctx.train_data, ctx.valid_data).saved_model_file
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise compat.CheckpointError(
            f"checkpoint {path} does not fit dataset '{config['dataset']}' as loaded here: {first}"
        ) from None
    model.load_other_parameter(ckpt.get("other_parameter"))
    return str(path)


def load_context(
    config: Config, ckpt: dict | None, path: str | None, out: Path
) -> tuple[RunContext, str]:
    """The run's data and model, loaded from ``ckpt`` (read from ``path``) or trained now into
    ``out``: what a defence gets (for benchmarks that call a defence directly); also the path of
    the model's checkpoint."""
    ctx = _prepare(config, Path(out))
    return ctx, _load_or_train(ctx, ckpt, path)


def _discard_log(handler: logging.Handler, log: Path, folder: Path | None) -> None:
    """Remove the run's log (and ``folder``, created by the run, if that leaves it empty)."""
    logging.getLogger().removeHandler(handler)
    handler.close()
    log.unlink(missing_ok=True)
    if folder is not None and not any(folder.iterdir()):
        folder.rmdir()


def _audit_settings(config: Config) -> AuditSettings:
    settings = AuditSettings.preset(config["audit"])
    settings.seed = int(config["audit_seed"])
    settings.n_jobs = int(config["audit_n_jobs"])
    return settings


def _original_stage(
    ctx: RunContext,
    settings: AuditSettings,
    record: _Record,
    reused: Mapping[str, Any] | None,
    progress: bool,
) -> None:
    """Audit the original model, or take over ``reused`` (audited with the same settings)."""
    if reused is not None:
        if reused.get("audit") != record.audited_with:
            raise ValueError(
                f"the reused original audit ran with {reused.get('audit')}, "
                f"this run audits with {record.audited_with}"
            )
        record.stages["original"] = copy.deepcopy(dict(reused))
        record.stages["original"].setdefault(
            "verdict", overall_verdict(reused["privacy"], settings.alpha)
        )
        record.embeddings["original"] = user_representations(ctx.model)
        return
    tic = time.perf_counter()
    stage, record.embeddings["original"] = audit_model(ctx, ctx.model, settings, progress)
    record.stages["original"] = {**stage, "audit": record.audited_with}
    record.seconds["audit_original"] = time.perf_counter() - tic


def _defend(
    ctx: RunContext,
    defence: Callable[[RunContext], DefenceResult],
    settings: AuditSettings,
    record: _Record,
    progress: bool,
) -> dict[str, Any]:
    """Apply the defence, save the protected model and audit it; return its report entry."""
    tic = time.perf_counter()
    outcome = defence(ctx)
    record.seconds["unlearn"] = time.perf_counter() - tic
    result = outcome.info
    after = outcome.context or ctx
    checkpoint, weights = report.unlearned_names(
        ctx.config["model"], ctx.config["dataset"], ctx.config["unlearn"]
    )
    result["checkpoint"] = report.save_recbole_checkpoint(
        ctx.output_dir / checkpoint, after.config, outcome.model
    )
    result["weights"] = report.save_weights(ctx.output_dir / weights, after.config, outcome.model)
    tic = time.perf_counter()
    stage, reps = audit_model(after, outcome.model, settings, progress)
    record.stages["unlearned"] = {**stage, "audit": record.audited_with}
    tokens = user_tokens(ctx.dataset)
    record.embeddings["unlearned"] = _align(reps, user_tokens(after.dataset), tokens)
    record.seconds["audit_unlearned"] = time.perf_counter() - tic
    return result


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


def _default_output_dir(model: str, dataset: str, method: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return f"saved/attrcloak/{model}-{dataset}-{method}-{stamp}"


def prepare_output_dir(output_dir: str | Path, names: Sequence[str]) -> Path:
    """Create ``output_dir`` and make sure a file can be written there, and that none of
    ``names`` (what the run will write) exists yet: an earlier run's outputs are never
    replaced. Raises ``FileExistsError`` or ``OutputError`` (one line) before any work."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--output_dir {out} is a file, not a folder")
    earlier = [name for name in names if (out / name).exists()]
    if earlier:
        raise FileExistsError(
            f"{out} already holds {', '.join(earlier)} of an earlier run; "
            "choose another --output_dir"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to --output_dir {out}: {exc.strerror or exc}") from None
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
    for key in ("use_gpu", "gpu_id", "device"):  # where it runs now, not where it was trained
        config[key] = fresh[key]
    check_config(config)
    return config, ckpt


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
        "verdict": overall_verdict(privacy, settings.alpha),
        "embedding": report.spectrum(reps),
        "seconds": {"utility": seconds_utility, "privacy": time.perf_counter() - tic},
    }
    return stage, reps.astype(np.float32)


def _drop_padding(labels: AttributeLabels) -> AttributeLabels:
    return AttributeLabels(labels.name, labels.codes[1:], labels.classes)


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.getEffectiveLevel(), logging.INFO))  # RecBole's own level, INFO
    return handler
