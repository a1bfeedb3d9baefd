"""MovieLens-1M (``ml-1m``): ``ratings.dat``, ``users.dat`` and ``movies.dat`` to atomic files."""

from __future__ import annotations

import time
from pathlib import Path

from recbole_attrcloak.data.converters.common import (
    TITLE_YEAR_RE,
    ConversionError,
    PathLike,
    fail,
    is_int,
    iter_fields,
    output_paths,
    require_file,
    run_summary,
    write_atomic,
)

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


def _find_ml1m_ratings(src: Path) -> Path:
    for candidate in ML1M_RATINGS_CANDIDATES:
        if (src / candidate).is_file():
            return src / candidate
    raise ConversionError(
        f"missing source file: none of {', '.join(ML1M_RATINGS_CANDIDATES)} in {src}"
    )


def _read_users(path: Path) -> dict[str, list[str]]:
    """users.dat rows as .user rows (occupation codes replaced by their names)."""
    users: dict[str, list[str]] = {}
    for lineno, (uid, gender, age, occupation, zip_code) in iter_fields(path, "::", {5}, "latin-1"):
        if not is_int(uid) or uid in users:
            raise fail(path, lineno, f"bad or duplicate UserID {uid!r}")
        if gender not in ("M", "F"):
            raise fail(path, lineno, f"bad Gender {gender!r}")
        if age not in ML1M_AGE_CODES:
            raise fail(path, lineno, f"bad Age code {age!r}")
        if not is_int(occupation) or int(occupation) >= len(ML1M_OCCUPATIONS):
            raise fail(path, lineno, f"bad Occupation code {occupation!r}")
        occupation_name = ML1M_OCCUPATIONS[int(occupation)].replace(" ", "_")
        users[uid] = [uid, age, gender, occupation_name, zip_code]
    return users


def _read_movies(path: Path) -> dict[str, list[str]]:
    """movies.dat rows as .item rows (the release year split off the title)."""
    movies: dict[str, list[str]] = {}
    for lineno, (mid, title, genres) in iter_fields(path, "::", {3}, "latin-1"):
        if not is_int(mid) or mid in movies:
            raise fail(path, lineno, f"bad or duplicate MovieID {mid!r}")
        match = TITLE_YEAR_RE.fullmatch(title)
        title_text, year = (match.group(1), match.group(2)) if match else (title, "")
        movies[mid] = [mid, title_text, year, " ".join(g for g in genres.split("|") if g)]
    return movies


def _read_ratings(path: Path) -> tuple[list[list[str]], int]:
    """The rating lines and their width (3, or 4 with a timestamp)."""
    inter: list[list[str]] = []
    width = 0
    for lineno, fields in iter_fields(path, "::", {3, 4}, "latin-1"):
        width = width or len(fields)
        if len(fields) != width:
            raise fail(path, lineno, "mixes lines with and without a timestamp")
        digits = "".join(fields)
        if not (all(fields) and digits.isascii() and digits.isdigit()):
            raise fail(path, lineno, f"non-integer field in {'::'.join(fields)!r}")
        inter.append(fields)
    if not inter:
        raise ConversionError(f"{path}: no ratings")
    return inter, width


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
    paths = output_paths(out_dir, name, force)
    users = _read_users(require_file(src / "users.dat"))
    movies = _read_movies(require_file(src / "movies.dat"))
    ratings_path = require_file(Path(ratings)) if ratings is not None else _find_ml1m_ratings(src)
    inter, width = _read_ratings(ratings_path)

    inter_header = ["user_id:token", "item_id:token", "rating:float"]
    if width == 4:
        inter_header.append("timestamp:float")
    counts = (
        write_atomic(paths["inter"], inter_header, inter),
        write_atomic(
            paths["user"],
            ["user_id:token", "age:token", "gender:token", "occupation:token", "zip_code:token"],
            users.values(),
        ),
        write_atomic(
            paths["item"],
            ["item_id:token", "movie_title:token_seq", "release_year:token", "genre:token_seq"],
            movies.values(),
        ),
    )
    summary = run_summary(name, paths, counts, start)
    summary.update(ratings_file=str(ratings_path), timestamps=width == 4)
    return summary
