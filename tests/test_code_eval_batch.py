"""Batched compilation (docs/sandbox.md §8): which programs may share a translation unit, what the
compiled batch must show, and verdict parity with compiling every program alone (the evaluator
with ``max_batch=0`` is the independent computation: today's per-program path)."""
import os
import re
import shutil

import numpy as np
import pytest

from simulations.code import batch_compile as bc
from simulations.code import batch_source as bs
from simulations.code import sandbox
from simulations.code.data import Example, TestCase, default_data_dir, load_sanstype, load_spoc, tgt_to_code
from simulations.code.evaluator import Evaluator

H = "#include <bits/stdc++.h>\nusing namespace std;\n"
NAMES = frozenset({"count", "pow", "max", "vector", "string", "map", "cin", "cout"})   # a toy header
needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")
DATA = default_data_dir()


def _same(records):
    """Records with g++'s random temporary object names (``/box/ccAbC123.o``, different on every
    compile, batched or not) made equal."""
    return [{**r, "detail": re.sub(r"/cc\w{6}\.o", "/cc.o", r["detail"])} for r in records]


def _words(src: str) -> list[str]:
    return [t for _, t, _ in bs.lex(src)]


# --------------------------------------------------------------------------- source checks

def test_prepare_renames_main_and_makes_its_end_return_zero():
    src = H + "int n;\nint main() {\n  cin >> n;\n  cout << n << endl;\n}\n"
    body = bs.prepare(src, NAMES)
    assert body is not None and "#include" not in body
    w = _words(body)
    assert "main" not in w and w.count(bs.ENTRY) == 1
    assert w[-4:] == ["return", "0", ";", "}"]        # the implicit return of main, made explicit
    # everything else is the program's own text, unchanged
    assert body.replace(bs.ENTRY, "main").replace("return 0; }", "}") == src[len("#include <bits/stdc++.h>"):]


@pytest.mark.parametrize("code", [
    "#define N 10\nint main(){return 0;}",                        # a macro would leak into the next program
    "#include <unistd.h>\nint main(){return 0;}",                  # not a no-op after stdc++.h
    '#include "x.h"\nint main(){return 0;}',
    "namespace a { int x; }\nint main(){return 0;}",
    "int x; int main(){ return ::x; }",                            # leading :: leaves the wrapper
    'extern "C" int f(); int main(){return 0;}',
    "int main(){ assert(1); return 0; }",                          # the message names the function
    "int main(){ goto e; e: return 0; }",
    "int main(){ throw 1; }",
    "int main(int argc, char **argv){ return 0; }",
    "void main(){ }",
    "int main(){ return 0; } int f(){ return main(); }",           # main called
    "int main(){ cout << __LINE__; }",
    "[[gnu::constructor]] void f(){} int main(){return 0;}",
    "__attribute__((constructor)) void f(){} int main(){return 0;}",
    "int main(){ return 0; ",                                      # unbalanced
    "int count; int main(){ count = 1; return 0; }",              # hides std::count (alone: ambiguous)
    "long long pow(long long a, long long b){ return 1; } int main(){ return 0; }",  # would hide std::pow
    "struct vector { int x; }; int main(){ return 0; }",
    "using std::max; int main(){ return 0; }",
    "int main(){ int x; _Cft_b0001::y = 1; }",
    "int _Cft_main(){ return 1; } int main(){ return 0; }",
    "#include <iostream> int x;\nint main(){ return 0; }",     # g++ ignores the extra tokens of a directive
])
def test_prepare_refuses(code):
    assert bs.prepare(H + code, NAMES) is None


def test_prepare_accepts_noop_headers_only_when_verified():
    src = H + "#include <iostream>  // io\nint main(){ return 0; }"
    assert bs.prepare(src, NAMES) is None
    assert bs.prepare(src, NAMES, {"iostream"}) is not None
    assert bs.prepare(src.replace("// io", "int x;"), NAMES, {"iostream"}) is None


