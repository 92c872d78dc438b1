"""SANSTYPE generator: determinism, bug fixes, statistics against the paper's train files, and
test cases checked against an independent Python interpreter of the generated C++ subset."""
import re
import shutil
from collections import Counter

import numpy as np
import pytest

from simulations.code.corrupt import corrupt_sanstype
from simulations.code.data import default_data_dir, load_sanstype
from simulations.code.sanstype import FIXED, REFERENCE, generate_programs
from simulations.code.sanstype_cases import generate

DATA = default_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="../shared/data not found (set COMPOSEDFT_DATA)")
needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")


# ---- an independent interpreter for the generated C++ subset -----------------------------------
def _val(tok, scope):
    if tok in ("true", "false"):
        return tok == "true"
    if tok.startswith('"'):
        return tok.strip('"')
    if tok.isdigit():
        return int(tok)
    return _lookup(scope, tok)


def _lookup(scope, v):
    for s in reversed(scope):
        if v in s:
            return s[v][1]
    raise KeyError(v)


def _assign(scope, v, x):
    for s in reversed(scope):
        if v in s:
            s[v] = (s[v][0], x)
            return
    raise KeyError(v)


def _expr(toks, scope):
    if toks[0] in ("max", "min"):
        a, b = _val(toks[2], scope), _val(toks[4], scope)
        return max(a, b) if toks[0] == "max" else min(a, b)
    if toks[0] == "!":
        return not _val(toks[1], scope)
    if len(toks) == 1:
        return _val(toks[0], scope)
    a, op, b = _val(toks[0], scope), toks[1], _val(toks[2], scope)
    return {"+": lambda: a + b, "-": lambda: a - b, "&&": lambda: a and b}[op]()


def _exec(stmt, scope, stdin, out):
    t = stmt.split()
    if t[0] in ("int", "bool", "string"):
        scope[-1][t[1]] = (t[0], None)
        if len(t) > 2:
            scope[-1][t[1]] = (t[0], _expr(t[3:], scope))
    elif t[0] == "cin":
        typ = next(s[t[2]][0] for s in reversed(scope) if t[2] in s)
        raw = stdin.pop(0)
        _assign(scope, t[2], {"int": int, "bool": lambda r: r == "1", "string": str}[typ](raw))
    elif t[0] == "cout":
        x = _lookup(scope, t[2])
        out.append(str(int(x)) if isinstance(x, bool) else str(x))
    elif t[1] == "=":
        _assign(scope, t[0], _expr(t[2:], scope))
    elif t[1] in ("+=", "-="):
        _assign(scope, t[0], _expr([t[0], t[1][0], t[2]], scope))
    else:
        raise ValueError(stmt)


def interpret(tgt: str, stdin: str) -> str:
    """Run a SANSTYPE target in Python (scopes, shadowing, C++ bool printing)."""
    scope, out, inp = [{}], [], stdin.split()
    for seg in tgt.split(" $ ")[1:-1]:
        m = re.fullmatch(r"if \( (\S+) \) \{ (.*) \}", seg)
        if m:
            if _lookup(scope, m.group(1)):
                scope.append({})
                for st in m.group(2).replace("~", "").split(";")[:-1]:
                    _exec(st, scope, inp, out)
                scope.pop()
            continue
        for st in seg.split(";")[:-1]:
            _exec(st, scope, inp, out)
    return "".join(out)


@pytest.mark.data
@needs_data
def test_interpreter_reproduces_paper_train_outputs():
    # validates the interpreter itself against the released gold outputs
    for e in load_sanstype(DATA / "sanstype" / "train"):
        assert interpret(e.tgt, e.cases[0].input) == e.cases[0].output, e.id


@pytest.mark.gpp
@needs_gpp
@pytest.mark.parametrize("cfg, ood", [(FIXED, False), (FIXED, True), (REFERENCE, False)])
def test_generated_outputs_match_interpreter(cfg, ood):
    exs = generate(40, seed=3, ood=ood, cfg=cfg)
    for e in exs:
        assert interpret(e.tgt, e.cases[0].input) == e.cases[0].output, e.tgt


def test_generator_is_seeded():
    a = [(e.src, e.tgt) for e in generate_programs(50, seed=7)]
    assert a == [(e.src, e.tgt) for e in generate_programs(50, seed=7)]
    assert a != [(e.src, e.tgt) for e in generate_programs(50, seed=8)]


def test_bug_fixes():
    progs = generate_programs(2000, seed=1)
    tgts = [p.tgt for p in progs]
    assert sum("= ! var_" in t for t in tgts) > 50                      # negation is reachable
    assert not any("= ! var_" in t for t in (p.tgt for p in generate_programs(2000, 1, cfg=REFERENCE)))
    for t in tgts:
        segs = t.split(" $ ")
        assert "~" not in t                                               # no in-block declarations
        declared = re.findall(r"(?:^|; )(?:int|bool|string) (var_\d)", " ; ".join(segs))
        printed = re.findall(r"cout << (var_\d)", t)
        assert len(declared) == len(set(declared)), t                    # no shadowing / redeclaration
        assert sorted(declared) == sorted(printed), t                     # every variable is printed
    # max/min may use ints introduced after the initial variables
    late = 0
    for t in tgts:
        segs = t.split(" $ ")
        for i, s in enumerate(segs):
            m = re.match(r"(var_\d) = m(?:ax|in) \( var_\d , (var_\d) \)", s)
            if m and any(re.match(rf"int {v}\b", x) for v in m.groups() for x in segs[5:i]):
                late += 1
    assert late > 0


