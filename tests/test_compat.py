"""Stock RecBole checkpoints round-trip under torch >= 2.6 through the compatibility layer."""

from __future__ import annotations

import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_attrcloak import compat
from recbole_attrcloak.config import build_config
from recbole_attrcloak.registry import get_model
from tests.conftest import toy_config

# also in `make test-current`: the torch >= 2.6 checkpoint shim
pytestmark = pytest.mark.current


@pytest.fixture(scope="module")
def stock_checkpoint(toy_root, tmp_path_factory):
    """A checkpoint written by RecBole's own Trainer (what ``run_recbole`` saves)."""
    out = tmp_path_factory.mktemp("ckpt")
    config = build_config("BPR", "toy", overrides=toy_config(toy_root, checkpoint_dir=str(out)))
    init_seed(config["seed"], True)
    dataset = create_dataset(config)
    train, valid, _ = data_preparation(config, dataset)
    model = get_model("BPR")(config, train._dataset).to(config["device"])
    trainer = Trainer(config, model)
    trainer.fit(train, valid, saved=True, show_progress=False)
    return trainer.saved_model_file


def test_stock_loader_needs_the_layer(stock_checkpoint):
    from recbole.quick_start import load_data_and_model

    with pytest.raises(Exception, match="weights_only"):
        torch.load(stock_checkpoint)
    with compat.trusted_checkpoints():
        config, model, *_ = load_data_and_model(stock_checkpoint)
    assert config["model"] == "BPR"
    state = torch.load(stock_checkpoint, weights_only=False)["state_dict"]
    assert torch.equal(model.user_embedding.weight.cpu(), state["user_embedding.weight"])


def test_trusted_checkpoints_restores_environment(monkeypatch):
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    with compat.trusted_checkpoints():
        pass
    import os

    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


def test_load_checkpoint_roundtrip(stock_checkpoint):
    ckpt = compat.load_checkpoint(stock_checkpoint)
    assert ckpt["config"]["dataset"] == "toy"
    assert "user_embedding.weight" in ckpt["state_dict"]


def test_corrupt_and_foreign_checkpoints(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00not a zip archive")
    with pytest.raises(compat.CheckpointError, match="cannot read checkpoint"):
        compat.load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(compat.CheckpointError, match="not a RecBole checkpoint"):
        compat.load_checkpoint(foreign)
    with pytest.raises(compat.CheckpointError, match="not found"):
        compat.load_checkpoint(tmp_path / "missing.pth")
