"""Mask and region helpers of the built-in refiner: coarse/fine grids, boxes,
changed regions and connectivity to clicks."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from ..volume import Volume
from .geometry import Region, VoxelBox

def to_coarse(a: np.ndarray, stride: np.ndarray) -> np.ndarray:
    """Sample the centre voxel of each ``stride`` block (cheap: touches only the output)."""
    if np.all(stride == 1):
        return a
    return a[tuple(slice(int(s) // 2, None, int(s)) for s in stride)]


def to_fine(a: np.ndarray, stride: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a coarse bool array back to ``shape``."""
    if np.all(stride == 1):
        return a
    for ax, s in enumerate(stride):
        a = np.repeat(a, int(s), axis=ax)
    short = [(0, max(0, int(n) - m)) for n, m in zip(shape, a.shape)]
    if any(p[1] for p in short):  # the last partial block had no centre sample
        a = np.pad(a, short, mode="edge")
    return a[: shape[0], : shape[1], : shape[2]]


def regrid(a: np.ndarray, stride: np.ndarray, new_stride: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``a`` (sampled every ``stride`` voxels of a block of ``shape``) resampled to
    every ``new_stride`` voxels: the same as ``to_coarse(to_fine(a, stride, shape),
    new_stride)`` without building the fine array."""
    idx = [np.minimum((np.arange(int(s) // 2, int(n), int(s)) // int(old)), m - 1)
           for s, n, old, m in zip(new_stride, shape, stride, a.shape)]
    return a[np.ix_(*idx)]


def fine_block(a: np.ndarray, stride: np.ndarray, shape: Sequence[int]) -> tuple[tuple[slice, ...], np.ndarray]:
    """The bounding block of a coarse bool array's True voxels, upsampled: ``(fine slices, block)``."""
    idx = np.argwhere(a)
    lo, hi = idx.min(0), idx.max(0) + 1
    fine_lo = lo * stride
    fine_hi = np.where(hi == np.asarray(a.shape), np.asarray(shape), np.minimum(hi * stride, np.asarray(shape)))
    sub = a[tuple(slice(int(x), int(y)) for x, y in zip(lo, hi))]
    target = tuple(int(y - x) for x, y in zip(fine_lo, fine_hi))
    return tuple(slice(int(x), int(y)) for x, y in zip(fine_lo, fine_hi)), to_fine(sub, stride, target)


def box_mask(shape: Sequence[int], box: VoxelBox) -> np.ndarray:
    out = np.zeros(tuple(shape), dtype=bool)
    out[box.region.slices] = box.inside
    return out


def changed_region_of(mask: np.ndarray, where: np.ndarray) -> Region | None:
    """Bounding block of ``mask & where`` (the voxels a clip would remove)."""
    hit = mask & where
    if not hit.any():
        return None
    idx = np.argwhere(hit)
    return Region(tuple(int(v) for v in idx.min(0)), tuple(int(v) + 1 for v in idx.max(0)))  # type: ignore[arg-type]


def nearest_part(region: np.ndarray, points: np.ndarray, spacing: np.ndarray, cap: int) -> np.ndarray:
    """``region`` cut to its ``cap`` voxels nearest to ``points`` (mm), still touching them."""
    n = int(np.count_nonzero(region))
    if cap <= 0 or n <= cap:
        return region
    idx = np.argwhere(region)
    d2 = np.full(len(idx), np.inf)
    for p in points:
        d2 = np.minimum(d2, (((idx - p) * spacing) ** 2).sum(1))
    keep = idx[np.argsort(d2, kind="stable")[:cap]]
    out = np.zeros_like(region)
    out[tuple(keep.T)] = True
    return connected_to(out, points)


def connected_to(region: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Parts of ``region`` (26-connected) that contain or touch one of ``points``."""
    if not region.any() or len(points) == 0:
        return np.zeros_like(region)
    grown = region.copy()
    for p in points:
        grown[tuple(p)] = True
    lab, _ = ndimage.label(grown, structure=np.ones((3, 3, 3), bool))
    keep = {int(lab[tuple(p)]) for p in points} - {0}
    return np.isin(lab, list(keep)) & region


def box_ras(volume: Volume, box: VoxelBox) -> tuple[list[float], list[float]]:
    """RAS bounding corners of the voxels of a box (voxel edges included)."""
    idx = np.argwhere(box.inside) + np.asarray(box.region.start)
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    lo, hi = idx.min(0) - 0.5, idx.max(0) + 0.5
    ras = volume.ijk_to_ras_points(lo + corners * (hi - lo))
    return ras.min(0).tolist(), ras.max(0).tolist()
