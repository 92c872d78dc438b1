"""Pipeline stages on a tiny configuration (CPU, no g++): presets, frozen Π, resume, bad files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from composedft.config import apply_overrides
from composedft.io import CheckpointError, atomic_write_json, atomic_write_jsonl, load_checkpoint
from composedft.runs import RunDir
from simulations.code import context, exec_acc, pipeline, stage_data, stage_eval, stages
from simulations.code.config import PRESETS
from simulations.code.corrupt import corrupt_sanstype
from simulations.code.data import Example, TestCase
from simulations.code.decode import max_len_from_data
from simulations.code.sanstype import generate_programs
from simulations.code.tokenizer import BPETokenizer

TINY = {"d_model": 16, "d_ff": 32, "n_layers": 1, "batch_size": 8, "composed_batch_size": 4, "composed_k": 2,
        "denoiser_steps": 3, "direct_steps": 3, "standard_steps": 3, "composed_steps": 2, "eval_every": 2,
        "denoiser_warmup": 2, "direct_warmup": 2, "standard_warmup": 2, "composed_warmup": 1,
        "decode_batch_size": 8, "device": "cpu", "dataset": "sanstype"}
TRAIN_STAGES = ("vocab", "denoiser", "direct", "standard", "composed")


def write_tiny_data(out, n=16, seed=0):
    """A run folder's data/ without g++: generated programs, dummy (unused) test cases."""
    progs = generate_programs(n + 8, seed)
    ex = [Example(p.id, p.src, p.tgt, (TestCase("", ""),)) for p in progs]
    rng = np.random.default_rng(seed)
    d = out / "data"
    for name, part in (("train", ex[:n]), ("val", ex[n:n + 4]), ("test_id", ex[n + 4:n + 6]),
                       ("test_ood", ex[n + 6:])):
        context.write_examples(d / f"{name}.jsonl", part)
    unl = generate_programs(3 * n, seed + 1)
    pairs = [{"src": corrupt_sanstype(p.tgt, rng), "tgt": p.tgt} for p in unl]
    atomic_write_jsonl(d / "denoise_train.jsonl", pairs[4:])
    atomic_write_jsonl(d / "denoise_val.jsonl", pairs[:4])
    lengths = [len(e.tgt.split()) for e in ex]
    atomic_write_json(d / "info.json", {"dataset": "sanstype", "max_decode_len": max_len_from_data(lengths)})


def tiny_cfg(preset="toy", **kw):
    return apply_overrides(PRESETS[preset], {**TINY, **kw})


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_builds_and_trains_a_few_steps(tmp_path, preset):
    cfg = tiny_cfg(preset)
    assert cfg.n_heads == PRESETS[preset].n_heads  # the preset's own architecture choices survive
    write_tiny_data(tmp_path)
    pipeline.run(cfg, tmp_path, TRAIN_STAGES)
    for name in ("denoiser", "direct", "standard", "composed"):
        ck = load_checkpoint(tmp_path / "models" / f"{name}.pt")
        assert np.isfinite(ck["best_val_nll"])
    m = (tmp_path / "manifest.json").read_text()
    assert "tokens_per_s" in m and "wall_s" in m


