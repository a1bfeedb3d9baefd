"""RecBole 1.2.1 on today's torch: the one place for compatibility shims.

RecBole checkpoints pickle a ``recbole.config.Config`` next to the weights. Since torch 2.6,
``torch.load`` defaults to ``weights_only=True`` and refuses such files, so stock
``recbole.quick_start.load_data_and_model`` and ``Trainer.evaluate(load_best_model=True)`` fail.

Security note: unpickling a checkpoint can run arbitrary code. Only load checkpoints that come
from a trusted source (your own training runs). Everything here applies only while it is asked
for; importing this module patches nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

_FORCE_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


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
