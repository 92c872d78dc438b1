"""Font data: the blur against closed forms and PIL, rendering, unusable-font detection, cache, split determinism."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simulations.fonts import data as fdata
from simulations.fonts.config import CHARS, PRESETS
from simulations.fonts.data import (font_sha256, gaussian_blur, gaussian_kernel1d, load_fonts, make_split,
                                    render_font, to_unit)

MPL_TTF = Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf"


@pytest.fixture
def cfg(tmp_path):
    return dataclasses.replace(PRESETS["smoke"], cache_dir=str(tmp_path / "cache"))


# ---- blur ---------------------------------------------------------------------------------------

def test_kernel_is_the_normalized_gaussian():
    sigma = torch.tensor([0.7, 1.9], dtype=torch.float64)
    k = gaussian_kernel1d(sigma, 6)
    for row, s in zip(k, sigma.tolist()):
        ref = [math.exp(-x * x / (2 * s * s)) for x in range(-6, 7)]
        ref = [v / sum(ref) for v in ref]
        assert torch.allclose(row, torch.tensor(ref, dtype=torch.float64), rtol=1e-12, atol=1e-15)


def test_zero_radius_is_the_identity():
    x = torch.rand(3, 1, 32, 32, dtype=torch.float64) * 2 - 1
    assert torch.equal(gaussian_blur(x, torch.zeros(3, dtype=torch.float64), 2.0), x)


def test_blurred_delta_is_the_outer_product_kernel_and_keeps_mass():
    """A delta far from the edges becomes k kᵀ (separability), with the same total mass and variance σ²."""
    x = torch.zeros(2, 1, 32, 32, dtype=torch.float64)
    x[:, 0, 16, 16] = 1.0
    sigma = torch.tensor([1.0, 1.5], dtype=torch.float64)
    out = gaussian_blur(x, sigma, 2.0)
    half = math.ceil(3 * 2.0)
    for b, s in enumerate(sigma.tolist()):
        k = gaussian_kernel1d(torch.tensor([s], dtype=torch.float64), half)[0]
        ref = torch.zeros(32, 32, dtype=torch.float64)
        ref[16 - half:17 + half, 16 - half:17 + half] = torch.outer(k, k)
        assert torch.allclose(out[b, 0], ref, rtol=1e-12, atol=1e-15)
        assert out[b].sum().item() == pytest.approx(1.0, abs=1e-12)
        var = (out[b, 0].sum(1) * (torch.arange(32) - 16.0) ** 2).sum().item()
        assert var == pytest.approx(s * s, rel=1e-3)  # sampling (σ >= 1) and 4σ+ truncation err < 1e-3


def test_per_image_sigma_equals_one_image_at_a_time_and_a_2d_convolution():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 32, 32, generator=g, dtype=torch.float64)
    sigma = torch.rand(4, generator=g, dtype=torch.float64) * 2
    out = gaussian_blur(x, sigma, 2.0)
    half = 6
    for b in range(4):
        k = gaussian_kernel1d(sigma[b:b + 1], half)[0]
        padded = F.pad(x[b:b + 1], (half,) * 4, mode="replicate")
        ref = F.conv2d(padded, torch.outer(k, k).view(1, 1, 2 * half + 1, 2 * half + 1))
        assert torch.allclose(out[b:b + 1], ref, rtol=1e-10, atol=1e-12)


def test_blur_agrees_with_pil_gaussianblur():
    """PIL's GaussianBlur (the paper's corruption) on a rendered glyph: its radius is our σ (the mean
    difference is smallest at σ = radius), equal up to uint8 rounding and PIL's box-pass approximation."""
    from PIL import Image, ImageFilter
    images, _ = render_font(MPL_TTF / "DejaVuSans.ttf")
    glyph = images[CHARS.index("R")]
    as_t = torch.tensor(glyph, dtype=torch.float64).view(1, 1, 32, 32)
    for radius in (0.8, 1.6):
        ref = np.asarray(Image.fromarray(glyph).filter(ImageFilter.GaussianBlur(radius)), np.float64)
        err = {s: np.abs(gaussian_blur(as_t, torch.tensor([s * radius], dtype=torch.float64), 3.0)[0, 0].numpy() - ref)
               for s in (0.9, 1.0, 1.1)}
        assert err[1.0].mean() < min(err[0.9].mean(), err[1.1].mean())
        assert err[1.0].mean() < 1.5 and err[1.0].max() < 35          # of 255
        assert np.abs(glyph - ref).mean() > 8 * err[1.0].mean()     # the blur itself is far larger


def test_blur_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected images"):
        gaussian_blur(torch.zeros(2, 32, 32), torch.zeros(2))


def test_to_unit_maps_0_and_255_to_the_ends():
    t = to_unit(np.array([[[0, 255]]], np.uint8))
    assert t.shape == (1, 1, 1, 2) and t.flatten().tolist() == [-1.0, 1.0]


# ---- rendering and unusable fonts ---------------------------------------------------------------

