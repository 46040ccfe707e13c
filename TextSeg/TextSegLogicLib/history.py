"""Undo/redo for TextSeg: segmentation snapshots (runs) and small actions (refine clicks).

A run saves a deep copy of the ``vtkSegmentation`` (labelmaps included)
before importing; only the last :attr:`SegmentationHistory.depth` snapshots
per node are kept. A refinement click pushes a :class:`HistoryAction` whose
``undo`` / ``redo`` rewrite only the block of voxels that click changed.
Both kinds share one per-node stack, so Undo always reverts the latest change.

A snapshot is only put back over the state it was taken against: after a run the logic
calls :meth:`SegmentationHistory.seal`, which records each segment's name, colour and
voxel digest; Undo (and Redo) refuse, with the segments that differ, when the
segmentation changed since (a Segment Editor stroke, a rename, a segment added or
removed), because restoring the whole snapshot would silently discard that edit.

Stacks are keyed by the node's ID *and* the node object itself: after a scene
close, ``vtkMRMLScene::Clear`` resets the ID counters, so a node of the next
scene can carry the same ID; its undo stack is then empty (and the logic also
calls :meth:`SegmentationHistory.clear` on scene close).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from TextSegLib.errors import TextSegError


@dataclass
class HistoryAction:
    """A reversible change that knows how to undo and redo itself."""

    label: str
    undo: Callable[[], None]
    redo: Callable[[], None]


@dataclass
class Snapshot:
    """A deep copy of a segmentation and the fingerprint the node must have for it to be applied."""

    segmentation: Any
    expected: tuple | None = None  # None: taken before a run that has not been sealed yet


class SegmentationHistory:
    """Per-node undo and redo stacks of snapshots and actions."""

    def __init__(self, depth: int = 5, max_actions: int = 100) -> None:
        self.depth = depth
        self.max_actions = max_actions
        self._stacks: dict[str, list[Any]] = {}
        self._redo: dict[str, list[Any]] = {}

    @staticmethod
    def _key(segmentation_node: Any) -> str:
        """The node's ID plus the address of its C++ object (IDs recur after a scene close)."""
        return f"{segmentation_node.GetID()}@{getattr(segmentation_node, '__this__', id(segmentation_node))}"

    def clear(self) -> None:
        """Forget every stack (scene closed)."""
        self._stacks.clear()
        self._redo.clear()

    def save(self, segmentation_node: Any) -> None:
        """Remember the node's current segments (call before changing them)."""
        self._push(segmentation_node, Snapshot(_snapshot(segmentation_node)))

    def seal(self, segmentation_node: Any) -> None:
        """The run is imported: its snapshot may only be restored over exactly this state."""
        stack = self._stacks.get(self._key(segmentation_node)) or []
        if stack and isinstance(stack[-1], Snapshot):
            stack[-1].expected = fingerprint(segmentation_node.GetSegmentation())

    def push_action(self, segmentation_node: Any, action: HistoryAction) -> None:
        """Record an already applied action (e.g. one refinement click)."""
        self._push(segmentation_node, action)

    def _push(self, segmentation_node: Any, entry: Any) -> None:
        stack = self._stacks.setdefault(self._key(segmentation_node), [])
        stack.append(entry)
        self._redo.pop(self._key(segmentation_node), None)
        while sum(not isinstance(e, HistoryAction) for e in stack) > self.depth or len(stack) > self.max_actions:
            del stack[0]

    def can_undo(self, segmentation_node: Any) -> bool:
        return bool(segmentation_node is not None and self._stacks.get(self._key(segmentation_node)))

    def can_redo(self, segmentation_node: Any) -> bool:
        return bool(segmentation_node is not None and self._redo.get(self._key(segmentation_node)))

    def undo(self, segmentation_node: Any) -> bool:
        """Revert the latest snapshot or action; False when there is none."""
        if not self.can_undo(segmentation_node):
            return False
        stack = self._stacks[self._key(segmentation_node)]
        entry = stack.pop()
        try:
            applied = self._apply(segmentation_node, entry, undo=True)
        except Exception:
            stack.append(entry)  # refused or failed: the step stays undoable
            raise
        self._redo.setdefault(self._key(segmentation_node), []).append(applied)
        return True

    def redo(self, segmentation_node: Any) -> bool:
        """Re-apply the latest undone snapshot or action; False when there is none."""
        if not self.can_redo(segmentation_node):
            return False
        redo_stack = self._redo[self._key(segmentation_node)]
        entry = redo_stack.pop()
        try:
            applied = self._apply(segmentation_node, entry, undo=False)
        except Exception:
            redo_stack.append(entry)
            raise
        self._stacks.setdefault(self._key(segmentation_node), []).append(applied)
        return True

    @staticmethod
    def _apply(segmentation_node: Any, entry: Any, undo: bool) -> Any:
        """Apply ``entry``; returns what reverses it (the same action, or a snapshot of now)."""
        if isinstance(entry, HistoryAction):
            (entry.undo if undo else entry.redo)()
            return entry
        segmentation = segmentation_node.GetSegmentation()
        if entry.expected is not None:
            changes = describe_changes(entry.expected, fingerprint(segmentation))
            if changes:
                raise TextSegError(
                    f"{segmentation_node.GetName()} changed since the TextSeg run ({changes}); "
                    f"{'undoing' if undo else 'redoing'} the run would discard that edit.",
                    "Undo your edit first (Segment Editor's Undo), or keep the result and delete segments by hand.")
        now = _snapshot(segmentation_node)
        was = segmentation_node.StartModify()
        try:
            segmentation.DeepCopy(entry.segmentation)
        finally:
            segmentation_node.EndModify(was)
        return Snapshot(now, fingerprint(segmentation))