@pytest.mark.parametrize("init", ["denoiser", "standard"])
def test_composed_training_leaves_denoiser_bitwise_unchanged(tmp_path, init):
    cfg = tiny_cfg(composed_init=init)
    write_tiny_data(tmp_path)
    pipeline.run(cfg, tmp_path, ("vocab", "denoiser", "direct", "standard"))
    before = load_checkpoint(tmp_path / "models" / "denoiser.pt")["model"]
    start = load_checkpoint(tmp_path / "models" / f"{init}.pt")["model"]
    pipeline.run(cfg, tmp_path, ("composed",))
    after = load_checkpoint(tmp_path / "models" / "denoiser.pt")["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    f = load_checkpoint(tmp_path / "models" / "composed.pt")["model"]
    # the base predictor did move away from its initialisation (it was trained)
    assert any(not torch.equal(f[k], start[k]) for k in f)
    man = (tmp_path / "manifest.json").read_text()
    assert f'"composed_init": "{init}"' in man and '"denoiser_unchanged": true' in man


def test_composed_stage_trains_with_the_reference_estimator(tmp_path, monkeypatch):
    """composed_estimator=reference reaches the loss (one sample per input, whatever composed_k)."""
    from simulations.code import composed as C
    calls = []

    def spy(logp, reward, nll=None, **kw):
        calls.append(logp.shape)
        return T_reference(logp, reward, nll, **kw)

    T_reference = C.reference_sequence_loss
    monkeypatch.setattr(C, "reference_sequence_loss", spy)
    cfg = tiny_cfg(composed_estimator="reference", composed_k=3)
    write_tiny_data(tmp_path)
    pipeline.run(cfg, tmp_path, ("vocab", "denoiser", "standard", "composed"))
    assert len(calls) == cfg.composed_steps and all(s == (cfg.composed_batch_size,) for s in calls)
    assert np.isfinite(load_checkpoint(tmp_path / "models" / "composed.pt")["best_val_nll"])


def _fit_direct(tmp_path, cfg, crash_at=None):
    """Train the direct stage's model through the core loop (``stages.fit_stage``), optionally killed."""
    ctx = context.Context(cfg=cfg, rd=pipeline.RunDir(tmp_path), device=torch.device("cpu"), dist=context.Dist())
    vocab = stage_data.load_tokenizer(ctx)
    corpus, val = stages.corpora(ctx, vocab, denoiser=False)
    model = stages.new_model(ctx, vocab, "direct")
    base = stages.nll_loss_fn(0.0)

    def loss_fn(m, batch):
        if crash_at is not None and batch["step"] == crash_at:
            raise KeyboardInterrupt("killed")
        return base(m, batch)

    info = stages.fit_stage(ctx, "x", model, loss_fn, corpus, val, steps=6, lr=1e-2, warmup=2, batch_size=8)
    return model, info


def test_killed_and_resumed_stage_matches_uninterrupted(tmp_path):
    cfg = tiny_cfg(dropout=0.3, eval_every=2)  # dropout: the RNG state must be restored too
    for sub in ("a", "b"):
        write_tiny_data(tmp_path / sub)
        pipeline.run(cfg, tmp_path / sub, ("vocab",))
    torch.manual_seed(123)
    full, info_full = _fit_direct(tmp_path / "a", cfg)
    assert info_full["resumed_from"] is None
    torch.manual_seed(123)
    with pytest.raises(KeyboardInterrupt):
        _fit_direct(tmp_path / "b", cfg, crash_at=3)  # dies after the step-2 checkpoint
    torch.manual_seed(999)  # a fresh process: different global RNG until the checkpoint restores it
    resumed, info = _fit_direct(tmp_path / "b", cfg)
    assert info["resumed_from"] == 2  # it did resume (not retrain from scratch)
    assert load_checkpoint(tmp_path / "b" / "stages" / "x" / "last.pt")["step"] == 6
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


def test_missing_or_corrupt_run_folder_files_give_clear_errors(tmp_path, capsys):
    cfg = tiny_cfg()
    write_tiny_data(tmp_path)
    (tmp_path / "data" / "train.jsonl").unlink()
    with pytest.raises(context.RunFolderError, match="train.jsonl: missing"):
        pipeline.run(cfg, tmp_path, ("vocab",))
    write_tiny_data(tmp_path)
    (tmp_path / "data" / "val.jsonl").write_text('{"id": "x", "src": "a"\n')
    with pytest.raises(Exception, match=r"val.jsonl: line 1"):  # the vocab stage measures <unk> on every split
        pipeline.run(cfg, tmp_path, ("vocab",))
    write_tiny_data(tmp_path)
    pipeline.run(cfg, tmp_path, ("vocab", "denoiser"))
    path = tmp_path / "models" / "denoiser.pt"
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match="denoiser.pt"):
        pipeline.run(cfg, tmp_path, ("standard",))
    # the command line reports it and exits non-zero
    argv = ["--preset", "toy", "--out", str(tmp_path), "--stages", "standard", *[f"--{k}={v}" for k, v in TINY.items()]]
    assert pipeline.main(argv) == 2
    assert "denoiser.pt" in capsys.readouterr().err


