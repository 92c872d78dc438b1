"""``python -m simulations.fonts --preset {smoke,default,paper} --out DIR [--field=value ...]``.

Writes ``DIR/results.csv`` (method, split, mse, seed, f_norm, ...), ``DIR/samples.npz`` (for
``python -m figures fonts DIR``), ``DIR/config.json`` and ``DIR/manifest.json``; running it again
with the same ``--out`` resumes. Extra fonts: ``--font_dirs=/usr/share/fonts,~/fonts``.
"""
from __future__ import annotations

import argparse
import sys

from composedft.config import ConfigError, describe_fields, parse_config
from composedft.io import CheckpointError, DataFileError

from .config import PRESETS, FontsConfig

USAGE = "usage: python -m simulations.fonts [--preset {smoke,default,paper}] --out DIR [--field=value ...]"


def main(argv: list[str] | None = None) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--out", help="output folder")
    extra.add_argument("--help", "-h", action="store_true")
    try:
        cfg, ns = parse_config(FontsConfig, PRESETS, argv, prog="python -m simulations.fonts",
                               default_preset="default", extra=extra)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if ns.help:
        print(f"{USAGE}\npresets: {', '.join(PRESETS)}\nfields (values of this preset; "
              f"see simulations/fonts/config.py for their meaning):\n{describe_fields(cfg)}")
        return 0
    if not ns.out:
        print(f"{USAGE}\nerror: --out is required", file=sys.stderr)
        return 2
    from .pipeline import run  # imported here: --help stays fast
    try:
        run(cfg, ns.out)
    except (ConfigError, CheckpointError, DataFileError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
