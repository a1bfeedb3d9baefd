"""The numpy >= 2 / scipy >= 1.13 shims for RecBole 1.2.1, each in a fresh interpreter (the test
session applies them itself, see conftest.py): without the shim RecBole fails on the current
stack, with it RecBole builds the same objects as on the pinned stack, and our entry points
apply it. On the pinned stack the "fails without" half is skipped: there is nothing to fix."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy

from recbole_attrcloak import compat
from tests.conftest import toy_config

pytestmark = pytest.mark.current

ROOT = Path(__file__).resolve().parents[1]
NUMPY_2 = int(np.__version__.split(".")[0]) >= 2
SCIPY_1_13 = tuple(int(x) for x in scipy.__version__.split(".")[:2]) >= (1, 13)


def _python(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_our_modules_patches_nothing():
    state = _python(
        """
        import json, sys, numpy, scipy.sparse
        before = (hasattr(numpy, "float_"), hasattr(scipy.sparse.dok_matrix, "_update"))
        import recbole_attrcloak.audit.__main__
        audit_cli_loads_recbole = "recbole" in sys.modules
        import recbole_attrcloak.compat, recbole_attrcloak.cli, recbole_attrcloak.quick_start
        after = (hasattr(numpy, "float_"), hasattr(scipy.sparse.dok_matrix, "_update"))
        state = {"before": before, "after": after, "audit": audit_cli_loads_recbole}
        print(json.dumps(state))
        """
    )
    assert state["before"] == state["after"]
    # the offline audit CLI never imports RecBole, so it needs no shim
    assert state["audit"] is False


def test_numpy_aliases_let_recbole_build_a_config():
    state = _python(
        """
        import json
        from recbole.config import Config
        from recbole_attrcloak import compat

        def build():
            try:
                Config(model="BPR", dataset="toy", config_dict={"show_progress": False})
            except AttributeError as exc:
                return str(exc)
            return "ok"

        before = build()
        added = compat.numpy_aliases()
        print(json.dumps({"before": before, "added": added, "after": build()}))
        """
    )
    assert state["after"] == "ok"
    if NUMPY_2:
        assert "float_" in state["before"]
        assert state["added"] == ["numpy.float_", "numpy.complex_", "numpy.unicode_"]
    else:
        assert state["before"] == "ok" and state["added"] == []


def test_aliases_are_numpy_1_types():
    compat.numpy_aliases()
    assert np.float_ is np.float64 and np.complex_ is np.complex128 and np.unicode_ is np.str_


@pytest.mark.parametrize("model", ["LightGCN", "NGCF"])
def test_dok_update_builds_the_graph_models_adjacency(toy_root, model):
    """The normalised adjacency RecBole builds with ``dok_matrix._update`` equals one built
    here from the interaction matrix without dok matrices."""
    state = _python(
        f"""
        import json, sys
        import numpy as np
        import scipy.sparse as sp
        from recbole.config import Config
        from recbole.data import create_dataset
        from recbole.model.general_recommender import {model} as Model
        from recbole_attrcloak import compat

        compat.numpy_aliases()
        overrides = {{"data_path": sys.argv[1], "embedding_size": 8, "show_progress": False}}
        config = Config(model="{model}", dataset="toy", config_dict=overrides)
        dataset = create_dataset(config)
        try:
            Model(config, dataset)
            before = "ok"
        except AttributeError as exc:
            before = str(exc)
        added = compat.scipy_dok_update()
        model = Model(config, dataset)
        built = model.norm_adj_matrix.to_dense().numpy()
        R = (dataset.inter_matrix(form="csr") > 0).astype(np.float32)
        A = sp.bmat([[None, R], [R.T, None]], format="csr")
        degree = np.asarray(A.sum(axis=1)).ravel() + 1e-7
        D = sp.diags(degree**-0.5)
        expected = (D @ A @ D).toarray()
        state = {{"before": before, "added": added, "nnz": int(A.nnz)}}
        state["max_diff"] = float(np.abs(built - expected).max())
        state["norm"] = float(np.abs(expected).sum())
        print(json.dumps(state))
        """,
        str(toy_root),
    )
    assert state["nnz"] > 0 and state["norm"] > 0
    assert state["max_diff"] < 1e-6
    if SCIPY_1_13:
        assert "_update" in state["before"]
        assert state["added"] == ["scipy.sparse.dok_matrix._update"]
    else:
        assert state["before"] == "ok" and state["added"] == []


@pytest.mark.skipif(not (NUMPY_2 or SCIPY_1_13), reason="the pinned stack needs no shim")
@pytest.mark.parametrize("model, unlearn", [("LightGCN", "attrcloak"), ("NGCF", "none")])
def test_graph_models_train_through_the_cli(toy_root, tmp_path, model, unlearn):
    """LightGCN and NGCF need both shims on the current stack: the CLI trains them, audits them
    and (LightGCN) unlearns with AttrCloak-DF, in a fresh interpreter."""
    out = tmp_path / "out"
    flags = [f"--{key}={value}" for key, value in toy_config(toy_root, epochs=4).items()]
    flags = [f for f in flags if not f.startswith(("--sensitive_attributes", "--audit"))]
    done = subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_au.py"), "-m", model, "-d", "toy", *flags]
        + ["--attributes", "gender", "--audit", "quick", "--unlearn", unlearn]
        + ["--au_mode", "df", "--output_dir", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == model and report["method"] == unlearn
    gap = {}
    for stage, results in report["stages"].items():
        assert results["utility"]["ndcg@10"] > 0
        gender = results["privacy"]["gender"]
        gap[stage] = max(gender[a]["balanced_accuracy"]["mean"] for a in ("mlp", "xgboost")) - 0.5
    assert gap["original"] > 0.2  # the planted signal
    if unlearn == "attrcloak":
        assert gap["unlearned"] < gap["original"] / 2


def test_pandas_3_is_reported(monkeypatch):
    import warnings

    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.apply_recbole_shims()  # the installed pandas (< 3) passes silently
    monkeypatch.setattr(pd, "__version__", "3.0.0")
    with pytest.warns(RuntimeWarning, match="pandas<3"):
        compat.apply_recbole_shims()
