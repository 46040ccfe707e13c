"""Configuration of a SAT model (sizes only; no weights).

Fields that are SAFE to change for a new (trained-from-scratch) model:
``stage_channels`` (length = number of U-Net stages, >= 2), ``convs_per_stage``,
``proj_hidden``, ``query_dim``, ``num_layers``, ``num_heads`` (must divide
``query_dim``), ``ffn_dim``, ``mask_hidden``, ``patch_size`` and
``in_channels``. The released SAT-Nano / SAT-Pro checkpoints only load into the
``"nano"`` / ``"pro"`` presets; changing any size breaks that.

``patch_size`` is the tile size the sliding-window engine feeds in; each axis
must be a multiple of :attr:`SATConfig.downsample` (2 ** (stages - 1)).
The model accepts any input whose axes are such multiples; the 3-D sinusoidal
position table depends only on the token index, so it is computed per grid.

A small model of the same code (about 5.5 M parameters)::

    build_sat("nano", stage_channels=(16, 32, 64, 128, 256), convs_per_stage=1,
              proj_hidden=384, query_dim=384, num_layers=2, num_heads=6,
              ffn_dim=768, mask_hidden=128, patch_size=(96, 96, 32))
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ...errors import ModelError


@dataclass(frozen=True)
class SATConfig:
    """Sizes of a SAT model. Defaults are SAT-Nano."""

    stage_channels: tuple[int, ...] = (64, 64, 128, 256, 512, 768)
    convs_per_stage: int = 2
    in_channels: int = 3
    proj_hidden: int = 768
    query_dim: int = 768
    num_layers: int = 6
    num_heads: int = 8
    ffn_dim: int = 2048
    mask_hidden: int = 256
    patch_size: tuple[int, int, int] = (288, 288, 96)
    variant: str = field(default="nano", compare=False)

    @property
    def downsample(self) -> int:
        """Total stride of the U-Net encoder (32 for 6 stages)."""
        return 2 ** (len(self.stage_channels) - 1)

    @property
    def pixel_dim(self) -> int:
        """Channels of the full-resolution per-pixel embedding."""
        return self.stage_channels[0]

    def validate(self) -> "SATConfig":
        """Raise :class:`ModelError` if the sizes cannot form a model."""
        problems = []
        if len(self.stage_channels) < 2 or any(int(c) < 1 for c in self.stage_channels):
            problems.append(f"stage_channels={self.stage_channels} needs >= 2 positive entries")
        for name in ("convs_per_stage", "in_channels", "proj_hidden", "query_dim",
                     "num_layers", "num_heads", "ffn_dim", "mask_hidden"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.num_heads >= 1 and self.query_dim % self.num_heads:
            problems.append(f"query_dim={self.query_dim} is not divisible by num_heads={self.num_heads}")
        if len(self.patch_size) != 3 or any(int(p) % self.downsample or int(p) < 1 for p in self.patch_size):
            problems.append(f"patch_size={self.patch_size} must be 3 positive multiples of {self.downsample}")
        if problems:
            raise ModelError("Invalid SAT configuration: " + "; ".join(problems) + ".",
                             "Fix these fields of SATConfig / build_sat(...) overrides.")
        return self


PRESETS: dict[str, SATConfig] = {
    "nano": SATConfig(),
    "pro": SATConfig(stage_channels=(128, 128, 256, 512, 1024, 1536), convs_per_stage=3,
                     proj_hidden=1536, mask_hidden=384, variant="pro"),
}


def make_config(variant: str = "nano", **overrides: Any) -> SATConfig:
    """Preset ``variant`` ('nano' or 'pro') with ``overrides`` applied."""
    if variant not in PRESETS:
        raise ModelError(f"Unknown SAT variant {variant!r}.", f"Use one of {sorted(PRESETS)}.")
    known = set(SATConfig.__dataclass_fields__) - {"variant"}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ModelError(f"Unknown SAT configuration field(s) {bad}.", f"Valid fields: {sorted(known)}.")
    fixed = {k: tuple(int(x) for x in v) if k in ("stage_channels", "patch_size") else int(v)
             for k, v in overrides.items()}
    return replace(PRESETS[variant], **fixed).validate()
