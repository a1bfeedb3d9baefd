"""End to end on the toy dataset: train, audit, unlearn, report, checkpoints, and bad input."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from recbole_attrcloak import compat
from recbole_attrcloak.data.attributes import DataError
from recbole_attrcloak.quick_start import run
from tests.conftest import toy_config, toy_context, write_toy_dataset


@pytest.fixture(scope="module")
def original_run(toy_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "bpr"
    report = run(
        "BPR", "toy", config_dict=toy_config(toy_root), output_dir=str(out), export_embeddings=True
    )
    return report, out


def test_report_shape(original_run):
    report, out = original_run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["model"] == "BPR" and on_disk["dataset"] == "toy" and on_disk["method"] == "none"
    stage = on_disk["stages"]["original"]
    assert set(stage["utility"]) >= {"ndcg@5", "ndcg@10", "hit@5", "hit@10"}
    gender = stage["privacy"]["gender"]
    assert gender["chance"] == 0.5 and gender["n_users"] == 160
    for attacker in ("mlp", "xgboost"):
        for metric in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc"):
            assert set(gender[attacker][metric]) >= {"mean", "std"}
    assert stage["privacy"]["age"]["n_missing"] == 10  # users 0, 17, ..., 153 gave no age
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# BPR on toy")
    p_value = gender["significance"]["shadow"]["mlp"]["p_value"]
    ci = gender["mlp"]["balanced_accuracy"]["ci95"]
    assert f"[{ci[0]:.3f}, {ci[1]:.3f}] p={p_value:.2g}" in markdown
    assert (out / "recbole.log").stat().st_size > 0
    seconds = report["seconds"]
    assert set(seconds) == {"train", "audit_original", "total"}  # no checkpoint, no defence
    assert seconds["total"] >= seconds["train"] + seconds["audit_original"]
    stage_seconds = stage["seconds"]
    assert seconds["audit_original"] >= stage_seconds["utility"] + stage_seconds["privacy"]


def test_planted_gender_signal_is_detected(original_run):
    report, _ = original_run
    gender = report["stages"]["original"]["privacy"]["gender"]
    assert max(gender[a]["balanced_accuracy"]["mean"] for a in ("mlp", "xgboost")) > 0.8


def _representations_by_token(checkpoint: str, tokens: np.ndarray) -> np.ndarray:
    """The user embedding of each token, as the checkpoint's model holds it (stock RecBole)."""
    from recbole.quick_start import load_data_and_model

    with compat.trusted_checkpoints():
        _, model, dataset, *_ = load_data_and_model(checkpoint)
    ids = torch.as_tensor(dataset.token2id(dataset.uid_field, tokens.tolist()))
    with torch.no_grad():
        return model.get_user_embedding(ids).cpu().numpy()


def test_embeddings_export(original_run):
    report, out = original_run
    data = np.load(out / "embeddings.npz")
    tokens = data["user_tokens"]
    assert sorted(tokens) == sorted(f"u{u}" for u in range(160))  # every user once
    assert data["original"].shape == (160, 16)
    # each row is the embedding of the token in the same row
    expected = _representations_by_token(report["checkpoint"]["original"], tokens)
    np.testing.assert_array_equal(data["original"], expected)


@pytest.fixture(scope="module")
def df_run(original_run, toy_root, tmp_path_factory):
    report, _ = original_run
    out = tmp_path_factory.mktemp("run") / "df"
    checkpoint = report["checkpoint"]["original"]
    unlearned = run(
        "BPR",
        "toy",
        config_dict=toy_config(toy_root, au_mode="df"),
        checkpoint=checkpoint,
        unlearn="attrcloak",
        output_dir=str(out),
        export_embeddings=True,
    )
    return checkpoint, unlearned


def test_exported_rows_of_both_stages_belong_to_their_tokens(df_run):
    checkpoint, report = df_run
    data = np.load(report["embeddings"])
    tokens = data["user_tokens"]
    for stage, path in (
        ("original", checkpoint),
        ("unlearned", report["checkpoint"]["checkpoint"]),
    ):
        np.testing.assert_array_equal(data[stage], _representations_by_token(path, tokens))
    assert not np.array_equal(data["original"], data["unlearned"])


