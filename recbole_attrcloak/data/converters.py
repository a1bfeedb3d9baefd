"""Convert original dataset releases to RecBole atomic files.

Each converter reads one original release and writes ``out_dir/name/name.{inter,user,item}``:
tab-separated files whose header cells are ``field:type`` (see
https://recbole.io/docs/user_guide/data/atomic_files.html). The ``.user`` file carries the
sensitive attributes the audit needs. Field mappings are documented in ``docs/datasets.md``.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd

PathLike = str | os.PathLike[str]


class ConversionError(ValueError):
    """Missing or malformed input, or an output that would be overwritten without ``force``."""


# --------------------------------------------------------------------------- MovieLens-1M

ML1M_AGE_CODES = ("1", "18", "25", "35", "45", "50", "56")
# Index = occupation code in users.dat (names from the ML-1M README).
ML1M_OCCUPATIONS = (
    "other or not specified",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)
ML1M_RATINGS_CANDIDATES = ("ratings.dat", "ratings.dat.gz", "ratings_uir.dat.gz")

# --------------------------------------------------------------------------- Last.FM-1K

LASTFM_PROFILE_FILE = "userid-profile.tsv"
LASTFM_PROFILE_HEADER = ["#id", "gender", "age", "country", "registered"]
LASTFM_LISTENS_FILE = "userid-timestamp-artid-artname-traid-traname.tsv"

# Country (spelled as in userid-profile.tsv) -> continent, after the UN M49 regions, with the
# Americas split into North (incl. Central America and the Caribbean) and South America.
# Covers every country that occurs in the original profile file.
_CONTINENT_COUNTRIES = {
    "Africa": (
        "Algeria",
        "British Indian Ocean Territory",
        "Congo, the Democratic Republic of the",
        "Cote D'Ivoire",
        "Morocco",
        "Tunisia",
        "Zimbabwe",
    ),
    "Antarctica": ("Antarctica",),
    "Asia": (
        "Armenia",
        "China",
        "India",
        "Israel",
        "Japan",
        "Korea, Democratic People's Republic of",
        "Singapore",
        "Thailand",
        "Turkey",
    ),
    "Europe": (
        "Austria",
        "Belarus",
        "Belgium",
        "Bosnia and Herzegovina",
        "Bulgaria",
        "Croatia",
        "Czech Republic",
        "Estonia",
        "Finland",
        "France",
        "Germany",
        "Greece",
        "Hungary",
        "Iceland",
        "Ireland",
        "Italy",
        "Latvia",
        "Lithuania",
        "Macedonia",
        "Malta",
        "Netherlands",
        "Norway",
        "Poland",
        "Portugal",
        "Romania",
        "Russian Federation",
        "Serbia",
        "Slovakia",
        "Slovenia",
        "Spain",
        "Sweden",
        "Switzerland",
        "United Kingdom",
    ),
    "North_America": (
        "Canada",
        "Mexico",
        "Netherlands Antilles",
        "Nicaragua",
        "Trinidad and Tobago",
        "United States",
    ),
    "Oceania": (
        "Australia",
        "New Zealand",
        "Northern Mariana Islands",
        "United States Minor Outlying Islands",
    ),
    "South_America": ("Argentina", "Brazil", "Chile", "Colombia", "Peru", "Venezuela"),
}
COUNTRY_TO_CONTINENT = {
    country: continent
    for continent, countries in _CONTINENT_COUNTRIES.items()
    for country in countries
}

# --------------------------------------------------------------------------- ModCloth

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

_INT_RE = re.compile(r"[0-9]+")
_TITLE_YEAR_RE = re.compile(r"(.*?)\s*\(([0-9]{4})\)")
_UNIX_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_NEEDS_QUOTES = re.compile(r'(?:^|\t)"|[\r\n]')  # a cell starting with '"', or a line break


# --------------------------------------------------------------------------- helpers


def _fail(path: Path, lineno: int, message: str) -> ConversionError:
    return ConversionError(f"{path}:{lineno}: {message}")


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise ConversionError(f"missing source file: {path}")
    return path


def _is_int(text: str) -> bool:
    return _INT_RE.fullmatch(text) is not None


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _iter_fields(
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
                    raise _fail(
                        path,
                        lineno,
                        f"expected {expected} {sep!r}-separated fields, got {len(fields)}",
                    )
                yield lineno, fields
    except (EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise ConversionError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def _output_paths(out_dir: PathLike, name: str, force: bool) -> dict[str, Path]:
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


def _quote(cell: str) -> str:
    if cell[:1] == '"' or "\t" in cell or "\n" in cell or "\r" in cell:
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _write_atomic(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Write one atomic file via a temp file in the same directory + ``os.replace``.

    Cells are written verbatim, except that a cell starting with a double quote or holding a
    tab or line break is csv-quoted, which is how RecBole's ``pandas.read_csv`` reads it back.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    count = 0
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as fh:
            fh.write("\t".join(header) + "\n")
            for row in rows:
                line = "\t".join(row)
                special = '"' in line or "\n" in line or "\r" in line
                if line.count("\t") != len(row) - 1 or (special and _NEEDS_QUOTES.search(line)):
                    line = "\t".join(_quote(cell) for cell in row)
                fh.write(line + "\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _summary(name: str, paths: dict[str, Path], counts: Sequence[int], start: float) -> dict:
    return {
        "dataset": name,
        "path": str(paths["inter"].parent),
        "interactions": counts[0],
        "users": counts[1],
        "items": counts[2],
        "seconds": round(time.perf_counter() - start, 2),
    }


def _majority(keys: pd.Series, values: pd.Series) -> dict[str, str]:
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


# --------------------------------------------------------------------------- converters


def _find_ml1m_ratings(src: Path) -> Path:
    for candidate in ML1M_RATINGS_CANDIDATES:
        if (src / candidate).is_file():
            return src / candidate
    raise ConversionError(
        f"missing source file: none of {', '.join(ML1M_RATINGS_CANDIDATES)} in {src}"
    )


def convert_ml1m(
    src_dir: PathLike,
    out_dir: PathLike,
    name: str = "ml-1m",
    ratings: PathLike | None = None,
    force: bool = False,
) -> dict:
    """Convert MovieLens-1M (users.dat, movies.dat, ratings) to atomic files.

    ``ratings`` defaults to the first of ratings.dat, ratings.dat.gz, ratings_uir.dat.gz in
    ``src_dir``; lines may be ``UserID::MovieID::Rating[::Timestamp]`` (gzipped or not). The
    timestamp column is written only when the source has one.
    """
    start = time.perf_counter()
    src = Path(src_dir)
    paths = _output_paths(out_dir, name, force)
    users_path = _require_file(src / "users.dat")
    movies_path = _require_file(src / "movies.dat")
    ratings_path = _require_file(Path(ratings)) if ratings is not None else _find_ml1m_ratings(src)

    users: dict[str, list[str]] = {}
    for lineno, (uid, gender, age, occupation, zip_code) in _iter_fields(
        users_path, "::", {5}, "latin-1"
    ):
        if not _is_int(uid) or uid in users:
            raise _fail(users_path, lineno, f"bad or duplicate UserID {uid!r}")
        if gender not in ("M", "F"):
            raise _fail(users_path, lineno, f"bad Gender {gender!r}")
        if age not in ML1M_AGE_CODES:
            raise _fail(users_path, lineno, f"bad Age code {age!r}")
        if not _is_int(occupation) or int(occupation) >= len(ML1M_OCCUPATIONS):
            raise _fail(users_path, lineno, f"bad Occupation code {occupation!r}")
        occupation_name = ML1M_OCCUPATIONS[int(occupation)].replace(" ", "_")
        users[uid] = [uid, age, gender, occupation_name, zip_code]

    movies: dict[str, list[str]] = {}
    for lineno, (mid, title, genres) in _iter_fields(movies_path, "::", {3}, "latin-1"):
        if not _is_int(mid) or mid in movies:
            raise _fail(movies_path, lineno, f"bad or duplicate MovieID {mid!r}")
        match = _TITLE_YEAR_RE.fullmatch(title)
        title_text, year = (match.group(1), match.group(2)) if match else (title, "")
        movies[mid] = [mid, title_text, year, " ".join(g for g in genres.split("|") if g)]

    inter: list[list[str]] = []
    width = 0
    for lineno, fields in _iter_fields(ratings_path, "::", {3, 4}, "latin-1"):
        width = width or len(fields)
        if len(fields) != width:
            raise _fail(ratings_path, lineno, "mixes lines with and without a timestamp")
        digits = "".join(fields)
        if not (all(fields) and digits.isascii() and digits.isdigit()):
            raise _fail(ratings_path, lineno, f"non-integer field in {'::'.join(fields)!r}")
        inter.append(fields)
    if not inter:
        raise ConversionError(f"{ratings_path}: no ratings")

    inter_header = ["user_id:token", "item_id:token", "rating:float"]
    if width == 4:
        inter_header.append("timestamp:float")
    counts = (
        _write_atomic(paths["inter"], inter_header, inter),
        _write_atomic(
            paths["user"],
            ["user_id:token", "age:token", "gender:token", "occupation:token", "zip_code:token"],
            users.values(),
        ),
        _write_atomic(
            paths["item"],
            ["item_id:token", "movie_title:token_seq", "release_year:token", "genre:token_seq"],
            movies.values(),
        ),
    )
    summary = _summary(name, paths, counts, start)
    summary.update(ratings_file=str(ratings_path), timestamps=width == 4)
    return summary


def convert_lastfm1k(
    src_dir: PathLike, out_dir: PathLike, name: str = "lastfm-1k", force: bool = False
) -> dict:
    """Convert Last.FM-1K (profile + listening events) to user-artist play counts.

    The item id is the artist MBID, or ``name:<artist name>`` when the MBID is empty; events
    with neither are skipped and counted in ``skipped_events``.
    """
    start = time.perf_counter()
    src = Path(src_dir)
    paths = _output_paths(out_dir, name, force)
    profile_path = _require_file(src / LASTFM_PROFILE_FILE)
    listens_path = _require_file(src / LASTFM_LISTENS_FILE)

    rows = _iter_fields(profile_path, "\t", {5}, "utf-8", errors="replace")
    first = next(rows, None)
    if first is None or first[0] != 1 or first[1] != LASTFM_PROFILE_HEADER:
        raise ConversionError(
            f"{profile_path}: header must be {chr(9).join(LASTFM_PROFILE_HEADER)!r}"
        )
    users: dict[str, list[str]] = {}
    unmapped: set[str] = set()
    for lineno, (uid, gender, age, country, _registered) in rows:
        if not uid or uid in users:
            raise _fail(profile_path, lineno, f"empty or duplicate user id {uid!r}")
        if gender not in ("m", "f", ""):
            raise _fail(profile_path, lineno, f"bad gender {gender!r}")
        if age and not _is_int(age):
            raise _fail(profile_path, lineno, f"bad age {age!r}")
        continent = COUNTRY_TO_CONTINENT.get(country, "")
        if country and not continent:
            unmapped.add(country)
        users[uid] = [uid, gender, age, country, continent]

    plays: Counter[tuple[str, str]] = Counter()
    names: Counter[tuple[str, str]] = Counter()
    skipped = 0
    for lineno, fields in _iter_fields(listens_path, "\t", {6}, "utf-8", errors="replace"):
        uid, artist_id, artist_name = fields[0], fields[2], fields[3]
        if not uid:
            raise _fail(listens_path, lineno, "empty user id")
        if not artist_id and not artist_name:
            skipped += 1
            continue
        item = artist_id or f"name:{artist_name}"
        plays[uid, item] += 1
        names[item, artist_name] += 1

    artist_names: dict[str, tuple[str, int]] = {}
    for (item, artist_name), n in names.items():  # most frequent name; ties: first seen
        if item not in artist_names or n > artist_names[item][1]:
            artist_names[item] = (artist_name, n)

    counts = (
        _write_atomic(
            paths["inter"],
            ["user_id:token", "item_id:token", "play_count:float"],
            ([uid, item, str(n)] for (uid, item), n in plays.items()),
        ),
        _write_atomic(
            paths["user"],
            ["user_id:token", "gender:token", "age:token", "country:token", "continent:token"],
            users.values(),
        ),
        _write_atomic(
            paths["item"],
            ["item_id:token", "artist_name:token_seq"],
            ([item, artist_name] for item, (artist_name, _) in artist_names.items()),
        ),
    )
    summary = _summary(name, paths, counts, start)
    summary.update(
        events=sum(plays.values()), skipped_events=skipped, unmapped_countries=sorted(unmapped)
    )
    return summary


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
                    raise _fail(
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
    paths = _output_paths(out_dir, name, force)
    frame = _read_modcloth(_require_file(path))
    if frame.empty:
        raise ConversionError(f"{path}: no ratings")

    for column in ("item_id", "user_id"):
        empty = frame[frame[column] == ""]
        if not empty.empty:
            raise _fail(path, int(empty["line"].iloc[0]), f"empty {column}")
    rating = pd.to_numeric(frame["rating"], errors="coerce")
    when = pd.to_datetime(frame["timestamp"], format="ISO8601", utc=True, errors="coerce")
    for column, parsed in (("rating", rating), ("timestamp", when)):
        bad = frame[parsed.isna()]
        if not bad.empty:
            line, value = int(bad["line"].iloc[0]), bad[column].iloc[0]
            raise _fail(path, line, f"bad {column} {value!r}")
    frame["rating"] = rating.map(_format_number)
    frame["timestamp"] = ((when - _UNIX_EPOCH) // pd.Timedelta(seconds=1)).astype(str)

    # Chronological order (stable) so that _majority's ties go to the latest review.
    ordered = frame.iloc[when.argsort(kind="stable")]
    body_shape = _majority(ordered["user_id"], ordered["user_attr"])
    item_attrs = {
        column: _majority(ordered["item_id"], ordered[column])
        for column in ("category", "brand", "model_attr")
    }
    user_ids = frame["user_id"].unique()
    item_ids = frame["item_id"].unique()

    counts = (
        _write_atomic(
            paths["inter"],
            ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
            frame[["user_id", "item_id", "rating", "timestamp"]].itertuples(index=False),
        ),
        _write_atomic(
            paths["user"],
            ["user_id:token", "body_shape:token"],
            ([uid, body_shape.get(uid, "")] for uid in user_ids),
        ),
        _write_atomic(
            paths["item"],
            ["item_id:token", "category:token", "brand:token", "model_attr:token"],
            (
                [iid, *(item_attrs[c].get(iid, "") for c in ("category", "brand", "model_attr"))]
                for iid in item_ids
            ),
        ),
    )
    shapes = ordered[ordered["user_attr"] != ""].groupby("user_id")["user_attr"].nunique()
    summary = _summary(name, paths, counts, start)
    summary.update(
        body_shape=dict(Counter(body_shape.get(uid, "") for uid in user_ids)),
        users_with_several_body_shapes=int((shapes > 1).sum()),
    )
    return summary
