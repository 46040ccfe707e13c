"""Point/box refinement of a segment on MRML, Qt-free (``TextSegLib.refine``).

Clicks live in two markups point lists (positive: green, negative: red) and
boxes in one ROI node, created or found by :func:`prompt_node`. A
:class:`SegmentRefinement` keeps one :class:`~TextSegLib.refine.RefineSession`
per segment, so removed leaks stay removed; each click writes only the
changed block into the segment's labelmap and pushes an undo/redo action to
the module's :class:`~.history.SegmentationHistory`. Live mode refines on
every placed point (an observer on the point lists).

Transforms: markups positions are read in world RAS; a linear parent
transform of the volume is undone so the points land on its voxels. The
segmentation must sit under the same transform as the volume (else a
:class:`GeometryError`); non-linear transforms must be hardened first.
ROI boxes are used as their axis-aligned world bounding box.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from TextSegLib.errors import GeometryError, InputFileError, TextSegError

from . import mrml_io
from .history import HistoryAction
from .mrml_io import TAG_DIGEST

ROLE_ATTRIBUTE = "TextSeg.RefineRole"
#: role -> (MRML class, RGB colour)
ROLES: dict[str, tuple[str, tuple[float, float, float]]] = {
    "positive": ("vtkMRMLMarkupsFiducialNode", (0.1, 0.8, 0.2)),
    "negative": ("vtkMRMLMarkupsFiducialNode", (0.9, 0.15, 0.1)),
    "box": ("vtkMRMLMarkupsROINode", (0.95, 0.8, 0.1)),
}


def prompt_node(scene: Any, role: str, create: bool = True) -> Any:
    """The scene's 'positive' / 'negative' point list or 'box' ROI for refinement (made if missing)."""
    if role not in ROLES:
        raise InputFileError(f"Unknown refinement input {role!r}.", f"Use one of {', '.join(ROLES)}.")
    cls, rgb = ROLES[role]
    for node in mrml_io.nodes_by_class(scene, cls):
        if node.GetAttribute(ROLE_ATTRIBUTE) == role:
            return node
    if not create:
        return None
    node = scene.AddNewNodeByClass(cls, f"TextSeg {role}")
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        display.SetSelectedColor(*rgb)
        display.SetColor(*rgb)
    return node


def markup_points_ras(markups_node: Any, start: int = 0) -> list[tuple[float, float, float]]:
    """World RAS positions of a markups node's defined control points from ``start`` ([] for None)."""
    if markups_node is None:
        return []
    out = []
    for i in range(start, markups_node.GetNumberOfControlPoints()):
        if hasattr(markups_node, "GetNthControlPointPositionStatus") and \
                markups_node.GetNthControlPointPositionStatus(i) != markups_node.PositionDefined:
            continue  # a point being placed (preview) or skipped
        p = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(i, p)
        out.append(tuple(p))
    return out


def roi_box_ras(roi_node: Any) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """An ROI node as one (min corner, max corner) world RAS box ([] for None or an unplaced ROI)."""
    if roi_node is None or roi_node.GetNumberOfDefinedControlPoints() == 0:
        return []
    b = [0.0] * 6
    roi_node.GetRASBounds(b)
    if b[1] < b[0]:
        return []
    return [((b[0], b[2], b[4]), (b[1], b[3], b[5]))]


def world_to_node_ras(node: Any, points: Sequence[Sequence[float]]) -> np.ndarray:
    """World RAS points in ``node``'s local RAS (its linear parent transform undone)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    transform = node.GetParentTransformNode()
    if transform is None or not len(pts):
        return pts
    if not transform.IsTransformToWorldLinear():
        raise GeometryError(f"{node.GetName()} is under a non-linear transform.", "Harden the transform first.")
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(m)
    inv = np.linalg.inv(mrml_io.matrix_to_numpy(m))
    return pts @ inv[:3, :3].T + inv[:3, 3]


def _box_to_node_ras(node: Any, box: Any) -> np.ndarray:
    """A world-RAS box (two corners) as the bounding box of its 8 corners in ``node``'s RAS."""
    c = np.reshape(np.asarray(box, dtype=np.float64), (2, 3))
    corners = np.array([[c[a, 0], c[b, 1], c[d, 2]] for a in (0, 1) for b in (0, 1) for d in (0, 1)])
    local = world_to_node_ras(node, corners)
    return np.stack([local.min(0), local.max(0)])


