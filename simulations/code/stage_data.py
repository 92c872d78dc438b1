"""The pipeline's ``data`` and ``vocab`` stages (see :mod:`simulations.code.pipeline`).

``data`` writes the labeled / val / ID / OOD examples and the denoiser's (corrupt(y), y) pairs
into ``data/``; ``vocab`` trains the joint src+tgt tokenizer on training data only (joint so that
Π can initialise f; docs/code-pipeline.md §1) and measures the ``<unk>`` rate of every split.
Each returns timing info, or None when its output already exists (a re-run resumes).

Test splits (docs/code-pipeline.md §4): ``test_id`` / ``test_ood`` (a SANSTYPE split prefix or a
SPoC TSV, every program with test cases) replace the default splits when set. SPoC defaults: ID =
TestW programs of problems seen in training; OOD = programs of problems held out of training.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from composedft.io import DataFileError, atomic_write_json, atomic_write_jsonl, read_json, read_jsonl
from composedft.seeding import derive_seed

from .config import CodeConfig, stage_seed
from .context import Context, RunFolderError, read_examples, write_examples
from .data import DataFormatError, default_data_dir, is_spoc_path, load_sanstype, load_spoc
from .decode import EOS, max_len_from_data
from .tokenizer import BPETokenizer, Vocab, VocabError, split_source_punct, unk_rate

SPLIT_NAMES = ("train", "val", "test_id", "test_ood")


def data_info(ctx: Context) -> dict:
    """The data stage's ``data/info.json`` (sizes, split files); missing raises naming it."""
    path = ctx.rd.data_path("info.json")
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the 'data' stage first)")
    return read_json(path)


def tokenizer_info(ctx: Context) -> dict:
    """The vocab stage's ``tokenizer.json`` (kind, size, model hash, decode cap, <unk> rates)."""
    path = ctx.rd.tokenizer_path("tokenizer.json")
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the 'vocab' stage first)")
    return read_json(path)


def source_text(cfg, text: str) -> str:
    """A pseudocode source as the fine-tuned models read it (``split_source_punct``); every place
    that encodes a source (training, validation, prediction, back-translation) goes through here."""
    return split_source_punct(text) if cfg.split_source_punct else text


def encode_sources(cfg, tok, texts) -> list[tuple[int, ...]]:
    """Pseudocode sources as f's decoder inputs: :func:`source_text`, the run's tokenizer, <eos>."""
    return [tuple(tok.encode_text(source_text(cfg, t))) + (EOS,) for t in texts]


def load_tokenizer(ctx: Context):
    """The run's tokenizer, checked against ``tokenizer.json`` (kind, size and, for BPE, the model's
    SHA-256): a model file that does not match the run's vocabulary raises naming the file."""
    info = tokenizer_info(ctx)
    kind = info.get("kind")
    if kind != ctx.cfg.tokenizer:
        raise RunFolderError(f"{ctx.rd / 'tokenizer.json'}: tokenizer '{kind}', but the run is configured "
                             f"with tokenizer={ctx.cfg.tokenizer}")
    path = ctx.rd.tokenizer_path("tokenizer.model" if kind == "bpe" else "vocab.json")
    try:
        tok = BPETokenizer.load(path) if kind == "bpe" else Vocab.load(path)
    except VocabError as err:
        raise RunFolderError(str(err)) from None
    if len(tok) != info.get("size") or (kind == "bpe" and tok.sha256() != info.get("sha256")):
        raise RunFolderError(f"{path}: does not match the run's vocabulary in tokenizer.json (size {len(tok)} vs "
                             f"{info.get('size')}, or a different model); remove the run folder and start again")
    return tok


# ---- stage: data ---------------------------------------------------------------------------------

def _data_dir(cfg: CodeConfig) -> Path | None:
    return Path(cfg.data_dir) if cfg.data_dir else default_data_dir()


def _subsample(examples: list, n: int, seed: int, what: str) -> list:
    """A seeded subsample of ``n`` examples in file order (0 = all)."""
    if not n or n >= len(examples):
        return examples
    rng = np.random.default_rng(derive_seed(seed, "subsample", what))
    return [examples[i] for i in sorted(rng.permutation(len(examples))[:n])]


def user_split(cfg: CodeConfig, field: str) -> list:
    """The examples of the user's ``test_id`` / ``test_ood`` file; every program must have test cases.

    SANSTYPE takes a split prefix (``PATH/test`` -> ``test.src/.tgt/.inp/.out``), SPoC a TSV whose
    test cases are in ``testcases/`` next to it or in the shared data's SPoC folder.
    """
    path = getattr(cfg, field)
    if is_spoc_path(path) != (cfg.dataset == "spoc"):
        want = "a SPoC .tsv file" if cfg.dataset == "spoc" else "a SANSTYPE split prefix (PATH/test)"
        raise DataFileError(f"field '{field}': {path} is not {want} (dataset={cfg.dataset})")
    if cfg.dataset == "spoc":
        tc = Path(path).parent / "testcases"
        root = _data_dir(cfg)
        if not tc.is_dir() and root is not None:
            tc = root / "spoc" / "testcases"
        examples = load_spoc(path, tc if tc.is_dir() else None)
    else:
        examples = load_sanstype(path)
    if not examples:
        raise DataFileError(f"field '{field}': {path} holds no programs")
    for e in examples:
        if not e.cases:
            raise DataFileError(f"field '{field}': {path}: program {e.id} has no test cases")
    return examples


