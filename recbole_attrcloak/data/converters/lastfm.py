"""Last.FM-1K (``lastfm-1k``): listening events and user profiles to atomic files; countries grouped
into continents."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from recbole_attrcloak.data.converters.common import (
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


def _read_profiles(path: Path) -> tuple[dict[str, list[str]], set[str]]:
    """userid-profile.tsv rows as .user rows (with the continent), and the countries that map
    to no continent."""
    rows = iter_fields(path, "\t", {5}, "utf-8", errors="replace")
    first = next(rows, None)
    if first is None or first[0] != 1 or first[1] != LASTFM_PROFILE_HEADER:
        raise ConversionError(f"{path}: header must be {chr(9).join(LASTFM_PROFILE_HEADER)!r}")
    users: dict[str, list[str]] = {}
    unmapped: set[str] = set()
    for lineno, (uid, gender, age, country, _registered) in rows:
        if not uid or uid in users:
            raise fail(path, lineno, f"empty or duplicate user id {uid!r}")
        if gender not in ("m", "f", ""):
            raise fail(path, lineno, f"bad gender {gender!r}")
        if age and not is_int(age):
            raise fail(path, lineno, f"bad age {age!r}")
        continent = COUNTRY_TO_CONTINENT.get(country, "")
        if country and not continent:
            unmapped.add(country)
        users[uid] = [uid, gender, age, country, continent]
    return users, unmapped


def _count_plays(path: Path) -> tuple[Counter, dict[str, str], int]:
    """Plays per (user, artist), each artist's most frequent name (ties: first seen), and the
    events without any artist."""
    plays: Counter[tuple[str, str]] = Counter()
    names: Counter[tuple[str, str]] = Counter()
    skipped = 0
    for lineno, fields in iter_fields(path, "\t", {6}, "utf-8", errors="replace"):
        uid, artist_id, artist_name = fields[0], fields[2], fields[3]
        if not uid:
            raise fail(path, lineno, "empty user id")
        if not artist_id and not artist_name:
            skipped += 1
            continue
        item = artist_id or f"name:{artist_name}"
        plays[uid, item] += 1
        names[item, artist_name] += 1
    artist_names: dict[str, tuple[str, int]] = {}
    for (item, artist_name), n in names.items():
        if item not in artist_names or n > artist_names[item][1]:
            artist_names[item] = (artist_name, n)
    return plays, {item: name for item, (name, _) in artist_names.items()}, skipped


def convert_lastfm1k(
    src_dir: PathLike, out_dir: PathLike, name: str = "lastfm-1k", force: bool = False
) -> dict:
    """Convert Last.FM-1K (profile + listening events) to user-artist play counts.

    The item id is the artist MBID, or ``name:<artist name>`` when the MBID is empty; events
    with neither are skipped and counted in ``skipped_events``.
    """
    start = time.perf_counter()
    src = Path(src_dir)
    paths = output_paths(out_dir, name, force)
    profile_path = require_file(src / LASTFM_PROFILE_FILE)
    listens_path = require_file(src / LASTFM_LISTENS_FILE)
    users, unmapped = _read_profiles(profile_path)
    plays, artist_names, skipped = _count_plays(listens_path)
    counts = (
        write_atomic(
            paths["inter"],
            ["user_id:token", "item_id:token", "play_count:float"],
            ([uid, item, str(n)] for (uid, item), n in plays.items()),
        ),
        write_atomic(
            paths["user"],
            ["user_id:token", "gender:token", "age:token", "country:token", "continent:token"],
            users.values(),
        ),
        write_atomic(
            paths["item"],
            ["item_id:token", "artist_name:token_seq"],
            ([item, artist_name] for item, artist_name in artist_names.items()),
        ),
    )
    summary = run_summary(name, paths, counts, start)
    summary.update(
        events=sum(plays.values()), skipped_events=skipped, unmapped_countries=sorted(unmapped)
    )
    return summary
