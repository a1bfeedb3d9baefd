"""Bad input on the command line and in ``quick_start.run``: one line on stderr and exit code 2
(130 for Ctrl-C), before any training, and nothing that exists is overwritten."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from recbole_attrcloak import quick_start, report
from recbole_attrcloak.cli import main
from recbole_attrcloak.quick_start import run
from tests.conftest import toy_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy_yaml(toy_root, tmp_path) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_config(toy_root)))
    return path


def _cli(capsys, *args: str) -> tuple[int, list[str]]:
    """Run the command line in this process; its exit code and its stderr lines."""
    code = main(list(args))
    return code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--unlearn=ldp", "--ldp_epsilon=0"], "ldp_epsilon must be > 0, got 0"),
        (["--unlearn", "blurme", "--blurme_p=2"], "blurme_p must be in (0, 1], got 2"),
        (["--unlearn=u2u", "--u2u_lambda=-1"], "u2u_lambda must be >= 0"),
        (["--unlearn=d2d", "--du_topn=1"], "du_topn must be an integer >= 2"),
        (["--unlearn=rap", "--rap_lambda=-1"], "rap_lambda must be >= 0"),
        (["--au_learnig_rate=0.3"], "unknown setting 'au_learnig_rate' (did you mean"),
        (["--unlearn=attrcloak", "--au_mode=dd", "--au_dd_topk=0"], "au_dd_topk must be"),
        (["--unlearn=attrcloak", "--au_learning_rate=1e38"], "au_learning_rate must be"),
        (["--unlearn=attrcloak", "--au_alpha=-1"], "au_alpha must be unset (~) or in [0, 1]"),
        (["--unlearn=attrcloak", "--au_learner=foo"], "au_learner must be one of"),
        (["--au_target_ratio=0", "--unlearn=attrcloak"], "au_target_ratio must be > 0"),
        (["--epochs=1", "--epochs=2"], "--epochs is given twice"),
        (
            ["--unlearn=rap", "-m", "NGCF"],
            "--unlearn rap applies to BPR, NeuMF, LightGCN, not NGCF",
        ),
        (["--config_files", "MALFORMED"], "not valid YAML"),
        (["--config_files", "UNLEARN_MAGIC"], "unknown --unlearn method 'magic'"),
    ],
)
def test_settings_stop_the_run_before_anything_is_written(
    toy_yaml, tmp_path, capsys, args, message
):
    (tmp_path / "bad.yaml").write_text("epochs: [1, 2\nseed: 3\n")
    (tmp_path / "magic.yaml").write_text("unlearn: magic\n")  # a config file's unlearn counts
    files = {"MALFORMED": "bad.yaml", "UNLEARN_MAGIC": "magic.yaml"}
    if "--config_files" in args:
        args = ["--config_files", f"{toy_yaml} {tmp_path / files[args[1]]}"]
    else:
        args = ["--config_files", str(toy_yaml), *args]
    out = tmp_path / "out"
    code, err = _cli(capsys, "-d", "toy", *args, "--output_dir", str(out))
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()  # nothing written: no data read, no model trained


def test_a_settings_error_from_the_real_entry_point(toy_yaml, tmp_path):
    out = tmp_path / "out"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_au.py"), "-d", "toy"]
        + ["--config_files", str(toy_yaml), "--unlearn", "ldp", "--ldp_epsilon=0"]
        + ["--output_dir", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: ldp_epsilon must be > 0, got 0"]
    assert not out.exists()
    print(f"settings error after {time.perf_counter() - started:.1f} s")  # includes imports


def _unwritable(tmp_path: Path, case: str) -> Path:
    if case == "under_a_file":
        (tmp_path / "plain").write_text("a file")
        return tmp_path / "plain" / "out"
    if case == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o555)
        return folder
    if case == "is_a_file":
        (tmp_path / "plain").write_text("a file")
        return tmp_path / "plain"
    if not Path("/sys/kernel").is_dir():  # a folder nobody, root included, may create files in
        pytest.skip("no sysfs here")
    return Path("/sys/kernel")


@pytest.mark.parametrize("case", ["under_a_file", "read_only", "is_a_file", "sysfs"])
def test_an_output_folder_that_cannot_be_written(toy_yaml, tmp_path, capsys, case):
    out = _unwritable(tmp_path, case)
    code, err = _cli(capsys, "-d", "toy", "--config_files", str(toy_yaml), "--output_dir", str(out))
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "--output_dir" in err[0], err
    assert not list(tmp_path.glob("**/recbole.log"))


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("report.json", []),
        ("report.md", []),
        ("recbole.log", []),
        ("embeddings.npz", ["--export_embeddings"]),
        # an interrupted run with unlearning: its protected model saved, no report yet
        ("BPR-toy-attrcloak.pth", ["--unlearn=attrcloak"]),
        ("BPR-toy-attrcloak-weights.pt", ["--unlearn=attrcloak"]),
        ("BPR-toy-u2u.pth", ["--unlearn=u2u"]),
        ("derived", ["--unlearn=blurme"]),
        ("retrain", ["--unlearn=rap"]),
    ],
)
def test_existing_outputs_are_refused_at_the_start(toy_yaml, tmp_path, capsys, name, flags):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"mine")
    code, err = _cli(
        capsys, "-d", "toy", "--config_files", str(toy_yaml), *flags, "--output_dir", str(out)
    )
    assert code == 2
    assert len(err) == 1 and f"already holds {name} of an earlier run" in err[0], err
    assert (out / name).read_bytes() == b"mine"
    assert [p.name for p in out.iterdir()] == [name]  # nothing trained, nothing written


@pytest.mark.parametrize("model", ["Pop", "ItemKNN"])
def test_models_without_a_user_representation_are_refused_before_training(
    toy_root, tmp_path, model
):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=f"model {model} has no user representation") as error:
        run(model, "toy", config_dict=toy_config(toy_root), output_dir=str(out))
    assert "supported: BPR, DMF, ENMF, LightGCN, NGCF, NeuMF" in str(error.value)
    assert not out.exists()  # the run's own log is removed with the folder it created


def test_unsupported_model_from_the_command_line_is_one_line_after_recbole_logs(toy_yaml, tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # existed before: kept, but left as it was
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_au.py"), "-m", "Pop", "-d", "toy"]
        + ["--config_files", str(toy_yaml), "--output_dir", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert lines[-1].startswith("error: model Pop has no user representation")
    assert sum(line.startswith("error:") for line in lines) == 1
    assert list(out.iterdir()) == []


def test_clearing_caches_keeps_the_state_of_other_models(toy_root):
    from recbole.data import create_dataset, data_preparation

    from recbole_attrcloak.backbone import clear_cached_representations
    from recbole_attrcloak.config import build_config
    from recbole_attrcloak.registry import get_model

    for name, kept, cleared in (
        ("Pop", "item_cnt", None),
        ("ItemKNN", "pred_mat", None),
        ("LightGCN", None, "restore_user_e"),
    ):
        config = build_config(name, "toy", overrides=toy_config(toy_root))
        train, _, _ = data_preparation(config, create_dataset(config))
        model = get_model(name)(config, train._dataset)
        if cleared:
            setattr(model, cleared, model.forward()[0])
        clear_cached_representations(model)
        if kept:
            assert getattr(model, kept) is not None
        if cleared:
            assert getattr(model, cleared) is None


@pytest.mark.parametrize(
    ("method", "settings", "message"),
    [  # the toy data has 80 items
        ("attrcloak", {"au_mode": "dd", "au_dd_topk": 80}, "au_dd_topk must be below"),
        ("u2u", {"du_topn": 81}, "du_topn must be at most"),
    ],
)
def test_a_top_k_larger_than_the_catalogue_is_refused_before_training(
    toy_root, tmp_path, method, settings, message
):
    out = tmp_path / "out"
    config = toy_config(toy_root, **settings)
    with pytest.raises(ValueError, match=rf"{message} the number of items \(80\)"):
        run("BPR", "toy", config_dict=config, unlearn=method, output_dir=str(out))
    assert not out.exists()


def test_ctrl_c_is_one_line_and_exit_code_130(toy_yaml, tmp_path, capsys, monkeypatch):
    def interrupted(**_):
        raise KeyboardInterrupt

    monkeypatch.setattr(quick_start, "run", interrupted)
    try:
        code, err = _cli(capsys, "-d", "toy", "--config_files", str(toy_yaml))
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the command line (a traceback, exit code 1)")
    assert code == 130 and err == ["interrupted: stopped before writing a report"]


def test_ctrl_c_while_training(toy_root, tmp_path):
    """A real SIGINT to the whole process group (as a terminal sends it) while RecBole trains;
    a rerun into the same folder is then refused at once."""
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump(toy_config(toy_root, epochs=500, stopping_step=500)))
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "run_recbole_au.py"), "-d", "toy"]
    command += ["--config_files", str(config), "--output_dir", str(out)]
    process = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # a child inherits an ignored SIGINT (and Python then installs no KeyboardInterrupt):
        # an earlier test in this process may have ignored it, a terminal's shell never does
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    log, deadline = out / "recbole.log", time.monotonic() + 120
    while not (log.is_file() and "epoch 1 training" in log.read_text()):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=180)  # a loaded machine may take a while
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == "interrupted: stopped before writing a report"
    assert not (out / "report.json").exists()

    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert again.stderr.splitlines() == [
        f"error: {out} already holds recbole.log of an earlier run; choose another --output_dir"
    ]


def test_report_md_names_the_classes_left_out_of_the_audit():
    from recbole_attrcloak.audit import AuditSettings, audit_representations
    from recbole_attrcloak.data.attributes import encode_attribute

    rng = np.random.default_rng(0)
    ages = ["20"] * 60 + ["40"] * 60 + ["60"]  # one user aged 56+
    X = rng.normal(size=(len(ages), 4))
    settings = AuditSettings(
        protocols=("shadow",), attackers=("logreg",), n_resamples=10, n_held_out_permutations=10
    )
    privacy = audit_representations(X, {"age": encode_attribute("age", ages)}, settings)
    assert privacy["age"]["n_dropped"] == 1 and privacy["age"]["dropped_classes"] == {"56+": 1}
    stage = {"utility": {}, "privacy": privacy, "embedding": report.spectrum(X)}
    content = {"model": "BPR", "dataset": "toy", "method": "none", "seconds": {}}
    markdown = report.markdown(content | {"stages": {"original": stage}})
    assert "- original: age: 1 users left out of the audit" in markdown
    assert "fewer than 5 users: '56+' (1 user)" in markdown
