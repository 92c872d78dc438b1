"""Renaming augmentation of SANSTYPE pairs (simulations/code/augment.py): one consistent
bijection of variables and string literals across pseudocode and code, nothing else touched."""
from __future__ import annotations

import re

import numpy as np
import pytest

from composedft.seeding import derive_seed
from simulations.code.augment import N_SYMBOLS, augment_pairs, random_renaming, rename
from simulations.code.config import SANSTYPE_CPU, ConfigError, finetuning_only
from simulations.code.sanstype import FIXED, generate_programs

IDENT = np.arange(N_SYMBOLS)


def _programs(n=40, ood=False):
    progs = generate_programs(n, seed=5, ood=ood, cfg=FIXED)
    return [p.src for p in progs], [p.tgt for p in progs]


def _alignment(a: str, b: str) -> dict[str, str]:
    """Token-by-token map a -> b, checked to be a function (an independent reading of the pair:
    whitespace tokens, with the punctuation that sticks to a name in the OOD templates split off)."""
    ta, tb = re.findall(r'[A-Za-z_0-9"]+|[^\sA-Za-z_0-9"]', a), re.findall(r'[A-Za-z_0-9"]+|[^\sA-Za-z_0-9"]', b)
    assert len(ta) == len(tb)
    out: dict[str, str] = {}
    for x, y in zip(ta, tb):
        assert out.setdefault(x, y) == y, f"{x} maps to both {out[x]} and {y}"
    return out


def test_identity_permutation_changes_nothing():
    srcs, tgts = _programs()
    for t in srcs + tgts:
        assert rename(t, IDENT, IDENT) == t


def test_swap_is_simultaneous_not_chained():
    vp = IDENT.copy()
    vp[[1, 2]] = [2, 1]
    sp = IDENT.copy()
    sp[[0, 9]] = [9, 0]
    assert rename('var_1 = var_2 + "str_0" ; cout << "str_9" ;', vp, sp) == 'var_2 = var_1 + "str_9" ; cout << "str_0" ;'


def test_word_boundaries_and_ood_punctuation():
    vp = (IDENT + 1) % N_SYMBOLS  # i -> i+1 mod 10
    assert rename("read var_3, var_9;", vp, IDENT) == "read var_4, var_0;"
    assert rename("myvar_3 var_3x str_3", vp, vp) == "myvar_3 var_3x str_3"  # not symbols: untouched


def test_out_of_range_symbol_is_refused():
    with pytest.raises(ValueError, match="symbol index 12"):
        rename("set var_12 to 3;", IDENT, IDENT)


@pytest.mark.parametrize("ood", [False, True])
def test_renamed_pair_is_one_bijection_across_src_and_tgt(ood):
    srcs, tgts = _programs(ood=ood)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        vp, sp = random_renaming(100 + i)
        rs, rt = rename(s, vp, sp), rename(t, vp, sp)
        m = {**_alignment(s, rs), **_alignment(t, rt)}
        both = _alignment(s + " " + t, rs + " " + rt)  # one map for src and tgt together
        assert both == m
        for k, v in both.items():
            if re.fullmatch(r"var_\d", k):
                assert v == f"var_{vp[int(k[4:])]}"
            elif re.fullmatch(r'"str_\d"', k):
                assert v == f'"str_{sp[int(k[5:-1])]}"'
            else:
                assert v == k  # keywords, types, numbers, operators: unchanged
        assert len(set(both.values())) == len(both)  # injective: no two symbols collapse
        inv_v, inv_s = np.argsort(vp), np.argsort(sp)
        assert rename(rs, inv_v, inv_s) == s and rename(rt, inv_v, inv_s) == t


def test_augment_pairs_layout_and_determinism():
    srcs, tgts = _programs(12)
    s0, t0 = augment_pairs(srcs, tgts, 0, seed=1)
    assert (s0, t0) == (srcs, tgts)
    s3, t3 = augment_pairs(srcs, tgts, 3, seed=1)
    assert len(s3) == len(t3) == 4 * len(srcs)
    assert s3[:12] == srcs and t3[:12] == tgts
    assert (s3, t3) == augment_pairs(srcs, tgts, 3, seed=1)
    assert s3 != augment_pairs(srcs, tgts, 3, seed=2)[0]
    assert sum(a != b for a, b in zip(s3[12:24], srcs)) >= 10  # renamings are not mostly the identity
    with pytest.raises(ValueError, match="copies"):
        augment_pairs(srcs, tgts, -1, seed=1)
    with pytest.raises(ValueError, match="targets"):
        augment_pairs(srcs, tgts[:-1], 1, seed=1)


