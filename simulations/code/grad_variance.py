"""Per-coordinate gradient variance of the two composed estimators on the same batch and model.

``python -m simulations.code grad-variance [--run DIR] [--preset toy] [--repeats R] [--batch B] [--json PATH]``

For each estimator (``ours``: K samples, leave-one-out baseline, pads masked; ``reference``: the
released code's one sample, no baseline, /10, clamp at -50, pads counted; docs/method.md
§3.3-3.4) the command draws the samples R times with different generator seeds and takes the
gradient, with respect to f's parameters, of the score-function term only (λ = 0: the NLL term
has no variance). With g_r ∈ R^P the gradient of draw r it reports

    variance    = (1/P) Σ_p Var_r(g_rp)          (unbiased over the R draws)
    normalised  = variance / ‖mean_r g_r‖²       (the estimators' scales differ: /10, clamp)

and the ratios reference/ours of both. The batch and models are those of
:mod:`simulations.code.bench_composed` (``--run DIR``: the run's tokenizer, denoiser.pt as Π and
standard.pt as f; otherwise untrained models of the preset). See docs/method.md §3.5.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from composedft.io import CheckpointError, atomic_write_json
from composedft.seeding import derive_seed
from composedft.sequence import ComposedSequence

from . import composed as C
from .config import PRESETS

__all__ = ["draw_gradients", "variance_stats", "measure", "main"]

ESTIMATOR_LABELS = {"ours": "ours (K samples, baseline, pads masked, explicit scale)",
                    "reference": "reference (1 sample, no baseline, /10, clamp -50, pads counted)"}


def draw_gradients(model: ComposedSequence, batch: dict, obj: C.ComposedObjective,
                   seeds: list[int]) -> tuple[torch.Tensor, float]:
    """``([R, P], clamped)``: per seed, the gradient of the score-function term (``obj`` with
    λ = 0) w.r.t. f's trainable parameters, flattened; draw r samples from
    ``derive_seed(seeds[r], "samples", batch["step"])`` (:func:`composed.composed_loss`).
    ``clamped``: the share of samples whose reference log-prob hit the clamp (0 for ours)."""
    params = [p for p in model.base_predictor.parameters() if p.requires_grad]
    obj = replace(obj, lam=0.0)
    rows, clamped = [], []
    for seed in seeds:
        loss, stats = C.composed_loss(model, batch, replace(obj, seed=seed))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                               for p, g in zip(params, grads)]))
        clamped.append(stats.get("clamped", 0.0))
    return torch.stack(rows), sum(clamped) / len(clamped)


def variance_stats(grads: torch.Tensor) -> dict[str, float]:
    """Mean per-coordinate variance of ``grads`` ``[R, P]`` over its R draws (unbiased, R >= 2),
    the squared norm of the mean gradient and their ratio (module docstring)."""
    if grads.dim() != 2 or grads.size(0) < 2:
        raise ValueError(f"need [R, P] gradients with R >= 2 draws, got {tuple(grads.shape)}")
    g = grads.double()
    var = float(g.var(dim=0, unbiased=True).mean())
    mean_sq = float(g.mean(dim=0).pow(2).sum())
    return {"variance": var, "mean_grad_sq_norm": mean_sq, "normalised_variance": _ratio(var, mean_sq)}


def _ratio(num: float, den: float) -> float:
    # 0/0 (every reference sample clamped: no gradient at all) is undefined, not infinite
    return num / den if den > 0 else (float("nan") if num == 0 else float("inf"))


def measure(model: ComposedSequence, batch: dict, obj: C.ComposedObjective, repeats: int, *,
            seed: int = 0) -> dict[str, dict[str, float]]:
    """:func:`variance_stats` of both estimators (``obj`` with ``estimator`` replaced) on the same
    batch, model and seeds ``derive_seed(seed, "grad-variance", r)``, plus ``ratio`` reference/ours."""
    if repeats < 2:
        raise ValueError(f"--repeats must be >= 2 (a variance needs two draws), got {repeats}")
    seeds = [derive_seed(seed, "grad-variance", r) for r in range(repeats)]
    batch = {**batch, "step": int(batch.get("step", 0))}
    out = {}
    for name in ("ours", "reference"):
        grads, clamped = draw_gradients(model, batch, replace(obj, estimator=name), seeds)
        out[name] = {**variance_stats(grads), "clamped": clamped}
    out["ratio"] = {key: _ratio(out["reference"][key], out["ours"][key]) for key in ("variance", "normalised_variance")}
    return out


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulations.code grad-variance", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="toy", choices=sorted(PRESETS))
    p.add_argument("--run", default=None, help="a run folder of the same preset (tokenizer, denoiser.pt, standard.pt)")
    p.add_argument("--repeats", type=_positive, default=20, help="independent draws R per estimator (>= 2)")
    p.add_argument("--batch", type=_positive, default=None, help="inputs in the batch (default: composed_batch_size)")
    p.add_argument("--seed", type=int, default=0, help="seeds the R draws (the same for both estimators)")
    p.add_argument("--threads", type=_positive, default=1)
    p.add_argument("--json", default=None, help="also write the numbers here")
    a = p.parse_args(argv)
    if a.repeats < 2:
        print(f"error: --repeats must be >= 2 (a variance needs two draws), got {a.repeats}", file=sys.stderr)
        return 2
    from .bench_composed import bench_setup  # heavy imports (tokenizer training) only when run
    from .tokenizer import VocabError
    torch.set_num_threads(a.threads)
    cfg = PRESETS[a.preset]
    run = Path(a.run) if a.run else None
    if run is not None and not run.is_dir():
        print(f"error: --run {run}: not a directory", file=sys.stderr)
        return 2
    try:
        _, f, pi, what, batch, cap = bench_setup(cfg, run, a.batch or cfg.composed_batch_size)
    except (VocabError, CheckpointError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    obj = C.ComposedObjective(k=cfg.composed_k, baseline=cfg.composed_baseline, scale=cfg.composed_scale,
                              length_normalize=cfg.composed_length_normalize, max_len=cap,
                              cap_factor=cfg.max_len_factor, amp=False)
    model = ComposedSequence(f, pi)
    res = measure(model, batch, obj, a.repeats, seed=a.seed)
    P = sum(q.numel() for q in f.parameters() if q.requires_grad)
    lines = [f"preset {a.preset}, {what}, batch {batch['src'].size(0)} inputs, R={a.repeats} draws, "
             f"P={P} parameters of f; ours: K={obj.k}, baseline {obj.baseline}, scale {obj.scale:g}, "
             f"length-normalised {obj.length_normalize}"]
    for name in ("ours", "reference"):
        r = res[name]
        lines.append(f"{ESTIMATOR_LABELS[name]}: mean per-coordinate variance {r['variance']:.4e}, "
                     f"|mean grad|^2 {r['mean_grad_sq_norm']:.4e}, normalised {r['normalised_variance']:.4e}, "
                     f"samples clamped {100 * r['clamped']:.0f}%")
    lines.append(f"reference/ours: variance {res['ratio']['variance']:.3g}x, "
                 f"normalised variance {res['ratio']['normalised_variance']:.3g}x")
    if res["reference"]["clamped"] >= 1.0:
        lines.append("note: every reference sample was clamped (log p < -50: its gradient is exactly zero)")
    print("\n".join(lines))
    if a.json:
        atomic_write_json(a.json, {"preset": a.preset, "run": a.run, "repeats": a.repeats, "seed": a.seed,
                                   "batch": int(batch["src"].size(0)), "k": obj.k, "parameters": P, **res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
