"""benchmarks/_terms.py and _null.py: where each AttrCloak run ended and how its audit reads
against its permuted-label null, from each run's report.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their helpers by bare name

import _terms  # noqa: E402
from _tables import write_csv  # noqa: E402


def _term(name: str, z: float) -> dict:
    return {"name": f"{name}/z", "value": z, "target": 0.0, "reference": None, "met": abs(z) <= 2}


def _run(folder: Path, seed: int, method: str, shift: float) -> dict:
    folder.mkdir(parents=True)
    terms = [
        _term("gender/linear/ridge=inf", 1.5 + shift),
        _term("gender/linear/ridge=0.1", -1.0 + shift),
        _term("gender/linear/ridge=inf@block1", 9.0),  # a column block: not in the block
        _term("age=0/linear/ridge=inf", -2.5),
        _term("age=1/linear/ridge=inf", 0.5),
    ]
    unlearning = {"stop_reason": "target_reached", "steps": 7, "terms": terms}
    (folder / "report.json").write_text(json.dumps({"unlearning": unlearning}))
    return {"dataset": "d", "model": "BPR", "method": method, "seed": seed, "folder": str(folder)}


def test_terms_table_keeps_attribute_terms_and_the_worst_one_vs_rest(tmp_path):
    runs = [_run(tmp_path / f"r{s}", s, "attrcloak-df", 0.2 * s) for s in range(2)]
    runs.append({"dataset": "d", "model": "BPR", "method": "original", "seed": 0, "folder": ""})
    table = _terms.terms_table(pd.DataFrame(runs), ["dataset", "model", "method"])
    assert set(table["method"]) == {"attrcloak-df"}  # the original has no unlearning
    first = table[table["seed"] == 0].set_index("term")
    assert first.loc["gender/linear/ridge=inf", "z"] == 1.5
    # one-vs-rest: the largest |z| over the classes, unmet if any class is
    assert first.loc["age=*/linear/ridge=inf", "z"] == 2.5
    assert not first.loc["age=*/linear/ridge=inf", "met"]
    assert first.loc["gender/linear/ridge=0.1", "met"]


def test_terms_block_averages_over_seeds_beside_the_signed_logreg_gap(tmp_path):
    runs = [_run(tmp_path / f"r{s}", s, "attrcloak-dd", 0.2 * s) for s in range(2)]
    table = _terms.terms_table(pd.DataFrame(runs), ["dataset", "model", "method"])
    results = tmp_path / "results"
    results.mkdir()
    write_csv(table, results / "terms.csv", ["test"], {})
    privacy = pd.DataFrame(
        [
            {
                "model": "BPR",
                "method": "attrcloak-dd",
                "attribute": "gender",
                "protocol": p,
                "attacker": "logreg",
                "signed_gap": gap,
            }
            for p, gap in (("kfold", -0.031), ("shadow", 0.2))
        ]
    )
    write_csv(privacy, results / "privacy.csv", ["test"], {})
    block = _terms.terms_block(results, "x")
    row = next(line for line in block.splitlines() if line.startswith("| BPR"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["BPR", "DD", "gender"]
    assert cells[3] == "+1.60" and cells[4] == "-0.90"  # means of 1.5/1.7 and −1.0/−0.8
    assert cells[5] == "–"  # a critic the runs did not report
    assert cells[-2:] == ["-0.031", "2"]  # the k-fold gap, not the shadow one; two seeds
    assert "@block" not in block and "age" not in block


def _audited(folder: Path, seed: int, shift: float) -> dict:
    """A run whose unlearned audit has one attack above its null and one below."""
    folder.mkdir(parents=True)

    def test(observed: float, null: float, p: float, p_below: float) -> dict:
        return {"observed": observed, "null_mean": null, "p_value": p, "p_value_below": p_below}

    significance = {
        "shadow": {"svm_rbf": test(0.53 + shift, 0.516, 0.04, 0.97)},
        "kfold": {"logreg": test(0.47, 0.50, 0.9, 0.03), "knn": test(0.5, 0.5, 0.5, 0.5)},
    }
    privacy = {"gender": {"significance": significance}}
    report = {"stages": {"unlearned": {"privacy": privacy}}, "unlearning": {}}
    (folder / "report.json").write_text(json.dumps(report))
    return {
        "dataset": "d",
        "model": "BPR",
        "method": "attrcloak-df",
        "seed": seed,
        "folder": str(folder),
    }


def test_null_table_and_block_read_both_directions_against_the_permuted_null(tmp_path):
    import _null

    runs = [_audited(tmp_path / f"r{s}", s, 0.01 * s) for s in range(2)]
    table = _null.null_table(pd.DataFrame(runs), ["dataset", "model", "method"])
    assert len(table) == 6
    row = table[(table["seed"] == 0) & (table["attacker"] == "svm_rbf")].iloc[0]
    assert abs(row["minus_null"] - 0.014) < 1e-12  # against its null, not against chance
    results = tmp_path / "results"
    results.mkdir()
    write_csv(table, results / "null.csv", ["test"], {})
    line = next(x for x in _null.null_block(results, "x").splitlines() if x.startswith("| BPR"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3] == "+0.019 (gender, shadow/svm_rbf)"  # mean of 0.014 and 0.024
    assert cells[4] == "-0.030 (gender, kfold/logreg)"  # far below: it leaks too
    assert cells[5] == "2 / 2 of 6 (chance: 0.3 each)"


def test_the_draw_noise_block_averages_over_seeds_and_leaves_out_the_linear_critics(tmp_path):
    import _studies_md
    from draw_noise import family

    assert family("occupation=4", "rbf4/ridge=1@block2") == ("rbf4/ridge=1", "one-vs-rest")
    assert family("gender", "crossfit/ridge=1") == ("crossfit/ridge=1", "attribute")
    rows = [
        ("rbf1/ridge=inf", 2020, 0.4, 0.6, 0.28, 0.14),
        ("rbf1/ridge=inf", 2021, 0.6, 0.9, 0.42, 0.21),
        ("linear/ridge=inf", 2020, 0.0, 0.0, 0.0, 0.0),
    ]
    frame = pd.DataFrame(
        [
            {
                "model": "BPR",
                "seed": seed,
                "critic": critic,
                "scope": "attribute",
                "statistics": 3,
                "draw_sd_mean": mean,
                "draw_sd_max": top,
                "stop_sd_2_draws": two,
                "stop_sd_default": default,
                "df_steps": 20,
            }
            for critic, seed, mean, top, two, default in rows
        ]
    )
    frame.to_csv(tmp_path / "draw_noise.csv", index=False)
    block = _studies_md.draw_noise_block(tmp_path, "link")
    assert "| rbf1/ridge=inf | attribute | 0.50 (0.90) | 0.35 | 0.17 |" in block
    assert "linear/" not in block.split("|---|")[-1]  # no row for the critics without draws
    assert "seeds 2020, 2021" in block
    assert "No draw-noise" in _studies_md.draw_noise_block(tmp_path / "none", "link")


def test_the_speed_block_reads_the_medians_against_issue_12s_bars(tmp_path):
    import _studies_md

    columns = ["model", "seed", "train_s", "df_seconds", "df_steps", "dd_seconds", "dd_steps"]
    rows = [("BPR", 2020, 10.0, 1.5, 20, 2.0, 22), ("BPR", 2021, 10.0, 2.5, 30, 3.0, 33)]
    rows.append(("BPR", 2022, 8.0, 1.9, 25, 2.4, 26))
    frame = pd.DataFrame(rows, columns=columns)
    frame["dd_share"] = frame["dd_seconds"] / frame["train_s"]
    frame.to_csv(tmp_path / "speed.csv", index=False)
    block = _studies_md.speed_block(tmp_path, "link")
    assert "| BPR 2021 | 10.0 | 2.50 (30) | 3.00 (33) | 30.0 % |" in block
    # medians: DF 1.9 s (met), DD 30 % (2.4 / 8; not met)
    assert "DF 1.90 s (bar 2 s: met), DD 30.0 % of the training (bar 25 %: not met)" in block
    assert "worst seed: DF 2.50 s, DD 30.0 %." in block
    assert "No speed results" in _studies_md.speed_block(tmp_path / "none", "link")


def test_the_dd_pairs_block_has_a_row_per_pair_count_and_the_mean_kept(tmp_path):
    import _studies_md

    rows = [
        {"model": "BPR", "seed": s, "pairs": p, "ndcg_kept_pct": k, "steps": 20, "seconds": t}
        for s, p, k, t in [(1, 64, 98.0, 4.0), (2, 64, 97.0, 5.0), (1, 16, 98.5, 2.0)]
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "dd_pairs.csv", index=False)
    block = _studies_md.dd_pairs_block(tmp_path, "link")
    table = block.split("|---|")[-1]
    assert table.index("| 64 |") < table.index("| 16 |")  # most pairs first
    assert "| 64 | 98.00 % (20, 4.00 s) | 97.00 % (20, 5.00 s) | 97.50 % |" in block
    assert "| 16 | 98.50 % (20, 2.00 s) |  | 98.50 % |" in block  # seed 2 not run


def test_a_study_writes_each_seeds_rows_and_their_markdown(tmp_path):
    from _common import run_study, study_parser

    args = study_parser("Doc line.\nmore", "demo").parse_args(
        ["--originals", "o", "--seeds", "3,4", "--out", str(tmp_path)]
    )
    seen = []

    def one_seed(seed, work):
        seen.append(work.name)
        return [{"seed": seed, "value": seed * 10}]

    def render(rows, command, header):
        return f"{len(rows)} rows; {header}\n"

    assert run_study(args.seeds, one_seed, tmp_path, "demo", render) == 0
    assert seen == ["3", "4"]  # a work folder of its own per seed
    assert (tmp_path / "demo.csv").read_text().splitlines() == ["seed,value", "3,30", "4,40"]
    assert (tmp_path / "demo.md").read_text().startswith("2 rows; Date: ")


def test_the_second_moments_block_has_a_row_per_setting_and_signed_gaps(tmp_path):
    import _studies_md

    rows = [
        {
            "checkpoint": "BPR-ml-1m-2020.pth",
            "mode": "df",
            "au_squares": squares,
            "au_quadratic": quadratic,
            "steps": steps,
            "ndcg_kept_pct": 94.7,
            "gender/squares": gap,
        }
        for squares, quadratic, steps, gap in [(False, False, 65, 0.048), (True, True, 42, -0.01)]
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "second_moments.csv", index=False)
    block = _studies_md.second_moments_block(tmp_path, "link")
    assert "BPR-ml-1m-2020.pth" in block
    assert "| DF | off | off | 65 | 94.70 % | +0.048 |" in block
    assert "| DF | on | on | 42 | 94.70 % | -0.010 |" in block
    assert "No second-moment" in _studies_md.second_moments_block(tmp_path / "none", "link")


def test_the_second_moment_probes_read_a_planted_variance_and_nothing_on_noise():
    import numpy as np
    from second_moments import probe_features, probe_gap

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    x = rng.normal(size=(600, 8))
    assert probe_features(x, "pca32_products").shape == (600, 36)  # 8 components: 8·9/2
    assert abs(probe_gap(x, y, "squares")) < 0.06  # noise: chance
    x[y == 1, :3] *= 1.6  # the variances differ, the means do not
    assert probe_gap(x, y, "squares") > 0.15
    assert abs(probe_gap(x, y, "linear")) < 0.06


def test_the_memory_block_puts_back_to_back_runs_in_place_of_their_size(tmp_path):
    import _studies_md

    def row(n, seconds, peak):
        return {"n_users": n, "d": 128, "steps": 2, "step_cap": 2, "status": "ok"} | {
            "step_s_median": seconds,
            "peak_rss_gb": peak,
        }

    (tmp_path / "final").mkdir()
    pd.DataFrame([row(100000, 17.1, 1.7), row(1000000, 220.0, 12.9)]).to_csv(
        tmp_path / "final" / "df.csv", index=False
    )
    runs = [("old", 10.9, 1.72), ("new", 10.1, 1.69), ("old", 10.8, 1.7), ("new", 10.0, 1.6)]
    (tmp_path / "final" / "back_to_back.jsonl").write_text(
        "\n".join(json.dumps(row(100000, s, p) | {"commit": c}) for c, s, p in runs)
    )
    block = _studies_md.memory_block(tmp_path, "link")
    assert "| 1000000 × 128 | 2 (cap 2) | 220 | 12.90 |" in block
    assert "17.1" not in block  # the one-off row of a size run back to back is left out
    link = "(link/final/back_to_back.jsonl) | 100000 × 128 | 2 (cap 2)"
    assert f"| [old, back to back]{link} | 10.9 / 10.8 | 1.72 |" in block
    assert f"| [new, back to back]{link} | 10.1 / 10 | 1.69 |" in block
