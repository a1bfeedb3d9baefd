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
import pytest

from recbole_attrcloak.defences import CATALOGUE as METHODS
from recbole_attrcloak.defences import CHOICES, method_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their helpers by bare name

from _tables import read_csv  # noqa: E402


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
    # a top-n beyond the toy data's 80 items passes the settings' checks (the data is not read
    # then) and stops U2U-R when its trial loads the data: one failed job, the others run
    args = [*_toy(toy_root), "--datasets", "toy", "--methods", "original,attrcloak-df,u2u"]
    args += ["--set", "embedding_size=16", "--set", "du_topn=500"]
    _run("paper_tables.py", *args, "--out", str(run), "--results", str(results))

    jobs, head, settings = read_csv(results / "jobs.csv")
    jobs = jobs.set_index("method")
    assert jobs["status"].to_dict() == {"original": "ok", "attrcloak-df": "ok", "u2u": "failed"}
    assert "du_topn must be at most the number of items" in jobs.loc["u2u", "error"]
    assert "du_topn" in (Path(jobs.loc["u2u", "folder"]) / "error.json").read_text()
    # every CSV is headed by its provenance: the command, the code and the machine and stack
    assert "paper_tables.py --quick" in head[0] and "Code of the runs" in head[1]
    assert "torch" in head[2] and "Ray" in head[2] and settings["audit"] == "quick"
    # one model trained (a training group), both defences run on its checkpoint, through Tune
    assert len(list((run / "work" / "train").iterdir())) == 1
    assert len(list((run / "work" / "trials").iterdir())) == 2
    assert list((run / "work" / "ray").glob("unlearn-*"))
    privacy = read_csv(results / "privacy.csv")[0]
    assert len(privacy) == 2 * 2 * 2  # methods × attributes × attackers (quick: shadow only)
    assert set(privacy["method"]) == {"original", "attrcloak-df"}
    assert set(privacy["protocol"]) == {"shadow"} and set(privacy["n_seeds"]) == {1}
    # every number in the tables is its job's report's (one seed: the mean is that report's)
    reports = {
        m: json.loads((Path(jobs.loc[m, "folder"]) / "report.json").read_text())
        for m in ("original", "attrcloak-df")
    }
    stages = {"original": "original", "attrcloak-df": "unlearned"}
    for _, row in privacy.iterrows():
        stage = reports[row["method"]]["stages"][stages[row["method"]]]
        scores = stage["privacy"][row["attribute"]][row["attacker"]]
        assert row["balanced_accuracy"] == pytest.approx(
            scores["balanced_accuracy"]["mean"], abs=1e-6
        )
    utility = read_csv(results / "utility.csv")[0].set_index("method")
    ndcg = {m: reports[m]["stages"][stages[m]]["utility"]["ndcg@10"] for m in reports}
    assert utility["ndcg@10"].to_dict() == pytest.approx(ndcg, abs=1e-6)  # CSV: 6 digits
    retention = utility.loc["attrcloak-df", "ndcg@10_retention"]
    assert retention == pytest.approx(ndcg["attrcloak-df"] / ndcg["original"], abs=1e-6)
    runtime = read_csv(results / "runtime.csv")[0].set_index("method")
    assert runtime.loc["original", "epochs"] == 3
    assert runtime.loc["attrcloak-df", "steps"] == reports["attrcloak-df"]["unlearning"]["steps"]
    assert runtime.loc["attrcloak-df", "device"] == "cpu"
    runs = read_csv(results / "runs.csv")[0].set_index("method")
    assert runs.loc["attrcloak-df", "gender/p_two_sided"] > 0  # the audit's verdict, per run
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
    assert set(read_csv(late / "jobs.csv")[0]["status"]) == {"not started"}
    assert "No job has finished yet." in (late / "summary.md").read_text()
    assert not (late / "work" / "train").exists()  # not even the original model started

    es, es_results = tmp_path / "es", tmp_path / "es-results"
    args = [*_toy(toy_root), "--dataset", "toy", "--dims", "8,16"]
    _run("embedding_size.py", *args, "--out", str(es), "--results", str(es_results))
    table = read_csv(es_results / "embedding_size.csv")[0]
    assert list(zip(table["embedding_size"], table["method"], strict=True)) == [
        (d, m) for d in (8, 16) for m in ("original", "attrcloak-dd", "attrcloak-df")
    ]
    assert "| 16 | AttrCloak-DD |" in (es_results / "summary.md").read_text()
    assert set(read_csv(es_results / "acceptance.csv")[0]["embedding_size"].dropna()) == {8, 16}
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


