"""Console entry point: convert an original dataset release to RecBole atomic files.

Usage: ``python -m recbole_attrcloak.data.convert {ml-1m,lastfm-1k,modcloth} SRC OUT_DIR``
(also installed as ``recbole-attrcloak-convert``). Writes ``OUT_DIR/NAME/NAME.{inter,user,item}``;
run RecBole on it with ``--dataset NAME --data_path=OUT_DIR``. Exit code 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from recbole_attrcloak.data.converters import (
    ConversionError,
    convert_lastfm1k,
    convert_ml1m,
    convert_modcloth,
)

PROG = "recbole-attrcloak-convert"
DEFAULT_NAMES = {"ml-1m": "ml-1m", "lastfm-1k": "lastfm-1k", "modcloth": "modcloth-mb"}
_SUMMARY_CORE = {"dataset", "interactions", "users", "items", "seconds", "path"}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the converter CLI."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Convert an original dataset release to RecBole atomic files."
    )
    parser.add_argument("dataset", choices=sorted(DEFAULT_NAMES), help="source release")
    parser.add_argument("src", help="source directory (ModCloth: df_modcloth.csv or its directory)")
    parser.add_argument("out_dir", help="output parent directory (RecBole's data_path)")
    parser.add_argument("--name", help="dataset name (default: ml-1m, lastfm-1k or modcloth-mb)")
    parser.add_argument(
        "--ratings",
        help="ml-1m only: ratings file (default: ratings.dat, ratings.dat.gz or "
        "ratings_uir.dat.gz in SRC)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the converter; return 0 on success, 2 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ratings is not None and args.dataset != "ml-1m":
        parser.error("--ratings applies to ml-1m only")
    name = args.name or DEFAULT_NAMES[args.dataset]
    try:
        if args.dataset == "ml-1m":
            summary = convert_ml1m(args.src, args.out_dir, name, args.ratings, args.force)
        elif args.dataset == "lastfm-1k":
            summary = convert_lastfm1k(args.src, args.out_dir, name, args.force)
        else:
            summary = convert_modcloth(args.src, args.out_dir, name, args.force)
    except (ConversionError, OSError) as exc:
        message = " ".join(str(exc).splitlines())
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    print(
        f"{summary['dataset']}: {summary['interactions']} interactions, {summary['users']} users, "
        f"{summary['items']} items in {summary['seconds']:.1f} s -> {summary['path']}"
    )
    extras = {k: v for k, v in summary.items() if k not in _SUMMARY_CORE}
    if extras:
        print("  " + ", ".join(f"{k}={v}" for k, v in extras.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