def _sanstype_data(cfg: CodeConfig):
    from . import corrupt, sanstype
    from .sanstype_cases import generate
    gen = sanstype.REFERENCE  # the shared train files follow the released generator's distribution
    given = {split: (_subsample(user_split(cfg, f"test_{split}"), getattr(cfg, f"n_test_{split}"), stage_seed(cfg, "data"),
                                f"test_{split}"), getattr(cfg, f"test_{split}"))
             for split in ("id", "ood") if getattr(cfg, f"test_{split}")}  # read first: a bad file fails fast
    root = _data_dir(cfg)
    shared = root / "sanstype" if root is not None else None
    if shared is not None and (shared / "train.src").exists():
        train = load_sanstype(shared / "train")[:cfg.n_labeled]
        val = load_sanstype(shared / "val")[:cfg.n_val]
        source = str(shared)
    else:
        train = generate(cfg.n_labeled, derive_seed(stage_seed(cfg, "data"), "train"), id_prefix="train-", cfg=gen)
        val = generate(cfg.n_val, derive_seed(stage_seed(cfg, "data"), "val"), id_prefix="val-", cfg=gen)
        source = "generated"
    tests = dict(given)
    for split, ood in (("id", False), ("ood", True)):
        if split not in tests:
            field, n = f"test_{split}", getattr(cfg, f"n_test_{split}")
            tests[split] = (generate(n, derive_seed(stage_seed(cfg, "data"), field), ood=ood, id_prefix=f"{split}-", cfg=gen),
                            "generated (reference generator" + (", OOD templates)" if ood else ")"))
    unlabeled = sanstype.generate_programs(cfg.n_unlabeled, derive_seed(stage_seed(cfg, "data"), "unlabeled"), cfg=gen)
    rng = np.random.default_rng(derive_seed(stage_seed(cfg, "data"), "corrupt"))
    pairs = [(corrupt.corrupt_sanstype(e.tgt, rng), e.tgt) for e in unlabeled]
    extra = {"labeled_source": source, "generator": "reference",
             "split_files": {"id": tests["id"][1], "ood": tests["ood"][1]}}
    return train, val, tests["id"][0], tests["ood"][0], pairs, extra


def spoc_data(cfg: CodeConfig):
    """SPoC splits: ID = TestW programs of problems seen in training (new annotators, seen problems);
    OOD = ``test_ood`` (TestP) when given, else every program of ``spoc_ood_problems`` problems held
    out of training. TestW programs of problems we have no training programs of are dropped."""
    root = _data_dir(cfg)
    if root is None or not (root / "spoc" / "train-eval.tsv").exists():
        raise DataFileError(f"SPoC data not found under {root or '../shared/data'} (set --data_dir or $COMPOSEDFT_DATA)")
    tc = root / "spoc" / "testcases"
    programs = load_spoc(root / "spoc" / "train-eval.tsv", tc) + load_spoc(root / "spoc" / "train-test.tsv", tc)
    rng = np.random.default_rng(derive_seed(stage_seed(cfg, "data"), "spoc-split"))
    probs = sorted({e.probid for e in programs})
    held = set(rng.permutation(probs)[:cfg.spoc_ood_problems].tolist()) if not cfg.test_ood else set()
    rest = [e for e in programs if e.probid not in held]
    order = rng.permutation(len(rest))
    n_val = max(1, int(round(cfg.spoc_val_frac * len(rest))))
    val = [rest[i] for i in order[:n_val]]
    train = [rest[i] for i in order[n_val:]]
    if cfg.spoc_max_tgt_tokens:
        train = [e for e in train if len(e.tgt.split()) <= cfg.spoc_max_tgt_tokens]
    seen = {e.probid for e in train}
    testw = load_spoc(root / "spoc" / "testw.tsv", tc)
    counts = {"testw_programs": len(testw), "testw_problems": len({e.probid for e in testw})}
    if cfg.test_id:
        test_id, id_file = user_split(cfg, "test_id"), cfg.test_id
    else:
        test_id, id_file = [e for e in testw if e.probid in seen], str(root / "spoc" / "testw.tsv") + " (seen problems)"
    counts.update(id_programs=len(test_id), id_problems=len({e.probid for e in test_id}))
    if cfg.test_ood:
        test_ood, ood_file = user_split(cfg, "test_ood"), cfg.test_ood
    else:
        test_ood = [e for e in programs + testw if e.probid in held]
        ood_file = f"held-out problems ({len(held)}) of train-eval/train-test/testw"
    counts.update(ood_programs=len(test_ood), ood_problems=len({e.probid for e in test_ood}),
                  train_problems=len(seen))
    test_id = _subsample(test_id, cfg.n_test_id, stage_seed(cfg, "data"), "test_id")
    test_ood = _subsample(test_ood, cfg.n_test_ood, stage_seed(cfg, "data"), "test_ood")
    # Denoiser data: corruptions of the TRAINING programs only (never val/test code).
    from . import corrupt
    crng = np.random.default_rng(derive_seed(stage_seed(cfg, "data"), "corrupt"))
    pairs = []
    for e in train:
        for _ in range(cfg.spoc_corruptions):
            res = corrupt.corrupt_spoc(e.tgt, crng)  # kept only if it fails to compile (DrRepair)
            if res is not None:
                pairs.append((res[0], e.tgt))
        pairs.append((e.tgt, e.tgt))  # identity pairs: Π must leave correct code alone
    pairs = [pairs[i] for i in crng.permutation(len(pairs))]
    rule = ("ID = TestW programs of problems seen in training (new annotators, seen problems); OOD = "
            + ("the given test_ood file" if cfg.test_ood else "all programs of problems held out of training"))
    return train, val, test_id, test_ood, pairs, {"split_rule": rule, "split_counts": counts,
                                                  "split_files": {"id": id_file, "ood": ood_file},
                                                  "held_out_problems": sorted(held)}