def test_originals_are_loaded_not_trained(toy_root: Path, tmp_path: Path) -> None:
    # an original trained elsewhere by gpu_originals.py (here: on this CPU, 3 epochs)
    originals = tmp_path / "originals"
    _run(
        "gpu_originals.py",
        *("--model", "BPR", "--dataset", "toy", "--seed", "2020", "--epochs", "3"),
        *("--data_path", str(toy_root), "--out", str(originals)),
    )
    checkpoint = originals / "BPR-toy-2020.pth"
    info = json.loads(checkpoint.with_suffix(".json").read_text())
    # a fake training time and device, so that the tables can only have them from the .json
    info |= {"train_seconds": 1234.5, "device": "NVIDIA H200"}
    checkpoint.with_suffix(".json").write_text(json.dumps(info))

    run, results = tmp_path / "pt", tmp_path / "pt-results"
    args = ["--quick", "--data_root", str(toy_root), "--attributes", "gender,age", "--epochs", "3"]
    args += ["--workers", "2", "--datasets", "toy", "--seeds", "2020,2021"]
    args += ["--methods", "original,attrcloak-df,ldp", "--out", str(run), "--results", str(results)]
    _run("paper_tables.py", *args, "--originals", str(originals))

    reports = {
        folder.parent.name + "/" + folder.name: json.loads((folder / "report.json").read_text())
        for folder in (run / "work").glob("*/*")
        if (folder / "report.json").is_file()
    }
    loaded = {k: r for k, r in reports.items() if r["checkpoint"]["original"] == str(checkpoint)}
    # seed 2020: its original job audits the checkpoint (no training), both defences load it
    assert sorted(r["method"] for r in loaded.values()) == ["attrcloak", "ldp", "none"]
    group = next(r for r in loaded.values() if r["method"] == "none")
    assert "train" not in group["seconds"] and "load" in group["seconds"]
    # LDP-SH still retrains from scratch, by design
    ldp = next(r for r in loaded.values() if r["method"] == "ldp")
    assert ldp["unlearning"]["epochs"] >= 1
    # seed 2021 has no file: it trains as before
    trained = [r for r in reports.values() if r["method"] == "none" and r not in loaded.values()]
    assert len(trained) == 1 and "train" in trained[0]["seconds"]

    runs, head, _ = read_csv(results / "runs.csv")
    runs = runs.set_index(["seed", "method"])
    assert runs.loc[(2020, "original"), "seconds"] == 1234.5  # Table VI: the .json's
    assert runs.loc[(2020, "original"), "device"] == "NVIDIA H200"
    assert runs.loc[(2020, "original"), "source"] == "checkpoint"
    assert runs.loc[(2021, "original"), "source"] == "trained"
    assert runs.loc[(2021, "original"), "seconds"] != 1234.5
    assert any("BPR-toy-2020.pth" in line and "NVIDIA H200" in line for line in head)
    runtime = read_csv(results / "runtime.csv")[0].set_index("method")
    assert runtime.loc["original", "train_device"] == "NVIDIA H200 / cpu"

    # resumed with the same --originals: nothing runs again
    _run("paper_tables.py", *args, "--originals", str(originals))
    assert set(json.loads((run / "run.json").read_text())[-1]["counts"]) == {"cached"}
    # the same folder without --originals would train what was loaded: refused, nothing run
    refused = _run("paper_tables.py", *args, rc=2)
    assert "--originals" in refused.stderr.strip().splitlines()[-1]
    # a .json that contradicts its file name: refused before anything runs
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "BPR-toy-2020.pth").write_bytes(checkpoint.read_bytes())
    (bad / "BPR-toy-2020.json").write_text(json.dumps(info | {"seed": 7}))
    out = tmp_path / "never"
    refused = _run("paper_tables.py", *args[:-4], "--out", str(out), "--originals", str(bad), rc=2)
    assert "seed" in refused.stderr.strip().splitlines()[-1] and not (out / "work").exists()

    # embedding_size: d = 128 is the checkpoint's own d (the file without a suffix), d = 16 has
    # no file and trains; a file named for d = 16 that holds d = 128 is refused
    import embedding_size

    es = ["--data_root", str(toy_root), "--dataset", "toy", "--seeds", "2020", "--dims", "16,128"]
    configs, settings = embedding_size.plan(
        embedding_size.parse_args([*es, "--originals", str(originals)])
    )
    sources = {c["embedding_size"]: c.get("checkpoint") for c in configs}
    assert sources == {16: None, 128: str(checkpoint)}
    assert settings["originals"]["toy/BPR/128/2020"]["train_seconds"] == 1234.5
    (bad / "BPR-toy-2020-embedding_size16.pth").write_bytes(checkpoint.read_bytes())
    (bad / "BPR-toy-2020-embedding_size16.json").write_text(json.dumps(info))
    try:
        embedding_size.plan(embedding_size.parse_args([*es, "--originals", str(bad)]))
    except ValueError as exc:
        assert "embedding_size" in str(exc)
    else:
        raise AssertionError("a checkpoint of another d was accepted")


