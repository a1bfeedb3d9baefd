"""The permutation tests of an audit: every (protocol, attacker) pair gets one, in groups that
share their shuffles (shadow held-out, k-fold refit, k-fold held-out per fold); docs/audit.md."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from joblib import delayed

from recbole_attrcloak.audit.fits import derived_seed, null_scores
from recbole_attrcloak.audit.protocols import Split
from recbole_attrcloak.audit.settings import AuditSettings
from recbole_attrcloak.audit.significance import (
    combine_folds,
    held_out_scores,
    maxt_adjusted,
    permutation_settled,
    permutation_summary,
    subset_permutations,
)

_ONE_SIDED = ("p_value", "p_value_below")
_FAMILYWISE = ("p_familywise", "p_familywise_below", "p_familywise_two_sided")
_PERMUTATIONS_PER_JOB = 5
_JOBS_PER_ROUND = 4  # refit permutations run in rounds of 20, so a settled test can stop early


def _group_tests(scores: np.ndarray, keys: Sequence[tuple[str, str]], method: str) -> dict:
    """Per-pair summaries of a (1 + n_permutations, n_pairs) score matrix (row 0 observed) whose
    rows share their shuffles, with max-T adjusted p-values over the pairs."""
    above, below = maxt_adjusted(scores), maxt_adjusted(-scores)
    either = maxt_adjusted(scores, two_sided=True)
    return {
        key: {
            "method": method,
            **permutation_summary(scores[:, j]),
            "p_familywise": float(above[j]),
            "p_familywise_below": float(below[j]),
            "p_familywise_two_sided": float(either[j]),
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
                for field in (*_ONE_SIDED, *_FAMILYWISE)
            },
            "null_mean": float(np.mean([t["null_mean"] for t in tests])),
            "null_std": None,
            "n_permutations": tests[0]["n_permutations"],
            "fold_p_values": [t["p_value"] for t in tests],
        }
    return combined


class PermutationTests:
    """The permutation tests of one audit; ``run`` runs ``(n_fits, delayed call)`` jobs on the
    audit's pool, in order."""

    def __init__(self, settings: AuditSettings, run: Callable[[list], list]) -> None:
        self.settings = settings
        self._run = run

    def tests(
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
                for field in _FAMILYWISE:  # Bonferroni across the groups
                    test[field] = min(1.0, len(groups) * test[field])
                tests[key] = test
        return tests

    def _held_out_tests(
        self, name: str, y: np.ndarray, splits: list[Split], preds: dict[str, list[np.ndarray]]
    ) -> dict[tuple[str, str], dict]:
        """Shadow protocol: shuffle the users that no shadow set contains (the attackers of every
        split test them and none trained on them) among themselves, attackers held fixed."""
        rng = np.random.default_rng(derived_seed(self.settings.seed, name, "held_out"))
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
        rng = np.random.default_rng(derived_seed(self.settings.seed, name, "per_fold"))
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
        rng = np.random.default_rng(derived_seed(self.settings.seed, name, "refit"))
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
                (len(chunk) * len(splits), delayed(null_scores)(X, y, chunk, splits, a, seeds))
                for a, chunk in runs
            ]
            for (a, _), scores in zip(runs, self._run(jobs), strict=True):
                rows[a].append(scores)
            settled = [permutation_settled(r[0][0], np.concatenate(r[1:])) for r in rows.values()]
            if all(settled):
                break
        scores = np.column_stack([np.concatenate(r) for r in rows.values()])
        return _group_tests(scores, [("kfold", a) for a in preds], "refit")
