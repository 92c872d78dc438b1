"""Glyph data: find font files, render A-Z a-z 0-9 at 32x32, skip unusable fonts, split, blur.

See docs/fonts.md §1. Rendering: each font is drawn at ``render_size`` points; one frame per font
(the union of its glyphs' vertical extents and its widest glyph) keeps relative sizes and the
baseline (an 'x' stays smaller than an 'X'), each glyph is centred horizontally in that frame,
and the frame is box-resized to 32x32. Images are uint8 (0 background, 255 ink) on disk and
``2*v/255 - 1`` in [-1, 1] for training (the paper's scale).

A font is *unusable* (skipped with a one-line note naming the file) when it cannot be opened,
when a character renders blank or as the font's .notdef glyph (U+FFFF, never mapped), when its
glyphs are not distinct (placeholder fonts such as LastResort draw one box for every letter), or
when its glyph names say the Latin code points hold symbols (TeX's cmex10 / cmsy10 map 'a' to
a brace or a turnstile).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from composedft.io import atomic_write_bytes

from .config import CHARS, FontsConfig

__all__ = ["FontData", "Split", "find_font_files", "font_sha256", "render_font", "cached_render", "load_fonts", "make_split",
           "gaussian_kernel1d", "gaussian_blur", "to_unit", "RENDER_VERSION"]

FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
RENDER_VERSION = 1          # bump when the rendering changes: cached renders of older versions are redone
_NOTDEF_PROBE = "\uffff"    # a Unicode noncharacter: no cmap maps it, so FreeType draws glyph 0 (.notdef)
_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_GENERIC_NAME = re.compile(r"^(\.|glyph\d|g\d|gid\d|cid\d|index\d)")


@dataclass(frozen=True)
class FontData:
    """Usable fonts and their renders.

    Attributes:
        paths: font files, one per usable font (sorted, de-duplicated by content).
        images: ``uint8 [n_fonts, 62, 32, 32]`` (0 background, 255 ink), in ``CHARS`` order.
        notes: one line per skipped font or file, naming it and why.
    """

    paths: tuple[str, ...]
    images: np.ndarray
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Split:
    """Which fonts are labeled and which (font, char) pairs are train / val / test.

    Font indices refer to :attr:`FontData.paths`; ``train``/``val``/``test`` are ``int64 [n, 2]``
    arrays of (labeled-font position, char index); the labeled-font position indexes
    ``labeled`` (and the generator's font embedding).
    """

    labeled: np.ndarray
    unlabeled: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def find_font_files(cfg: FontsConfig) -> list[Path]:
    """Font files of ``cfg.font_dirs`` (recursive) and, if asked, matplotlib's; sorted, unique.

    Raises:
        FileNotFoundError: a folder of ``font_dirs`` does not exist (the message names it).
    """
    if not cfg.matplotlib_fonts and not cfg.font_dirs:
        raise ValueError("no fonts to read: matplotlib_fonts is false and font_dirs is empty "
                         "(the paper preset needs --font_dirs=DIR[,DIR...])")
    dirs: list[Path] = []
    if cfg.matplotlib_fonts:
        import matplotlib
        dirs.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    for d in cfg.font_dirs:
        p = Path(d).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"font_dirs: {p}: no such folder")
        dirs.append(p)
    found = {f.absolute() for d in dirs for f in d.rglob("*") if f.suffix.lower() in FONT_SUFFIXES and f.is_file()}
    return sorted(found)


def font_sha256(path: str | os.PathLike) -> str:
    """sha256 of the font file's bytes (the render cache key)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _draw(font, text: str, canvas: int) -> np.ndarray:
    from PIL import Image, ImageDraw
    img = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(img).text((canvas // 4, canvas // 4), text, font=font, fill=255)
    return np.asarray(img)


def _symbol_reason(path: Path) -> str | None:
    """Why the font's Latin code points hold other glyphs (from its glyph names), or None.

    A name counts against the font when it is present, not generic (``glyph12``, ``.notdef``)
    and names neither the character ('A', 'a', 'uni0041') nor, for a digit, its English word
    ('zero', 'zerooldstyle'). More than a quarter of such names marks a symbol font.
    """
    from matplotlib.ft2font import FT2Font
    try:
        ft = FT2Font(str(path))
        cmap = ft.get_charmap()
    except (RuntimeError, OSError, ValueError):
        return None  # Pillow decides whether the file is readable
    bad = []
    for ch in CHARS:
        gid = cmap.get(ord(ch))
        if gid is None:
            continue
        name = ft.get_glyph_name(gid)
        if not name or _GENERIC_NAME.match(name):
            continue
        ok = name.startswith(ch) or name.lower().startswith(f"uni{ord(ch):04x}")
        if ch.isdigit():
            ok = ok or name.startswith(_DIGIT_NAMES[int(ch)])
        if not ok:
            bad.append(f"{ch}->{name}")
    if len(bad) > len(CHARS) // 4:
        return f"symbol font (glyph names {', '.join(bad[:3])}, ...)"
    return None


def render_font(path: str | os.PathLike, render_size: int = 64, image_size: int = 32) -> tuple[np.ndarray | None, str]:
    """Render the 62 characters of one font file.

    Returns:
        ``(uint8 [62, image_size, image_size], "")`` for a usable font, or ``(None, reason)``
        naming why it is skipped (unreadable, missing characters, placeholder or symbol font).
    """
    from PIL import Image, ImageFont
    path = Path(path)
    try:
        font = ImageFont.truetype(str(path), render_size)
    except (OSError, ValueError) as err:
        return None, f"cannot open ({err})"
    canvas = 4 * render_size
    try:
        raw = [_draw(font, ch, canvas) for ch in CHARS]
        notdef = _draw(font, _NOTDEF_PROBE, canvas)
    except (OSError, ValueError) as err:
        return None, f"cannot render ({err})"
    missing = [ch for ch, r in zip(CHARS, raw) if r.max() == 0 or np.array_equal(r, notdef)]
    if missing:
        return None, f"lacks {len(missing)} of the 62 characters ({''.join(missing[:8])}{'...' if len(missing) > 8 else ''})"
    if len({r.tobytes() for r in raw}) < len(CHARS) - 2:
        return None, "placeholder font (its glyphs are not distinct)"
    reason = _symbol_reason(path)
    if reason:
        return None, reason
    rows = [np.flatnonzero(r.any(1)) for r in raw]
    cols = [np.flatnonzero(r.any(0)) for r in raw]
    top, bottom = min(r[0] for r in rows), max(r[-1] for r in rows) + 1
    width = max(c[-1] + 1 - c[0] for c in cols)
    side = max(bottom - top, width) + 2  # one pixel of margin each side
    out = np.empty((len(CHARS), image_size, image_size), np.uint8)
    for i, (r, c) in enumerate(zip(raw, cols)):
        frame = np.zeros((side, side), np.uint8)
        glyph = r[top:bottom, c[0]:c[-1] + 1]
        y0, x0 = (side - (bottom - top)) // 2, (side - glyph.shape[1]) // 2
        frame[y0:y0 + glyph.shape[0], x0:x0 + glyph.shape[1]] = glyph
        out[i] = np.asarray(Image.fromarray(frame).resize((image_size, image_size), Image.Resampling.BOX))
    return out, ""


def _cache_path(cfg: FontsConfig, sha: str) -> Path:
    root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else Path.home() / ".cache" / "composedft" / "fonts"
    return root / f"{sha}.npz"


def cached_render(path: Path, cfg: FontsConfig) -> tuple[np.ndarray | None, str]:
    """:func:`render_font` through the cache ``<cache_dir>/<sha256>.npz`` (a corrupt entry is redone)."""
    sha = font_sha256(path)
    cpath = _cache_path(cfg, sha)
    key = np.array([RENDER_VERSION, cfg.render_size, cfg.image_size])
    if cpath.exists():
        try:
            with np.load(cpath) as z:
                if np.array_equal(z["key"], key):
                    return (z["images"] if z["images"].size else None), str(z["reason"])
        except (OSError, ValueError, KeyError, EOFError):
            pass  # unreadable cache entry: render again and overwrite it
    images, reason = render_font(path, cfg.render_size, cfg.image_size)
    buf = io.BytesIO()
    np.savez(buf, key=key, images=images if images is not None else np.zeros((0,), np.uint8), reason=reason)
    atomic_write_bytes(cpath, buf.getvalue())
    return images, reason


def load_fonts(cfg: FontsConfig, files: Sequence[Path] | None = None) -> FontData:
    """Render (or read from the cache) every font file; skip unusable ones with a note.

    Raises:
        ValueError: no font source, or fewer usable fonts than ``n_labeled_fonts + 1`` (the
            message lists the notes).
    """
    files = find_font_files(cfg) if files is None else [Path(f) for f in files]
    paths, images, notes, seen = [], [], [], set()
    for f in files:
        try:
            sha = font_sha256(f)
        except OSError as err:
            notes.append(f"skip {f}: cannot read ({err})")
            continue
        if sha in seen:
            notes.append(f"skip {f}: same file as a font already loaded")
            continue
        seen.add(sha)
        imgs, reason = cached_render(f, cfg)
        if imgs is None:
            notes.append(f"skip {f}: {reason}")
            continue
        paths.append(str(f))
        images.append(imgs)
        if cfg.max_fonts and len(paths) == cfg.max_fonts:
            break
    need = cfg.n_labeled_fonts + 1
    if len(paths) < need:
        where = ", ".join([*(["matplotlib's fonts"] if cfg.matplotlib_fonts else []), *cfg.font_dirs]) or "nowhere"
        raise ValueError(f"found {len(paths)} usable font(s) in {where}; need at least {need} "
                         f"(n_labeled_fonts={cfg.n_labeled_fonts} labeled + 1 unlabeled)"
                         + "".join(f"\n  {n}" for n in notes[-20:]))
    return FontData(tuple(paths), np.stack(images), tuple(notes))


def make_split(n_fonts: int, cfg: FontsConfig) -> Split:
    """Seeded split (``cfg.split_seed``): fonts into labeled / unlabeled, labeled pairs into train / val / test.

    The paper draws its 100 labeled fonts with a fixed seed and shuffles their 62 glyphs each
    into train / val / test, so test pairs are unseen (font, char) combinations of seen fonts.
    """
    if cfg.n_labeled_fonts >= n_fonts:
        raise ValueError(f"n_labeled_fonts={cfg.n_labeled_fonts} leaves no unlabeled font among {n_fonts}")
    rng = np.random.default_rng(cfg.split_seed)
    order = rng.permutation(n_fonts)
    labeled, unlabeled = np.sort(order[:cfg.n_labeled_fonts]), np.sort(order[cfg.n_labeled_fonts:])
    pairs = np.array([(f, c) for f in range(len(labeled)) for c in range(len(CHARS))], np.int64)
    pairs = pairs[rng.permutation(len(pairs))]
    n_train = int(round(cfg.train_frac * len(pairs)))
    n_val = max(1, int(round(cfg.val_frac * len(pairs))))
    return Split(labeled, unlabeled, pairs[:n_train], pairs[n_train:n_train + n_val], pairs[n_train + n_val:])


def to_unit(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images ``[..., H, W]`` -> float32 ``[..., 1, H, W]`` on [-1, 1] (0 -> -1, 255 -> 1)."""
    t = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    return (t / 127.5 - 1.0).unsqueeze(-3)


def gaussian_kernel1d(sigma: torch.Tensor, half: int) -> torch.Tensor:
    """Normalized 1-D Gaussian kernels ``[B, 2*half+1]``, one per standard deviation in ``sigma``.

    ``sigma == 0`` gives the identity kernel (a one at the centre).
    """
    x = torch.arange(-half, half + 1, dtype=sigma.dtype, device=sigma.device)
    s = sigma.clamp(min=1e-6).unsqueeze(1)
    k = torch.exp(-0.5 * (x / s) ** 2)
    return k / k.sum(1, keepdim=True)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, max_sigma: float | None = None) -> torch.Tensor:
    """Blur each image ``[B, 1, H, W]`` with its own isotropic Gaussian of std ``sigma[b]``.

    The paper's corruption (PIL ``GaussianBlur(radius)``, radius = standard deviation, radius ~
    U(0, 2)). Separable, kernel truncated at 3 standard deviations of the largest sigma, edges
    replicated (the border of a glyph image is background, so this adds no ink).
    """
    if images.dim() != 4 or images.shape[1] != 1 or sigma.shape != images.shape[:1]:
        raise ValueError(f"gaussian_blur: expected images [B,1,H,W] and sigma [B], got {tuple(images.shape)} "
                         f"and {tuple(sigma.shape)}")
    top = float(sigma.max()) if max_sigma is None else max_sigma
    half = max(1, int(np.ceil(3 * top)))
    k = gaussian_kernel1d(sigma.to(images.dtype), half)            # [B, K]
    b = images.shape[0]
    x = images.transpose(0, 1)                                      # [1, B, H, W]: one group per image
    x = F.pad(x, (half, half, half, half), mode="replicate")
    x = F.conv2d(x, k.view(b, 1, 1, -1), groups=b)                  # along the width
    x = F.conv2d(x, k.view(b, 1, -1, 1), groups=b)                  # along the height
    return x.transpose(0, 1)
