"""Writing output files atomically: the one writer of reports, checkpoints, embeddings, converted
datasets and sweep tables."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` (not yet created) and move what the block
    wrote there over ``path`` only if the block succeeds; the temporary file never survives.
    With ``replace=False`` an existing ``path`` is never replaced (``FileExistsError``), even
    one created while the block ran.

    The file gets the mode of any new file (0666 minus the umask, e.g. 0644): it is created by
    the block's own ``open``, not by ``mkstemp`` (whose 0600 would hide outputs from others).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        if replace:
            os.replace(tmp, path)
        else:
            _move_new(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _move_new(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path``, which must not exist (a hard link fails if it does)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"refusing to overwrite {path}") from None
    except OSError:  # no hard links on this file system: check, then move
        if path.exists():
            raise FileExistsError(f"refusing to overwrite {path}") from None
        os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str, replace: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (never over an existing file unless
    ``replace``)."""
    with atomic_path(path, replace) as tmp:
        tmp.write_text(text, encoding="utf-8")
