"""Audit protocols: which users an attacker trains on and which it is scored on.

``shadow`` is the paper's setting (a stratified 20 % shadow set, scored on the other 80 %,
repeated over seeds); ``kfold`` is a better-equipped attacker (stratified k-fold cross-validation,
training on 80 % of the users). Neither ever scores a user it was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedShuffleSplit

from recbole_attrcloak.data.attributes import AttributeLabels

PROTOCOLS: tuple[str, ...] = ("shadow", "kfold")


@dataclass(frozen=True)
class Split:
    """Indices (into the audited users) an attacker trains on and is scored on."""

    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class PreparedAttribute:
    """The users and labels one attribute is audited on, after dropping too-small classes."""

    users: np.ndarray  # indices into the embedding rows
    y: np.ndarray  # class codes 0..k-1 of those users
    classes: tuple[str, ...]
    dropped_classes: dict[str, int]  # class name -> users dropped with it
    n_missing: int
    min_size: int  # the fewest users a class needed to be kept


def min_class_size(protocol: str, *, shadow_fraction: float, n_folds: int) -> int:
    """Fewest members a class needs so that every split can stratify it.

    k-fold needs one member per fold; the shadow split needs at least two members and one
    expected member in the shadow set (``ceil(1 / shadow_fraction)``: 5 at 20 %).
    """
    if protocol == "kfold":
        return n_folds
    if protocol == "shadow":
        return max(2, math.ceil(1 / shadow_fraction - 1e-9))
    raise ValueError(f"unknown protocol {protocol!r}; choose from: {', '.join(PROTOCOLS)}")


def prepare_attribute(labels: AttributeLabels, min_size: int) -> PreparedAttribute:
    """Keep users with a known value whose class has at least ``min_size`` members.

    Classes below ``min_size`` are dropped with their users (and reported) rather than merged:
    merging would invent a class whose chance level means nothing.
    """
    counts = labels.counts
    kept = np.flatnonzero(counts >= min_size)
    if len(kept) < 2:
        raise ValueError(
            f"attribute {labels.name!r}: fewer than 2 classes with at least {min_size} users"
        )
    # One extra slot at the end, so that code -1 (unknown) maps to -1 too.
    recode = np.full(len(labels.classes) + 1, -1, dtype=np.int64)
    recode[kept] = np.arange(len(kept))
    codes = recode[labels.codes]
    users = np.flatnonzero(codes >= 0)
    dropped = {labels.classes[c]: int(counts[c]) for c in np.flatnonzero(counts < min_size)}
    return PreparedAttribute(
        users=users,
        y=codes[users],
        classes=tuple(labels.classes[c] for c in kept),
        dropped_classes={name: n for name, n in dropped.items() if n > 0},
        n_missing=labels.n_missing,
        min_size=min_size,
    )


def shadow_splits(y: np.ndarray, *, fraction: float, seeds: int, seed: int) -> list[Split]:
    """``seeds`` stratified splits: ``fraction`` of the users train the attacker, the rest test."""
    splitter = StratifiedShuffleSplit(n_splits=seeds, train_size=fraction, random_state=seed)
    return [Split(train, test) for train, test in splitter.split(np.zeros(len(y)), y)]


def kfold_splits(y: np.ndarray, *, n_folds: int, repeats: int, seed: int) -> list[Split]:
    """Stratified k-fold cross-validation, repeated ``repeats`` times with fresh shuffles."""
    splitter = RepeatedStratifiedKFold(n_splits=n_folds, n_repeats=repeats, random_state=seed)
    return [Split(train, test) for train, test in splitter.split(np.zeros(len(y)), y)]
