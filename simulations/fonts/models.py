"""The paper's two networks for fonts (docs/fonts.md §2, §3): the U-Net denoiser Π and the generator MLP f.

U-Net (pix2pix-style blocks, as in the reference code), width w (paper 64), input/output
``[B, 1, 32, 32]`` on [-1, 1]::

    down1  conv 4x4/2  1 -> w,    LeakyReLU 0.2             32 -> 16
    down2  conv 4x4/2  w -> 2w,   InstanceNorm, LeakyReLU    16 -> 8
    down3  conv 4x4/2  2w -> 2w,  LeakyReLU, dropout          8 -> 4
    up1    convT 4x4/2 2w -> 2w,  InstanceNorm, ReLU, dropout, concat down2 -> 4w     4 -> 8
    up2    convT 4x4/2 4w -> w,   InstanceNorm, ReLU, concat down1 -> 2w             8 -> 16
    final  upsample x2, zero-pad (1,0,1,0), conv 4x4 (padding 1) 2w -> 1, tanh       16 -> 32

Generator: [character embedding (62) ‖ font embedding (100)] -> 128 -> 256 -> 256 -> 512 -> 512
-> 1024 -> 32·32, LeakyReLU 0.2 after each hidden Linear, BatchNorm1d(n, eps=0.8) on every
hidden layer but the first (the reference code's ``BatchNorm1d(n, 0.8)``), tanh output.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["UNet", "Generator", "f_norm", "l2_penalty", "penalized_parameters"]


def _down(cin: int, cout: int, norm: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.InstanceNorm2d(cout),
                               nn.ReLU(inplace=True)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """The paper's small U-Net denoiser Π: ``[B, 1, 32, 32] -> [B, 1, 32, 32]`` in (-1, 1)."""

    def __init__(self, width: int = 64, dropout: float = 0.5):
        super().__init__()
        w = width
        self.down1 = _down(1, w, norm=False, dropout=0.0)
        self.down2 = _down(w, 2 * w, norm=True, dropout=0.0)
        self.down3 = _down(2 * w, 2 * w, norm=False, dropout=dropout)
        self.up1 = _up(2 * w, 2 * w, dropout=dropout)
        self.up2 = _up(4 * w, w, dropout=0.0)
        self.final = nn.Sequential(nn.Upsample(scale_factor=2), nn.ZeroPad2d((1, 0, 1, 0)),
                                   nn.Conv2d(2 * w, 1, 4, padding=1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 32, 32):
            raise ValueError(f"UNet: expected [B, 1, 32, 32], got {tuple(x.shape)}")
        d1 = self.down1(x)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        u1 = torch.cat([self.up1(d3), d2], 1)
        u2 = torch.cat([self.up2(u1), d1], 1)
        return self.final(u2)


class Generator(nn.Module):
    """The paper's base predictor f: (font, character) ids ``[B, 2]`` -> image ``[B, 1, 32, 32]``.

    Args:
        n_fonts / n_chars: sizes of the two embedding tables.
        font_emb / char_emb: embedding sizes (paper 100 / 62).
        widths: hidden widths (paper 128, 256, 256, 512, 512, 1024).
        bn_eps: BatchNorm1d eps of the hidden layers after the first (paper 0.8).
    """

    def __init__(self, n_fonts: int, n_chars: int = 62, font_emb: int = 100, char_emb: int = 62,
                 widths: tuple[int, ...] = (128, 256, 256, 512, 512, 1024), bn_eps: float = 0.8):
        super().__init__()
        self.n_fonts, self.n_chars = n_fonts, n_chars
        self.char_emb = nn.Embedding(n_chars, char_emb)
        self.font_emb = nn.Embedding(n_fonts, font_emb)
        layers: list[nn.Module] = []
        cin = char_emb + font_emb
        for i, w in enumerate(widths):
            layers.append(nn.Linear(cin, w))
            if i > 0:
                layers.append(nn.BatchNorm1d(w, bn_eps))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = w
        layers += [nn.Linear(cin, 32 * 32), nn.Tanh()]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[:, 0]`` = font position in the labeled pool, ``x[:, 1]`` = character index."""
        if x.dim() != 2 or x.shape[1] != 2 or x.dtype != torch.long:
            raise ValueError(f"Generator: expected int64 [B, 2] (font, char) ids, got {x.dtype} {tuple(x.shape)}")
        h = torch.cat([self.char_emb(x[:, 1]), self.font_emb(x[:, 0])], 1)
        return self.mlp(h).view(-1, 1, 32, 32)


def penalized_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The weights the paper's L2 term covers: every parameter whose name is not a bias."""
    return [p for name, p in model.named_parameters() if not name.endswith("bias")]


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """Σ ‖W‖² over :func:`penalized_parameters` (the composed objective adds 1e-4 times this)."""
    return sum((p ** 2).sum() for p in penalized_parameters(model))


@torch.no_grad()
def f_norm(model: nn.Module) -> float:
    """Frobenius norm of all of the model's parameters, sqrt(Σ_p ‖p‖²) (a size of f, docs/fonts.md §4)."""
    return float(torch.sqrt(sum((p.double() ** 2).sum() for p in model.parameters())))
