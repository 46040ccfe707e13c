"""Synthetic engine results and shapes shared by the presence, head/neck and lesion tests."""
from __future__ import annotations

import numpy as np

from TextSegLib.engine.base import EngineResult
from TextSegLib.knowledge.resolved import resolve_prompts


def synthetic_result(masks: dict[str, np.ndarray], modality: str = "ct", *, prob: float = 0.95) -> EngineResult:
    """An engine result of these masks, each with probability ``prob`` inside and 0 outside."""
    prompts = {p.text: p for p in resolve_prompts(list(masks), modality=modality)}
    return EngineResult(masks=dict(masks), probabilities={k: (m * prob).astype(np.float16) for k, m in masks.items()},
                        found={k: bool(m.any()) for k, m in masks.items()}, prompts=prompts,
                        info={"modality": modality})


def ellipse(shape, ci, cj, ri, rj) -> np.ndarray:
    """A filled 2-D ellipse centred at (ci, cj) with radii (ri, rj) voxels."""
    i, j = np.ogrid[:shape[0], :shape[1]]
    return ((i - ci) / ri) ** 2 + ((j - cj) / rj) ** 2 <= 1.0


def block(shape, lo, hi) -> np.ndarray:
    """A boolean box from ``lo`` (inclusive) to ``hi`` (exclusive)."""
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m