def test_a_tokenizer_model_that_does_not_match_the_run_is_refused(tmp_path, capsys):
    """Resume with another SentencePiece model in the run folder: a clear error naming the file."""
    cfg = tiny_cfg(vocab_size=60)
    write_tiny_data(tmp_path)
    pipeline.run(cfg, tmp_path, ("vocab",))
    assert stage_data.load_tokenizer(context.Context(cfg, RunDir(tmp_path), torch.device("cpu"), context.Dist()))
    other = BPETokenizer.train(["int main ( ) { return 0 ; }"] * 5, 40)
    other.save(tmp_path / "tokenizer.model")
    with pytest.raises(context.RunFolderError, match="tokenizer.model: does not match"):
        pipeline.run(cfg, tmp_path, ("denoiser",))
    (tmp_path / "tokenizer.model").write_bytes(b"garbage")
    argv = ["--preset", "toy", "--out", str(tmp_path), "--stages", "denoiser", "--vocab_size=60",
            *[f"--{k}={v}" for k, v in TINY.items()]]
    assert pipeline.main(argv) == 2 and "tokenizer.model" in capsys.readouterr().err


def test_run_folder_refuses_a_different_configuration(tmp_path, capsys):
    write_tiny_data(tmp_path)
    pipeline.run(tiny_cfg(), tmp_path, ("vocab",))
    with pytest.raises(context.RunFolderError, match="d_model"):
        pipeline.run(tiny_cfg(d_model=32), tmp_path, ("vocab",))
    assert pipeline.main(["--preset", "toy", "--out", str(tmp_path), "--no_such_field=1"]) == 2
    assert "no_such_field" in capsys.readouterr().err


def test_a_field_added_later_counts_as_its_default_in_an_older_run_folder(tmp_path):
    """config.json written before ``composed_estimator`` existed: resumable with the default only."""
    write_tiny_data(tmp_path)
    pipeline.run(tiny_cfg(), tmp_path, ("vocab",))
    path = tmp_path / "config.json"
    old = json.loads(path.read_text())
    del old["composed_estimator"]
    path.write_text(json.dumps(old))
    pipeline.run(tiny_cfg(), tmp_path, ("vocab",))  # "ours" is the default: the same configuration
    path.write_text(json.dumps(old))
    with pytest.raises(context.RunFolderError, match="composed_estimator"):
        pipeline.run(tiny_cfg(composed_estimator="reference"), tmp_path, ("vocab",))


class _FakeEvaluator:
    """Deterministic stand-in for the g++ evaluator: the verdict is a function of (code, cases)."""

    def __init__(self):
        self.seen = []

    def evaluate(self, predictions, examples):
        self.seen.extend((e.cases, predictions[e.id]) for e in examples if e.id in predictions)
        recs = [{"id": e.id, "status": "ok" if predictions[e.id].endswith(e.cases[0].output) else "wrong_answer",
                 "first_failing_case": None, "detail": ""} if e.id in predictions else
                {"id": e.id, "status": "missing", "first_failing_case": None, "detail": ""} for e in examples]
        return recs, self.summarize(recs, 0.0)

    def summarize(self, records, wall_s):
        ok = sum(r["status"] == "ok" for r in records)
        return {"n": len(records), "ok": ok, "exec_acc": ok / len(records)}


def test_evaluating_distinct_programs_once_gives_every_methods_records():
    examples = [Example(f"e{i}", "src", "tgt", (TestCase("", str(i)),)) for i in range(4)]
    jobs = {"a": {"e0": "p0", "e1": "x", "e2": "p2", "e3": "p3"},
            "b": {"e0": "p0", "e1": "p1", "e2": "y"},           # e3 missing
            "c": {"e0": "p0", "e1": "x", "e2": "p2", "e3": "z"}}
    fake = _FakeEvaluator()
    got = stage_eval.evaluate_unique(fake, jobs, examples)
    distinct = {(e.id, codes[e.id]) for codes in jobs.values() for e in examples if e.id in codes}
    assert len(fake.seen) == len(distinct) == 7  # each (example, code) pair run once
    for method, codes in jobs.items():
        want_recs, want_sum = _FakeEvaluator().evaluate(codes, examples)  # one method on its own
        recs, summary = got[method]
        assert [(r["id"], r["status"]) for r in recs] == [(r["id"], r["status"]) for r in want_recs]
        assert summary["exec_acc"] == want_sum["exec_acc"] and summary["distinct_programs_run"] == 7


