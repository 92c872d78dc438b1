"""Configuration of the font image-generation experiment: one frozen dataclass, three presets.

The experiment (docs/fonts.md): glyphs of A-Z, a-z, 0-9 are rendered at 32x32 from font files; a
seeded split puts some fonts in the *labeled* pool ((font, character) -> image pairs, split into
train / val / test) and the rest in the *unlabeled* pool. A small U-Net Π is pre-trained to
un-blur glyphs (unlabeled fonts + labeled train images); a generator MLP f maps (character, font)
embeddings to an image and is trained directly (``direct``) or through the frozen Π
(``composed``). The paper's sizes are in the ``paper`` preset; ``default`` shrinks widths and
steps so that the whole run fits in a few minutes on one CPU thread with matplotlib's fonts.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from composedft.config import ConfigError

__all__ = ["FontsConfig", "PRESETS", "CHARS", "validate"]

# The 62 characters of the paper's data set, in its order (upper, lower, digits).
CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class FontsConfig:
    """Every knob of one run (one field, one meaning; docs/fonts.md gives the paper's values)."""

    # data
    font_dirs: tuple[str, ...] = ()       # extra folders searched (recursively) for .ttf/.otf/.ttc
    matplotlib_fonts: bool = True         # also use the fonts shipped with matplotlib
    max_fonts: int = 0                    # keep at most this many usable fonts (0: all), after sorting
    cache_dir: str = ""                   # render cache ("": ~/.cache/composedft/fonts)
    image_size: int = 32                  # output side in pixels (the U-Net needs 32)
    render_size: int = 64                 # point size glyphs are drawn at before resizing
    n_labeled_fonts: int = 10             # fonts in the labeled pool; the rest are unlabeled
    train_frac: float = 0.4               # of the labeled (font, char) pairs: train share
    val_frac: float = 0.1                 # val share; test is the rest
    split_seed: int = 484347              # seeds the font and pair splits (the paper's value)
    # denoiser (U-Net) pre-training: blur radius ~ U(0, blur_max)
    blur_max: float = 2.0
    unet_width: int = 64                  # channels of the first U-Net block (paper 64)
    unet_dropout: float = 0.5             # dropout in the U-Net's inner blocks (paper 0.5)
    denoiser_steps: int = 2000
    denoiser_lr: float = 2e-4
    denoiser_batch: int = 256
    # generator MLP
    char_emb: int = 62                    # character-embedding size (paper 62)
    font_emb: int = 100                   # font-embedding size (paper 100)
    gen_widths: tuple[int, ...] = (128, 256, 256, 512, 512, 1024)  # hidden widths (paper's)
    bn_eps: float = 0.8                   # BatchNorm1d eps (the paper's BatchNorm1d(n, 0.8) quirk)
    # fine-tuning (direct and composed)
    steps: int = 3000
    lr: float = 2e-4
    batch_size: int = 64
    direct_l2: float = 0.0                # L2 penalty on f's non-bias weights, direct (paper 0)
    composed_l2: float = 1e-4             # the same for composed (paper 1e-4)
    lam: float = 0.0                      # λ of composed: weight of mse(f(x), y) (paper 0)
    eval_every: int = 250                 # validation MSE (model selection) every this many steps
    ckpt_every: int = 250
    methods: tuple[str, ...] = ("direct", "direct+posthoc", "composed", "composed-base")
    seed: int = 0                         # seeds the initializations and the batch streams
    device: str = "auto"
    threads: int = 0                      # torch threads (0: leave torch's default)
    n_figure: int = 12                    # held-out test pairs shown in the figure

    def validate(self) -> None:
        validate(self)


def validate(cfg: FontsConfig) -> None:
    """Raise :class:`ConfigError` naming the first impossible field value."""
    checks = [
        ("image_size", cfg.image_size == 32, "the U-Net (three stride-2 blocks, paper's) needs 32"),
        ("render_size", cfg.render_size >= 8, "must be >= 8"),
        ("n_labeled_fonts", cfg.n_labeled_fonts >= 1, "must be >= 1"),
        ("train_frac", 0 < cfg.train_frac < 1, "must be in (0, 1)"),
        ("val_frac", 0 < cfg.val_frac < 1 and cfg.train_frac + cfg.val_frac < 1,
         "must be in (0, 1) with train_frac + val_frac < 1"),
        ("blur_max", cfg.blur_max >= 0, "must be >= 0"),
        ("unet_width", cfg.unet_width >= 1, "must be >= 1"),
        ("unet_dropout", 0 <= cfg.unet_dropout < 1, "must be in [0, 1)"),
        ("gen_widths", len(cfg.gen_widths) >= 1 and all(w >= 1 for w in cfg.gen_widths), "need >= 1 positive width"),
        ("bn_eps", cfg.bn_eps > 0, "must be > 0"),
        ("direct_l2", cfg.direct_l2 >= 0, "must be >= 0"),
        ("composed_l2", cfg.composed_l2 >= 0, "must be >= 0"),
        ("max_fonts", cfg.max_fonts >= 0, "must be >= 0"),
        ("n_figure", cfg.n_figure >= 0, "must be >= 0"),
    ]
    for name, ok, why in checks:
        if not ok:
            raise ConfigError(f"FontsConfig field '{name}': {getattr(cfg, name)!r} ({why})")
    from .stages import METHOD_NAMES  # the four result names; registry look-ups live in stages
    for m in cfg.methods:
        if m not in METHOD_NAMES:
            raise ConfigError(f"FontsConfig field 'methods': unknown method {m!r} (choose from {', '.join(METHOD_NAMES)})")


_PAPER = FontsConfig(n_labeled_fonts=100, train_frac=2500 / 6200, val_frac=100 / 6200, matplotlib_fonts=False,
                     denoiser_steps=20000, steps=40000, eval_every=1000, ckpt_every=1000)

PRESETS: dict[str, FontsConfig] = {
    # seconds, for tests: 4 fonts, tiny nets, a few dozen steps
    "smoke": FontsConfig(n_labeled_fonts=2, max_fonts=4, unet_width=4, gen_widths=(32, 64), char_emb=8,
                         font_emb=8, denoiser_steps=20, denoiser_batch=16, steps=30, batch_size=16,
                         eval_every=10, ckpt_every=10, lr=1e-3, n_figure=4),
    # a few minutes on one CPU thread with matplotlib's ~22 usable text faces
    # (U-Net width 16, 4 hidden layers, 1000 steps each: docs/fonts.md §5)
    "default": FontsConfig(unet_width=16, denoiser_steps=1000, denoiser_lr=1e-3, denoiser_batch=64,
                           gen_widths=(128, 256, 512, 1024), steps=1000, lr=1e-3, batch_size=64,
                           eval_every=100, ckpt_every=100),
    # the paper's sizes (GPU): 100 labeled fonts from --font_dirs, the rest unlabeled
    "paper": _PAPER,
}