def _fake_report(method: str, seed: int, *, kept: float, seconds: float, p: float) -> dict:
    """A report.json of a full audit with planted balanced accuracies: every attacker of both
    protocols at chance + 0.01, except the original (+0.10) and AttrCloak-DD's k-fold logreg
    on age (0.05 below chance); ``p``: the two-sided familywise p-value of age."""
    from recbole_attrcloak.audit import ATTACKERS

    def attack(value: float) -> dict:
        return {"balanced_accuracy": {"mean": value}, "accuracy": {"mean": value + 0.1}}

    privacy = {}
    for attr, k in (("gender", 2), ("age", 7), ("occupation", 21)):
        chance = 1 / k
        shift = 0.10 if method == "none" else 0.01
        entry = {"chance": chance, "majority": 0.7, "kfold": {}}
        for attacker in ATTACKERS:
            entry[attacker] = attack(chance + shift)
            below = method == "attrcloak-dd" and attr == "age" and attacker == "logreg"
            entry["kfold"][attacker] = attack(chance - 0.05 if below else chance + shift)
        p_value = p if attr == "age" else 0.5
        word = "leakage detected (…)" if p_value <= 0.05 else "no leakage detectable (…)"
        entry["strongest"] = {"p_value_two_sided": p_value, "verdict": word}
        entry["strongest"] |= {"protocol": "kfold", "attacker": "logreg"}
        privacy[attr] = entry
    utility = {"ndcg@5": 0.3 * kept, "ndcg@10": 0.3 * kept, "hit@5": 0.6, "hit@10": 0.7}
    stage = {"utility": utility, "valid_utility": {"ndcg@10": 0.25 * kept}, "privacy": privacy}
    original = stage | {"utility": utility | {"ndcg@10": 0.3}}
    if method == "none":
        return {"stages": {"original": stage}, "seconds": {"train": 100.0}, "device": "cpu"}
    return {
        "stages": {"original": original, "unlearned": stage},
        "seconds": {"unlearn": seconds},
        "retention": {"ndcg@10": kept},
        "unlearning": {"steps": 10},
        "device": "cpu",
    }


