"""SANSTYPE generator: pseudocode that states every statement but no declared type -> C++.

Follows the reference generator (``Synthetic.create_example_type``; docs/code-pipeline.md §6): types int / bool /
string uniform; 1-3 initial variables, each initialized (``T v = x;`` or ``T v; v = x;``) or
instantiated and read from stdin; one type-revealing operation per variable in shuffled order;
1-4 extra lines (p = 0.8 an operation on a random variable, preceded with p = 0.1 by a
``max``/``min`` line when two ints exist; p = 0.2 a new initialized variable, at most 10); a
print of every tracked variable. OOD uses unseen paraphrased templates for the same programs.

Bugs of the reference generator fixed here; ``REFERENCE`` turns every
fix off and reproduces the released files' distribution:

* ``fix_negation``: the bool negation ``v = ! v ;`` ("set v to its negation;") is reachable; it
  takes half of the ``&&`` share, so the swap-block and re-set rates are unchanged.
* ``fix_swap_vars``: when no two variables share a type, the swap block's two new variables get
  fresh names and are declared *before* the ``if`` as ordinary statements, tracked and printed
  (the reference declared them inside the block, could shadow outer variables, never printed
  them).
* ``fix_maxmin``: variables introduced later count for ``max``/``min`` (the reference used only
  the initial ints).

Kept as released (so our splits stay compatible with the paper's ``train`` files): the minus
wording "set v to c minus v" for ``v = v - c`` and the formatting (``cin`` of one variable per
statement, `` $ `` separators, header ``int main () {`` and footer ``return 0; }``).

Test cases: each program's stdin is drawn with it (``build_programs``); its expected stdout comes
from compiling and running the gold program, which lives in :mod:`.sanstype_cases` so that the
generator does not import the evaluator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .examples import Example

__all__ = ["GenConfig", "FIXED", "REFERENCE", "TYPES", "build_programs", "generate_programs"]

TYPES = ("int", "bool", "string")
HEADER, FOOTER, SEP = "int main () {", "return 0; }", " $ "
MAX_VARS = 10


@dataclass(frozen=True)
class GenConfig:
    fix_negation: bool = True
    fix_swap_vars: bool = True
    fix_maxmin: bool = True


FIXED = GenConfig()
REFERENCE = GenConfig(False, False, False)


class _Program:
    """Builds one program: parallel lists of pseudocode, code and stdin values."""

    def __init__(self, rng: np.random.Generator, ood: bool, cfg: GenConfig):
        self.rng, self.ood, self.cfg = rng, ood, cfg
        self.pseudo: list[str] = []
        self.code: list[str] = []
        self.inputs: list[str] = []
        self.vars: dict[str, str] = {}          # tracked variable -> type, in insertion order
        self.by_type: dict[str, list[str]] = {t: [] for t in TYPES}

    # -- random pieces ---------------------------------------------------------------------
    def pick(self, options: Sequence[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def names(self, k: int, exclude: Sequence[str] = ()) -> list[str]:
        pool = [i for i in range(10) if f"var_{i}" not in exclude]
        return [f"var_{i}" for i in self.rng.choice(pool, size=k, replace=False)]

    def string(self) -> str:
        return f'"str_{int(self.rng.integers(10))}"'

    def value(self, t: str) -> str:
        if t == "int":
            return str(int(self.rng.integers(0, 100)))
        if t == "bool":
            return "true" if self.rng.random() > 0.5 else "false"
        return self.string()

    def emit(self, pseudo: str, code: str) -> None:
        self.pseudo.append(pseudo)
        self.code.append(code)

    def track(self, v: str, t: str, in_by_type: bool = True) -> None:
        self.vars[v] = t
        if in_by_type:
            self.by_type[t].append(v)

    # -- statement templates ---------------------------------------------------------------
    def init_code(self, t: str, v: str, x: str) -> str:
        return self.pick([f"{t} {v} = {x} ;", f"{t} {v} ; {v} = {x} ;"])

    def initialize(self, t: str, v: str) -> None:
        self.emit(f"set {v} to {(x := self.value(t))}; ", self.init_code(t, v, x))

    def read(self, t: str, v: str) -> None:
        self.emit(f"instantiate {v}; ", f"{t} {v} ;")
        p = self.pick([f"read {v}; ", f"{v} from stdin; "]) if self.ood else f"read {v} from stdin; "
        self.emit(p, f"cin >> {v} ;")
        self.inputs.append(str(int(self.rng.integers(2))) if t == "bool" else self.value(t).strip('"'))

    def reset(self, t: str, v: str) -> None:
        self.emit(f"set {v} to {(x := self.value(t))}; ", f"{v} = {x} ;")

    def operate(self, v: str) -> None:
        """One type-revealing operation on ``v`` (as the reference generator)."""
        t, ood, k = self.vars[v], self.ood, int(self.rng.integers(3))
        if t == "int":
            c = self.value("int")
            if k == 0:
                p = (self.pick([f"set {v} to {v} plus {c}; ", f"{v} to {c} plus {v}; ",
                                f"set {v} to {c} plus the value of {v}; "]) if ood else f"set {v} to {c} plus {v}; ")
                self.emit(p, self.pick([f"{v} += {c} ;", f"{v} = {v} + {c} ;"]))
            elif k == 1:
                p = (self.pick([f"{v} to {c} minus {v}; ", f"set {v} to {c} minus the value of {v}; "])
                     if ood else f"set {v} to {c} minus {v}; ")
                self.emit(p, self.pick([f"{v} -= {c} ;", f"{v} = {v} - {c} ;"]))
            else:
                self.reset(t, v)
        elif t == "bool":
            if k == 0 and self.cfg.fix_negation and self.rng.random() < 0.5:
                p = (self.pick([f"negation of {v}; ", f"set {v} to negation; ", f"set {v} to negation of {v}; "])
                     if ood else f"set {v} to its negation; ")
                self.emit(p, f"{v} = ! {v} ;")
            elif k == 0:
                c = self.value("bool")
                p = (self.pick([f"set {v} to {v} and {c}; ", f"and {v} with {c}; ", f"{v} and {c}; "])
                     if ood else f"set {v} to the and with {c}; ")
                self.emit(p, f"{v} = {v} && {c} ;")
            elif k == 1:
                self.reset(t, v)
            else:
                self.swap(v)
        else:
            s = self.string()
            if k == 0:
                p = self.pick([f"add {s} to {v} end; ", f"add {s} to end of {v}; "]) if ood \
                    else f"add {s} to the end of {v}; "
                self.emit(p, self.pick([f"{v} += {s} ;", f"{v} = {v} + {s} ;"]))
            elif k == 1:
                p = self.pick([f"add {s} to {v} beginning; ", f"add {s} to beginning of {v}; "]) if ood \
                    else f"add {s} to the beginning of {v}; "
                self.emit(p, f"{v} = {s} + {v} ;")
            else:
                self.reset(t, v)

    def swap(self, cond: str) -> None:
        """``if (cond) { T temp = a ; a = b ; b = temp ; }`` on two variables of one type."""
        shared = [t for t in TYPES if sum(1 for x in self.vars.values() if x == t) >= 2]
        head = self.pick([f"if {cond} true, ", f"if {cond}, "]) if self.ood else f"if {cond} is true, "
        code, inner = f"if ( {cond} ) {{ ", ""
        if shared:
            t = self.pick(shared)
            a, b = [x for x, tx in self.vars.items() if tx == t][:2]
        else:
            t = self.pick(TYPES)
            if self.cfg.fix_swap_vars:  # declare fresh, tracked variables before the block
                a, b = self.names(2, exclude=list(self.vars))
                for v in (a, b):
                    self.initialize(t, v)
                    self.track(v, t, in_by_type=self.cfg.fix_maxmin)
            else:  # reference: declared inside the block, may shadow, never printed
                a, b = self.names(2)
                for v in (a, b):
                    x = self.value(t)
                    inner += f"TAB set {v} to {x}; "
                    code += f"~ {self.init_code(t, v, x)} "
        if self.ood:
            tail = self.pick([f"set {a} to {b} and set {b} to {a}; ",
                              f"set {a} to the value of {b} and {b} to {a}; ", f"swap {a} and {b}; "])
        else:
            tail = self.pick([f"set {a} to the value of {b} and {b} to the value of {a}; ",
                              f"swap the values of {a} and {b}; "])
        self.emit(head + inner + tail, code + f"{t} temp = {a} ; {a} = {b} ; {b} = temp ; }}")

    def maxmin(self) -> None:
        f = self.pick(["max", "min"])
        a, b = (str(x) for x in self.rng.choice(self.by_type["int"], size=2, replace=False))
        self.emit(f"set {a} to {f} applied to {a} and {b}; ", f"{a} = {f} ( {a} , {b} ) ;")

    def print_(self, v: str) -> None:
        p = self.pick([f"print {v} to stdout; ", f"output {v}; ", f"stdout {v}; "]) if self.ood \
            else self.pick([f"print {v}; ", f"output {v} to stdout; "])
        self.emit(p, f"cout << {v} ;")

    # -- the program ------------------------------------------------------------------------
    def build(self) -> tuple[str, str, str]:
        rng = self.rng
        for v in self.names(int(rng.integers(1, 4))):
            self.track(v, self.pick(TYPES))
        for v, t in list(self.vars.items()):
            if rng.random() < 0.5:
                self.initialize(t, v)
            else:
                self.read(t, v)
        order = list(self.vars)
        rng.shuffle(order)
        for v in order:
            self.operate(v)
        for _ in range(int(rng.integers(1, 5))):
            if rng.random() < 0.8:
                if rng.random() < 0.1 and len(self.by_type["int"]) > 1:
                    self.maxmin()
                self.operate(list(self.vars)[int(rng.integers(len(self.vars)))])
            elif len(self.vars) < MAX_VARS:
                t = self.pick(TYPES)
                v = self.names(1, exclude=list(self.vars))[0]
                self.track(v, t, in_by_type=self.cfg.fix_maxmin)
                self.initialize(t, v)
        for v in list(self.vars):
            self.print_(v)
        src = SEP + SEP.join(self.pseudo) + SEP
        tgt = HEADER + SEP + SEP.join(self.code) + SEP + FOOTER
        return src, tgt, "".join(x + "\n" for x in self.inputs)


def build_programs(n: int, seed: int, ood: bool, cfg: GenConfig, id_prefix: str) -> list[tuple[str, str, str, str]]:
    """``n`` seeded programs as (id, src, tgt, stdin) tuples."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        src, tgt, stdin = _Program(rng, ood, cfg).build()
        out.append((f"{id_prefix}{i}", src, tgt, stdin))
    return out


def generate_programs(n: int, seed: int, ood: bool = False, cfg: GenConfig = FIXED,
                      id_prefix: str = "") -> list[Example]:
    """``n`` seeded programs without test cases (no compiler needed; for denoiser data)."""
    return [Example(i, s, t) for i, s, t, _ in build_programs(n, seed, ood, cfg, id_prefix)]
