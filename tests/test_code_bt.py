"""Back-translation (paper §4 BT baseline): the registry entries, the ``backtranslate`` stage and
the ``bt`` / ``bt+composed`` methods on a tiny SANSTYPE run (CPU, no g++; docs/code-pipeline.md §7)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from composedft.config import ConfigError
from composedft.io import atomic_write_jsonl, load_checkpoint, read_jsonl
from composedft.methods import Method, check_methods, get_method, with_dependencies
from composedft.runs import RunDir
from simulations.code import context, pipeline, seq2seq_train as T, stage_bt, stage_data, stages
from simulations.code.config import PRESETS
from simulations.code.decode import EOS
from simulations.code.stage_eval import prediction_sources
from test_code_pipeline_stages import TINY, tiny_cfg, write_tiny_data

BT_TINY = {"bt_reverse_steps": 3, "bt_reverse_warmup": 2, "bt_steps": 3, "bt_warmup": 2,
           "methods": ("bt", "bt+composed")}
TOY = PRESETS["toy"]


def test_registry_entries_and_the_stages_they_pull_in():
    bt, btc = get_method("bt"), get_method("bt+composed")
    assert (bt.init, bt.objective, bt.predict_with_denoiser, bt.data) == ("denoiser", "standard", False, "labeled+bt")
    assert (btc.init, btc.objective, btc.predict_with_denoiser, btc.data) == ("bt", "composed", True, "labeled")
    assert with_dependencies(["bt+composed"]) == ["bt+composed", "bt"]
    cfg = dataclasses.replace(TOY, methods=("bt+composed",))
    assert cfg.needs_backtranslation() and not TOY.needs_backtranslation()
    assert pipeline.stages_for(cfg) == ("data", "vocab", "denoiser", "backtranslate", "bt", "bt+composed",
                                        "predict", "evaluate")
    assert "backtranslate" not in pipeline.stages_for(TOY)
    # bt+composed's composed_init does not apply: it always starts from bt's f
    assert pipeline.stages_for(dataclasses.replace(cfg, composed_init="denoiser"))[3:6] == (
        "backtranslate", "bt", "bt+composed")
    assert prediction_sources(("bt", "bt+composed")) == {"bt": [("bt", False)],
                                                          "bt+composed": [("bt+composed", True)]}


def test_data_attribute_is_validated_and_domains_refuse_what_they_cannot_build():
    with pytest.raises(ValueError, match="data='unlabeled' is not one of labeled, labeled\\+bt"):
        Method("x", "denoiser", "standard", False, data="unlabeled")
    with pytest.raises(ValueError, match="trains nothing"):
        Method("x", "bt", None, True, reuse="bt", data="labeled+bt")
    # a domain that builds only labeled data (the default: ReLU, fonts) refuses bt by name
    with pytest.raises(ValueError, match="method 'bt': trains on data 'labeled\\+bt'"):
        check_methods(["bt"], None, ("standard",), domain="the ReLU study")
    from simulations.relu.config import PRESETS as RELU, validate
    with pytest.raises(ConfigError, match="field 'methods': method 'bt': trains on data"):
        validate(dataclasses.replace(RELU["smoke"], methods=("bt",)))
    with pytest.raises(ConfigError, match="field 'bt_n_unlabeled'"):
        dataclasses.replace(TOY, methods=("bt",), bt_n_unlabeled=0)
    assert dataclasses.replace(TOY, bt_n_unlabeled=0).bt_n_unlabeled == 0  # unused without bt


def _data_with_held_out_programs(tmp_path):
    """Tiny data whose denoiser targets also hold a duplicate and the val / test programs, which
    back-translation must never use. Returns the expected pool of clean programs."""
    write_tiny_data(tmp_path)
    d = tmp_path / "data"
    pairs = read_jsonl(d / "denoise_train.jsonl")
    held = [e.tgt for s in ("val", "test_id", "test_ood") for e in context.read_examples(d / f"{s}.jsonl")]
    planted = [{"src": "x", "tgt": t} for t in held] + [dict(pairs[0])]
    atomic_write_jsonl(d / "denoise_train.jsonl", pairs + planted)
    return {p["tgt"] for p in pairs} - set(held)


def _ctx(cfg, path):
    return context.Context(cfg=cfg, rd=RunDir(path), device=torch.device("cpu"), dist=context.Dist())


def test_bt_methods_end_to_end_through_the_pipeline_stages(tmp_path):
    pool = _data_with_held_out_programs(tmp_path)
    n = len(pool) - 3
    cfg = tiny_cfg(**BT_TINY, bt_n_unlabeled=n)
    pipeline.run(cfg, tmp_path, ("vocab", "denoiser", "backtranslate", "bt", "bt+composed", "predict"))
    ctx, d = _ctx(cfg, tmp_path), tmp_path / "data"
    vocab = stage_data.load_tokenizer(ctx)
    train = context.read_examples(d / "train.jsonl")

    # the back-translated pairs: exactly n, distinct clean unlabeled programs, never a val/test one
    bt_pairs = read_jsonl(d / "bt_pairs.jsonl")
    targets = [p["tgt"] for p in bt_pairs]
    assert len(targets) == n == len(set(targets)) and set(targets) <= pool
    # bt's corpus: the labeled pairs, then the back-translated ones; validation stays labeled
    corpus, val = stages.corpora(ctx, vocab, denoiser=False, data="labeled+bt")
    assert len(corpus) == len(train) + n
    assert corpus == T.encode_corpus(vocab, [e.src for e in train] + [p["src"] for p in bt_pairs],
                                     [e.tgt for e in train] + targets)
    assert val == stages.corpora(ctx, vocab, denoiser=False)[1]

    # the stage's info in the manifest: g's validation NLL and the number of generated pairs
    info = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    g_ck = load_checkpoint(tmp_path / "models" / "bt-reverse.pt")
    assert info["backtranslate"]["bt_pairs"] == n and info["backtranslate"]["unlabeled_pool"] == len(pool)
    assert info["backtranslate"]["reverse_best_val_nll"] == round(g_ck["best_val_nll"], 4)
    g, rev_val = stages.load_model(ctx, "bt-reverse", vocab), stage_bt.reversed_corpora(ctx, vocab)[1]
    assert g_ck["best_val_nll"] == pytest.approx(T.mean_nll(g, rev_val, 8, "cpu", amp=False), rel=1e-5)  # selected on reversed val
    assert info["bt+composed"]["init"] == "bt" and info["bt+composed"]["denoiser_unchanged"]

    # predict: bt is f alone, bt+composed is Π applied to its f
    examples = context.read_examples(d / "test_id.jsonl")
    srcs = [tuple(vocab.encode_text(e.src)) + (EOS,) for e in examples]
    cap = stage_data.tokenizer_info(ctx)["max_decode_len"]
    denoiser = stages.load_model(ctx, "denoiser", vocab, denoiser=True)
    want_bt = T.translate(stages.load_model(ctx, "bt", vocab), srcs, cap, amp=False)
    want_btc = T.translate(stages.load_model(ctx, "bt+composed", vocab), srcs, cap, amp=False, denoiser=denoiser)[1]
    for method, want in (("bt", want_bt), ("bt+composed", want_btc)):
        got = [r["tgt"] for r in read_jsonl(tmp_path / "decoded" / f"{method}_id.jsonl")]
        assert got == [vocab.decode_text(y) for y in want], method

    # resume: a finished stage is skipped; without its pairs file it decodes again from the saved g
    assert stage_bt.stage_backtranslate(ctx) is None
    (d / "bt_pairs.jsonl").unlink()
    again = stage_bt.stage_backtranslate(ctx)
    assert again["resumed_from"] == "models/bt-reverse.pt" and read_jsonl(d / "bt_pairs.jsonl") == bt_pairs


def test_too_few_unlabeled_programs_is_a_clear_error_naming_the_field(tmp_path, capsys):
    pool = _data_with_held_out_programs(tmp_path)
    cfg = tiny_cfg(**BT_TINY, bt_n_unlabeled=len(pool) + 1)  # the planted val/test programs do not count
    pipeline.run(cfg, tmp_path, ("vocab", "denoiser"))
    with pytest.raises(ConfigError, match=f"field 'bt_n_unlabeled': {len(pool) + 1} programs asked.*only {len(pool)}"):
        pipeline.run(cfg, tmp_path, ("backtranslate",))
    assert not (tmp_path / "models" / "bt-reverse.pt").exists()  # refused before training g
    fields = {**TINY, **BT_TINY, "methods": ",".join(BT_TINY["methods"]), "bt_n_unlabeled": len(pool) + 1}
    argv = ["--preset", "toy", "--out", str(tmp_path), "--stages", "backtranslate",
            *[f"--{k}={v}" for k, v in fields.items()]]
    assert pipeline.main(argv) == 2
    assert "bt_n_unlabeled" in capsys.readouterr().err



def test_reverse_model_starts_from_the_denoiser_and_trains_on_the_labeled_pairs_reversed(tmp_path, monkeypatch):
    """What g receives when its training starts: Π's weights exactly, and the labeled train / val
    pairs with source and target swapped (built here independently from the data files)."""
    pool = _data_with_held_out_programs(tmp_path)
    cfg = tiny_cfg(**BT_TINY, bt_n_unlabeled=len(pool))
    pipeline.run(cfg, tmp_path, ("vocab", "denoiser"))
    seen = {}
    real_fit = stage_bt.fit_stage

    def spy(ctx, name, model, loss_fn, corpus, val, **kw):
        seen.update(name=name, start={k: v.clone() for k, v in model.state_dict().items()}, corpus=corpus, val=val, **kw)
        return real_fit(ctx, name, model, loss_fn, corpus, val, **kw)

    monkeypatch.setattr(stage_bt, "fit_stage", spy)
    pipeline.run(cfg, tmp_path, ("backtranslate",))
    pi = load_checkpoint(tmp_path / "models" / "denoiser.pt")["model"]
    assert seen["name"] == "bt-reverse" and seen["start"].keys() == pi.keys()
    assert all(torch.equal(seen["start"][k], pi[k]) for k in pi)
    assert (seen["steps"], seen["lr"], seen["warmup"]) == (cfg.bt_reverse_steps, cfg.bt_reverse_lr, cfg.bt_reverse_warmup)
    vocab = stage_data.load_tokenizer(_ctx(cfg, tmp_path))
    for split, got in (("train", seen["corpus"]), ("val", seen["val"])):
        ex = [json.loads(line) for line in (tmp_path / "data" / f"{split}.jsonl").read_text().splitlines()]
        assert got.src == tuple(tuple(vocab.encode_text(r["tgt"])) + (EOS,) for r in ex), split
        assert got.tgt == tuple(tuple(vocab.encode_text(r["src"])) for r in ex), split
    assert {p["tgt"] for p in read_jsonl(tmp_path / "data" / "bt_pairs.jsonl")} == pool  # n = pool: all of it
