"""Run the attacker zoo under each protocol and collect the report the pipeline reads."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from recbole_attrcloak.audit.fits import derived_seed, fit_predict
from recbole_attrcloak.audit.metrics import split_metrics
from recbole_attrcloak.audit.metrics import summarise as summarise_metrics
from recbole_attrcloak.audit.permutation_tests import PermutationTests
from recbole_attrcloak.audit.protocols import (
    PreparedAttribute,
    Split,
    kfold_splits,
    min_class_size,
    prepare_attribute,
    shadow_splits,
)
from recbole_attrcloak.audit.settings import AuditSettings
from recbole_attrcloak.audit.significance import (
    bootstrap_balanced_accuracy,
    bootstrap_weights,
    interval,
)
from recbole_attrcloak.data.attributes import AttributeLabels


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


def dropped_line(attribute: str, entry: Mapping) -> str | None:
    """One line naming the classes left out of an attribute's audit (fewer users than every
    split needs) and their users, or None when every class was audited."""
    dropped = entry.get("dropped_classes") or {}
    if not dropped:
        return None
    classes = ", ".join(f"'{c}' ({n} user{'s' * (n != 1)})" for c, n in dropped.items())
    n_dropped, size = entry.get("n_dropped", sum(dropped.values())), entry.get("min_class_size")
    return (
        f"{attribute}: {n_dropped} users left out of the audit with their classes of fewer "
        f"than {size} users: {classes}"
    )


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
            p: [derived_seed(s.seed, name, p, i) for i in range(len(splits[p]))] for p in splits
        }

        runs = [(p, a) for p in s.protocols for a in s.attackers]
        probas = self._run(
            [(len(splits[p]), delayed(fit_predict)(X, y, splits[p], a, seeds[p])) for p, a in runs]
        )
        preds = {key: [proba.argmax(axis=1) for proba in probas[i]] for i, key in enumerate(runs)}
        metrics = {}
        for (p, a), proba in zip(runs, probas, strict=True):
            tests = [split.test for split in splits[p]]
            metrics[p, a] = summarise_metrics(
                [split_metrics(y[t], pr) for t, pr in zip(tests, proba, strict=True)]
            )
        self._intervals(name, y, n_classes, splits, preds, metrics)

        significance = PermutationTests(s, self._run).tests(name, X, y, splits, seeds, preds)
        for (p, a), test in significance.items():
            test["ci95"] = metrics[p, a]["balanced_accuracy"]["ci95"]

        entry: dict = {
            "chance": 1 / n_classes,
            "majority": float(np.bincount(y).max() / len(y)),
            "n_users": len(y),
            "n_missing": prep.n_missing,
            "classes": list(prep.classes),
            "dropped_classes": prep.dropped_classes,
            "n_dropped": sum(prep.dropped_classes.values()),
            "min_class_size": prep.min_size,
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
        rng = np.random.default_rng(derived_seed(self.settings.seed, name, "bootstrap"))
        weights = bootstrap_weights(len(y), self.settings.n_resamples, rng)
        for (p, a), pred in preds.items():
            tests = [split.test for split in splits[p]]
            replicates = bootstrap_balanced_accuracy(
                weights, tests, [y[t] for t in tests], pred, n_classes
            )
            metrics[p, a]["balanced_accuracy"]["ci95"] = interval(replicates)


def _strongest(
    metrics: dict[tuple[str, str], dict],
    tests: dict[tuple[str, str], dict],
    chance: float,
    alpha: float,
) -> dict:
    """The best attack over protocols and attackers, and a one-line verdict.

    The verdict rests on the two-sided familywise permutation p-value (see docs/audit.md for why
    not on the intervals): the smallest ``p_familywise_two_sided`` over the pairs (``tested``)
    tells whether *some* attacker differs from chance in either direction; at or below alpha the
    verdict is leakage when that attacker scores above its null mean, over-correction (it learned
    an inverted direction: invert its predictions and it leaks) when below. ``p_value`` is the
    upper-tail familywise p-value of the same pair. Without any permutation test the verdict
    falls back, marked as such, on the strongest pair's 95 % interval.
    """
    protocol, attacker = max(metrics, key=lambda key: metrics[key]["balanced_accuracy"]["mean"])
    ba = metrics[protocol, attacker]["balanced_accuracy"]
    flagged: list[tuple[str, str]] = []
    if tests:
        tested = min(
            tests,
            key=lambda key: (
                tests[key]["p_familywise_two_sided"],
                -abs(tests[key]["observed"] - tests[key]["null_mean"]),
            ),
        )
        test = tests[tested]
        p_value, p_two = test["p_familywise"], test["p_familywise_two_sided"]
        below = test["observed"] < test["null_mean"]
        evidence = f"{tested[0]}/{tested[1]}, two-sided familywise p={p_two:.2g}"
        leaks = p_two <= alpha and not below
        flagged = [key for key, t in tests.items() if t["p_familywise_below"] <= alpha]
        if p_two <= alpha and below and tested not in flagged:
            flagged.insert(0, tested)
        over = p_two <= alpha and below
    else:
        tested = p_value = p_two = None
        flagged = [key for key in metrics if metrics[key]["balanced_accuracy"]["ci95"][1] < chance]
        evidence = "95% CI, no permutation test"
        leaks = ba["ci95"][0] > chance
        over = bool(flagged) and not leaks
    if leaks:
        verdict = f"leakage detected ({evidence})"
    elif over:
        pairs = ", ".join(f"{p}/{a}" for p, a in flagged)
        verdict = f"below chance: over-correction ({pairs}; {evidence})"
    else:
        verdict = f"no leakage detectable ({evidence})"
    return {
        "protocol": protocol,
        "attacker": attacker,
        "balanced_accuracy": ba["mean"],
        "gap_to_chance": ba["mean"] - chance,
        "ci95": ba["ci95"],
        "p_value": p_value,
        "p_value_two_sided": p_two,
        "tested": f"{tested[0]}/{tested[1]}" if tested else None,
        "below_chance": [f"{p}/{a}" for p, a in flagged],
        "verdict": verdict,
    }


def overall_verdict(privacy: Mapping[str, Mapping], alpha: float = 0.05) -> dict:
    """One verdict for a whole audit: the smallest two-sided familywise p-value over the
    attributes, Bonferroni-adjusted for their number (each attribute's test is already
    familywise over its attackers and protocols), so that embeddings with no information about
    any attribute are called leaking in at most ``alpha`` of audits."""
    tested = {
        name: entry["strongest"]
        for name, entry in privacy.items()
        if entry.get("strongest", {}).get("p_value_two_sided") is not None
    }
    if not tested:
        return {"p_two_sided": None, "attribute": None, "verdict": "no permutation test"}
    name = min(tested, key=lambda a: tested[a]["p_value_two_sided"])
    p_value = min(1.0, len(tested) * tested[name]["p_value_two_sided"])
    if p_value > alpha:
        verdict = f"no leakage detected (familywise p={p_value:.2g} over {len(tested)} attributes)"
    else:
        verdict = f"{name}: {tested[name]['verdict']}; familywise p={p_value:.2g} over attributes"
    return {"p_two_sided": p_value, "attribute": name, "verdict": verdict}
