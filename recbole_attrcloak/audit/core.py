"""Run the attacker zoo under each protocol and collect the report the pipeline reads."""

from __future__ import annotations

import time
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from recbole_attrcloak.audit.attackers import ATTACKERS, make_attacker
from recbole_attrcloak.audit.metrics import balanced_accuracy, confusion_matrix, split_metrics
from recbole_attrcloak.audit.metrics import summarise as summarise_metrics
from recbole_attrcloak.audit.protocols import (
    PROTOCOLS,
    PreparedAttribute,
    Split,
    kfold_splits,
    min_class_size,
    prepare_attribute,
    shadow_splits,
)
from recbole_attrcloak.audit.significance import (
    bootstrap_balanced_accuracy,
    bootstrap_weights,
    interval,
    permutation_settled,
    permutation_summary,
)
from recbole_attrcloak.data.attributes import AttributeLabels

_PERMUTATIONS_PER_JOB = 5
_JOBS_PER_ROUND = 4  # permutations run in rounds of 20, so a settled test can stop early


@dataclass
class AuditSettings:
    """What an audit runs. The defaults are the ``full`` preset.

    ``significance_attackers``: the attackers the permutation test retrains on
    ``n_permutations`` label shuffles per protocol, fixed before any result is seen (``None``:
    logreg when audited, else the first attacker). ``n_resamples``: bootstrap resamples behind
    each confidence interval. ``alpha``: the level at which the verdict calls a difference from
    chance significant.
    """

    protocols: tuple[str, ...] = PROTOCOLS
    attackers: tuple[str, ...] = tuple(ATTACKERS)
    seeds: int = 3
    shadow_fraction: float = 0.2
    n_folds: int = 5
    kfold_repeats: int = 1
    n_permutations: int = 100
    significance_attackers: tuple[str, ...] | None = None
    n_resamples: int = 2000
    alpha: float = 0.05
    n_jobs: int = 2
    seed: int = 2020

    def __post_init__(self) -> None:
        self.protocols = tuple(self.protocols)
        self.attackers = tuple(self.attackers)
        if not self.protocols or not self.attackers:
            raise ValueError("an audit needs at least one protocol and one attacker")
        for protocol in self.protocols:
            if protocol not in PROTOCOLS:
                raise ValueError(
                    f"unknown protocol {protocol!r}; choose from: {', '.join(PROTOCOLS)}"
                )
        for attacker in self.attackers:
            make_attacker(attacker, 0)
        if self.significance_attackers is None:
            self.significance_attackers = (
                ("logreg",) if "logreg" in self.attackers else self.attackers[:1]
            )
        self.significance_attackers = tuple(self.significance_attackers)
        unknown = set(self.significance_attackers) - set(self.attackers)
        if unknown:
            raise ValueError(f"significance_attackers {sorted(unknown)} are not audited attackers")
        if not 0 < self.shadow_fraction < 1:
            raise ValueError(f"shadow_fraction must lie in (0, 1), got {self.shadow_fraction}")
        if self.seeds < 1 or self.n_folds < 2 or self.kfold_repeats < 1:
            raise ValueError("seeds and kfold_repeats must be >= 1, n_folds >= 2")
        if self.n_permutations < 0 or self.n_resamples < 1:
            raise ValueError("n_permutations must be >= 0 and n_resamples >= 1")

    @classmethod
    def preset(cls, name: str) -> AuditSettings:
        """``full``: both protocols, every attacker, permutation tests (the defaults).
        ``quick``: the paper's shadow protocol with its MLP and XGBoost, no permutation test."""
        if name == "full":
            return cls()
        if name == "quick":
            return cls(protocols=("shadow",), attackers=("mlp", "xgboost"), n_permutations=0)
        raise ValueError(f"unknown audit preset {name!r}; choose from: quick, full")


def audit_representations(
    X: np.ndarray,
    attributes: Mapping[str, AttributeLabels],
    settings: AuditSettings | None = None,
    progress: bool = False,
) -> dict:
    """How well attackers infer each attribute from the user representations ``X`` (n_users, d).

    Row ``i`` of ``X`` belongs to the user whose label is ``attributes[name].codes[i]``.
    Returns one report entry per attribute (see docs/audit.md).
    """
    settings = settings or AuditSettings()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise ValueError(f"representations must be a finite 2-D array, got shape {X.shape}")
    for name, labels in attributes.items():
        if len(labels.codes) != len(X):
            raise ValueError(
                f"attribute {name!r} has {len(labels.codes)} users, representations {len(X)}"
            )
    min_size = max(
        min_class_size(p, shadow_fraction=settings.shadow_fraction, n_folds=settings.n_folds)
        for p in settings.protocols
    )
    prepared = {name: prepare_attribute(labels, min_size) for name, labels in attributes.items()}
    with (
        tqdm(total=0, desc="audit", unit="fit", disable=not progress) as bar,
        Parallel(n_jobs=settings.n_jobs, return_as="generator") as parallel,
    ):
        runner = _Runner(settings, parallel, bar)
        return {name: runner.audit(name, X[prep.users], prep) for name, prep in prepared.items()}


