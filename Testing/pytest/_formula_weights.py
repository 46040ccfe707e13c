"""Deterministic "formula" weights for SAT checkpoints, so parity tests need no released weights.

Written here from the rule stated in ``Testing/Data/sat-reference/README.md`` (the parity
fixtures were computed with weights that follow it):

* seed: CRC-32 of the key without a leading ``module.``; ``z`` = standard normal draws of the
  key's shape from a CPU ``torch.Generator`` seeded with it (float32);
* embedding tables (``…embeddings.weight``, ``modality_embed.weight``,
  ``relative_attention_bias.weight``): ``0.02 z``; rank-1 ``….weight`` with "norm" in the key:
  ``1 + 0.1 z``; other tensors of rank >= 2: ``z / sqrt(prod(shape[1:]))``; any other rank-1
  tensor: ``0.02 z``;
* a row with an alias shares its canonical key's tensor; ``legacy_buffer`` rows hold ``arange``.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch

_TABLES = ("embeddings.weight", "modality_embed.weight", "relative_attention_bias.weight")


def parse_keys(path: str | Path) -> list[tuple[str, tuple[int, ...], str, str]]:
    """Rows ``(key, shape, alias_of, flags)`` of a ``keys-*.tsv`` file (comments skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, alias, flags = (line.split("\t") + ["", "", ""])[:4]
        rows.append((key, tuple(int(x) for x in shape.split(",")) if shape else (), alias, flags))
    return rows


def weight_for(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The formula tensor of one key (``module.`` prefix allowed)."""
    name = key.removeprefix("module.")
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    z = torch.randn(tuple(shape), generator=g, dtype=torch.float32)
    if name.endswith(_TABLES):
        return 0.02 * z
    if len(shape) == 1 and name.endswith(".weight") and "norm" in name.lower():
        return 1.0 + 0.1 * z
    if len(shape) >= 2:
        return z / math.sqrt(math.prod(shape[1:]))
    return 0.02 * z


def state_dict_from_keys(path: str | Path) -> dict[str, torch.Tensor]:
    """Every key of the tsv, in its order and spelling (``module.`` kept), with formula values."""
    rows = parse_keys(path)
    made: dict[str, torch.Tensor] = {}
    for key, shape, alias, flags in rows:  # canonical tensors first (an alias may be listed earlier)
        if "legacy_buffer" in flags:
            made[key] = torch.arange(shape[-1], dtype=torch.int64).reshape(shape)
        elif not alias:
            made[key] = weight_for(key, shape)
    return {key: made[alias] if alias else made[key] for key, shape, alias, flags in rows}
