"""``run --shared-from DIR``: start a fine-tuning seed from another seed's pre-training outputs.

With ``shared_pretraining`` the data, tokenizer and denoiser Π of a run do not depend on its
``seed`` (:func:`.config.stage_seed`), so recomputing them for every fine-tuning seed only repeats
the same computation (Π is most of a seed's time). This copies them from a finished run folder of
the same configuration instead; the copied stages are then skipped as done. The manifest records
where they came from, so a reader can tell a shared Π from a retrained one.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from composedft.config import cfg_to_dict
from composedft.runs import RunDir

from .config import PRETRAINING_STAGES, CodeConfig, completed_config, finetuning_only
from .context import RESUME_FREE_FIELDS, RunFolderError
from .stages import BT_PAIRS

__all__ = ["copy_pretraining", "SHARED_FILES"]

# the files the pre-training stages write (data/ is copied whole); the last one marks completion
SHARED_FILES = ("tokenizer.model", "vocab.json", "tokenizer.json")


def _check_source(src: RunDir, cfg: CodeConfig) -> dict:
    if not src.config_path.exists():
        raise RunFolderError(f"{src.config_path}: missing (--shared-from needs a run folder of this preset)")
    old, new = completed_config(src.read_config()), cfg_to_dict(cfg)
    if not (old.get("shared_pretraining") and cfg.shared_pretraining):
        raise RunFolderError(f"{src.path}: --shared-from needs shared_pretraining=true in both runs "
                             f"(field 'shared_pretraining': {old.get('shared_pretraining')} there, "
                             f"{cfg.shared_pretraining} here)")
    diff = sorted(k for k in set(old) | set(new)
                  if k not in RESUME_FREE_FIELDS and not finetuning_only(k) and old.get(k) != new.get(k))
    if diff:
        raise RunFolderError(f"{src.config_path}: made with a different configuration (fields {', '.join(diff)}); "
                             "its pre-training outputs are not this run's")
    for need in (src.data_path("info.json"), src.tokenizer_path("tokenizer.json"), src.model_path("denoiser")):
        if not need.exists():
            raise RunFolderError(f"{need}: missing (finish the pre-training stages of {src.path} first)")
    return src.read_manifest().get("stages", {})


def _copy_file(a: Path, b: Path) -> None:
    """Copy atomically: a half-copied checkpoint must never look like a finished stage."""
    b.parent.mkdir(parents=True, exist_ok=True)
    tmp = b.with_name(b.name + ".part")
    shutil.copyfile(a, tmp)
    tmp.replace(b)


def copy_pretraining(src_dir: str | Path, rd: RunDir, cfg: CodeConfig) -> dict[str, dict]:
    """Copy data/, the tokenizer and ``models/denoiser.pt`` of ``src_dir`` into ``rd`` (unless
    ``rd`` already has its denoiser); returns the manifest entries of the copied stages."""
    src = RunDir(src_dir, create=False)
    if Path(src.path).resolve() == Path(rd.path).resolve():
        raise RunFolderError(f"{src.path}: --shared-from names the run folder itself")
    timings = _check_source(src, cfg)
    if rd.model_path("denoiser").exists():
        return {}
    # order matters for resume: data, then the tokenizer (tokenizer.json last), then Π
    # the data stage's files only: data/bt_pairs.jsonl is the source seed's own back-translation
    files = sorted(f for f in src.data_dir.rglob("*") if f.is_file() and f.name != BT_PAIRS)
    for f in sorted(files, key=lambda f: f.name == "info.json"):  # info.json marks the data stage done
        _copy_file(f, rd.data_dir / f.relative_to(src.data_dir))
    for name in SHARED_FILES:
        if src.tokenizer_path(name).exists():
            _copy_file(src.tokenizer_path(name), rd.tokenizer_path(name))
    _copy_file(src.model_path("denoiser"), rd.model_path("denoiser"))
    # wall_s 0: this run did not spend the time (the seeds' total would count Π once per seed)
    return {s: {**timings.get(s, {}), "wall_s": 0.0, "source_wall_s": timings.get(s, {}).get("wall_s"),
                "copied_from": str(src.path)} for s in PRETRAINING_STAGES}