def stage_data(ctx: Context):
    cfg, d = ctx.cfg, ctx.rd.data_dir
    if (d / "info.json").exists():
        return None
    maker = _sanstype_data if cfg.dataset == "sanstype" else spoc_data
    try:
        train, val, test_id, test_ood, pairs, extra = maker(cfg)
    except DataFormatError as err:
        raise DataFileError(str(err)) from None
    n_dval = max(1, len(pairs) // 20)  # 5% of denoiser pairs for its model selection
    for name, ex in zip(SPLIT_NAMES, (train, val, test_id, test_ood)):
        write_examples(d / f"{name}.jsonl", ex)
    atomic_write_jsonl(d / "denoise_train.jsonl", [{"src": s, "tgt": t} for s, t in pairs[n_dval:]])
    atomic_write_jsonl(d / "denoise_val.jsonl", [{"src": s, "tgt": t} for s, t in pairs[:n_dval]])
    info = {"dataset": cfg.dataset, "n": {"train": len(train), "val": len(val), "test_id": len(test_id),
                                          "test_ood": len(test_ood), "denoise": len(pairs)}, **extra}
    atomic_write_json(d / "info.json", info)  # written last: marks the stage complete
    return {k: v for k, v in info.items() if k != "held_out_problems"}


def read_pairs(path: Path) -> tuple[list[str], list[str]]:
    """(sources, targets) of a denoiser-pair JSONL written by the data stage."""
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the 'data' stage first)")
    recs = read_jsonl(path)
    try:
        return [r["src"] for r in recs], [r["tgt"] for r in recs]
    except KeyError as err:
        raise RunFolderError(f"{path}: records need 'src' and 'tgt' (missing {err})") from None


# ---- stage: vocab (tokenizer) --------------------------------------------------------------------

def stage_vocab(ctx: Context):
    """Train the tokenizer on the labeled train src+tgt and the denoiser's training targets (never
    val/test data); record its size, hash, the decode cap and the <unk> rate of every split."""
    if (ctx.rd.tokenizer_path("tokenizer.json")).exists():
        return None
    cfg = ctx.cfg
    data_info(ctx)
    parts = {name: read_examples(ctx.rd.data_path(f"{name}.jsonl")) for name in SPLIT_NAMES}
    ds, dt = read_pairs(ctx.rd.data_path("denoise_train.jsonl"))
    texts = [e.src for e in parts["train"]] + [e.tgt for e in parts["train"]] + list(dict.fromkeys(dt))
    if cfg.tokenizer == "bpe":
        tok = BPETokenizer.train(texts, cfg.vocab_size, byte_fallback=cfg.bpe_byte_fallback)
        tok.save(ctx.rd.tokenizer_path("tokenizer.model"))
    else:
        tok = Vocab.build([s.split() for s in texts + ds], min_freq=1)
        tok.save(ctx.rd / "vocab.json")
    rates = {name: {"src": unk_rate(tok, [e.src for e in ex]), "tgt": unk_rate(tok, [e.tgt for e in ex])}
             for name, ex in parts.items()}
    rates["denoise"] = {"src": unk_rate(tok, ds), "tgt": unk_rate(tok, dt)}
    lengths = [len(tok.encode_text(e.tgt)) for ex in parts.values() for e in ex] + [len(tok.encode_text(t)) for t in dt]
    info = {"kind": cfg.tokenizer, "size": len(tok), "sha256": tok.sha256() if cfg.tokenizer == "bpe" else None,
            "max_target_tokens": max(lengths), "max_decode_len": max_len_from_data(lengths, cfg.max_len_factor),
            "unk_rate": rates}
    atomic_write_json(ctx.rd.tokenizer_path("tokenizer.json"), info)  # written last: marks the stage complete
    return info
