"""Font pipeline: methods from the core registry, the pathwise composed gradient against the core and a finite
difference, an end-to-end smoke run (determinism, resume after a kill) and bad input."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from _tolerances import TOL
from composedft.compose import Composed
from composedft.io import read_csv
from composedft.objectives import composed_mse, standard_mse
from simulations.fonts import stages
from simulations.fonts.__main__ import main
from simulations.fonts.config import PRESETS
from simulations.fonts.models import Generator, UNet
from simulations.fonts.stages import METHOD_NAMES, method_spec, training_loss

D = torch.float64


def tiny_models(seed=0):
    torch.manual_seed(seed)
    f = Generator(3, font_emb=4, char_emb=4, widths=(8, 16)).to(D)
    pi = UNet(2, dropout=0.5).to(D)
    x = torch.tensor([[0, 1], [1, 5], [2, 60], [0, 33]])
    y = torch.rand(4, 1, 32, 32, dtype=D) * 2 - 1
    return f, pi, x, y


def test_methods_predict_what_their_names_say():
    f, pi, x, _ = tiny_models()
    f.eval()
    with torch.no_grad():
        base, composed = f(x), pi.eval()(f(x))
    assert set(METHOD_NAMES) == {"direct", "direct+posthoc", "composed", "composed-base"}
    expect = {"direct": (None, base), "direct+posthoc": ("direct", composed), "composed": (None, composed),
              "composed-base": ("composed", base)}
    for name, (reuse, pred) in expect.items():
        spec = method_spec(name)
        assert spec.reuse == reuse and (spec.loss is None) == (reuse is not None)
        assert torch.equal(spec.predict(f, pi, x), pred)
    with pytest.raises(ValueError, match="unknown method"):
        method_spec("standard")


def test_composed_gradient_is_pathwise_through_the_frozen_unet():
    """The composed training loss on Composed(f, Π): its gradient equals that of the core's composed_mse plus
    the L2 term (independent computation) and a central finite difference; Π gets none and does not move."""
    f, pi, x, y = tiny_models()
    model = Composed(f, pi).train()
    assert not pi.training                                           # Π's dropout is off (paper)
    l2, lam = 1e-2, 0.3
    loss_fn = training_loss(method_spec("composed"), l2, lam)
    f.eval()  # BatchNorm with running statistics: the loss is a deterministic function of f's weights
    params = [p for p in f.parameters()]
    g_ours = torch.autograd.grad(loss_fn(model, (x, y)), params)
    ref = composed_mse(f, pi, x, y, lam=lam) + l2 * sum((p ** 2).sum() for n, p in f.named_parameters()
                                                       if not n.endswith("bias"))
    g_ref = torch.autograd.grad(ref, params)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, **{"rtol": TOL["same_float64"]["rtol"], "atol": 1e-12})
    assert all(p.grad is None and not p.requires_grad for p in pi.parameters())
    # Composed's forward is Π∘f: the first term is mse(Composed(x), y)
    torch.testing.assert_close(standard_mse(model(x), y) + lam * standard_mse(f(x), y), composed_mse(f, pi, x, y, lam))
    gen = torch.Generator().manual_seed(3)
    direction = [torch.randn(p.shape, dtype=D, generator=gen) for p in params]
    h = 1e-6
    with torch.no_grad():
        def at(t):
            for p, d in zip(params, direction):
                p.add_(t * d)
            v = float(loss_fn(model, (x, y)))
            for p, d in zip(params, direction):
                p.sub_(t * d)
            return v
        fd = (at(h) - at(-h)) / (2 * h)
    analytic = float(sum((g * d).sum() for g, d in zip(g_ours, direction)))
    assert analytic == pytest.approx(fd, **{"rel": TOL["fd_float64"]["rtol"], "abs": TOL["fd_float64"]["atol"]})
    # and Π matters: without it the gradient differs
    g_direct = torch.autograd.grad(standard_mse(f(x), y), params)
    assert not all(torch.allclose(a, b) for a, b in zip(g_ours, g_direct))


def test_direct_loss_is_the_registry_standard_mse_with_optional_l2():
    f, _, x, y = tiny_models()
    f.eval()
    with torch.no_grad():
        assert float(training_loss(method_spec("direct"), 0.0, 0.0)(f, (x, y))) == float(standard_mse(f(x), y))
    with pytest.raises(ValueError, match="trains nothing"):
        training_loss(method_spec("composed-base"), 0.0, 0.0)


@pytest.fixture(scope="module")
def font_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("font-cache"))


def smoke_args(out, cache, *extra):
    return ["--preset", "smoke", "--out", str(out), f"--cache_dir={cache}", "--device=cpu", *extra]


def test_smoke_run_is_deterministic_and_resumes_after_a_kill(tmp_path, font_cache, monkeypatch, capsys):
    assert main(smoke_args(tmp_path / "a", font_cache)) == 0
    rows = read_csv(tmp_path / "a" / "results.csv")
    assert {(r["method"], r["split"]) for r in rows} == {(m, s) for m in METHOD_NAMES for s in ("train", "val", "test")}
    assert {"method", "split", "mse", "seed", "f_norm"} <= set(rows[0])
    by = {r["method"]: r for r in rows if r["split"] == "test"}
    assert by["direct"]["f_norm"] == by["direct+posthoc"]["f_norm"] != by["composed"]["f_norm"]
    assert all(0 <= float(r["mse"]) <= 4 for r in rows)           # images on [-1, 1]
    assert (tmp_path / "a" / "samples.npz").exists() and (tmp_path / "a" / "manifest.json").exists()

    # a second run in another folder gives the same numbers
    assert main(smoke_args(tmp_path / "b", font_cache)) == 0
    assert read_csv(tmp_path / "b" / "results.csv") == rows

    # kill the composed stage part-way (after its step-10 checkpoint), then start again
    real_train = stages.train

    def killed_train(model, loss_fn, batch_fn, cfg, **kw):
        if cfg.select_metric and isinstance(model, Composed):
            real_train(model, loss_fn, batch_fn, dataclasses.replace(cfg, steps=10), **kw)
            raise KeyboardInterrupt("killed")
        return real_train(model, loss_fn, batch_fn, cfg, **kw)

    monkeypatch.setattr(stages, "train", killed_train)
    with pytest.raises(KeyboardInterrupt):
        main(smoke_args(tmp_path / "c", font_cache))
    assert not (tmp_path / "c" / "results.csv").exists() and (tmp_path / "c" / "composed" / "last.pt").exists()
    resumed = {}

    def recording_train(model, loss_fn, batch_fn, cfg, **kw):
        res = real_train(model, loss_fn, batch_fn, cfg, **kw)
        resumed["composed" if isinstance(model, Composed) else type(model).__name__] = res.resumed_from
        return res

    monkeypatch.setattr(stages, "train", recording_train)
    assert main(smoke_args(tmp_path / "c", font_cache)) == 0
    assert read_csv(tmp_path / "c" / "results.csv") == rows
    # finished stages are read back (step 20 / 30), composed continues from its step-10 checkpoint
    assert resumed == {"UNet": 20, "Generator": 30, "composed": 10}


def test_bad_input_is_refused_with_a_message(tmp_path, font_cache, capsys):
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    (fonts / "corrupt.otf").write_bytes(b"\x00\x01garbage" * 100)
    assert main(smoke_args(tmp_path / "r", font_cache, "--matplotlib_fonts=false", f"--font_dirs={fonts}")) == 2
    err = capsys.readouterr().err
    assert "found 0 usable font" in err and "corrupt.otf" in err and "Traceback" not in err
    assert main(smoke_args(tmp_path / "r", font_cache, "--methods=direct,standard")) == 2
    assert "unknown method 'standard'" in capsys.readouterr().err
    assert main(smoke_args(tmp_path / "r", font_cache, "--font_dirs=/no/such/folder")) == 2
    assert "/no/such/folder" in capsys.readouterr().err
    assert main(["--preset", "smoke"]) == 2 and "--out is required" in capsys.readouterr().err
    assert main(["--preset", "paper", "--out", str(tmp_path / "p"), f"--cache_dir={font_cache}"]) == 2
    assert "needs --font_dirs" in capsys.readouterr().err


def test_a_folder_of_another_config_is_not_resumed(tmp_path, font_cache, capsys):
    out = tmp_path / "run"
    assert main(smoke_args(out, font_cache, "--methods=direct")) == 0
    assert main(smoke_args(out, font_cache, "--methods=direct", "--lr=0.5")) == 2
    assert "lr=0.001" in capsys.readouterr().err


def test_help_lists_every_field_with_the_preset_value(capsys):
    assert main(["--preset", "paper", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--n_labeled_fonts=100" in out and "--unet_width=64" in out and "--font_dirs=" in out
    assert main(["--preset", "nope", "--out", "x"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