def test_config_field_is_finetuning_only_and_sanstype_only():
    assert finetuning_only("augment_renames")
    from dataclasses import replace
    with pytest.raises(ConfigError, match="augment_renames"):
        replace(SANSTYPE_CPU, dataset="spoc", augment_renames=2)


def test_corpora_appends_renamed_copies_and_leaves_validation_alone(tmp_path):
    from dataclasses import replace
    from types import SimpleNamespace

    from simulations.code.context import write_examples
    from simulations.code.stages import corpora

    progs = generate_programs(10, seed=2, cfg=FIXED)
    write_examples(tmp_path / "train.jsonl", progs[:6])
    write_examples(tmp_path / "val.jsonl", progs[6:])
    words: dict[str, int] = {}
    vocab = SimpleNamespace(encode_text=lambda s: [words.setdefault(w, len(words) + 4) for w in s.split()])
    for copies in (0, 2):
        ctx = SimpleNamespace(cfg=replace(SANSTYPE_CPU, augment_renames=copies), rd=SimpleNamespace(data_dir=tmp_path))
        train, val = corpora(ctx, vocab, denoiser=False)
        assert len(train) == 6 * (copies + 1) and len(val) == 4
        want_s, want_t = augment_pairs([p.src for p in progs[:6]], [p.tgt for p in progs[:6]], copies,
                                       seed=derive_seed(0, "augment"))
        assert train.tgt == tuple(tuple(vocab.encode_text(t)) for t in want_t)
        assert val.tgt == tuple(tuple(vocab.encode_text(p.tgt)) for p in progs[6:])


def test_split_source_punct_uses_the_codes_pieces_and_keeps_every_word():
    from simulations.code.tokenizer import split_source_punct

    src = ' $ read var_1, var_2;  $ add "str_7" to the beginning of var_1;  $ print var_3;  $ '
    out = split_source_punct(src)
    assert out == ' $ read var_1 , var_2 ;  $ add "str_7" to the beginning of var_1 ;  $ print var_3 ;  $ '
    assert out.split() == [t for w in src.split() for t in re.findall(r"[^;,]+|[;,]", w)]  # only splits
    assert split_source_punct(out) == out  # idempotent: g's outputs may be normalised twice
    srcs, _ = _programs(20, ood=True)
    for s in srcs:  # every variable is followed by a space or the end: "var_k" is one word
        assert all(re.fullmatch(r"var_\d", w) or "var_" not in w for w in split_source_punct(s).split())


def test_split_source_punct_is_sanstype_only_and_reaches_the_corpora(tmp_path):
    from dataclasses import replace
    from types import SimpleNamespace

    from simulations.code.context import write_examples
    from simulations.code.stages import corpora
    from simulations.code.tokenizer import split_source_punct

    with pytest.raises(ConfigError, match="split_source_punct"):
        replace(SANSTYPE_CPU, dataset="spoc", augment_renames=0, split_source_punct=True)
    assert finetuning_only("split_source_punct")
    progs = generate_programs(8, seed=3, cfg=FIXED)
    write_examples(tmp_path / "train.jsonl", progs[:5])
    write_examples(tmp_path / "val.jsonl", progs[5:])
    seen = []
    vocab = SimpleNamespace(encode_text=lambda s: seen.append(s) or [4])
    for flag in (False, True):
        seen.clear()
        ctx = SimpleNamespace(cfg=replace(SANSTYPE_CPU, augment_renames=0, split_source_punct=flag),
                              rd=SimpleNamespace(data_dir=tmp_path))
        corpora(ctx, vocab, denoiser=False)
        want = [split_source_punct(p.src) if flag else p.src for p in progs]
        assert [s for s in seen if s in want] == want[:5] + want[5:]  # train sources, then val sources
        assert all(p.tgt in seen for p in progs)  # targets untouched
