"""Example formats: SANSTYPE files, SPoC TSV and test cases, detokenization."""
import numpy as np
import pytest

from simulations.code.data import (DataFormatError, Example, TestCase, default_data_dir, load_sanstype,
                                   load_spoc, tgt_to_code, write_sanstype)
from simulations.code.spoc import parse_testcases, read_spoc_tsv
from simulations.code.tokenizer import lex_cpp

DATA = default_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="../shared/data not found (set COMPOSEDFT_DATA)")

TSV = ("text\tcode\tworkerid\tprobid\tsubid\tline\tindent\n"
       "\tint main() {\t1\t1A\t7\t0\t0\n"
       "read n\tint n; cin >> n;\t1\t1A\t7\t1\t1\n"
       "if n > 0 print \"$ ~\"\tif (n > 0) cout << \"$ ~\" << ~n << endl;\t1\t1A\t7\t2\t1\n"
       "\t}\t1\t1A\t7\t3\t0\n")
CASES = "3\n###ENDINPUT###\n$ ~-4\n###ENDOUTPUT###\n-1\n###ENDINPUT###\n###ENDOUTPUT###\n"


def _spoc_dir(tmp_path, tsv=TSV):
    (tmp_path / "testcases" / "1A").mkdir(parents=True)
    (tmp_path / "testcases" / "1A" / "1A_testcases.txt").write_text(CASES)
    (tmp_path / "x.tsv").write_text(tsv)
    return tmp_path / "x.tsv"


def test_spoc_reader_formats_and_detokenizes(tmp_path):
    (ex,) = load_spoc(_spoc_dir(tmp_path))
    assert ex.id == "1A-7-1" and ex.probid == "1A"
    assert ex.src == 'TAB1 read n ; $ TAB1 if n > 0 print "$ ~" ;'
    assert ex.tgt.split(" $ ")[0] == "int main ( ) {"
    assert ex.tgt.split(" $ ")[2].startswith("~ if ( n > 0 )")
    code = tgt_to_code(ex.tgt)
    assert code.startswith("#include <bits/stdc++.h>\nusing namespace std;\n")
    assert '"$ ~"' in code and "<< ~ n <<" in code  # literal and operator ~ survive
    assert ex.cases == (TestCase("3\n", "$ ~-4\n"), TestCase("-1\n", ""))


@pytest.mark.parametrize("bad, where", [
    ("text\tcode\n", ":1:"),
    (TSV.replace("\t1\t1A\t7\t1\t1\n", "\t1\t1A\t7\t1\n"), ":3:"),
    (TSV.replace("\t1\t1A\t7\t2\t1\n", "\t1\t1A\t7\tx\t1\n"), ":4:"),
    (TSV.replace("\t1\t1A\t7\t2\t1\n", "\t1\t1A\t7\t5\t1\n"), ":4:"),
])
def test_spoc_malformed_tsv_names_file_and_line(tmp_path, bad, where):
    p = tmp_path / "bad.tsv"
    p.write_text(bad)
    with pytest.raises(DataFormatError, match=rf"bad\.tsv{where}"):
        read_spoc_tsv(p)


def test_testcase_parser_errors(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("1\n###ENDINPUT###\n2\n")
    with pytest.raises(DataFormatError, match=r"t\.txt:3"):
        parse_testcases(p)
    p.write_text("2\n###ENDOUTPUT###\n")
    with pytest.raises(DataFormatError, match=r"t\.txt:2"):
        parse_testcases(p)


def test_tgt_to_code_never_crashes_on_token_soup():
    rng = np.random.default_rng(0)
    vocab = ["$", "~", "{", "}", ";", '"', "'", "int", "x", "//", "/*", "#include", "<<", "\\", "0", "é"]
    for _ in range(300):
        s = " ".join(rng.choice(vocab, size=int(rng.integers(0, 40))))
        out = tgt_to_code(s)
        assert out.startswith("#include <bits/stdc++.h>")


def test_tgt_to_code_sanstype_in_block_markers():
    tgt = "int main () { $ if ( b ) { ~ int x = 1 ; ~ int y ; y = 2 ; int temp = x ; x = y ; y = temp ; } $ return 0; }"
    code = tgt_to_code(tgt)
    assert "~" not in code and "{ int x = 1 ; int y ;" in code


def test_sanstype_write_load_roundtrip_and_errors(tmp_path):
    exs = [Example("a-0", " $ set var_0 to 1;  $ ", "int main () { $ cout << var_0 ; $ return 0; }",
                   (TestCase("5\nstr_1\n", "5str_1"),)),
           Example("a-1", " $ print x;  $ ", "int main () { $ return 0; }", (TestCase("", "x"),))]
    write_sanstype(tmp_path / "a", exs)
    assert (tmp_path / "a.inp").read_text() == "5\tstr_1\n\n"
    back = load_sanstype(tmp_path / "a")
    assert [(e.id, e.src, e.tgt, e.cases) for e in back] == [(e.id, e.src, e.tgt, e.cases) for e in exs]
    (tmp_path / "a.out").write_text("only one line\n")
    with pytest.raises(DataFormatError, match=r"a\.out"):
        load_sanstype(tmp_path / "a")
    with pytest.raises(DataFormatError, match=r"nope\.src"):
        load_sanstype(tmp_path / "nope")


@pytest.mark.data
@needs_data
def test_shared_data_loads():
    train = load_sanstype(DATA / "sanstype" / "train")
    assert len(train) == 1000 and all(len(e.cases) == 1 for e in train)
    assert train[0].cases[0] == TestCase("83\nstr_0\nstr_5\n", "170str_2str_0str_31")
    spoc = load_spoc(DATA / "spoc" / "testw.tsv")
    assert len(spoc) == 1749 and len({e.probid for e in spoc}) == 471
    by_prob = {}
    for e in spoc:  # one problem's cases are loaded once and shared
        assert by_prob.setdefault(e.probid, e.cases) is e.cases
    # target lexing drops nothing but layout: tokens of tgt lines == tokens of the code lines
    for e in spoc[:200]:
        toks = [t for t in lex_cpp(e.tgt) if t not in ("$", "~")]
        assert toks == [t for t in lex_cpp(e.code) if not t.startswith(("//", "/*"))]
