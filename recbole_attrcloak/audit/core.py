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
from recbole_attrcloak.audit.metrics import split_metrics
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
    combine_folds,
    held_out_scores,
    interval,
    maxt_adjusted,
    permutation_settled,
    permutation_summary,
    subset_permutations,
)
from recbole_attrcloak.data.attributes import AttributeLabels

_PERMUTATIONS_PER_JOB = 5
_JOBS_PER_ROUND = 4  # refit permutations run in rounds of 20, so a settled test can stop early


@dataclass
class AuditSettings:
    """What an audit runs. The defaults are the ``full`` preset.

    Every (protocol, attacker) pair gets a permutation test (docs/audit.md). Audited
    ``refit_attackers`` (by default the cheap ones, a few hundredths of a second per fit) are
    retrained on up to ``n_permutations`` shuffles under the k-fold protocol; every other pair is
    tested with its trained attackers held fixed, on ``n_held_out_permutations`` shuffles of the
    users they were not trained on (no fit at all).
    ``n_resamples``: bootstrap resamples behind each confidence interval. ``alpha``: the level at
    which the verdict calls a difference from chance significant.
    """

    protocols: tuple[str, ...] = PROTOCOLS
    attackers: tuple[str, ...] = tuple(ATTACKERS)
    seeds: int = 3
    shadow_fraction: float = 0.2
    n_folds: int = 5
    kfold_repeats: int = 1
    n_permutations: int = 100
    n_held_out_permutations: int = 1000
    refit_attackers: tuple[str, ...] = ("logreg", "knn")
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
        self.refit_attackers = tuple(self.refit_attackers)
        for attacker in self.refit_attackers:
            make_attacker(attacker, 0)
        if not 0 < self.shadow_fraction < 1:
            raise ValueError(f"shadow_fraction must lie in (0, 1), got {self.shadow_fraction}")
        if self.seeds < 1 or self.n_folds < 2 or self.kfold_repeats < 1:
            raise ValueError("seeds and kfold_repeats must be >= 1, n_folds >= 2")
        if min(self.n_permutations, self.n_held_out_permutations) < 0 or self.n_resamples < 1:
            raise ValueError("permutation counts must be >= 0 and n_resamples >= 1")

    @classmethod
    def preset(cls, name: str) -> AuditSettings:
        """``full``: both protocols, every attacker, permutation tests (the defaults).
        ``quick``: the paper's shadow protocol with its MLP and XGBoost (held-out tests only).
        ``kfold``: quick's attackers under the k-fold protocol (a sweep's check of the trial
        it selected with the quick audit)."""
        if name == "full":
            return cls()
        if name in ("quick", "kfold"):
            protocol = "shadow" if name == "quick" else "kfold"
            return cls(protocols=(protocol,), attackers=("mlp", "xgboost"))
        raise ValueError(f"unknown audit preset {name!r}; choose from: quick, full, kfold")


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
    y: np.ndarray,
    perms: np.ndarray,
    splits: Sequence[Split],
    attacker: str,
    seeds: Sequence[int],
) -> np.ndarray:
    """Mean balanced accuracy over splits of ``attacker`` retrained on ``X[perm]`` (the labels,
    splits and seeds fixed), for each row ``perm`` of ``perms``."""
    identity, n_classes = np.arange(len(y))[None], int(y.max()) + 1
    tests = [s.test for s in splits]
    scores = np.zeros(len(perms))
    for row, perm in enumerate(perms):
        probas = _fit_predict(X[perm], y, splits, attacker, seeds)
        preds = [proba.argmax(axis=1) for proba in probas]
        scores[row] = held_out_scores(y, tests, preds, identity, n_classes)[0]
    return scores


def _group_tests(scores: np.ndarray, keys: Sequence[tuple[str, str]], method: str) -> dict:
    """Per-pair summaries of a (1 + n_permutations, n_pairs) score matrix (row 0 observed) whose
    rows share their shuffles, with max-T adjusted p-values over the pairs."""
    above, below = maxt_adjusted(scores), maxt_adjusted(-scores)
    return {
        key: {
            "method": method,
            **permutation_summary(scores[:, j]),
            "p_familywise": float(above[j]),
            "p_familywise_below": float(below[j]),
        }
        for j, key in enumerate(keys)
    }


