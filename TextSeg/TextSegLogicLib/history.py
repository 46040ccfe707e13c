"""Undo/redo for TextSeg: segmentation snapshots (runs) and small actions (refine clicks).

A run saves a deep copy of the ``vtkSegmentation`` (labelmaps included)
before importing; only the last :attr:`SegmentationHistory.depth` snapshots
per node are kept. A refinement click pushes a :class:`HistoryAction` whose
``undo`` / ``redo`` rewrite only the block of voxels that click changed.
Both kinds share one per-node stack, so Undo always reverts the latest change.

Stacks are keyed by the node's ID *and* the node object itself: after a scene
close, ``vtkMRMLScene::Clear`` resets the ID counters, so a node of the next
scene can carry the same ID; its undo stack is then empty (and the logic also
calls :meth:`SegmentationHistory.clear` on scene close).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class HistoryAction:
    """A reversible change that knows how to undo and redo itself."""

    label: str
    undo: Callable[[], None]
    redo: Callable[[], None]


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
        self._push(segmentation_node, _snapshot(segmentation_node))

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
        now = _snapshot(segmentation_node)
        was = segmentation_node.StartModify()
        try:
            segmentation_node.GetSegmentation().DeepCopy(entry)
        finally:
            segmentation_node.EndModify(was)
        return now


def _snapshot(segmentation_node: Any) -> Any:
    import slicer

    snapshot = slicer.vtkSegmentation()
    snapshot.DeepCopy(segmentation_node.GetSegmentation())
    return snapshot
