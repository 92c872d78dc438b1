"""Tokenizers and vocabulary (simulations.code.tokenizer)."""
import json

import pytest

from simulations.code.tokenizer import SPECIALS, Vocab, VocabError, lex_cpp, pseudo_tokenize

TRICKY = r'''#include <vector>
long long x = 1LL + 0x1F * 1e9 + 1.5e-3f; // comment $ ~
char c = '\n', q = '\''; string s = "a \" $ ~ b";
a >>= b; v.push_back(~x); if (a<=b&&c!=d) x->y++; vector<vector<int>> w;
'''


def test_lex_cpp_keeps_literals_and_pp_numbers():
    toks = lex_cpp(TRICKY)
    assert toks[:2] == ["#include", "<vector>"]
    for t in ["1LL", "0x1F", "1e9", "1.5e-3f", r"'\n'", r"'\''", r'"a \" $ ~ b"', ">>=", "~", "<=", "&&",
              "!=", "->", "++", ">>", "// comment $ ~"]:
        assert t in toks, t


def test_lex_cpp_space_join_is_a_fixed_point():
    # joining tokens with single spaces never merges or splits a token
    toks = [t for t in lex_cpp(TRICKY) if not t.startswith("//")]
    assert lex_cpp(" ".join(toks)) == toks


def test_lex_cpp_never_raises_on_garbage():
    for s in ['"unterminated', "'", "@@ ` \\", "\x00\x01", "/* open", "R\"x(", ""]:
        assert isinstance(lex_cpp(s), list)


def test_pseudo_tokenize():
    assert pseudo_tokenize('if cnt == 1, print "a b"') == ["if", "cnt", "==", "1", ",", "print", '"a b"']
    v = Vocab.build([["a", "b"]])  # the whitespace tokenizer splits on any whitespace
    assert v.decode_text(v.encode_text(" a  b\tc ")) == "a b <unk>"


def test_vocab_specials_encode_decode_roundtrip(tmp_path):
    v = Vocab.build([["b", "a", "b"], ["c", "b", "a"]])
    assert v.itos[:4] == list(SPECIALS) and (v.pad, v.bos, v.eos, v.unk) == (0, 1, 2, 3)
    assert v.itos[4:] == ["b", "a", "c"]  # by frequency, then alphabetically
    assert len(v) == 7
    ids = v.encode(["a", "zzz", "c"])
    assert ids == [v.stoi["a"], 3, v.stoi["c"]]
    assert v.decode([1] + ids + [2, v.stoi["b"]] + [0]) == ["a", "<unk>", "c"]  # stops at eos
    assert v.decode([0, 1, v.stoi["b"], 0]) == ["b"]
    p = tmp_path / "vocab.json"
    v.save(p)
    assert Vocab.load(p).itos == v.itos
    assert Vocab.build([["x", "y", "x"]], min_freq=2).itos[4:] == ["x"]


def test_vocab_load_errors_name_the_file(tmp_path):
    with pytest.raises(VocabError, match="missing.json"):
        Vocab.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"itos": ["a", "b"]}))
    with pytest.raises(VocabError, match="bad.json"):
        Vocab.load(bad)
    bad.write_text("{not json")
    with pytest.raises(VocabError, match="bad.json"):
        Vocab.load(bad)
