"""``python -m flower_dl.config``: print the reference tables; ``--write`` puts them in docs/configuration.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flower_dl.config.reference import SECTIONS, reference_markdown, update_docs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def main(argv: list[str] | None = None) -> int:
    """Print every table, or (``--write``) rewrite the page's tables, or (``--check``) say whether it is stale."""
    parser = argparse.ArgumentParser(prog="python -m flower_dl.config", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the tables of the page in place")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page's tables are not the schema's")
    parser.add_argument("--docs", type=Path, default=DOCS, help=f"the page (default: {DOCS})")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        print("\n".join(reference_markdown(section) for section in SECTIONS), end="")
        return 0
    text = args.docs.read_text()
    new = update_docs(text)
    if args.check:
        if new != text:
            print(f"{args.docs}: the tables differ from the schema; run python -m flower_dl.config --write")
            return 1
        return 0
    args.docs.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
