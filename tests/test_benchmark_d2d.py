"""benchmarks/d2d_estimators.py end to end on the toy dataset, as a user runs it from the
repository root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_toy_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_d2d_estimators_benchmark_writes_its_results(tmp_path):
    root = write_toy_dataset(tmp_path / "data")
    out = tmp_path / "results"
    args = ["--dataset", "toy", "--data_root", str(root), "--epochs", "2", "--features", "64,4096"]
    args += ["--draws", "3", "--exact-steps", "5", "--out", str(out), "--work", str(tmp_path / "w")]
    done = subprocess.run(
        [sys.executable, "benchmarks/d2d_estimators.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads((out / "toy.json").read_text())
    exact, few, many = payload["estimates"]
    assert exact["estimator"] == "exact" and (few["features"], many["features"]) == (64, 4096)
    # more features: a smaller spread, closer to the exact value and its gradient
    assert many["std"] < few["std"]
    assert abs(many["mean"] - exact["mean"]) < 3 * many["std"] + 1e-3
    assert many["cosine"] > few["cosine"]
    original, rff, exact_run = payload["runs"]
    assert (rff["steps"], exact_run["steps"], exact_run["planned_steps"]) == (100, 5, 100)
    assert rff["l_dist"] < original["l_dist"]
    text = (out / "toy.md").read_text()
    assert text.startswith("# D2D-R: exact vs random-Fourier-feature MMD² on toy")
    assert "Command: `python benchmarks/d2d_estimators.py --dataset toy" in text
    assert "5 of 100 (capped" in text
