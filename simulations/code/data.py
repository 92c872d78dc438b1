"""Examples, the SANSTYPE file format, and detokenization of ``.tgt`` strings to C++.

An :class:`Example` is one (pseudocode, code) pair with its test cases. ``src`` and ``tgt`` are
pre-tokenized strings: tokens separated by spaces, statements (SANSTYPE) or lines (SPoC) by
`` $ ``; SPoC target lines carry ``~`` once per indent level (the reference data format; docs/code-pipeline.md §6).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .examples import DataFormatError, Example, TestCase
from .spoc import load_spoc_examples
from .tokenizer import lex_cpp

__all__ = ["TestCase", "Example", "DataFormatError", "HEADER", "tgt_to_code", "load_sanstype",
           "write_sanstype", "load_spoc", "load_dataset", "default_data_dir", "is_spoc_path"]

HEADER = "#include <bits/stdc++.h>\nusing namespace std;\n"
SEP = "$"
INDENT = "~"


def tgt_to_code(tgt: str) -> str:
    """Detokenize a ``.tgt``-format string (gold or model output) into compilable C++.

    `` $ `` starts a new line. ``~`` is an indentation marker when it starts a line or follows
    ``{ ; }`` or another marker (SANSTYPE swap blocks put ``~`` inside a statement); elsewhere it
    is C++'s bitwise not. String literals are lexed as units, so a ``$`` or ``~`` inside one is
    kept. The ``bits/stdc++.h`` header and ``using namespace std;`` are prepended when absent.
    Never raises: any string gives some source text (which may not compile).
    """
    lines: list[str] = []
    cur: list[str] = []
    depth = 0
    for tok in lex_cpp(tgt):
        if tok == SEP:
            lines.append("\t" * depth + " ".join(cur))
            cur, depth = [], 0
        elif tok == INDENT and (not cur or cur[-1] in ("{", ";", "}")):
            if cur:
                continue  # an in-statement marker: layout only
            depth += 1
        else:
            cur.append(tok)
    lines.append("\t" * depth + " ".join(cur))
    body = "\n".join(ln for ln in lines if ln.strip()) + "\n"
    head = ""
    if "bits/stdc++.h" not in body:
        head += "#include <bits/stdc++.h>\n"
    if "using namespace std" not in body:
        head += "using namespace std;\n"
    return head + body


# ---------------------------------------------------------------------------------------------
# SANSTYPE files: <prefix>.src / .tgt / .inp / .out, one program per line.

def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 ({e})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def load_sanstype(prefix: str | os.PathLike) -> list[Example]:
    """Read a SANSTYPE split given by its path prefix (e.g. ``../shared/data/sanstype/train``).

    ``.inp`` holds tab-separated stdin values, written one per line to stdin; ``.out`` the exact
    expected stdout. ``.inp`` / ``.out`` may be absent together (unlabeled programs: no cases).
    """
    prefix = Path(prefix)
    base = prefix.name
    src = _read_lines(prefix.with_name(base + ".src"))
    tgt = _read_lines(prefix.with_name(base + ".tgt"))
    if len(src) != len(tgt):
        raise DataFormatError(f"{prefix}.src has {len(src)} lines but {prefix}.tgt has {len(tgt)}")
    inp_p, out_p = prefix.with_name(base + ".inp"), prefix.with_name(base + ".out")
    if inp_p.exists() or out_p.exists():
        inp, out = _read_lines(inp_p), _read_lines(out_p)
        for p, rows in ((inp_p, inp), (out_p, out)):
            if len(rows) != len(src):
                raise DataFormatError(f"{p}: {len(rows)} lines, expected {len(src)} (as in {prefix}.src)")
        cases = [(TestCase(_inp_to_stdin(i), o),) for i, o in zip(inp, out)]
    else:
        cases = [()] * len(src)
    for n, t in enumerate(tgt, 1):
        if not t.strip():
            raise DataFormatError(f"{prefix}.tgt line {n}: empty program")
    return [Example(f"{base}-{i}", s, t, c) for i, (s, t, c) in enumerate(zip(src, tgt, cases))]


def _inp_to_stdin(line: str) -> str:
    vals = [v for v in line.split("\t") if v != ""]
    return "".join(v + "\n" for v in vals)


def write_sanstype(prefix: str | os.PathLike, examples: Sequence[Example]) -> None:
    """Write examples in the SANSTYPE format, each file atomically.

    ``.inp`` / ``.out`` are written only when every example has exactly one test case.
    """
    from composedft.io import atomic_write_text  # lazy: composedft.io imports torch
    prefix = Path(prefix)
    for e in examples:
        if "\n" in e.src or "\n" in e.tgt:
            raise ValueError(f"example {e.id}: src/tgt must be single lines")
    atomic_write_text(f"{prefix}.src", "".join(e.src + "\n" for e in examples))
    atomic_write_text(f"{prefix}.tgt", "".join(e.tgt + "\n" for e in examples))
    if examples and all(len(e.cases) == 1 for e in examples):
        inp = "".join("\t".join(e.cases[0].input.split("\n")).strip("\t") + "\n" for e in examples)
        for e in examples:
            if "\n" in e.cases[0].output:
                raise ValueError(f"example {e.id}: SANSTYPE outputs must be one line")
        atomic_write_text(f"{prefix}.inp", inp)
        atomic_write_text(f"{prefix}.out", "".join(e.cases[0].output + "\n" for e in examples))


# ---------------------------------------------------------------------------------------------

def load_spoc(tsv_path: str | os.PathLike, testcases_dir: str | os.PathLike | None = None,
              which: str = "all") -> list[Example]:
    """Read a SPoC TSV into examples (see :mod:`simulations.code.spoc`)."""
    return load_spoc_examples(tsv_path, testcases_dir, which=which)


def is_spoc_path(path: str | os.PathLike) -> bool:
    return str(path).endswith(".tsv")


def load_dataset(path: str | os.PathLike, testcases_dir: str | os.PathLike | None = None) -> list[Example]:
    """A SPoC ``.tsv`` file or a SANSTYPE split prefix."""
    return load_spoc(path, testcases_dir) if is_spoc_path(path) else load_sanstype(path)


def default_data_dir() -> Path | None:
    """``$COMPOSEDFT_DATA`` if set, else ``<repo>/../shared/data``; None when it does not exist."""
    env = os.environ.get("COMPOSEDFT_DATA")
    p = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    p = p.resolve()
    return p if p.is_dir() else None
