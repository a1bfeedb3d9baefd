"""Sensitive user attributes: read them from a RecBole ``.user`` file and encode them as labels.

Every consumer (unlearning losses, audits, reports) needs the same class indices for the same
users, so the encoding is deterministic: classes are sorted (numerically when every known value
is a number, in age order for age groups) and unknown values get code -1. One loader,
:func:`user_attributes`, joins a ``.user`` file to a list of user tokens, for the pipeline
(:func:`load_attributes`) and the offline audit alike; duplicate user ids are refused.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

AGE_GROUPS: tuple[str, ...] = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
"""The MovieLens-1M age groups; per-year ages (ml-100k, Last.fm) are mapped onto them."""

_AGE_GROUP_LOWER_BOUNDS = (18, 25, 35, 45, 50, 56)

MISSING_TOKENS: frozenset[str] = frozenset({"", "[pad]", "nan", "null", "n/a", "unknown"})
"""Values (compared stripped and lower-cased) that mean "unknown"; ``None`` and float NaN too.

"none" is deliberately absent: it is a real ml-100k occupation.
"""


class DataError(ValueError):
    """The dataset cannot be audited as asked (missing .user file, unknown attribute...)."""


@dataclass(frozen=True)
class AttributeLabels:
    """One attribute encoded for all users: ``codes[i]`` indexes ``classes``, -1 = unknown."""

    name: str
    codes: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes, dtype=np.int64)
        if codes.ndim != 1:
            raise ValueError(f"attribute {self.name!r}: codes must be one-dimensional")
        if codes.size and (codes.min() < -1 or codes.max() >= len(self.classes)):
            raise ValueError(f"attribute {self.name!r}: codes must lie in -1..{len(self.classes)}")
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "classes", tuple(self.classes))

    @property
    def n_known(self) -> int:
        """Users with a known value."""
        return int((self.codes >= 0).sum())

    @property
    def n_missing(self) -> int:
        """Users whose value is unknown (code -1)."""
        return int((self.codes < 0).sum())

    @property
    def counts(self) -> np.ndarray:
        """Users per class, in the order of ``classes``."""
        return np.bincount(self.codes[self.codes >= 0], minlength=len(self.classes))


def _normalise(value: object) -> str | float | None:
    """A raw value as a number, a stripped string, or None when it means "unknown"."""
    if value is None:
        return None
    if isinstance(value, Real) and not isinstance(value, bool):
        number = float(value)
        return None if math.isnan(number) else number
    text = str(value).strip()
    if text.lower() in MISSING_TOKENS:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return None if math.isnan(number) else number


def _label(value: str | float) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if value.is_integer() else str(value)


def _age_group(age: float) -> str:
    """The MovieLens-1M group of an age in years; the ML-1M codes 1, 18, …, 56 map to their own."""
    return AGE_GROUPS[int(np.searchsorted(_AGE_GROUP_LOWER_BOUNDS, age, side="right"))]


def encode_attribute(
    name: str, values: Sequence[object], *, age_groups: bool | None = None
) -> AttributeLabels:
    """Encode raw attribute values (strings, numbers, None, NaN) as class codes.

    ``age_groups=None`` maps numeric ages onto :data:`AGE_GROUPS` when ``name`` is "age"; ``True``
    forces the mapping, ``False`` keeps the raw values as classes. Only the age groups that occur
    become classes (a chance level over absent groups would be meaningless).
    """
    normalised = [_normalise(value) for value in values]
    known = [value for value in normalised if value is not None]
    if not known:
        raise ValueError(f"attribute {name!r}: every value is missing")
    numeric = all(isinstance(value, float) for value in known)
    if age_groups is None:
        age_groups = name.lower() == "age" and numeric
    if age_groups and not numeric:
        raise ValueError(f"attribute {name!r}: age groups need numeric ages")

    if age_groups:
        labels = [None if value is None else _age_group(value) for value in normalised]
        classes = tuple(group for group in AGE_GROUPS if group in labels)
    else:
        labels = [None if value is None else _label(value) for value in normalised]
        order = sorted(set(known)) if numeric else sorted({_label(value) for value in known})
        classes = tuple(_label(value) for value in order)
    if len(classes) < 2:
        raise ValueError(f"attribute {name!r}: only one class present ({classes[0]!r})")

    index = {label: code for code, label in enumerate(classes)}
    codes = np.array([-1 if label is None else index[label] for label in labels], dtype=np.int64)
    return AttributeLabels(name=name, codes=codes, classes=classes)


def read_user_file(path: str | os.PathLike, columns: Sequence[str]) -> pd.DataFrame:
    """Read ``columns`` of a RecBole atomic ``.user`` file as strings, user id column first.

    Header fields look like ``age:token``; the ``:type`` suffix is dropped. The user id column is
    ``user_id`` when present, else the first column.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"user file not found: {os.fspath(path)}")
    frame = pd.read_csv(
        path, sep="\t", dtype=str, keep_default_na=False, na_filter=False, quoting=csv.QUOTE_NONE
    )
    frame.columns = [str(column).split(":", 1)[0] for column in frame.columns]
    user_column = "user_id" if "user_id" in frame.columns else frame.columns[0]
    unknown = [column for column in columns if column not in frame.columns]
    if unknown:
        raise ValueError(
            f"{os.fspath(path)}: unknown column(s) {', '.join(unknown)}; "
            f"available: {', '.join(frame.columns)}"
        )
    wanted = [user_column, *(column for column in dict.fromkeys(columns) if column != user_column)]
    return frame[wanted].reset_index(drop=True)


def user_attributes(
    user_file: str | os.PathLike, names: Sequence[str], tokens: Sequence[str]
) -> dict[str, AttributeLabels]:
    """Labels of ``names`` for the users ``tokens``, in that order, from a ``.user`` file;
    users the file does not list are unknown. A file with duplicate user ids, or without any of
    the users, is refused (``DataError``)."""
    frame = read_user_file(user_file, names)
    ids = frame.iloc[:, 0]
    if ids.duplicated().any():
        first = ids[ids.duplicated()].iloc[0]
        raise DataError(f"{os.fspath(user_file)}: duplicate user ids, e.g. {first!r}")
    rows = frame.set_index(ids).reindex(np.asarray(tokens).astype(str))
    if rows[list(names)].isna().all(axis=None):
        raise DataError(f"{os.fspath(user_file)}: none of the {len(tokens)} users is in this file")
    return {name: encode_attribute(name, rows[name].tolist()) for name in names}


def load_attributes(config: Mapping[str, Any], dataset: Any) -> dict[str, AttributeLabels]:
    """The ``sensitive_attributes`` of a RecBole dataset's users, by internal user id (row 0,
    RecBole's padding user, is unknown).

    Read from the dataset's ``.user`` atomic file and joined on the users' tokens rather than
    through RecBole's ``load_col``, because RecBole fills missing float values with the column
    mean, which would invent attribute values for users who gave none.
    """
    user_file = Path(config["data_path"]) / f"{config['dataset']}.user"
    if not user_file.is_file():
        raise DataError(
            f"dataset '{config['dataset']}' has no .user file ({user_file}): "
            "sensitive attributes are read from it"
        )
    tokens = dataset.field2id_token[dataset.uid_field]
    return user_attributes(user_file, list(config["sensitive_attributes"]), tokens)