def _stats(exs):
    tgts = [e.tgt for e in exs]
    decl = Counter(t for x in tgts for t in re.findall(r"\b(int|bool|string) var_\d", x))
    tot = sum(decl.values())
    norm = lambda s: {re.sub(r"^\d+$", "N", re.sub(r"var_\d", "V", re.sub(r'"str_\d"', "S", w)))  # noqa: E731
                      for w in s.split()}
    return {"stmts": np.mean([len(x.split(" $ ")) for x in tgts]),
            "tokens": np.mean([len(x.split()) for x in tgts]),
            "types": {k: decl[k] / tot for k in ("int", "bool", "string")},
            "swap": np.mean(["if (" in x for x in tgts]),
            "maxmin": np.mean([bool(re.search(r"m(ax|in) \(", x)) for x in tgts]),
            "tgt_vocab": set().union(*(norm(x) for x in tgts)),
            "src_vocab": set().union(*(norm(e.src) for e in exs))}


@pytest.mark.data
@needs_data
@pytest.mark.parametrize("cfg", [REFERENCE, FIXED], ids=["reference", "fixed"])
def test_statistics_match_paper_train(cfg):
    """Tolerances: means of statements and tokens per program within 6% (reference) or 10%
    (fixed: a swap that needs new variables declares them as two statements and prints them); each type's share of
    declarations within 0.04; swap-block rate within 0.05 (n = 1,000: s.e. ~0.015); max/min
    rate within a factor 3 (paper: 4%; the fix lets later ints in, which raises it); vocabulary
    (numbers, var_k, str_k normalized) equal to the paper's up to the documented changes."""
    paper = _stats(load_sanstype(DATA / "sanstype" / "train"))
    ours = _stats(generate_programs(1000, seed=0, cfg=cfg))
    tol = 0.06 if cfg == REFERENCE else 0.10  # fixed swaps add 2 declarations + 2 prints
    assert abs(ours["stmts"] / paper["stmts"] - 1) < tol, (ours["stmts"], paper["stmts"])
    assert abs(ours["tokens"] / paper["tokens"] - 1) < tol, (ours["tokens"], paper["tokens"])
    for k in ("int", "bool", "string"):
        assert abs(ours["types"][k] - paper["types"][k]) < 0.04, (k, ours["types"], paper["types"])
    assert abs(ours["swap"] - paper["swap"]) < 0.05, (ours["swap"], paper["swap"])
    assert paper["maxmin"] / 3 < ours["maxmin"] < paper["maxmin"] * 3, (ours["maxmin"], paper["maxmin"])
    if cfg == REFERENCE:
        assert ours["tgt_vocab"] == paper["tgt_vocab"]
        assert ours["src_vocab"] == paper["src_vocab"]
    else:  # negation added; in-block declarations ("~", "TAB") gone
        assert ours["tgt_vocab"] ^ paper["tgt_vocab"] == {"!", "~"}
        assert ours["src_vocab"] ^ paper["src_vocab"] == {"its", "negation;", "TAB"}


def test_ood_uses_unseen_templates():
    norm = lambda s: re.sub(r"\d+", "N", re.sub(r'"str_\d"', "S", re.sub(r"var_\d", "V", s)))  # noqa: E731
    tmpl = lambda exs: {norm(x).strip() for e in exs for x in e.src.split(" $ ") if x.strip()}  # noqa: E731
    id_t, ood_t = tmpl(generate_programs(1000, 0)), tmpl(generate_programs(1000, 0, ood=True))
    only_ood = ood_t - id_t
    assert {"stdout V;", "output V;", "if V, swap V and V;", "V and true;"} <= {t for t in only_ood if "TAB" not in t}
    # same programs distribution: the targets share every normalized statement form
    tgt = lambda exs: {norm(x) for e in exs for x in e.tgt.split(" $ ")}  # noqa: E731
    assert tgt(generate_programs(1000, 0, ood=True)) <= tgt(generate_programs(3000, 1))


def test_corrupt_sanstype_rates_and_shape():
    rng = np.random.default_rng(0)
    progs = generate_programs(1000, seed=2)
    changed = 0
    for p in progs:
        c = corrupt_sanstype(p.tgt, rng)
        a, b = p.tgt.split(" $ "), c.split(" $ ")
        assert len(a) == len(b) and a[0] == b[0] and a[-1] == b[-1]
        diff = sum(x != y for x, y in zip(a, b))
        assert diff <= 3
        changed += diff > 0
        for x, y in zip(a, b):
            if x != y and x.startswith("cout"):
                assert y == ""                       # prints are deleted
    # p(clean) = 0.1 plus the rare no-op (e.g. `cin >> v ;` drawn as its own variant)
    assert 0.80 < changed / 1000 < 0.90
