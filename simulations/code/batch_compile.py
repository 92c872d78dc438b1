"""Compile many programs per g++ call; every verdict stays the one of compiling each alone.

The cost of compiling one SPoC program is almost all fixed (loading the precompiled header,
instantiating the same ``std`` templates, ``as``, ``ld``): a translation unit of 50 programs
costs about as much as one. Design and proof obligations: docs/sandbox.md §8; the source-level
checks are in :mod:`.batch_source`. In short:

* only programs that :func:`.batch_source.prepare` accepts are batched, each in its own
  namespace, with a dispatcher ``main`` that *jumps* to program ``argv[1]``;
* the batch is compiled by the same sandboxed g++ as a single program (``-save-temps`` keeps its
  assembly), and the assembly must show that no other program runs code before ``main`` and that
  the others' static data is small (:data:`MAX_FOREIGN_STATIC`); programs that break this (and
  would burden the others' runs) are taken out and compiled alone;
* a batch that does not compile loses the programs its messages name (or is split in halves when
  they name none); those are compiled alone, so a ``compile_error`` and its message always come
  from :meth:`.Compiler.compile` of the program alone, as before.

Cache: the batch binary is content-addressed (``batch/``); each member gets ``bin/<h>.batch``
(batch hash and index) beside the per-program entries, which stay valid and take precedence.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import batch_source as bs
from .compiler import COMPILE_LIMITS, Compiler, atomic_write

__all__ = ["BATCH_TAG", "MAX_BATCH", "MAX_FOREIGN_STATIC", "Built", "header_names", "noop_headers",
           "cached", "compile_batch", "plan_batches", "wanted_headers"]

BATCH_TAG = "batch-1"           # bump when the batch layout or its checks change
MAX_BATCH = 48                  # programs per translation unit
MAX_FOREIGN_STATIC = 16 << 20   # bytes of the other programs' static data a run may carry
# The batch's messages are only parsed for the programs they name; read more of them back.
_BATCH_LIMITS = dataclasses.replace(COMPILE_LIMITS, stderr_keep=1 << 20)
_INCLUDE = re.compile(r"^[ \t]*#[ \t]*include[ \t]*<([^>\n]*)>", re.M)


@dataclass(frozen=True)
class Built:
    """A program's binary: its own (``index`` None) or a batch binary run as ``prog index``."""
    path: Path
    index: int | None = None

    def argv(self) -> list[str]:
        return ["../prog"] if self.index is None else ["../prog", str(self.index)]


def _trusted_preprocess(compiler: Compiler, text: str) -> str:
    """``g++ -E -P`` of trusted text (standard header names only), outside the sandbox like the
    precompiled header (docs/sandbox.md §2)."""
    proc = subprocess.run([compiler.cxx, *compiler.flags, "-E", "-P", "-x", "c++", "-", "-o", "-"], input=text,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"preprocessing {text!r} failed: {proc.stderr[:500]}")
    return proc.stdout


def _dir(compiler: Compiler) -> Path:
    return compiler.cache_dir / "batch" / f"{compiler.key}-{BATCH_TAG}"


def header_names(compiler: Compiler) -> frozenset[str]:
    """Names ``bits/stdc++.h`` may declare at file scope or in ``std`` (cached per compiler)."""
    p = _dir(compiler) / "header-names.txt"
    if not p.exists():
        names = bs.header_scope_names(_trusted_preprocess(compiler, f"#include <{bs.STDCXX}>\n"))
        atomic_write(p, "\n".join(sorted(names)).encode())
    return frozenset(p.read_text().split())


def _stdcxx_includes(compiler: Compiler) -> set[str]:
    """The headers ``bits/stdc++.h`` itself includes (the only candidates for a no-op include)."""
    out = subprocess.run([compiler.cxx, *compiler.flags, "-x", "c++", "-E", "-H", "-", "-o", "/dev/null"],
                         input=f"#include <{bs.STDCXX}>\n", capture_output=True, text=True, timeout=120).stderr
    m = re.search(r"^\. (\S*bits/stdc\+\+\.h)$", out, re.M)
    return set(_INCLUDE.findall(Path(m.group(1)).read_text())) if m else set()


def noop_headers(compiler: Compiler, wanted: set[str]) -> frozenset[str]:
    """Those of ``wanted`` whose ``#include`` after ``bits/stdc++.h`` changes nothing (the
    preprocessed text is identical), cached per header; only headers ``bits/stdc++.h`` includes
    itself are tried (no untrusted path reaches the unsandboxed preprocessor)."""
    d = _dir(compiler) / "noop"
    out, todo = set(), set()
    for h in wanted:
        p = d / h.replace("/", "%")
        if p.exists():
            if p.read_text() == "1":
                out.add(h)
        else:
            todo.add(h)
    if todo:
        candidates = _stdcxx_includes(compiler) - {"cassert", "assert.h"}   # re-includable by design
        base = _trusted_preprocess(compiler, f"#include <{bs.STDCXX}>\n")
        for h in todo:
            same = h in candidates and \
                _trusted_preprocess(compiler, f"#include <{bs.STDCXX}>\n#include <{h}>\n") == base
            atomic_write(d / h.replace("/", "%"), b"1" if same else b"0")
            if same:
                out.add(h)
    return frozenset(out)


