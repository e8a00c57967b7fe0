"""A small UNet eps_theta(x_t, t, class) for 28x28 images (Ho et al. 2020, Appendix B, shrunk).

Resolutions 28 -> 14 -> 7 and back; residual blocks with GroupNorm and SiLU; the timestep
enters every block through a sinusoidal embedding; self-attention only at 7x7, where it is cheap.
An optional class embedding has one extra row, the "no class" token (label -1), so that one network
learns both p(x | class) and p(x): what classifier-free guidance needs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of integer timesteps: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]                                      # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.drop = _norm(c_out), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)   # each block starts as the identity: stabler early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                                    # (B, c_out, H, W)
        h = h + self.emb(emb)[:, :, None, None]                                  # add time/class embedding
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.heads, self.norm = heads, _norm(ch)
        self.qkv, self.proj = nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))          # (B, C, H, W)


class UNet(nn.Module):
    """eps_theta(x_t, t, labels). x_t (B, C, H, W), t (B,) long, labels (B,) long with -1 = no class, or None."""

    def __init__(self, in_channels: int = 1, channels: int = 32, channel_mult: tuple[int, ...] = (1, 2, 2),
                 num_res_blocks: int = 1, attention_levels: tuple[int, ...] = (2,), num_classes: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.config = dict(in_channels=in_channels, channels=channels, channel_mult=list(channel_mult),
                           num_res_blocks=num_res_blocks, attention_levels=list(attention_levels),
                           num_classes=num_classes, dropout=dropout)
        self.num_classes = num_classes
        emb_dim = 4 * channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # num_classes + 1 rows: the last one is the learned "no class" embedding.
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)

        chans = [channels * m for m in channel_mult]
        self.down, skips, c = nn.ModuleList(), [channels], channels
        for level, ch in enumerate(chans):
            for _ in range(num_res_blocks):
                self.down.append(nn.ModuleList([ResBlock(c, ch, emb_dim, dropout),
                                                Attention(ch) if level in attention_levels else nn.Identity()]))
                c = ch
                skips.append(c)
            if level < len(chans) - 1:                                           # 28 -> 14 -> 7
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid1, self.mid_attn, self.mid2 = ResBlock(c, c, emb_dim, dropout), Attention(c), ResBlock(c, c, emb_dim, dropout)
        self.up = nn.ModuleList()
        for level, ch in reversed(list(enumerate(chans))):
            for _ in range(num_res_blocks + 1):
                self.up.append(nn.ModuleList([ResBlock(c + skips.pop(), ch, emb_dim, dropout),
                                              Attention(ch) if level in attention_levels else nn.Identity()]))
                c = ch
            if level > 0:                                                        # 7 -> 14 -> 28
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)))
        self.out = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.config["channels"]))      # (B, emb_dim)
        if self.class_emb is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
            # -1 (no class) -> the extra last row of the embedding table
            emb = emb + self.class_emb(torch.where(labels < 0, self.num_classes, labels))
        h = self.inp(x)                                                          # (B, ch, 28, 28)
        hs = [h]
        for layer in self.down:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](h, emb))
            else:
                h = layer(h)                                                     # downsample
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)                     # (B, c, 7, 7)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](torch.cat([h, hs.pop()], dim=1), emb))
            else:
                h = layer(h)                                                     # upsample
        return self.out(h)                                                       # (B, C, 28, 28): predicted eps