def test_predict_stage_reports_the_denoisers_identity_and_repair_rates(tmp_path):
    """The rates in the manifest are exact-match fractions of the saved Π outputs (recounted here)."""
    cfg = tiny_cfg()
    write_tiny_data(tmp_path)
    pipeline.run(cfg, tmp_path, (*TRAIN_STAGES, "predict"))
    from composedft.io import read_json, read_jsonl
    info = read_json(tmp_path / "manifest.json")["stages"]["predict"]
    for name in ("identity", "repair"):
        recs = read_jsonl(tmp_path / "decoded" / f"denoiser_{name}.jsonl")
        assert info[f"denoiser_{name}_n"] == len(recs) > 0
        assert info[f"denoiser_{name}_rate"] == round(sum(r["output"] == r["reference"] for r in recs) / len(recs), 4)
    clean = [e.tgt for e in context.read_examples(tmp_path / "data" / "val.jsonl")]
    assert [r["input"] for r in read_jsonl(tmp_path / "decoded" / "denoiser_identity.jsonl")] == clean
    assert stage_eval.exact_match_rate(["a", "b", "c", "d"], ["a", "x", "c", "y"]) == 0.5
    with pytest.raises(ValueError, match="3 outputs for 2 references"):
        stage_eval.exact_match_rate(["a", "b", "c"], ["a", "b"])


def test_methods_added_to_a_finished_run_are_trained_and_decoded_alone(tmp_path):
    """``methods`` is resume-free: a run folder accepts more methods later; the stages and decoded
    outputs of the earlier ones are kept (not redone), the new ones are added."""
    write_tiny_data(tmp_path)
    first = tiny_cfg(methods=("standard",))
    pipeline.run(first, tmp_path, ("vocab", "denoiser", "standard", "predict"))
    dec = tmp_path / "decoded"
    kept = {p.name: p.stat().st_mtime_ns for p in dec.glob("standard_*.jsonl")}
    n_first = __import__("json").loads((dec / "done.json").read_text())["sequences"]
    more = tiny_cfg(methods=("standard", "standard+posthoc", "direct"))
    assert pipeline.run(more, tmp_path, ("vocab", "denoiser", "standard", "direct", "predict")) == []
    assert {p.name: p.stat().st_mtime_ns for p in dec.glob("standard_*.jsonl")} == kept
    for m in ("standard+posthoc", "direct"):
        assert (dec / f"{m}_id.jsonl").exists() and (dec / f"{m}_ood.jsonl").exists()
    done = __import__("json").loads((dec / "done.json").read_text())
    assert "denoiser_identity_rate" in done
    # f alone for `standard`, then f and Π∘f for `standard+posthoc`, f alone for `direct` (per test program)
    n_test = sum(1 for _ in open(tmp_path / "data" / "test_id.jsonl")) + sum(1 for _ in open(tmp_path / "data" / "test_ood.jsonl"))
    assert n_first == n_test and done["sequences"] == (1 + 2 + 1) * n_test
    # a different value of a field that changes results is still refused
    with pytest.raises(context.RunFolderError, match="standard_steps"):
        pipeline.run(tiny_cfg(methods=("standard",), standard_steps=7), tmp_path, ("predict",))


