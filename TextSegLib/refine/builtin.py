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

Choices measured with ``benchmarks/bench_refine.py``:

* the ROI grows with the click's depth (``roi_depth_factor``, up to
  ``max_roi_margin_mm``) unless the caller fixed ``roi_margin_mm``, so a
  click deep in a large missed part fixes it at once;
* an intensity gate (:meth:`BuiltinRefiner.foreground_like`): where the
  structure's intensities and its surroundings' (rings on either side of the
  boundary, beyond the error the click suggests) barely overlap (air vs.
  tissue), changes must fit them and may reach further;
* where intensity cannot tell (soft tissue against soft tissue), one click's
  change is capped (``max_change_fraction`` of the mask in the ROI and
  ``max_change_balls`` x the click's uncertain ball, the part nearest the
  click kept), which stops the add-a-leak / remove-too-much oscillation
  that made Dice drift down over many clicks;
* click zones, bands and gate rings shrink for small structures
  (``size_ref_mm``), and a small structure gets a small ROI
  (``roi_size_factor`` x its equivalent radius);
* earlier clicks of a session stay hard seeds (``Interaction.prior_*``);
* two grids: seeds are placed on an *analysis* grid (the ROI, coarsened to
  ``max_roi_voxels``), the seeded segmentation then runs on the block the
  unknown zone spans at the finest stride ``max_decision_voxels`` allows,
  with the mask's own fine labels around it (a lesion's edge is decided
  voxel by voxel even inside a large ROI);
* where intensity cannot gate, a plausibility check
  (:class:`~.intensity.IntensityModel`, ``plausible_ratio`` /
  ``plausible_remove_ratio``) still rules out additions the structure
  hardly has (fat next to a vessel) and removals its surroundings hardly
  have; such a change reaches further and is capped less
  (``plausible_band_reach``, ``plausible_change_balls``).

Boxes: with a text engine and prompt, the model is re-run inside the box
(``roi_ras``) and its mask replaces the old one there; otherwise an
existing mask is clipped to the box (to the box's rectangle on its slice
for a flat box), and an empty box gets its dominant structure segmented.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from ..engine.base import CancelToken, Engine
from ..volume import Volume
from . import algorithms
from .intensity import IntensityModel
from .geometry import Region, VoxelBox, merge_regions, roi_around
from .boxes import apply_box, dominant_structure
from .regions import (connected_to, fine_block,
                      nearest_part, regrid, to_coarse)


#: how far intensity checks a click's change (``BuiltinRefiner.intensity_limits``)
GATED, PLAUSIBLE = 2, 1


