"""The command line: ``run_recbole_au.py`` / ``recbole-attrcloak``.

RecBole's own ``--key=value`` overrides are read by RecBole's Config from the command line.
Bad input ends with one line on stderr and exit code 2, Ctrl-C with one line and 130; the
heavy imports happen inside :func:`main`, so that even an early Ctrl-C ends that way.
"""

from __future__ import annotations

import argparse
import sys
from unittest import mock

INTERRUPTED = 130


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    from recbole_attrcloak.audit.settings import AuditPreset
    from recbole_attrcloak.defences import CHOICES
    from recbole_attrcloak.engine import Mode

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "-m", default="BPR", help="RecBole model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="RecBole dataset name")
    parser.add_argument("--config_files", default="", help="space-separated YAML files")
    parser.add_argument("--checkpoint", help="an existing RecBole checkpoint instead of training")
    parser.add_argument("--attributes", help="comma-separated .user columns, e.g. gender,age")
    parser.add_argument("--unlearn", choices=sorted(CHOICES), help="defence to apply")
    parser.add_argument(
        "--au_mode", choices=[m.value for m in Mode], help="AttrCloak retention mode"
    )
    parser.add_argument("--audit", choices=[p.value for p in AuditPreset], help="audit preset")
    parser.add_argument("--output_dir", help="where the report and checkpoints go")
    parser.add_argument("--export_embeddings", action="store_true", help="write embeddings.npz")
    parser.add_argument(
        "--original_report",
        metavar="REPORT.json",
        help="reuse the original audit of an earlier run on the same --checkpoint",
    )
    parser.add_argument("--tune", metavar="SPEC.yaml", help="run a Ray Tune sweep (docs/tune.md)")
    parser.add_argument("--ray_address", help="--tune: join this Ray cluster (or RAY_ADDRESS)")
    parser.add_argument("--resume", action="store_true", help="--tune: run only missing trials")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (2: bad input, 130: interrupted)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted: stopped before writing a report", file=sys.stderr)
        return INTERRUPTED


def _error(exc: BaseException | str) -> int:
    """Print one line on stderr; return exit code 2."""
    print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
    return 2


def _main(argv: list[str] | None) -> int:
    from recbole_attrcloak import compat

    compat.apply_recbole_shims()  # numpy >= 2 / scipy >= 1.13, before any RecBole Config
    args, extra = parse_args(argv)
    bad = [a for a in extra if not (a.startswith("--") and a.count("=") == 1)]
    if bad:
        return _error(f"unrecognised arguments {bad} (RecBole overrides are --key=value)")
    given: dict[str, str] = {}
    for key, value in (a[2:].split("=") for a in extra):
        if given.setdefault(key, value) != value:
            return _error(f"--{key} is given twice, with {given[key]!r} and {value!r}")
    overrides = {k: getattr(args, k) for k in ("au_mode", "audit") if getattr(args, k)}
    if args.tune:
        return _sweep(args, overrides, extra)
    # RecBole's Config reads --key=value from sys.argv: show it those (and only those) of argv
    with mock.patch.object(sys, "argv", [sys.argv[0], *extra]):
        return _run(args, overrides)


def _run(args: argparse.Namespace, overrides: dict) -> int:
    """One pipeline run (``quick_start.run``) as the flags ask."""
    from recbole_attrcloak.quick_start import run

    try:
        original = _original_stage(args) if args.original_report else None
        report = run(
            model=args.model,
            dataset=args.dataset,
            config_files=args.config_files.split(),
            config_dict=overrides,
            checkpoint=args.checkpoint,
            unlearn=args.unlearn,
            attributes=args.attributes.split(",") if args.attributes else None,
            output_dir=args.output_dir,
            export_embeddings=args.export_embeddings,
            progress=True,
            original_stage=original,
        )
    except (ValueError, OSError, FloatingPointError) as exc:
        return _error(exc)
    for name, stage in report["stages"].items():
        utility = ", ".join(f"{k} {v:.4f}" for k, v in stage["utility"].items() if "@10" in k)
        print(f"{name}: {utility}; {stage.get('verdict', {}).get('verdict', '')}")
    print(f"report: {report['output_dir']}/report.md")
    return 0


def _original_stage(args: argparse.Namespace) -> dict:
    """The ``original`` stage of ``--original_report``, which must describe ``--checkpoint``."""
    import json
    from pathlib import Path

    if not args.checkpoint:
        raise ValueError("--original_report needs the --checkpoint that report audited")
    path = Path(args.original_report)
    try:
        earlier = json.loads(path.read_text())
        audited = Path(earlier["checkpoint"]["original"])
        stage = earlier["stages"]["original"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"--original_report {path}: not a recbole-attrcloak report ({exc})"
        ) from None
    # a relative path is relative to the earlier run's working directory, often its output_dir
    candidates = (audited, path.parent / audited.name)
    if Path(args.checkpoint).resolve() not in {c.resolve() for c in candidates}:
        raise ValueError(f"--original_report {path} audited {audited}, not {args.checkpoint}")
    return stage


def _sweep(args: argparse.Namespace, overrides: dict, extra: list[str]) -> int:
    """``--tune``: run the sweep; --au_mode, --audit, --attributes and --key=value apply to
    every trial."""
    from recbole_attrcloak.tune import run_sweep
    from recbole_attrcloak.tune.spec import parse_yaml

    if args.attributes:
        overrides["sensitive_attributes"] = args.attributes.split(",")
    for arg in extra:
        key, value = arg[2:].split("=", 1)
        overrides[key] = parse_yaml(value)
    try:
        result = run_sweep(
            args.tune,
            args.output_dir,
            ray_address=args.ray_address,
            resume=args.resume,
            overrides=overrides,
        )
    except (ValueError, OSError) as exc:
        return _error(exc)
    except KeyboardInterrupt:
        print("interrupted: run again with --resume to finish the sweep", file=sys.stderr)
        return INTERRUPTED
    finished = int((result.table["status"] == "ok").sum())
    print(f"{finished}/{len(result.table)} trials finished; see {result.output_dir}/summary.md")
    return 0
