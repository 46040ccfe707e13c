"""The SAT segmentation module and :func:`build_sat`.

Call ``model(image, queries)`` with image (B, C_in, X, Y, Z) float32 (RAS axes,
Z superior; every axis a multiple of ``config.downsample``) and queries
(B, N, D) or (N, D) (shared by all patches); it returns pre-sigmoid logits
(B, N, X, Y, Z).

For many prompts on one tile, run the backbone ONCE::

    feats = model.encode_image(tile)          # U-Net + image tokens
    logits = model.decode(feats, queries)     # cheap; call again for more prompts
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelError
from .backbone import PlainUNet
from .config import SATConfig, make_config
from .decoder import QueryDecoder, mlp2, position_table

#: Inputs with at least this many voxels per channel use the low-memory path
#: when autograd is off (``model.low_memory = None``).
LOW_MEMORY_VOXELS = 1 << 20


@dataclass
class SATFeatures:
    """Output of :meth:`SAT.encode_image`; input of :meth:`SAT.decode`."""

    memory: torch.Tensor  # (B, T, D) image tokens
    pos: torch.Tensor  # (T, D) position table
    pixels: torch.Tensor  # (B, C_pp, X, Y, Z) per-pixel embedding


class SAT(nn.Module):
    """U-Net backbone + image-token projection + query decoder + mask head."""

    def __init__(self, config: SATConfig) -> None:
        super().__init__()
        self.config = config.validate()
        ch = config.stage_channels
        self.backbone = PlainUNet(ch, config.convs_per_stage, config.in_channels)
        self.projection_layer = mlp2(sum(ch), config.proj_hidden, config.query_dim)
        self.transformer_decoder = QueryDecoder(config.query_dim, config.num_heads, config.ffn_dim,
                                                config.num_layers)
        self.mask_embed_proj = mlp2(config.query_dim, config.mask_hidden, config.pixel_dim)
        #: None = automatic (large inputs without autograd); True/False force it.
        self.low_memory: bool | None = None
        #: bytes of input per slab in the low-memory path.
        self.slab_bytes: int = 1 << 28

    def _check_image(self, image: torch.Tensor) -> None:
        c, f = self.config, self.config.downsample
        if image.dim() != 5 or image.shape[1] != c.in_channels:
            raise ModelError(f"SAT image must have shape (B, {c.in_channels}, X, Y, Z); got {tuple(image.shape)}.",
                             "Repeat the single-channel volume to the expected channels and add a batch axis.")
        if any(s % f or s == 0 for s in image.shape[2:]):
            raise ModelError(f"SAT image spatial size {tuple(image.shape[2:])} is not a multiple of {f}.",
                             f"Pad or crop tiles to multiples of {f} (the patch size is {c.patch_size}).")
        if not bool(torch.isfinite(image).all()):
            raise ModelError("SAT image contains NaN or infinite values.",
                             "Check the input volume and its preprocessing (e.g. division by a zero std).")

    def _use_low_memory(self, image: torch.Tensor) -> bool:
        if self.low_memory is not None:
            return bool(self.low_memory) and not torch.is_grad_enabled()
        return not torch.is_grad_enabled() and image[0, 0].numel() >= LOW_MEMORY_VOXELS

    def encode_image(self, image: torch.Tensor) -> SATFeatures:
        """Run the backbone once; the result serves any number of queries."""
        self._check_image(image)
        low = self._use_low_memory(image)
        outs = self.backbone.encoder(image, low, self.slab_bytes)
        n = len(outs)
        pooled = [F.avg_pool3d(o, 2 ** (n - 1 - s)) for s, o in enumerate(outs[:-1])] + [outs[-1]]
        grid = tuple(int(s) for s in outs[-1].shape[2:])
        tokens = self.projection_layer(torch.cat(pooled, 1).permute(0, 2, 3, 4, 1))
        del pooled
        memory = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])
        pos = position_table(grid, self.config.query_dim).to(device=memory.device, dtype=memory.dtype)
        pixels = self.backbone.decoder(outs, low, self.slab_bytes)  # consumes `outs`
        return SATFeatures(memory=memory, pos=pos, pixels=pixels)

    def decode(self, features: SATFeatures, queries: torch.Tensor) -> torch.Tensor:
        """Logits (B, N, X, Y, Z) for queries (B, N, D) or (N, D)."""
        b = features.memory.shape[0]
        d = self.config.query_dim
        if queries.dim() == 2:
            queries = queries.unsqueeze(0).expand(b, -1, -1)
        if queries.dim() != 3 or queries.shape[0] != b or queries.shape[2] != d:
            raise ModelError(f"SAT queries must have shape ({b}, N, {d}) or (N, {d}); got {tuple(queries.shape)}.",
                             "Encode prompts with the model's own text encoder / query table.")
        if not bool(torch.isfinite(queries).all()):
            raise ModelError("SAT queries contain NaN or infinite values.", "Re-encode the prompts.")
        t = self.transformer_decoder(queries.to(features.memory.dtype), features.memory, features.pos)
        mask_embed = self.mask_embed_proj(t)  # (B, N, C)
        pix = features.pixels
        logits = torch.bmm(mask_embed, pix.reshape(b, pix.shape[1], -1))
        return logits.view(b, -1, *pix.shape[2:])

    def forward(self, image: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode_image(image), queries)


def build_sat(variant: str = "nano", **overrides: Any) -> SAT:
    """SAT model of ``variant`` ('nano' or 'pro'), optionally resized by
    :class:`SATConfig` field overrides (e.g. ``stage_channels=(16, 32, 64, 128, 256)``).
    Weights are randomly initialised; load with :func:`load_sat_checkpoint`."""
    return SAT(make_config(variant, **overrides))
