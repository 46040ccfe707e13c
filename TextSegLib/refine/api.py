"""``refine()``: edit a mask with positive/negative clicks and boxes."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..engine.base import CancelToken, Engine
from ..volume import Volume
from .builtin import BuiltinRefiner, Interaction
from .geometry import (
    Region,
    RefineInputError,
    box_to_voxels,
    changed_block,
    check_space,
    points_to_ijk,
)

Point = Sequence[float]
DEFAULT_ROI_MARGIN_MM = 60.0
Box = Sequence[Sequence[float]] | Sequence[float]


@runtime_checkable
class Refiner(Protocol):
    """An interactive engine: the built-in one or an adapter (nnInteractive)."""

    name: str

    def apply(self, volume: Volume, mask: np.ndarray, req: Interaction) -> tuple[np.ndarray, Region | None]:
        """Return a new mask and the block it may differ in (``None``: anywhere)."""
        ...


@dataclass
class RefineResult:
    """A new mask plus where it changed.

    ``changed_box`` is ``(start, stop)`` voxel indices (``stop`` exclusive)
    of the voxels that differ from the input mask, or ``None`` if nothing
    changed; ``changed_block()`` is the new mask cut to that block.
    """

    mask: np.ndarray
    changed_box: tuple[tuple[int, int, int], tuple[int, int, int]] | None
    info: dict = field(default_factory=dict)

    @property
    def changed_slices(self) -> tuple[slice, slice, slice] | None:
        if self.changed_box is None:
            return None
        return tuple(slice(a, b) for a, b in zip(*self.changed_box))  # type: ignore[return-value]

    def changed_block(self) -> np.ndarray | None:
        sl = self.changed_slices
        return None if sl is None else self.mask[sl].copy()


def _check_mask(volume: Volume, mask: np.ndarray, name: str = "mask") -> np.ndarray:
    if not isinstance(mask, np.ndarray):
        raise RefineInputError(f"{name} is a {type(mask).__name__}, not a numpy array.", "Pass a 3D numpy array.")
    if mask.shape != volume.shape:
        raise RefineInputError(
            f"{name} shape {mask.shape} does not match the image shape {volume.shape}.",
            "Resample the mask onto the image grid (same size, spacing and orientation) first.",
        )
    if mask.dtype == bool:
        return mask  # refiners never write into their input
    if mask.dtype.kind not in "biuf":
        raise RefineInputError(f"{name} has voxel type {mask.dtype}; expected bool or numbers.")
    lo, hi = mask.min(), mask.max()
    if lo < 0 or hi > 1 or (mask.dtype.kind == "f" and not np.all(np.isfinite([lo, hi]))):
        raise RefineInputError(
            f"{name} has values from {lo} to {hi}; a binary mask (0/1) is expected.",
            "Select one label first (e.g. labelmap == 5), or pass a bool array.",
        )
    return mask != 0


def _check_probabilities(volume: Volume, prob: np.ndarray | None) -> np.ndarray | None:
    if prob is None:
        return None
    if not isinstance(prob, np.ndarray) or prob.shape != volume.shape:
        shape = getattr(prob, "shape", type(prob).__name__)
        raise RefineInputError(
            f"probabilities shape {shape} does not match the image shape {volume.shape}.",
            "Pass the engine's probability map for this image, or None.",
        )
    lo, hi = float(np.min(prob)), float(np.max(prob))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
        raise RefineInputError(
            f"probabilities range from {lo} to {hi}; values in [0, 1] are expected.",
            "Pass probabilities, not logits (apply a sigmoid first).",
        )
    return prob


def _normalise_boxes(boxes: Iterable[Box]) -> list[np.ndarray]:
    out = []
    for n, box in enumerate(boxes):
        arr = np.asarray(box, dtype=np.float64) if not isinstance(box, np.ndarray) else box.astype(np.float64)
        if arr.size != 6:
            raise RefineInputError(
                f"box #{n + 1} has {arr.size} numbers; a box needs 6 (two opposite corners).",
                "Give a box as (x0, y0, z0, x1, y1, z1) or ((x0, y0, z0), (x1, y1, z1)).",
            )
        out.append(arr.reshape(2, 3))
    return out


def refine(
    volume: Volume,
    mask: np.ndarray,
    positive_points: Iterable[Point] = (),
    negative_points: Iterable[Point] = (),
    boxes: Iterable[Box] = (),
    probabilities: np.ndarray | None = None,
    *,
    points_space: str = "ras",
    engine: Engine | Refiner | str | None = None,
    prompt: str | None = None,
    roi_margin_mm: float | None = None,
    cancel: CancelToken | None = None,
    locked_background: np.ndarray | None = None,
    prior_positive: Iterable[Point] = (),
    prior_negative: Iterable[Point] = (),
) -> RefineResult:
    """Refine a binary mask with clicks and boxes; returns a NEW mask.

    Points and box corners are RAS millimetres (``points_space='ras'``) or
    voxel indices (``'ijk'``). ``engine`` is ``None``/``"builtin"`` (the
    built-in GrowCut refiner), a :class:`Refiner` (e.g.
    :class:`~TextSegLib.refine.nninteractive.NNInteractiveRefiner`), or a
    text :class:`~TextSegLib.engine.base.Engine` used with ``prompt`` to
    re-run the model inside each box. Click work is local to a block of
    ``roi_margin_mm`` around the clicks; ``None`` (default) starts at
    :data:`DEFAULT_ROI_MARGIN_MM` and lets the built-in refiner shrink the block
    for a small structure (``BuiltinRefiner.roi_size_factor``) and grow it
    for a click deep inside a missed part or a leak (up to
    ``BuiltinRefiner.max_roi_margin_mm``); a number is a fixed bound.
    ``prior_positive`` / ``prior_negative``: earlier clicks (same space as the
    points) that stay hard seeds of their label. ``locked_background`` (bool, image
    shape) marks voxels that must not be added (leaks removed by earlier
    negative clicks; see :class:`~TextSegLib.refine.session.RefineSession`).
    Neither ``mask``, ``probabilities`` nor ``volume`` are modified.
    """
    t0 = time.perf_counter()
    if not isinstance(volume, Volume):
        raise RefineInputError(f"volume is a {type(volume).__name__}, not a TextSeg Volume.")
    space = check_space(points_space)
    auto_roi = roi_margin_mm is None
    if auto_roi:
        roi_margin_mm = DEFAULT_ROI_MARGIN_MM
    if not np.isfinite(roi_margin_mm) or roi_margin_mm <= 0:
        raise RefineInputError(f"roi_margin_mm={roi_margin_mm} must be a positive number of millimetres.")
    current = _check_mask(volume, mask)
    prob = _check_probabilities(volume, probabilities)
    if locked_background is not None:
        if not isinstance(locked_background, np.ndarray) or locked_background.shape != volume.shape:
            raise RefineInputError(
                f"locked_background shape {getattr(locked_background, 'shape', None)} does not match the image shape {volume.shape}.",
                "Pass a bool array on the image grid, or None.",
            )
        locked_background = locked_background.astype(bool, copy=False)
    pos = points_to_ijk(volume, positive_points, space, "positive point")
    neg = points_to_ijk(volume, negative_points, space, "negative point")
    vboxes = [box_to_voxels(volume, b, space, n) for n, b in enumerate(_normalise_boxes(boxes))]
    if not len(pos) and not len(neg) and not vboxes:
        raise RefineInputError("No click or box was given.", "Add a positive or negative point, or a box.")

    text_engine: Engine | None = None
    refiner: Refiner
    if engine is None or engine == "builtin":
        refiner = BuiltinRefiner()
    elif isinstance(engine, str):
        refiner = make_refiner(engine)
    elif isinstance(engine, Engine):
        text_engine, refiner = engine, BuiltinRefiner()
    elif isinstance(engine, Refiner):
        refiner = engine
    else:
        raise RefineInputError(
            f"engine {engine!r} is neither a text Engine nor a Refiner.",
            "Pass None for the built-in refiner.",
        )
    req = Interaction(pos, neg, vboxes, prob, float(roi_margin_mm), text_engine, prompt, cancel, locked_background,
                      auto_roi, points_to_ijk(volume, prior_positive, space, "earlier positive point"),
                      points_to_ijk(volume, prior_negative, space, "earlier negative point"))
    new, touched = refiner.apply(volume, current, req)
    if locked_background is not None:  # any refiner: locked voxels may not be added
        sl = (slice(None),) * 3 if touched is None else touched.slices
        new[sl] &= ~(locked_background[sl] & ~current[sl])
    if touched is None:
        changed = changed_block(mask != 0, new)
    else:
        local = changed_block(np.asarray(mask[touched.slices]) != 0, new[touched.slices])
        changed = None if local is None else (
            tuple(int(a + s) for a, s in zip(local[0], touched.start)),
            tuple(int(b + s) for b, s in zip(local[1], touched.start)),
        )
    info = {
        "engine": refiner.name,
        "backend": getattr(refiner, "backend", None),
        "roi": None if touched is None else (touched.start, touched.stop),
        "seconds": time.perf_counter() - t0,
        "n_positive": len(pos),
        "n_negative": len(neg),
        "n_boxes": len(vboxes),
    }
    return RefineResult(new, changed, info)


def make_refiner(name: str) -> Refiner:
    """A refiner by name: ``builtin`` or ``nninteractive``."""
    key = name.strip().lower()
    if key == "builtin":
        return BuiltinRefiner()
    if key == "nninteractive":
        from .nninteractive import NNInteractiveRefiner

        return NNInteractiveRefiner()
    raise RefineInputError(f"Unknown refine engine {name!r}.", "Use 'builtin' or 'nninteractive'.")
