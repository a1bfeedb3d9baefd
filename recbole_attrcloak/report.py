"""Outputs of a run: report.json, report.md, embeddings.npz and checkpoints, all written
atomically (``files.atomic_path``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbole_attrcloak.audit.core import dropped_line
from recbole_attrcloak.backbone import clear_cached_representations
from recbole_attrcloak.files import atomic_path, write_text

UTILITY_KEYS = ("ndcg@5", "ndcg@10", "hit@5", "hit@10")
#: The files of a run in its output folder (besides RecBole's timestamped training checkpoint).
REPORT, MARKDOWN, LOG, EMBEDDINGS = "report.json", "report.md", "recbole.log", "embeddings.npz"


def unlearned_names(model: str, dataset: str, method: str) -> tuple[str, str]:
    """The file names of the protected model: its RecBole checkpoint and its weights-only
    export, named after the run (the model it was made from, its dataset, the method)."""
    stem = f"{model}-{dataset}-{method}"
    return f"{stem}.pth", f"{stem}-weights.pt"


def output_names(
    model: str, dataset: str, method: str, embeddings: bool, folders: Sequence[str] = ()
) -> list[str]:
    """Every file (and the defence's ``folders``) a run writes into its output folder, so that
    a run can refuse to start where an earlier one left any of them."""
    names = [REPORT, MARKDOWN, LOG, *([EMBEDDINGS] if embeddings else [])]
    if method != "none":
        names += [*unlearned_names(model, dataset, method), *folders]
    return names


def _finite_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights on the CPU (portable to machines without a GPU), all finite."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FloatingPointError(f"refusing to save non-finite weights: {bad[:3]}")
    return state


def save_recbole_checkpoint(path: Path, config, model: torch.nn.Module) -> str:
    """A checkpoint in RecBole's own format (loads with ``load_data_and_model``)."""
    if path.exists():
        raise FileExistsError(f"refusing to overwrite {path}")
    clear_cached_representations(model)
    checkpoint = {
        "config": config,
        "epoch": 0,
        "cur_step": 0,
        "best_valid_score": None,
        "state_dict": _finite_state(model),
        "other_parameter": model.other_parameter(),
    }
    with atomic_path(path, replace=False) as tmp:
        torch.save(checkpoint, tmp)
    return str(path)


def save_weights(path: Path, config, model: torch.nn.Module) -> str:
    """Weights only, loadable with ``torch.load(path, weights_only=True)``."""
    if path.exists():
        raise FileExistsError(f"refusing to overwrite {path}")
    payload = {
        "model": str(config["model"]),
        "dataset": str(config["dataset"]),
        "state_dict": _finite_state(model),
    }
    with atomic_path(path, replace=False) as tmp:
        torch.save(payload, tmp)
    return str(path)


def save_embeddings(path: Path, tokens: np.ndarray, stages: Mapping[str, np.ndarray]) -> str:
    """``user_tokens`` plus one (n_users, d) array per stage."""
    with atomic_path(path, replace=False) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, user_tokens=tokens, **stages)
    return str(path)


def spectrum(reps: np.ndarray) -> dict[str, float]:
    """Spread of the representations' covariance eigenvalues: a collapse shows as a falling
    effective rank or a rising condition number."""
    eig = np.clip(np.linalg.eigvalsh(np.cov(reps, rowvar=False)), 0.0, None)
    p = eig / eig.sum()
    entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
    positive = eig[eig > eig.max() * 1e-12]
    return {
        "effective_rank": float(np.exp(entropy)),
        "log10_condition": float(np.log10(positive.max() / positive.min())),
        "eigenvalue_max": float(eig.max()),
        "eigenvalue_median": float(np.median(eig)),
        "eigenvalue_min": float(eig.min()),
        "total_variance": float(eig.sum()),
    }


def _utility(scores: Mapping[str, float]) -> dict[str, float]:
    return {k: float(scores[k]) for k in UTILITY_KEYS if k in scores} | {
        k: float(v) for k, v in scores.items() if k not in UTILITY_KEYS
    }


def build(
    config,
    checkpoint: str,
    stages: Mapping[str, Any],
    result: Mapping[str, Any],
    seconds: Mapping[str, float],
    labels: Mapping[str, Any],
) -> dict[str, Any]:
    """The report.json content."""
    for stage in stages.values():
        stage["utility"] = _utility(stage["utility"])
    content: dict[str, Any] = {
        "model": str(config["model"]),
        "dataset": str(config["dataset"]),
        "method": str(config["unlearn"]),
        "attributes": {
            name: {"classes": list(lab.classes), "n_known": int(lab.n_known)}
            for name, lab in labels.items()
        },
        "checkpoint": {"original": checkpoint}
        | {k: result[k] for k in ("checkpoint", "weights") if k in result},
        "stages": dict(stages),
        "seconds": dict(seconds),
    }
    extra = {k: v for k, v in result.items() if k not in ("checkpoint", "weights")}
    if extra:
        content["unlearning"] = extra
    if "unlearned" in stages:
        before, after = stages["original"]["utility"], stages["unlearned"]["utility"]
        content["retention"] = {
            k: after[k] / before[k] for k in UTILITY_KEYS if before.get(k) and k in after
        }
    return content


