"""The command line: both flag forms, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_attrcloak.cli import parse_args

ROOT = Path(__file__).resolve().parents[1]


def test_flag_forms():
    spaced, _ = parse_args(["--unlearn", "attrcloak", "-m", "NeuMF"])
    joined, extra = parse_args(["--unlearn=attrcloak", "--model=NeuMF", "--epochs=3"])
    assert spaced.unlearn == joined.unlearn == "attrcloak"
    assert spaced.model == joined.model == "NeuMF"
    assert extra == ["--epochs=3"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_au.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint", "missing.pth"], "checkpoint not found"),
        (["--checkpoint", "foreign.pth"], "not a RecBole checkpoint"),
        (["--model", "NoSuchModel"], "unknown model 'NoSuchModel'"),
        (["--unlearn=attrcloak", "stray"], "unrecognised arguments"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pth")
    result = _cli(*args, "--output_dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr
