"""Corruptions that make denoiser training pairs (corrupt(y), y), as the reference code's
(docs/code-pipeline.md §6).

* ``corrupt_sanstype``: the hand-written type corruptions of the reference generator, applied to
  a tokenized SANSTYPE target: with probability 0.9, 1-3 statement indices drawn with
  replacement get their noised variant; with probability 0.1 the program is left clean.
* ``corrupt_spoc``: DrRepair's SPoC-style corruption (Yasunaga & Liang 2020): one line is
  corrupted by one of five kinds drawn with probabilities
  [0.30 syntax, 0.15 var_type, 0.20 var_declare, 0.30 var_typo, 0.05 keyword_typo]; only
  versions that fail ``g++ -fsyntax-only`` (precompiled header, verdict cached) are kept.
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np

from .data import tgt_to_code

__all__ = ["corrupt_sanstype", "noise_statement", "SPOC_KINDS", "SPOC_PROBS", "corrupt_spoc_once",
           "corrupt_spoc", "split_tgt_lines", "join_tgt_lines"]

TYPES = ("int", "bool", "string")
SEP = " $ "


def _pick(rng: np.random.Generator, xs):
    return xs[int(rng.integers(len(xs)))]


def noise_statement(stmt: str, types: dict[str, str], rng: np.random.Generator) -> str:
    """The noised variant of one SANSTYPE statement (tokenized), as the reference code does."""
    toks = stmt.split()
    other = lambda t: _pick(rng, [x for x in TYPES if x != t])  # noqa: E731
    if not toks:
        return stmt
    if toks[0] == "cout":                                    # prints are deleted
        return ""
    if toks[0] == "cin":                                     # cin v ; | cin >> v ; | cin << v ;
        v = toks[2]
        return _pick(rng, [f"cin {v} ;", f"cin >> {v} ;", f"cin << {v} ;"])
    if toks[0] == "if":                                      # swap block: temp's type wrong or missing
        i = toks.index("temp") - 1
        t = toks[i]
        new = _pick(rng, [[], [other(t)]])
        return " ".join(toks[:i] + new + toks[i + 1:])
    if toks[0] in TYPES:
        t, v = toks[0], toks[1]
        if len(toks) == 3:                                   # instantiation: wrong type
            return f"{other(t)} {v} ;"
        val = toks[toks.index("=") + 1:-1]
        val = " ".join(val)
        return _pick(rng, [f"{other(t)} {v} = {val} ;", f"{v} = {val} ;", f"{other(t)} {v} ; {v} = {val} ;"])
    # assignment to an existing variable: a spurious (correct or random) type prefix
    v = toks[0]
    t = types.get(v, _pick(rng, TYPES))
    return f"{_pick(rng, [t, _pick(rng, TYPES)])} {stmt}"


def corrupt_sanstype(tgt: str, rng: np.random.Generator, p_clean: float = 0.1) -> str:
    """Corrupt a tokenized SANSTYPE target (header and footer segments are kept)."""
    segs = tgt.split(SEP)
    if len(segs) < 3 or rng.random() < p_clean:
        return tgt
    head, body, foot = segs[0], segs[1:-1], segs[-1]
    types: dict[str, str] = {}
    for s in body:
        for t, v in re.findall(r"\b(int|bool|string) (var_\d+)\b", s):
            types.setdefault(v, t)
    noised = list(body)
    for j in rng.integers(len(body), size=int(rng.integers(1, 4))):
        noised[j] = noise_statement(body[j], types, rng)
    return SEP.join([head, *noised, foot])


# ---------------------------------------------------------------------------------------------
# SPoC (DrRepair-style)

SPOC_KINDS = ("syntax", "var_type", "var_declare", "var_typo", "keyword_typo")
SPOC_PROBS = (0.30, 0.15, 0.20, 0.30, 0.05)
_DECL_TYPES = ("int", "long", "float", "double", "char", "string", "bool")
_TYPE_WORDS = set(_DECL_TYPES) | {"short", "unsigned", "signed", "void", "auto", "const", "static"}
_KEYWORDS = {"for", "while", "if", "else", "return", "break", "continue", "do", "switch", "case",
             "default", "true", "false", "struct", "using", "namespace", "std", "main", "sizeof",
             "new", "delete", "class", "public", "private", "const", "typedef", "template"}
_CALLS = {"cin", "cout", "endl", "max", "min", "abs", "sort", "swap", "printf", "scanf", "puts",
          "getline", "memset", "reverse", "pow", "sqrt", "size", "length", "push_back", "begin", "end"}
_PUNCT = ["(", ")", ",", ";", "{", "}", "[", "]", "+", "-", "=", "<", ">"]
_REPLACE = [(";", ","), (",", ";"), ("(", "["), (")", "]"), ("[", "("), ("]", ")"), ("<<", "<"),
            (">>", ">"), ("==", "="), ("{", "("), ("}", ")"), ("+", "+ +"), ("<", "< <")]


def split_tgt_lines(tgt: str) -> list[tuple[int, list[str]]]:
    """SPoC target -> [(indent, tokens)] per line."""
    out = []
    for seg in tgt.split(SEP):
        toks = seg.split()
        k = 0
        while k < len(toks) and toks[k] == "~":
            k += 1
        out.append((k, toks[k:]))
    return out


def join_tgt_lines(lines: list[tuple[int, list[str]]]) -> str:
    return SEP.join(" ".join(["~"] * ind + toks) for ind, toks in lines)


def _is_ident(t: str) -> bool:
    return re.fullmatch(r"[A-Za-z_]\w*", t) is not None


def _is_decl(toks: list[str]) -> bool:
    return bool(toks) and toks[0] in _TYPE_WORDS and len(toks) > 1 and toks[-1] == ";"


def _syntax(toks, rng, idents):
    acts = [("del", p) for p in _PUNCT if p in toks] + [("dup", p) for p in _PUNCT if p in toks]
    acts += [("rep", a, b) for a, b in _REPLACE if a in toks]
    if any(t.startswith('"') for t in toks):
        acts.append(("quote",))
    if not acts:
        return None
    a = _pick(rng, acts)
    if a[0] == "quote":
        i = _pick(rng, [i for i, t in enumerate(toks) if t.startswith('"')])
        return toks[:i] + [toks[i][1:] if rng.random() < 0.5 else toks[i][:-1]] + toks[i + 1:]
    i = _pick(rng, [i for i, t in enumerate(toks) if t == a[1]])
    if a[0] == "del":
        return toks[:i] + toks[i + 1:]
    if a[0] == "dup":
        return toks[:i + 1] + toks[i:]
    return toks[:i] + a[2].split() + toks[i + 1:]


def _var_type(toks, rng, idents):
    if _is_decl(toks) and toks[0] in _DECL_TYPES:
        if rng.random() < 0.3:
            return toks[1:]
        return [_pick(rng, [t for t in _DECL_TYPES if t != toks[0]])] + toks[1:]
    if len(toks) > 2 and _is_ident(toks[0]) and toks[1] == "=" and toks[0] not in _KEYWORDS:
        return [_pick(rng, _DECL_TYPES)] + toks
    return None


def _var_declare(toks, rng, idents):
    if not _is_decl(toks):
        return None
    names = [i for i, t in enumerate(toks[1:], 1) if _is_ident(t) and t not in _TYPE_WORDS
             and (i == 1 or toks[i - 1] in (",",) or toks[i - 1] in _TYPE_WORDS)]
    if not names:
        return None
    i = _pick(rng, names)
    r = rng.random()
    if r < 1 / 3 and len(names) > 1:      # delete a declared variable (and its comma)
        if i + 1 < len(toks) and toks[i + 1] == ",":
            return toks[:i] + toks[i + 2:]
        return toks[:i - 1] + toks[i + 1:] if toks[i - 1] == "," else None
    if r < 2 / 3:                          # replace it by another identifier of the program
        others = [x for x in idents if x != toks[i]]
        return toks[:i] + [_pick(rng, others)] + toks[i + 1:] if others else None
    others = [x for x in idents if x != toks[i]]  # insert a (re)declaration
    return toks[:i] + [_pick(rng, others), ","] + toks[i:] if others else None


def _var_typo(toks, rng, idents):
    if _is_decl(toks):
        return None
    pos = [i for i, t in enumerate(toks) if _is_ident(t) and t not in _KEYWORDS and t not in _CALLS
           and t not in _TYPE_WORDS]
    if not pos:
        return None
    i = _pick(rng, pos)
    r = rng.random()
    if r < 0.3:
        return toks[:i] + toks[i + 1:]
    if r < 0.6 and len(toks[i]) > 1:
        k = int(rng.integers(len(toks[i])))
        return toks[:i] + [toks[i][:k] + toks[i][k + 1:]] + toks[i + 1:]
    others = [x for x in idents if x != toks[i]]
    return toks[:i] + [_pick(rng, others)] + toks[i + 1:] if others else None


def _keyword_typo(toks, rng, idents):
    swaps = {"for": "while", "while": "for", "if": "else if", "cin": "cout", "cout": "cin"}
    acts = [("swap", i) for i, t in enumerate(toks) if t in swaps]
    acts += [("del", i) for i, t in enumerate(toks) if t in _KEYWORDS | _CALLS and t not in ("std", "main")]
    if not acts:
        return None
    a, i = _pick(rng, acts)
    new = swaps[toks[i]].split() if a == "swap" else []
    return toks[:i] + new + toks[i + 1:]


_KIND_FN: dict[str, Callable] = {"syntax": _syntax, "var_type": _var_type, "var_declare": _var_declare,
                                 "var_typo": _var_typo, "keyword_typo": _keyword_typo}


def corrupt_spoc_once(lines: list[tuple[int, list[str]]], rng: np.random.Generator,
                      max_tries: int = 50) -> tuple[str, int, list[tuple[int, list[str]]]] | None:
    """Corrupt one line: (kind, line index, new lines), or None if nothing applied."""
    idents = sorted({t for _, toks in lines for t in toks if _is_ident(t) and t not in _KEYWORDS
                     and t not in _CALLS and t not in _TYPE_WORDS})
    # Draw the kind first, then a line it applies to (so kinds keep their probabilities on
    # programs where every kind applies somewhere); redraw the kind if no line fits.
    for _ in range(max_tries):
        kind = SPOC_KINDS[int(rng.choice(len(SPOC_KINDS), p=SPOC_PROBS))]
        for li in rng.permutation(len(lines)):
            ind, toks = lines[int(li)]
            new = _KIND_FN[kind](toks, rng, idents)
            if new is not None and new != toks:
                out = list(lines)
                out[int(li)] = (ind, new)
                return kind, int(li), out
    return None


def corrupt_spoc(tgt: str, rng: np.random.Generator, compiler=None, n_tries: int = 10) -> tuple[str, str] | None:
    """(corrupted tgt, kind) for a SPoC target, keeping only corruptions that fail to compile.

    ``compiler`` is an :class:`simulations.code.evaluator.Compiler` (default: the evaluator's);
    its ``syntax_ok`` verdicts are cached by content hash. None if ``n_tries`` all compiled.
    """
    if compiler is None:
        from .evaluator import Evaluator
        compiler = Evaluator(workers=1).compiler
    lines = split_tgt_lines(tgt)
    for _ in range(n_tries):
        res = corrupt_spoc_once(lines, rng)
        if res is None:
            return None
        kind, _, new_lines = res
        new = join_tgt_lines(new_lines)
        if not compiler.syntax_ok(tgt_to_code(new)):
            return new, kind
    return None
