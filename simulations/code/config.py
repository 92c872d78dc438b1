"""Configuration of the pseudocode-to-code pipeline: one frozen dataclass, three presets.

Paper values come from ``../shared/docs/paper-notes.md`` §4.1 (SANSTYPE) and §4.2 (SPoC). The
reference code counted epochs of fairseq batches of ``--max-tokens 4000 --update-freq 4``
(~16k tokens, ~180 SANSTYPE programs per update); we count optimizer steps of ``batch_size``
sequences, converted at that rate (e.g. SANSTYPE direct: 500 epochs x ~6 updates ~ 3000 steps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Literal

from composedft.config import ConfigError

from .model import ModelConfig

__all__ = ["CodeConfig", "PRESETS", "model_config"]


@dataclass(frozen=True)
class CodeConfig:
    # ---- data -------------------------------------------------------------------------------
    dataset: Literal["sanstype", "spoc"] = "sanstype"  # which task
    data_dir: str = ""                # shared data folder; "" = ../shared/data (or $COMPOSEDFT_DATA)
    n_labeled: int = 1000             # SANSTYPE labeled programs (shared train file, else generated)
    n_val: int = 500                  # validation programs (model selection on token NLL)
    n_test_id: int = 500              # SANSTYPE generated ID test programs (0 = all, SPoC TestW)
    n_test_ood: int = 500             # SANSTYPE generated OOD test (unseen templates); SPoC proxy size
    n_unlabeled: int = 20000          # SANSTYPE: unlabeled programs for the denoiser
    spoc_val_frac: float = 0.05       # SPoC: fraction of training programs held out for validation
    spoc_ood_problems: int = 20       # SPoC: problems held out of training as the OOD proxy
    spoc_testp: str = ""              # SPoC: path to SPoC's TestP tsv (the real OOD split), if any
    spoc_corruptions: int = 5         # SPoC: corrupted copies of each training program (denoiser)
    spoc_max_tgt_tokens: int = 0      # SPoC: drop TRAINING programs longer than this (0 = keep all)
    max_len_factor: float = 1.5       # decode cap = factor * longest gold target + margin
    # ---- model ------------------------------------------------------------------------------
    d_model: int = 256                # width
    n_heads: int = 2                  # heads (SANSTYPE 2, SPoC 8)
    n_layers: int = 3                 # encoder and decoder depth each (SANSTYPE 3, SPoC 5)
    d_ff: int = 1024                  # FFN width
    dropout: float = 0.1              # residual dropout of f (SPoC 0.4)
    attn_dropout: float = 0.2         # attention dropout
    relu_dropout: float = 0.2         # FFN activation dropout
    denoiser_dropout: float = 0.4     # residual dropout while pre-training Π (SANSTYPE run_synthetic)
    share_embeddings: bool = True     # one joint embedding matrix (src, tgt, output)
    # ---- optimisation (Adam(0.9, 0.98), inverse-sqrt schedule, paper §4.1) -------------------
    batch_size: int = 128             # sequences per optimizer step (global, over DDP ranks)
    weight_decay: float = 1e-4        # decoupled weight decay
    grad_clip: float = 0.0            # max grad norm (0 = off, as the reference)
    denoiser_steps: int = 6000        # denoiser pre-training steps
    denoiser_lr: float = 1e-3
    denoiser_warmup: int = 4000
    direct_steps: int = 3000          # direct: random init, labeled data
    direct_lr: float = 2e-3
    direct_warmup: int = 400
    standard_steps: int = 1800        # standard fine-tuning: init from the denoiser
    standard_lr: float = 2e-3
    standard_warmup: int = 150
    composed_steps: int = 1800        # composed fine-tuning: Π frozen, f trained through it
    composed_lr: float = 2e-4
    composed_warmup: int = 90
    label_smoothing: float = 0.0      # on the NLL terms (SPoC 0.1-0.2)
    eval_every: int = 200             # validation (token NLL on val) every N steps; best is kept
    # ---- composed objective (README §1; our fixes of the reference estimator) ----------------
    composed_init: Literal["denoiser", "standard"] = "standard"  # f's init (reference: standard)
    composed_k: int = 4               # samples ŷ per input
    composed_baseline: Literal["none", "mean", "loo"] = "loo"  # score-function baseline
    composed_lambda: float = 1.0      # weight of the standard NLL term
    composed_scale: float = 1.0       # explicit scale of the score-function term
    composed_length_normalize: bool = True  # log p_Π(y|ŷ) per token (reward scale independent of length)
    composed_batch_size: int = 32     # inputs per composed step (each with K samples)
    # ---- evaluation -------------------------------------------------------------------------
    decode_batch_size: int = 100      # sequences per decoding batch
    beam: int = 1                     # 1 = greedy (default, as the paper)
    eval_workers: int = 0             # evaluator processes (0 = one per CPU)
    time_limit_s: float = 2.0         # per test case
    # ---- run --------------------------------------------------------------------------------
    seed: int = 0                     # one seed drives data generation, init and sampling
    device: str = "auto"              # auto | cpu | cuda | cuda:N | mps
    amp: bool = True                  # bf16 autocast on CUDA (no-op on CPU)
    threads: int = 0                  # torch CPU threads (0 = torch default)

    def validate(self) -> None:
        """Refuse impossible values, naming the field: every count, step, limit, rate and worker
        number must be finite and non-negative (docs/sandbox.md §6), some strictly positive."""
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"field '{f.name}': must be a finite number >= 0, got {v!r}")
        for name in ("time_limit_s", "d_model", "n_heads", "n_layers", "d_ff", "max_len_factor"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"field '{name}': must be > 0, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"field 'n_heads': d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        for name in ("batch_size", "composed_k", "composed_batch_size", "decode_batch_size", "beam", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"field '{name}': must be >= 1, got {getattr(self, name)}")
        if self.composed_baseline == "loo" and self.composed_k < 2:
            raise ConfigError("field 'composed_k': the leave-one-out baseline needs composed_k >= 2")
        if not 0 < self.spoc_val_frac < 1:
            raise ConfigError(f"field 'spoc_val_frac': must be in (0, 1), got {self.spoc_val_frac}")

    def __post_init__(self) -> None:
        self.validate()


def model_config(cfg: CodeConfig, vocab_size: int, *, denoiser: bool = False) -> ModelConfig:
    """The Transformer of f (or of Π, with its pre-training dropout)."""
    return ModelConfig(vocab_size=vocab_size, d_model=cfg.d_model, n_heads=cfg.n_heads,
                       n_enc_layers=cfg.n_layers, n_dec_layers=cfg.n_layers, d_ff=cfg.d_ff,
                       dropout=cfg.denoiser_dropout if denoiser else cfg.dropout,
                       attn_dropout=cfg.attn_dropout, relu_dropout=cfg.relu_dropout,
                       share_embeddings=cfg.share_embeddings)


SANSTYPE_PAPER = CodeConfig()

# SPoC (§4.2): 5+5 layers, 8 heads, dropout 0.4, label smoothing, lr 1e-3 with 4000 warmup;
# composed at lr 1e-4 / 2000 warmup for 20 epochs, LS 0.05 (we keep one LS for all stages).
SPOC_PAPER = replace(
    SANSTYPE_PAPER, dataset="spoc", n_heads=8, n_layers=5, dropout=0.4, denoiser_dropout=0.4,
    n_test_id=0, n_test_ood=0, label_smoothing=0.1, batch_size=64,
    denoiser_steps=30000, denoiser_lr=1e-3, denoiser_warmup=10000,
    direct_steps=20000, direct_lr=1e-3, direct_warmup=4000,
    standard_steps=15000, standard_lr=1e-3, standard_warmup=4000,
    composed_steps=4000, composed_lr=1e-4, composed_warmup=2000, composed_batch_size=16,
    eval_every=1000, decode_batch_size=64)

# Toy: SANSTYPE on 2 CPU cores, end to end (data, 4 trainings, 6 methods x 2 splits evaluated)
# in <= 10 min. Choices (not tuned on test results):
# * the denoiser Π gets the largest share of steps (1000, was 500: its val NLL was still falling
#   steeply, 0.35/token at 500 and 0.12 at 1000, and standard, composed and post hoc all rest on
#   it), on 8000 unlabeled programs (cheap to generate; more distinct corruptions). Paid for by
#   direct 600 -> 500 and standard 400 -> 300 steps, keeping the paper's 5:3 direct:standard
#   ratio (SANSTYPE: 500 vs 300 epochs); both still select their best validation checkpoint;
# * 80 test programs per split (the evaluator's compile + run dominated the wall time);
#   identical programs of different methods are run once (stage_eval._evaluate_unique).
TOY = replace(
    SANSTYPE_PAPER, n_val=100, n_test_id=80, n_test_ood=80, n_unlabeled=8000,
    d_model=64, n_heads=2, n_layers=2, d_ff=128, dropout=0.1, attn_dropout=0.0, relu_dropout=0.0,
    denoiser_dropout=0.1, batch_size=32,
    denoiser_steps=1000, denoiser_lr=3e-3, denoiser_warmup=100,
    direct_steps=500, direct_lr=3e-3, direct_warmup=100,
    standard_steps=300, standard_lr=3e-3, standard_warmup=50,
    composed_steps=60, composed_lr=3e-4, composed_warmup=10, composed_k=4, composed_batch_size=16,
    eval_every=100, decode_batch_size=100, eval_workers=2, threads=1)

PRESETS: dict[str, CodeConfig] = {"toy": TOY, "sanstype-paper": SANSTYPE_PAPER, "spoc-paper": SPOC_PAPER}