def _entry(compiler: Compiler, source: str) -> Path:
    return compiler.binary_path(source).with_suffix(f".{BATCH_TAG}")


def cached(compiler: Compiler, source: str) -> Built | None:
    """The batch binary a previous evaluation built for ``source``, if it is still there."""
    p = _entry(compiler, source)
    try:
        e = json.loads(p.read_text())
        binp = _dir(compiler) / e["batch"][:2] / e["batch"]
        return Built(binp, int(e["index"])) if binp.exists() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plan_batches(n: int, workers: int, max_batch: int = MAX_BATCH) -> list[slice]:
    """Split ``n`` programs into equal batches: at least one per worker, at most ``max_batch`` each."""
    if n < 2:
        return []
    k = max(min(workers, n // 2), -(-n // max_batch), 1)
    size = -(-n // k)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _named(msg: str, ranges: Sequence[tuple[int, int]]) -> set[int]:
    """Programs a batch's compiler messages point at (a line of prog.cpp, or a mangled name)."""
    out = {int(m.group(1)) for m in re.finditer(bs.PREFIX + r"(\d{4})", msg)}
    for m in re.finditer(r"prog\.cpp:(\d+):", msg):
        line = int(m.group(1))
        out |= {i for i, (a, b) in enumerate(ranges) if a <= line <= b}
    return {i for i in out if i < len(ranges)}


def _keep(impure: set[int], static: list[int], members: list[int]) -> list[int]:
    """Members that may share the batch: each run carries the start-up code and the static data of
    all the *other* members, so none may have start-up code and, for every member, the others'
    data must stay within :data:`MAX_FOREIGN_STATIC` (the lightest member carries the most)."""
    kept: list[int] = []
    for i in sorted((i for i in members if i not in impure), key=lambda i: static[i]):
        trial = kept + [i]
        if sum(static[j] for j in trial) - static[trial[0]] <= MAX_FOREIGN_STATIC:
            kept = trial
    return sorted(kept)


def compile_batch(compiler: Compiler, items: Sequence[tuple[str, str, str]]) -> dict[str, Built]:
    """Compile ``items`` (id, source, prepared body) in as few g++ calls as possible; returns the
    batch binary of every program that may run from one. The others are left to
    :meth:`.Compiler.compile` (alone, exactly as before)."""
    out: dict[str, Built] = {}
    todo = [list(items)]
    while todo:
        group = todo.pop()
        if len(group) < 2:
            continue
        text, ranges = bs.assemble([body for _, _, body in group])
        r, msg = compiler.run(text, ["-save-temps", "-o", "prog"], collect=("prog", "prog.s"),
                              limits=_BATCH_LIMITS)
        if r.status == "ok" and "prog" in r.files and "prog.s" in r.files:
            found = bs.analyse_asm(r.files["prog.s"].decode("utf-8", "replace"), len(group))
            if found is None:
                continue   # start-up code we cannot attribute: all alone
            keep = _keep(*found, list(range(len(group))))
            if len(keep) < len(group):
                todo.append([group[i] for i in keep])   # recompile without the others
                continue
            bh = _store(compiler, text, r.files["prog"])
            for i, (pid, src, _) in enumerate(group):
                atomic_write(_entry(compiler, src), json.dumps({"batch": bh, "index": i}).encode())
                out[pid] = Built(_dir(compiler) / bh[:2] / bh, i)
        elif r.status != "ok" and compiler.cacheable(r):
            bad = _named(msg, ranges)
            if bad:
                todo.append([g for i, g in enumerate(group) if i not in bad])
            else:
                todo += [group[:len(group) // 2], group[len(group) // 2:]]
        # else: the compiler was stopped by a limit: all alone (a split would pay the limit again)
    return out


def _store(compiler: Compiler, text: str, binary: bytes) -> str:
    bh = hashlib.sha256((compiler.key + "\0" + BATCH_TAG + "\0" + text).encode("utf-8", "surrogateescape")).hexdigest()
    p = _dir(compiler) / bh[:2] / bh
    if not p.exists():
        atomic_write(p, binary, 0o755)
    return bh


def wanted_headers(sources: Sequence[str]) -> set[str]:
    """Angle-bracket headers the sources include besides ``bits/stdc++.h``."""
    return {h for s in sources for h in _INCLUDE.findall(s)} - {bs.STDCXX}
