"""Sensitive user attributes: read them from a RecBole ``.user`` file and encode them as labels.

Every consumer (unlearning losses, audits, reports) needs the same class indices for the same
users, so the encoding is deterministic: classes are sorted (numerically when every known value
is a number, in age order for age groups) and unknown values get code -1.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
import pandas as pd

AGE_GROUPS: tuple[str, ...] = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
"""The MovieLens-1M age groups; per-year ages (ml-100k, Last.fm) are mapped onto them."""

_AGE_GROUP_LOWER_BOUNDS = (18, 25, 35, 45, 50, 56)

MISSING_TOKENS: frozenset[str] = frozenset({"", "[pad]", "nan", "null", "n/a", "unknown"})
"""Values (compared stripped and lower-cased) that mean "unknown"; ``None`` and float NaN too.

"none" is deliberately absent: it is a real ml-100k occupation.
"""


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
