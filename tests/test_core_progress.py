"""Progress reporting (docs/training-speed.md §4): bar / periodic lines / off, exact line
contents on a fake clock, and training numbers identical with and without it."""
from __future__ import annotations

import io
import time

import pytest
import torch

from composedft import progress as P
from composedft.train import train

from test_core_train import _cfg, _model, _params, batch_fn, eval_fn, loss_fn


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("seconds,text", [(0, "0:00"), (59.4, "0:59"), (61, "1:01"), (3599, "59:59"),
                                          (3600, "1:00:00"), (3 * 3600 + 62, "3:01:02"),
                                          (float("nan"), "?"), (float("inf"), "?"), (-1, "?")])
def test_format_duration(seconds, text):
    assert P.format_duration(seconds) == text


def test_plain_lines_every_period_with_rate_and_eta():
    clock, out = FakeClock(), io.StringIO()
    p = P.Progress(100, "denoiser", unit="step", every_s=30, stream=out, clock=clock)
    assert p.mode == "lines"
    clock.t += 29.9
    p.update(10)
    assert out.getvalue() == ""  # before the first period: nothing
    clock.t += 0.1  # 30 s, 20 steps: 2/3 step/s, 80 left -> ETA 120 s
    p.set_postfix(loss=1.234567, val_nll=0.5, note="x")
    p.update(10)
    assert out.getvalue() == ("denoiser: 20/100 step (20%) 0.667 step/s elapsed 0:30 ETA 2:00 "
                              "loss=1.235 val_nll=0.5 note=x\n")
    clock.t += 10
    p.update(5)  # 10 s since the last line < 30 s: no line
    assert out.getvalue().count("\n") == 1
    clock.t += 20  # 60 s, 25 steps
    p.update(0)
    assert out.getvalue().splitlines()[-1].startswith("denoiser: 25/100 step (25%) 0.417 step/s elapsed 1:00 ETA 3:00")
    clock.t += 15
    p.update(75)
    p.close()
    p.close()  # idempotent: one closing line
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("denoiser: 100/100 step (100%) 1.33 step/s elapsed 1:15 ETA 0:00")


def test_no_closing_line_repeats_the_last_periodic_one():
    clock, out = FakeClock(), io.StringIO()
    p = P.Progress(10, "predict", unit="prog", every_s=30, stream=out, clock=clock)
    clock.t += 30
    p.update(10)  # the last update writes a periodic line
    p.close()
    assert out.getvalue().count("\n") == 1 and out.getvalue().startswith("predict: 10/10 prog (100%)")


def test_resumed_count_is_left_out_of_the_rate():
    clock, out = FakeClock(), io.StringIO()
    with P.Progress(100, "s", unit="step", initial=40, every_s=10, stream=out, clock=clock) as p:
        clock.t += 10
        p.update(20)  # 20 new steps in 10 s: 2 step/s; 40 left -> 20 s
    first = out.getvalue().splitlines()[0]
    assert first == "s: 60/100 step (60%) 2 step/s elapsed 0:10 ETA 0:20"


def test_short_loops_and_disabled_reporters_stay_silent():
    clock, out = FakeClock(), io.StringIO()
    with P.Progress(5, "quick", stream=out, clock=clock) as p:
        for _ in range(5):
            clock.t += 1
            p.update()
    with P.Progress(5, "off", enabled=False, every_s=0, stream=out, clock=clock) as q:
        assert q.disabled
        q.update(5)
    assert out.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar_with_rate_and_eta():
    term = Terminal()
    with P.Progress(10, "decode", unit="seq", stream=term) as p:
        assert p.mode == "bar"
        p.set_postfix(val_nll=0.25)
        time.sleep(0.2)  # past tqdm's 0.1 s redraw interval
        p.update(5)
    text = term.getvalue()
    assert "decode" in text and "5/10" in text and "seq/s" in text and "<" in text and "val_nll=0.25" in text
    forced = io.StringIO()
    with P.Progress(4, "forced", enabled=True, stream=forced) as p:  # True: a bar even off a terminal
        assert p.mode == "bar"
        time.sleep(0.2)
        p.update(4)
    assert "forced" in forced.getvalue() and "4/4" in forced.getvalue()


def test_usable_as_a_decode_callback():
    out = io.StringIO()
    p = P.Progress(7, "decode", unit="seq", every_s=0, stream=out, clock=FakeClock())
    for n in (3, 3, 1):  # what translate(progress=p.update) calls with: the batch sizes
        p.update(n)
    assert p.n == 7 and out.getvalue().splitlines()[-1].startswith("decode: 7/7 seq (100%)")


def test_training_numbers_are_identical_with_and_without_progress(tmp_path, monkeypatch, capsys):
    runs = {}
    for mode in (False, True, None):  # off, bar, and plain lines (pytest's stderr is not a terminal)
        monkeypatch.setattr(P, "DEFAULT_EVERY_S", 0.0)  # a line at every step
        model = _model()
        res = train(model, loss_fn, batch_fn, _cfg(progress=mode), eval_fn=eval_fn,
                    run_dir=tmp_path / f"stage-{mode}")
        runs[mode] = (_params(model), res.history, capsys.readouterr().err)
    for mode in (True, None):
        assert all(torch.equal(a, b) for a, b in zip(runs[False][0], runs[mode][0]))
        assert runs[mode][1] == runs[False][1]
    assert runs[False][2] == ""
    assert "stage-True" in runs[True][2]
    lines = runs[None][2].splitlines()
    assert len(lines) == 12  # one per step; no closing duplicate of the last step's line
    assert lines[0].startswith("stage-None: 1/12 step (8%)") and "loss=" in lines[0]
    assert "val_mse=" not in lines[1] and "val_mse=" in lines[3]  # eval_every=3: shown from step 3


def test_a_resumed_run_counts_from_its_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(P, "DEFAULT_EVERY_S", 0.0)
    train(_model(), loss_fn, batch_fn, _cfg(steps=8, ckpt_every=4), eval_fn=eval_fn, run_dir=tmp_path)
    capsys.readouterr()
    train(_model(), loss_fn, batch_fn, _cfg(ckpt_every=4, progress=None), eval_fn=eval_fn, run_dir=tmp_path)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"{tmp_path.name}: 9/12 step (75%)") and len(lines) == 4  # steps 9-12


def test_only_rank_zero_reports(monkeypatch, capsys):
    import torch.distributed as dist
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    train(_model(), loss_fn, batch_fn, _cfg(ckpt_every=0, progress=True))
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    train(_model(), loss_fn, batch_fn, _cfg(ckpt_every=0, progress=True))
    assert "train" in capsys.readouterr().err
