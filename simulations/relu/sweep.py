"""Resumable sweeps: every (setting, seed, method) of one axis trains as one batched computation.

Plan: the base setting plus one-factor-at-a-time variations along each non-empty axis of the
config (settings already planned on an earlier axis are not repeated). Each axis is one *group*;
consecutive groups are packed into one batched computation up to ``pack_rows`` trained networks.
After a pack finishes, each group's rows are appended to ``results.csv`` atomically, so an
interrupted run resumes by skipping the settings whose rows are already there.

Within a group: (1) pre-train one denoiser per (k, sigma, width, seed) on unlabeled valid outputs;
(2) train the methods phase by phase (a method initialized from another's f comes after it);
(3) evaluate norms and ID/OOD errors; (4) save the Figure-1 curves of the base setting, seed 0.
"""
from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from composedft.io import append_csv_rows, atomic_write_bytes, atomic_write_csv, read_csv
from composedft.methods import get_method, resolve_init, training_phases
from composedft.runs import RunDir
from composedft.seeding import derive_seed
from theory import staircase as theory_staircase

from . import metrics, models, related, train
from .config import AXES, ReluConfig, Setting
from .methods import objective_of
from .task import Staircase, make_task_data, sample_intervals

__all__ = ["plan", "run_group", "run_sweep", "COLUMNS", "TRAJ_COLUMNS"]

# the training trajectory: R(f) and the regularized objective every ``record_every`` steps
TRAJ_COLUMNS = ["method", "seed", "n_train", "k", "delta", "sigma", "lam", "width", "weight_decay",
                "denoiser_reg", "step", "fn_norm", "objective"]

COLUMNS = ["method", "seed", "n_train", "k", "k_train", "delta", "sigma", "lam", "width",
           "weight_decay", "steps", "composed_init", "weight_norm", "path_norm", "fn_norm",
           "id_mse", "id_err", "ood_mse", "ood_err", "train_loss", "train_objective", "denoiser_mse", "denoiser_err", "denoiser_fn_norm",
           "theory_standard", "theory_composed", "denoiser_reg", "lin_gap", "kernel_dist", "lin_jump"]


def plan(cfg: ReluConfig) -> list[tuple[str, list[Setting]]]:
    """Groups (axis name, settings) of the sweep; the base setting comes first."""
    base = Setting.base(cfg)
    seen: set[tuple] = set()
    groups: list[tuple[str, list[Setting]]] = []
    for axis, (field, attr) in AXES.items():
        settings = [dataclasses.replace(base, **{attr: v}) for v in getattr(cfg, field)]
        if settings and not groups and base.key() not in {s.key() for s in settings}:
            settings = [base] + settings  # the first group carries the base setting
        fresh = [s for s in settings if s.key() not in seen]
        seen.update(s.key() for s in fresh)
        if fresh:
            groups.append((axis, fresh))
    if not groups:
        groups.append(("base", [base]))
    regs = [dataclasses.replace(base, denoiser_reg=v) for v in cfg.sweep_denoiser_reg if v != "none"]
    if regs:  # the categorical axis: the base setting with each non-default denoiser pre-training
        groups.append(("denoiser_reg", regs))
    return groups


@dataclasses.dataclass
class _Job:
    setting: Setting
    seed: int
    stair: Staircase
    data: object


