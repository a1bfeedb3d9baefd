"""ModCloth (``modcloth``): ``df_modcloth.csv`` to atomic files."""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from recbole_attrcloak.data.converters.common import (
    UNIX_EPOCH,
    ConversionError,
    PathLike,
    fail,
    format_number,
    majority,
    output_paths,
    require_file,
    run_summary,
    write_atomic,
)

MODCLOTH_FILE = "df_modcloth.csv"
MODCLOTH_COLUMNS = [
    "item_id",
    "user_id",
    "rating",
    "timestamp",
    "size",
    "fit",
    "user_attr",
    "model_attr",
    "category",
    "brand",
    "year",
    "split",
]


def _read_modcloth(path: Path) -> pd.DataFrame:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header != MODCLOTH_COLUMNS:
                raise ConversionError(f"{path}: header must be {','.join(MODCLOTH_COLUMNS)!r}")
            records, lines = [], []
            for record in reader:
                if not record:
                    continue
                if len(record) != len(MODCLOTH_COLUMNS):
                    raise fail(
                        path,
                        reader.line_num,
                        f"expected {len(MODCLOTH_COLUMNS)} fields, got {len(record)}",
                    )
                records.append(record)
                lines.append(reader.line_num)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConversionError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    frame = pd.DataFrame(records, columns=MODCLOTH_COLUMNS, dtype=str)
    frame["line"] = lines
    return frame


def _check_and_normalise(frame: pd.DataFrame, path: Path) -> pd.Series:
    """Refuse empty ids and bad ratings or timestamps (with the line), write ratings as numbers
    and timestamps as Unix seconds into ``frame``; return the parsed times."""
    for column in ("item_id", "user_id"):
        empty = frame[frame[column] == ""]
        if not empty.empty:
            raise fail(path, int(empty["line"].iloc[0]), f"empty {column}")
    rating = pd.to_numeric(frame["rating"], errors="coerce")
    when = pd.to_datetime(frame["timestamp"], format="ISO8601", utc=True, errors="coerce")
    for column, parsed in (("rating", rating), ("timestamp", when)):
        bad = frame[parsed.isna()]
        if not bad.empty:
            line, value = int(bad["line"].iloc[0]), bad[column].iloc[0]
            raise fail(path, line, f"bad {column} {value!r}")
    frame["rating"] = rating.map(format_number)
    frame["timestamp"] = ((when - UNIX_EPOCH) // pd.Timedelta(seconds=1)).astype(str)
    return when


def convert_modcloth(
    src: PathLike, out_dir: PathLike, name: str = "modcloth-mb", force: bool = False
) -> dict:
    """Convert the marketing-bias ModCloth release (``df_modcloth.csv``) to atomic files.

    ``src`` is the csv file or a directory holding ``df_modcloth.csv``. A user's body shape is
    the most frequent non-empty ``user_attr`` of their reviews (ties: the latest review); item
    attributes use the same rule.
    """
    start = time.perf_counter()
    path = Path(src)
    if path.is_dir():
        path = path / MODCLOTH_FILE
    paths = output_paths(out_dir, name, force)
    frame = _read_modcloth(require_file(path))
    if frame.empty:
        raise ConversionError(f"{path}: no ratings")
    when = _check_and_normalise(frame, path)
    # Chronological order (stable) so that majority's ties go to the latest review.
    ordered = frame.iloc[when.argsort(kind="stable")]
    body_shape = majority(ordered["user_id"], ordered["user_attr"])
    item_attrs = {
        column: majority(ordered["item_id"], ordered[column])
        for column in ("category", "brand", "model_attr")
    }
    user_ids = frame["user_id"].unique()
    item_ids = frame["item_id"].unique()

    counts = (
        write_atomic(
            paths["inter"],
            ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
            frame[["user_id", "item_id", "rating", "timestamp"]].itertuples(index=False),
        ),
        write_atomic(
            paths["user"],
            ["user_id:token", "body_shape:token"],
            ([uid, body_shape.get(uid, "")] for uid in user_ids),
        ),
        write_atomic(
            paths["item"],
            ["item_id:token", "category:token", "brand:token", "model_attr:token"],
            (
                [iid, *(item_attrs[c].get(iid, "") for c in ("category", "brand", "model_attr"))]
                for iid in item_ids
            ),
        ),
    )
    shapes = ordered[ordered["user_attr"] != ""].groupby("user_id")["user_attr"].nunique()
    summary = run_summary(name, paths, counts, start)
    summary.update(
        body_shape=dict(Counter(body_shape.get(uid, "") for uid in user_ids)),
        users_with_several_body_shapes=int((shapes > 1).sum()),
    )
    return summary
