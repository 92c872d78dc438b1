"""Evaluator: status classification, first failing case, caching, summary, JSONL input, gold
round trip (detokenized gold programs compile and pass their tests)."""
import json
import shutil
import struct

import numpy as np
import pytest

from simulations.code.data import Example, TestCase, default_data_dir, load_sanstype, load_spoc, tgt_to_code
from simulations.code.compiler import static_link_ok
from simulations.code.evaluator import DEFAULT_FLAGS, Evaluator, read_predictions

pytestmark = [pytest.mark.gpp, pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")]
DATA = default_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="../shared/data not found (set COMPOSEDFT_DATA)")

H = "#include <bits/stdc++.h>\nusing namespace std;\n"
CASES = (TestCase("1 2\n", "3\n"), TestCase("5 5\n", "10\n"), TestCase("-1 1\n", "0\n"))
PROGS = {
    "ok": H + "int main(){long long a,b; cin>>a>>b; cout<<a+b<<endl;}",
    "compile_error": H + "int main(){ cout << undefined_thing; }",
    "wrong_answer": H + "int main(){int a,b; cin>>a>>b; if(a==5) cout<<0<<endl; else cout<<a+b<<endl;}",
    "runtime_error": H + "int main(){int a,b; cin>>a>>b; if(a<0) return 3; cout<<a+b<<endl;}",
    "timeout": H + "int main(){int a,b; cin>>a>>b; if(a==5) while(true){} cout<<a+b<<endl;}",
    "segfault": H + "int main(){int a,b; cin>>a>>b; int *p=nullptr; if(a==-1) *p=1; cout<<a+b<<endl;}",
}
EXPECT = {"ok": ("ok", None), "compile_error": ("compile_error", None), "wrong_answer": ("wrong_answer", 1),
          "runtime_error": ("runtime_error", 2), "timeout": ("timeout", 1), "segfault": ("runtime_error", 2),
          "missing": ("missing", None)}


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator(workers=2, time_limit_s=1.0)


def test_statuses_and_summary(evaluator):
    exs = [Example(k, "", "", CASES) for k in list(PROGS) + ["missing"]]
    records, summary = evaluator.evaluate(PROGS, exs)
    got = {r["id"]: (r["status"], r["first_failing_case"]) for r in records}
    assert got == EXPECT
    assert [r["id"] for r in records] == [e.id for e in exs]
    assert summary["n"] == 7 and summary["ok"] == 1 and summary["exec_acc"] == pytest.approx(1 / 7)
    assert summary["compile_rate"] == pytest.approx(5 / 7)
    assert summary["counts"] == {"ok": 1, "compile_error": 1, "runtime_error": 2, "wrong_answer": 1,
                                 "timeout": 1, "missing": 1}
    assert summary["flags"] == list(DEFAULT_FLAGS) and summary["compiler"].startswith("g++")
    assert summary["link_flags"] == (["-static"] if static_link_ok("g++") else [])
    assert "expected '10\\n', got '0\\n'" in next(r for r in records if r["id"] == "wrong_answer")["detail"]


def test_single_worker_path_agrees_and_cache_hits(tmp_path):
    ev = Evaluator(workers=1, time_limit_s=1.0, cache_dir=tmp_path)
    exs = [Example(k, "", "", CASES) for k in ("ok", "compile_error", "runtime_error")]
    recs, _ = ev.evaluate(PROGS, exs)
    assert [r["status"] for r in recs] == ["ok", "compile_error", "runtime_error"]
    assert len(list((tmp_path / "bin").rglob("*"))) >= 3   # a binary, a cached error, their dirs
    assert len(list((tmp_path / "pch").glob("*/bits/stdc++.h.gch"))) == 1
    recs2, _ = ev.evaluate(PROGS, exs)
    assert recs2 == recs


def test_an_evaluator_without_pch_after_one_whose_cache_was_deleted(tmp_path):
    # The sandbox's binds are process-wide: a deleted cache's /pch must not break the next jail.
    exs = [Example(k, "", "", CASES) for k in ("ok", "compile_error")]
    first = tmp_path / "first"
    assert [r["status"] for r in Evaluator(workers=1, cache_dir=first).evaluate(PROGS, exs)[0]] == ["ok", "compile_error"]
    shutil.rmtree(first)
    recs, summary = Evaluator(workers=1, cache_dir=tmp_path / "second", use_pch=False).evaluate(PROGS, exs)
    assert [r["status"] for r in recs] == ["ok", "compile_error"] and summary["pch"] is False


