"""SPoC reader: TSV rows to programs, full-program source/target formatting, test-case files.

TSV columns (SPoC v1.1): ``text code workerid probid subid line indent``; a program starts at a
row whose ``line`` is 0. Formatting follows the reference code's full-program translation (docs/code-pipeline.md §6):

* source: for each line with non-empty pseudocode, ``TAB<indent>`` then the pseudocode tokens
  then ``;``; lines joined with `` $ ``. Lines without pseudocode (``int main() {``, ``}``) are
  skipped, as in the reference.
* target: every code line lexed (comments dropped), prefixed with ``~`` once per indent level;
  lines joined with `` $ ``. :func:`simulations.code.data.tgt_to_code` inverts it.

The same code reads the full SPoC release: pass its TSV and its ``testcases`` folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .examples import DataFormatError, Example, TestCase
from .tokenizer import lex_cpp, pseudo_tokenize

__all__ = ["SpocLine", "SpocProgram", "read_spoc_tsv", "parse_testcases", "format_src",
           "format_tgt", "load_spoc_examples", "testcase_file"]

COLUMNS = ["text", "code", "workerid", "probid", "subid", "line", "indent"]


@dataclass(frozen=True)
class SpocLine:
    text: str
    code: str
    indent: int


@dataclass(frozen=True)
class SpocProgram:
    probid: str
    subid: str
    workerid: str
    lines: tuple[SpocLine, ...]

    @property
    def id(self) -> str:
        return f"{self.probid}-{self.subid}-{self.workerid}"

    def code(self) -> str:
        """The program's code lines, indented with tabs (no header)."""
        return "".join("\t" * ln.indent + ln.code + "\n" for ln in self.lines)


def read_spoc_tsv(path: str | os.PathLike) -> list[SpocProgram]:
    """Parse a SPoC TSV; malformed rows raise :class:`DataFormatError` naming file and line."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None
    progs: list[SpocProgram] = []
    cur: list[SpocLine] = []
    key: tuple[str, str, str] | None = None
    expected_line = 0
    with fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        if header != COLUMNS:
            raise DataFormatError(f"{path}:1: expected header {COLUMNS}, got {header}")
        for lineno, raw in enumerate(fh, start=2):
            raw = raw.rstrip("\r\n")
            if not raw:
                continue
            f = raw.split("\t")
            if len(f) != len(COLUMNS):
                raise DataFormatError(f"{path}:{lineno}: expected {len(COLUMNS)} tab-separated fields, got {len(f)}")
            text, code, worker, probid, subid, line_s, indent_s = f
            try:
                line, indent = int(line_s), int(indent_s)
            except ValueError:
                raise DataFormatError(f"{path}:{lineno}: 'line' and 'indent' must be integers, "
                                      f"got {line_s!r}, {indent_s!r}") from None
            if indent < 0 or not probid:
                raise DataFormatError(f"{path}:{lineno}: bad indent {indent} or empty probid")
            if line == 0:
                if key is not None:
                    progs.append(SpocProgram(*key, tuple(cur)))
                key, cur, expected_line = (probid, subid, worker), [], 0
            elif key is None or (probid, subid, worker) != key:
                raise DataFormatError(f"{path}:{lineno}: program {probid}-{subid} does not start at line 0")
            if line != expected_line:
                raise DataFormatError(f"{path}:{lineno}: line number {line}, expected {expected_line}")
            expected_line += 1
            cur.append(SpocLine(text, code, indent))
    if key is not None:
        progs.append(SpocProgram(*key, tuple(cur)))
    return progs


def format_src(prog: SpocProgram) -> str:
    parts = [" ".join([f"TAB{ln.indent}"] + pseudo_tokenize(ln.text) + [";"])
             for ln in prog.lines if ln.text.strip()]
    return " $ ".join(parts)


def format_tgt(prog: SpocProgram) -> str:
    parts = []
    for ln in prog.lines:
        toks = [t for t in lex_cpp(ln.code) if not t.startswith(("//", "/*"))]
        parts.append(" ".join(["~"] * ln.indent + toks))
    return " $ ".join(parts)


def parse_testcases(path: str | os.PathLike) -> tuple[TestCase, ...]:
    """Parse ``input lines / ###ENDINPUT### / output lines / ###ENDOUTPUT###`` blocks."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        raise DataFormatError(f"{path}: test-case file not found") from None
    cases: list[TestCase] = []
    buf: list[str] = []
    inp: str | None = None
    lines = text.splitlines(keepends=True)
    for lineno, line in enumerate(lines, 1):
        tag = line.rstrip("\r\n")
        if tag == "###ENDINPUT###":
            if inp is not None:
                raise DataFormatError(f"{path}:{lineno}: ###ENDINPUT### twice without ###ENDOUTPUT###")
            inp, buf = "".join(buf), []
        elif tag == "###ENDOUTPUT###":
            if inp is None:
                raise DataFormatError(f"{path}:{lineno}: ###ENDOUTPUT### without ###ENDINPUT###")
            cases.append(TestCase(inp, "".join(buf)))
            inp, buf = None, []
        else:
            buf.append(line if line.endswith("\n") else line + "\n")
    if inp is not None or any(s.strip() for s in buf):
        raise DataFormatError(f"{path}:{len(lines)}: file ends inside a test case")
    if not cases:
        raise DataFormatError(f"{path}: no test cases")
    return tuple(cases)


def testcase_file(testcases_dir: Path, probid: str, which: str = "all") -> Path:
    suffix = {"all": "testcases", "public": "testcases_public", "hidden": "testcases_hidden"}[which]
    return testcases_dir / probid / f"{probid}_{suffix}.txt"


def load_spoc_examples(tsv_path: str | os.PathLike, testcases_dir: str | os.PathLike | None = None,
                       which: str = "all") -> list[Example]:
    """Examples of a SPoC TSV, with each problem's test cases loaded once and shared.

    ``testcases_dir`` defaults to ``testcases/`` next to the TSV; when that folder does not exist
    the examples have no cases. ``which``: ``all`` (public + hidden, the metric), ``public``
    or ``hidden``.
    """
    tsv_path = Path(tsv_path)
    tc_dir = Path(testcases_dir) if testcases_dir is not None else tsv_path.parent / "testcases"
    if testcases_dir is not None and not tc_dir.is_dir():
        raise DataFormatError(f"{tc_dir}: test-case folder not found")
    cache: dict[str, tuple[TestCase, ...]] = {}
    out = []
    for prog in read_spoc_tsv(tsv_path):
        if prog.probid not in cache:
            cache[prog.probid] = (parse_testcases(testcase_file(tc_dir, prog.probid, which))
                                  if tc_dir.is_dir() else ())
        out.append(Example(prog.id, format_src(prog), format_tgt(prog), cache[prog.probid],
                           probid=prog.probid, code=prog.code()))
    return out