def write(out: Path, content: Mapping[str, Any]) -> None:
    """report.json and report.md in ``out``."""
    text = json.dumps(content, indent=2, default=_json_default) + "\n"
    write_text(out / MARKDOWN, markdown(content), replace=False)
    write_text(out / REPORT, text, replace=False)  # last: a report.json means a finished run


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _fmt(metric: Mapping[str, Any] | None, test: Mapping[str, Any] | None) -> str:
    """``mean ± std [ci95] p=…`` of one attacker under one protocol."""
    if not metric:
        return "–"
    text = f"{metric['mean']:.3f} ± {metric['std']:.3f}"
    if "ci95" in metric:
        text += " [{:.3f}, {:.3f}]".format(*metric["ci95"])
    if test:
        text += f" p={test['p_value']:.2g}"
    return text


def markdown(content: Mapping[str, Any]) -> str:
    """A human-readable summary of report.json."""
    lines = [
        f"# {content['model']} on {content['dataset']} — method: {content['method']}",
        "",
        "## Utility (test split)",
        "",
        "| stage | " + " | ".join(UTILITY_KEYS) + " |",
        "|---|" + "---|" * len(UTILITY_KEYS),
    ]
    for name, stage in content["stages"].items():
        values = " | ".join(f"{stage['utility'].get(k, float('nan')):.4f}" for k in UTILITY_KEYS)
        lines.append(f"| {name} | {values} |")
    lines += [
        "",
        "## Attribute inference (balanced accuracy; chance = 1/k)",
        "",
        "Shadow protocol (paper: 20 % of users train the attacker) and k-fold protocol (attacker "
        "trains on most users: stronger). Each cell: mean ± std over splits, [bootstrap 95 % "
        "interval], p = one-sided permutation p-value above chance (shuffled embeddings; "
        "docs/audit.md).",
        "",
        "| stage | attribute | chance | majority | attacker | shadow | k-fold | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, stage in content["stages"].items():
        for attr, res in stage["privacy"].items():
            attackers = [k for k, v in res.items() if isinstance(v, dict) and "accuracy" in v]
            attackers += [a for a in res.get("kfold", {}) if a not in attackers]
            verdict = res.get("strongest", {}).get("verdict", "")
            for attacker in attackers:
                shadow = res.get(attacker, {}).get("balanced_accuracy")
                kfold = res.get("kfold", {}).get(attacker, {}).get("balanced_accuracy")
                tests = res.get("significance", {})
                lines.append(
                    f"| {name} | {attr} | {res['chance']:.3f} | {res['majority']:.3f} | "
                    f"{attacker} | {_fmt(shadow, tests.get('shadow', {}).get(attacker))} | "
                    f"{_fmt(kfold, tests.get('kfold', {}).get(attacker))} | {verdict} |"
                )
    dropped = [
        f"- {name}: {line}"
        for name, stage in content["stages"].items()
        for attr, res in stage["privacy"].items()
        if (line := dropped_line(attr, res))
    ]
    lines += ["", *dropped] if dropped else []
    lines += ["", "Verdict of each stage over all attributes (two-sided, familywise):", ""]
    lines += [
        f"- {name}: {stage.get('verdict', {}).get('verdict', 'not audited')}"
        for name, stage in content["stages"].items()
    ]
    lines += _unlearning_lines(content.get("unlearning", {}))
    lines += ["", "## Embedding spectrum", "", "| stage | effective rank | log10 condition |"]
    lines.append("|---|---|---|")
    for name, stage in content["stages"].items():
        spec = stage["embedding"]
        lines.append(f"| {name} | {spec['effective_rank']:.1f} | {spec['log10_condition']:.2f} |")
    lines += ["", "## Seconds", ""]
    lines += [f"- {k}: {v:.1f}" for k, v in content["seconds"].items()]
    return "\n".join(lines) + "\n"


def _unlearning_lines(info: Mapping[str, Any]) -> list[str]:
    """AttrCloak's stop rule and every term of L_AU against its target (none for the other
    defences)."""
    if "terms" not in info:
        return []
    lines = [
        "",
        "## Unlearning",
        "",
        f"Stopped by `{info['stop_reason']}`; kept the state of step {info['steps']} "
        f"(L_AU {info['initial_l_au']:.4g} → {info['final_l_au']:.4g}).",
        "",
        "| term | value | target | random-label level | met |",
        "|---|---|---|---|---|",
    ]
    for term in info["terms"]:
        level = "–" if term["reference"] is None else f"{term['reference']:.4g}"
        met = "yes" if term["met"] else "no"
        lines.append(
            f"| {term['name']} | {term['value']:.4g} | {term['target']:.4g} | {level} | {met} |"
        )
    return lines