def test_attrcloak_df_changes_only_user_parameters(df_run):
    checkpoint, report = df_run
    before = torch.load(checkpoint, weights_only=False)["state_dict"]
    after = torch.load(report["checkpoint"]["weights"], weights_only=True)["state_dict"]
    assert torch.equal(before["item_embedding.weight"], after["item_embedding.weight"])
    assert not torch.equal(before["user_embedding.weight"], after["user_embedding.weight"])
    assert torch.isfinite(after["user_embedding.weight"]).all()


def test_attrcloak_df_removes_planted_leakage(df_run):
    _, report = df_run
    gender = report["stages"]["unlearned"]["privacy"]["gender"]
    for attacker in ("mlp", "xgboost"):
        assert gender[attacker]["balanced_accuracy"]["mean"] < 0.65
    trace = report["unlearning"]["trace"]
    assert trace["l_au"][-1] < trace["l_au"][0]
    # at the original state Eq. 21 has no gradient: all the weight goes to L_AU
    assert trace["alpha_u"][0] == 1.0 and len(trace["alpha_u"]) == len(trace["l_au"])


def test_unlearned_checkpoint_loads_with_stock_recbole(df_run):
    from recbole.quick_start import load_data_and_model

    _, report = df_run
    with compat.trusted_checkpoints():
        config, model, _, _, _, test_data = load_data_and_model(report["checkpoint"]["checkpoint"])
    assert config["unlearn"] == "attrcloak"
    after = torch.load(report["checkpoint"]["weights"], weights_only=True)["state_dict"]
    assert torch.equal(model.user_embedding.weight.cpu(), after["user_embedding.weight"])


def test_df_never_reads_interactions(toy_root, tmp_path):
    from recbole_attrcloak.unlearning.attrcloak import run_attrcloak

    ctx = toy_context(toy_root, tmp_path, epochs=3, au_mode="df", au_max_steps=10)

    class Forbidden:
        def __getattr__(self, name):
            raise AssertionError(f"DF touched the interaction data ({name})")

        def __iter__(self):
            raise AssertionError("DF iterated the interaction data")

    result = run_attrcloak(dataclasses.replace(ctx, train_data=Forbidden()))
    assert result.info["mode"] == "df" and len(result.info["trace"]["l_au"]) > 0
    # the same run with the real loader: DD reads it, DF does not need it
    with pytest.raises(AssertionError, match="interaction data"):
        config = copy.deepcopy(ctx.config)
        config["au_mode"] = "dd"
        run_attrcloak(dataclasses.replace(ctx, config=config, train_data=Forbidden()))


def test_dd_mode_moves_users_and_keeps_items(original_run, toy_root, tmp_path):
    report, _ = original_run
    out = run(
        "BPR",
        "toy",
        config_dict=toy_config(toy_root, au_mode="dd", au_max_steps=20),
        checkpoint=report["checkpoint"]["original"],
        unlearn="attrcloak",
        output_dir=str(tmp_path / "dd"),
    )
    assert out["unlearning"]["mode"] == "dd" and out["unlearning"]["steps"] > 0
    before = torch.load(report["checkpoint"]["original"], weights_only=False)["state_dict"]
    after = torch.load(out["checkpoint"]["weights"], weights_only=True)["state_dict"]
    assert torch.equal(before["item_embedding.weight"], after["item_embedding.weight"])
    assert not torch.equal(before["user_embedding.weight"], after["user_embedding.weight"])
    # the items each user is recommended: most of the original top 10 stay (ranking retention)
    top = {
        name: (state["user_embedding.weight"][1:] @ state["item_embedding.weight"][1:].T)
        .topk(10, dim=1)
        .indices
        for name, state in (("before", before), ("after", after))
    }
    kept = (top["before"][:, :, None] == top["after"][:, None, :]).any(2).float().mean()
    assert kept > 0.7, float(kept)
    assert out["unlearning"]["final_l_au"] < out["unlearning"]["initial_l_au"]


# --- bad input: a clear error, nothing overwritten -----------------------------------------


def test_existing_report_is_not_overwritten(original_run, toy_root):
    report, out = original_run
    before = (out / "report.json").read_bytes()
    with pytest.raises(FileExistsError, match="already holds report.json"):
        run("BPR", "toy", config_dict=toy_config(toy_root), output_dir=str(out))
    assert (out / "report.json").read_bytes() == before


def test_checkpoint_of_another_dataset(original_run, toy_root, tmp_path):
    report, _ = original_run
    with pytest.raises(compat.CheckpointError, match="trained on dataset 'toy', not 'ml-100k'"):
        run(
            "BPR",
            "ml-100k",
            checkpoint=report["checkpoint"]["original"],
            output_dir=str(tmp_path / "x"),
        )


