"""``RefineSession``: the clicks and boxes of one segment, with undo/redo.

Each :meth:`RefineSession.add` refines the session's current mask with new
clicks/boxes (via :func:`~TextSegLib.refine.api.refine`). What negative
clicks removed is remembered as *locked background*: later calls may not
add it back (a removed leak cannot grow back on the next positive click),
unless a later positive click lands inside it, which unlocks that part.
Undo/redo steps store only the changed block of the mask and the lock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from scipy import ndimage

from ..engine.base import CancelToken
from ..volume import Volume
from .api import Box, Point, RefineResult, _check_mask, refine
from .builtin import BuiltinRefiner
from .geometry import Region, check_space, merge_regions, points_to_ijk, roi_around

#: how far a removed leak may reach when a positive click unlocks it (the largest ROI a click can have)
_UNLOCK_MARGIN_MM = BuiltinRefiner.max_roi_margin_mm


@dataclass
class _Step:
    """One interaction: the block it changed, before and after, and its clicks."""

    region: Region | None
    mask_before: np.ndarray | None
    mask_after: np.ndarray | None
    lock_before: np.ndarray | None
    lock_after: np.ndarray | None
    positive: np.ndarray
    negative: np.ndarray
    n_boxes: int
    info: dict = field(default_factory=dict)


class RefineSession:
    """Accumulate the interactions on one mask (see the module docstring).

    ``mask`` is copied; the caller's array is never modified. ``engine``,
    ``prompt`` and ``roi_margin_mm`` are passed to every :func:`refine` call
    (``None``: the refiner sizes the ROI per click); the clicks still in effect
    are passed too, as hard seeds (``prior_positive`` / ``prior_negative``).
    ``max_steps`` bounds the undo stack. Interactions that change nothing
    (neither the mask nor the lock) are not recorded.
    """

    def __init__(
        self,
        volume: Volume,
        mask: np.ndarray,
        probabilities: np.ndarray | None = None,
        *,
        engine=None,
        prompt: str | None = None,
        roi_margin_mm: float | None = None,
        max_steps: int = 100,
    ) -> None:
        self.volume = volume
        self._mask = np.array(_check_mask(volume, mask), dtype=bool, copy=True)
        self._locked = np.zeros(volume.shape, dtype=bool)
        self._any_locked = False  # avoids a full-volume scan per click
        self._lock_box: Region | None = None  # a block holding every locked voxel (bounds the unlock search)
        self.probabilities = probabilities
        self.engine = engine
        self.prompt = prompt
        self.roi_margin_mm = roi_margin_mm
        self.max_steps = max_steps
        self._done: list[_Step] = []
        self._undone: list[_Step] = []

    # -- state ----------------------------------------------------------------
    @property
    def mask(self) -> np.ndarray:
        """The current mask (read-only view; copy it to edit)."""
        view = self._mask.view()
        view.flags.writeable = False
        return view

    @property
    def locked_background(self) -> np.ndarray:
        """Voxels negative clicks removed, that later clicks may not add (read-only view)."""
        view = self._locked.view()
        view.flags.writeable = False
        return view

    @property
    def positive_points(self) -> np.ndarray:
        """``(N, 3)`` voxel indices of the positive clicks still in effect."""
        return _stack([s.positive for s in self._done])

    @property
    def negative_points(self) -> np.ndarray:
        """``(M, 3)`` voxel indices of the negative clicks still in effect."""
        return _stack([s.negative for s in self._done])

    @property
    def n_steps(self) -> int:
        return len(self._done)

    def can_undo(self) -> bool:
        return bool(self._done)

    def can_redo(self) -> bool:
        return bool(self._undone)

    # -- interactions ------------------------------------------------------------
    def add(
        self,
        positive_points: Iterable[Point] = (),
        negative_points: Iterable[Point] = (),
        boxes: Iterable[Box] = (),
        *,
        points_space: str = "ras",
        cancel: CancelToken | None = None,
    ) -> RefineResult:
        """Apply new clicks/boxes to the current mask; an undoable step.

        ``result.info['recorded']`` tells whether the step was recorded for
        undo (it changed the mask or the locked background).
        """
        space = check_space(points_space)
        pos = points_to_ijk(self.volume, positive_points, space, "positive point")
        neg = points_to_ijk(self.volume, negative_points, space, "negative point")
        boxes = list(boxes)
        lock_changes: list[tuple[Region, np.ndarray]] = []  # (block, lock content before)
        unlock = self._unlock_mask(pos)  # the user clicked inside a removed part: it may come back
        if unlock is not None:
            self._set_lock(lock_changes, unlock[0], self._locked[unlock[0].slices] & ~unlock[1])
        before = self._mask
        prior_pos, prior_neg = self.positive_points, self.negative_points
        if boxes and space != "ijk":
            to_ras = lambda a: self.volume.ijk_to_ras_points(a.astype(float)) if len(a) else a  # noqa: E731
            pos_in, neg_in, prior_pos, prior_neg = to_ras(pos), to_ras(neg), to_ras(prior_pos), to_ras(prior_neg)
        else:
            pos_in, neg_in = pos, neg
        try:
            res = refine(  # boxes keep their space (an RAS box is not a box of IJK corners on oblique grids)
                self.volume, before, pos_in, neg_in, boxes, self.probabilities,
                points_space="ijk" if space == "ijk" or not boxes else space,
                engine=self.engine, prompt=self.prompt, roi_margin_mm=self.roi_margin_mm, cancel=cancel,
                locked_background=self._locked if self._any_locked else None,
                prior_positive=prior_pos, prior_negative=prior_neg,
            )
        except BaseException:  # cancelled or failed: the session stays as it was
            for r, old in reversed(lock_changes):
                self._locked[r.slices] = old
            raise
        region = None if res.changed_box is None else Region(*res.changed_box)
        if region is not None and len(neg):
            sl = region.slices
            self._set_lock(lock_changes, region, self._locked[sl] | (before[sl] & ~res.mask[sl]))
        self._any_locked = self._any_locked or len(neg) > 0
        for p in neg:  # the clicked voxel itself stays background
            r = Region(tuple(int(v) for v in p), tuple(int(v) + 1 for v in p))  # type: ignore[arg-type]
            self._set_lock(lock_changes, r, np.ones((1, 1, 1), bool))
        whole = region
        for r, _ in lock_changes:
            whole = merge_regions(whole, r)
        step = _Step(whole, None, None, None, None, pos, neg, len(boxes), dict(res.info))
        if whole is not None:
            sl = whole.slices
            step.mask_before = before[sl].copy()
            step.lock_after = self._locked[sl].copy()
            step.lock_before = step.lock_after.copy()
            for r, old in reversed(lock_changes):
                step.lock_before[tuple(slice(a - o, b - o) for a, b, o in zip(r.start, r.stop, whole.start))] = old
            self._mask = res.mask
            self._mask.flags.writeable = False  # the session's state: copy it to edit
            step.mask_after = self._mask[sl].copy()
            self._push(step)  # a click that changed nothing is not an undo step
        res.info["recorded"] = whole is not None
        return res

    def undo(self) -> Region | None:
        """Revert the last interaction; returns the block that changed (None: nothing to undo)."""
        if not self._done:
            return None
        step = self._done.pop()
        self._undone.append(step)
        self._restore(step, step.mask_before, step.lock_before)
        return step.region

    def redo(self) -> Region | None:
        """Re-apply the last undone interaction; returns the block that changed."""
        if not self._undone:
            return None
        step = self._undone.pop()
        self._done.append(step)
        self._restore(step, step.mask_after, step.lock_after)
        return step.region

    def pending(self, undo: bool = True) -> tuple[Region | None, np.ndarray | None]:
        """The block the next undo (or redo) would rewrite, and the content that block must
        hold now for that to be safe: callers compare it with the live segment, so an undo
        never overwrites an edit made elsewhere after this interaction."""
        stack = self._done if undo else self._undone
        if not stack:
            return None, None
        step = stack[-1]
        return step.region, (step.mask_after if undo else step.mask_before)

    # -- helpers ------------------------------------------------------------------
    def _restore(self, step: _Step, mask_block: np.ndarray | None, lock_block: np.ndarray | None) -> None:
        if step.region is None or mask_block is None or lock_block is None:
            return
        self._mask = self._mask.copy()  # results handed out earlier keep their content
        self._mask[step.region.slices] = mask_block
        self._mask.flags.writeable = False
        self._locked[step.region.slices] = lock_block
        self._lock_box = merge_regions(self._lock_box, step.region)
        self._any_locked = self._any_locked or bool(lock_block.any())

    def _push(self, step: _Step) -> None:
        self._done.append(step)
        self._undone.clear()
        del self._done[: -self.max_steps]

    def _set_lock(self, changes: list, region: Region, block: np.ndarray) -> None:
        changes.append((region, self._locked[region.slices].copy()))
        self._locked[region.slices] = block
        self._lock_box = merge_regions(self._lock_box, region)

    def _unlock_mask(self, pos: np.ndarray) -> tuple[Region, np.ndarray] | None:
        """The locked components that contain a positive click: ``(block, bool mask in it)``."""
        if not self._any_locked:
            return None
        hits = [tuple(int(v) for v in p) for p in pos if self._locked[tuple(p)]]
        if not hits:
            return None
        margin = self.roi_margin_mm if self.roi_margin_mm is not None else _UNLOCK_MARGIN_MM
        roi = roi_around(self.volume, np.asarray(hits), margin)  # local: bounded cost
        if self._lock_box is not None:  # no locked voxel lies outside the lock box
            roi = Region(tuple(max(a, b) for a, b in zip(roi.start, self._lock_box.start)),  # type: ignore[arg-type]
                         tuple(min(a, b) for a, b in zip(roi.stop, self._lock_box.stop)))  # type: ignore[arg-type]
        lab, _ = ndimage.label(self._locked[roi.slices], structure=np.ones((3, 3, 3), bool))
        keep = np.isin(lab, [int(lab[tuple(h)]) for h in roi.local(np.asarray(hits))])
        idx = np.argwhere(keep)
        lo, hi = idx.min(0), idx.max(0) + 1
        local = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        region = Region(tuple(int(v) for v in lo + roi.start), tuple(int(v) for v in hi + roi.start))  # type: ignore[arg-type]
        return region, keep[local]


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    arrays = [np.asarray(a).reshape(-1, 3) for a in arrays if len(a)]
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros((0, 3), np.int64)


def _points_region(pts: np.ndarray) -> Region | None:
    if not len(pts):
        return None
    p = np.asarray(pts).reshape(-1, 3)
    return Region(tuple(int(v) for v in p.min(0)), tuple(int(v) + 1 for v in p.max(0)))  # type: ignore[arg-type]
