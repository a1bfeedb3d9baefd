import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recbole_attrcloak.audit.__main__ import main

ROOT = Path(__file__).resolve().parents[1]

# also in `make test-current`
pytestmark = pytest.mark.current


@pytest.fixture
def exported(tmp_path):
    """An npz with a leaking "original" and a clean "unlearned" stage, and its .user file."""
    rng = np.random.default_rng(0)
    n = 240
    gender = np.where(np.arange(n) % 3 == 0, "F", "M")
    age = rng.integers(18, 60, n)
    original = rng.normal(size=(n, 8))
    original[:, :3] += 2.0 * (gender == "F")[:, None]
    tokens = np.array([f"u{i}" for i in range(n)] + ["ghost"])  # "ghost" is not in the .user file
    npz = tmp_path / "embeddings.npz"
    np.savez(
        npz,
        user_tokens=tokens,
        original=np.vstack([original, np.zeros((1, 8))]),
        unlearned=rng.normal(size=(n + 1, 8)),
    )
    user_file = tmp_path / "toy.user"
    rows = [f"u{i}\t{age[i]}\t{gender[i]}" for i in range(n)]
    user_file.write_text("user_id:token\tage:token\tgender:token\n" + "\n".join(rows) + "\n")
    return npz, user_file


def test_round_trip_prints_a_table_and_writes_json(exported, tmp_path, capsys):
    npz, user_file = exported
    output = tmp_path / "reports" / "audit.json"
    args = [str(npz), "--user_file", str(user_file), "--attributes", "gender,age"]
    assert main([*args, "--audit", "quick", "--output", str(output)]) == 0
    table = capsys.readouterr().out
    assert "| original | gender | shadow | 0.500 |" in table
    assert "| unlearned | age | shadow |" in table
    assert table.count("(p=") == 2 * 2 * 2  # stages x attributes x attackers

    report = json.loads(output.read_text())
    assert report["settings"]["protocols"] == ["shadow"]
    assert set(report["stages"]) == {"original", "unlearned"}
    gender = report["stages"]["original"]["gender"]
    assert (gender["n_users"], gender["n_missing"]) == (240, 1)
    assert gender["strongest"]["verdict"].startswith("leakage detected (shadow/")
    assert gender["significance"]["shadow"]["mlp"]["p_value"] < 0.01
    clean = report["stages"]["unlearned"]["gender"]["strongest"]
    assert clean["p_value"] > 0.05 and clean["verdict"].startswith("no leakage detectable")
    assert report["stages"]["original"]["age"]["classes"] == [
        "18-24",
        "25-34",
        "35-44",
        "45-49",
        "50-55",
        "56+",
    ]
    assert [name for name in os.listdir(output.parent)] == ["audit.json"]  # no temporary left

    args[-1] = "gender"
    assert main([*args, "--audit", "quick", "--stage", "unlearned"]) == 0
    assert "original" not in capsys.readouterr().out


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_npz", "embeddings file not found"),
        ("missing_user_file", "user file not found"),
        ("unknown_attribute", "unknown column(s) zip_code; available: user_id, age, gender"),
        ("no_user_tokens", "no 'user_tokens' array"),
        ("shape_mismatch", "stage 'original' has shape (3, 8)"),
        ("unknown_stage", "no stage 'final' (stages: original, unlearned)"),
        ("not_an_npz", "not a readable .npz"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(exported, tmp_path, capsys, case, message):
    npz, user_file = exported
    args = [str(npz), "--user_file", str(user_file), "--attributes", "gender", "--audit", "quick"]
    if case == "missing_npz":
        args[0] = str(tmp_path / "nothing.npz")
    elif case == "missing_user_file":
        args[2] = str(tmp_path / "nothing.user")
    elif case == "unknown_attribute":
        args[4] = "gender,zip_code"
    elif case == "no_user_tokens":
        args[0] = str(write_npz(tmp_path / "bad.npz", original=np.zeros((3, 8))))
    elif case == "shape_mismatch":
        bad = write_npz(tmp_path / "bad.npz", user_tokens=["u0", "u1"], original=np.zeros((3, 8)))
        args[0] = str(bad)
    elif case == "unknown_stage":
        args += ["--stage", "final"]
    elif case == "not_an_npz":
        (tmp_path / "bad.npz").write_text("not a zip")
        args[0] = str(tmp_path / "bad.npz")
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err


def test_module_entry_point_reports_errors_without_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "recbole_attrcloak.audit",
            str(tmp_path / "none.npz"),
            "--user_file",
            "x.user",
            "--attributes",
            "gender",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"python -m recbole_attrcloak.audit: error: embeddings file not found: {tmp_path}/none.npz"
    ]


def test_usage_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["e.npz"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "required: --user_file, --attributes" in error
