"""Check that every number README.md, benchmarks/README.md and docs/*.md quote from the
benchmarks comes from a committed results file (cheap: no training, no Ray job).

    python benchmarks/check.py            # check; exit 1 with a diff or a list when it fails
    python benchmarks/check.py --write    # rewrite the generated blocks and summaries

Three checks:
1. Each generated block (``<!-- BEGIN name -->`` … ``<!-- END name -->``) equals its rendering
   from the committed CSVs (``_blocks.py`` names each block's renderer); an unknown block name
   fails.
2. Each results summary rendered from CSVs (paper_tables, embedding_size) equals the
   committed summary.md.
3. Outside the blocks, every number that looks measured (a decimal such as 0.602, a
   percentage, a value with a unit of time, memory or a ratio) must be listed for its file in
   ``benchmarks/quoted.yaml``: under ``stated`` (a setting, threshold, constant or version:
   not a result) or ``unsourced`` (a measurement without a results file behind it, kept until
   the maintainers generate or remove it). The lists count occurrences, so editing a quoted
   number by hand — in a block or outside one — fails.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _blocks import (  # noqa: E402
    BLOCK,
    REPO,
    documents,
    render_summaries,
    rendered,
    write_blocks,
)

QUOTED = Path(__file__).resolve().parent / "quoted.yaml"
_CODE = re.compile(r"```.*?```|`[^`\n]*`|<!--.*?-->|\]\([^)]*\)", re.S)
_UNIT = r"(?:\s?(?:%|×|x\b|s\b|ms\b|min\b|h\b|GiB\b|GB\b|MB\b|KB\b|CPU-s\b|s/step\b|s/epoch\b))"
NUMBER = re.compile(
    rf"(?<![\w.\-])[−±+]?(?:\d+\.\d+(?![.\d]){_UNIT}?|\d+{_UNIT})",
)


def quoted_numbers(text: str) -> Counter:
    """The measured-looking numbers of a document outside its generated blocks, code, HTML
    comments and link targets (normalised: one space before a unit)."""
    text = BLOCK.sub("", text)
    text = _CODE.sub(" ", text)
    found = Counter()
    for match in NUMBER.finditer(text):
        token = re.sub(r"\s+", " ", match.group(0)).replace("−", "-")
        found[token] += 1
    return found


def listed(root: Path) -> dict[str, Counter]:
    """quoted.yaml's numbers per document (``stated`` and ``unsourced`` together)."""
    path = root / "benchmarks" / "quoted.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    out = {}
    for document, kinds in (data or {}).items():
        counts = Counter()
        for kind in ("stated", "unsourced"):
            for token, count in ((kinds or {}).get(kind) or {}).items():
                counts[str(token)] += int(count)
        out[document] = counts
    return out


def problems(root: Path = REPO) -> list[str]:
    """Everything that fails the three checks, one message each (with a diff for blocks)."""
    found = []
    for path, text in render_summaries(root).items():
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            found.append(_diff(path, root, current, text, "differs from its CSVs"))
    allowed = listed(root)
    for document in documents(root):
        name = document.relative_to(root).as_posix()
        text = document.read_text(encoding="utf-8")
        try:
            expected = rendered(text, document, root)
        except KeyError as exc:
            found.append(f"{name}: block {exc} has no renderer in benchmarks/_blocks.py")
            continue
        if expected != text:
            found.append(
                _diff(
                    document,
                    root,
                    text,
                    expected,
                    "has a generated block that differs from its CSVs",
                )
            )
        numbers, permitted = quoted_numbers(text), allowed.get(name, Counter())
        for token, count in sorted((numbers - permitted).items()):
            found.append(
                f"{name}: {token!r} ({count}×) is quoted outside any generated block and not "
                "listed in benchmarks/quoted.yaml: generate it from a results file or remove it"
            )
        for token, count in sorted((permitted - numbers).items()):
            found.append(
                f"{name}: {token!r} is listed {count}× more in benchmarks/quoted.yaml than "
                "quoted: a quoted number changed by hand, or the list is stale"
            )
    return found


def _diff(path: Path, root: Path, current: str, expected: str, what: str) -> str:
    name = path.relative_to(root).as_posix()
    lines = difflib.unified_diff(
        current.splitlines(),
        expected.splitlines(),
        f"{name} (committed)",
        f"{name} (rendered)",
        lineterm="",
        n=1,
    )
    return f"{name} {what}:\n" + "\n".join(list(lines)[:40])


def main(argv: Sequence[str] | None = None) -> int:
    """Check (exit 1 listing every problem) or, with --write, rewrite the generated parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite blocks and summaries")
    parser.add_argument("--root", type=Path, default=REPO, help="the checkout (default: this)")
    args = parser.parse_args(argv)
    if args.write:
        write_blocks(args.root)
    found = problems(args.root)
    for message in found:
        print(message, file=sys.stderr)
    if found:
        print(f"check: {len(found)} problem(s)", file=sys.stderr)
        return 1
    print(
        "check: every generated block and summary matches its CSVs; every quoted number is "
        "generated or listed in benchmarks/quoted.yaml"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
