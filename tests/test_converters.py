"""Tests for the dataset converters, on tiny samples written in the original formats."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recbole_attrcloak.data.convert import main
from recbole_attrcloak.data.converters import (
    COUNTRY_TO_CONTINENT,
    ConversionError,
    convert_lastfm1k,
    convert_ml1m,
    convert_modcloth,
    write_atomic,
)

REAL_LASTFM_PROFILE = Path("/work/shared/data/lastfm-1k/userid-profile.tsv")

ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::4::55117\n"
ML1M_MOVIES = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "2::City of Lost Children, The (1995)::Adventure|Sci-Fi\n"
    "3::Café au lait (1993)::Comedy\n"
)
ML1M_RATINGS = "1::1::5::978300760\n1::2::3::978302109\n2::1::4::978298413\n3::3::1::978220179\n"

LASTFM_PROFILE = (
    "#id\tgender\tage\tcountry\tregistered\n"
    "user_000001\tm\t\tJapan\tAug 13, 2006\n"
    "user_000002\t\t22\tUnited States\t\n"
    "user_000003\tf\t31\t\tOct 30, 2005\n"
    "user_000004\tm\t19\tAtlantis\tApr 26, 2006\n"
)
MBID_A = "078a9376-3c04-4280-b7d7-b20e158f345d"
LASTFM_LISTENS = (
    f"user_000001\t2009-05-04T23:08:57Z\t{MBID_A}\tA Perfect Circle\tt1\tTrack 1\n"
    f"user_000001\t2009-05-04T13:54:10Z\t{MBID_A}\tA Perfect Circle\t\tTrack 2\n"
    f"user_000001\t2009-05-04T13:50:01Z\t{MBID_A}\tA Perfect Circle (alias)\t\t\n"
    'user_000001\t2009-05-04T13:40:01Z\t\t"Weird Al" Yankovic\t\tAmish Paradise\n'
    'user_000002\t2009-05-04T13:30:01Z\t\t"Weird Al" Yankovic\t\tEat It\n'
    'user_000002\t2009-05-04T13:20:01Z\t\t"Weird Al" Yankovic\t\tEat It\n'
    f"user_000002\t2009-05-04T13:10:01Z\t{MBID_A}\tA Perfect Circle\t\t\n"
    "user_000003\t2009-05-04T13:00:01Z\t\t\t\tUnknown\n"
)

MODCLOTH_HEADER = (
    "item_id,user_id,rating,timestamp,size,fit,user_attr,model_attr,category,brand,year,split"
)
MODCLOTH_ROWS = (
    "7443,Alex,4,2010-01-21 08:00:00+00:00,,,Small,Small,Dresses,,2012,0\n"
    "7443,carolyn.agan,3,2010-01-27 08:00:00+00:00,,,,Small,Dresses,,2012,0\n"
    '7443,Alex,5,2010-03-01 08:00:00+00:00,12.0,Just right,Small,Small,Dresses,"Ruby, Inc",2012,0\n'
    "9001,Alex,2,2011-05-01 00:00:00+00:00,,,Large,Small&Large,Tops,Retrolicious,2013,1\n"
    "9001,Robyn,1,2012-06-01 00:00:00+00:00,,,Small,Small&Large,Tops,Retrolicious,2013,0\n"
    "7443,Robyn,4,2011-06-01 00:00:00+00:00,,,Large,Small,Dresses,,2012,2\n"
)


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode(encoding)))
    else:
        path.write_bytes(text.encode(encoding))
    return path


def _read(path: Path) -> pd.DataFrame:
    """Read an atomic file the way RecBole does (pandas, tab, default quoting), as strings."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, engine="python")


def _ml1m_src(tmp_path: Path, ratings_name: str = "ratings.dat", ratings: str = ML1M_RATINGS):
    src = tmp_path / "src"
    _write(src / "users.dat", ML1M_USERS, "latin-1")
    _write(src / "movies.dat", ML1M_MOVIES, "latin-1")
    _write(src / ratings_name, ratings)
    return src


