"""``shared_pretraining`` and ``run --shared-from``: fine-tuning seeds share data, tokenizer and Π,
and copying them from another seed's folder equals recomputing them (CPU, no g++)."""
from __future__ import annotations

import shutil

import pytest
import torch

from composedft.io import load_checkpoint
from simulations.code import pipeline
from simulations.code.config import stage_seed
from simulations.code.context import RunFolderError

from test_code_pipeline_stages import tiny_cfg, write_tiny_data

PRE = ("vocab", "denoiser")


def _weights(path):
    return load_checkpoint(path)["model"]


def _same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stage_seed_fixes_only_the_pretraining_stages():
    cfg = tiny_cfg(seed=3, shared_pretraining=True)
    assert [stage_seed(cfg, s) for s in ("data", "vocab", "denoiser", "standard", "composed")] == [0, 0, 0, 3, 3]
    plain = tiny_cfg(seed=3)
    assert {stage_seed(plain, s) for s in ("data", "denoiser", "standard")} == {3}


def test_recomputed_denoiser_of_another_seed_is_identical(tmp_path):
    """The property that makes sharing sound: with shared_pretraining, seed 1 trains the same Π as seed 0
    (and without it, a different one)."""
    runs = {}
    for seed, shared in ((0, True), (1, True), (1, False)):
        out = tmp_path / f"s{seed}{shared}"
        write_tiny_data(out)
        pipeline.run(tiny_cfg(seed=seed, shared_pretraining=shared), out, PRE)
        runs[seed, shared] = _weights(out / "models" / "denoiser.pt")
    assert _same_state(runs[0, True], runs[1, True])
    assert not _same_state(runs[0, True], runs[1, False])


def test_shared_from_copies_and_skips(tmp_path, capsys):
    a, b = tmp_path / "seed0", tmp_path / "seed1"
    write_tiny_data(a)
    pipeline.run(tiny_cfg(seed=0, shared_pretraining=True), a, PRE)
    (a / "data" / "bt_pairs.jsonl").write_text("{}\n")  # seed 0's own back-translation: never shared
    pipeline.run(tiny_cfg(seed=1, shared_pretraining=True), b, ("data", *PRE, "standard"), shared_from=a)
    assert not (b / "data" / "bt_pairs.jsonl").exists()
    out = capsys.readouterr().out
    assert "copied from" in out and "[denoiser] done already" in out and "[data] done already" in out
    for rel in ("models/denoiser.pt", "tokenizer.model", "tokenizer.json", "data/train.jsonl", "data/info.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    stages = pipeline.RunDir(b, create=False).read_manifest()["stages"]
    c = tmp_path / "seed2"  # a run that copies and trains nothing more still records the copy
    pipeline.run(tiny_cfg(seed=2, shared_pretraining=True), c, PRE, shared_from=a)
    assert pipeline.RunDir(c, create=False).read_manifest()["stages"]["denoiser"]["copied_from"] == str(a)
    assert stages["denoiser"]["copied_from"] == str(a) and stages["denoiser"]["wall_s"] == 0.0
    assert "standard" in stages and "copied_from" not in stages["standard"]
    # a second invocation finds Π in place and copies nothing
    before = (b / "models" / "denoiser.pt").stat().st_mtime_ns
    pipeline.run(tiny_cfg(seed=1, shared_pretraining=True), b, PRE, shared_from=a)
    assert (b / "models" / "denoiser.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize("field, here, there", [("d_model", 16, 24), ("shared_pretraining", True, False),
                                                ("denoiser_attn_dropout", 0.0, 0.1)])
def test_shared_from_refuses_another_configuration(tmp_path, field, here, there):
    a = tmp_path / "src"
    write_tiny_data(a)
    pipeline.run(tiny_cfg(seed=0, **{"shared_pretraining": True, field: there}), a, PRE)
    with pytest.raises(RunFolderError, match=field):
        pipeline.run(tiny_cfg(seed=1, **{"shared_pretraining": True, field: here}), tmp_path / "dst", PRE, shared_from=a)
    assert not (tmp_path / "dst" / "models" / "denoiser.pt").exists()


def test_shared_from_needs_finished_pretraining(tmp_path):
    a = tmp_path / "src"
    write_tiny_data(a)
    pipeline.run(tiny_cfg(seed=0, shared_pretraining=True), a, ("vocab",))
    with pytest.raises(RunFolderError, match="denoiser.pt"):
        pipeline.run(tiny_cfg(seed=1, shared_pretraining=True), tmp_path / "dst", PRE, shared_from=a)
    shutil.rmtree(a / "data")
    with pytest.raises(RunFolderError, match="info.json"):
        pipeline.run(tiny_cfg(seed=1, shared_pretraining=True), tmp_path / "dst", PRE, shared_from=a)


