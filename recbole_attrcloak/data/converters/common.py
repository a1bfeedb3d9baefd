"""What every converter shares: the error type, reading delimited source files (gzip or not)
line by line, and writing RecBole atomic files atomically (``files.atomic_path``)."""

from __future__ import annotations

import gzip
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd

from recbole_attrcloak.files import atomic_path

PathLike = str | os.PathLike[str]


class ConversionError(ValueError):
    """Missing or malformed input, or an output that would be overwritten without ``force``."""


INT_RE = re.compile(r"[0-9]+")
TITLE_YEAR_RE = re.compile(r"(.*?)\s*\(([0-9]{4})\)")
UNIX_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
NEEDS_QUOTES = re.compile(r'(?:^|\t)"|[\r\n]')  # a cell starting with '"', or a line break


def fail(path: Path, lineno: int, message: str) -> ConversionError:
    return ConversionError(f"{path}:{lineno}: {message}")


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise ConversionError(f"missing source file: {path}")
    return path


def is_int(text: str) -> bool:
    return INT_RE.fullmatch(text) is not None


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def iter_fields(
    path: Path, sep: str, widths: set[int], encoding: str, errors: str = "strict"
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` for each non-empty line; gzip is detected by magic bytes."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    expected = " or ".join(str(w) for w in sorted(widths))
    try:
        with opener(path, "rt", encoding=encoding, errors=errors, newline="\n") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                fields = line.split(sep)
                if len(fields) not in widths:
                    raise fail(
                        path,
                        lineno,
                        f"expected {expected} {sep!r}-separated fields, got {len(fields)}",
                    )
                yield lineno, fields
    except (EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise ConversionError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def output_paths(out_dir: PathLike, name: str, force: bool) -> dict[str, Path]:
    """Return the three target paths; refuse existing ones unless ``force``."""
    if not name or name in {".", ".."} or Path(name).name != name:
        raise ConversionError(f"invalid dataset name: {name!r}")
    target = Path(out_dir) / name
    paths = {suffix: target / f"{name}.{suffix}" for suffix in ("inter", "user", "item")}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise ConversionError(
            f"output exists: {', '.join(existing)} (use --force / force=True to overwrite)"
        )
    return paths


def quote(cell: str) -> str:
    if cell[:1] == '"' or "\t" in cell or "\n" in cell or "\r" in cell:
        return '"' + cell.replace('"', '""') + '"'
    return cell


def write_atomic(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Write one atomic file (``files.atomic_path``).

    Cells are written verbatim, except that a cell starting with a double quote or holding a
    tab or line break is csv-quoted, which is how RecBole's ``pandas.read_csv`` reads it back.
    """
    count = 0
    with atomic_path(path) as tmp, open(tmp, "x", encoding="utf-8", newline="") as fh:
        fh.write("\t".join(header) + "\n")
        for row in rows:
            line = "\t".join(row)
            special = '"' in line or "\n" in line or "\r" in line
            if line.count("\t") != len(row) - 1 or (special and NEEDS_QUOTES.search(line)):
                line = "\t".join(quote(cell) for cell in row)
            fh.write(line + "\n")
            count += 1
    return count


def run_summary(name: str, paths: dict[str, Path], counts: Sequence[int], start: float) -> dict:
    return {
        "dataset": name,
        "path": str(paths["inter"].parent),
        "interactions": counts[0],
        "users": counts[1],
        "items": counts[2],
        "seconds": round(time.perf_counter() - start, 2),
    }


def majority(keys: pd.Series, values: pd.Series) -> dict[str, str]:
    """Most frequent non-empty value per key; ties go to the value that occurs last."""
    frame = pd.DataFrame(
        {"key": keys.to_numpy(), "value": values.to_numpy(), "pos": range(len(keys))}
    )
    frame = frame[frame["value"] != ""]
    stats = (
        frame.groupby(["key", "value"], sort=False)
        .agg(n=("pos", "size"), last=("pos", "max"))
        .reset_index()
        .sort_values(["key", "n", "last"])
        .drop_duplicates("key", keep="last")
    )
    return dict(zip(stats["key"], stats["value"], strict=True))
