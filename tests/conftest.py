"""Shared fixtures: a tiny synthetic RecBole dataset whose interactions carry a planted gender
signal (each gender prefers its own half of the items), so a trained model's user embeddings
leak gender and an assertion on the attack can fail."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from recbole_attrcloak import compat

# Every Ray the tests start (local or `ray start --head`) binds to 127.0.0.1, not this machine's
# network address: Ray reads this once, when it is first imported, which is after this line.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Current Ray turns token authentication on for a local ray.init() and writes the token to
# ~/.ray/auth_token, which later `ray start --head` runs on this machine pick up; the tests' local
# Rays (loopback only) run without it. test_ray_cluster.py tests a cluster with a token.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

N_USERS, N_ITEMS, PER_USER = 160, 80, 24


def write_toy_dataset(root: Path, name: str = "toy", seed: int = 0, user_file: bool = True) -> Path:
    """Write ``root/name/name.inter`` (and ``.user``) and return ``root``."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    genders = np.where(np.arange(N_USERS) % 3 == 0, "F", "M")
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(N_USERS):
        own = np.arange(0, 48) if genders[u] == "M" else np.arange(32, 80)
        items = rng.choice(own, size=PER_USER, replace=False)
        lines += [f"u{u}\ti{i}\t{rng.integers(1, 6)}\t{1000 * u + k}" for k, i in enumerate(items)]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    if user_file:
        users = ["user_id:token\tage:token\tgender:token\toccupation:token\tcountry:token"]
        for u in range(N_USERS):
            age = "" if u % 17 == 0 else str(16 + (u * 7) % 50)
            users.append(f"u{u}\t{age}\t{genders[u]}\t{['a', 'b', 'c'][u % 3]}\tonly")
        (folder / f"{name}.user").write_text("\n".join(users) + "\n")
    return root


def toy_config(root: Path, **extra) -> dict:
    """Config overrides for fast runs on the toy dataset."""
    return {
        "data_path": str(root),
        "epochs": 8,
        "stopping_step": 3,
        "embedding_size": 16,
        "train_batch_size": 256,
        "eval_batch_size": 4096,
        "learning_rate": 0.01,
        "show_progress": False,
        "audit": "quick",
        "sensitive_attributes": ["gender", "age"],
        "seed": 7,
        **extra,
    }


def toy_context(root: Path, out: Path, model_name: str = "BPR", **extra):
    """A ``RunContext`` on the toy dataset with ``model_name`` trained (``toy_config`` plus
    ``extra``), as the pipeline builds it."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_attrcloak.backbone import fit_model
    from recbole_attrcloak.config import build_config
    from recbole_attrcloak.context import RunContext
    from recbole_attrcloak.data.attributes import load_attributes
    from recbole_attrcloak.registry import get_model

    config = build_config(model_name, "toy", overrides=toy_config(root, **extra))
    config["checkpoint_dir"] = str(out)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = get_model(model_name)(config, train._dataset).to(config["device"])
    fit_model(config, model, train, valid)
    labels = load_attributes(config, dataset)
    return RunContext(config, dataset, train, valid, test, model, labels, out)


@pytest.fixture(scope="session", autouse=True)
def recbole_shims() -> None:
    """Tests build RecBole Configs and models directly, not through an entry point, so they
    apply the numpy >= 2 / scipy >= 1.13 shims first, as the entry points do; test_shims.py checks
    in fresh interpreters that each shim is needed and that the entry points apply them."""
    compat.apply_recbole_shims()


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("data"))
