"""docs/testing.md's ``mutation`` block, rendered from ``benchmarks/mutation_sample.py``'s
results (results/mutation: summary.csv headed by its command, date and machine; rerun.csv,
the first-pass survivors against the tests written for them; notes.csv, written by hand, what
kills each survivor or why it is harmless)."""

from __future__ import annotations

import csv
from pathlib import Path

from recbole_attrcloak.tune.results import markdown_table

_OUTCOMES = ("killed", "survived", "timeout", "no tests", "suspicious", "segfault", "other")


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV's ``# `` header lines and its rows."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = [line[2:] for line in lines if line.startswith("# ")]
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    return header, rows


def _notes(results: Path) -> dict[str, str]:
    """notes.csv: mutant → what kills it or why it is harmless."""
    notes = results / "notes.csv"
    return {r["mutant"]: r["note"] for r in _read(notes)[1]} if notes.is_file() else {}


def focus_block(results: Path, link: str) -> str:
    """Every mutant of the focus modules against the tests after the sampled round: counts and
    each survivor with why it is harmless (results/mutation/focus)."""
    text = mutation_block(results, link)
    survivors = results / "survivors.txt"
    if not survivors.is_file() or (results / "rerun.csv").is_file():
        return text
    why = _notes(results)
    table = [
        [f"`{name.removeprefix('recbole_attrcloak.')}`", why.get(name, "not examined")]
        for name in survivors.read_text(encoding="utf-8").split()
    ]
    return "\n".join([text, *markdown_table(["survivor", "killed by / why harmless"], table)])


def mutation_block(results: Path, link: str) -> str:
    """The sample's provenance, its outcome counts in all and per module, and the survivors'
    outcomes after the new tests."""
    summary = results / "summary.csv"
    if not summary.is_file():
        return "No mutation sample has been run (`make mutation-sample`)."
    header, rows = _read(summary)
    total = next(r for r in rows if r["module"] == "total")
    outcomes = [o for o in _OUTCOMES if int(total[o])]
    lines = [f"From [summary.csv]({link}/summary.csv):", ""]
    lines += [f"- {line}" for line in header]
    counts = ", ".join(f"{o} {total[o]}" for o in outcomes)
    lines += [
        f"- Mutants generated: {total['generated']}; sampled and run: {total['sampled']}: "
        f"{counts}.",
        "",
    ]
    table = [
        [
            f"`{r['module'].removeprefix('recbole_attrcloak.')}`",
            r["generated"],
            r["sampled"],
            *(r[o] for o in outcomes),
        ]
        for r in rows
        if int(r["sampled"])
    ]
    lines += markdown_table(["module", "generated", "sampled", *outcomes], table)
    rerun = results / "rerun.csv"
    if rerun.is_file():
        note, again = _read(rerun)
        killed = sum(r["status"] == "killed" for r in again)
        lines += [
            f"The {len(again)} survivors run again against the tests written for them "
            f"([rerun.csv]({link}/rerun.csv), {note[0] if note else ''}): {killed} killed, "
            f"{len(again) - killed} still survive, each explained below.",
            "",
        ]
        why = _notes(results)
        table = [
            [
                f"`{r['mutant'].removeprefix('recbole_attrcloak.')}`",
                r["status"],
                why.get(r["mutant"], "not examined"),
            ]
            for r in again
        ]
        lines += markdown_table(
            ["survivor of the first pass", "now", "killed by / why harmless"], table
        )
    return "\n".join(lines)