def test_finetuning_only_fields_do_not_change_the_denoiser(tmp_path):
    """What makes finetuning_only sound: Π trained under different values of every fine-tuning field is
    identical, so a seed folder with other fine-tuning settings may share it."""
    from dataclasses import fields

    from simulations.code.config import CodeConfig, finetuning_only
    base = tiny_cfg(seed=0, shared_pretraining=True)
    changed = {}
    for f in fields(CodeConfig):
        v = getattr(base, f.name)
        if not finetuning_only(f.name) or f.name in ("methods", "seed") or isinstance(v, (bool, str)):
            continue
        changed[f.name] = (v + 1 if isinstance(v, int) else v * 0.5 + 0.01 if isinstance(v, float)
                           else tuple(x * 0.5 + 0.01 for x in v) + (1e-3,))  # composed_lr_grid
    assert {"dropout", "attn_dropout", "relu_dropout", "standard_steps", "composed_k", "patience",
            "composed_lr_grid"} <= set(changed)
    outs = []
    for i, kw in enumerate(({}, changed)):
        out = tmp_path / f"r{i}"
        write_tiny_data(out)
        pipeline.run(tiny_cfg(seed=i, shared_pretraining=True, **kw), out, PRE)
        outs.append(_weights(out / "models" / "denoiser.pt"))
    assert _same_state(*outs)


def test_shared_from_accepts_other_finetuning_fields(tmp_path):
    a = tmp_path / "src"
    write_tiny_data(a)
    pipeline.run(tiny_cfg(seed=0, shared_pretraining=True), a, PRE)
    b = tmp_path / "dst"
    pipeline.run(tiny_cfg(seed=2, shared_pretraining=True, standard_steps=5, patience=1), b, PRE, shared_from=a)
    assert (a / "models/denoiser.pt").read_bytes() == (b / "models/denoiser.pt").read_bytes()


def test_a_folder_from_before_the_denoiser_dropout_split_is_read_with_its_own_values(tmp_path):
    """A config.json written before ``denoiser_attn_dropout``/``denoiser_relu_dropout`` existed trained
    Π with ``attn_dropout``/``relu_dropout``: completed with those values, not the new defaults, so
    --shared-from accepts exactly the seeds whose Π settings match."""
    import json

    from simulations.code.config import SPLIT_FIELDS, CodeConfig, completed_config
    assert CodeConfig().denoiser_attn_dropout != 0.05  # the legacy value below is not the default
    a = tmp_path / "src"
    write_tiny_data(a)
    pipeline.run(tiny_cfg(seed=0, shared_pretraining=True, denoiser_attn_dropout=0.05, denoiser_relu_dropout=0.0), a, PRE)
    path = a / "config.json"
    legacy = {k: v for k, v in json.loads(path.read_text()).items() if k not in SPLIT_FIELDS}
    legacy.update(attn_dropout=0.05, relu_dropout=0.0)
    path.write_text(json.dumps(legacy))
    done = completed_config(legacy)
    assert (done["denoiser_attn_dropout"], done["denoiser_relu_dropout"]) == (0.05, 0.0)
    assert done["denoiser_dropout"] == legacy["denoiser_dropout"]  # present fields are kept
    with pytest.raises(RunFolderError, match="denoiser_attn_dropout"):  # the new default is not what Π had
        pipeline.run(tiny_cfg(seed=1, shared_pretraining=True, denoiser_relu_dropout=0.0), tmp_path / "b", PRE,
                     shared_from=a)
    # f's own attention dropout may differ: only Π's must match
    pipeline.run(tiny_cfg(seed=1, shared_pretraining=True, denoiser_attn_dropout=0.05, denoiser_relu_dropout=0.0,
                          attn_dropout=0.2), tmp_path / "c", PRE, shared_from=a)
    assert (tmp_path / "c" / "models" / "denoiser.pt").exists()


def test_side_by_side_invocations_keep_each_others_stage_records(tmp_path):
    """Two invocations training different stages of one folder: each merges its records into the
    manifest as it is on disk (under a lock), so neither overwrites the other's."""
    rd, cfg = pipeline.RunDir(tmp_path / "run"), tiny_cfg()
    a, b = {"denoiser": {"wall_s": 3.0}}, {}  # a copied Π, then b starts with nothing of its own
    pipeline._record_stages(rd, cfg, torch.device("cpu"), a)
    b["direct"] = {"wall_s": 5.0}
    pipeline._record_stages(rd, cfg, torch.device("cpu"), b)
    a["standard"] = {"wall_s": 7.0}  # a's later record, written after b's
    pipeline._record_stages(rd, cfg, torch.device("cpu"), a, this_invocation_wall_s=1.0)
    m = rd.read_manifest()
    assert m["stages"] == {"denoiser": {"wall_s": 3.0}, "direct": {"wall_s": 5.0}, "standard": {"wall_s": 7.0}}
    assert m["total_stage_wall_s"] == 15.0 and m["this_invocation_wall_s"] == 1.0
