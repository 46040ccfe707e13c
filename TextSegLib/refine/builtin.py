"""The built-in refiner: clicks and boxes, no weights needed.

Clicks: inside a local ROI, the current mask is turned into soft seeds.
Voxels away from the clicks and the mask boundary keep their label (hard
seeds); an *uncertain* zone around each click (its radius grows with the
click's distance to the mask boundary, so a click deep in a missed part
frees that whole part) and a band along the mask boundary near the clicks
(its width grows with that distance too, within ``band_mm``..``band_max_mm``)
are re-decided by a seeded segmentation of the image (GrowCut by default,
see :mod:`.algorithms`). A model probability map, when given, widens the
uncertain zone where the model itself was unsure (0.1 < p < 0.9).
A positive click only adds voxels connected to it; a negative click only
removes voxels connected to it, and it stays a hard background seed.

Boxes: with a text engine and prompt, the model is re-run inside the box
(``roi_ras``) and its mask replaces the old one there; otherwise an
existing mask is clipped to the box (to the box's rectangle on its slice
for a flat box), and an empty box gets its dominant structure segmented.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..engine.base import CancelToken, Engine
from ..errors import ModelError
from ..volume import Volume
from . import algorithms
from .geometry import Region, VoxelBox, roi_around


@dataclass
class Interaction:
    """One refinement request, already converted to voxel indices."""

    positive: np.ndarray  # (N, 3) int
    negative: np.ndarray  # (M, 3) int
    boxes: list[VoxelBox] = field(default_factory=list)
    probabilities: np.ndarray | None = None
    roi_margin_mm: float = 60.0
    text_engine: Engine | None = None
    prompt: str | None = None
    cancel: CancelToken | None = None
    #: full-size bool array of voxels earlier negative clicks removed (hard background), or None
    locked_background: np.ndarray | None = None


@dataclass
class BuiltinRefiner:
    """Seeded-segmentation refiner (see the module docstring).

    Defaults were tuned with ``benchmarks/bench_refine.py``. ``band_mm`` /
    ``band_max_mm``: bounds of the boundary band that is re-decided (its
    width is ``band_depth`` x the click's depth; ``negative_band_max_mm``:
    the bound for negative clicks, so a thick leak can go in one click); ``band_reach`` /
    ``negative_band_reach``: how far (in uncertain-ball radii) from a
    positive / negative click the band may change; ``min_radius_mm`` /
    ``max_radius_mm``: bounds of the uncertain ball; ``seed_radius_mm``:
    the hard seed at the click; ``max_roi_voxels``: larger ROIs are
    processed on a coarser grid (every n-th voxel) to bound latency;
    ``backend``: a key of :data:`algorithms.BACKENDS`.
    """

    backend: str = field(default_factory=algorithms.default_backend)
    band_mm: float = 4.0
    min_radius_mm: float = 6.0
    max_radius_mm: float = 35.0
    seed_radius_mm: float = 2.0
    band_reach: float = 3.0
    negative_band_reach: float = 3.0
    band_depth: float = 2.0
    band_max_mm: float = 10.0
    negative_band_max_mm: float = 30.0
    smooth: bool = False
    max_roi_voxels: int = 160_000
    min_background_fraction: float = 0.05
    name: str = "builtin"

    def apply(self, volume: Volume, mask: np.ndarray, req: Interaction) -> tuple[np.ndarray, Region | None]:
        """Return ``(new_mask, touched_region)``; ``mask`` is not modified."""
        new = mask.copy()
        touched: Region | None = None
        for box in req.boxes:
            if req.cancel:
                req.cancel.check()
            touched = _merge(touched, self._apply_box(volume, new, box, req))
        if len(req.positive) or len(req.negative):
            if req.cancel:
                req.cancel.check()
            touched = _merge(touched, self._apply_points(volume, new, req))
        return new, touched

    # -- clicks -------------------------------------------------------------------
    def _apply_points(self, volume: Volume, new: np.ndarray, req: Interaction) -> Region:
        pts = np.concatenate([req.positive, req.negative]).reshape(-1, 3)
        roi = roi_around(volume, pts, req.roi_margin_mm)
        sl = roi.slices
        cur = new[sl]
        stride = self.stride_for(roi.shape, volume.spacing)
        image = np.asarray(_coarse(volume.array[sl], stride), dtype=np.float32)
        mask_c = _coarse(cur, stride)
        prob = None
        if req.probabilities is not None:
            prob = np.asarray(_coarse(req.probabilities[sl], stride), dtype=np.float32)
        spacing = volume.spacing * stride
        pos = np.minimum(roi.local(req.positive) // stride, np.asarray(mask_c.shape) - 1)
        neg = np.minimum(roi.local(req.negative) // stride, np.asarray(mask_c.shape) - 1)
        seeds = self.point_seeds(mask_c, pos.reshape(-1, 3), neg.reshape(-1, 3), spacing, prob,
                                 max_radius_mm=0.75 * req.roi_margin_mm)
        if req.locked_background is not None:  # removed leaks stay background seeds
            lock_c = _coarse(req.locked_background[sl], stride) & ~mask_c
            seeds[lock_c & (seeds != algorithms.FG)] = algorithms.BG
        fg = algorithms.BACKENDS[self.backend](self._prep(image), seeds, spacing)
        added = _connected_to(fg & ~mask_c, pos) if len(pos) else None
        removed = _connected_to(mask_c & ~fg, neg) if len(neg) else None
        result = cur.copy()
        if added is not None:
            result |= _fine(added, stride, cur.shape)
        if removed is not None:
            result &= ~_fine(removed, stride, cur.shape)
        for p in roi.local(req.positive):
            result[tuple(p)] = True
        for p in roi.local(req.negative):
            result[tuple(p)] = False
        new[sl] = result
        return roi

    def stride_for(self, shape: Sequence[int], spacing: np.ndarray) -> np.ndarray:
        """Integer step per axis so the ROI has at most ``max_roi_voxels`` voxels."""
        n = float(np.prod(shape))
        if n <= self.max_roi_voxels:
            return np.ones(3, dtype=np.int64)
        extent = np.asarray(shape) * np.asarray(spacing)
        target = (float(np.prod(extent)) / self.max_roi_voxels) ** (1.0 / 3.0)
        stride = np.maximum(1, np.round(target / np.asarray(spacing))).astype(np.int64)
        while np.prod(np.ceil(np.asarray(shape) / stride)) > self.max_roi_voxels:
            stride[int(np.argmin(stride * np.asarray(spacing)))] += 1
        return stride

    def point_seeds(
        self, mask: np.ndarray, pos: np.ndarray, neg: np.ndarray, spacing: np.ndarray,
        prob: np.ndarray | None = None, max_radius_mm: float | None = None,
    ) -> np.ndarray:
        """Seed labels (0 unknown, FG, BG) for the ROI around the clicks.

        When fewer than ``min_background_fraction`` of the ROI voxels would
        be background seeds, the ROI faces outside the mask become
        background too, so a click far from any mask still has competition.
        """
        r_max = self.max_radius_mm if max_radius_mm is None else min(self.max_radius_mm, max_radius_mm)
        spacing = np.asarray(spacing, dtype=np.float64)
        d_out = ndimage.distance_transform_edt(~mask, sampling=spacing) if mask.any() else None
        d_in = ndimage.distance_transform_edt(mask, sampling=spacing) if (~mask).any() else None
        grid = np.ogrid[tuple(slice(0, n) for n in mask.shape)]
        unknown = np.zeros(mask.shape, dtype=bool)
        near = np.zeros(mask.shape, dtype=bool) if np.isfinite(self.band_reach) else np.ones(mask.shape, bool)
        hard_fg = np.zeros(mask.shape, dtype=bool)
        hard_bg = np.zeros(mask.shape, dtype=bool)
        depths = {True: 0.0, False: 0.0}  # deepest positive / negative click
        keep_core = np.zeros(mask.shape, dtype=bool)
        near_neg = np.zeros(mask.shape, dtype=bool)
        for pts, dist, hard in ((pos, d_out, hard_fg), (neg, d_in, hard_bg)):
            for p in pts:
                d = 0.0 if dist is None else float(dist[tuple(p)])
                depths[hard is hard_fg] = max(depths[hard is hard_fg], d)
                radius = float(np.clip(self.min_radius_mm + 2.0 * d, self.min_radius_mm, max(r_max, self.min_radius_mm)))
                r2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, p, spacing))
                unknown |= r2 <= radius**2
                if hard is hard_fg and np.isfinite(self.band_reach):
                    near |= r2 <= (self.band_reach * radius) ** 2
                if hard is hard_bg:
                    near_neg |= r2 <= (self.negative_band_reach * radius) ** 2
                hard |= r2 <= max(self.seed_radius_mm, float(spacing.min())) ** 2
                if hard is hard_bg:  # the leak itself: about d around the click
                    keep_core |= r2 <= (self.min_radius_mm + d) ** 2
        depth = max(depths.values())
        band_width = float(np.clip(self.band_depth * depth, self.band_mm, self.band_max_mm))
        neg_width = float(np.clip(self.band_depth * depths[False], self.band_mm, self.negative_band_max_mm))
        if d_out is not None and d_in is not None:
            unknown |= ~mask & (d_out <= band_width) & near  # where a positive click may add
            unknown |= mask & (d_in <= max(band_width, neg_width)) & near_neg  # where a negative click may remove
            if len(neg):  # keep the core of the structure away from the leak
                width = max(band_width, neg_width)
                core = mask & (d_in >= min(width, 0.5 * float(d_in.max()))) & ~keep_core
                unknown &= ~core
        if prob is not None:
            unknown |= (prob > 0.1) & (prob < 0.9) & near
        if not len(neg):  # clicks that only add: the current mask stays foreground
            unknown &= ~mask
        if not len(pos):  # clicks that only remove: the background stays background
            unknown &= mask
        faces = np.ones(mask.shape, dtype=bool)
        faces[1:-1, 1:-1, 1:-1] = False
        if np.count_nonzero(~mask & ~unknown) < self.min_background_fraction * mask.size:
            unknown &= ~(faces & ~mask)
        seeds = np.where(mask, algorithms.FG, algorithms.BG).astype(np.uint8)
        seeds[unknown] = 0
        seeds[hard_fg] = algorithms.FG
        seeds[hard_bg] = algorithms.BG
        return seeds

    # -- boxes --------------------------------------------------------------------
    def _apply_box(self, volume: Volume, new: np.ndarray, box: VoxelBox, req: Interaction) -> Region:
        sl = box.region.slices
        inside = box.inside
        if req.text_engine is not None:
            if not req.prompt:
                raise ModelError(
                    "A text engine was given for the box but no prompt.",
                    "Pass prompt='liver' or leave the engine out.",
                )
            lo, hi = _box_ras(volume, box)
            res = req.text_engine.segment(volume, [req.prompt], roi_ras=(lo, hi), cancel=req.cancel)
            model = np.asarray(res.masks[req.prompt], dtype=bool)
            block = new[sl]
            block[inside] = model[sl][inside]
            return box.region
        if np.any(new[sl] & inside):
            if box.flat_axis is None:
                touched = changed_region_of(new, ~_full(new.shape, box))
                new[...] = new & _full(new.shape, box)
                return touched or box.region
            ax = box.flat_axis
            slab = [slice(None)] * 3
            slab[ax] = slice(box.region.start[ax], box.region.stop[ax])
            keep = np.zeros(new[tuple(slab)].shape, dtype=bool)
            local = list(sl)
            local[ax] = slice(None)
            keep[tuple(local)] = inside
            touched = changed_region_of(new[tuple(slab)], ~keep)
            new[tuple(slab)] &= keep
            if touched is None:
                return box.region
            start = list(touched.start)
            stop = list(touched.stop)
            start[ax] += box.region.start[ax]
            stop[ax] += box.region.start[ax]
            return Region(tuple(start), tuple(stop))  # type: ignore[arg-type]
        block = new[sl]
        block |= self.dominant_structure(np.asarray(volume.array[sl], dtype=np.float32), inside, volume.spacing)
        return box.region

    def dominant_structure(self, image: np.ndarray, inside: np.ndarray, spacing: np.ndarray) -> np.ndarray:
        """Segment the structure at the centre of a box: centre seeds vs. frame seeds."""
        seeds = np.full(image.shape, algorithms.BG, dtype=np.uint8)
        seeds[inside] = 0
        core = ndimage.binary_erosion(inside, iterations=1, border_value=0)
        if inside.ndim == 3:
            flat = [ax for ax in range(3) if inside.shape[ax] == 1]
            if flat:  # erode in-plane only for a slice box
                sq = np.squeeze(inside, axis=flat[0])
                core = np.expand_dims(ndimage.binary_erosion(sq, iterations=1, border_value=0), flat[0])
        seeds[inside & ~core] = algorithms.BG
        idx = np.argwhere(inside)
        centre = (idx.min(0) + idx.max(0)) / 2.0
        half = np.maximum((idx.max(0) - idx.min(0)) / 2.0, 0.5)
        grid = np.ogrid[tuple(slice(0, n) for n in image.shape)]
        ell = sum(((g - c) / (h * 0.3 + 0.5)) ** 2 for g, c, h in zip(grid, centre, half)) <= 1.0
        seeds[ell & inside] = algorithms.FG
        fg = algorithms.BACKENDS[self.backend](self._prep(image), seeds, spacing)
        fg &= inside
        lab, n = ndimage.label(fg)
        if n > 1:
            sizes = np.bincount(lab.ravel())[1:]
            fg = lab == (1 + int(np.argmax(sizes)))
        return fg

    def _prep(self, image: np.ndarray) -> np.ndarray:
        return ndimage.median_filter(image, size=3) if self.smooth else image


def _coarse(a: np.ndarray, stride: np.ndarray) -> np.ndarray:
    """Sample the centre voxel of each ``stride`` block (cheap: touches only the output)."""
    if np.all(stride == 1):
        return a
    return a[tuple(slice(int(s) // 2, None, int(s)) for s in stride)]


def _fine(a: np.ndarray, stride: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a coarse bool array back to ``shape``."""
    if np.all(stride == 1):
        return a
    for ax, s in enumerate(stride):
        a = np.repeat(a, int(s), axis=ax)
    short = [(0, max(0, int(n) - m)) for n, m in zip(shape, a.shape)]
    if any(p[1] for p in short):  # the last partial block had no centre sample
        a = np.pad(a, short, mode="edge")
    return a[: shape[0], : shape[1], : shape[2]]


def _merge(a: Region | None, b: Region | None) -> Region | None:
    if a is None:
        return b
    return a if b is None else a.union(b)


def _full(shape: Sequence[int], box: VoxelBox) -> np.ndarray:
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


def _connected_to(region: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Parts of ``region`` (26-connected) that contain or touch one of ``points``."""
    if not region.any() or len(points) == 0:
        return np.zeros_like(region)
    grown = region.copy()
    for p in points:
        grown[tuple(p)] = True
    lab, _ = ndimage.label(grown, structure=np.ones((3, 3, 3), bool))
    keep = {int(lab[tuple(p)]) for p in points} - {0}
    return np.isin(lab, list(keep)) & region


def _box_ras(volume: Volume, box: VoxelBox) -> tuple[list[float], list[float]]:
    """RAS bounding corners of the voxels of a box (voxel edges included)."""
    idx = np.argwhere(box.inside) + np.asarray(box.region.start)
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    lo, hi = idx.min(0) - 0.5, idx.max(0) + 0.5
    ras = volume.ijk_to_ras_points(lo + corners * (hi - lo))
    return ras.min(0).tolist(), ras.max(0).tolist()
