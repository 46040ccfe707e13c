"""Plain convolutional 3-D U-Net (the SAT image backbone).

Layout (parameter names follow the released checkpoints):
``encoder.stages[s][0].convs[i].{conv,norm}`` and
``decoder.{transpconvs[s], stages[s].convs[i].{conv,norm}}``.
Each conv block is Conv3d 3x3x3 (padding 1, bias) -> InstanceNorm3d (affine,
eps 1e-5, per-sample statistics) -> LeakyReLU(0.01). The first conv of every
encoder stage but the first has stride 2. A decoder stage upsamples with a
2x2x2 transposed conv, concatenates ``[upsampled, skip]`` and applies its
conv blocks; the last decoder output is the per-pixel embedding.

Inference on large tiles uses a *low-memory* path (no autograd): every conv is
evaluated in slabs along the first spatial axis into a preallocated output,
the upsampling of the last stages is fused into those slabs (the upsampled
tensor and the concatenation are never materialised) and normalisation runs
in place. The maths is the same as the plain path.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

NEG_SLOPE = 0.01
_Part = Callable[[int, int], torch.Tensor]


class ConvNormAct(nn.Module):
    """Conv3d(3, stride, pad 1) -> InstanceNorm3d(affine) -> LeakyReLU(0.01)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=True)
        self.norm = nn.InstanceNorm3d(cout, eps=1e-5, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), NEG_SLOPE, inplace=True)

    def norm_act_(self, x: torch.Tensor) -> torch.Tensor:
        """In-place normalisation + activation of a conv output (low-memory path)."""
        var, mean = torch.var_mean(x, dim=(2, 3, 4), keepdim=True, correction=0)
        scale = torch.rsqrt(var + self.norm.eps) * self.norm.weight.view(1, -1, 1, 1, 1)
        shift = self.norm.bias.view(1, -1, 1, 1, 1) - mean * scale
        x.mul_(scale).add_(shift)
        return F.leaky_relu_(x, NEG_SLOPE)


class ConvStack(nn.Module):
    """``n`` conv blocks; only the first may be strided."""

    def __init__(self, cin: int, cout: int, n: int, first_stride: int = 1) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [ConvNormAct(cin if i == 0 else cout, cout, first_stride if i == 0 else 1) for i in range(n)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.convs:
            x = block(x)
        return x


def _slab_conv(block: ConvNormAct, parts: Sequence[_Part], size_x: int, out_x: int,
               slab_bytes: int) -> torch.Tensor:
    """Conv of the channel concatenation of ``parts`` (each ``part(lo, hi)`` gives
    input rows lo:hi of the first spatial axis), slab by slab, then norm+act in place."""
    conv = block.conv
    stride = conv.stride[0]
    probe = [p(0, 1) for p in parts]  # one input row per part: batch, channels, Y, Z, dtype
    first = probe[0]
    b, ny, nz = first.shape[0], first.shape[3], first.shape[4]
    cin = sum(t.shape[1] for t in probe)
    del probe
    oy, oz = (ny - 1) // stride + 1, (nz - 1) // stride + 1
    out = torch.empty((b, conv.out_channels, out_x, oy, oz), dtype=first.dtype, device=first.device)
    per_row = max(1, cin * ny * nz * first.element_size() * b * stride)
    rows = max(1, slab_bytes // per_row)
    for a in range(0, out_x, rows):
        e = min(a + rows, out_x)
        lo_want, hi_want = stride * a - 1, stride * (e - 1) + 2
        lo, hi = max(lo_want, 0), min(hi_want, size_x)
        x = torch.cat([p(lo, hi) for p in parts], 1) if len(parts) > 1 else parts[0](lo, hi)
        x = F.pad(x, (0, 0, 0, 0, lo - lo_want, hi_want - hi))
        out[:, :, a:e] = F.conv3d(x, conv.weight, conv.bias, stride, (0, 1, 1))
        del x
    return block.norm_act_(out)


def _rows(t: torch.Tensor) -> _Part:
    return lambda lo, hi: t[:, :, lo:hi]


class UNetEncoder(nn.Module):
    """Encoder: ``stages[s][0]`` is a :class:`ConvStack` (stride 2 from stage 1 on)."""

    def __init__(self, channels: Sequence[int], convs: int, in_channels: int) -> None:
        super().__init__()
        stages = []
        cin = in_channels
        for s, c in enumerate(channels):
            stages.append(nn.Sequential(ConvStack(cin, c, convs, 1 if s == 0 else 2)))
            cin = c
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor, low_memory: bool = False, slab_bytes: int = 1 << 28) -> list[torch.Tensor]:
        """Outputs of every stage, finest first."""
        outs = []
        for stage in self.stages:
            if low_memory:
                for block in stage[0].convs:
                    x = _slab_conv(block, [_rows(x)], x.shape[2], (x.shape[2] - 1) // block.conv.stride[0] + 1,
                                   slab_bytes)
            else:
                x = stage(x)
            outs.append(x)
        return outs


class UNetDecoder(nn.Module):
    """Decoder: ``transpconvs[s]`` upsamples, ``stages[s]`` fuses with the skip."""

    def __init__(self, channels: Sequence[int], convs: int) -> None:
        super().__init__()
        n = len(channels)
        self.stages = nn.ModuleList(
            [ConvStack(2 * channels[n - 2 - s], channels[n - 2 - s], convs) for s in range(n - 1)]
        )
        self.transpconvs = nn.ModuleList(
            [nn.ConvTranspose3d(channels[n - 1 - s], channels[n - 2 - s], 2, stride=2) for s in range(n - 1)]
        )

    def forward(self, skips: list[torch.Tensor], low_memory: bool = False, slab_bytes: int = 1 << 28) -> torch.Tensor:
        """Per-pixel embedding. CONSUMES ``skips`` (pops them) so memory is freed early."""
        x = skips.pop()
        for transp, stage in zip(self.transpconvs, self.stages):
            skip = skips.pop()
            if not low_memory:
                x = stage(torch.cat([transp(x), skip], 1))
                continue
            low = x

            def up(lo: int, hi: int, low: torch.Tensor = low, transp: nn.Module = transp) -> torch.Tensor:
                l0, l1 = lo // 2, (hi + 1) // 2
                return transp(low[:, :, l0:l1])[:, :, lo - 2 * l0: hi - 2 * l0]

            n = skip.shape[2]
            x = _slab_conv(stage.convs[0], [up, _rows(skip)], n, n, slab_bytes)
            del low, skip
            for block in stage.convs[1:]:
                x = _slab_conv(block, [_rows(x)], n, n, slab_bytes)
        return x


class PlainUNet(nn.Module):
    """``encoder`` + ``decoder``; see the module docstring."""

    def __init__(self, channels: Sequence[int], convs: int, in_channels: int) -> None:
        super().__init__()
        self.encoder = UNetEncoder(channels, convs, in_channels)
        self.decoder = UNetDecoder(channels, convs)
