"""The benchmark scripts end to end on the toy dataset, in their --quick mode made smaller: the
runs as a Ray Tune sweep (one trained model per seed, the defences on its checkpoint), a
failing trial that does not stop the others, a resumed run that reuses finished jobs, a
deadline, bad settings refused before anything runs, and the Markdown/CSV/PNG files with the
expected rows; the method catalogue comes from the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from recbole_attrcloak.defences import CATALOGUE as METHODS
from recbole_attrcloak.defences import CHOICES, method_name

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, rc: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == rc, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _toy(root: Path) -> list[str]:
    fast = ["train_batch_size=256", "learning_rate=0.01"]
    args = ["--quick", "--data_root", str(root), "--attributes", "gender,age", "--epochs", "3"]
    return [*args, *(a for item in fast for a in ("--set", item)), "--workers", "2"]


def test_quick_modes_write_tables(toy_root: Path, tmp_path: Path) -> None:
    run, results = tmp_path / "pt", tmp_path / "pt-results"
    # du_steps=0 makes U2U-R stop with an error after the original's audit: one failed job
    args = [*_toy(toy_root), "--datasets", "toy", "--methods", "original,attrcloak-df,u2u"]
    args += ["--set", "embedding_size=16", "--set", "du_steps=0"]
    _run("paper_tables.py", *args, "--out", str(run), "--results", str(results))

    jobs = pd.read_csv(results / "jobs.csv").set_index("method")
    assert jobs["status"].to_dict() == {"original": "ok", "attrcloak-df": "ok", "u2u": "failed"}
    assert "du_steps" in jobs.loc["u2u", "error"]
    assert "du_steps" in (Path(jobs.loc["u2u", "folder"]) / "error.json").read_text()
    # one model trained (a training group), both defences run on its checkpoint, through Tune
    assert len(list((run / "work" / "train").iterdir())) == 1
    assert len(list((run / "work" / "trials").iterdir())) == 2
    assert list((run / "work" / "ray").glob("unlearn-*"))
    privacy = pd.read_csv(results / "privacy.csv")
    assert len(privacy) == 2 * 2 * 2  # methods × attributes × attackers
    assert set(privacy["method"]) == {"original", "attrcloak-df"}
    assert privacy["balanced_accuracy"].between(0, 1).all()
    utility = pd.read_csv(results / "utility.csv").set_index("method")
    assert utility.loc["original", "ndcg@10_retention"] == 1.0
    runtime = pd.read_csv(results / "runtime.csv").set_index("method")
    assert runtime.loc["original", "epochs"] == 3 and runtime.loc["attrcloak-df", "steps"] > 0
    summary = (results / "summary.md").read_text()
    for text in ("## toy · BPR", "AttrCloak-DF", "**modcloth-mb**", "**lastfm-1k**", "cores"):
        assert text in summary
    assert (results / "tradeoff.png").stat().st_size > 0

    # resumed: the finished jobs are reused, not rerun
    args[args.index("original,attrcloak-df,u2u")] = "original,attrcloak-df"
    _run("paper_tables.py", *args, "--out", str(run), "--results", str(results))
    assert json.loads((run / "run.json").read_text())[-1]["counts"] == {"cached": 2}
    # settings that cannot run: one line on stderr, exit 2, nothing written
    bad = _run(
        "paper_tables.py", *args, "--cpus_per_trial", "64", "--out", str(tmp_path / "b"), rc=2
    )
    assert bad.stderr.strip().splitlines()[-1].startswith("error: resources_per_trial asks for")
    assert not (tmp_path / "b" / "work").exists()

    # a deadline already passed starts nothing, and the summary says so
    late = tmp_path / "late"
    _run("paper_tables.py", *args, "--deadline", "0", "--out", str(late), "--results", str(late))
    assert set(pd.read_csv(late / "jobs.csv")["status"]) == {"not started"}
    assert "No job has finished yet." in (late / "summary.md").read_text()
    assert not (late / "work" / "train").exists()  # not even the original model started

    es, es_results = tmp_path / "es", tmp_path / "es-results"
    args = [*_toy(toy_root), "--dataset", "toy", "--dims", "8,16"]
    _run("embedding_size.py", *args, "--out", str(es), "--results", str(es_results))
    table = pd.read_csv(es_results / "embedding_size.csv")
    assert list(zip(table["embedding_size"], table["method"], strict=True)) == [
        (d, m) for d in (8, 16) for m in ("original", "attrcloak-dd", "attrcloak-df")
    ]
    assert "| 16 | AttrCloak-DD |" in (es_results / "summary.md").read_text()
    assert (es_results / "embedding_size.png").stat().st_size > 0


def test_settings_of_merges_invocations(tmp_path: Path) -> None:
    # ml-100k first, ml-1m later into the same folder: both datasets are summarised, lists keep
    # the order of first appearance, per-dataset epoch caps merge, scalars take the latest.
    from benchmarks._tables import settings_of

    first = {"datasets": ["ml-100k"], "models": ["BPR", "NeuMF"], "epochs": {}, "seeds": [1]}
    later = {"datasets": ["ml-1m"], "models": ["BPR"], "epochs": {"ml-1m": 30}, "seeds": [1]}
    runs = [{"settings": {**first, "workers": 2}}, {"settings": {**later, "workers": 1}}]
    (tmp_path / "run.json").write_text(json.dumps(runs))
    assert settings_of(tmp_path) == {
        "datasets": ["ml-100k", "ml-1m"],
        "models": ["BPR", "NeuMF"],
        "epochs": {"ml-1m": 30},
        "seeds": [1],
        "workers": 1,
    }
    assert settings_of(tmp_path / "missing") == {}


def test_method_catalogue_covers_the_registry():
    assert {m.config["unlearn"] for m in METHODS.values()} == set(CHOICES)
    for name, method in METHODS.items():
        assert method_name(method.config) == name
    assert method_name({"unlearn": "attrcloak"}) == "attrcloak"  # no variant named: the defence
    assert METHODS["rap"].models == ("BPR", "NeuMF", "LightGCN") and METHODS["ldp"].retrains


def test_benchmarks_hold_no_process_pool():
    for path in (ROOT / "benchmarks").glob("*.py"):
        text = path.read_text()
        for banned in ("ProcessPoolExecutor", "multiprocessing", "subprocess.Popen"):
            assert banned not in text, (path.name, banned)
    for script in ("paper_tables.py", "embedding_size.py"):
        assert "run_or_locate(args, plan" in (ROOT / "benchmarks" / script).read_text()