def ball_radius(volume_mm3: float) -> float:
    """Radius (mm) of the ball of ``volume_mm3``."""
    return (3.0 * volume_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)


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
    #: the ROI may grow beyond ``roi_margin_mm`` for deep clicks (``refine(roi_margin_mm=None)``)
    auto_roi: bool = False
    #: (K, 3) / (L, 3) int: earlier clicks of the same session, kept as hard seeds where they fall in the ROI
    prior_positive: np.ndarray | None = None
    prior_negative: np.ndarray | None = None


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
    ``backend``: a key of :data:`algorithms.BACKENDS`. The options added for
    issue 7 are described in the module docstring.
    """

    backend: str = field(default_factory=algorithms.default_backend)
    band_mm: float = 4.0
    min_radius_mm: float = 6.0
    max_radius_mm: float = 100.0
    seed_radius_mm: float = 2.0
    band_reach: float = 3.0
    negative_band_reach: float = 3.0
    band_depth: float = 2.0
    band_max_mm: float = 10.0
    negative_band_max_mm: float = 30.0
    smooth: bool = False
    max_roi_voxels: int = 160_000
    max_decision_voxels: int = 60_000
    min_background_fraction: float = 0.05
    roi_depth_factor: float = 8.0
    intensity_gate: bool = True
    gate_bins: int = 64
    gate_max_overlap: float = 0.3
    gated_band_max_mm: float = 25.0
    gated_band_reach: float = 10.0
    gate_ring_mm: float = 20.0
    size_ref_mm: float = 20.0
    min_size_scale: float = 0.25
    max_change_fraction: float = 0.5
    max_change_balls: float = 4.0
    max_roi_margin_mm: float = 150.0
    roi_size_factor: float = 4.0
    plausible_ratio: float = 0.3
    plausible_remove_ratio: float = 1.0
    plausible_band_reach: float = 6.0
    plausible_change_balls: float = 8.0
    min_roi_margin_mm: float = 15.0
    name: str = "builtin"

    def apply(self, volume: Volume, mask: np.ndarray, req: Interaction) -> tuple[np.ndarray, Region | None]:
        """Return ``(new_mask, touched_region)``; ``mask`` is not modified."""
        new = mask.copy()
        touched: Region | None = None
        for box in req.boxes:
            if req.cancel:
                req.cancel.check()
            touched = merge_regions(touched, apply_box(volume, new, box, req, self._segment))
        if len(req.positive) or len(req.negative):
            if req.cancel:
                req.cancel.check()
            touched = merge_regions(touched, self._apply_points(volume, new, req))
        return new, touched

    # -- clicks -------------------------------------------------------------------
    def _apply_points(self, volume: Volume, new: np.ndarray, req: Interaction) -> Region:
        pts = np.concatenate([req.positive, req.negative]).reshape(-1, 3)
        margin = req.roi_margin_mm
        roi = roi_around(volume, pts, margin)
        if req.auto_roi and self.roi_size_factor > 0:  # a small structure (a lesion) gets a small ROI
            r_eq = self.equivalent_radius(new[roi.slices], volume.spacing)
            small = max(self.min_roi_margin_mm, self.roi_size_factor * r_eq)
            if small < margin:
                margin = small
                roi = roi_around(volume, pts, margin)
        if req.auto_roi:  # a deep click (far inside a missed part or a leak) gets a larger ROI
            want = min(self.max_roi_margin_mm, self.roi_depth_factor * self.click_depth(volume, new, roi, req)
                       + self.min_radius_mm)
            if want > 1.1 * margin:
                margin = want
                roi = roi_around(volume, pts, margin)
        sl = roi.slices
        cur = new[sl]
        stride = self.stride_for(roi.shape, volume.spacing)
        image = np.asarray(to_coarse(volume.array[sl], stride), dtype=np.float32)
        mask_c = to_coarse(cur, stride)
        prob = None
        if req.probabilities is not None:
            prob = np.asarray(to_coarse(req.probabilities[sl], stride), dtype=np.float32)
        spacing = volume.spacing * stride
        pos = np.minimum(roi.local(req.positive) // stride, np.asarray(mask_c.shape) - 1)
        neg = np.minimum(roi.local(req.negative) // stride, np.asarray(mask_c.shape) - 1)
        radii: dict = {}
        d_out = ndimage.distance_transform_edt(~mask_c, sampling=spacing) if mask_c.any() else None
        d_in = ndimage.distance_transform_edt(mask_c, sampling=spacing) if (~mask_c).any() else None
        model = plain = None
        if self.intensity_gate and d_out is not None and d_in is not None:
            # the structure next to its own surroundings: rings on either side of the boundary,
            # beyond the error a click suggests (about twice its depth: a missed shell, a leak)
            w_out = 2.0 * float(d_out[tuple(pos.reshape(-1, 3).T)].max()) if len(pos) else 0.0
            w_in = 2.0 * float(d_in[tuple(neg.reshape(-1, 3).T)].max()) if len(neg) else 0.0
            ring = self.gate_ring_mm * self.size_scale(mask_c, spacing)
            inside = mask_c & (d_in > w_in) & (d_in <= w_in + ring)
            outside = ~mask_c & (d_out > w_out) & (d_out <= w_out + ring)
            if np.count_nonzero(inside) < 50:
                inside = mask_c
            if np.count_nonzero(outside) < 50:
                outside = ~mask_c
            model, plain = IntensityModel.learn_pair(image, inside, outside, pos.reshape(-1, 3), neg.reshape(-1, 3),
                                                     self.gate_bins)
        keep_add, keep_rem, gated = self.intensity_limits(model, plain, image, pos.reshape(-1, 3), neg.reshape(-1, 3))
        gate_add = gated[0] == GATED
        seeds = self.point_seeds(mask_c, pos.reshape(-1, 3), neg.reshape(-1, 3), spacing, prob,
                                 max_radius_mm=0.75 * margin,
                                 band_max_mm=self.gated_band_max_mm if gate_add else None, radii=radii,
                                 gated=gated, dists=(d_out, d_in))
        for prior, label in ((req.prior_positive, algorithms.FG), (req.prior_negative, algorithms.BG)):
            if prior is None or not len(prior):  # earlier clicks stay what the user said they are
                continue
            loc = roi.local(np.asarray(prior).reshape(-1, 3)) // stride
            ok = np.all((loc >= 0) & (loc < np.asarray(mask_c.shape)), axis=1)
            for p in loc[ok]:
                seeds[tuple(p)] = label
        if req.locked_background is not None:  # removed leaks stay background seeds
            lock_c = to_coarse(req.locked_background[sl], stride) & ~mask_c
            seeds[lock_c & (seeds != algorithms.FG)] = algorithms.BG
        # decide on the block the unknown zone spans, at the finest grid the voxel budget allows
        # (the analysis grid above may be coarse for a large ROI; a small structure's edits are not)
        block, stride_d, seeds_d = self.decision_grid(cur, seeds, mask_c, stride, volume.spacing)
        off = [b.start for b in block]
        cap_mm3 = self.max_change_fraction * float(np.count_nonzero(mask_c)) * float(np.prod(spacing))
        changed = self._decide(volume.array[sl][block], cur[block], seeds_d, stride_d, volume.spacing,
                               (roi.local(req.positive) - off, roi.local(req.negative) - off),
                               (keep_add, keep_rem), gated, radii, cap_mm3)
        if changed is not None:
            changed = Region(tuple(int(a + o) for a, o in zip(changed.start, off)),  # type: ignore[arg-type]
                             tuple(int(b + o) for b, o in zip(changed.stop, off)))
        for pts_, value in ((req.positive, True), (req.negative, False)):
            for p in roi.local(pts_):
                cur[tuple(p)] = value
                changed = merge_regions(changed, Region(tuple(int(v) for v in p), tuple(int(v) + 1 for v in p)))  # type: ignore[arg-type]
        assert changed is not None  # there is at least one click
        return Region(tuple(int(a + o) for a, o in zip(changed.start, roi.start)),  # type: ignore[arg-type]
                      tuple(int(b + o) for b, o in zip(changed.stop, roi.start)))

    def _decide(self, image: np.ndarray, cur: np.ndarray, seeds: np.ndarray, stride: np.ndarray,
                spacing: np.ndarray, clicks: tuple[np.ndarray, np.ndarray],
                keep: tuple[Callable | None, Callable | None], gated: tuple[int, int], radii: dict,
                cap_mm3: float) -> Region | None:
        """Segment ``seeds`` on the decision grid (``stride`` over the block
        ``image`` / ``cur``), keep the changes connected to the clicks that
        the intensity limits ``keep`` (add, remove) allow, capped unless
        ``gated``, and write them into ``cur`` (a view of the new mask).
        Returns the changed block (block coordinates) or ``None``."""
        img = np.asarray(to_coarse(image, stride), dtype=np.float32)
        mask = to_coarse(cur, stride)
        spacing = np.asarray(spacing, dtype=np.float64) * stride
        top = np.asarray(mask.shape) - 1
        pos, neg = (np.clip(np.asarray(c, np.int64).reshape(-1, 3) // stride, 0, top) for c in clicks)
        for pts, label in ((pos, algorithms.FG), (neg, algorithms.BG)):
            for p in pts:
                seeds[tuple(p)] = label
        fg = self._segment(img, seeds, spacing)
        gain, loss = fg & ~mask, mask & ~fg
        if keep[0] is not None:
            gain &= keep[0](img)
        if keep[1] is not None:
            loss &= keep[1](img)
        added = connected_to(gain, pos) if len(pos) else None
        removed = connected_to(loss, neg) if len(neg) else None
        if self.max_change_fraction > 0:  # no runaway edits: a click changes at most this share of the mask
            voxel = float(np.prod(spacing))
            cap = int(cap_mm3 / voxel)
            ball = lambda r, balls: int(balls * 4.0 / 3.0 * np.pi * r**3 / voxel)  # noqa: E731
            # (only where intensity gives no check on the change)
            if added is not None and gated[0] != GATED:
                balls = self.plausible_change_balls if gated[0] == PLAUSIBLE else self.max_change_balls
                added = nearest_part(added, pos, spacing, min(cap, ball(radii.get("pos", 0.0), balls)) if cap else 0)
            if removed is not None and gated[1] != GATED:
                balls = self.plausible_change_balls if gated[1] == PLAUSIBLE else self.max_change_balls
                removed = nearest_part(removed, neg, spacing, min(cap, ball(radii.get("neg", 0.0), balls)) if cap else 0)
        # write only the block the change spans (a large ROI is mostly unchanged)
        changed: Region | None = None
        for part, value in ((added, True), (removed, False)):
            if part is None or not part.any():
                continue
            fine_sl, fine = fine_block(part, stride, cur.shape)
            view = cur[fine_sl]  # cur is a view of the new mask
            if value:
                view |= fine
            else:
                view &= ~fine
            changed = merge_regions(changed, Region(tuple(x.start for x in fine_sl), tuple(x.stop for x in fine_sl)))  # type: ignore[arg-type]
        return changed

    def foreground_like(self, image: np.ndarray, mask: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                        outside: np.ndarray | None = None) -> np.ndarray | None:
        """Voxels whose intensity is more typical of the structure than of its
        surroundings, or ``None`` when intensity does not separate them.

        Two smoothed intensity histograms, each normalised: the structure's
        (``mask``, plus the positive clicks' 3x3x3 neighbourhoods weighted to
        a third of the mass) and the surroundings' (``outside``, default the
        rest of the ROI, plus the negative clicks' likewise); the refiner
        passes rings of ``gate_ring_mm`` on either side of the mask boundary. A voxel is
        foreground-like where the first density is at least the second. When
        the densities overlap by more than ``gate_max_overlap`` (soft tissue
        next to soft tissue) there is no gate (``None``).

        How the refiner uses it: a positive click may then only add
        foreground-like voxels and a negative click only remove the others;
        a click on an intensity the gate gives to the other side (a negative
        click on a leak of the same tissue) switches the gate off for that
        polarity. A gated change is trusted further: the boundary band is
        wider (``gated_band_max_mm``), reaches further along the boundary
        (``gated_band_reach``) and is not capped (``max_change_fraction``).
        """
        model = IntensityModel.learn(image, mask, ~mask if outside is None else outside, pos, neg, self.gate_bins)
        if model is None or model.overlap > self.gate_max_overlap:  # not separable by intensity
            return None
        return model.foreground_like(image)

    def intensity_limits(self, model: IntensityModel | None, plain: IntensityModel | None, image: np.ndarray,
                         pos: np.ndarray, neg: np.ndarray) -> tuple[Callable | None, Callable | None, tuple[int, int]]:
        """``(keep_add, keep_rem, (level_add, level_rem))`` from the intensity model;
        a level is :data:`GATED`, :data:`PLAUSIBLE` or 0 (no limit).

        Separable intensities gate a polarity unless its click sits on an
        intensity the model gives to the other side (then the user overrules
        it); otherwise the plausibility check (``plausible_ratio``) of the
        model learnt without the clicks (``plain``) limits it, again only
        where the clicks themselves pass that check (a click on a leak of
        the structure's own tissue is not limited).
        """
        if model is None or plain is None:
            return None, None, (0, 0)
        at = lambda pts: image[tuple(pts.T)]  # noqa: E731
        keep: list[Callable | None] = [None, None]
        gated = [0, 0]
        if model.overlap <= self.gate_max_overlap:
            if len(pos) and model.foreground_like(at(pos)).all():
                keep[0], gated[0] = model.foreground_like, GATED
            if len(neg) and not model.foreground_like(at(neg)).any():
                keep[1], gated[1] = (lambda img: ~model.foreground_like(img)), GATED
        r = self.plausible_ratio
        if r > 0 and keep[0] is None and len(pos) and plain.can_add(at(pos), r).all():
            keep[0], gated[0] = (lambda img: plain.can_add(img, r)), PLAUSIBLE
        r = self.plausible_remove_ratio
        if r > 0 and keep[1] is None and len(neg) and plain.can_remove(at(neg), r).all():
            keep[1], gated[1] = (lambda img: plain.can_remove(img, r)), PLAUSIBLE
        return keep[0], keep[1], (gated[0], gated[1])

    def decision_grid(self, cur: np.ndarray, seeds: np.ndarray, mask_c: np.ndarray, stride: np.ndarray,
                      spacing: np.ndarray) -> tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray]:
        """Where and at which grid the seeded segmentation decides.

        ``seeds`` were placed on the analysis grid (``stride`` over the ROI
        ``cur``). Returns ``(block, stride_d, seeds_d)``: the ROI block the
        unknown zone spans (plus one analysis voxel), the finest stride at
        which that block fits ``max_decision_voxels`` (never coarser than ``stride``), and the seeds there: the
        fine mask's own labels outside the unknown zone (so its detail is
        kept), unknown inside, and the hard seeds that overrule the mask.
        """
        unknown = seeds == 0
        shape_c, shape = np.asarray(seeds.shape), np.asarray(cur.shape)
        if unknown.any():
            idx = np.argwhere(unknown)
            lo_c, hi_c = np.maximum(idx.min(0) - 1, 0), np.minimum(idx.max(0) + 2, shape_c)
        else:
            lo_c, hi_c = np.zeros(3, np.int64), shape_c
        lo = lo_c * stride
        hi = np.where(hi_c == shape_c, shape, np.minimum(hi_c * stride, shape))
        block = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        block_shape = hi - lo
        stride_d = np.minimum(self.stride_for(block_shape, spacing, self.max_decision_voxels), stride)
        sub = tuple(slice(int(a), int(b)) for a, b in zip(lo_c, hi_c))
        mask_label = np.where(mask_c[sub], algorithms.FG, algorithms.BG)
        override = (seeds[sub] != 0) & (seeds[sub] != mask_label)
        up = lambda a: regrid(a, stride, stride_d, block_shape)  # noqa: E731
        seeds_d = np.where(to_coarse(cur[block], stride_d), algorithms.FG, algorithms.BG).astype(np.uint8)
        seeds_d[up(unknown[sub])] = 0
        over_d = up(override)
        seeds_d[over_d] = up(np.where(override, seeds[sub], 0).astype(np.uint8))[over_d]
        return block, stride_d, seeds_d

    def equivalent_radius(self, mask: np.ndarray, spacing: np.ndarray) -> float:
        """Radius (mm) of the ball with the volume of ``mask`` (counted on a grid of at most 40k voxels)."""
        stride = self.stride_for(mask.shape, spacing, 40_000)
        n = float(np.count_nonzero(to_coarse(mask, stride)))
        return ball_radius(n * float(np.prod(np.asarray(spacing) * stride)))

    def size_scale(self, mask: np.ndarray, spacing: np.ndarray) -> float:
        """Click zones, bands and gate rings shrink by this factor for a small structure."""
        if self.size_ref_mm <= 0:
            return 1.0
        r_eq = ball_radius(float(np.count_nonzero(mask)) * float(np.prod(spacing)))
        return float(np.clip(r_eq / self.size_ref_mm, self.min_size_scale, 1.0))

    def click_depth(self, volume: Volume, mask: np.ndarray, roi: Region, req: Interaction) -> float:
        """Deepest click's distance (mm) to the mask boundary, on a coarse grid of ``roi``."""
        stride = np.maximum(self.stride_for(roi.shape, volume.spacing, 40_000), 1)
        m = to_coarse(mask[roi.slices], stride)
        spacing = volume.spacing * stride
        depth = 0.0
        for pts, inside in ((req.positive, False), (req.negative, True)):
            if not len(pts):
                continue
            region = m if inside else ~m
            if not region.any():
                continue
            if not (~region).any():  # no boundary in the ROI: deeper than the ROI
                return float(np.max(np.asarray(roi.shape) * volume.spacing))
            dt = ndimage.distance_transform_edt(region, sampling=spacing)
            loc = np.minimum(roi.local(pts) // stride, np.asarray(m.shape) - 1)
            depth = max(depth, float(dt[tuple(loc.T)].max()))
        return depth

    def stride_for(self, shape: Sequence[int], spacing: np.ndarray, max_voxels: int | None = None) -> np.ndarray:
        """Integer step per axis so the ROI has at most ``max_roi_voxels`` voxels."""
        limit = self.max_roi_voxels if max_voxels is None else max_voxels
        n = float(np.prod(shape))
        if n <= limit:
            return np.ones(3, dtype=np.int64)
        extent = np.asarray(shape) * np.asarray(spacing)
        target = (float(np.prod(extent)) / limit) ** (1.0 / 3.0)
        stride = np.maximum(1, np.round(target / np.asarray(spacing))).astype(np.int64)
        while np.prod(np.ceil(np.asarray(shape) / stride)) > limit:
            stride[int(np.argmin(stride * np.asarray(spacing)))] += 1
        return stride

    def point_seeds(
        self, mask: np.ndarray, pos: np.ndarray, neg: np.ndarray, spacing: np.ndarray,
        prob: np.ndarray | None = None, max_radius_mm: float | None = None, band_max_mm: float | None = None,
        radii: dict | None = None, gated: tuple[int, int] = (0, 0),
        dists: tuple[np.ndarray | None, np.ndarray | None] | None = None,
    ) -> np.ndarray:
        """Seed labels (0 unknown, FG, BG) for the ROI around the clicks.

        When fewer than ``min_background_fraction`` of the ROI voxels would
        be background seeds, the ROI faces outside the mask become
        background too, so a click far from any mask still has competition.
        """
        r_max = self.max_radius_mm if max_radius_mm is None else min(self.max_radius_mm, max_radius_mm)
        spacing = np.asarray(spacing, dtype=np.float64)
        # a small structure (a lesion) gets proportionally smaller click zones and bands
        scale = self.size_scale(mask, spacing)
        min_radius, band_mm = self.min_radius_mm * scale, self.band_mm * scale
        if dists is not None:  # already computed by the caller
            d_out, d_in = dists
        else:
            d_out = ndimage.distance_transform_edt(~mask, sampling=spacing) if mask.any() else None
            d_in = ndimage.distance_transform_edt(mask, sampling=spacing) if (~mask).any() else None
        grid = np.ogrid[tuple(slice(0, n) for n in mask.shape)]
        unknown = np.zeros(mask.shape, dtype=bool)
        # where intensity checks the change (``gated``: positive, negative), the band reaches further
        reach = {GATED: self.gated_band_reach, PLAUSIBLE: self.plausible_band_reach}.get(gated[0], self.band_reach)
        neg_reach = {GATED: self.gated_band_reach, PLAUSIBLE: self.plausible_band_reach}.get(
            gated[1], self.negative_band_reach)
        near = np.zeros(mask.shape, dtype=bool) if np.isfinite(reach) else np.ones(mask.shape, bool)
        hard_fg = np.zeros(mask.shape, dtype=bool)
        hard_bg = np.zeros(mask.shape, dtype=bool)
        depths = {True: 0.0, False: 0.0}  # deepest positive / negative click
        keep_core = np.zeros(mask.shape, dtype=bool)
        near_neg = np.zeros(mask.shape, dtype=bool)
        for pts, dist, hard in ((pos, d_out, hard_fg), (neg, d_in, hard_bg)):
            for p in pts:
                d = 0.0 if dist is None else float(dist[tuple(p)])
                depths[hard is hard_fg] = max(depths[hard is hard_fg], d)
                radius = float(np.clip(min_radius + 2.0 * d, min_radius, max(r_max, min_radius)))
                if radii is not None:  # the click's uncertain-ball radius, per polarity (largest)
                    key = "pos" if hard is hard_fg else "neg"
                    radii[key] = max(radii.get(key, 0.0), radius)
                r2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, p, spacing))
                unknown |= r2 <= radius**2
                if hard is hard_fg and np.isfinite(reach):
                    near |= r2 <= (reach * radius) ** 2
                if hard is hard_bg:
                    near_neg |= r2 <= (neg_reach * radius) ** 2
                hard |= r2 <= max(self.seed_radius_mm, float(spacing.min())) ** 2
                if hard is hard_bg:  # the leak itself: about d around the click
                    keep_core |= r2 <= (min_radius + d) ** 2
        depth = max(depths.values())
        band_max = self.band_max_mm if band_max_mm is None else band_max_mm
        band_width = float(np.clip(self.band_depth * depth, band_mm, band_max))
        neg_width = float(np.clip(self.band_depth * depths[False], band_mm, self.negative_band_max_mm))
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

    def _prep(self, image: np.ndarray) -> np.ndarray:
        return ndimage.median_filter(image, size=3) if self.smooth else image

    def _segment(self, image: np.ndarray, seeds: np.ndarray, spacing: np.ndarray) -> np.ndarray:
        """The configured back-end on ``image`` (smoothed if ``smooth``)."""
        return algorithms.BACKENDS[self.backend](self._prep(image), seeds, spacing)

    def dominant_structure(self, image: np.ndarray, inside: np.ndarray, spacing: np.ndarray) -> np.ndarray:
        """Segment the structure at the centre of a box (see :func:`.boxes.dominant_structure`)."""
        return dominant_structure(image, inside, spacing, self._segment)
