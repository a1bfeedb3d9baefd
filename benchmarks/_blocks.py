"""The generated parts of the documentation: blocks between ``<!-- BEGIN name -->`` and
``<!-- END name -->`` in README.md, benchmarks/README.md and docs/*.md, and the summaries of
the results folders, each rendered from committed CSVs by a function registered here.

``write_blocks()`` rewrites them (the benchmark scripts call it after writing their CSVs);
``benchmarks/check.py`` renders them again and compares.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BLOCK = re.compile(r"<!-- BEGIN (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- END (?P=name) -->", re.S)


@dataclass(frozen=True)
class Source:
    """A block's renderer: ``render(results folder, link to it from the document)``."""

    results: str  # under benchmarks/results
    render: Callable[[Path, str], str]


def _registry() -> dict[str, Source]:
    import _ablation_md
    import _es_md
    import _mutation_md
    import _null
    import _paper_md
    import _studies_md
    import _terms

    return {
        "paper_tables": Source("paper_tables", _paper_md.readme_block),
        "paper_tables_current": Source("baselines", _paper_md.readme_block),
        "originals": Source("paper_tables", _paper_md.originals_block),
        "attrcloak": Source("paper_tables", _paper_md.attrcloak_block),
        "attrcloak_default": Source("default_final", _paper_md.attrcloak_block),
        "attrcloak_moments": Source("default_moments", _paper_md.attrcloak_block),
        "attrcloak_fast": Source("default_fast", _paper_md.attrcloak_block),
        "attrcloak_contrast": Source("default_contrast", _paper_md.attrcloak_block),
        "attrcloak_diag": Source("default_diag", _paper_md.attrcloak_block),
        "attrcloak_ml1m": Source("default_ml1m", _paper_md.attrcloak_block),
        "attrcloak_ml1m_current": Source("default_ml1m_diag", _paper_md.attrcloak_block),
        "terms_diag": Source("default_diag", _terms.terms_block),
        "terms_contrast": Source("default_contrast", _terms.terms_block),
        "terms_default": Source("default_moments", _terms.terms_block),
        "null_contrast": Source("default_contrast", _null.null_block),
        "null_default": Source("default_moments", _null.null_block),
        "null_final": Source("default_final", _null.null_block),
        "null_fast": Source("default_fast", _null.null_block),
        "null_diag": Source("default_diag", _null.null_block),
        "attrcloak_ml1m_lightgcn": Source("default_ml1m_lightgcn", _paper_md.attrcloak_block),
        "attrcloak_ml1m_draws": Source("default_ml1m_draws", _paper_md.attrcloak_block),
        "attrcloak_ml1m_fast": Source("default_ml1m_fast", _paper_md.attrcloak_block),
        "attrcloak_ml1m_moments": Source("default_ml1m_moments", _paper_md.attrcloak_block),
        "attrcloak_ml1m_neumf": Source("default_ml1m_neumf", _paper_md.attrcloak_block),
        "baselines": Source("baselines", _paper_md.baselines_block),
        "embedding_size": Source("embedding_size", _es_md.readme_block),
        "ablation": Source("ablation", _ablation_md.readme_block),
        "scale": Source("scale", _studies_md.scale_block),
        "scale_memory": Source("scale/memory", _studies_md.memory_block),
        "distributions": Source("distributions", _studies_md.distributions_block),
        "draw_noise": Source("draw_noise", _studies_md.draw_noise_block),
        "speed": Source("speed", _studies_md.speed_block),
        "dd_pairs": Source("dd_pairs", _studies_md.dd_pairs_block),
        "item_refit": Source("item_refit", _studies_md.item_refit_block),
        "attribute_cost": Source("attribute_cost", _studies_md.attribute_cost_block),
        "attribute_cost_neumf": Source("attribute_cost/neumf", _studies_md.attribute_cost_block),
        "second_moments": Source("second_moments", _studies_md.second_moments_block),
        "mutation": Source("mutation", _mutation_md.mutation_block),
        "mutation_focus": Source("mutation/focus", _mutation_md.focus_block),
    }


def _summaries() -> dict[str, Callable[[Path], str]]:
    """Result files rendered from the CSVs beside them, by path under benchmarks/results."""
    import _es_md
    import _paper_md

    return {
        "paper_tables/summary.md": _paper_md.summary_markdown,
        "baselines/summary.md": _paper_md.summary_markdown,
        "embedding_size/summary.md": _es_md.summary_markdown,
    }


def documents(root: Path = REPO) -> list[Path]:
    """The documents whose numbers must come from results: README.md, benchmarks/README.md,
    docs/*.md."""
    return [root / "README.md", root / "benchmarks" / "README.md", *sorted(root.glob("docs/*.md"))]


def render_block(name: str, document: Path, root: Path = REPO) -> str:
    """Block ``name`` as ``document`` (under ``root``) should hold it; KeyError if unknown."""
    source = _registry()[name]
    results = root / "benchmarks" / "results" / source.results
    link = os.path.relpath(results, document.parent)
    return source.render(results, link).rstrip() + "\n"


def render_summaries(root: Path = REPO) -> dict[Path, str]:
    """Every summary rendered from its folder's CSVs (folders without CSVs are left out)."""
    out = {}
    for relative, render in _summaries().items():
        path = root / "benchmarks" / "results" / relative
        if any(path.parent.glob("*.csv")):
            out[path] = render(path.parent)
    return out


def rendered(text: str, document: Path, root: Path = REPO) -> str:
    """``text`` with every block replaced by its rendering."""

    def replace(match: re.Match) -> str:
        name = match["name"]
        return f"<!-- BEGIN {name} -->\n{render_block(name, document, root)}<!-- END {name} -->"

    return BLOCK.sub(replace, text)


def write_blocks(root: Path = REPO) -> None:
    """Rewrite every generated block of the documents and every summary from the CSVs."""
    for path, text in render_summaries(root).items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}", flush=True)
    for document in documents(root):
        text = document.read_text(encoding="utf-8")
        new = rendered(text, document, root)
        if new != text:
            document.write_text(new, encoding="utf-8")
            print(f"wrote {document}", flush=True)
