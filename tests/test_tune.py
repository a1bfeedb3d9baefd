"""Sweeps: spec expansion and ids, the presets, and a tiny sweep on the toy dataset in local Ray
(train once, audit-only keys on the same model, a failing trial recorded, outputs with the k-fold
check, resources checked first, audit workers that follow the trial's CPUs and stop, resume, and
refusal to mix sweeps or code versions)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

import recbole_attrcloak
from recbole_attrcloak.audit import core as audit_core
from recbole_attrcloak.cli import main, parse_args
from recbole_attrcloak.tune import (
    ClusterError,
    CodeVersionError,
    SpecError,
    load_spec,
    run_sweep,
    runner,
)
from recbole_attrcloak.tune.results import pareto_mask
from tests.conftest import toy_config

ROOT = Path(__file__).resolve().parents[1]


def _spec(**top) -> dict:
    return {"config": {"model": "BPR", "dataset": "ml-100k"}, **top}


def test_grid_union_and_samples():
    spec = load_spec(
        _spec(
            search=[
                {"au_mode": {"grid": ["dd", "df"]}, "au_alpha": {"grid": [0.0, 0.5]}},
                {"au_learning_rate": {"loguniform": [1e-3, 1e-1]}, "seed": {"grid": [1, 2]}},
            ],
            num_samples=3,
        )
    )
    # 2 x 2 grid x 3 samples of nothing random = 4 distinct; 2 seeds x 3 random draws = 6
    assert len(spec.trials) == 10
    rates = [t.config["au_learning_rate"] for t in spec.trials if "au_learning_rate" in t.config]
    assert len(set(rates)) == 6 and all(1e-3 <= r <= 1e-1 for r in rates)
    # trials differing only in unlearning keys share a training group; seeds do not
    groups = {t.config.get("seed"): t.group_id for t in spec.trials}
    assert len(spec.groups()) == 3 and len(set(groups.values())) == 3


def test_waves_split_trials_by_a_key_in_first_seen_order():
    search = {"seed": {"grid": [2, 1]}, "au_mode": {"grid": ["dd", "df"]}}
    spec = load_spec(_spec(search=search, waves="seed"))
    waves = spec.wave_list()
    assert [[t.config["seed"] for t in wave] for wave in waves] == [[2, 2], [1, 1]]
    assert len(load_spec(_spec(search=search)).wave_list()) == 1


@pytest.mark.parametrize(
    "key, values",
    [
        ("sensitive_attributes", [["gender"], ["gender", "age"]]),
        ("audit", ["quick", "full"]),
        ("audit_seed", [1, 2]),
    ],
)
def test_audit_keys_share_one_trained_model(key, values):
    spec = load_spec(_spec(search={key: {"grid": values}, "seed": {"grid": [1, 2]}}))
    assert len(spec.trials) == 4 and len(spec.groups()) == 2  # one model per seed, not per key
    for trial in spec.trials:
        assert key not in trial.training_config() and key in trial.audit_config()


@pytest.mark.parametrize("preset", sorted((ROOT / "configs/sweeps").glob("*.yaml")))
def test_work_folder_follows_output_dir(preset, tmp_path):
    spec = load_spec(preset)
    first, second = (runner.work_folder(spec, tmp_path / name) for name in ("a", "b"))
    assert first == tmp_path / "a" / "work" and second == tmp_path / "b" / "work"
    spec.work_dir = str(tmp_path / "elsewhere")  # unless the spec says otherwise
    assert runner.work_folder(spec, tmp_path / "a") == tmp_path / "elsewhere"


def test_ids_are_stable_and_yaml_reads_exponents(tmp_path):
    text = (
        "config: {model: BPR, dataset: ml-100k}\n"
        "search: {au_learning_rate: {loguniform: [1e-3, 1e-1]}}\n"
        "num_samples: 2\nsampler_seed: 3\n"
    )
    (tmp_path / "s.yaml").write_text(text)
    first, second = load_spec(tmp_path / "s.yaml"), load_spec(tmp_path / "s.yaml")
    assert [t.trial_id for t in first.trials] == [t.trial_id for t in second.trials]
    assert first.name == "s" and all(
        isinstance(t.config["au_learning_rate"], float) for t in first.trials
    )
    overridden = load_spec(tmp_path / "s.yaml", {"audit": "quick"})
    assert {t.trial_id for t in overridden.trials}.isdisjoint(t.trial_id for t in first.trials)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"config": {"model": "BPR"}}, "'dataset'"),
        (_spec(searches=[]), "unknown spec keys"),
        (_spec(search={"au_alpha": {"grid": []}}), "non-empty list"),
        (_spec(search={"lr": {"loguniform": [0.0, 1.0]}}), "0 < low < high"),
        (_spec(resources_per_trial={"tpu": 1}), "cpu and gpu"),
        (_spec(metric="ndcg@10"), "metric must be one of"),
        (_spec(kfold_check="yes"), "kfold_check is true or false"),
        (_spec(waves=["seed"]), "waves names one config key"),
        (_spec(search={"checkpoint": "no/such.pth"}), "no checkpoint file"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(SpecError, match=message):
        load_spec(spec)


def test_a_checkpoint_is_its_own_training_group(tmp_path):
    # a group that loads a checkpoint is not the group that trains the same config, and its
    # jobs pass the path as run()'s checkpoint, not as a RecBole key
    path = tmp_path / "BPR.pth"
    path.write_bytes(b"")
    search = {"checkpoint": {"grid": [None, str(path)]}, "au_mode": {"grid": ["dd", "df"]}}
    spec = load_spec(_spec(search=search))
    assert len(spec.trials) == 4 and len(spec.groups()) == 2
    loaded = next(t for t in spec.trials if t.config["checkpoint"])
    job = runner._job(spec, loaded, loaded.training_config(), tmp_path, runner.Deadline())
    assert job["checkpoint"] == str(path) and "checkpoint" not in job["config"]
    assert "audit of checkpoint" in runner._label(loaded, spec.swept_keys(), training=True)


def test_presets():
    ablation = load_spec(ROOT / "configs/sweeps/ablation.yaml")
    assert len(ablation.trials) >= 14 and len(ablation.groups()) == 1
    fixed = {(t.config["au_mode"], t.config.get("au_alpha")) for t in ablation.trials}
    assert fixed >= {(m, a) for m in ("dd", "df") for a in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)}
    solvers = {(t.config["au_mode"], t.config["au_solver"]) for t in ablation.trials}
    assert solvers >= {(m, s) for m in ("dd", "df") for s in ("fixed", "normalized", "paper")}
    methods = load_spec(ROOT / "configs/sweeps/methods.yaml")
    assert {t.config["unlearn"] for t in methods.trials} == {
        "attrcloak",
        "u2u",
        "d2d",
        "rap",
        "blurme",
        "ldp",
    }
    assert len(methods.groups()) == 1 and len(load_spec(ROOT / "configs/sweeps/tiny.yaml").trials)


def test_pareto_mask():
    retention = np.array([1.0, 0.9, 0.8, 0.95, 0.9])
    gap = np.array([0.3, 0.1, 0.2, 0.1, 0.1])
    assert pareto_mask(retention, gap).tolist() == [True, False, False, True, False]


def test_cli_flags_and_missing_spec(capsys):
    args, _ = parse_args(["--tune", "s.yaml", "--ray_address", "auto", "--resume"])
    assert (args.tune, args.ray_address, args.resume) == ("s.yaml", "auto", True)
    assert main(["--tune", "missing.yaml"]) == 2
    assert "sweep spec not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


def _toy_spec(root: Path) -> dict:
    base = toy_config(root, au_max_steps=10, sensitive_attributes=["gender"])
    base |= {"model": "BPR", "dataset": "toy"}
    return {
        "name": "toy",
        "config": base | {"unlearn": "attrcloak", "au_mode": "df"},
        "search": [
            {"au_z_margin": 0.5},
            {"au_z_margin": 0.5, "audit_seed": 8},  # same model, its own original audit
            # the spec's settings are checked before the sweep starts; a top-k beyond the
            # toy data's 80 items is found when a trial loads the data: dd fails, df ignores it
            {"au_relabel_alpha_dd": 0.5, "au_dd_topk": 500} | {"au_mode": {"grid": ["df", "dd"]}},
        ],
        "resources_per_trial": {"cpu": 1},
        "max_concurrent_trials": 1,  # one worker process, reused: fewer imports
    }


@pytest.fixture(scope="module")
def sweep(local_ray, toy_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    result = run_sweep(_toy_spec(toy_root), out, progress=False)
    return result, out


def test_outputs_and_failed_trial(sweep):
    result, out = sweep
    for name in ("trials.csv", "pareto.csv", "pareto.png", "summary.md"):
        assert (out / name).stat().st_size > 0
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 4 and sorted(table["status"]) == ["failed", "ok", "ok", "ok"]
    failed = table[table["status"] == "failed"].iloc[0]
    assert failed["au_mode"] == "dd" and "au_dd_topk must be below" in failed["error"]
    ok = table[table["status"] == "ok"]
    for column in ("valid_retention", "privacy_gap", "gender_xgboost", "test_ndcg@10"):
        assert ok[column].notna().all(), column
    assert (ok["gender_mlp_original"] > 0.8).all()  # the planted signal, audited once
    points = pd.read_csv(out / "pareto.csv")
    assert points["pareto"].any() and (points["method"] == "none (original)").sum() == 1
    assert "## Failed trials" in (out / "summary.md").read_text()


def test_summary_names_the_run_and_checks_the_selection_by_kfold(sweep):
    result, out = sweep
    text = (out / "summary.md").read_text()
    assert text.startswith("# Sweep `toy`: BPR on toy")
    selected = text.split("**Selected**")[1].split("`")[1]
    ok = result.table[result.table["status"] == "ok"]
    best = ok.loc[ok["score"].idxmax()]  # the highest score; the first such trial on a tie
    assert selected == best["trial_id"]
    check = json.loads((result.work_dir / "check" / selected / "report.json").read_text())
    audit = check["stages"]["unlearned"]["audit"]
    assert audit["preset"] == "kfold" and audit["seed"] != best.get("audit_seed", 2020)
    gender = check["stages"]["unlearned"]["privacy"]["gender"]
    gap = max(
        abs(gender["kfold"][a]["balanced_accuracy"]["mean"] - 0.5) for a in ("mlp", "xgboost")
    )
    assert "k-fold check of the selected trial" in text and f"**{gap:.3f}**" in text
    assert "optimistic" in text


@pytest.mark.parametrize("resources, word", [({"gpu": 1}, "gpu"), ({"cpu": 64}, "cpu")])
def test_resources_checked_before_anything_runs(local_ray, toy_root, tmp_path, resources, word):
    spec = _toy_spec(toy_root) | {"resources_per_trial": resources}
    with pytest.raises(ClusterError, match=f"asks for {word}"):
        run_sweep(spec, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    (tmp_path / "s.yaml").write_text(json.dumps(spec))  # the CLI: one line, exit 2
    assert main(["--tune", str(tmp_path / "s.yaml"), "--output_dir", str(tmp_path / "o")]) == 2


def _loky_workers() -> list[psutil.Process]:
    """joblib's worker processes under this one (its resource tracker ends with its parent)."""
    children = psutil.Process().children(recursive=True)
    return [p for p in children if "LokyProcess" in " ".join(p.cmdline())]