def test_render_keeps_relative_glyph_sizes():
    images, reason = render_font(MPL_TTF / "DejaVuSans.ttf")
    assert reason == "" and images.shape == (62, 32, 32) and images.dtype == np.uint8
    ink_rows = lambda ch: np.flatnonzero(images[CHARS.index(ch)].max(1) > 64)
    # one frame per font: lower-case x is shorter than upper-case X, and 'g' descends below 'x'
    assert len(ink_rows("x")) < len(ink_rows("X"))
    assert ink_rows("g")[-1] > ink_rows("x")[-1]
    assert len(np.flatnonzero(images[CHARS.index("I")].max(0) > 64)) < len(np.flatnonzero(images[CHARS.index("W")].max(0) > 64))


@pytest.mark.parametrize("name, why", [("DejaVuSansDisplay.ttf", "lacks 62 of the 62"),
                                       ("LastResortHE-Regular.ttf", "placeholder"),
                                       ("cmsy10.ttf", "symbol font"), ("cmex10.ttf", "symbol font"),
                                       ("STIXSizOneSymReg.ttf", "lacks")])
def test_unusable_fonts_are_detected(name, why):
    images, reason = render_font(MPL_TTF / name)
    assert images is None and why in reason


@pytest.mark.parametrize("name", ["cmr10.ttf", "cmmi10.ttf", "STIXGeneral.ttf", "DejaVuSansMono.ttf"])
def test_text_fonts_are_usable(name):
    images, reason = render_font(MPL_TTF / name)
    assert reason == "" and images.shape == (62, 32, 32)


def test_corrupt_and_missing_fonts_give_clear_errors(tmp_path, cfg):
    bad = tmp_path / "fonts" / "broken.ttf"
    bad.parent.mkdir()
    bad.write_bytes(b"not a font" * 50)
    images, reason = render_font(bad)
    assert images is None and "cannot open" in reason
    only_bad = dataclasses.replace(cfg, matplotlib_fonts=False, font_dirs=(str(bad.parent),))
    with pytest.raises(ValueError, match="found 0 usable font") as err:
        load_fonts(only_bad)
    assert "broken.ttf" in str(err.value)
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        load_fonts(dataclasses.replace(cfg, font_dirs=(str(tmp_path / "no_such_dir"),)))


def test_load_fonts_skips_with_notes_and_dedupes(tmp_path, cfg):
    d = tmp_path / "fonts"
    d.mkdir()
    for name in ("DejaVuSans.ttf", "cmr10.ttf", "cmsy10.ttf", "DejaVuSerif.ttf"):
        (d / name).write_bytes((MPL_TTF / name).read_bytes())
    (d / "copy_of_cmr10.ttf").write_bytes((MPL_TTF / "cmr10.ttf").read_bytes())
    c = dataclasses.replace(cfg, matplotlib_fonts=False, font_dirs=(str(d),), max_fonts=0)
    fonts = load_fonts(c)
    assert [Path(p).name for p in fonts.paths] == ["DejaVuSans.ttf", "DejaVuSerif.ttf", "cmr10.ttf"]
    assert any("cmsy10.ttf: symbol font" in n for n in fonts.notes)
    assert sum("same file" in n for n in fonts.notes) == 1
    np.testing.assert_array_equal(fonts.images[2], render_font(d / "cmr10.ttf")[0])


def test_render_cache_is_used_and_a_corrupt_entry_is_redone(tmp_path, cfg, monkeypatch):
    font = MPL_TTF / "DejaVuSans.ttf"
    first = fdata.cached_render(font, cfg)[0]
    entry = Path(cfg.cache_dir) / f"{font_sha256(font)}.npz"
    assert entry.exists()
    calls = []
    real = fdata.render_font
    monkeypatch.setattr(fdata, "render_font", lambda *a: calls.append(a) or real(*a))
    np.testing.assert_array_equal(fdata.cached_render(font, cfg)[0], first)
    assert calls == []                                   # served from the cache
    entry.write_bytes(b"garbage")
    np.testing.assert_array_equal(fdata.cached_render(font, cfg)[0], first)
    assert len(calls) == 1                               # re-rendered, and the entry rewritten
    np.testing.assert_array_equal(fdata.cached_render(font, cfg)[0], first)
    assert len(calls) == 1


# ---- split ---------------------------------------------------------------------------------------

def test_split_is_a_seeded_partition():
    c = dataclasses.replace(PRESETS["default"], n_labeled_fonts=5)
    a, b = make_split(12, c), make_split(12, c)
    for name in ("labeled", "unlabeled", "train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert sorted([*a.labeled, *a.unlabeled]) == list(range(12)) and len(a.labeled) == 5
    pairs = np.concatenate([a.train, a.val, a.test])
    assert len({tuple(p) for p in pairs}) == len(pairs) == 5 * 62
    assert len(a.train) == round(0.4 * 310) and len(a.val) == round(0.1 * 310)
    other = make_split(12, dataclasses.replace(c, split_seed=1))
    assert not (np.array_equal(other.labeled, a.labeled) and np.array_equal(other.train, a.train))
    with pytest.raises(ValueError, match="no unlabeled font"):
        make_split(5, c)
