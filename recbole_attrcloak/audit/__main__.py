"""Audit exported user embeddings offline.

    python -m recbole_attrcloak.audit EMBEDDINGS.npz --user_file ml-100k.user \\
        --attributes gender,age,occupation [--audit quick|full] [--output report.json] \\
        [--stage NAME]

The ``.npz`` holds ``user_tokens`` (the users' RecBole tokens) and one (n_users, d) array per
stage (``original``, ``unlearned``, …); users are joined to the ``.user`` file by token. Prints a
Markdown summary; ``--output`` writes the full report as JSON ``{"settings", "stages"}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import zipfile
from collections.abc import Sequence
from typing import NoReturn

import numpy as np

from recbole_attrcloak.audit.core import audit_representations, dropped_line
from recbole_attrcloak.audit.settings import AuditPreset, AuditSettings
from recbole_attrcloak.data.attributes import user_attributes
from recbole_attrcloak.files import write_text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Usage errors as one line on stderr, exit code 2, like every other bad input."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m recbole_attrcloak.audit",
        description="Audit how well attackers infer user attributes from exported embeddings.",
    )
    parser.add_argument("embeddings", help=".npz with user_tokens and one array per stage")
    parser.add_argument("--user_file", required=True, help="RecBole atomic .user file")
    parser.add_argument("--attributes", required=True, help="comma-separated .user columns")
    parser.add_argument(
        "--audit",
        choices=[p.value for p in AuditPreset],
        default=AuditPreset.FULL.value,
        help="quick: shadow protocol, mlp + xgboost; full (default): both protocols, six "
        "attackers; both with permutation tests (docs/audit.md)",
    )
    parser.add_argument("--output", help="write the full report here as JSON")
    parser.add_argument("--stage", help="audit only this stage (default: every stage)")
    return parser


def load_stages(path: str, stage: str | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """User tokens and the (n_users, d) embeddings of each requested stage from an ``.npz``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"embeddings file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npz ({error})") from error
    if "user_tokens" not in arrays:
        raise ValueError(f"{path}: no 'user_tokens' array (found: {', '.join(arrays) or 'none'})")
    tokens = arrays.pop("user_tokens").astype(str)
    unique, counts = np.unique(tokens, return_counts=True)
    if (counts > 1).any():
        twice = unique[counts > 1]
        raise ValueError(
            f"{path}: duplicate user_tokens, e.g. {str(twice[0])!r} ({len(twice)} in all): "
            "each user must have one row"
        )
    if stage is not None:
        if stage not in arrays:
            raise ValueError(f"{path}: no stage {stage!r} (stages: {', '.join(arrays) or 'none'})")
        arrays = {stage: arrays[stage]}
    if not arrays:
        raise ValueError(f"{path}: no embedding stage besides user_tokens")
    for name, X in arrays.items():
        if X.ndim != 2 or X.shape[0] != len(tokens) or not np.issubdtype(X.dtype, np.number):
            raise ValueError(
                f"{path}: stage {name!r} has shape {X.shape} and dtype {X.dtype}; "
                f"expected a numeric ({len(tokens)}, d) array matching user_tokens"
            )
    return tokens, arrays


def _cell(scores: dict, test: dict | None) -> str:
    """Balanced accuracy, with its permutation p-value when the pair was tested."""
    cell = f"{scores['balanced_accuracy']['mean']:.3f}"
    return cell if test is None else f"{cell} (p={test['p_value']:.2g})"


def markdown(reports: dict[str, dict], settings: AuditSettings) -> str:
    """Balanced accuracy (and p-value) per attacker and protocol, then the verdict per stage and
    attribute."""
    attackers = list(settings.attackers)
    lines = [
        "| stage | attribute | protocol | chance | " + " | ".join(attackers) + " |",
        "|---" * (4 + len(attackers)) + "|",
    ]
    for stage, report in reports.items():
        for attribute, entry in report.items():
            for protocol in settings.protocols:
                scores = entry if protocol == "shadow" else entry[protocol]
                tests = entry["significance"][protocol]
                cells = [_cell(scores[a], tests.get(a)) for a in attackers]
                lines.append(
                    f"| {stage} | {attribute} | {protocol} | {entry['chance']:.3f} | "
                    + " | ".join(cells)
                    + " |"
                )
    lines += [
        "",
        "| stage | attribute | strongest | balanced acc. | gap | familywise p | verdict |",
    ]
    lines.append("|---" * 7 + "|")
    for stage, report in reports.items():
        for attribute, entry in report.items():
            best = entry["strongest"]
            p_value = "–" if best["p_value"] is None else f"{best['p_value']:.3g}"
            lines.append(
                f"| {stage} | {attribute} | {best['protocol']}/{best['attacker']} | "
                f"{best['balanced_accuracy']:.3f} | {best['gap_to_chance']:+.3f} | {p_value} | "
                f"{best['verdict']} |"
            )
    dropped = [
        f"- {stage}: {line}"
        for stage, report in reports.items()
        for attribute, entry in report.items()
        if (line := dropped_line(attribute, entry))
    ]
    return "\n".join(lines + (["", *dropped] if dropped else []))


def write_json(path: str, payload: dict) -> None:
    """Write ``payload`` atomically (``files.atomic_path``), never over an existing file."""
    write_text(path, json.dumps(payload, indent=2), replace=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on bad input, 130 on Ctrl-C)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted: stopped before writing a report", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.attributes.split(",") if name.strip()]
    settings = AuditSettings.preset(args.audit)
    try:
        if not names:
            raise ValueError("--attributes names no column")
        if args.output and os.path.lexists(args.output):
            raise FileExistsError(f"--output {args.output} already exists; choose another file")
        tokens, stages = load_stages(args.embeddings, args.stage)
        attributes = user_attributes(args.user_file, names, tokens)
        reports = {
            stage: audit_representations(X, attributes, settings, progress=sys.stderr.isatty())
            for stage, X in stages.items()
        }
        if args.output:
            write_json(args.output, {"settings": dataclasses.asdict(settings), "stages": reports})
    except (OSError, ValueError) as error:
        parser.error(" ".join(str(error).split()))
    print(markdown(reports, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
