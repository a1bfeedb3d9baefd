"""Every config key of recbole-attrcloak and what it accepts: one table, one line per key.

``KEYS`` maps each key to a :class:`Check` (type, range or choices). The pipeline checks a run's
settings against it when the config is built, before any data is read or a model trained
(``config.check_config``); sweeps check every trial when the spec is read; the defences check
their own keys again when called directly from Python. A key with one of our prefixes
(``PREFIXES``) that is not in the table is a typo, refused with the closest known key.

Add a key: its default (commented) in ``properties/overall.yaml`` or ``baselines.yaml``, and one
line below, e.g. ``"au_z_tol": real("[0, inf)")``, ``"au_objective": choice(Objective)``,
``"au_kernel_gammas": listof(real("(0, inf)"))``. ``tests/test_keys.py`` checks that the table
and the properties files name the same keys and that every default passes its check.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

import numpy as np

from recbole_attrcloak.audit.settings import AuditPreset
from recbole_attrcloak.engine import DDRetention, Mode, Objective
from recbole_attrcloak.engine.optim import OPTIMIZERS
from recbole_attrcloak.losses import (
    FIXED_SOLVERS,
    AdversaryGame,
    Covariance,
    MMDEstimator,
    Solver,
    Target,
)
from recbole_attrcloak.losses.attribute_labels import LABEL_WEIGHTS
from recbole_attrcloak.losses.directions import DIRECTION_BASES

#: Prefixes of our keys: any other key with one of them is a typo.
PREFIXES = ("au_", "audit_", "du_", "u2u_", "d2d_", "rap_", "blurme_", "ldp_")


class Regularizer(StrEnum):
    """``du_regularizer``: what keeps U2U-R's and D2D-R's recommendations."""

    RANKING = "ranking"
    L2 = "l2"


class BlurMeStrategy(StrEnum):
    """``blurme_strategy``: how BlurMe picks each user's extra items."""

    GREEDY = "greedy"
    SAMPLED = "sampled"


