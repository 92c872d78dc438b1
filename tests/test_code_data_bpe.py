"""SentencePiece BPE (simulations.code.tokenizer.BPETokenizer): exact round trips, no <unk>, files."""
from __future__ import annotations

import pytest

from simulations.code.data import default_data_dir, load_sanstype, load_spoc, tgt_to_code
from simulations.code.sanstype import REFERENCE, generate_programs
from simulations.code.tokenizer import SPECIALS, BPETokenizer, Vocab, VocabError, unk_rate

DATA = default_data_dir()


def _sanstype_texts(n=400, seed=0):
    progs = generate_programs(n, seed, cfg=REFERENCE)
    return [e.src for e in progs] + [e.tgt for e in progs]


def test_specials_ids_and_deterministic_training():
    texts = _sanstype_texts()
    a, b = BPETokenizer.train(texts, 300), BPETokenizer.train(texts, 300)
    assert a.proto == b.proto and len(a) == 300  # same data, same model, byte for byte
    assert tuple(a.sp.id_to_piece(i) for i in range(4)) == SPECIALS
    ids = a.encode_text(texts[1])
    assert a.decode_text(ids + [2, 7, 7]) == texts[1]  # stops at <eos>
    assert a.decode_text([1] + ids + [0]) == texts[1]  # drops <bos>/<pad>


def test_ood_programs_have_no_unk_and_append_prepend_differ():
    """Unseen OOD templates ("stdout", "end;") are spelled with known pieces; whitespace tokens are not."""
    tok = BPETokenizer.train(_sanstype_texts(), 600)
    ood = generate_programs(300, 1, ood=True, cfg=REFERENCE)
    texts = [e.src for e in ood] + [e.tgt for e in ood]
    assert unk_rate(tok, texts) == 0.0
    assert all(tok.decode_text(tok.encode_text(t)) == t for t in texts)
    assert tok.encode_text("add s to v end;") != tok.encode_text("add s to v beginning;")
    ws = Vocab.build([t.split() for t in _sanstype_texts()])
    assert unk_rate(ws, texts) > 0  # the comparison tokenizer cannot say it


def test_save_load_and_bad_files(tmp_path):
    tok = BPETokenizer.train(_sanstype_texts(100), 120)
    tok.save(tmp_path / "t.model")
    again = BPETokenizer.load(tmp_path / "t.model")
    assert again.sha256() == tok.sha256() and again.encode_text("int x ;") == tok.encode_text("int x ;")
    with pytest.raises(VocabError, match="t.missing: SentencePiece model not found"):
        BPETokenizer.load(tmp_path / "t.missing")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(VocabError, match="bad.model"):
        BPETokenizer.load(tmp_path / "bad.model")


@pytest.mark.data
def test_round_trip_of_every_gold_program_in_the_shared_data():
    """BPE trained on the training files only; every gold program of every file (train, val, TestW)
    decodes to the same string, hence to the same C++ (tgt_to_code), with no <unk>."""
    sans = {s: load_sanstype(DATA / "sanstype" / s) for s in ("train", "val")}
    tok = BPETokenizer.train([e.src for e in sans["train"]] + [e.tgt for e in sans["train"]], 600)
    spoc = {s: load_spoc(DATA / "spoc" / f"{s}.tsv") for s in ("train-eval", "train-test", "testw")}
    train = spoc["train-eval"] + spoc["train-test"]
    stok = BPETokenizer.train([e.src for e in train] + [e.tgt for e in train], 10000, byte_fallback=True)
    for t, parts in ((tok, sans), (stok, spoc)):
        for name, exs in parts.items():
            bad = [e.id for e in exs if t.decode_text(t.encode_text(e.tgt)) != e.tgt]
            assert not bad, (name, bad[:5])
            assert unk_rate(t, [e.tgt for e in exs]) == 0.0 and unk_rate(t, [e.src for e in exs]) == 0.0, name
    e = spoc["testw"][0]
    assert tgt_to_code(stok.decode_text(stok.encode_text(e.tgt))) == tgt_to_code(e.tgt)