@pytest.mark.parametrize("cpus", [1, 2])
def test_audit_workers_follow_the_trial_cpus_and_stop(sweep, toy_root, tmp_path, monkeypatch, cpus):
    result, _ = sweep
    spec = load_spec(_toy_spec(toy_root) | {"resources_per_trial": {"cpu": cpus}})
    trial = spec.trials[0]
    (group,) = (result.work_dir / "train").iterdir()
    job = runner._job(
        spec, trial, trial.config | {"unlearn": "none"}, tmp_path / "job", runner.Deadline()
    )
    job["checkpoint"] = json.loads((group / "report.json").read_text())["checkpoint"]["original"]
    used = []

    class Recording(audit_core.Parallel):
        def __init__(self, n_jobs=None, **kwargs):
            used.append(n_jobs)
            super().__init__(n_jobs=n_jobs, **kwargs)

    monkeypatch.setattr(audit_core, "Parallel", Recording)
    assert runner.execute(job)["failed"] == 0
    assert used == [cpus]
    assert _loky_workers() == []


def test_trains_once_and_reuses_the_original_audit(sweep):
    result, _ = sweep
    (group,) = (result.work_dir / "train").iterdir()
    trained = json.loads((group / "report.json").read_text())
    seeds = []
    for folder in (result.work_dir / "trials").iterdir():
        if not (folder / "report.json").is_file():
            continue
        report = json.loads((folder / "report.json").read_text())
        assert report["checkpoint"]["original"] == trained["checkpoint"]["original"]
        assert "train" not in report["seconds"]
        original = report["stages"]["original"]
        seeds.append(original["audit"]["seed"])
        if original["audit"] == trained["stages"]["original"]["audit"]:  # reused, not redone
            assert "audit_original" not in report["seconds"]
            assert original["privacy"] == trained["stages"]["original"]["privacy"]
        else:  # the audit_seed trial: same model, its own audit of the original
            assert "audit_original" in report["seconds"] and original["audit"]["seed"] == 8
    assert sorted(seeds) == [8, 2020, 2020]


