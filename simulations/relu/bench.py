"""``python -m simulations.relu.bench``: batched training vs a Python loop over single models.

Both sides run the same code (:func:`simulations.relu.train.train_stack`, full-batch Adam, the
same steps, float64, CPU) on the same S networks (half standard, half composed through a frozen
denoiser). The loop trains them one at a time as stacks of one; the batched run trains all S in
one computation. It checks that both give the same weights, then prints the times and, as its
last line, ``speedup: <number>x``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from . import models, train
from .task import Staircase, make_task_data


def _problem(S: int, width: int, n: int, k: int = 8) -> tuple[dict, train.Batch]:
    stair = Staircase(k, k - 2, 0.5)
    xs, ys = [], []
    for s in range(S):
        d = make_task_data(stair, n, 8, 0.0, np.random.default_rng(s))
        xs.append(d.x_train), ys.append(d.y_train)
    x, y = torch.tensor(np.array(xs)), torch.tensor(np.array(ys))
    noisy, clean = zip(*[train.denoiser_data(k, 1.0, 0.2, 1024, 1000 + s) for s in range(S)])
    den = train.knot_grid_fit(torch.tensor(np.array(noisy)), torch.tensor(np.array(clean)), [width] * S, width,
                              np.full(S, -0.5), np.full(S, k - 0.5))
    composed = torch.arange(S) % 2 == 1
    batch = train.Batch(x, y, torch.ones_like(x), (~composed).to(models.DTYPE), composed.to(models.DTYPE), den)
    return models.clone(den), batch


def _row(batch: train.Batch, s: int) -> train.Batch:
    pick = lambda t: t[s:s + 1]  # noqa: E731
    return train.Batch(pick(batch.x), pick(batch.y), pick(batch.mask), pick(batch.std_w), pick(batch.comp_w),
                       {k: pick(v) for k, v in batch.denoiser.items()})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations.relu.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=64, help="networks S")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--n", type=int, default=32, help="labeled points per network")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both sides (as the sweep)")
    args = ap.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(args.threads)
    init, batch = _problem(args.models, args.width, args.n)
    kw = dict(steps=args.steps, lr=1e-2, weight_decay=1e-4)
    train.train_stack(models.select(init, [0, 1]), _row(batch, 0), steps=5, lr=1e-2, weight_decay=1e-4)  # warm-up

    t0 = time.perf_counter()
    p_batched, _, _ = train.train_stack(init, batch, **kw)
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    singles = [train.train_stack(models.select(init, [s]), _row(batch, s), **kw)[0] for s in range(args.models)]
    t_loop = time.perf_counter() - t0

    p_loop = models.stack(singles)
    diff = max(float((p_batched[k] - p_loop[k]).abs().max()) for k in p_loop)
    print(f"S={args.models} networks (width {args.width}, n={args.n}, {args.steps} Adam steps, "
          f"half standard / half composed), torch threads={torch.get_num_threads()}")
    print(f"python loop over single models: {t_loop:8.3f} s")
    print(f"one batched computation:        {t_batched:8.3f} s")
    print(f"max |weights(batched) - weights(loop)| = {diff:.2e}")
    print(f"speedup: {t_loop / t_batched:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
