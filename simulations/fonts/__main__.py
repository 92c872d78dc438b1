"""``python -m simulations.fonts --preset {smoke,default,paper} --out DIR [--field=value ...]``.

Writes ``DIR/results.csv`` (method, split, mse, seed, f_norm, ...), ``DIR/samples.npz`` (for
``python -m figures fonts DIR``), ``DIR/config.json`` and ``DIR/manifest.json``; running it again
with the same ``--out`` resumes. Extra fonts: ``--font_dirs=/usr/share/fonts,~/fonts``.
"""
from __future__ import annotations

import sys

from composedft.config import ConfigError, parse_experiment_cli
from composedft.io import CheckpointError, DataFileError

from .config import PRESETS, FontsConfig

def main(argv: list[str] | None = None) -> int:
    parsed = parse_experiment_cli(FontsConfig, PRESETS, argv, prog="python -m simulations.fonts",
                                  default_preset="default", source="simulations/fonts/config.py")
    if isinstance(parsed, int):
        return parsed
    cfg, out = parsed
    from .pipeline import run  # imported here: --help stays fast
    try:
        run(cfg, out)
    except (ConfigError, CheckpointError, DataFileError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