def _lastfm_src(tmp_path: Path, profile: str = LASTFM_PROFILE, listens: str = LASTFM_LISTENS):
    src = tmp_path / "src"
    _write(src / "userid-profile.tsv", profile)
    _write(src / "userid-timestamp-artid-artname-traid-traname.tsv", listens)
    return src


def _recbole_dataset(data_path: Path, name: str, load_col: dict):
    from recbole.config import Config
    from recbole.data import create_dataset

    config = Config(
        model="BPR",
        dataset=name,
        config_dict={"data_path": str(data_path), "load_col": load_col, "show_progress": False},
    )
    return create_dataset(config)


# ----------------------------------------------------------------------------- MovieLens-1M


def test_ml1m_round_trip_with_timestamps(tmp_path, monkeypatch):
    summary = convert_ml1m(_ml1m_src(tmp_path), tmp_path / "out")
    out = tmp_path / "out" / "ml-1m"
    assert sorted(p.name for p in out.iterdir()) == ["ml-1m.inter", "ml-1m.item", "ml-1m.user"]
    assert summary["interactions"] == 4 and summary["users"] == 3 and summary["items"] == 3
    assert summary["timestamps"] is True and summary["path"] == str(out)

    inter = _read(out / "ml-1m.inter")
    assert list(inter.columns) == [
        "user_id:token",
        "item_id:token",
        "rating:float",
        "timestamp:float",
    ]
    assert inter.values.tolist() == [
        ["1", "1", "5", "978300760"],
        ["1", "2", "3", "978302109"],
        ["2", "1", "4", "978298413"],
        ["3", "3", "1", "978220179"],
    ]
    user = _read(out / "ml-1m.user")
    assert list(user.columns) == [
        "user_id:token",
        "age:token",
        "gender:token",
        "occupation:token",
        "zip_code:token",
    ]
    assert user.values.tolist() == [
        ["1", "1", "F", "K-12_student", "48067"],
        ["2", "56", "M", "self-employed", "70072"],
        ["3", "25", "M", "college/grad_student", "55117"],
    ]
    item = _read(out / "ml-1m.item")
    assert list(item.columns) == [
        "item_id:token",
        "movie_title:token_seq",
        "release_year:token",
        "genre:token_seq",
    ]
    assert item.values.tolist() == [
        ["1", "Toy Story", "1995", "Animation Children's Comedy"],
        ["2", "City of Lost Children, The", "1995", "Adventure Sci-Fi"],
        ["3", "Café au lait", "1993", "Comedy"],
    ]

    monkeypatch.chdir(tmp_path)
    dataset = _recbole_dataset(
        tmp_path / "out",
        "ml-1m",
        {
            "inter": ["user_id", "item_id", "rating"],
            "user": ["user_id", "age", "gender", "occupation"],
        },
    )
    assert dataset.user_num == 3 + 1  # + RecBole's [PAD]
    assert dataset.item_num == 3 + 1
    assert dataset.inter_num == 4
    assert set(dataset.field2id_token["occupation"]) >= {"K-12_student", "college/grad_student"}


def test_ml1m_gzipped_ratings_without_timestamps(tmp_path):
    ratings = "".join(line.rsplit("::", 1)[0] + "\n" for line in ML1M_RATINGS.splitlines())
    src = _ml1m_src(tmp_path, "ratings_uir.dat.gz", ratings)
    summary = convert_ml1m(src, tmp_path / "out", name="ml1m-uir")
    assert summary["timestamps"] is False
    assert summary["ratings_file"] == str(src / "ratings_uir.dat.gz")
    inter = _read(tmp_path / "out" / "ml1m-uir" / "ml1m-uir.inter")
    assert list(inter.columns) == ["user_id:token", "item_id:token", "rating:float"]
    assert inter.values.tolist() == [
        ["1", "1", "5"],
        ["1", "2", "3"],
        ["2", "1", "4"],
        ["3", "3", "1"],
    ]


