import math

import numpy as np
import pytest

from recbole_attrcloak.data.attributes import (
    AGE_GROUPS,
    AttributeLabels,
    DataError,
    encode_attribute,
    read_user_file,
    user_attributes,
)


def test_per_year_ages_map_to_the_movielens_groups():
    ages = [7, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73]
    labels = encode_attribute("age", ages)
    assert labels.classes == AGE_GROUPS
    assert [labels.classes[c] for c in labels.codes] == [
        "<18",
        "<18",
        "18-24",
        "18-24",
        "25-34",
        "25-34",
        "35-44",
        "35-44",
        "45-49",
        "45-49",
        "50-55",
        "50-55",
        "56+",
        "56+",
    ]


def test_ml1m_age_codes_map_to_their_own_group():
    labels = encode_attribute("age", ["1", "18", "25", "35", "45", "50", "56"])
    assert labels.classes == AGE_GROUPS
    assert labels.codes.tolist() == list(range(7))


def test_only_the_age_groups_present_become_classes():
    labels = encode_attribute("age", [20, 30, 22, None])
    assert labels.classes == ("18-24", "25-34")
    assert labels.codes.tolist() == [0, 1, 0, -1]
    assert encode_attribute("age", [20, 30], age_groups=False).classes == ("20", "30")


def test_blanks_nan_and_pad_are_missing():
    values = ["M", "", " ", "[PAD]", None, math.nan, np.nan, "nan", "unknown", "F", "M"]
    labels = encode_attribute("gender", values)
    assert labels.classes == ("F", "M")
    assert labels.codes.tolist() == [1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1]
    assert (labels.n_known, labels.n_missing) == (3, 8)
    assert labels.counts.tolist() == [1, 2]
    assert labels.codes.dtype == np.int64


def test_none_is_a_real_occupation():
    assert encode_attribute("occupation", ["none", "writer"]).classes == ("none", "writer")


def test_numeric_classes_sort_numerically():
    assert encode_attribute("occupation", [10, 2, 0, 2.0]).classes == ("0", "2", "10")


@pytest.mark.parametrize(
    ("values", "message"),
    [(["M", "M", None], "only one class"), (["", None, "[PAD]"], "every value is missing")],
)
def test_degenerate_attributes_raise_one_line_errors(values, message):
    with pytest.raises(ValueError, match=message) as error:
        encode_attribute("gender", values)
    assert "'gender'" in str(error.value) and "\n" not in str(error.value)


def test_labels_reject_out_of_range_codes():
    with pytest.raises(ValueError):
        AttributeLabels("gender", np.array([0, 2]), ("F", "M"))


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "tiny.user"
    path.write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\n"
        "1\t24\tM\ttechnician\n"
        "2\t53\tF\t\n"
        "10\t23\tM\twriter\n"
    )
    return path


def test_read_user_file_strips_types_and_keeps_ids_as_strings(user_file):
    frame = read_user_file(user_file, ["gender", "occupation"])
    assert list(frame.columns) == ["user_id", "gender", "occupation"]
    assert frame["user_id"].tolist() == ["1", "2", "10"]
    assert frame["occupation"].tolist() == ["technician", "", "writer"]
    labels = encode_attribute("occupation", frame["occupation"])
    assert labels.codes.tolist() == [0, -1, 1]


def test_read_user_file_errors(user_file, tmp_path):
    with pytest.raises(ValueError, match="zip_code.*available: user_id, age, gender, occupation"):
        read_user_file(user_file, ["gender", "zip_code"])
    with pytest.raises(FileNotFoundError, match="missing.user"):
        read_user_file(tmp_path / "missing.user", ["gender"])


def test_user_attributes_follow_the_tokens_order(user_file):
    labels = user_attributes(user_file, ["gender", "occupation"], ["10", "[PAD]", "2", "1"])
    gender = labels["gender"]
    assert [gender.classes[c] if c >= 0 else None for c in gender.codes] == ["M", None, "F", "M"]
    assert labels["occupation"].codes.tolist() == [1, -1, -1, 0]  # user 2 gave none


def test_user_attributes_refuse_duplicate_ids_and_foreign_files(user_file, tmp_path):
    twice = tmp_path / "twice.user"
    twice.write_text(user_file.read_text() + "2\t31\tM\twriter\n")
    with pytest.raises(DataError, match="duplicate user ids, e.g. '2'"):
        user_attributes(twice, ["gender"], ["1", "2"])
    with pytest.raises(DataError, match="none of the 2 users"):
        user_attributes(user_file, ["gender"], ["7", "8"])
