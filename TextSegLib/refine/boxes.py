"""Boxes for the built-in refiner.

With a text engine and a prompt, the model is re-run inside the box
(``roi_ras``) and its mask replaces the old one there; otherwise an existing
mask is clipped to the box (to the box's rectangle on its slice for a flat
box), and an empty box gets its dominant structure segmented.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
from scipy import ndimage

from ..errors import ModelError
from ..volume import Volume
from . import algorithms
from .geometry import Region, VoxelBox
from .regions import box_mask, box_ras, changed_region_of

if TYPE_CHECKING:
    from .builtin import Interaction

#: ``segment(image, seeds, spacing) -> bool foreground``: a seeded back-end
Segmenter = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def apply_box(volume: Volume, new: np.ndarray, box: VoxelBox, req: "Interaction", segment: Segmenter) -> Region:
    """Apply one box to ``new`` in place (see the module docstring); returns the touched block."""
    sl = box.region.slices
    inside = box.inside
    if req.text_engine is not None:
        if not req.prompt:
            raise ModelError(
                "A text engine was given for the box but no prompt.",
                "Pass prompt='liver' or leave the engine out.",
            )
        lo, hi = box_ras(volume, box)
        res = req.text_engine.segment(volume, [req.prompt], roi_ras=(lo, hi), cancel=req.cancel)
        model = np.asarray(res.masks[req.prompt], dtype=bool)
        block = new[sl]
        block[inside] = model[sl][inside]
        return box.region
    if np.any(new[sl] & inside):
        if box.flat_axis is None:
            touched = changed_region_of(new, ~box_mask(new.shape, box))
            new[...] = new & box_mask(new.shape, box)
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
    block |= dominant_structure(np.asarray(volume.array[sl], dtype=np.float32), inside, volume.spacing, segment)
    return box.region

def dominant_structure(image: np.ndarray, inside: np.ndarray, spacing: np.ndarray, segment: Segmenter) -> np.ndarray:
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
    fg = segment(image, seeds, spacing)
    fg &= inside
    lab, n = ndimage.label(fg)
    if n > 1:
        sizes = np.bincount(lab.ravel())[1:]
        fg = lab == (1 + int(np.argmax(sizes)))
    return fg
