"""RecBole 1.2.1 on today's torch, numpy and scipy: the one place for compatibility shims.

- torch >= 2.6: RecBole checkpoints pickle a ``recbole.config.Config`` next to the weights, and
  ``torch.load`` defaults to ``weights_only=True`` and refuses such files, so stock
  ``recbole.quick_start.load_data_and_model`` and ``Trainer.evaluate(load_best_model=True)``
  fail (``trusted_checkpoints``, ``load_checkpoint``).
- numpy >= 2: RecBole's ``Config.compatibility_settings`` reads ``np.float_``, ``np.complex_``
  and ``np.unicode_``, which numpy 2 removed, so every ``Config`` raises ``AttributeError``
  (``numpy_aliases``).
- scipy >= 1.13: LightGCN, NGCF, NCL, GCMC, SpectralCF, KGIN and MCCLK build their adjacency
  matrix with ``dok_matrix._update``, which scipy 1.13 removed (``scipy_dok_update``).

``apply_recbole_shims`` applies the last two; the CLI, ``quick_start.run`` (hence every Ray Tune
trial) and ``config.build_config`` (our one place that builds a RecBole ``Config``, which the
benchmarks use too) call it before any ``Config`` exists. pandas 3 is not shimmed: RecBole
1.2.1's data loading relies on chained ``fillna(inplace=True)`` (a no-op under copy-on-write:
missing float values stay NaN) and on an element-wise ``Series.agg(len)`` (token_seq fields
fail); ``apply_recbole_shims`` warns when it finds pandas >= 3.

Security note: unpickling a checkpoint can run arbitrary code. Only load checkpoints that come
from a trusted source (your own training runs). Everything here applies only when it is asked
for; importing this module patches nothing.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
import torch

_FORCE_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


# numpy 2 removed these aliases; RecBole 1.2.1 reads them in Config.compatibility_settings
_NUMPY_ALIASES = {"float_": "float64", "complex_": "complex128", "unicode_": "str_"}


def numpy_aliases() -> list[str]:
    """Give numpy >= 2 back the aliases RecBole 1.2.1 reads; return the names added.

    ``Config.compatibility_settings`` runs ``np.float = np.float_`` (and ``complex_``,
    ``unicode_``) in every ``Config``; numpy 2 dropped those names. Nothing changes on numpy 1.
    """
    added = []
    for alias, target in _NUMPY_ALIASES.items():
        if not hasattr(np, alias):
            setattr(np, alias, getattr(np, target))
            added.append(f"numpy.{alias}")
    return added


def _dok_update(self: scipy.sparse.dok_matrix, data: Mapping[Any, Any]) -> None:
    """scipy < 1.13's ``dok_matrix._update``: a bulk, unchecked update of the stored entries."""
    self._dict.update(data)


def scipy_dok_update() -> list[str]:
    """Give scipy >= 1.13's ``dok_matrix`` back ``_update``; return what was added.

    RecBole's graph models fill their adjacency matrix with ``A._update(dict)``; scipy 1.13
    removed that private method but still keeps the entries in ``_dict``, which the shim updates
    as the old method did, without the public ``update``'s per-key checks in Python. Nothing
    changes where the method exists.
    """
    if hasattr(scipy.sparse.dok_matrix, "_update"):
        return []
    scipy.sparse.dok_matrix._update = _dok_update
    return ["scipy.sparse.dok_matrix._update"]


def apply_recbole_shims() -> list[str]:
    """Apply what RecBole 1.2.1 needs on numpy >= 2 and scipy >= 1.13; return what was added.

    Idempotent and a no-op on the pinned stack (numpy 1.26, scipy 1.12). Call it before the
    first RecBole ``Config`` is built; importing this module patches nothing. Warns on
    pandas >= 3, which RecBole 1.2.1 does not support (see the module docstring).
    """
    if int(pd.__version__.split(".")[0]) >= 3:
        warnings.warn(PANDAS_3_WARNING, RuntimeWarning, stacklevel=2)
    return numpy_aliases() + scipy_dok_update()


PANDAS_3_WARNING = (
    f"pandas {pd.__version__}: RecBole 1.2.1 leaves missing float values as NaN and fails on "
    "token_seq fields with pandas >= 3; install pandas<3 (constraints-current.txt: 2.3.3)"
)


class CheckpointError(ValueError):
    """A file that is not a usable RecBole checkpoint."""


@contextlib.contextmanager
def trusted_checkpoints() -> Iterator[None]:
    """Let RecBole's own ``torch.load`` calls unpickle full checkpoints inside this block.

    Uses torch's documented ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` switch, which only changes calls
    that do not pass ``weights_only`` explicitly, and restores the previous value on exit.
    """
    previous = os.environ.get(_FORCE_ENV)
    os.environ[_FORCE_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_FORCE_ENV, None)
        else:
            os.environ[_FORCE_ENV] = previous


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a trusted RecBole checkpoint on CPU and check that it looks like one.

    Raises ``CheckpointError`` with a one-line message for a missing, corrupt or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged archive
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}") from None
    from recbole.config import Config

    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("config"), Config):
        raise CheckpointError(
            f"{path} is not a RecBole checkpoint (expected a dict with a RecBole 'config')"
        )
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a RecBole checkpoint (no 'state_dict')")
    return checkpoint