def test_ml1m_explicit_ratings_path_wins(tmp_path):
    src = _ml1m_src(tmp_path)
    other = _write(tmp_path / "elsewhere" / "subset.dat.gz", "2::3::2::978300000\n")
    summary = convert_ml1m(src, tmp_path / "out", ratings=other)
    assert summary["interactions"] == 1
    inter = _read(tmp_path / "out" / "ml-1m" / "ml-1m.inter")
    assert inter.values.tolist() == [["2", "3", "2", "978300000"]]


# ----------------------------------------------------------------------------- Last.FM-1K


def test_lastfm_play_counts_and_profile(tmp_path, monkeypatch):
    summary = convert_lastfm1k(_lastfm_src(tmp_path), tmp_path / "out")
    out = tmp_path / "out" / "lastfm-1k"
    assert summary["events"] == 7 and summary["skipped_events"] == 1
    assert summary["unmapped_countries"] == ["Atlantis"]

    inter = _read(out / "lastfm-1k.inter")
    assert list(inter.columns) == ["user_id:token", "item_id:token", "play_count:float"]
    weird = 'name:"Weird Al" Yankovic'
    assert inter.values.tolist() == [
        ["user_000001", MBID_A, "3"],
        ["user_000001", weird, "1"],
        ["user_000002", weird, "2"],
        ["user_000002", MBID_A, "1"],
    ]
    assert inter["play_count:float"].astype(int).sum() == summary["events"]
    # a quote inside a cell stays verbatim; a cell starting with one is csv-quoted
    assert f"user_000002\t{weird}\t2\n" in (out / "lastfm-1k.inter").read_text()
    assert f'{weird}\t"""Weird Al"" Yankovic"\n' in (out / "lastfm-1k.item").read_text()

    item = _read(out / "lastfm-1k.item")
    assert list(item.columns) == ["item_id:token", "artist_name:token_seq"]
    # most frequent spelling wins for an MBID
    assert item.values.tolist() == [[MBID_A, "A Perfect Circle"], [weird, '"Weird Al" Yankovic']]

    user = _read(out / "lastfm-1k.user")
    assert list(user.columns) == [
        "user_id:token",
        "gender:token",
        "age:token",
        "country:token",
        "continent:token",
    ]
    assert user.values.tolist() == [
        ["user_000001", "m", "", "Japan", "Asia"],
        ["user_000002", "", "22", "United States", "North_America"],
        ["user_000003", "f", "31", "", ""],
        ["user_000004", "m", "19", "Atlantis", ""],
    ]

    monkeypatch.chdir(tmp_path)
    dataset = _recbole_dataset(
        tmp_path / "out",
        "lastfm-1k",
        {
            "inter": ["user_id", "item_id", "play_count"],
            "user": ["user_id", "gender", "age", "continent"],
            "item": ["item_id", "artist_name"],
        },
    )
    assert dataset.user_num == 4 + 1
    assert set(dataset.field2id_token["item_id"]) == {"[PAD]", MBID_A, weird}


@pytest.mark.skipif(not REAL_LASTFM_PROFILE.is_file(), reason="original profile file not present")
def test_every_country_of_the_real_profile_has_a_continent():
    profile = pd.read_csv(REAL_LASTFM_PROFILE, sep="\t", dtype=str, keep_default_na=False)
    countries = set(profile["country"]) - {""}
    assert len(countries) == 66
    assert countries - set(COUNTRY_TO_CONTINENT) == set()


# ----------------------------------------------------------------------------- ModCloth


