"""Building blocks: causal distance-biased attention with a cache, decoder blocks, SpiralConv3D."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def alibi_slopes(heads: int) -> torch.Tensor:
    """Per-head slopes of the distance penalty (geometric, as in ALiBi)."""
    return torch.tensor([2 ** (-8.0 * (h + 1) / heads) for h in range(heads)])


class CausalSelfAttention(nn.Module):
    """Multi-head attention over past frames with a linear distance penalty and a window.

    Frame ``t`` attends to frames ``t - window + 1 .. t``; the score of frame ``s`` is lowered by
    ``slope * (t - s)``. With ``cache`` the layer runs one step at a time (autoregressive inference).
    """

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.register_buffer("slopes", alibi_slopes(heads), persistent=False)

    def _bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        dist = (q_pos[:, None] - k_pos[None, :]).to(self.slopes.dtype)
        bias = -self.slopes[:, None, None] * dist[None]
        blocked = (dist < 0) | (dist >= self.window)
        return bias.masked_fill(blocked[None], float("-inf"))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        start = 0
        if cache is not None:
            if "k" in cache:
                start = cache["pos"]
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            keep = self.window - 1
            cache["k"], cache["v"] = k[:, :, -keep:] if keep else k[:, :, :0], v[:, :, -keep:] if keep else v[:, :, :0]
            cache["pos"] = start + t
        q_pos = torch.arange(start, start + t, device=x.device)
        k_pos = torch.arange(start + t - k.shape[2], start + t, device=x.device)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=self._bias(q_pos, k_pos))
        return self.out(att.transpose(1, 2).reshape(b, t, d))


class DecoderBlock(nn.Module):
    """Pre-norm causal self-attention + feed-forward."""

    def __init__(self, dim: int, heads: int, window: int, dropout: float = 0.1):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, window)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), cache))
        return x + self.drop(self.ff(self.norm2(x)))


class CausalDecoder(nn.Module):
    """A stack of :class:`DecoderBlock`; ``caches`` (one dict per block) for step-by-step decoding."""

    def __init__(self, dim: int, heads: int, layers: int, window: int):
        super().__init__()
        self.blocks = nn.ModuleList(DecoderBlock(dim, heads, window) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, caches: list[dict] | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, caches[i] if caches is not None else None)
        return self.norm(x)


class SpiralConv3D(nn.Module):
    """Spiral convolution over mesh vertices extended over the current and previous frames.

    For vertex ``v`` at frame ``t`` it reads the features of the spiral ``spirals[v]`` at frames
    ``t - taps + 1 .. t`` (causal, zeros before the start) and applies one linear map.
    Input and output ``(B, T, C, channels)`` over the ``C`` coarse vertices.
    """

    def __init__(self, in_channels: int, out_channels: int, spirals: torch.Tensor, taps: int = 3):
        super().__init__()
        self.register_buffer("spirals", spirals.long(), persistent=False)
        self.taps = taps
        self.linear = nn.Linear(in_channels * spirals.shape[1] * taps, out_channels)
        nn.init.normal_(self.linear.weight, std=1.0 / math.sqrt(self.linear.in_features))

    def forward(self, x: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        """``history (B, taps - 1, C, ch)``: the frames before ``x`` (zeros when None)."""
        b, t, c, ch = x.shape
        if history is None:
            history = x.new_zeros(b, self.taps - 1, c, ch)
        padded = torch.cat([history, x], 1)
        s = self.spirals.shape[1]
        gathered = padded.index_select(2, self.spirals.flatten()).view(b, t + self.taps - 1, c, s, ch)
        windows = torch.stack([gathered[:, k:k + t] for k in range(self.taps)], dim=3)  # (B, T, C, taps, S, ch)
        return self.linear(windows.reshape(b, t, c, -1))
