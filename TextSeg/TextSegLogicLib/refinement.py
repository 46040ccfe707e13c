"""Point/box refinement of a segment with ``TextSegLib.refine.refine`` (Qt-free).

Clicks come from markups nodes (positive / negative fiducials, an ROI box)
in world RAS. The refined mask replaces the segment's voxels in place after an
undo snapshot; the segment is then marked as refined so a later re-run of its
prompt creates a new segment instead of discarding the user's refinement.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from TextSegLib.errors import InputFileError

from . import mrml_io
from .mrml_io import TAG_CREATED_BY, TAG_DIGEST, TAG_NAME, TAG_PROMPT, segment_tag


def markup_points_ras(markups_node: Any) -> list[tuple[float, float, float]]:
    """World RAS positions of a markups node's control points ([] for None)."""
    if markups_node is None:
        return []
    out = []
    for i in range(markups_node.GetNumberOfControlPoints()):
        p = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(i, p)
        out.append(tuple(p))
    return out


def roi_box_ras(roi_node: Any) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """An axis-aligned ROI node as one (min corner, max corner) RAS box ([] for None)."""
    if roi_node is None:
        return []
    b = [0.0] * 6
    roi_node.GetBounds(b)
    return [((b[0], b[2], b[4]), (b[1], b[3], b[5]))]


def refine_segment(
    logic: Any,
    volume_node: Any,
    segmentation_node: Any,
    segment_id: str,
    positive_ras: Sequence[Sequence[float]] = (),
    negative_ras: Sequence[Sequence[float]] = (),
    boxes_ras: Sequence[Any] = (),
) -> Any:
    """Refine one segment in place; returns the library's ``RefineResult``."""
    from TextSegLib.refine import refine

    segmentation = segmentation_node.GetSegmentation()
    segment = segmentation.GetSegment(segment_id)
    if segment is None:
        raise InputFileError(f"Segment {segment_id!r} is not in {segmentation_node.GetName()}.", "Select a segment to refine.")
    volume = logic.volume(volume_node)
    mask = mrml_io.segment_array_ijk(logic.segmentations_logic, segmentation_node, segment_id, volume)
    result = refine(volume, mask, positive_ras, negative_ras, boxes_ras, points_space="ras")
    if result.changed_box is None:
        return result
    logic.history.save(segmentation_node)
    was = segmentation_node.StartModify()
    try:
        tags = {k: segment_tag(segment, k) for k in (TAG_CREATED_BY, TAG_PROMPT, TAG_NAME)}
        terminology, color, name = segment.GetTerminology(), segment.GetColor(), segment.GetName()
        mrml_io.put_segment(segmentation_node, segment_id, name, np.asarray(result.mask, dtype=bool), volume.ijk_to_ras)
        new = segmentation.GetSegment(segment_id)
        new.SetColor(*color)
        if terminology:
            new.SetTerminology(terminology)
        for k, v in tags.items():
            if v:
                new.SetTag(k, v)
        new.SetTag(TAG_DIGEST, "refined")
    finally:
        segmentation_node.EndModify(was)
    return result