def fingerprint(segmentation: Any) -> tuple:
    """Per segment, in order: (ID, name, colour, digest of its source representation)."""
    return tuple((sid, str(seg.GetName()), tuple(round(c, 4) for c in seg.GetColor()), _content_digest(segmentation, seg))
                 for sid, seg in ((segmentation.GetNthSegmentID(i), segmentation.GetNthSegment(i))
                                  for i in range(segmentation.GetNumberOfSegments())))


def describe_changes(before: tuple, after: tuple) -> str:
    """'Liver edited, Spleen removed, my segment added' (names), or '' when nothing differs."""
    old, new = {s[0]: s for s in before}, {s[0]: s for s in after}
    parts = [f"{new[i][1]} edited" for i in new if i in old and new[i] != old[i]]
    parts += [f"{old[i][1]} removed" for i in old if i not in new]
    parts += [f"{new[i][1]} added" for i in new if i not in old]
    if not parts and [s[0] for s in before] != [s[0] for s in after]:
        parts.append("segments reordered")
    return ", ".join(parts)


def _content_digest(segmentation: Any, segment: Any) -> str:
    """Digest of the segment's voxels (labelmap source, shared layers told apart by label value)
    or of its points and cells (closed-surface source)."""
    import hashlib

    import numpy as np
    from vtkmodules.util import numpy_support

    from .mrml_io import mask_digest

    data = segment.GetRepresentation(segmentation.GetSourceRepresentationName())
    if data is None:
        return "none"
    if data.IsA("vtkImageData"):
        ext = data.GetExtent()
        scalars = data.GetPointData().GetScalars()
        if ext[1] < ext[0] or scalars is None:
            return "empty"
        arr = numpy_support.vtk_to_numpy(scalars).reshape(ext[5] - ext[4] + 1, ext[3] - ext[2] + 1, ext[1] - ext[0] + 1)
        return mask_digest(arr == segment.GetLabelValue(), (ext[4], ext[2], ext[0]))
    h = hashlib.sha1(str(data.GetClassName()).encode())
    points = data.GetPoints() if hasattr(data, "GetPoints") else None
    if points is not None and points.GetNumberOfPoints():
        h.update(np.ascontiguousarray(numpy_support.vtk_to_numpy(points.GetData())).tobytes())
    polys = data.GetPolys() if hasattr(data, "GetPolys") else None
    if polys is not None and polys.GetNumberOfCells():
        h.update(np.ascontiguousarray(numpy_support.vtk_to_numpy(polys.GetConnectivityArray())).tobytes())
    return h.hexdigest()[:20]


def _snapshot(segmentation_node: Any) -> Any:
    import slicer

    snapshot = slicer.vtkSegmentation()
    snapshot.DeepCopy(segmentation_node.GetSegmentation())
    return snapshot