def test_predict_stage_progress_counts_every_program_of_every_f_once(tmp_path, monkeypatch):
    """One bar for the stage (issue 11 item 4): its total is (trained f's) x (ID + OOD programs) and
    the decoding callbacks add up to exactly that; Π's quality checks count their own inputs."""
    bars = []

    class Recorder:
        def __init__(self, total, desc, **kw):
            self.total, self.desc, self.n, self.closed = total, desc, 0, False
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def set_postfix(self, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.closed = True

    monkeypatch.setattr(stage_eval, "Progress", Recorder)
    cfg = tiny_cfg()
    write_tiny_data(tmp_path)
    pipeline.run(cfg, tmp_path, (*TRAIN_STAGES, "predict"))
    n_test = sum(len(context.read_examples(tmp_path / "data" / f"test_{s}.jsonl")) for s in stage_eval.SPLITS)
    n_f = len(stage_eval.prediction_sources(cfg.methods))
    main, *quality = bars
    assert main.desc == "predict" and main.total == main.n == n_f * n_test > 0 and main.closed
    from composedft.io import read_jsonl
    for bar, name in zip(quality, ("identity", "repair")):
        assert bar.total == bar.n == len(read_jsonl(tmp_path / "decoded" / f"denoiser_{name}.jsonl")) and bar.closed


def test_val_acc_decodes_validation_and_counts_verdicts(tmp_path, monkeypatch, capsys):
    """val-acc: every val program decoded once with the named f; accuracy = the evaluator's ok
    fraction (here: exact match with the gold program), with the Wilson interval of that count."""
    from composedft.io import read_json, read_jsonl
    from composedft.stats import wilson_ci
    from simulations.code import evaluator, val_acc
    from simulations.code.data import tgt_to_code

    write_tiny_data(tmp_path)
    pipeline.run(tiny_cfg(), tmp_path, ("vocab", "denoiser", "standard"))
    gold = {e.id: tgt_to_code(e.tgt) for e in context.read_examples(tmp_path / "data" / "val.jsonl")}

    class Exact(_FakeEvaluator):
        def __init__(self, **kw):
            super().__init__()

        def evaluate(self, predictions, examples):
            recs = [{"id": e.id, "status": "ok" if predictions[e.id] == gold[e.id] else "wrong_answer"}
                    if gold[e.id] is not None else
                    {"id": e.id, "status": "compile_error", "detail": "prog.cpp:4:1: error: \u2018var_4\u2019 was "
                     "not declared in this scope; did you mean \u2018var_8\u2019?\n"} for e in examples]
            return recs, {**self.summarize(recs, 0.0), "compile_rate": 1.0, "counts": {}}

    monkeypatch.setattr(evaluator, "Evaluator", Exact)
    monkeypatch.setitem(gold, next(iter(gold)), None)  # one program no output can match
    assert val_acc.main(["--out", str(tmp_path), "--method", "standard"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = read_jsonl(tmp_path / "eval" / "val_standard.jsonl")
    assert [r["id"] for r in saved] == list(gold) and rec["n"] == len(gold) == 4
    ok = sum(r["code"] == gold[r["id"]] for r in saved if gold[r["id"]] is not None)
    assert rec["exec_acc"] == round(ok / 4, 4) and rec["ci95"] == [round(v, 4) for v in wilson_ci(ok, 4)[1:]]
    assert read_json(tmp_path / "eval" / "val_standard.json") == rec
    assert rec["compile_errors"] == {"X was not declared in this scope; did you mean X?": 1}
    assert sum(r["status"] == "compile_error" and "var_4" in r["detail"] for r in saved) == 1
    assert val_acc.main(["--out", str(tmp_path / "nope"), "--method", "standard"]) == 2
    assert "config.json: missing" in capsys.readouterr().err


@pytest.mark.parametrize("patience", [0, 2])
def test_select_on_exec_keeps_the_checkpoint_of_the_highest_val_accuracy(tmp_path, monkeypatch, patience):
    """select_on="exec": the saved f is the one validated with the highest execution accuracy (not
    the lowest NLL), and early stopping counts validations without a higher accuracy."""
    from composedft.io import read_csv
    scripted = iter([0.2, 0.6, 0.4, 0.3, 0.5])  # validations at steps 2, 4, 6, 8, 10: best at step 4
    states = {}

    def fake_exec_accuracy(cfg, tok, f, examples, max_len, **kw):
        acc = next(scripted)
        states[acc] = {k: v.clone() for k, v in f.state_dict().items()}
        assert len(examples) == 4 and not f.training  # the val split, f in eval mode
        return {"acc": acc, "n": 4, "ok": round(4 * acc)}

    monkeypatch.setattr(exec_acc, "exec_accuracy", fake_exec_accuracy)
    monkeypatch.setattr("simulations.code.evaluator.Evaluator", lambda **kw: None)  # no g++ needed
    write_tiny_data(tmp_path)
    cfg = tiny_cfg(select_on="exec", standard_steps=10, eval_every=2, patience=patience)
    pipeline.run(cfg, tmp_path, ("vocab", "denoiser", "standard"))
    saved = load_checkpoint(tmp_path / "models" / "standard.pt")
    assert saved["best_step"] == 4
    assert all(torch.equal(saved["model"][k], v) for k, v in states[0.6].items())
    assert not all(torch.equal(saved["model"][k], v) for k, v in states[0.3].items())  # a later f differs
    hist = read_csv(tmp_path / "stages" / "standard" / "eval.csv")
    assert [float(h["val_exec"]) for h in hist] == ([0.2, 0.6, 0.4, 0.3, 0.5] if patience == 0 else [0.2, 0.6, 0.4, 0.3])
    nll_at_4 = next(float(h["val_nll"]) for h in hist if int(float(h["step"])) == 4)
    assert saved["best_val_nll"] == pytest.approx(nll_at_4)  # the selected step's NLL, not the lowest


def test_predict_reads_test_sources_as_the_model_was_trained_on_them(tmp_path, monkeypatch):
    """split_source_punct applies to prediction as to training: the predict stage decodes the
    test splits' sources with ";" split off (re-encoded here independently), not the raw text."""
    from simulations.code import seq2seq_train
    from simulations.code.tokenizer import split_source_punct

    write_tiny_data(tmp_path)
    cfg = tiny_cfg(split_source_punct=True, methods=("standard",))
    pipeline.run(cfg, tmp_path, ("vocab", "denoiser", "standard"))
    calls, real = [], seq2seq_train.translate
    monkeypatch.setattr(seq2seq_train, "translate", lambda model, srcs, *a, **kw: calls.append(list(srcs)) or
                        real(model, srcs, *a, **kw))
    pipeline.run(cfg, tmp_path, ("predict",))
    tok = stage_data.load_tokenizer(context.Context(cfg=cfg, rd=RunDir(tmp_path, create=False), device="cpu",
                                                    dist=context.Dist()))
    for split in ("id", "ood"):
        ex = context.read_examples(tmp_path / "data" / f"test_{split}.jsonl")
        want = [tuple(tok.encode_text(split_source_punct(e.src))) + (2,) for e in ex]
        raw = [tuple(tok.encode_text(e.src)) + (2,) for e in ex]
        assert want in calls and want != raw  # the split form was decoded; it differs from the raw one


@pytest.mark.parametrize("detail, kind", [
    ("prog.cpp: In function 'int main()':\nprog.cpp:5:1: error: 'var_4' was not declared in this scope\n",
     "X was not declared in this scope"),
    ("prog.cpp:6:8: error: redeclaration of \u2018bool var_8\u2019\nprog.cpp:4:6: note: \u2018bool var_8\u2019 previously declared here\n"
     "prog.cpp:9:1: error: 'x' was not declared in this scope\n", "redeclaration of X"),
    ("compiler stopped: cpu time limit", "other"),
    ("", "other"),
])
def test_compile_error_kind_is_the_first_error_with_names_blanked(detail, kind):
    from simulations.code.val_acc import compile_error_kind
    assert compile_error_kind(detail) == kind


def test_results_keep_the_methods_of_an_earlier_evaluation(tmp_path, monkeypatch):
    """Evaluating methods added to a finished run rewrites results.csv and verdicts.csv with every
    method evaluated in the folder, not only the ones of the last call (the earlier rows stay)."""
    from composedft.io import read_csv
    from simulations.code import evaluator

    class Counting(_FakeEvaluator):
        def __init__(self, **kw):
            super().__init__()

        def summarize(self, records, wall_s):
            n, ok = len(records), sum(r["status"] == "ok" for r in records)
            counts = {s: sum(r["status"] == s for r in records) for s in evaluator.STATUSES}
            return {"n": n, "ok": ok, "exec_acc": ok / n, "compile_rate": 1.0, "counts": counts}

    monkeypatch.setattr(evaluator, "Evaluator", Counting)
    write_tiny_data(tmp_path)
    pipeline.run(tiny_cfg(methods=("standard",)), tmp_path, ("vocab", "denoiser", "standard", "predict", "evaluate"))
    first = {(r["method"], r["split"]): r["exec_acc"] for r in read_csv(tmp_path / "results.csv")}
    pipeline.run(tiny_cfg(methods=("direct",)), tmp_path, ("direct", "predict", "evaluate"))
    rows = {(r["method"], r["split"]): r["exec_acc"] for r in read_csv(tmp_path / "results.csv")}
    assert set(rows) == {(m, s) for m in ("standard", "direct") for s in ("id", "ood")}
    assert {k: rows[k] for k in first} == first
    header = (tmp_path / "verdicts.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["split", "id"] and set(header[2:]) == {"standard", "direct"}