def test_modcloth_timestamps_body_shape_and_items(tmp_path, monkeypatch):
    csv_path = _write(tmp_path / "mb" / "df_modcloth.csv", MODCLOTH_HEADER + "\n" + MODCLOTH_ROWS)
    summary = convert_modcloth(csv_path.parent, tmp_path / "out")
    out = tmp_path / "out" / "modcloth-mb"
    assert summary["interactions"] == 6 and summary["users"] == 3 and summary["items"] == 2
    assert summary["body_shape"] == {"Small": 2, "": 1}
    assert summary["users_with_several_body_shapes"] == 2

    inter = _read(out / "modcloth-mb.inter")
    assert list(inter.columns) == [
        "user_id:token",
        "item_id:token",
        "rating:float",
        "timestamp:float",
    ]
    assert inter.values.tolist() == [
        ["Alex", "7443", "4", "1264060800"],
        ["carolyn.agan", "7443", "3", "1264579200"],
        ["Alex", "7443", "5", "1267430400"],
        ["Alex", "9001", "2", "1304208000"],
        ["Robyn", "9001", "1", "1338508800"],
        ["Robyn", "7443", "4", "1306886400"],
    ]
    user = _read(out / "modcloth-mb.user")
    assert list(user.columns) == ["user_id:token", "body_shape:token"]
    # Alex: Small x2 vs Large x1 -> Small; Robyn: tie -> latest review (2012, Small) although
    # the Large review comes later in the file; carolyn.agan: never stated -> blank
    assert user.values.tolist() == [["Alex", "Small"], ["carolyn.agan", ""], ["Robyn", "Small"]]
    item = _read(out / "modcloth-mb.item")
    assert list(item.columns) == [
        "item_id:token",
        "category:token",
        "brand:token",
        "model_attr:token",
    ]
    assert item.values.tolist() == [
        ["7443", "Dresses", "Ruby, Inc", "Small"],
        ["9001", "Tops", "Retrolicious", "Small&Large"],
    ]

    monkeypatch.chdir(tmp_path)
    dataset = _recbole_dataset(
        tmp_path / "out",
        "modcloth-mb",
        {"inter": ["user_id", "item_id", "rating", "timestamp"], "user": ["user_id", "body_shape"]},
    )
    assert dataset.user_num == 3 + 1


def test_modcloth_accepts_the_csv_path(tmp_path):
    csv_path = _write(tmp_path / "any-name.csv", MODCLOTH_HEADER + "\n" + MODCLOTH_ROWS)
    assert convert_modcloth(csv_path, tmp_path / "out", name="mc")["interactions"] == 6
    assert (tmp_path / "out" / "mc" / "mc.user").is_file()


def test_atomic_file_quoting_round_trips_through_pandas(tmp_path):
    rows = [["plain", 'mid"quote'], ['"lead', "tab\there"], ["new\nline", "cr\rx"], ["", "x"]]
    path = tmp_path / "cells.item"
    assert write_atomic(path, ["a:token", "b:token"], rows) == 4
    assert path.read_bytes() == (
        b'a:token\tb:token\nplain\tmid"quote\n"""lead"\t"tab\there"\n"new\nline"\t"cr\rx"\n\tx\n'
    )
    assert _read(path).values.tolist() == rows
    assert [p.name for p in tmp_path.iterdir()] == ["cells.item"]


# ----------------------------------------------------------------------------- errors


def test_missing_source_file(tmp_path):
    src = _ml1m_src(tmp_path)
    (src / "movies.dat").unlink()
    with pytest.raises(ConversionError, match="missing source file: .*movies.dat"):
        convert_ml1m(src, tmp_path / "out")
    (src / "ratings.dat").unlink()
    _write(src / "movies.dat", ML1M_MOVIES, "latin-1")
    with pytest.raises(ConversionError, match="none of ratings.dat"):
        convert_ml1m(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("ratings", "message"),
    [
        ("1::1::5::978300760\n1::2\n", r"ratings.dat:2: expected 3 or 4 '::'-separated fields"),
        ("1::1::5::978300760\n1::2::3\n", r"ratings.dat:2: mixes lines with and without"),
        ("1::1::five\n", r"ratings.dat:1: non-integer field"),
    ],
)
def test_ml1m_malformed_ratings(tmp_path, ratings, message):
    with pytest.raises(ConversionError, match=message):
        convert_ml1m(_ml1m_src(tmp_path, ratings=ratings), tmp_path / "out")


