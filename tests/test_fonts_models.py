"""The U-Net's and the generator's shapes and parameter counts against the paper's architecture (closed forms)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from simulations.fonts.models import Generator, UNet, f_norm, l2_penalty, penalized_parameters


def unet_param_count(w: int) -> int:
    """Convs without bias (pix2pix blocks), InstanceNorm without affine, final conv with bias."""
    return 16 * (1 * w + w * 2 * w + 2 * w * 2 * w + 2 * w * 2 * w + 4 * w * w + 2 * w * 1) + 1


@pytest.mark.parametrize("w", [4, 64])
def test_unet_block_shapes_and_parameter_count(w):
    net = UNet(w).eval()
    seen = {}
    for name in ("down1", "down2", "down3", "up1", "up2"):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape)))
    out = net(torch.randn(3, 1, 32, 32))
    assert out.shape == (3, 1, 32, 32) and out.abs().max() < 1      # tanh
    assert seen == {"down1": (3, w, 16, 16), "down2": (3, 2 * w, 8, 8), "down3": (3, 2 * w, 4, 4),
                    "up1": (3, 2 * w, 8, 8), "up2": (3, w, 16, 16)}
    assert sum(p.numel() for p in net.parameters()) == unet_param_count(w)
    assert net.final[2].in_channels == 2 * w                       # up2 ‖ down1


def test_unet_dropout_is_where_the_paper_puts_it():
    net = UNet(8, dropout=0.5)
    drops = {name.split(".")[0] for name, m in net.named_modules() if isinstance(m, nn.Dropout)}
    assert drops == {"down3", "up1"}
    norms = {name.split(".")[0] for name, m in net.named_modules() if isinstance(m, nn.InstanceNorm2d)}
    assert norms == {"down2", "up1", "up2"}
    with pytest.raises(ValueError, match=r"\[B, 1, 32, 32\]"):
        net(torch.zeros(2, 1, 28, 28))


def generator_param_count(n_fonts, char_emb, font_emb, widths):
    total, cin = 62 * char_emb + n_fonts * font_emb, char_emb + font_emb
    for i, w in enumerate(widths):
        total += cin * w + w + (2 * w if i > 0 else 0)              # Linear + BatchNorm affine
        cin = w
    return total + cin * 1024 + 1024


def test_generator_is_the_paper_mlp():
    g = Generator(n_fonts=100).eval()
    linears = [m for m in g.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (162, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 1024), (1024, 1024)]
    bns = [m for m in g.mlp if isinstance(m, nn.BatchNorm1d)]
    assert [m.num_features for m in bns] == [256, 256, 512, 512, 1024] and all(m.eps == 0.8 for m in bns)
    assert sum(p.numel() for p in g.parameters()) == generator_param_count(100, 62, 100, (128, 256, 256, 512, 512, 1024))
    x = torch.tensor([[0, 0], [99, 61], [5, 30]])
    out = g(x)
    assert out.shape == (3, 1, 32, 32) and out.abs().max() < 1


def test_generator_uses_both_embeddings_and_rejects_bad_ids():
    torch.manual_seed(0)
    g = Generator(3, font_emb=4, char_emb=4, widths=(8,)).eval()
    a, b, c = g(torch.tensor([[0, 1], [2, 1], [0, 7]]))
    assert not torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="int64"):
        g(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        g(torch.zeros(2, 3, dtype=torch.long))


def test_norms_against_a_direct_sum():
    torch.manual_seed(1)
    g = Generator(2, font_emb=3, char_emb=3, widths=(5, 6))
    names = [n for n, _ in g.named_parameters()]
    weights = [p for n, p in g.named_parameters() if not n.endswith("bias")]
    assert len(penalized_parameters(g)) == len(weights) and any(n.endswith("bias") for n in names)
    flat_w = torch.cat([p.detach().flatten() for p in weights]).double()
    assert float(l2_penalty(g).detach()) == pytest.approx(float(flat_w @ flat_w), rel=1e-6)
    flat = torch.cat([p.detach().flatten() for p in g.parameters()]).double()
    assert f_norm(g) == pytest.approx(float(flat.norm()), rel=1e-12)
    with torch.no_grad():
        for p in g.parameters():
            p.fill_(0.5)
    assert f_norm(g) == pytest.approx(0.5 * flat.numel() ** 0.5, rel=1e-12)
