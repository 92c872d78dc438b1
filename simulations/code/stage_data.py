"""The pipeline's ``data`` and ``vocab`` stages (see :mod:`simulations.code.pipeline`).

``data`` writes the labeled / val / ID / OOD examples and the denoiser's (corrupt(y), y) pairs
into ``data/``; ``vocab`` builds the joint src+tgt vocabulary (joint so that Π can initialise f).
Each returns timing info, or None when its output already exists (a re-run resumes).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from composedft.io import DataFileError, atomic_write_json, atomic_write_jsonl, read_json, read_jsonl
from composedft.seeding import derive_seed

from .config import CodeConfig
from .context import Context, RunFolderError, read_examples, write_examples
from .data import default_data_dir
from .decode import max_len_from_data
from .tokenizer import Vocab


def load_vocab(ctx: Context) -> Vocab:
    """The run folder's ``vocab.json``; missing or unreadable raises naming it."""
    path = ctx.rd / "vocab.json"
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the 'vocab' stage first)")
    from .tokenizer import VocabError
    try:
        return Vocab.load(path)
    except VocabError as err:
        raise RunFolderError(str(err)) from None


def data_info(ctx: Context) -> dict:
    """The data stage's ``data/info.json`` (sizes and the decode length); missing raises naming it."""
    path = ctx.rd / "data" / "info.json"
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the 'data' stage first)")
    return read_json(path)


# ---- stage: data ---------------------------------------------------------------------------------

def _data_dir(cfg: CodeConfig) -> Path | None:
    return Path(cfg.data_dir) if cfg.data_dir else default_data_dir()


def _sanstype_data(cfg: CodeConfig):
    from . import corrupt, sanstype
    gen = sanstype.REFERENCE  # the shared train files follow the released generator's distribution
    root = _data_dir(cfg)
    shared = root / "sanstype" if root is not None else None
    if shared is not None and (shared / "train.src").exists():
        from .data import load_sanstype
        train = load_sanstype(shared / "train")[:cfg.n_labeled]
        val = load_sanstype(shared / "val")[:cfg.n_val]
        source = str(shared)
    else:
        train = sanstype.generate(cfg.n_labeled, derive_seed(cfg.seed, "train"), id_prefix="train-", cfg=gen)
        val = sanstype.generate(cfg.n_val, derive_seed(cfg.seed, "val"), id_prefix="val-", cfg=gen)
        source = "generated"
    test_id = sanstype.generate(cfg.n_test_id, derive_seed(cfg.seed, "test_id"), id_prefix="id-", cfg=gen)
    test_ood = sanstype.generate(cfg.n_test_ood, derive_seed(cfg.seed, "test_ood"), ood=True, id_prefix="ood-", cfg=gen)
    unlabeled = sanstype.generate_programs(cfg.n_unlabeled, derive_seed(cfg.seed, "unlabeled"), cfg=gen)
    rng = np.random.default_rng(derive_seed(cfg.seed, "corrupt"))
    pairs = [(corrupt.corrupt_sanstype(e.tgt, rng), e.tgt) for e in unlabeled]
    return train, val, test_id, test_ood, pairs, {"labeled_source": source, "generator": "reference"}