def test_grid_tables_from_full_audits(tmp_path: Path) -> None:
    # three seeds of a full audit (both protocols, every attacker, two-sided verdicts), the
    # original of seed 2020 loaded from a checkpoint trained on an H200 in 250 s
    import _paper_md
    import paper_tables

    from recbole_attrcloak.tune.results import flatten

    rows = []
    plan = {  # method: (kept, seconds, age p-value of seed 2020)
        "none": (1.0, 0.0, 0.001),
        "attrcloak-dd": (0.995, 20.0, 0.01),
        "attrcloak-df": (0.97, 1.5, 0.6),
    }
    for seed in (2020, 2021, 2022):
        for method, (kept, seconds, p) in plan.items():
            report = _fake_report(
                method, seed, kept=kept, seconds=seconds, p=p if seed == 2020 else 0.5
            )
            name = "original" if method == "none" else method
            source = "checkpoint" if seed == 2020 else "trained"
            meta = {"dataset": "ml-100k", "model": "BPR", "seed": seed, "method": name}
            meta |= {"group": f"ml-100k/BPR/{seed}", "source": source}
            rows.append(meta | flatten(report))
    originals = {"ml-100k/BPR/2020": {"path": "x.pth", "train_seconds": 250.0, "device": "H200"}}
    settings = {"datasets": ["ml-100k"], "models": ["BPR"], "audit": "full"}
    made = paper_tables.tables(pd.DataFrame(rows), settings | {"originals": originals})

    privacy = made["privacy"]
    # every attacker under both protocols, n = 3 seeds per cell
    assert len(privacy) == 3 * 3 * 2 * 6 and set(privacy["n_seeds"]) == {3}
    assert set(privacy["protocol"]) == {"shadow", "kfold"}
    acceptance = made["acceptance"].set_index(["method", "criterion"])
    worst = acceptance.loc[("attrcloak-dd", "worst |mean bal. acc − chance|")]
    assert abs(worst["measured"] - 0.05) < 1e-9 and not worst["met"]
    assert abs(worst["margin"] + 0.01) < 1e-9 and worst["detail"] == "age kfold/logreg below chance"
    kept = acceptance.loc[("attrcloak-df", "NDCG@10 kept")]
    assert not kept["met"] and abs(kept["margin"] + 0.01) < 1e-9
    assert acceptance.loc[("attrcloak-dd", "NDCG@10 kept"), "met"]
    rejected = acceptance.loc[("attrcloak-dd", "runs rejected (two-sided familywise p ≤ 0.05)")]
    assert rejected["detail"] == "1 of 3 runs"
    totals = made["acceptance"][made["acceptance"]["mode"].isna()].set_index("criterion")
    total = totals.loc["AttrCloak runs rejected, every cell and mode"]
    assert total["measured"] == 1 and total["threshold"] == 1 and total["met"]  # 1 of 6 allowed
    # the report's verdict: the smallest p times the number of attributes tested
    every = made["runs"].set_index(["seed", "method"])
    tested = [c for c in every.columns if c.endswith("/p_two_sided")]
    dd = every.loc[(2020, "attrcloak-dd")]
    assert dd["p_run"] == pytest.approx(min(1.0, len(tested) * dd[tested].min()))
    assert dd["rejected_by_verdict"] == (dd["p_run"] <= 0.05)
    by_verdict = totals.loc[
        "AttrCloak runs rejected by the report's verdict (familywise over attributes)"
    ]
    assert by_verdict["measured"] == int(
        every["rejected_by_verdict"]
        .dropna()
        .astype(bool)
        .loc[every.index.get_level_values("method").str.startswith("attrcloak")]
        .sum()
    )
    assert acceptance.loc[("attrcloak-df", "DF unlearning ≤ 2 s"), "met"]
    # Table VI: the loaded original's .json time and device, the ratio per seed
    runs = made["runs"].set_index(["seed", "method"])
    assert runs.loc[(2020, "original"), "seconds"] == 250.0
    runtime = made["runtime"].set_index("method")
    assert runtime.loc["original", "device"] == "H200 / cpu"
    expected = (20 / 250 + 20 / 100 + 20 / 100) / 3
    assert abs(runtime.loc["attrcloak-dd", "ratio_to_training"] - expected) < 1e-9
    assert runtime.loc["attrcloak-dd", "paper_seconds"] == 235.78

    # the Markdown, rendered from the CSVs alone: k-fold beside shadow, verdicts, acceptance
    from _tables import write_csv

    results = tmp_path / "results"
    for name, table in made.items():
        write_csv(table, results / f"{name}.csv", ["Generated by a test."], settings)
    write_csv(pd.DataFrame({"job": [], "status": []}), results / "jobs.csv", [], settings)
    summary = _paper_md.summary_markdown(results)
    dd_age = next(ln for ln in summary.splitlines() if ln.startswith("| AttrCloak-DD | 3 | 0.153"))
    assert "0.153 ± 0.000 / 0.093 ± 0.000" in dd_age  # logreg: shadow / k-fold (below chance)
    assert "**p=0.01 leak**" in summary and "| AttrCloak-DF | 2020 |" in summary
    assert "**not met** by 0.010; age kfold/logreg below chance" in summary
    assert "98.0 %): **not met** by 1.0 pt" in summary
    block = _paper_md.readme_block(results, "results")
    assert "0.050 / 0.050" not in block and "/ 0.050 /" in block  # k-fold worst beside shadow
    assert "not met: ml-100k · BPR · dd: worst |mean bal. acc − chance|" in block