def _stack_rows(rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad 1-D arrays to a [S, N] tensor and its mask."""
    n = max(len(r) for r in rows)
    x = torch.zeros(len(rows), n, dtype=models.DTYPE)
    mask = torch.zeros(len(rows), n, dtype=models.DTYPE)
    for s, r in enumerate(rows):
        x[s, :len(r)] = torch.as_tensor(r)
        mask[s, :len(r)] = 1.0
    return x, mask


def _den_key(j: _Job) -> tuple:
    """Denoisers are shared by jobs with the same (k, sigma, width, seed); RadReg's also need the
    same downstream inputs, i.e. the same gap delta."""
    key = (j.setting.k, repr(j.setting.sigma), j.setting.width, j.seed)
    return key if j.setting.denoiser_reg == "none" else key + (j.setting.denoiser_reg, repr(j.setting.delta))


def _pretrain_denoisers(cfg: ReluConfig, jobs: list[_Job], m: int) -> tuple[dict, list[int], dict]:
    """One denoiser per distinct ``_den_key``; returns the stack, each job's row, errors.

    Plain and RadReg denoisers are pre-trained in separate computations, so adding the
    ``denoiser_reg`` axis leaves the plain denoisers exactly as they were.
    """
    plain = [j for j in jobs if j.setting.denoiser_reg == "none"]
    reg = [j for j in jobs if j.setting.denoiser_reg != "none"]
    parts = [_pretrain_kind(cfg, part, m) for part in (plain, reg) if part]
    den = models.stack([p[0] for p in parts])
    index, errs, offset = {}, {}, 0
    for d, idx, err in parts:
        index.update({k: r + offset for k, r in idx.items()})
        errs.update({r + offset: e for r, e in err.items()})
        offset += len(d["c"])
    return den, [index[_den_key(j)] for j in jobs], errs


def _pretrain_kind(cfg: ReluConfig, jobs: list[_Job], m: int) -> tuple[dict, dict, dict]:
    """Pre-train the distinct denoisers of ``jobs`` (all plain or all RadReg) in one computation."""
    keys, index, first = [], {}, {}
    for j in jobs:
        key = _den_key(j)
        if key not in index:
            index[key] = len(keys)
            keys.append(key)
            first[key] = j
    noisy, clean, tn, tc = [], [], [], []
    for k, sigma, width, seed, *_ in keys:
        a, b = train.denoiser_data(k, cfg.h, float(sigma), cfg.n_unlabeled, derive_seed(seed, "denoiser", k, sigma, width))
        c, d = train.denoiser_data(k, cfg.h, float(sigma), cfg.n_test, derive_seed(seed, "denoiser-test", k, sigma, width))
        noisy.append(a), clean.append(b), tn.append(c), tc.append(d)
    noisy, clean = torch.as_tensor(np.array(noisy)), torch.as_tensor(np.array(clean))
    lo = np.array([-0.5 * cfg.h] * len(keys))
    hi = np.array([(k - 0.5) * cfg.h for k, *_ in keys])
    den = train.knot_grid_fit(noisy, clean, [key[2] for key in keys], m, lo, hi)
    radreg = None
    if jobs[0].setting.denoiser_reg == "radreg":
        inputs = [sample_intervals(first[key].stair, range(first[key].stair.k_train), cfg.radreg_inputs,
                                   np.random.default_rng(derive_seed(key[3], "radreg-inputs", *key)))[0]
                  for key in keys]
        radreg = (torch.as_tensor(np.array(inputs)), cfg.radreg_weight, cfg.radreg_draws)
    if cfg.denoiser_steps > 0:
        den = train.train_denoisers(den, noisy, clean, steps=cfg.denoiser_steps, batch=cfg.denoiser_batch,
                                    lr=cfg.denoiser_lr, seed=derive_seed(0, "denoiser-batches"), radreg=radreg)
    with torch.no_grad():
        out = models.forward(den, torch.as_tensor(np.array(tn))).numpy()
    errs = {}
    for r, (k, *_rest) in enumerate(keys):
        errs[r] = metrics.prediction_errors(out[r], tc[r], cfg.h, k)
    return den, index, errs


def run_group(cfg: ReluConfig, settings: list[Setting], seeds: list[int],
              curve_job: Optional[tuple[Setting, int]] = None
              ) -> tuple[list[dict], Optional[dict], list[dict]]:
    """Train and evaluate every (setting, seed, method) of one group as one batched computation.

    Returns:
        The tidy result rows, the Figure-1 curves if ``curve_job`` is in this group (else None),
        and the trajectory rows (``TRAJ_COLUMNS``; empty when ``cfg.record_every`` is 0).
    """
    jobs = []
    for st in settings:
        stair = Staircase(st.k, st.k - cfg.k_ood, st.delta, cfg.interval_len, cfg.h)
        for seed in seeds:
            rng = np.random.default_rng(derive_seed(seed, "data", st.n_train, st.k, repr(st.delta), cfg.k_ood,
                                                    cfg.interval_len, cfg.h, cfg.label_noise))
            jobs.append(_Job(st, seed, stair, make_task_data(stair, st.n_train, cfg.n_test, cfg.label_noise, rng)))
    m = max(st.width for st in settings)
    den_all, den_row, den_err = _pretrain_denoisers(cfg, jobs, m)
    den = models.select(den_all, den_row)  # one denoiser row per job

    x, mask = _stack_rows([j.data.x_train for j in jobs])
    y, _ = _stack_rows([j.data.y_train for j in jobs])
    names = list(cfg.methods)
    trained: dict[str, dict] = {}
    final_loss: dict[str, np.ndarray] = {}
    final_obj: dict[str, np.ndarray] = {}
    traj: list[dict] = []
    wd = torch.tensor([j.setting.weight_decay for j in jobs], dtype=models.DTYPE)
    init_params: dict[str, dict] = {}
    for phase in training_phases(names, cfg):
        parts, std_w, comp_w, regs, grad_hooks, step_hooks = [], [], [], [], [], []
        for i, name in enumerate(phase):
            init, obj = resolve_init(name, cfg), objective_of(name)
            if init == "random":
                xmin = np.array([j.data.x_train.min() for j in jobs])
                xmax = np.array([j.data.x_train.max() for j in jobs])
                parts.append(models.init_random([j.setting.width for j in jobs], m, xmin, xmax,
                                                [derive_seed(j.seed, "init", name, *j.setting.key()) for j in jobs]))
            elif init == "denoiser":
                parts.append(models.clone(den))
            else:
                parts.append(models.clone(trained[init]))
            init_params[name] = parts[-1]
            std_w += [obj.std_weight(cfg, j.setting) for j in jobs]
            comp_w += [obj.comp_weight(cfg, j.setting) for j in jobs]
            rows_i = torch.arange(i * len(jobs), (i + 1) * len(jobs))
            if obj.regularizer is not None:
                regs.append((rows_i, obj.regularizer))
            hooks = related.hooks_for(get_method(name).objective, cfg, rows_i, parts[-1], x, y, mask,
                                      [derive_seed(j.seed, name, *j.setting.key()) for j in jobs])
            if hooks is not None:
                if hooks.regularizer is not None:
                    regs.append((rows_i, hooks.regularizer))
                grad_hooks += [hooks.grad_hook] if hooks.grad_hook is not None else []
                step_hooks += [hooks.step_hook] if hooks.step_hook is not None else []
        reps = len(phase)
        batch = train.Batch(x.repeat(reps, 1), y.repeat(reps, 1), mask.repeat(reps, 1),
                            torch.tensor(std_w, dtype=models.DTYPE), torch.tensor(comp_w, dtype=models.DTYPE),
                            models.stack([den] * reps), regs, grad_hooks, step_hooks)
        records: list[tuple[int, np.ndarray, np.ndarray]] = []
        p, loss, obj = train.train_stack(
            models.stack(parts), batch, steps=cfg.steps, lr=cfg.lr, weight_decay=wd.repeat(reps),
            record_every=cfg.record_every,
            on_record=lambda step, q, o: records.append((step, metrics.fn_norms(q), o)))
        for i, name in enumerate(phase):
            rows = list(range(i * len(jobs), (i + 1) * len(jobs)))
            trained[name], final_loss[name], final_obj[name] = models.select(p, rows), loss[rows], obj[rows]
            if name == "linearized":  # its data loss is carried by its hook: report it as the data loss
                with torch.no_grad():
                    f_lin = related.predict(get_method(name).objective, trained[name], init_params[name], x)
                final_loss[name] = train._masked_mean((f_lin - y) ** 2, mask).numpy().copy()
            for s, j in enumerate(jobs):
                ident = {"method": name, "seed": j.seed, **dataclasses.asdict(j.setting)}
                traj += [ident | {"step": step, "fn_norm": float(R[rows[s]]), "objective": float(o[rows[s]])}
                         for step, R, o in records]

    den_fn_norm = metrics.stack_norms(den)["fn_norm"]  # R of Pi: the norm f starts from when init from Pi
    x_id, _ = _stack_rows([j.data.x_id for j in jobs])
    x_ood, _ = _stack_rows([j.data.x_ood for j in jobs])
    out_rows = []
    for name in names:
        meth = get_method(name)
        src = meth.reuse or name
        src_obj = get_method(src).objective  # what src trained decides what its f is (f or f_lin)
        p = trained[src]
        net, jump = related.norm_params(src_obj, p, init_params[src])
        nrm = metrics.stack_norms(net)
        gaps, kdist = metrics.kernel_regime(p, init_params[src], x, mask, lambda q, xx: related.predict(src_obj, q, init_params[src], xx),
                                            linear=src_obj == "linearized")
        with torch.no_grad():
            preds = [related.predict(src_obj, p, init_params[src], xx) for xx in (x_id, x_ood)]
            if meth.predict_with_denoiser:
                preds = [models.forward(den, q) for q in preds]
        pid, pood = (q.numpy() for q in preds)
        for s, j in enumerate(jobs):
            st, ktr = j.setting, j.stair.k_train
            id_mse, id_err = metrics.prediction_errors(pid[s], j.data.y_id, cfg.h, st.k)
            ood_mse, ood_err = metrics.prediction_errors(pood[s], j.data.y_ood, cfg.h, st.k)
            dm, de = den_err[den_row[s]]
            out_rows.append({
                "method": name, "seed": j.seed, "n_train": st.n_train, "k": st.k, "k_train": ktr,
                "delta": st.delta, "sigma": st.sigma, "lam": st.lam, "width": st.width,
                "weight_decay": st.weight_decay, "steps": cfg.steps, "composed_init": cfg.composed_init,
                "weight_norm": nrm["weight_norm"][s], "path_norm": nrm["path_norm"][s],
                "fn_norm": nrm["fn_norm"][s], "id_mse": id_mse, "id_err": id_err,
                "ood_mse": ood_mse, "ood_err": ood_err, "train_loss": float(final_loss[src][s]),
                "train_objective": float(final_obj[src][s]),
                "denoiser_mse": dm, "denoiser_err": de, "denoiser_fn_norm": den_fn_norm[s],
                "theory_standard": theory_staircase.standard_min_norm(ktr, cfg.h, st.delta, cfg.interval_len),
                "theory_composed": theory_staircase.composed_min_norm(ktr, cfg.h, st.delta, cfg.interval_len),
                "denoiser_reg": st.denoiser_reg, "lin_gap": float(gaps[s]), "kernel_dist": float(kdist[s]),
                "lin_jump": float(jump[s]),
            })
    curves = None
    if curve_job is not None:
        hit = [s for s, j in enumerate(jobs) if j.setting.key() == curve_job[0].key() and j.seed == curve_job[1]]
        if hit:
            curves = _curves(cfg, jobs[hit[0]], hit[0], den, trained)
    return out_rows, curves, traj


def _curves(cfg: ReluConfig, job: _Job, s: int, den: dict, trained: dict) -> dict:
    """Figure-1 data for one job: grid, target, data, standard f, composed f and Pi(f)."""
    st = job.stair
    grid = np.linspace(-0.5 * st.pitch, st.k * st.pitch, cfg.curve_points)
    g = torch.as_tensor(grid).unsqueeze(0)
    one = lambda p: {k: v[s:s + 1] for k, v in p.items()}  # noqa: E731
    out = {"x": grid, "target": st.target(grid), "linear": st.linear_map(grid),
           "x_train": job.data.x_train, "y_train": job.data.y_train,
           "k": st.k, "k_train": st.k_train, "delta": st.delta, "L": st.L, "h": st.h, "seed": job.seed}
    with torch.no_grad():
        out["denoiser_on_grid"] = models.forward(one(den), g)[0].numpy()
        for name in ("standard", "composed", "direct", "composed_scratch"):
            if name in trained:
                f = models.forward(one(trained[name]), g)
                out[f"{name}_f"] = f[0].numpy()
                out[f"{name}_pi_f"] = models.forward(one(den), f)[0].numpy()
    return out


def done_keys(path: Path, n_expected: int) -> set[tuple]:
    """Settings whose rows (all methods x seeds) are already in ``results.csv``."""
    if not path.exists():
        return set()
    counts: dict[tuple, int] = {}
    for r in read_csv(path):
        key = Setting(int(r["n_train"]), int(r["k"]), float(r["delta"]), float(r["sigma"]),
                      float(r["lam"]), int(r["width"]), float(r["weight_decay"]),
                      r.get("denoiser_reg") or "none").key()
        counts[key] = counts.get(key, 0) + 1
    return {k for k, c in counts.items() if c >= n_expected}


def run_sweep(cfg: ReluConfig, out: Path, *, log: Callable[[str], None] = print,
              after_group: Optional[Callable[[str], None]] = None) -> Path:
    """Run (or resume) the sweep of ``cfg`` into ``out/results.csv`` and ``out/curves.npz``."""
    rd = RunDir(out)
    out = rd.path
    results, trajectories = rd.results_path, rd / "trajectories.csv"
    seeds = list(range(cfg.seeds))
    done = done_keys(results, len(seeds) * len(cfg.methods))
    if trajectories.exists():  # drop trajectory rows of an axis interrupted before its results landed
        kept = [r for r in read_csv(trajectories) if _row_key(r) in done]
        atomic_write_csv(trajectories, kept, TRAJ_COLUMNS)
    curve_job = (Setting.base(cfg), 0)
    pending = []
    for axis, settings in plan(cfg):
        todo = [s for s in settings if s.key() not in done]
        if todo:
            pending.append((axis, todo))
        else:
            log(f"[relu] {axis}: {len(settings)} settings already in {results.name}, skipped")
    n_trained = len(seeds) * sum(get_method(m).trains for m in cfg.methods)
    for pack in _packs(pending, n_trained, cfg.pack_rows):
        t0 = time.time()
        rows, curves, traj = run_group(cfg, [s for _, todo in pack for s in todo], seeds, curve_job)
        if curves is not None:
            _save_npz(out / "curves.npz", curves)
        for axis, todo in pack:  # one append per axis, so a finished axis is never redone
            keys = {s.key() for s in todo}
            if traj:  # before the results: results.csv is what marks an axis done
                append_csv_rows(trajectories, [r for r in traj if _row_key(r) in keys], TRAJ_COLUMNS)
            append_csv_rows(results, [r for r in rows if _row_key(r) in keys], COLUMNS)
            log(f"[relu] {axis}: {len(todo)} settings x {len(seeds)} seeds x {len(cfg.methods)} methods "
                f"({len(pack)} axes in one computation, {time.time() - t0:.1f}s)")
            if after_group is not None:
                after_group(axis)
    return results


def _row_key(r: dict) -> tuple:
    return Setting(r["n_train"], r["k"], r["delta"], r["sigma"], r["lam"], r["width"], r["weight_decay"],
                   r.get("denoiser_reg") or "none").key()


def _packs(pending: list[tuple[str, list[Setting]]], rows_per_setting: int, budget: int
           ) -> list[list[tuple[str, list[Setting]]]]:
    """Pack consecutive axes into one batched computation while they fit in ``budget`` trained rows.

    Small tensors cost mostly per-operation overhead, so one stack of 100 networks trains in
    about the time of two stacks of 50; an axis larger than the budget still runs (alone).
    """
    packs: list[list[tuple[str, list[Setting]]]] = []
    size = 0
    for axis, todo in pending:
        rows = len(todo) * rows_per_setting
        if packs and size + rows <= budget:
            packs[-1].append((axis, todo))
            size += rows
        else:
            packs.append([(axis, todo)])
            size = rows
    return packs


def _save_npz(path: Path, data: dict) -> None:
    """Atomic ``np.savez``: serialize in memory, then write-and-replace."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in data.items()})
    atomic_write_bytes(path, buf.getvalue())
