"""Configuration of the two-layer ReLU simulation: one frozen dataclass, three presets.

A sweep is a *base setting* plus one-factor-at-a-time variations along seven axes (labeled-set
size n, number of intervals k, gap delta, denoiser noise sigma, composed weight lambda, width,
weight decay). Every (setting, seed, method) of one axis trains as one batched computation, and
consecutive small axes are packed into one computation (``pack_rows``).

Training budget. The paper's complexity claim is about the *regularized optimum* (min-norm
solutions). Fine-tuning starts at the denoiser's weights, whose R(Pi) (~54 at k=8) is far above
both optima; at weight decay 2e-3 composed's R(f) stops falling near step 20k at k = 8
(figures/relu/training.png), later for larger k or wider denoisers; with a 3k-step budget both standard and composed stay near R(Pi) and the gap does not
show (paper_repro.md records 3k, 15k and 30k budgets). lambda = 0.1 gives the composed loss a
restoring force where Pi is flat: at lambda = 0 some seeds park points on a wrong plateau (zero
pathwise gradient there) and stay.

Geometry (docs/method.md §4.3, docs/experiments.md §2.1): plateau i (i = 0..k-1) has height ``i*h`` on the
interval ``[i*(L+delta), i*(L+delta)+L]``. The first ``k - k_ood`` intervals are labeled (ID);
the last ``k_ood`` are the out-of-distribution extrapolation test. Every interval lies inside the
rounding cell of the linear map ``x -> h*(x - L/2)/(L+delta)``, so a linear base predictor
composed with rounding fits the staircase exactly (the paper's Figure 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np

from composedft.config import ConfigError
from composedft.runs import RunDir

__all__ = ["ReluConfig", "PRESETS", "AXES", "AXIS_COLUMNS", "DENOISER_REGS", "Setting", "validate", "base_setting"]

# sweep axis name -> (config field holding the values, setting field it varies)
AXES: dict[str, tuple[str, str]] = {
    "n_train": ("sweep_n", "n_train"),
    "k": ("sweep_k", "k"),
    "delta": ("sweep_delta", "delta"),
    "sigma": ("sweep_sigma", "sigma"),
    "lam": ("sweep_lam", "lam"),
    "width": ("sweep_width", "width"),
    "weight_decay": ("sweep_wd", "weight_decay"),
}

# denoiser pre-training variants of the ``denoiser_reg`` axis (a categorical axis, run at the base setting)
DENOISER_REGS: tuple[str, ...] = ("none", "radreg")

# the result columns that identify a setting (one per numeric axis)
AXIS_COLUMNS: tuple[str, ...] = tuple(attr for _, attr in AXES.values())


def base_setting(run_dir: str | Path | None, values: Mapping[str, Sequence[float]]) -> tuple[dict, dict]:
    """The base setting of a saved sweep and its config: DIR/config.json, else each axis's mode.

    ``values`` maps each of :data:`AXIS_COLUMNS` to that column of the results; it is used only
    when the folder has no (complete) config.json, and ties go to the smallest value.

    Returns:
        ``({axis column: float}, the config.json dict or {})``.
    """
    cfg = RunDir(run_dir, create=False).read_config() if run_dir is not None else {}
    if cfg:
        if all(c in cfg for c in AXIS_COLUMNS):
            return {c: float(cfg[c]) for c in AXIS_COLUMNS}, cfg
    out = {}
    for c in AXIS_COLUMNS:
        vals, counts = np.unique(np.asarray(values[c], float), return_counts=True)
        out[c] = float(vals[np.argmax(counts)])
    return out, {}


@dataclass(frozen=True)
class ReluConfig:
    # ---- task: 1-D staircase on disjoint intervals -------------------------------------------
    k: int = 8                        # number of intervals (plateaus 0, h, ..., (k-1)h)
    k_ood: int = 2                    # last intervals held out as the OOD (extrapolation) test
    delta: float = 0.25               # gap between consecutive intervals
    interval_len: float = 1.0         # L, length of each interval
    h: float = 1.0                    # spacing of the valid outputs (multiples of h)
    n_train: int = 64                 # labeled points, uniform on the first k - k_ood intervals
    label_noise: float = 0.0          # std of Gaussian noise added to the training labels
    n_test: int = 512                 # ID and OOD test points each
    # ---- denoiser: two-layer ReLU pre-trained on noisy valid outputs ---------------------------
    sigma: float = 0.2                # std of the Gaussian corruption of valid outputs
    n_unlabeled: int = 2048           # corrupted valid outputs per denoiser (fixed pre-training set)
    denoiser_steps: int = 200         # Adam steps on all weights after the least-squares start
    denoiser_batch: int = 256         # fresh (corrupted, clean) pairs per step
    denoiser_lr: float = 1e-2         # Adam learning rate for the denoiser
    # ---- base predictor and fine-tuning --------------------------------------------------------
    width: int = 32                   # m, hidden units (base predictor and denoiser alike)
    steps: int = 30000                # full-batch Adam steps of fine-tuning (enough to converge, see above)
    lr: float = 1e-2                  # Adam learning rate of fine-tuning
    weight_decay: float = 2e-3        # coefficient of (1/2)sum(a^2 + w^2); biases are free
    lam: float = 0.1                  # lambda: weight of the standard term in the composed loss
    composed_init: Literal["denoiser", "standard"] = "denoiser"  # paper / reference-code init
    methods: tuple[str, ...] = ("direct", "standard", "composed", "posthoc", "composed_scratch")  # registry names
    # ---- sweep ---------------------------------------------------------------------------------
    seeds: int = 5                    # seeds 0..seeds-1 per setting
    sweep_n: tuple[int, ...] = ()     # labeled-set sizes (generalization curve)
    sweep_k: tuple[int, ...] = ()     # numbers of intervals
    sweep_delta: tuple[float, ...] = ()  # gaps
    sweep_sigma: tuple[float, ...] = ()  # denoiser noise levels
    sweep_lam: tuple[float, ...] = ()    # composed lambda values
    sweep_width: tuple[int, ...] = ()    # widths
    sweep_wd: tuple[float, ...] = ()     # weight decays (the regularization path)
    pack_rows: int = 256              # consecutive axes share one batched computation up to this many trained rows
    curve_points: int = 600           # grid size of the saved Figure-1 curves
    record_every: int = 1000          # steps between trajectory records (R(f), objective); 0 = off
    # ---- related methods (docs/related-methods.md §5) ------------------------------------------
    smart_eps: float = 0.05           # SMART's l_inf radius on the scalar input (sigma = eps/10, eta = eps)
    smart_lambda: float = 1.0         # lambda_s, weight of SMART's smoothness term
    smart_mu: float = 1.0             # mu, weight of the Bregman proximal term (EMA anchor)
    n_groups: int = 8                 # k-shot grouping: groups of hidden units (= width: plain fine-tuning)
    sweep_denoiser_reg: tuple[str, ...] = ()  # denoiser pre-training: "none" and/or "radreg" (base setting)
    radreg_weight: float = 0.01       # lambda of RadReg's Rademacher penalty in the denoiser's pre-training
    radreg_draws: int = 8             # sign vectors per pre-training step
    radreg_inputs: int = 64           # unlabeled downstream inputs (uniform on the labeled intervals)
    threads: int = 2                  # torch threads (0 = torch default); results do not depend on it


def validate(cfg: ReluConfig) -> ReluConfig:
    """Refuse settings that cannot make a task; the message names the field."""
    ks = [cfg.k, *cfg.sweep_k]
    if min(ks) - cfg.k_ood < 2:
        raise ConfigError(f"field 'k': need k - k_ood >= 2 labeled intervals (k={min(ks)}, k_ood={cfg.k_ood})")
    if cfg.k_ood < 1:
        raise ConfigError("field 'k_ood': need at least one OOD interval")
    for name in ("delta", "interval_len", "h", "sigma", "lr", "denoiser_lr"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"field '{name}': must be > 0, got {getattr(cfg, name)}")
    if any(d <= 0 for d in cfg.sweep_delta):
        raise ConfigError("field 'sweep_delta': gaps must be > 0")
    if any(s <= 0 for s in cfg.sweep_sigma):
        raise ConfigError("field 'sweep_sigma': noise levels must be > 0")
    if min([cfg.n_train, *cfg.sweep_n]) < 1:
        raise ConfigError("field 'n_train': need at least one labeled point")
    if min([cfg.width, *cfg.sweep_width]) < 1:
        raise ConfigError("field 'width': need at least one hidden unit")
    if cfg.seeds < 1:
        raise ConfigError("field 'seeds': need at least one seed")
    if cfg.weight_decay < 0 or any(v < 0 for v in cfg.sweep_wd):
        raise ConfigError("field 'weight_decay'/'sweep_wd': must be >= 0")
    if cfg.lam < 0 or any(v < 0 for v in cfg.sweep_lam):
        raise ConfigError("field 'lam'/'sweep_lam': must be >= 0")
    if cfg.record_every < 0:
        raise ConfigError("field 'record_every': must be >= 0 (0 turns recording off)")
    if cfg.pack_rows < 1:
        raise ConfigError("field 'pack_rows': must be >= 1")
    bad = sorted(set(cfg.sweep_denoiser_reg) - set(DENOISER_REGS))
    if bad:
        raise ConfigError(f"field 'sweep_denoiser_reg': unknown value(s) {bad} (choose from {list(DENOISER_REGS)})")
    for name in ("smart_eps", "radreg_draws", "radreg_inputs", "n_groups"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"field '{name}': must be > 0, got {getattr(cfg, name)}")
    for name in ("smart_lambda", "smart_mu", "radreg_weight"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"field '{name}': must be >= 0, got {getattr(cfg, name)}")
    _check_methods(cfg)
    return cfg


def _check_methods(cfg: ReluConfig) -> None:
    """Every method is in the core registry, and this study implements what it trains."""
    from composedft.methods import check_methods
    from . import methods as relu_methods  # registers the study's own methods and objectives
    from . import related  # noqa: F401  (registers the related methods; late import: it needs this module)

    try:
        check_methods(cfg.methods, cfg, relu_methods.OBJECTIVES, domain="the ReLU study")
    except ValueError as err:
        raise ConfigError(f"field 'methods': {err}") from None


PRESETS: dict[str, ReluConfig] = {
    # < 60 s: the four methods at k = 4 and 8 (delta = 0.25), 3 seeds, trained to convergence
    "smoke": ReluConfig(seeds=3, sweep_k=(4, 8), methods=("direct", "standard", "composed", "posthoc")),
    # a few minutes on 2 cores: the claims' axes (n, k, delta), the lambda / sigma ablations, the
    # regularization path and the RadReg denoiser, 5 seeds (enough for intervals that hold across
    # machines); composed_scratch and the width axis only in `full`
    "quick": ReluConfig(seeds=5, methods=("direct", "standard", "composed", "posthoc"),
                        sweep_n=(8, 16, 32, 64), sweep_k=(4, 6, 8), sweep_delta=(0.125, 0.25, 0.5),
                        sweep_sigma=(0.1, 0.2, 0.4), sweep_lam=(0.0, 0.1, 1.0), sweep_wd=(5e-4, 2e-3, 1e-2),
                        sweep_denoiser_reg=("none", "radreg")),
    # the related methods (docs/related-methods.md) against standard and composed across k and delta,
    # with the RadReg-pre-trained denoiser at the base setting; 5 seeds
    "related": ReluConfig(seeds=5, methods=("standard", "composed", "posthoc", "smart", "linearized", "grouped"),
                          sweep_k=(4, 6, 8), sweep_delta=(0.125, 0.25, 0.5), sweep_denoiser_reg=("none", "radreg")),
    # the reported sweep: 12 seeds, finer axes, every method
    "full": ReluConfig(seeds=12, denoiser_steps=500,
                       sweep_n=(8, 16, 32, 64, 128, 256), sweep_k=(4, 6, 8, 10, 12),
                       sweep_delta=(0.0625, 0.125, 0.25, 0.5, 1.0),
                       sweep_sigma=(0.1, 0.2, 0.3, 0.45, 0.6), sweep_lam=(0.0, 0.01, 0.1, 1.0, 10.0),
                       sweep_width=(16, 32, 64, 128), sweep_wd=(5e-4, 1e-3, 2e-3, 5e-3, 1e-2)),
}


@dataclass(frozen=True)
class Setting:
    """One point of a sweep: the fields that vary along the axes (the rest come from the config)."""

    n_train: int
    k: int
    delta: float
    sigma: float
    lam: float
    width: int
    weight_decay: float
    denoiser_reg: str = "none"

    @classmethod
    def base(cls, cfg: ReluConfig) -> "Setting":
        return cls(cfg.n_train, cfg.k, cfg.delta, cfg.sigma, cfg.lam, cfg.width, cfg.weight_decay)

    def key(self) -> tuple:
        """Hashable identity used for resume (floats as repr strings, stable across CSV round trips).

        The key also seeds the random inits, so the default pre-training adds nothing to it: the
        ``denoiser_reg = none`` rows keep the seeds (and numbers) they had before the axis existed.
        """
        key = (int(self.n_train), int(self.k), repr(float(self.delta)), repr(float(self.sigma)),
               repr(float(self.lam)), int(self.width), repr(float(self.weight_decay)))
        return key if self.denoiser_reg == "none" else key + (str(self.denoiser_reg),)