def test_check_fails_on_a_hand_edited_number(tmp_path: Path) -> None:
    # a copy of the documents and the committed results: the check passes, then fails when a
    # generated number, a number outside the blocks or a summary is edited by hand
    import shutil

    root = tmp_path / "repo"
    (root / "benchmarks").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", root / "README.md")
    shutil.copytree(ROOT / "docs", root / "docs")
    shutil.copy(ROOT / "benchmarks" / "README.md", root / "benchmarks" / "README.md")
    shutil.copy(ROOT / "benchmarks" / "quoted.yaml", root / "benchmarks" / "quoted.yaml")
    shutil.copytree(ROOT / "benchmarks" / "results", root / "benchmarks" / "results")
    _run("check.py", "--root", str(root))
    import check

    def edited(path: Path, old: str, new: str) -> str:
        before = path.read_text()
        assert old in before
        path.write_text(before.replace(old, new, 1))
        found = check.problems(root)
        path.write_text(before)
        assert found
        return "\n".join(found)

    readme = root / "README.md"
    block = readme.read_text().split("<!-- BEGIN originals -->")[1].split("<!-- END")[0]
    number = next(c.strip() for c in block.split("|") if c.strip().startswith("0.2"))
    readme.write_text(readme.read_text().replace(f"| {number} |", "| 0.9999 |", 1))
    assert "differs from its CSVs" in _run("check.py", "--root", str(root), rc=1).stderr
    shutil.copy(ROOT / "README.md", readme)
    # outside the blocks: a quoted number that nothing generates or lists
    assert "'97.3 %'" in edited(readme, "## Measured results\n", "## Measured results\n97.3 %\n")
    # a listed number changed by hand: the new one is unlisted, the old one missing
    errors = edited(readme, "stratified 20 % of users", "stratified 25 % of users")
    assert "'25 %' (1×) is quoted outside" in errors and "'20 %' is listed 1× more" in errors
    summary = root / "benchmarks" / "results" / "paper_tables" / "summary.md"
    assert "summary.md differs from its CSVs" in edited(summary, "| 3 |", "| 4 |")
    # an unknown block
    assert "no renderer" in edited(
        readme, "## More\n", "## More\n<!-- BEGIN x -->\n<!-- END x -->\n"
    )
