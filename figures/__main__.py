"""``python -m figures <subcommand> DIR``: a small dispatcher over the figure modules.

Each subcommand maps to a module exposing ``main(argv) -> int``; add one by adding a line to
``SUBCOMMANDS`` (e.g. ``"name": "figures.name"``).
"""
from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, str] = {
    "relu": "figures.relu",
    "code": "figures.code",
    "related": "figures.related",
    "fonts": "figures.fonts",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown subcommand '{argv[0]}'", file=sys.stderr)
        print(f"usage: python -m figures {{{','.join(SUBCOMMANDS)}}} DIR [options]", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