@pytest.mark.parametrize("code, declared", [
    ("int n, a[100]; int main(){ int count; }", {"n", "a", "main"}),
    ("map<string, int> m; vector<int> g[10];", {"m", "g"}),
    ("typedef long long ll; ll x = max(1, 2); using pii = pair<int, int>;", {"ll", "x", "pii"}),
    ("enum color { red, green = 2 }; struct node { int count; } nd;", {"color", "red", "green", "node", "nd"}),
    ("bool cmp(const node &a, const node &b) { return a.x < b.x; }", {"cmp"}),
    ("int (*fp)(int); template <class T> T mx(T a, T b) { return a; }", {"fp", "mx"}),
    ("int node::cnt = 0; const int N = 5 < 3;", {"N"}),
    ("using std::count; int f();", {"count", "f"}),
])
def test_declared_names(code, declared):
    assert bs.declared_names(_words(code)) == declared


def test_header_scope_names_sees_std_and_file_scope_but_not_members():
    text = ("extern \"C\" { int abs(int __x); } "
            "namespace std { inline namespace __cxx11 { class string { int size; }; }"
            " template<class T> T max(T, T); namespace __detail { int hidden; } enum E { e1 }; }"
            " namespace __gnu_cxx { int other; } int valarray_sum() ; int std::foo::member;")
    names = bs.header_scope_names(text)
    assert {"abs", "string", "max", "e1", "E", "valarray_sum"} <= names
    assert not {"size", "hidden", "other", "member"} & names