def _derived_seed(seed: int, *parts: str | int) -> int:
    """A seed for one component, independent of the order in which components run."""
    entropy = [seed, *(zlib.crc32(str(part).encode()) for part in parts)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@contextmanager
def _fit_environment() -> Iterator[None]:
    """One BLAS thread per fit (the audit parallelises over fits) and no convergence chatter."""
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _class_proba(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` with one column per class, zero for classes absent from training."""
    proba = np.zeros((len(X), n_classes))
    proba[:, model.classes_] = model.predict_proba(X)
    return proba


def _fit_predict(
    X: np.ndarray, y: np.ndarray, splits: Sequence[Split], attacker: str, seeds: Sequence[int]
) -> list[np.ndarray]:
    """Train ``attacker`` on each split's training users; class probabilities of its test users."""
    n_classes = int(y.max()) + 1
    with _fit_environment():
        probas = []
        for s, seed in zip(splits, seeds, strict=True):
            model = make_attacker(attacker, seed).fit(X[s.train], y[s.train])
            probas.append(_class_proba(model, X[s.test], n_classes))
    return probas


def _null_scores(
    X: np.ndarray,
    permuted: np.ndarray,
    splits: Sequence[Split],
    attacker: str,
    seeds: Sequence[int],
) -> np.ndarray:
    """Mean balanced accuracy over splits for each row of permuted labels."""
    n_classes = int(permuted.max()) + 1
    scores = np.zeros(len(permuted))
    with _fit_environment():
        for row, y in enumerate(permuted):
            for s, seed in zip(splits, seeds, strict=True):
                model = make_attacker(attacker, seed).fit(X[s.train], y[s.train])
                pred = _class_proba(model, X[s.test], n_classes).argmax(axis=1)
                scores[row] += balanced_accuracy(confusion_matrix(y[s.test], pred, n_classes))
    return scores / len(splits)


class _Runner:
    """Audits one attribute at a time, fanning the fits out to the shared joblib pool."""

    def __init__(self, settings: AuditSettings, parallel: Parallel, bar: tqdm) -> None:
        self.settings = settings
        self.parallel = parallel
        self.bar = bar

    def _run(self, jobs: list[tuple[int, object]]) -> list:
        """Run ``(n_fits, delayed call)`` jobs in parallel, in order, advancing the progress bar."""
        self.bar.total += sum(n_fits for n_fits, _ in jobs)
        self.bar.refresh()
        results = []
        for (n_fits, _), result in zip(jobs, self.parallel(job for _, job in jobs), strict=True):
            self.bar.update(n_fits)
            results.append(result)
        return results

    def _splits(self, protocol: str, y: np.ndarray) -> list[Split]:
        s = self.settings
        if protocol == "shadow":
            return shadow_splits(y, fraction=s.shadow_fraction, seeds=s.seeds, seed=s.seed)
        return kfold_splits(y, n_folds=s.n_folds, repeats=s.kfold_repeats, seed=s.seed)

    def audit(self, name: str, X: np.ndarray, prep: PreparedAttribute) -> dict:
        start = time.perf_counter()
        s, y, n_classes = self.settings, prep.y, len(prep.classes)
        splits = {p: self._splits(p, y) for p in s.protocols}
        seeds = {
            p: [_derived_seed(s.seed, name, p, i) for i in range(len(splits[p]))] for p in splits
        }

        runs = [(p, a) for p in s.protocols for a in s.attackers]
        probas = self._run(
            [(len(splits[p]), delayed(_fit_predict)(X, y, splits[p], a, seeds[p])) for p, a in runs]
        )
        preds = {key: [proba.argmax(axis=1) for proba in probas[i]] for i, key in enumerate(runs)}
        metrics = {}
        for (p, a), proba in zip(runs, probas, strict=True):
            tests = [split.test for split in splits[p]]
            metrics[p, a] = summarise_metrics(
                [split_metrics(y[t], pr) for t, pr in zip(tests, proba, strict=True)]
            )
        self._intervals(name, y, n_classes, splits, preds, metrics)

        tested = {p: list(s.significance_attackers) if s.n_permutations else [] for p in splits}
        significance = self._permutation_tests(name, X, y, splits, seeds, tested, metrics)

        entry: dict = {
            "chance": 1 / n_classes,
            "majority": float(np.bincount(y).max() / len(y)),
            "n_users": len(y),
            "n_missing": prep.n_missing,
            "classes": list(prep.classes),
            "dropped_classes": prep.dropped_classes,
        }
        if "shadow" in s.protocols:
            entry.update({a: metrics["shadow", a] for a in s.attackers})
        if "kfold" in s.protocols:
            entry["kfold"] = {a: metrics["kfold", a] for a in s.attackers}
        entry["significance"] = significance
        entry["strongest"] = _strongest(metrics, significance, 1 / n_classes, s.alpha)
        entry["seconds"] = time.perf_counter() - start
        return entry

    def _intervals(
        self,
        name: str,
        y: np.ndarray,
        n_classes: int,
        splits: dict[str, list[Split]],
        preds: dict[tuple[str, str], list[np.ndarray]],
        metrics: dict,
    ) -> None:
        """Add a bootstrap 95 % interval (users resampled, the same resamples for every attacker)
        to each attacker's balanced accuracy."""
        rng = np.random.default_rng(_derived_seed(self.settings.seed, name, "bootstrap"))
        weights = bootstrap_weights(len(y), self.settings.n_resamples, rng)
        for (p, a), pred in preds.items():
            tests = [split.test for split in splits[p]]
            replicates = bootstrap_balanced_accuracy(
                weights, tests, [y[t] for t in tests], pred, n_classes
            )
            metrics[p, a]["balanced_accuracy"]["ci95"] = interval(replicates)

    def _permutation_tests(
        self,
        name: str,
        X: np.ndarray,
        y: np.ndarray,
        splits: dict[str, list[Split]],
        seeds: dict[str, list[int]],
        tested: dict[str, list[str]],
        metrics: dict,
    ) -> dict[str, dict[str, dict]]:
        """Rerun the tested attackers on shuffled labels (the same shuffles for all of them).

        Permutations run in rounds; a test stops early once both tails hold enough null scores
        to show that neither p-value can become small (sequential Monte Carlo test).
        """
        rng = np.random.default_rng(_derived_seed(self.settings.seed, name, "permutations"))
        permuted = np.array([rng.permutation(y) for _ in range(self.settings.n_permutations)])
        starts = range(0, len(permuted), _PERMUTATIONS_PER_JOB)
        chunks = [permuted[i : i + _PERMUTATIONS_PER_JOB] for i in starts]
        keys = [(p, a) for p in tested for a in tested[p]]
        observed = {key: metrics[key]["balanced_accuracy"]["mean"] for key in keys}
        null: dict[tuple[str, str], list[np.ndarray]] = {key: [] for key in observed}
        active = list(observed)
        for first in range(0, len(chunks), _JOBS_PER_ROUND):
            round_chunks = chunks[first : first + _JOBS_PER_ROUND]
            runs = [(p, a, chunk) for p, a in active for chunk in round_chunks]
            jobs = [
                (len(c) * len(splits[p]), delayed(_null_scores)(X, c, splits[p], a, seeds[p]))
                for p, a, c in runs
            ]
            for (p, a, _), scores in zip(runs, self._run(jobs), strict=True):
                null[p, a].append(scores)
            active = [
                key
                for key in active
                if not permutation_settled(observed[key], np.concatenate(null[key]))
            ]
            if not active:
                break
        significance: dict[str, dict[str, dict]] = {p: {} for p in tested}
        for (p, a), scores in null.items():
            summary = permutation_summary(observed[p, a], np.concatenate(scores))
            significance[p][a] = {**summary, "ci95": metrics[p, a]["balanced_accuracy"]["ci95"]}
        return significance


def _strongest(
    metrics: dict[tuple[str, str], dict],
    significance: dict[str, dict[str, dict]],
    chance: float,
    alpha: float,
) -> dict:
    """The best attack over protocols and attackers, and a one-line verdict.

    The verdict rests on the permutation tests (retrained attackers; see docs/audit.md for why
    not on the intervals), their p-values Bonferroni-adjusted for the m tested pairs: leakage
    when the smallest adjusted p above chance is <= alpha, else over-correction when a pair's
    adjusted p below chance is <= alpha. Without a permutation test it falls back, marked as
    such, on the strongest pair's 95 % interval.
    """
    protocol, attacker = max(metrics, key=lambda key: metrics[key]["balanced_accuracy"]["mean"])
    ba = metrics[protocol, attacker]["balanced_accuracy"]
    tests = {
        (p, a): test for p, by_attacker in significance.items() for a, test in by_attacker.items()
    }
    m = len(tests)
    above = {key: min(1.0, m * test["p_value"]) for key, test in tests.items()}
    if tests:
        tested = min(above, key=above.get)
        flagged = [key for key, test in tests.items() if m * test["p_value_below"] <= alpha]
        evidence = f"{tested[0]}/{tested[1]}, p={above[tested]:.2g}"
        leaks = above[tested] <= alpha
    else:
        tested = None
        flagged = [key for key in metrics if metrics[key]["balanced_accuracy"]["ci95"][1] < chance]
        evidence = "95% CI, no permutation test"
        leaks = ba["ci95"][0] > chance
    if leaks:
        verdict = f"leakage detected ({evidence})"
    elif flagged:
        verdict = f"below chance: over-correction ({', '.join(f'{p}/{a}' for p, a in flagged)})"
    else:
        verdict = f"no leakage detectable ({evidence})"
    return {
        "protocol": protocol,
        "attacker": attacker,
        "balanced_accuracy": ba["mean"],
        "gap_to_chance": ba["mean"] - chance,
        "ci95": ba["ci95"],
        "p_value": above[tested] if tested else None,
        "tested": f"{tested[0]}/{tested[1]}" if tested else None,
        "below_chance": [f"{p}/{a}" for p, a in flagged],
        "verdict": verdict,
    }