def _has_interpreter(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF asks for a dynamic loader: a PT_INTERP (type 3) program
    header. (A static glibc still contains the string "ld-linux", so grepping for it misleads.)"""
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    return any(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] == 3 for i in range(phnum))


@pytest.mark.skipif(not static_link_ok("g++"), reason="no static libstdc++/libc here")
@pytest.mark.parametrize("max_batch", [0, 48], ids=["alone", "batched"])
def test_static_and_dynamic_binaries_get_the_same_verdicts(tmp_path, max_batch):
    # Static linking only changes how a binary starts; every verdict and detail must stay.
    exs = [Example(k, "", "", CASES) for k in PROGS]
    got = {}
    for static in (True, False):
        ev = Evaluator(workers=1, time_limit_s=1.0, cache_dir=tmp_path / str(static), max_batch=max_batch, static=static)
        got[static], _ = ev.evaluate(PROGS, exs)
        binaries = [p for p in (tmp_path / str(static)).rglob("*") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF"]
        assert binaries and all(_has_interpreter(p.read_bytes()) != static for p in binaries)  # linked as asked
    assert got[True] == got[False]
    assert {r["id"]: (r["status"], r["first_failing_case"]) for r in got[True]} == {k: EXPECT[k] for k in PROGS}


def test_exact_output_comparison(evaluator):
    exs = [Example("x", "", "", (TestCase("", "1\n"),))]
    for code, status in [("int main(){cout<<1<<endl;}", "ok"), ("int main(){cout<<1;}", "wrong_answer"),
                         ("int main(){cout<<1<<\" \\n\";}", "wrong_answer")]:
        (r,), _ = evaluator.evaluate({"x": H + code}, exs)
        assert r["status"] == status, code


def test_read_predictions_errors(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"id": "a", "code": "x"}) + "\n\n" + json.dumps({"id": "b"}) + "\n")
    with pytest.raises(ValueError, match=r"p\.jsonl:3"):
        read_predictions(p)
    p.write_text(json.dumps({"id": "a", "code": "x"}) + "\n")
    assert read_predictions(p) == {"a": "x"}


def _gold_roundtrip(examples):
    ev = Evaluator()
    recs, summary = ev.evaluate({e.id: tgt_to_code(e.tgt) for e in examples}, examples)
    bad = [r for r in recs if r["status"] != "ok"]
    return bad, summary


@pytest.mark.data
@needs_data
def test_gold_roundtrip_sample():
    """A sample of gold programs, detokenized from .tgt, compiles and passes all their tests."""
    rng = np.random.default_rng(0)
    spoc = load_spoc(DATA / "spoc" / "train-eval.tsv")
    sans = load_sanstype(DATA / "sanstype" / "val")
    sample = [spoc[i] for i in rng.choice(len(spoc), 8, replace=False)] + \
             [sans[i] for i in rng.choice(len(sans), 8, replace=False)]
    bad, _ = _gold_roundtrip(sample)
    assert not bad, bad


@pytest.mark.slow
@pytest.mark.data
@needs_data
@pytest.mark.parametrize("name", ["sanstype/train", "sanstype/val", "spoc/train-eval.tsv",
                                  "spoc/train-test.tsv", "spoc/testw.tsv"])
def test_gold_roundtrip_full(name):
    """Every gold program of the shared data (slow: ~5,300 programs). SPoC: at most 1% may fail,
    each for a reason listed by check-gold (see the report); SANSTYPE: none."""
    exs = load_spoc(DATA / name) if name.endswith(".tsv") else load_sanstype(DATA / name)
    bad, summary = _gold_roundtrip(exs)
    assert summary["exec_acc"] >= (0.99 if name.endswith(".tsv") else 1.0), bad


def test_a_compile_error_detail_starts_with_the_first_error(tmp_path):
    # A page of template notes after it must not push the first error out of the detail.
    code = ("#include <bits/stdc++.h>\nusing namespace std;\nint main(){ undeclared_x = 1; valarray<int> a; string s; auto z = a && s; auto w = a || s;"
            " auto v = a + s; }")
    recs, _ = Evaluator(workers=1, cache_dir=tmp_path).evaluate({"p": code}, [Example("p", "", "", CASES)])
    assert recs[0]["status"] == "compile_error" and "undeclared_x" in recs[0]["detail"]
    assert len((next((tmp_path / "bin").rglob("*.err"))).read_text()) > 4000   # the case this is about