def _combined_folds(per_fold: Sequence[dict], keys: Sequence[tuple[str, str]]) -> dict:
    """One test per pair from the k-fold protocol's per-fold held-out tests (combine_folds)."""
    combined = {}
    for key in keys:
        tests = [fold[key] for fold in per_fold]
        combined[key] = {
            "method": "held_out_per_fold",
            "observed": float(np.mean([t["observed"] for t in tests])),
            **{
                field: combine_folds([t[field] for t in tests])
                for field in ("p_value", "p_value_below", "p_familywise", "p_familywise_below")
            },
            "null_mean": float(np.mean([t["null_mean"] for t in tests])),
            "null_std": None,
            "n_permutations": tests[0]["n_permutations"],
            "fold_p_values": [t["p_value"] for t in tests],
        }
    return combined


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

        significance = self._significance(name, X, y, splits, seeds, preds)
        for (p, a), test in significance.items():
            test["ci95"] = metrics[p, a]["balanced_accuracy"]["ci95"]

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
        entry["significance"] = {
            p: {a: significance[p, a] for a in s.attackers if (p, a) in significance}
            for p in s.protocols
        }
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

    def _significance(
        self,
        name: str,
        X: np.ndarray,
        y: np.ndarray,
        splits: dict[str, list[Split]],
        seeds: dict[str, list[int]],
        preds: dict[tuple[str, str], list[np.ndarray]],
    ) -> dict[tuple[str, str], dict]:
        """A permutation test for every (protocol, attacker) pair.

        Pairs are tested in groups that share their shuffles (shadow held-out, k-fold refit,
        k-fold held-out per fold); ``p_familywise`` is max-T adjusted within a group, then
        Bonferroni-adjusted for the number of groups.
        """
        s = self.settings
        refit = [a for a in s.attackers if a in s.refit_attackers and s.n_permutations]
        fixed = [a for a in s.attackers if a not in refit] if s.n_held_out_permutations else []
        groups = []
        if "shadow" in splits and s.n_held_out_permutations:
            shadow = {a: preds["shadow", a] for a in s.attackers}
            groups.append(self._held_out_tests(name, y, splits["shadow"], shadow))
        if "kfold" in splits and refit:
            kfold = {a: preds["kfold", a] for a in refit}
            groups.append(self._refit_tests(name, X, y, splits["kfold"], seeds["kfold"], kfold))
        if "kfold" in splits and fixed:
            kfold = {a: preds["kfold", a] for a in fixed}
            groups.append(self._per_fold_tests(name, y, splits["kfold"], kfold))
        tests = {}
        for group in groups:
            for key, test in group.items():
                for field in ("p_familywise", "p_familywise_below"):
                    test[field] = min(1.0, len(groups) * test[field])
                tests[key] = test
        return tests

    def _held_out_tests(
        self, name: str, y: np.ndarray, splits: list[Split], preds: dict[str, list[np.ndarray]]
    ) -> dict[tuple[str, str], dict]:
        """Shadow protocol: shuffle the users that no shadow set contains (the attackers of every
        split test them and none trained on them) among themselves, attackers held fixed."""
        rng = np.random.default_rng(_derived_seed(self.settings.seed, name, "held_out"))
        trained = np.concatenate([split.train for split in splits])
        never_trained = np.setdiff1d(np.arange(len(y)), trained)
        perms = subset_permutations(
            len(y), never_trained, self.settings.n_held_out_permutations, rng
        )
        tests, n_classes = [split.test for split in splits], int(y.max()) + 1
        scores = [held_out_scores(y, tests, pred, perms, n_classes) for pred in preds.values()]
        return _group_tests(np.column_stack(scores), [("shadow", a) for a in preds], "held_out")

    def _per_fold_tests(
        self, name: str, y: np.ndarray, splits: list[Split], preds: dict[str, list[np.ndarray]]
    ) -> dict[tuple[str, str], dict]:
        """K-fold protocol without refits: each fold's test users are shuffled among themselves
        against that fold's fixed attackers (exact for the fold, not for the mean over folds,
        whose other attackers trained on these users); the folds' p-values are then combined."""
        rng = np.random.default_rng(_derived_seed(self.settings.seed, name, "per_fold"))
        keys, n_classes = [("kfold", a) for a in preds], int(y.max()) + 1
        per_fold = []
        for i, split in enumerate(splits):
            perms = subset_permutations(
                len(y), split.test, self.settings.n_held_out_permutations, rng
            )
            scores = [
                held_out_scores(y, [split.test], [pred[i]], perms, n_classes)
                for pred in preds.values()
            ]
            per_fold.append(_group_tests(np.column_stack(scores), keys, "held_out"))
        return _combined_folds(per_fold, keys)

    def _refit_tests(
        self,
        name: str,
        X: np.ndarray,
        y: np.ndarray,
        splits: list[Split],
        seeds: list[int],
        preds: dict[str, list[np.ndarray]],
    ) -> dict[tuple[str, str], dict]:
        """Retrain each attacker of ``preds`` (its observed predictions by split) on embeddings
        shuffled over all users, the same shuffles for all of them.

        Permutations run in rounds; the test stops early once every attacker has enough null
        scores on both sides of its observed score to show that no p-value can become small
        (sequential Monte Carlo test).
        """
        rng = np.random.default_rng(_derived_seed(self.settings.seed, name, "refit"))
        perms = subset_permutations(len(y), np.arange(len(y)), self.settings.n_permutations, rng)
        tests, n_classes = [split.test for split in splits], int(y.max()) + 1
        # rows of scores per attacker: the observed one (identity), then the null ones so far
        rows = {
            a: [held_out_scores(y, tests, pred, perms[:1], n_classes)] for a, pred in preds.items()
        }
        per_round = _PERMUTATIONS_PER_JOB * _JOBS_PER_ROUND
        for first in range(1, len(perms), per_round):
            runs = [
                (a, perms[i : i + _PERMUTATIONS_PER_JOB])
                for a in preds
                for i in range(first, min(first + per_round, len(perms)), _PERMUTATIONS_PER_JOB)
            ]
            jobs = [
                (len(chunk) * len(splits), delayed(_null_scores)(X, y, chunk, splits, a, seeds))
                for a, chunk in runs
            ]
            for (a, _), scores in zip(runs, self._run(jobs), strict=True):
                rows[a].append(scores)
            settled = [permutation_settled(r[0][0], np.concatenate(r[1:])) for r in rows.values()]
            if all(settled):
                break
        scores = np.column_stack([np.concatenate(r) for r in rows.values()])
        return _group_tests(scores, [("kfold", a) for a in preds], "refit")


