"""Query decoder, mask head and the fixed 3-D sinusoidal position table.

* Position table for a token grid (X, Y, Z) and width d: per axis
  ``c = 2*ceil(d/6)`` channels, frequencies ``f_j = 1/10000**(2j/c)`` (float32),
  channels ``[2j, 2j+1] = [sin(p f_j), cos(p f_j)]``; X fills ``[0, c)``, Y
  ``[c, 2c)``, Z ``[2c, 3c)``, truncated to d. Tokens are flattened X-major,
  Z-fastest. It is added to the keys only, in every layer.
* Decoder layer (pre-norm, cross-attention only, so queries are independent):
  ``t += MHA(LN2(t), memory + pos, memory)``; ``t += W2 relu(W1 LN3(t))``.
  ``norm1`` exists for checkpoint compatibility but is unused.
  A final LayerNorm follows the last layer.
* Mask head: Linear -> GELU -> Linear -> GELU (exact erf GELU); the logit of a
  voxel is the dot product of its per-pixel embedding with the mask embedding.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def _axis_table(n: int, channels: int) -> torch.Tensor:
    inv_freq = 1.0 / (10000 ** (torch.arange(0, channels, 2, dtype=torch.float32) / channels))
    arg = torch.arange(n, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return torch.stack((arg.sin(), arg.cos()), dim=-1).flatten(-2)  # (n, channels)


@lru_cache(maxsize=16)
def position_table(grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """(X*Y*Z, dim) float32 CPU table; row order X-major, Z-fastest. Treat as read-only (cached)."""
    c = 2 * math.ceil(dim / 6)
    nx, ny, nz = grid
    with torch.inference_mode(False), torch.no_grad(), torch.device("cpu"):  # a plain tensor, whatever the caller's mode
        axes = [_axis_table(n, c) for n in (nx, ny, nz)]
        table = torch.cat([axes[0][:, None, None, :].expand(nx, ny, nz, c),
                           axes[1][None, :, None, :].expand(nx, ny, nz, c),
                           axes[2][None, None, :, :].expand(nx, ny, nz, c)], dim=-1)
        return table[..., :dim].reshape(nx * ny * nz, dim).contiguous()


class QueryDecoderLayer(nn.Module):
    """One pre-norm cross-attention + feed-forward layer."""

    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim)  # present in checkpoints, unused
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, t: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        q = self.norm2(t)
        t = t + self.multihead_attn(q, keys, memory, need_weights=False)[0]
        return t + self.linear2(F.relu(self.linear1(self.norm3(t))))


class QueryDecoder(nn.Module):
    """``layers`` + final ``norm``. Inputs batch-first: t (B,N,D), memory (B,T,D), pos (T,D)."""

    def __init__(self, dim: int, heads: int, ffn: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([QueryDecoderLayer(dim, heads, ffn) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, t: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        keys = memory + pos.unsqueeze(0)
        for layer in self.layers:
            t = layer(t, memory, keys)
        return self.norm(t)


def mlp2(din: int, hidden: int, dout: int, final_act: bool = True) -> nn.Sequential:
    """Linear -> GELU -> Linear [-> GELU] (indices 0 and 2 hold the weights)."""
    mods: list[nn.Module] = [nn.Linear(din, hidden), nn.GELU(), nn.Linear(hidden, dout)]
    if final_act:
        mods.append(nn.GELU())
    return nn.Sequential(*mods)