def test_plan_batches_covers_every_program_once():
    for n in range(0, 120, 7):
        for workers in (1, 2, 4):
            sl = bc.plan_batches(n, workers, 48)
            idx = [i for s in sl for i in range(n)[s]]
            assert idx == (list(range(n)) if n >= 2 else [])
            assert all(len(range(n)[s]) <= 48 for s in sl)
            assert n < 2 or len(sl) >= min(workers, n // 2)


def test_keep_admits_only_what_every_other_run_can_carry():
    cap = bc.MAX_FOREIGN_STATIC
    assert bc._keep({0}, [0, 10, 10], [0, 1, 2]) == [1, 2]              # start-up code: alone
    assert bc._keep(set(), [cap + 1, 10, 10], [0, 1, 2]) == [1, 2]      # too much data for the others
    assert bc._keep(set(), [cap // 2, cap // 2, 1], [0, 1, 2]) == [0, 1, 2]       # the light one carries exactly cap
    assert bc._keep(set(), [cap // 2 + 1, cap // 2 + 1, 1], [0, 1, 2]) == [0, 2]  # ... or more: one leaves
    for kept in (bc._keep(set(), [cap // 3] * 5, list(range(5))),):
        assert len(kept) == 4 and sum(cap // 3 for _ in kept) - cap // 3 <= cap


# --------------------------------------------------------------------------- compiled batches

@needs_gpp
@pytest.mark.gpp
def test_asm_analysis_attributes_startup_code_and_static_data(tmp_path):
    from simulations.code.compiler import Compiler
    progs = ["int n, a[1000]; const int N = 5; int main(){ static vector<int> q; return 0; }",   # pure
             "string s; int main(){ return 0; }",                                          # constructor
             "int f(){ return 3; } int x = f(); int main(){ return 0; }",                   # dynamic init
             "struct A { ~A(){} } a; int main(){ return 0; }",                             # destructor only
             "long long big[3000000]; int main(){ return 0; }"]                            # static data
    c = Compiler(tmp_path)
    bodies = [bs.prepare(H + p, bc.header_names(c)) for p in progs]
    assert None not in bodies
    text, _ = bs.assemble(bodies)
    r, msg = c.run(text, ["-save-temps", "-o", "prog"], collect=("prog", "prog.s"))
    assert r.status == "ok", msg
    impure, static = bs.analyse_asm(r.files["prog.s"].decode(), len(progs))
    assert impure == {1, 2, 3}
    assert static[4] == 8 * 3000000 and static[0] >= 4004 and static[0] < 8000


CASES = (TestCase("1 2\n", "3\n"), TestCase("5 5\n", "10\n"), TestCase("-1 1\n", "0\n"))
RD, SUM = "int a, b; cin >> a >> b; ", "cout << a + b << endl; "
PROGS = {   # id -> (body after the header, batched?)
    "ok": ("int main(){ long long a, b; cin >> a >> b; cout << a + b << endl; return 0; }", True),
    "no_return": ("int main(){ long long a, b; cin >> a >> b; cout << a + b << endl; }", True),
    "exit_in_function": ("void f(int s){ cout << s << endl; exit(0); } "
                         "int main(){ " + RD + "f(a + b); return 5; }", True),
    "wrong_answer": ("int main(){ " + RD + "if (a == 5) cout << 0 << endl; else " + SUM + "}", True),
    "exit_status": ("int main(){ " + RD + "if (a < 0) return 3; " + SUM + "}", True),
    "segfault": ("int *p; int main(){ " + RD + "if (a == -1) *p = 1; " + SUM + "}", True),
    "timeout": ("int main(){ " + RD + "if (a == 5) while (true) {} " + SUM + "}", True),
    "printf_and_cout": ('int main(){ int a, b; scanf("%d %d", &a, &b); printf("%d", a + b); cout << endl; }', True),
    "small_static": ("int arr[100000]; int main(){ " + RD + "arr[5] = a + b; cout << arr[5] << endl; }", True),
    "loop": ("int main(){ " + RD + "for (int i = 0; i < 1000; i++) a ^= 1; cout << a + b << '\\n'; }", True),
    "compile_error": ("int main(){ cout << undefined_thing; }", False),
    "link_error": ("int g(int); int main(){ return g(1); }", False),
    "ambiguous_count": ("int count; int main(){ count = 1; cout << count << endl; }", False),
    "user_pow": ("long long pow(long long a, long long b){ return 1; } "
                 "int main(){ " + RD + "cout << pow(2, 0.5) << endl; }", False),
    "define": ("#define SUM(a, b) ((a) + (b))\nint main(){ " + RD + "cout << SUM(a, b) << endl; }", False),
    "crashing_initialiser": ("int *q; int z = *q; int main(){ " + RD + SUM + "}", False),
    "printing_initialiser": ('struct P { P(){ cout << "x"; } } pp; int main(){ ' + RD + SUM + "}", False),
    "stdin_initialiser": ("int first_read = getchar(); int main(){ " + RD + SUM + "}", False),
    "unsync_initialiser": ("bool u = ios::sync_with_stdio(false); int main(){ " + RD + SUM + "}", False),
    "big_static": ("char big[20 << 20]; int main(){ " + RD + SUM + "}", False),
}


@needs_gpp
@pytest.mark.gpp
def test_batched_verdicts_equal_per_program_verdicts(tmp_path):
    exs = [Example(k, "", "", CASES) for k in PROGS]
    preds = {k: H + v[0] for k, v in PROGS.items()}
    alone, s_alone = Evaluator(workers=2, time_limit_s=1.0, cache_dir=tmp_path / "a", max_batch=0).evaluate(preds, exs)
    ev = Evaluator(workers=1, time_limit_s=1.0, cache_dir=tmp_path / "b")   # one worker: one batch of all
    batched, s_batched = ev.evaluate(preds, exs)
    assert _same(batched) == _same(alone)            # status, first failing case and detail
    assert s_alone["batched"] == 0
    # the point of the test: the batchable ones really ran from a batch binary, the others alone
    ran_batched = {k for k in PROGS if bc.cached(ev.compiler, preds[k]) is not None}
    assert ran_batched == {k for k, v in PROGS.items() if v[1]} and s_batched["batched"] == len(ran_batched)
    # a second evaluation reuses the cached batch binaries and agrees
    again, s_again = ev.evaluate(preds, exs)
    assert _same(again) == _same(alone) and s_again["batched"] == len(ran_batched)


@needs_gpp
@pytest.mark.gpp
def test_uninitialised_local_reads_what_it_reads_alone(tmp_path):
    """main runs on the stack it would have alone (the dispatcher jumps): an uninitialised local
    of main reads the same leftover as in the program's own binary."""
    code = "int main(){ int x[64]; long long s = 0; for (int i = 0; i < 64; i++) s += (x[i] == 0); cout << s << endl; }"
    exs = [Example(f"u{i}", "", "", (TestCase("", "64\n"),)) for i in range(3)]
    preds = {f"u{i}": H + f"int pad{i};\n" + code for i in range(3)}
    alone, _ = Evaluator(workers=1, cache_dir=tmp_path / "a", max_batch=0).evaluate(preds, exs)
    ev = Evaluator(workers=1, cache_dir=tmp_path / "b")
    batched, summary = ev.evaluate(preds, exs)
    assert summary["batched"] == 3 and batched == alone


@pytest.mark.data
@pytest.mark.skipif(DATA is None, reason="../shared/data not found (set COMPOSEDFT_DATA)")
@needs_gpp
def test_gold_sample_parity(tmp_path):
    rng = np.random.default_rng(1)
    spoc = load_spoc(DATA / "spoc" / "testw.tsv")
    sans = load_sanstype(DATA / "sanstype" / "val")
    exs = [spoc[i] for i in rng.choice(len(spoc), 6, replace=False)] + \
        [sans[i] for i in rng.choice(len(sans), 4, replace=False)]
    preds = {e.id: tgt_to_code(e.tgt) for e in exs}
    alone, _ = Evaluator(workers=2, cache_dir=tmp_path / "a", max_batch=0).evaluate(preds, exs)
    batched, summary = Evaluator(workers=2, cache_dir=tmp_path / "b").evaluate(preds, exs)
    assert _same(batched) == _same(alone) and summary["batched"] >= 2


@needs_gpp
@pytest.mark.gpp
def test_noop_headers_are_the_guarded_ones_stdcxx_includes(tmp_path):
    from simulations.code.compiler import Compiler
    c = Compiler(tmp_path)
    # iostream: included by bits/stdc++.h, guarded; cassert: re-includable by design; math.h adds
    # using-declarations to the global namespace; unistd.h is not part of bits/stdc++.h.
    assert bc.noop_headers(c, {"iostream", "vector", "cassert", "math.h", "unistd.h"}) == {"iostream", "vector"}
    assert bc.noop_headers(c, {"iostream", "unistd.h"}) == {"iostream"}    # from the cache


MARK = "/tmp/cft_batch_marker"
HOSTILE = {
    "infinite_loop": "int main(){ volatile long x = 0; while (true) x++; }",
    "memory_bomb": "int main(){ vector<char*> v; while (true) { char *p = new char[1 << 24]; "
                   "memset(p, 1, 1 << 24); v.push_back(p); } }",
    "output_flood": "int main(){ string s(1 << 16, 'x'); while (true) cout << s; }",
    "write_outside": f'int main(){{ FILE *f = fopen("{MARK}", "w"); if (f) {{ fputs("x", f); fclose(f); }} '
                     'cout << 1 << endl; }',
    "honest": "int main(){ cout << 1 << endl; }",
}


@needs_gpp
@pytest.mark.gpp
def test_hostile_programs_in_a_batch_get_their_per_program_verdicts(tmp_path):
    if os.path.exists(MARK):
        os.unlink(MARK)
    exs = [Example(k, "", "", (TestCase("", "1\n"),)) for k in HOSTILE]
    preds = {k: H + v for k, v in HOSTILE.items()}
    kw = dict(workers=1, time_limit_s=1.0, memory_bytes=256 << 20, output_bytes=1 << 20)
    alone, _ = Evaluator(cache_dir=tmp_path / "a", max_batch=0, **kw).evaluate(preds, exs)
    batched, summary = Evaluator(cache_dir=tmp_path / "b", **kw).evaluate(preds, exs)
    assert summary["batched"] == len(HOSTILE) and _same(batched) == _same(alone)
    assert [r["status"] for r in batched] == ["timeout", "runtime_error", "runtime_error", "ok", "ok"]
    if sandbox.capabilities()["namespaces"]:
        assert not os.path.exists(MARK)          # the jail has no host /tmp