def test_ml1m_malformed_users(tmp_path):
    src = _ml1m_src(tmp_path)
    _write(src / "users.dat", "1::F::1::10::48067\n2::M::57::16::70072\n", "latin-1")
    with pytest.raises(ConversionError, match=r"users.dat:2: bad Age code '57'"):
        convert_ml1m(src, tmp_path / "out")


def test_lastfm_malformed_inputs(tmp_path):
    bad_header = LASTFM_PROFILE.replace("#id", "id", 1)
    with pytest.raises(ConversionError, match="header must be"):
        convert_lastfm1k(_lastfm_src(tmp_path, profile=bad_header), tmp_path / "out")
    bad_line = LASTFM_LISTENS + "user_000001\t2009-05-04T13:00:01Z\tonly four\n"
    with pytest.raises(ConversionError, match=r"traname.tsv:9: expected 6 '\\t'-separated"):
        convert_lastfm1k(_lastfm_src(tmp_path, listens=bad_line), tmp_path / "out")


def test_modcloth_malformed_inputs(tmp_path):
    path = tmp_path / "df_modcloth.csv"
    _write(path, MODCLOTH_HEADER.replace("user_attr", "shape") + "\n" + MODCLOTH_ROWS)
    with pytest.raises(ConversionError, match="header must be"):
        convert_modcloth(path, tmp_path / "out")
    _write(path, MODCLOTH_HEADER + "\n" + MODCLOTH_ROWS + "1,Bob,4,2010-01-01\n")
    with pytest.raises(ConversionError, match=r"df_modcloth.csv:8: expected 12 fields, got 4"):
        convert_modcloth(path, tmp_path / "out")
    _write(path, MODCLOTH_HEADER + "\n" + MODCLOTH_ROWS.replace("2011-05-01", "yesterday"))
    with pytest.raises(ConversionError, match=r"df_modcloth.csv:5: bad timestamp 'yesterday"):
        convert_modcloth(path, tmp_path / "out")


def test_refuses_to_overwrite_unless_forced(tmp_path):
    src = _ml1m_src(tmp_path)
    convert_ml1m(src, tmp_path / "out")
    inter = tmp_path / "out" / "ml-1m" / "ml-1m.inter"
    inter.write_text("sentinel\n")
    with pytest.raises(ConversionError, match="output exists"):
        convert_ml1m(src, tmp_path / "out")
    assert inter.read_text() == "sentinel\n"
    convert_ml1m(src, tmp_path / "out", force=True)
    assert inter.read_text().startswith("user_id:token\t")
    assert sorted(p.name for p in inter.parent.iterdir()) == [
        "ml-1m.inter",
        "ml-1m.item",
        "ml-1m.user",
    ]


# ----------------------------------------------------------------------------- CLI


def test_cli_success_and_errors(tmp_path, capsys):
    src = _ml1m_src(tmp_path)
    out = tmp_path / "out"
    assert main(["ml-1m", str(src), str(out), "--name", "tiny"]) == 0
    assert "tiny: 4 interactions, 3 users, 3 items" in capsys.readouterr().out

    assert main(["ml-1m", str(src), str(out), "--name", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: output exists" in err
    assert main(["ml-1m", str(src), str(out), "--name", "tiny", "--force"]) == 0

    assert main(["lastfm-1k", str(tmp_path / "nowhere"), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing source file" in err

    with pytest.raises(SystemExit) as excinfo:
        main(["modcloth", str(src), str(out), "--ratings", "x"])
    assert excinfo.value.code == 2


def test_cli_module_entry_point(tmp_path):
    src = _ml1m_src(tmp_path)
    (src / "users.dat").write_text("1::F::1\n")
    cmd = [sys.executable, "-m", "recbole_attrcloak.data.convert", "ml-1m", str(src), str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "users.dat:1: expected 5 '::'-separated fields, got 3" in result.stderr
