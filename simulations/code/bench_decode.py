"""Benchmark: greedy decoding with the key-value cache against without, and training tokens/s.

    python -m simulations.code.bench_decode [--preset toy] [--batch 100] [--src-len 60] [--max-len 130]

Both decoders run side by side in one process on the same model and inputs; the script prints
their wall times, the speed-up ratio (target >= 3x at toy size) and whether the outputs are
identical, then the training throughput (target tokens per second, forward + backward + Adam).
The model is randomly initialised, so rows rarely stop early: close to the worst case of
``max_len`` tokens per row (the count decoded is printed), the same work for both paths.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from composedft.devices import autocast, resolve_device

from .config import PRESETS, model_config
from .decode import BOS, PAD, greedy_decode
from .model import Seq2SeqTransformer, count_parameters


def _timed(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_decode(model, src, max_len, repeats=2) -> dict:
    """Seconds for cached and uncached greedy decoding (best of ``repeats``) and equality."""
    t_cache, a = _timed(lambda: greedy_decode(model, src, max_len, use_cache=True), repeats)
    t_nocache, b = _timed(lambda: greedy_decode(model, src, max_len, use_cache=False), repeats)
    return {"cache_s": t_cache, "nocache_s": t_nocache, "speedup": t_nocache / t_cache,
            "identical": bool(torch.equal(a, b)), "tokens": int((a != PAD).sum())}


def bench_train(model, src, tgt, steps, device) -> dict:
    """Target tokens per second of teacher-forced NLL training (forward + backward + step)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], dim=1)
    n_tok = int((tgt != PAD).sum())

    def step():
        with autocast(device):
            logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), ignore_index=PAD)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"train_tokens_per_s": n_tok * steps / dt, "step_s": dt / steps}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m simulations.code.bench_decode", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="toy", choices=list(PRESETS))
    p.add_argument("--vocab", type=int, default=400, help="vocabulary size (SANSTYPE joint vocab ~ 300-400)")
    p.add_argument("--batch", type=int, default=100, help="sequences decoded at once")
    p.add_argument("--src-len", type=int, default=60, help="source tokens (SANSTYPE ~ 59)")
    p.add_argument("--max-len", type=int, default=130, help="tokens decoded per row (SANSTYPE gold ~ 72, max ~ 130)")
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = PRESETS[args.preset]
    torch.manual_seed(0)
    model = Seq2SeqTransformer(model_config(cfg, args.vocab)).to(device)
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, args.vocab, (args.batch, args.src_len), generator=g).to(device)
    print(f"preset={args.preset} params={count_parameters(model):,} device={device} threads={torch.get_num_threads()}")
    d = bench_decode(model, src, args.max_len)
    print(f"decode  batch={args.batch} max_len={args.max_len} decoded={d['tokens']} tokens: cache {d['cache_s']:.3f}s  "
          f"no-cache {d['nocache_s']:.3f}s  speed-up {d['speedup']:.2f}x  identical={d['identical']}")
    tgt = torch.randint(4, args.vocab, (cfg.batch_size, args.max_len), generator=g).to(device)
    tsrc = torch.randint(4, args.vocab, (cfg.batch_size, args.src_len), generator=g).to(device)
    t = bench_train(model, tsrc, tgt, args.train_steps, device)
    print(f"train   batch={cfg.batch_size} tgt_len={args.max_len}: {t['train_tokens_per_s']:,.0f} target tokens/s "
          f"({t['step_s'] * 1000:.1f} ms/step)")
    return {**d, **t}


if __name__ == "__main__":
    main()
