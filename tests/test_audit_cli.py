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
        ("duplicate_tokens", "duplicate user_tokens, e.g. 'u1' (1 in all): each user must have"),
        ("existing_output", "already exists; choose another file"),
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
    elif case == "duplicate_tokens":
        tokens = ["u0", "u1", "u2", "u1"]
        args[0] = str(write_npz(tmp_path / "bad.npz", user_tokens=tokens, x=np.zeros((4, 2))))
    elif case == "existing_output":
        (tmp_path / "mine.json").write_text("mine")
        args += ["--output", str(tmp_path / "mine.json")]
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


def test_an_existing_output_is_refused_before_auditing(exported, tmp_path, capsys, monkeypatch):
    npz, user_file = exported
    (tmp_path / "mine.json").write_text("mine")

    def audit(*_, **__):
        raise AssertionError("audited although the output exists")

    monkeypatch.setattr("recbole_attrcloak.audit.__main__.audit_representations", audit)
    args = [str(npz), "--user_file", str(user_file), "--attributes", "gender"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--output", str(tmp_path / "mine.json")])
    assert exit_info.value.code == 2 and (tmp_path / "mine.json").read_text() == "mine"


def test_classes_left_out_of_the_audit_are_counted_and_printed(exported, tmp_path, capsys):
    npz, user_file = exported
    rows = user_file.read_text().splitlines()
    rows[1] = rows[1].split("\t")[0] + "\t70\tX"  # u0: the only user of gender X
    user_file.write_text("\n".join(rows) + "\n")
    output = tmp_path / "audit.json"
    args = [str(npz), "--user_file", str(user_file), "--attributes", "gender", "--audit", "quick"]
    assert main([*args, "--stage", "original", "--output", str(output)]) == 0
    entry = json.loads(output.read_text())["stages"]["original"]["gender"]
    assert entry["dropped_classes"] == {"X": 1} and entry["n_dropped"] == 1
    printed = capsys.readouterr().out
    assert "original: gender: 1 users left out of the audit" in printed
    _assert_markdown_tables(printed, count=2)


def _assert_markdown_tables(text: str, count: int) -> None:
    """``text`` holds ``count`` Markdown tables, each a header, a ``|---|…|`` rule of as many
    columns and rows of as many cells."""
    tables = [
        [line for line in block.splitlines() if line.startswith("|")]
        for block in text.split("\n\n")
    ]
    tables = [t for t in tables if t]
    assert len(tables) == count
    for header, rule, *rows in tables:
        columns = header.count("|") - 1
        assert rule == "|---" * columns + "|"
        assert rows and all(row.count("|") - 1 == columns for row in rows)


def test_ctrl_c_is_one_line_and_exit_code_130(exported, capsys, monkeypatch):
    npz, user_file = exported

    def audit(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr("recbole_attrcloak.audit.__main__.audit_representations", audit)
    try:
        code = main([str(npz), "--user_file", str(user_file), "--attributes", "gender"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the command line (a traceback, exit code 1)")
    assert code == 130
    assert capsys.readouterr().err == "interrupted: stopped before writing a report\n"
