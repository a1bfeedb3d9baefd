"""Mutation testing on a reproducible sample of mutmut's mutants (a full ``make mutation`` run
takes hours on two cores).

    python benchmarks/mutation_sample.py                 # generate, draw, run, summarise
    python benchmarks/mutation_sample.py --dry-run       # only print the drawn sample
    python benchmarks/mutation_sample.py --rerun-survivors   # after new tests: rerun survivors

Writes to ``benchmarks/results/mutation``: ``sample.txt`` (the drawn names), ``summary.csv``
(outcomes per module, headed by the command, date and machine), ``survivors.txt`` and, with
``--rerun-survivors``, ``rerun.csv`` (each first-pass survivor's outcome against the current
tests). The draw: every module of ``[tool.mutmut] only_mutate`` gets ``--per-module`` mutants
(all when it has fewer), the focus modules (``--focus``) ``--focus-size`` each, all by
``random.Random(--seed)`` over the sorted names.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "mutation"
MUTMUT = Path(sys.executable).with_name("mutmut")
# One BLAS/OpenMP thread (a forked torch pool deadlocks) and no joblib worker processes (a
# forked mutant waits forever on its parent's loky pool).
ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "JOBLIB_MULTIPROCESSING": "0",
}
FOCUS = ("recbole_attrcloak.losses.relabel", "recbole_attrcloak.losses.moo")
# mutmut's result names, grouped in summary.csv
STATUSES = ("killed", "survived", "timeout", "no tests", "suspicious", "segfault", "skipped")
_LINE = re.compile(r"^\s*(?P<name>\S+__mutmut_\d+): (?P<status>.+)$")


def module_of(name: str) -> str:
    """The dotted module of a mutant name (``pkg.mod.x_func__mutmut_3`` → ``pkg.mod``)."""
    return name.rsplit(".", 1)[0]


def mutmut(*args: str, check: bool = True) -> str:
    """Run the venv's mutmut with the mutation environment; its stdout."""
    done = subprocess.run(
        [str(MUTMUT), *args],
        cwd=REPO,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if check and done.returncode != 0:
        sys.exit(f"mutmut {' '.join(args[:3])} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def results() -> dict[str, str]:
    """Every generated mutant and its status (``not checked`` before a run)."""
    out = {}
    for line in mutmut("results", "--all", "true").splitlines():
        match = _LINE.match(line)
        if match:
            out[match["name"]] = match["status"].strip()
    return out


def generate() -> dict[str, str]:
    """The mutants, generating them first (with mutmut's test statistics) when ``mutants/``
    has none: ``mutmut run`` with a pattern that matches no mutant stops after generating."""
    found = results() if (REPO / "mutants").is_dir() else {}
    if not found:
        mutmut("run", "--max-children", "1", "generate.only.no.such.mutant*", check=False)
        found = results()
    if not found:
        sys.exit("mutmut generated no mutants")
    return found


def draw(
    names: Sequence[str], seed: int, per_module: int, focus: Sequence[str], focus_size: int
) -> list[str]:
    """``per_module`` mutants of each module (``focus_size`` of each focus module), all of a
    module that has fewer; drawn with ``random.Random(seed)`` module by module, sorted."""
    rng = random.Random(seed)
    by_module: dict[str, list[str]] = defaultdict(list)
    for name in sorted(names):
        by_module[module_of(name)].append(name)
    picked = []
    for module in sorted(by_module):
        pool = by_module[module]
        size = focus_size if module in focus else per_module
        picked += pool if len(pool) <= size else rng.sample(pool, size)
    return sorted(picked)


def machine_line() -> str:
    """Cores, CPU, load average and versions, for the CSV's header."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        cpu = found[0].strip() if found else cpu
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"Machine: {len(os.sched_getaffinity(0))} CPU cores ({cpu}), shared; load average {load} "
        f"at the end; Python {sys.version.split()[0]}, mutmut {metadata.version('mutmut')}, "
        f"--max-children 1, one BLAS thread, no joblib processes."
    )


def commit() -> str:
    """The checkout's short commit, with a mark when the package or tests differ from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "recbole_attrcloak", "tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head + (" (with uncommitted changes)" if dirty else "")


def write_summary(
    statuses: dict[str, str], sample: Sequence[str], header: Sequence[str], out: Path
) -> list[str]:
    """summary.csv (one row per module and a total) and survivors.txt; the survivors."""
    generated = Counter(module_of(n) for n in statuses)
    counts: dict[str, Counter] = defaultdict(Counter)
    for name in sample:
        status = statuses.get(name, "not checked")
        counts[module_of(name)][status if status in STATUSES else "other"] += 1
    columns = ["module", "generated", "sampled", *STATUSES, "other"]
    with (out / "summary.csv").open("w", newline="", encoding="utf-8") as handle:
        handle.writelines(f"# {line}\n" for line in header)
        writer = csv.writer(handle)
        writer.writerow(columns)
        total = Counter()
        for module in sorted(generated):
            row = Counter(counts[module], generated=generated[module])
            row["sampled"] = sum(counts[module].values())
            total.update(row)
            writer.writerow([module, *(row[c] for c in columns[1:])])
        writer.writerow(["total", *(total[c] for c in columns[1:])])
    survivors = [n for n in sample if statuses.get(n) == "survived"]
    (out / "survivors.txt").write_text("".join(f"{n}\n" for n in survivors), encoding="utf-8")
    return survivors


def rerun_survivors(out: Path, max_children: int, command: str) -> None:
    """Run survivors.txt's mutants against the current tests; rerun.csv: name, status."""
    survivors = (out / "survivors.txt").read_text(encoding="utf-8").split()
    if not survivors:
        return
    mutmut("run", "--max-children", str(max_children), *survivors, check=False)
    statuses = results()
    with (out / "rerun.csv").open("w", newline="", encoding="utf-8") as handle:
        handle.write(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}: `{command}`\n")
        writer = csv.writer(handle)
        writer.writerow(["mutant", "status"])
        writer.writerows([name, statuses.get(name, "not checked")] for name in survivors)


def main(argv: Sequence[str] | None = None) -> int:
    """Draw, run and summarise (or only draw, or rerun the survivors)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--per-module", type=int, default=10, help="mutants per module")
    parser.add_argument("--focus", default=",".join(FOCUS), help="modules sampled more")
    parser.add_argument("--focus-size", type=int, default=100, help="mutants per focus module")
    parser.add_argument("--max-children", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--dry-run", action="store_true", help="print the sample and stop")
    parser.add_argument("--rerun-survivors", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/mutation_sample.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if args.rerun_survivors:
        rerun_survivors(args.out, args.max_children, command.strip())
        return 0
    names = generate()
    focus = [m for m in args.focus.split(",") if m]
    sample = draw(list(names), args.seed, args.per_module, focus, args.focus_size)
    if args.dry_run:
        print("\n".join(sample))
        print(f"{len(sample)} of {len(names)} mutants", file=sys.stderr)
        return 0
    (args.out / "rerun.csv").unlink(missing_ok=True)  # it reran the previous sample's survivors
    (args.out / "sample.txt").write_text("".join(f"{n}\n" for n in sample), encoding="utf-8")
    started, code = datetime.now(UTC), commit()
    mutmut("run", "--max-children", str(args.max_children), *sample, check=False)
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    header = [
        f"Command: `{command.strip()}` (seed {args.seed}, {args.per_module} per module, "
        f"{args.focus_size} of each of {', '.join(focus)})",
        f"Date: {started:%Y-%m-%d %H:%M} UTC, wall {minutes:.0f} min; commit {code}",
        machine_line(),
    ]
    survivors = write_summary(results(), sample, header, args.out)
    print(f"{len(sample)} of {len(names)} mutants run; {len(survivors)} survived")
    return 0


if __name__ == "__main__":
    sys.exit(main())