def _strongest(
    metrics: dict[tuple[str, str], dict],
    tests: dict[tuple[str, str], dict],
    chance: float,
    alpha: float,
) -> dict:
    """The best attack over protocols and attackers, and a one-line verdict.

    The verdict rests on the familywise permutation p-values (see docs/audit.md for why not on
    the intervals): leakage when the smallest ``p_familywise`` is <= alpha (``tested`` names that
    pair, ties going to the higher score), else over-correction when some pair's
    ``p_familywise_below`` is <= alpha. Without any permutation test it falls back, marked as
    such, on the strongest pair's 95 % interval.
    """
    protocol, attacker = max(metrics, key=lambda key: metrics[key]["balanced_accuracy"]["mean"])
    ba = metrics[protocol, attacker]["balanced_accuracy"]
    if tests:
        tested = min(tests, key=lambda key: (tests[key]["p_familywise"], -tests[key]["observed"]))
        p_value = tests[tested]["p_familywise"]
        flagged = [key for key, test in tests.items() if test["p_familywise_below"] <= alpha]
        evidence = f"{tested[0]}/{tested[1]}, familywise p={p_value:.2g}"
        leaks = p_value <= alpha
    else:
        tested = p_value = None
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
        "p_value": p_value,
        "tested": f"{tested[0]}/{tested[1]}" if tested else None,
        "below_chance": [f"{p}/{a}" for p, a in flagged],
        "verdict": verdict,
    }
