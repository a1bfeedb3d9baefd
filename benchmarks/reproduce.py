"""Regenerate every results file under benchmarks/results and every number README.md,
benchmarks/README.md and docs/ quote from them: the benchmark commands one after the other
(each resumes where an earlier call stopped), then ``check.py --write`` (the generated blocks
from the new CSVs) and ``check.py``.

    python benchmarks/reproduce.py --dry-run                  # the commands, nothing run
    python benchmarks/reproduce.py --originals outputs/originals --workers 12 --gpu
    python benchmarks/reproduce.py --only paper_tables,blocks  # some steps
    python benchmarks/reproduce.py --cuda                      # also the GPU scale study

Hours on a CPU: train the originals on a GPU first (``benchmarks/gpu_originals.py``) and pass
their folder; the grid's defences then run wherever this runs. A step that fails stops the
rest (its command is printed; run the same line again to resume).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results"


@dataclass(frozen=True)
class Step:
    """One command and the results it rewrites; ``cuda``: needs a GPU (run with --cuda)."""

    name: str
    argv: tuple[str, ...]
    writes: str
    grid: bool = False  # takes the grid options (--originals, --workers, --gpu)
    cuda: bool = False


STEPS = (
    Step(
        "paper_tables",
        ("benchmarks/paper_tables.py", "--out", "outputs/bench/paper_tables"),
        f"{RESULTS}/paper_tables",
        grid=True,
    ),
    Step(
        "embedding_size",
        ("benchmarks/embedding_size.py", "--out", "outputs/bench/embedding_size"),
        f"{RESULTS}/embedding_size",
        grid=True,
    ),
    Step(
        "ablation",
        ("run_recbole_au.py", "--tune", "configs/sweeps/ablation.yaml", "--output_dir"),
        f"{RESULTS}/ablation",
    ),
    Step("scale_df", ("-m", "benchmarks.scale", "df"), f"{RESULTS}/scale"),
    Step(
        "scale_df_cuda",
        ("-m", "benchmarks.scale", "df", "--device", "cuda", "--out"),
        f"{RESULTS}/scale/cuda",
        cuda=True,
    ),
    Step("scale_dd", ("-m", "benchmarks.scale", "dd"), f"{RESULTS}/scale"),
    Step("distributions", ("-m", "benchmarks.distributions"), f"{RESULTS}/distributions"),
    Step("blocks", ("benchmarks/check.py", "--write"), "README.md, benchmarks/README.md, docs/"),
)


def command(step: Step, args: argparse.Namespace) -> list[str]:
    """The step's command line, with the grid options where it takes them."""
    argv = [sys.executable, *step.argv]
    if argv[-1] == "--output_dir" or argv[-1] == "--out":
        argv.append(step.writes)
    if step.name == "ablation":
        argv.append("--resume")
    if step.grid:
        if args.originals is not None:
            argv += ["--originals", str(args.originals)]
        if args.workers is not None:
            argv += ["--workers", str(args.workers)]
        if args.gpu:
            argv.append("--gpu")
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected steps in order; the exit status of the first that fails, else 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--only", help=f"comma-separated of {','.join(s.name for s in STEPS)}")
    parser.add_argument("--cuda", action="store_true", help="also the steps that need a GPU")
    parser.add_argument("--originals", type=Path, help="original checkpoints (gpu_originals.py)")
    parser.add_argument("--workers", type=int, help="trials at a time for the grid")
    parser.add_argument("--gpu", action="store_true", help="the grid's trials share the GPU")
    args = parser.parse_args(argv)
    names = [s.name for s in STEPS]
    chosen = args.only.split(",") if args.only else names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        print(f"error: unknown steps {unknown}; choose from {', '.join(names)}", file=sys.stderr)
        return 2
    for step in STEPS:
        if step.name not in chosen or (step.cuda and not args.cuda and not args.only):
            continue
        line = command(step, args)
        print(f"[{step.name}] {shlex.join(line)}   # writes {step.writes}", flush=True)
        if args.dry_run:
            continue
        done = subprocess.run(line, cwd=REPO, check=False)
        if done.returncode != 0:
            print(f"[{step.name}] failed (exit {done.returncode}); rerun to resume", flush=True)
            return done.returncode
    if not args.dry_run:
        return subprocess.run([sys.executable, "benchmarks/check.py"], cwd=REPO).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
