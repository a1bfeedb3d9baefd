"""Writing output files atomically: the one writer of reports, checkpoints, embeddings, converted
datasets and sweep tables."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` (not yet created) and move what the block
    wrote there over ``path`` only if the block succeeds; the temporary file never survives.

    The file gets the mode of any new file (0666 minus the umask, e.g. 0644): it is created by
    the block's own ``open``, not by ``mkstemp`` (whose 0600 would hide outputs from others).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
