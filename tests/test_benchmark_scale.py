"""The --quick modes of benchmarks/scale.py (DF and DD) and benchmarks/distributions.py, end to
end in subprocesses, as a user runs them from the repository root."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> None:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _check_markdown(path: Path, title: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# {title}")
    assert "Command: `python -m benchmarks." in text and "CPU cores" in text


def test_quick_benchmarks_write_their_results(tmp_path):
    no_recbole = (
        "import sys, benchmarks.scale; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'recbole'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", no_recbole], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"  # the DF study runs where RecBole is not installed

    scale = tmp_path / "scale"
    _run("-m", "benchmarks.scale", "df", "--quick", "--out", str(scale))
    rows = _rows(scale / "df.csv")
    assert rows and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert 0 <= int(r["kept_step"]) < int(r["steps"])
        # at least half of the steps take the median or longer, all inside the total
        assert float(r["total_s"]) >= int(r["steps"]) / 2 * float(r["step_s_median"])
        assert float(r["peak_rss_gb"]) > float(r["table_gb"])
        assert float(r["l_au_after"]) < float(r["l_au_before"])
        # the planted gender signal is readable before and mostly gone after
        before = float(r["gender_linear_before"]) + float(r["gender_mlp_before"])
        after = float(r["gender_linear_after"]) + float(r["gender_mlp_after"])
        assert before > 2 * 0.55 and after < before - 0.1
    _check_markdown(scale / "df.md", "AttrCloak-DF at scale")
    assert "log–log slope" in (scale / "df.md").read_text(encoding="utf-8")
    assert (scale / "df.png").stat().st_size > 10_000

    _run("-m", "benchmarks.scale", "dd", "--quick", "--out", str(scale))
    dd_rows = _rows(scale / "dd.csv")
    assert {r["retention"] for r in dd_rows} == {"train_loss", "ranking"}
    for dd in dd_rows:
        step, epoch = float(dd["dd_step_s_median"]), float(dd["epoch_s_median"])
        assert float(dd["dd_step_per_epoch"]) == pytest.approx(step / epoch, rel=1e-4)
        assert float(dd["batch_s"]) * int(dd["batches_per_epoch"]) == pytest.approx(epoch, rel=1e-4)
        assert int(dd["dd_steps_timed"]) == 5  # --quick
    _check_markdown(scale / "dd.md", "One AttrCloak-DD step")

    dist = tmp_path / "distributions"
    work = tmp_path / "work"
    _run("-m", "benchmarks.distributions", "--quick", "--out", str(dist), "--work_dir", str(work))
    dims = _rows(dist / "dims.csv")
    assert len(dims) == 128  # configs/default.yaml: d = 128
    for key in ("overlap_before", "overlap_after"):
        assert all(0.0 < float(r[key]) <= 1.0 + 1e-9 for r in dims)
    assert all(float(r["kl_before"]) >= 0.0 for r in dims)
    _check_markdown(dist / "summary.md", "Embedding distributions by gender")
    for picture in ("fig4.png", "kl.png"):
        assert (dist / picture).stat().st_size > 10_000
