"""The benchmark datasets: their audited attributes and, where the atomic files must be made
first, the release that ``recbole-attrcloak-convert`` converts (``../shared/data`` by default;
the data itself is never committed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recbole_attrcloak.data import convert

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DatasetSpec:
    """The audited attributes of a dataset and, where its atomic files must be made first, the
    name of its release for ``recbole-attrcloak-convert`` and a default source folder."""

    attributes: tuple[str, ...]
    converter: str | None = None
    source: Path | None = None


_SHARED = REPO.parent / "shared" / "data"
DATASETS = {
    "ml-100k": DatasetSpec(("gender", "age", "occupation")),
    "ml-1m": DatasetSpec(("gender", "age", "occupation"), "ml-1m", _SHARED / "ml-1m"),
    "lastfm-1k": DatasetSpec(("gender", "age", "continent"), "lastfm-1k", _SHARED / "lastfm-1k"),
    "modcloth-mb": DatasetSpec(("body_shape",), "modcloth"),
}


class DataUnavailable(RuntimeError):
    """A dataset's atomic files are missing and cannot be made here."""


def prepare_data(name: str, data_root: Path, source: Path | None = None) -> dict[str, str]:
    """The ``data_path`` setting for ``name``, converting its original release into
    ``data_root`` first when the atomic files are missing (ml-100k ships with RecBole)."""
    if name == "ml-100k":
        return {}
    data_root = data_root.resolve()
    spec = DATASETS.get(name)
    source = source or (spec.source if spec else None)
    if not (data_root / name / f"{name}.inter").is_file():
        if spec is None or spec.converter is None or source is None or not source.exists():
            raise DataUnavailable(
                f"no {data_root / name / name}.inter and no original release to convert "
                f"(pass --source {name}=PATH)"
            )
        argv = [spec.converter, str(source.resolve()), str(data_root), "--name", name]
        if convert.main(argv) != 0:
            raise DataUnavailable(f"converting {source} failed (see the line above)")
    return {"data_path": str(data_root)}
