"""Undo for TextSeg runs: a snapshot of the segmentation before each import.

Snapshots are deep copies of the ``vtkSegmentation`` (labelmaps included);
only the last :attr:`SegmentationHistory.depth` per node are kept.
"""
from __future__ import annotations

from typing import Any


class SegmentationHistory:
    """Per-node stack of segmentation snapshots."""

    def __init__(self, depth: int = 5) -> None:
        self.depth = depth
        self._stacks: dict[str, list[Any]] = {}

    def save(self, segmentation_node: Any) -> None:
        """Remember the node's current segments (call before changing them)."""
        import slicer

        snapshot = slicer.vtkSegmentation()
        snapshot.DeepCopy(segmentation_node.GetSegmentation())
        stack = self._stacks.setdefault(segmentation_node.GetID(), [])
        stack.append(snapshot)
        del stack[: -self.depth]

    def can_undo(self, segmentation_node: Any) -> bool:
        return bool(segmentation_node is not None and self._stacks.get(segmentation_node.GetID()))

    def undo(self, segmentation_node: Any) -> bool:
        """Restore the last snapshot; False when there is none."""
        if not self.can_undo(segmentation_node):
            return False
        snapshot = self._stacks[segmentation_node.GetID()].pop()
        was = segmentation_node.StartModify()
        try:
            segmentation_node.GetSegmentation().DeepCopy(snapshot)
        finally:
            segmentation_node.EndModify(was)
        return True
