"""Test cases of generated SANSTYPE programs: the expected stdout of each from running its gold.

Many programs are compiled per translation unit (each program becomes one function; a ``main``
dispatches on ``argv[1]``) so that 1,000 programs need a few compiles instead of 1,000. Kept out
of the generator (:mod:`.sanstype`) so that generating programs needs neither g++ nor the evaluator.
"""
from __future__ import annotations

from typing import Sequence

from . import sandbox
from .data import tgt_to_code
from .evaluator import Evaluator
from .examples import Example, TestCase
from .sanstype import FIXED, GenConfig, build_programs

__all__ = ["generate", "label_outputs"]

BATCH = 250


def generate(n: int, seed: int, ood: bool = False, id_prefix: str = "", cfg: GenConfig = FIXED,
             evaluator=None) -> list[Example]:
    """``n`` seeded programs with their test case (stdin drawn, stdout from running the gold)."""
    built = build_programs(n, seed, ood, cfg, id_prefix)
    outs = label_outputs([t for _, _, t, _ in built], [x for _, _, _, x in built], evaluator)
    return [Example(i, s, t, (TestCase(x, o),)) for (i, s, t, x), o in zip(built, outs)]


def label_outputs(tgts: Sequence[str], stdins: Sequence[str], evaluator=None) -> list[str]:
    """Compile and run each gold program on its stdin; return the stdouts (errors raise)."""
    ev = evaluator or Evaluator()
    outs: list[str] = []
    for start in range(0, len(tgts), BATCH):
        chunk = tgts[start:start + BATCH]
        funcs, cases = [], []
        for k, tgt in enumerate(chunk):
            body = tgt_to_code(tgt).split("\n", 2)[2]  # drop the two header lines
            if not body.startswith("int main ( ) {"):
                raise ValueError(f"program {start + k} does not start with 'int main () {{'")
            funcs.append(f"int cft_prog_{k} ( ) {{" + body[len("int main ( ) {"):])
            cases.append(f"    case {k}: return cft_prog_{k}();\n")
        src = ("#include <bits/stdc++.h>\nusing namespace std;\n" + "".join(funcs)
               + "int main(int argc, char **argv) {\n  switch (atoi(argv[1])) {\n" + "".join(cases)
               + "  }\n  return 3;\n}\n")
        binp, msg = ev.compiler.compile(src)
        if binp is None:
            raise RuntimeError(f"gold SANSTYPE programs {start}..{start + len(chunk) - 1} do not compile: {msg[:2000]}")
        for k in range(len(chunk)):
            r = sandbox.run(["../prog", str(k)], stdins[start + k], ev.limits, files={"prog": binp})
            if r.status != "ok":
                raise RuntimeError(f"gold SANSTYPE program {start + k} failed: {r.detail}\n{chunk[k]}")
            outs.append(r.stdout.decode())
    return outs