def _spoc_data(cfg: CodeConfig):
    from . import corrupt
    from .data import load_spoc
    root = _data_dir(cfg)
    if root is None or not (root / "spoc" / "train-eval.tsv").exists():
        raise DataFileError(f"SPoC data not found under {root or '../shared/data'} (set --data_dir or $COMPOSEDFT_DATA)")
    tc = root / "spoc" / "testcases"
    programs = load_spoc(root / "spoc" / "train-eval.tsv", tc) + load_spoc(root / "spoc" / "train-test.tsv", tc)
    rng = np.random.default_rng(derive_seed(cfg.seed, "spoc-split"))
    probs = sorted({e.probid for e in programs})
    held = set(rng.permutation(probs)[:cfg.spoc_ood_problems].tolist())
    ood_proxy = [e for e in programs if e.probid in held]
    rest = [e for e in programs if e.probid not in held]
    order = rng.permutation(len(rest))
    n_val = max(1, int(round(cfg.spoc_val_frac * len(rest))))
    val = [rest[i] for i in order[:n_val]]
    train = [rest[i] for i in order[n_val:]]
    if cfg.spoc_max_tgt_tokens:
        train = [e for e in train if len(e.tgt.split()) <= cfg.spoc_max_tgt_tokens]
    test_id = load_spoc(root / "spoc" / "testw.tsv", tc)
    if cfg.n_test_id:
        test_id = [test_id[i] for i in sorted(rng.permutation(len(test_id))[:cfg.n_test_id])]
    if cfg.spoc_testp:
        test_ood, ood_name = load_spoc(cfg.spoc_testp, tc), "testp"
    else:
        test_ood, ood_name = ood_proxy, "held-out-problems proxy"
    if cfg.n_test_ood:
        test_ood = [test_ood[i] for i in sorted(rng.permutation(len(test_ood))[:cfg.n_test_ood])]
    # Denoiser data: corruptions of the TRAINING programs only (never val/test code).
    crng = np.random.default_rng(derive_seed(cfg.seed, "corrupt"))
    pairs = []
    for e in train:
        for _ in range(cfg.spoc_corruptions):
            res = corrupt.corrupt_spoc(e.tgt, crng)  # kept only if it fails to compile (DrRepair)
            if res is not None:
                pairs.append((res[0], e.tgt))
        pairs.append((e.tgt, e.tgt))  # identity pairs: Π must leave correct code alone
    pairs = [pairs[i] for i in crng.permutation(len(pairs))]
    return train, val, test_id, test_ood, pairs, {"ood": ood_name, "held_out_problems": sorted(held)}


def stage_data(ctx: Context):
    cfg, d = ctx.cfg, ctx.rd / "data"
    if (d / "info.json").exists():
        return None
    maker = _sanstype_data if cfg.dataset == "sanstype" else _spoc_data
    train, val, test_id, test_ood, pairs, extra = maker(cfg)
    n_dval = max(1, len(pairs) // 20)  # 5% of denoiser pairs for its model selection
    for name, ex in (("train", train), ("val", val), ("test_id", test_id), ("test_ood", test_ood)):
        write_examples(d / f"{name}.jsonl", ex)
    atomic_write_jsonl(d / "denoise_train.jsonl", [{"src": s, "tgt": t} for s, t in pairs[n_dval:]])
    atomic_write_jsonl(d / "denoise_val.jsonl", [{"src": s, "tgt": t} for s, t in pairs[:n_dval]])
    lengths = [len(e.tgt.split()) for part in (train, val, test_id, test_ood) for e in part]
    lengths += [len(t.split()) for _, t in pairs]
    info = {"dataset": cfg.dataset, "n": {"train": len(train), "val": len(val), "test_id": len(test_id),
                                          "test_ood": len(test_ood), "denoise": len(pairs)},
            "max_target_tokens": max(lengths), "max_decode_len": max_len_from_data(lengths, cfg.max_len_factor),
            **extra}
    atomic_write_json(d / "info.json", info)  # written last: marks the stage complete
    return {"n": info["n"]}


def read_pairs(path: Path) -> tuple[list[str], list[str]]:
    """(sources, targets) of a denoiser-pair JSONL written by the data stage."""
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the 'data' stage first)")
    recs = read_jsonl(path)
    try:
        return [r["src"] for r in recs], [r["tgt"] for r in recs]
    except KeyError as err:
        raise RunFolderError(f"{path}: records need 'src' and 'tgt' (missing {err})") from None


def stage_vocab(ctx: Context):
    path = ctx.rd / "vocab.json"
    if path.exists():
        return None
    data_info(ctx)
    train = read_examples(ctx.rd / "data" / "train.jsonl")
    ds, dt = read_pairs(ctx.rd / "data" / "denoise_train.jsonl")
    toks = [s.split() for s in [e.src for e in train] + [e.tgt for e in train] + ds + dt]
    vocab = Vocab.build(toks, min_freq=1)
    vocab.save(path)
    return {"size": len(vocab)}
