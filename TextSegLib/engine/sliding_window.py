"""Sliding-window inference with SAT's tiling and Gaussian blending.

Tiling facts (from ``Testing/Data/sat-reference/tiling.json``): per axis of
size ``s`` with tile ``c`` and stride ``c // 2`` there are
``max(ceil(s / (c/2)) - 1, 1)`` tiles; a tile that overruns is moved to end at
the border (or starts at 0 when the image is shorter than the tile, and is
then zero-padded at the end). Each tile's sigmoid output is weighted by a
float16 Gaussian (σ = tile / 8, peak 10, zeros → smallest non-zero), using
its leading corner for short tiles; ``prob = Σ p·G / Σ G``.

Differences from the reference (same numbers where both run a tile):

* the image backbone runs once per tile for *all* prompts (``encode`` then
  ``decode`` with the batched queries);
* tiles that contain no body voxel are skipped (their voxels stay 0);
* an optional index box restricts the work to a region of interest;
* ``progress`` / ``cancel`` are called between tiles.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import GeometryError, ModelError
from .base import CancelToken, ProgressCallback


def axis_starts(size: int, tile: int) -> list[int]:
    """Tile start indices along one axis (the reference rule, exactly)."""
    if size < 1 or tile < 2:
        raise GeometryError(f"Cannot tile an axis of {size} voxels with tiles of {tile}.")
    stride = tile // 2
    n = max(math.ceil(size / stride) - 1, 1)
    starts = []
    for i in range(n):
        s = i * stride
        if s + tile > size:
            s = max(size - tile, 0)
        starts.append(s)
    return starts


def tile_boxes(shape: Sequence[int], patch: Sequence[int]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """All tiles as ``(start, end)`` (end clipped to the image), X outer, Z inner."""
    per_axis = [axis_starts(int(s), int(c)) for s, c in zip(shape, patch)]
    boxes = []
    for x in per_axis[0]:
        for y in per_axis[1]:
            for z in per_axis[2]:
                start = (x, y, z)
                end = tuple(min(s + c, n) for s, c, n in zip(start, patch, shape))
                boxes.append((start, end))
    return boxes


def gaussian_importance(patch: Sequence[int], sigma_scale: float = 1 / 8, peak: float = 10.0) -> np.ndarray:
    """The reference importance map: float16, zeros replaced by the smallest non-zero."""
    axes = []
    for c in patch:
        i = np.arange(c, dtype=np.float64)
        sigma = c * sigma_scale
        axes.append((i - c // 2) ** 2 / sigma**2)
    g = peak * np.exp(-0.5 * (axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]))
    g = g.astype(np.float16)
    nz = g[g != 0]
    g[g == 0] = nz.min() if nz.size else np.float16(1)
    return g


@dataclass
class TileModel:
    """Adapter over a SAT-like module: ``encode(image)`` once per tile and
    ``decode(features, queries)``; falls back to ``model(image, queries)``."""

    model: torch.nn.Module

    def encode(self, image: torch.Tensor):
        enc = getattr(self.model, "encode_image", None)
        return enc(image) if callable(enc) else image

    def decode(self, features, queries: torch.Tensor) -> torch.Tensor:
        dec = getattr(self.model, "decode", None)
        if callable(dec) and callable(getattr(self.model, "encode_image", None)):
            return dec(features, queries)
        return self.model(features, queries)


def run_sliding_window(
    image: np.ndarray,
    model: torch.nn.Module,
    queries: torch.Tensor,
    *,
    patch: Sequence[int] = (288, 288, 96),
    in_channels: int = 3,
    body: np.ndarray | None = None,
    box: tuple[Sequence[int], Sequence[int]] | None = None,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    max_queries: int = 64,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, dict]:
    """Probabilities ``(N, X, Y, Z)`` float32 for the ``N`` queries ``(N, Dq)``.

    ``image`` is ``(X, Y, Z)`` (repeated to ``in_channels``) or ``(C, X, Y, Z)``.

    ``body`` (bool, image shape) enables skipping tiles without body voxels;
    ``box`` = (start, stop) limits tiling to an index box (voxels outside → 0).
    Returns ``(prob, info)`` where info counts tiles run / skipped.
    """
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] not in (1, in_channels):
        raise GeometryError(
            f"Sliding window needs (X, Y, Z) or ({in_channels}, X, Y, Z) input, got shape {image.shape}."
        )
    if queries.ndim != 2 or queries.shape[0] < 1:
        raise ModelError(f"Queries must be (N, D) with N ≥ 1, got {tuple(queries.shape)}.")
    patch = tuple(int(p) for p in patch)
    n_q = int(queries.shape[0])
    shape = image.shape[1:]
    b0, b1 = (np.zeros(3, int), np.asarray(shape)) if box is None else (np.asarray(box[0]), np.asarray(box[1]))
    if np.any(b0 < 0) or np.any(b1 > shape) or np.any(b1 <= b0):
        raise GeometryError(f"Box {tuple(b0)}..{tuple(b1)} is outside the image {shape}.")
    # Give the model at least one tile of context around a small box.
    for a in range(3):
        if b1[a] - b0[a] < patch[a]:
            grow = patch[a] - (b1[a] - b0[a])
            b0[a] = max(0, b0[a] - grow // 2)
            b1[a] = min(shape[a], b0[a] + patch[a])
            b0[a] = max(0, b1[a] - patch[a])
    sub_shape = tuple(int(v) for v in b1 - b0)
    boxes = tile_boxes(sub_shape, patch)
    g = torch.from_numpy(gaussian_importance(patch))
    prediction = np.zeros((n_q,) + shape, dtype=np.float32)
    accumulation = np.zeros(shape, dtype=np.float32)
    tm = TileModel(model)
    dev = torch.device(device)
    q = queries.to(dev)
    ctx = autocast or contextlib.nullcontext
    run = skipped = 0
    total = len(boxes)
    if progress:
        progress("tiles", 0, total)
    for t, (s_rel, e_rel) in enumerate(boxes):
        if cancel is not None:
            cancel.check()
        s = tuple(int(a + o) for a, o in zip(s_rel, b0))
        e = tuple(int(a + o) for a, o in zip(e_rel, b0))
        sl = tuple(slice(a, b) for a, b in zip(s, e))
        if body is not None and not body[sl].any():
            skipped += 1
            if progress:
                progress("tiles", t + 1, total)
            continue
        tile = torch.from_numpy(np.ascontiguousarray(image[(slice(None),) + sl], dtype=np.float32))
        ext = tuple(b - a for a, b in zip(s, e))
        pad = [0, 0, 0, 0, 0, 0]
        for a in range(3):
            pad[2 * (2 - a) + 1] = patch[a] - ext[a]
        if any(pad):
            tile = torch.nn.functional.pad(tile, pad)
        x = tile[None].expand(1, in_channels, *patch).to(dev)
        w = g[: ext[0], : ext[1], : ext[2]]
        with torch.inference_mode(), ctx():
            feats = tm.encode(x)
            for q0 in range(0, n_q, max_queries):
                qc = q[None, q0:q0 + max_queries]
                logits = tm.decode(feats, qc)
                if logits.ndim != 5 or logits.shape[1] != qc.shape[1] or tuple(logits.shape[2:]) != patch:
                    raise ModelError(
                        f"Model returned logits of shape {tuple(logits.shape)} for {qc.shape[1]} queries; "
                        f"expected (1, {qc.shape[1]}, {', '.join(map(str, patch))})."
                    )
                p = torch.sigmoid(logits[0, :, : ext[0], : ext[1], : ext[2]].float())
                p = (p.cpu() * w).numpy()
                prediction[(slice(q0, q0 + p.shape[0]),) + sl] += p
                del logits, p
            del feats  # the tile's features (GBs at full size) go before the next tile's backbone runs
        del x, tile
        accumulation[sl] += w.float().numpy()
        run += 1
        if progress:
            progress("tiles", t + 1, total)
    covered = accumulation > 0
    np.divide(prediction, accumulation, out=prediction, where=covered[None])
    prediction[:, ~covered] = 0.0
    if box is not None:  # voxels outside the requested box are not part of the answer
        outside = np.ones(shape, dtype=bool)
        outside[tuple(slice(int(a), int(b)) for a, b in zip(box[0], box[1]))] = False
        prediction[:, outside] = 0.0
    return prediction, {"tiles_total": total, "tiles_run": run, "tiles_skipped": skipped}

