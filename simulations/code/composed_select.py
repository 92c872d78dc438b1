"""The composed learning rate, chosen on validation (``composed_lr_grid``; sanstype-cpu v5).

A composed stage starts from a trained f and takes few steps (150 in ``sanstype-cpu``), so its
learning rate decides how far f moves from where it started. With v4's 3e-4, composed did no
better than standard over three seeds; a seed-0 probe at 3e-5 did better, but that rate was read
off the test split (paper_repro.md §3). This module makes the choice on validation instead: the
stage is trained once per candidate rate, every candidate with the same seed (the same batches and
the same samples ŷ, so the rate is the only difference), and the f whose Π∘f has the highest
greedy execution accuracy on the validation programs is kept. That is the quantity the paper
reports, on the split the NLL-trained stages select on (``select_on="exec"``). Ties go to the
lower composed val NLL, then to the smaller rate (the smaller move from the start).

Each candidate's f is kept in ``models/<method>@lr<rate>.pt`` (its own stage folder, so a stopped
grid resumes candidate by candidate); the chosen one is copied to ``models/<method>.pt``, which
marks the stage done. The stage's manifest record lists every candidate.
"""
from __future__ import annotations

from collections.abc import Callable

from composedft.io import atomic_write_bytes

from .context import Context, barrier
from .exec_acc import val_exec_scorer

__all__ = ["candidate_name", "select_rate", "train_over_grid"]


def candidate_name(method: str, lr: float) -> str:
    """The storage name of one candidate: ``composed@lr3e-05`` (models/, stages/)."""
    return f"{method}@lr{lr:g}"


def select_rate(candidates: list[dict]) -> dict:
    """The candidate with the highest ``val_exec``; ties by the lower ``best_val_nll``, then the
    smaller ``lr``."""
    if not candidates:
        raise ValueError("select_rate: no candidates")
    return max(candidates, key=lambda r: (r["val_exec"], -r["best_val_nll"], -r["lr"]))


def train_over_grid(ctx: Context, method: str, vocab, denoiser, train_one: Callable[[float, str], dict | None],
                    load_f: Callable[[str], object]) -> dict:
    """Train ``method`` at every rate of ``ctx.cfg.composed_lr_grid`` and keep the best on validation.

    ``train_one(lr, store)`` trains one candidate into ``models/<store>.pt`` (returning its stage
    record, or None when that file already exists); ``load_f(store)`` loads a saved f. Returns the
    stage record of the chosen candidate with ``selected_lr`` and ``lr_grid`` (one row per rate:
    lr, val_exec, best_val_nll, steps_run)."""
    c = ctx.cfg
    score = val_exec_scorer(ctx, vocab) if ctx.dist.rank == 0 else None
    rows, infos = [], {}
    for lr in c.composed_lr_grid:
        store = candidate_name(method, lr)
        info = train_one(lr, store)
        ck = ctx.rd.load_model(store)
        infos[lr] = info if info is not None else {"resumed": True, "best_step": ck.get("best_step")}
        row = {"lr": lr, "best_val_nll": round(float(ck["best_val_nll"]), 4),
               "steps_run": (info or {}).get("steps_run")}
        if ctx.dist.rank == 0:
            row["val_exec"] = round(score(load_f(store), denoiser=denoiser), 4)
            ctx.log(f"  [{method}] lr={lr:g} val_exec(Π∘f)={row['val_exec']:.3f} val_nll={row['best_val_nll']:.4f}")
        rows.append(row)
    chosen = select_rate(rows) if ctx.dist.rank == 0 else rows[0]  # only rank 0 scored the candidates
    if ctx.dist.rank == 0:
        # the copy marks the stage done, so it is atomic (a half-written models/<method>.pt would not be)
        atomic_write_bytes(ctx.rd.model_path(method), ctx.rd.model_path(candidate_name(method, chosen["lr"])).read_bytes())
    barrier(ctx.dist)
    return {**infos[chosen["lr"]], "selected_lr": chosen["lr"], "selected_on": "val_exec of Π∘f", "lr_grid": rows}