def test_resume_refuses_results_of_other_code(sweep, toy_root, tmp_path, capsys):
    result, out = sweep
    record_path = result.work_dir / "sweep.json"
    record = json.loads(record_path.read_text())
    assert record["code"]["package"] == recbole_attrcloak.__version__ and record["code"]["source"]
    original = record_path.read_text()
    try:
        record["code"]["source"] = "0123456789ab"  # results of other code
        record_path.write_text(json.dumps(record))
        with pytest.raises(CodeVersionError, match="cannot resume"):
            run_sweep(_toy_spec(toy_root), out, resume=True, progress=False)
        (tmp_path / "s.yaml").write_text(json.dumps(_toy_spec(toy_root)))
        argv = ["--tune", str(tmp_path / "s.yaml"), "--output_dir", str(out), "--resume"]
        capsys.readouterr()
        assert main(argv) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "cannot resume" in line and "0123456789ab" in line
    finally:
        record_path.write_text(original)


def test_resume_runs_only_missing_trials(sweep, toy_root):
    result, out = sweep
    with pytest.raises(FileExistsError, match="--resume"):
        run_sweep(_toy_spec(toy_root), out, progress=False)
    done = sorted((result.work_dir / "trials").glob("*/report.json"))
    removed, kept = done[0].parent, done[1]
    stamps = {p: p.stat().st_mtime_ns for p in [kept, *(result.work_dir / "train").glob("*/*")]}
    shutil.rmtree(removed)
    resumed = run_sweep(_toy_spec(toy_root), out, resume=True, progress=False)
    assert (removed / "report.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert sorted(resumed.table["status"]) == ["failed", "ok", "ok", "ok"]