@dataclass(frozen=True)
class Check:
    """What one key accepts: ``accepts(value)``, and ``wants``, the same in words (for
    "KEY must be WANTS, got VALUE")."""

    wants: str
    accepts: Callable[[Any], bool]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _is_integer(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and float(value).is_integer()


_INTERVAL = re.compile(r"^([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])$")


def _bounds(interval: str) -> tuple[float, float, bool, bool, str]:
    """``"(0, 1]"`` -> (low, high, low included, high included, the words for it)."""
    match = _INTERVAL.match(interval)
    if match is None:
        raise ValueError(f"not an interval: {interval!r}")
    left, low, high, right = match.groups()
    lo, hi = float(low), float(high)
    closed_low, closed_high = left == "[", right == "]"
    if hi == math.inf:
        words = f"{'>=' if closed_low else '>'} {low}"
    elif lo == -math.inf:
        words = f"{'<=' if closed_high else '<'} {high}"
    else:
        words = f"in {interval}"
    if lo == -math.inf and hi == math.inf:
        words = "a finite number"
    return lo, hi, closed_low, closed_high, words


def _inside(value: float, lo: float, hi: float, closed_low: bool, closed_high: bool) -> bool:
    above = value >= lo if closed_low else value > lo
    below = value <= hi if closed_high else value < hi
    return above and below  # NaN fails both


def real(interval: str = "(-inf, inf)") -> Check:
    """A number in ``interval`` (e.g. ``"(0, 1]"``, ``"[0, inf)"``: an open end at inf also
    refuses inf)."""
    lo, hi, closed_low, closed_high, words = _bounds(interval)
    return Check(
        words, lambda v: _is_number(v) and _inside(float(v), lo, hi, closed_low, closed_high)
    )


def integer(low: int | None = None, high: int | None = None) -> Check:
    """A whole number (an int, or a float such as 3.0) in ``[low, high]``."""
    lo = -math.inf if low is None else low
    hi = math.inf if high is None else high
    if low is not None and high is not None:
        words = f"an integer in [{low}, {high}]"
    elif low is not None:
        words = f"an integer >= {low}"
    elif high is not None:
        words = f"an integer <= {high}"
    else:
        words = "an integer"
    return Check(words, lambda v: _is_integer(v) and lo <= v <= hi)


def choice(values: Iterable[Any] | type[Enum], *, fold_case: bool = False) -> Check:
    """One of ``values`` (strings, or an enum's values); ``fold_case`` ignores case."""
    allowed = tuple(v.value if isinstance(v, Enum) else v for v in values)

    def accepts(value: Any) -> bool:
        if fold_case and isinstance(value, str):
            return value.lower() in {str(a).lower() for a in allowed}
        return isinstance(value, str) and value in allowed

    return Check(f"one of {list(allowed)}" if len(allowed) > 1 else repr(allowed[0]), accepts)


def boolean() -> Check:
    """``true`` or ``false`` (not 0/1, not a string)."""
    return Check("true or false", lambda v: isinstance(v, bool | np.bool_))


def optional(check: Check) -> Check:
    """``check``, or unset (``~`` in YAML, None)."""
    return Check(f"unset (~) or {check.wants}", lambda v: v is None or check.accepts(v))


def either(*checks: Check) -> Check:
    """Any of ``checks``."""
    return Check(" or ".join(c.wants for c in checks), lambda v: any(c.accepts(v) for c in checks))


def listof(check: Check, *, min_length: int = 1) -> Check:
    """A list (or tuple) of at least ``min_length`` values, each passing ``check``."""
    return Check(
        f"a list of {check.wants} (at least {min_length})",
        lambda v: (
            isinstance(v, list | tuple)
            and len(v) >= min_length
            and all(check.accepts(x) for x in v)
        ),
    )


def _attribute_names(value: Any) -> bool:
    if isinstance(value, str):
        value = [a for a in value.split(",") if a.strip()]
    return (
        isinstance(value, list | tuple) and bool(value) and all(isinstance(a, str) for a in value)
    )


#: Every key of ours and what it accepts (defaults: properties/overall.yaml, baselines.yaml).
KEYS: dict[str, Check] = {
    # what to protect and audit
    "sensitive_attributes": Check("a non-empty list of .user column names", _attribute_names),
    "audit": choice(AuditPreset),
    "audit_seed": integer(),
    "audit_n_jobs": integer(1),
    # checked against the defence table by defences.get_defence (whose entries import this module)
    "unlearn": Check("a method name", lambda v: isinstance(v, str)),
    # AttrCloak
    "au_mode": choice(Mode),
    "au_dd_retention": choice(DDRetention),
    "au_dd_topk": integer(1),
    "au_dd_pairs": integer(1),
    "au_objective": choice(Objective),
    "au_kernel_gammas": listof(real("(0, inf)")),
    "au_features": integer(1),
    "au_recompute_users": optional(integer(0)),
    "au_directions": integer(0),
    "au_direction_basis": choice(DIRECTION_BASES),
    "au_spectral": integer(0),
    "au_neighbours": listof(integer(1), min_length=0),
    "au_class_critics": boolean(),
    "au_crossfit": listof(real("(0, inf)"), min_length=0),
    "au_crossfit_diagonal": listof(real("[0, inf)"), min_length=0),
    "au_contrasts": boolean(),
    "au_quadratic": boolean(),
    "au_squares": boolean(),
    "au_check_draws": integer(2),
    "au_block_critics": boolean(),
    "au_label_weights": choice(LABEL_WEIGHTS),
    "au_critic_ridges": listof(real("(0, inf]")),
    "au_z_tol": real("(0, inf)"),
    "au_z_margin": real("[0, inf)"),
    "au_check_slack": real("[0, inf]"),
    "au_relabel_step": real("(0, 1]"),
    "au_relabel_alpha_dd": real("(0, 1]"),
    "au_relabel_alpha_df": real("(0, 1]"),
    "au_relabel_adapt": boolean(),
    "au_relabel_check_every": integer(1),
    "au_relabel_halve": boolean(),
    "au_solver": choice(Solver),
    "au_alpha": optional(real("[0, 1]")),
    "au_covariance": choice(Covariance),
    "au_shrinkage": either(choice(["auto"]), real("[0, 1]")),
    "au_ridge": real("(0, inf)"),
    "au_target": choice(Target),
    "au_target_ratio": real("(0, inf)"),
    "au_permutations": integer(1),
    "au_check_every": integer(1),
    "au_min_class_size": integer(1),
    "au_learner": choice(OPTIMIZERS, fold_case=True),
    "au_learning_rate": real("(0, 1]"),
    "au_relative_lr": boolean(),
    "au_target_tol": real("[0, inf)"),
    "au_max_steps": integer(1),
    "au_tol": real("[0, 1)"),
    "au_patience": integer(1),
    # U2U-R and D2D-R
    "u2u_lambda": real("[0, inf)"),
    "d2d_lambda": real("[0, inf)"),
    "du_regularizer": choice(Regularizer),
    "du_topn": integer(2),
    "du_steps": integer(1),
    "du_learner": choice(OPTIMIZERS, fold_case=True),
    "du_learning_rate": real("(0, 1]"),
    "d2d_estimator": choice(MMDEstimator),
    "d2d_features": integer(1),
    # RAP
    "rap_lambda": real("[0, inf)"),
    "rap_hidden_size": integer(1),
    "rap_game": choice(AdversaryGame),
    # BlurMe
    "blurme_p": real("(0, 1]"),
    "blurme_c": real("(0, inf)"),
    "blurme_strategy": choice(BlurMeStrategy),
    # LDP-SH
    "ldp_epsilon": real("(0, inf)"),
}


def _fixed_needs_alpha(settings: Mapping[str, Any]) -> str | None:
    if settings["au_solver"] in FIXED_SOLVERS and settings["au_alpha"] is None:
        return f"au_solver={settings['au_solver']} needs au_alpha in [0, 1]"
    return None


#: Rules over several keys: each returns the problem in words, or None.
RULES: list[tuple[tuple[str, ...], Callable[[Mapping[str, Any]], str | None]]] = [
    (("au_solver", "au_alpha"), _fixed_needs_alpha),
]


def with_prefix(*prefixes: str) -> list[str]:
    """The keys of the table that start with one of ``prefixes``."""
    return [key for key in KEYS if key.startswith(prefixes)]


def check_values(settings: Mapping[str, Any], keys: Iterable[str] | None = None) -> None:
    """Check the values of ``keys`` (default: every key of the table) that ``settings`` (a dict
    or a RecBole ``Config``) holds; raise ``ValueError`` with one line for the first bad one."""
    chosen = list(KEYS if keys is None else keys)
    for key in chosen:
        if key in settings and not KEYS[key].accepts(settings[key]):
            raise ValueError(f"{key} must be {KEYS[key].wants}, got {settings[key]!r}")
    for needed, rule in RULES:
        if all(k in chosen and k in settings for k in needed) and (problem := rule(settings)):
            raise ValueError(problem)


def check_names(names: Iterable[str], known: Container[str] = ()) -> None:
    """Refuse a name with one of our prefixes that is not a key of ours, and a name not in
    ``known`` (e.g. RecBole's keys) that is a letter or two off one of our keys without a
    prefix (``unlearn``, ``audit``, ``sensitive_attributes``): ``ValueError`` with the closest
    key ("did you mean")."""
    plain = [key for key in KEYS if not key.startswith(PREFIXES)]
    for name in names:
        if name in KEYS or name in known:
            continue
        ours = name.startswith(PREFIXES)
        close = difflib.get_close_matches(
            name, KEYS if ours else plain, n=1, cutoff=0.6 if ours else 0.8
        )
        if ours or close:
            hint = f"did you mean '{close[0]}'?" if close else "see properties/overall.yaml"
            raise ValueError(f"unknown setting '{name}' ({hint})")