def write_block(segmentations_logic: Any, segmentation_node: Any, segment_id: str, mask_ijk: np.ndarray,
                region: Any, ijk2ras: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Replace the segment's voxels in ``region`` only (``start``/``stop`` IJK); returns that block.

    Done as Slicer's editor effects do: a max-merge then a min-merge of the
    block's labelmap, so voxels outside it (and other segments) are untouched.
    """
    start, stop = tuple(int(v) for v in region.start), tuple(int(v) for v in region.stop)
    block = np.ascontiguousarray(mask_ijk[tuple(slice(a, b) for a, b in zip(start, stop))].transpose(2, 1, 0), dtype=bool)
    image = mrml_io.oriented_image(block.view(np.uint8), (start[2], start[1], start[0]), ijk2ras)
    L = segmentations_logic
    for mode in (L.MODE_MERGE_MAX, L.MODE_MERGE_MIN):
        if not L.SetBinaryLabelmapToSegment(image, segmentation_node, segment_id, mode):
            raise GeometryError(f"Segment {segment_id!r}: Slicer refused the refined block.", "Check the segmentation's geometry.")
    return start, stop


class SegmentRefinement:
    """Refinement of one segment: a click session, block writes, undo/redo, live mode.

    :meth:`refine_from_nodes` applies the points placed since its last call
    (at first: all points in the lists) and the box when it was placed or
    moved; :meth:`clear_prompts` empties the lists.
    """

    def __init__(self, logic: Any, volume_node: Any, segmentation_node: Any, segment_id: str) -> None:
        if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
            raise InputFileError(f"Segment {segment_id!r} is not in {segmentation_node.GetName()}.", "Select a segment to refine.")
        if segmentation_node.GetTransformNodeID() != volume_node.GetTransformNodeID():
            raise GeometryError(
                f"{segmentation_node.GetName()} and {volume_node.GetName()} are under different transforms.",
                "Put both under the same transform (or harden both) before refining.",
            )
        self.logic, self.volume_node, self.segmentation_node, self.segment_id = logic, volume_node, segmentation_node, segment_id
        self.on_result: Callable[[Any], None] | None = None  # called after each live refine
        self.last_error: Exception | None = None
        self.last_write: tuple | None = None  # the block written by the last change (for checks)
        self._observers: list[tuple[Any, int]] = []
        self._used: dict[str, int] = {}
        self._box_key: tuple | None = None
        self._start_session()

    # -- state ------------------------------------------------------------------
    def _labelmap_stamp(self) -> int:
        seg = self.segmentation_node.GetSegmentation().GetSegment(self.segment_id)
        rep = seg.GetRepresentation(mrml_io._slicer().vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()) if seg else None
        return -1 if rep is None else int(rep.GetMTime())

    def _start_session(self) -> None:
        from TextSegLib.refine import RefineSession

        self.volume = self.logic.volume(self.volume_node)
        mask = mrml_io.segment_array_ijk(self.logic.segmentations_logic, self.segmentation_node, self.segment_id, self.volume)
        self.session = RefineSession(self.volume, mask)
        self._stamp = self._labelmap_stamp()

    def mark_points_used(self) -> None:
        """Treat the points and box now in the scene as applied (live and :meth:`refine_from_nodes` skip them)."""
        for role in ("positive", "negative"):
            node = prompt_node(self.logic.scene, role, create=False)
            self._used[role] = node.GetNumberOfControlPoints() if node is not None else 0
        self._box_key = self._roi_key()

    def clear_prompts(self) -> None:
        """Remove all placed points and hide the box (e.g. when switching to another segment)."""
        for role in ("positive", "negative"):
            node = prompt_node(self.logic.scene, role, create=False)
            if node is not None:
                node.RemoveAllControlPoints()
        roi = prompt_node(self.logic.scene, "box", create=False)
        if roi is not None:
            roi.RemoveAllControlPoints()
        self.mark_points_used()

    def _roi_key(self) -> tuple | None:
        boxes = roi_box_ras(prompt_node(self.logic.scene, "box", create=False))
        return tuple(np.round(np.ravel(boxes), 3)) if boxes else None

    # -- refining ---------------------------------------------------------------
    def add(self, positive_ras: Sequence[Sequence[float]] = (), negative_ras: Sequence[Sequence[float]] = (),
            boxes_ras: Sequence[Any] = ()) -> Any:
        """Apply world-RAS clicks/boxes; writes the changed block; returns the ``RefineResult``."""
        if self.segmentation_node.GetSegmentation().GetSegment(self.segment_id) is None:
            raise InputFileError(f"Segment {self.segment_id!r} was removed.", "Select a segment to refine.")
        if self._labelmap_stamp() != self._stamp or self.logic.volume(self.volume_node) is not self.volume:
            self._start_session()  # edited elsewhere (Segment Editor, a run, an undo): start from its content
        pos = world_to_node_ras(self.volume_node, positive_ras)
        neg = world_to_node_ras(self.volume_node, negative_ras)
        boxes = [_box_to_node_ras(self.volume_node, b) for b in boxes_ras]
        result = self.session.add(pos, neg, boxes, points_space="ras")
        if result.changed_box is not None:
            self._write(result.changed_box)
        if result.info.get("recorded"):  # one module undo step per session step, even a lock-only one
            session = self.session  # an action undoes its own session's step, even after a restart
            self.logic.history.push_action(self.segmentation_node, HistoryAction(
                "refine", lambda: self._replay(session, undo=True), lambda: self._replay(session, undo=False)))
        return result

    def pending_inputs(self) -> tuple[list, list, list]:
        """World-RAS (positive, negative, boxes) placed since last time; marks them as applied.

        At first all points in the lists; the box when it was placed or moved.
        """
        new: dict[str, list] = {}
        for role in ("positive", "negative"):
            node = prompt_node(self.logic.scene, role, create=False)
            n = node.GetNumberOfControlPoints() if node is not None else 0
            start = min(self._used.get(role, 0), n)  # points removed by the user: nothing to redo
            new[role] = markup_points_ras(node, start)
            self._used[role] = n
        key = self._roi_key()
        boxes = roi_box_ras(prompt_node(self.logic.scene, "box", create=False)) if key and key != self._box_key else []
        self._box_key = key
        return new["positive"], new["negative"], boxes

    def refine_from_nodes(self) -> Any:
        """Apply :meth:`pending_inputs`; the ``RefineResult``, or None when nothing new was placed."""
        pos, neg, boxes = self.pending_inputs()
        if not (pos or neg or boxes):
            return None
        return self.add(pos, neg, boxes)

    def _write(self, box: tuple, session: Any = None) -> None:
        """Write the session's mask in ``box`` (start, stop) into the segment; tag it as refined."""
        from TextSegLib.refine import Region

        seg = self.segmentation_node.GetSegmentation().GetSegment(self.segment_id)
        was = self.segmentation_node.StartModify()
        try:
            self.last_write = write_block(self.logic.segmentations_logic, self.segmentation_node, self.segment_id,
                                          (session or self.session).mask, Region(*box), self.volume.ijk_to_ras)
            seg.SetTag(TAG_DIGEST, "refined")  # a re-run of the prompt will not replace this segment
        finally:
            self.segmentation_node.EndModify(was)
        self._stamp = self._labelmap_stamp()

    def _replay(self, session: Any, undo: bool) -> None:
        """Undo (or redo) ``session``'s last step and write its block.

        Refuses (and changes nothing) when the segment's voxels in that block are no
        longer what the refinement left there: an edit made since then would be lost.
        """
        region, expected = session.pending(undo)
        if region is not None and expected is not None:
            current = mrml_io.segment_array_ijk(self.logic.segmentations_logic, self.segmentation_node,
                                                self.segment_id, self.volume)
            if not np.array_equal(current[region.slices].astype(bool), np.asarray(expected, dtype=bool)):
                raise TextSegError(
                    f"Segment {self.segment_id!r} was edited after this refinement, in the block it changed; "
                    f"{'undoing' if undo else 'redoing'} it now would overwrite that edit.",
                    "Undo the later edit first (e.g. with the Segment Editor's undo), or keep refining.")
        region = session.undo() if undo else session.redo()
        if region is not None:
            self._write((region.start, region.stop), session)
            if session is not self.session:
                self._stamp = -2  # the current session no longer matches the segment: restart on next click

    # -- live mode ----------------------------------------------------------------
    @property
    def live(self) -> bool:
        return bool(self._observers)

    def set_live(self, enabled: bool) -> None:
        """Refine on every point placed in the positive/negative lists (True), or stop (False)."""
        if enabled == self.live:
            return
        if not enabled:
            for node, tag in self._observers:
                node.RemoveObserver(tag)
            self._observers = []
            return
        self.mark_points_used()
        for role in ("positive", "negative"):
            node = prompt_node(self.logic.scene, role)
            tag = node.AddObserver(node.PointPositionDefinedEvent, self._on_point)
            self._observers.append((node, tag))

    def _on_point(self, caller: Any = None, event: Any = None) -> None:
        """Observer: errors are kept in :attr:`last_error` (VTK callbacks cannot raise)."""
        try:
            result = self.refine_from_nodes()
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - reported through last_error / on_result
            self.last_error, result = exc, None
        if self.on_result is not None:
            self.on_result(result if self.last_error is None else self.last_error)


def get_refinement(logic: Any, volume_node: Any, segmentation_node: Any, segment_id: str) -> SegmentRefinement:
    """The logic's :class:`SegmentRefinement` for this segment (kept between calls)."""
    cache: dict = logic.__dict__.setdefault("_refinements", {})
    key = (volume_node.GetID(), segmentation_node.GetID(), segment_id)
    ref = cache.get(key)
    if ref is None or ref.segmentation_node is not segmentation_node:
        for other in cache.values():
            other.set_live(False)
        ref = cache[key] = SegmentRefinement(logic, volume_node, segmentation_node, segment_id)
    return ref


def refine_segment(
    logic: Any,
    volume_node: Any,
    segmentation_node: Any,
    segment_id: str,
    positive_ras: Sequence[Sequence[float]] = (),
    negative_ras: Sequence[Sequence[float]] = (),
    boxes_ras: Sequence[Any] = (),
) -> Any:
    """Refine one segment with world-RAS clicks/boxes; undoable; returns the ``RefineResult``."""
    return get_refinement(logic, volume_node, segmentation_node, segment_id).add(positive_ras, negative_ras, boxes_ras)