def test_checkpoint_that_does_not_fit_the_data(original_run, tmp_path):
    report, _ = original_run
    other = write_toy_dataset(tmp_path / "other", seed=1)
    (other / "toy" / "toy.inter").write_text(
        "user_id:token\titem_id:token\n" + "".join(f"u{u}\ti{u % 7}\n" for u in range(40))
    )
    with pytest.raises(compat.CheckpointError, match="does not fit dataset 'toy'"):
        run(
            "BPR",
            "toy",
            config_dict={"data_path": str(other)},
            checkpoint=report["checkpoint"]["original"],
            output_dir=str(tmp_path / "y"),
        )


def test_missing_user_file(tmp_path):
    root = write_toy_dataset(tmp_path, user_file=False)
    with pytest.raises(DataError, match="has no .user file"):
        run("BPR", "toy", config_dict=toy_config(root, epochs=1), output_dir=str(tmp_path / "o"))


def test_unknown_attribute(toy_root, tmp_path):
    with pytest.raises(ValueError, match="shoe_size"):
        run(
            "BPR",
            "toy",
            config_dict=toy_config(toy_root, epochs=1),
            attributes=["shoe_size"],
            output_dir=str(tmp_path / "o"),
        )


def test_single_class_attribute(toy_root, tmp_path):
    with pytest.raises(ValueError, match="country"):
        run(
            "BPR",
            "toy",
            config_dict=toy_config(toy_root, epochs=1),
            attributes=["country"],
            output_dir=str(tmp_path / "o"),
        )


def test_duplicate_user_ids_stop_before_training(tmp_path):
    root = write_toy_dataset(tmp_path / "data", name="twice")
    user_file = root / "twice" / "twice.user"
    user_file.write_text(user_file.read_text() + "u3\t30\tF\ta\tonly\n")  # u3 again
    out = tmp_path / "o"
    with pytest.raises(DataError, match="duplicate user ids, e.g. 'u3'"):
        run("BPR", "twice", config_dict=toy_config(root, epochs=1), output_dir=str(out))
    assert not list(out.glob("*.pth"))  # nothing trained


def test_unknown_method_and_model(toy_root, tmp_path):
    with pytest.raises(ValueError, match="unknown --unlearn method"):
        run("BPR", "toy", unlearn="magic", output_dir=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="unknown model 'Nope'"):
        run("Nope", "toy", config_dict=toy_config(toy_root), output_dir=str(tmp_path / "p"))


def test_cli_reuses_the_original_audit_of_the_same_checkpoint(original_run, toy_root, tmp_path):
    import shutil

    import yaml

    from recbole_attrcloak.cli import main

    report, out = original_run
    checkpoint = report["checkpoint"]["original"]
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(toy_config(toy_root)))
    common = ["-m", "BPR", "-d", "toy", "--config_files", str(config)]
    reuse = ["--original_report", str(out / "report.json")]

    code = main([*common, "--checkpoint", checkpoint, *reuse, "--output_dir", str(tmp_path / "a")])
    again = json.loads((tmp_path / "a" / "report.json").read_text())
    assert code == 0 and "audit_original" not in again["seconds"]
    assert (
        again["stages"]["original"]
        == json.loads((out / "report.json").read_text())["stages"]["original"]
    )

    other = str(shutil.copy(checkpoint, tmp_path / "other.pth"))  # same weights, another file
    code = main([*common, "--checkpoint", other, *reuse, "--output_dir", str(tmp_path / "b")])
    assert code == 2 and not (tmp_path / "b" / "report.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a GPU checkpoint on a CPU machine")
def test_a_gpu_trained_checkpoint_runs_on_this_cpu(original_run, tmp_path):
    report, _ = original_run
    ckpt = compat.load_checkpoint(report["checkpoint"]["original"])
    ckpt["config"]["use_gpu"], ckpt["config"]["device"] = True, torch.device("cuda")
    gpu_file = tmp_path / "gpu.pth"
    torch.save(ckpt, gpu_file)
    audited = run(
        "BPR",
        "toy",
        checkpoint=str(gpu_file),
        config_dict={"audit": "quick"},
        output_dir=str(tmp_path / "out"),
    )
    assert audited["device"] == "cpu"
    original = report["stages"]["original"]["utility"]["ndcg@10"]
    assert audited["stages"]["original"]["utility"]["ndcg@10"] == pytest.approx(original)
