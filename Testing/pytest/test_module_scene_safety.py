"""Issue 19 §5 on a real MRML scene (PyPI slicer-core): Undo run keeps later edits, a chosen
segmentation's segments never move or get converted, the source representation is a labelmap."""
from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")

from _mrml_fixtures import ct, env, logic  # noqa: E402,F401 (fixtures)
from TextSegLib.errors import TextSegError  # noqa: E402
from TextSegLogicLib import mrml_io  # noqa: E402

LABELMAP = "Binary labelmap"
SURFACE = "Closed surface"


def ids(seg_node) -> list[str]:
    s = seg_node.GetSegmentation()
    return [s.GetNthSegmentID(i) for i in range(s.GetNumberOfSegments())]


def mask(env, logic, seg_node, sid, node) -> np.ndarray:
    return mrml_io.segment_array_ijk(env.segmentations_logic, seg_node, sid, logic.volume(node))


def paint(env, logic, seg_node, sid, node, region=np.s_[:6]) -> np.ndarray:
    """What a Segment Editor stroke does: the segment's voxels change through Slicer's merge logic."""
    edited = mask(env, logic, seg_node, sid, node).copy()
    edited[region] = True
    mrml_io.write_mask(env.segmentations_logic, seg_node, sid, edited, logic.volume(node).ijk_to_ras)
    return edited


# -- Undo run ----------------------------------------------------------------------------
def test_undo_run_refuses_when_a_segment_was_painted_since(env, ct, logic):
    seg_node = logic.segment(ct, "left lung")
    logic.segment(ct, "right lung", seg_node)
    left, right = ids(seg_node)
    edited = paint(env, logic, seg_node, left, ct)
    with pytest.raises(TextSegError, match=r"changed since the TextSeg run \(Left lung edited\)") as err:
        logic.undo(seg_node)
    assert "\n" not in str(err.value) and "Undo your edit first" in str(err.value)
    assert ids(seg_node) == [left, right]  # nothing was restored: the stroke is kept
    assert (mask(env, logic, seg_node, left, ct) == edited).all()
    assert logic.history.can_undo(seg_node)  # the run stays undoable once the edit is undone


def test_undo_run_refuses_after_rename_added_or_removed_segment(env, ct, logic):
    seg_node = logic.segment(ct, "left lung, right lung")
    left, right = ids(seg_node)
    seg_node.GetSegmentation().GetSegment(left).SetName("my left lung")
    with pytest.raises(TextSegError, match="my left lung edited"):
        logic.undo(seg_node)
    seg_node.GetSegmentation().GetSegment(left).SetName("Left lung")
    seg_node.GetSegmentation().AddEmptySegment("", "tumour")
    with pytest.raises(TextSegError, match="tumour added"):
        logic.undo(seg_node)
    seg_node.GetSegmentation().RemoveSegment(ids(seg_node)[-1])
    seg_node.GetSegmentation().RemoveSegment(right)
    with pytest.raises(TextSegError, match="Right lung removed"):
        logic.undo(seg_node)


def test_undo_and_redo_still_work_without_later_edits(env, ct, logic):
    seg_node = logic.segment(ct, "left lung")
    logic.segment(ct, "right lung", seg_node)
    assert logic.undo(seg_node) and len(ids(seg_node)) == 1
    assert logic.redo(seg_node) and len(ids(seg_node)) == 2
    assert logic.undo(seg_node) and logic.undo(seg_node) and ids(seg_node) == []
    assert logic.redo(seg_node)
    # an edit after an undo protects itself from the redo too
    (left,) = ids(seg_node)
    paint(env, logic, seg_node, left, ct)
    with pytest.raises(TextSegError, match="redoing the run"):
        logic.redo(seg_node)


# -- a chosen segmentation under another transform ----------------------------------------
def _shift(env, dx: float):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    tnode = env.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shifted")
    m = vtkMatrix4x4()
    m.SetElement(0, 3, dx)
    tnode.SetMatrixTransformToParent(m)
    return tnode


def test_user_segmentation_under_another_transform_is_not_moved(env, ct, logic):
    tnode = _shift(env, 25.0)
    user = logic.segment(ct, "left lung")  # the user's own segmentation, then moved under a transform
    user.SetAndObserveTransformNodeID(tnode.GetID())
    (mine,) = ids(user)
    before = [0.0] * 6
    user.GetRASBounds(before)
    out = logic.segment(ct, "right lung", user)
    assert out is not user and out.GetTransformNodeID() == ct.GetTransformNodeID()
    assert user.GetTransformNodeID() == tnode.GetID() and ids(user) == [mine]
    after = [0.0] * 6
    user.GetRASBounds(after)
    assert after == pytest.approx(before)  # the user's segments stayed where they were in world space
    assert "Wrote into a new segmentation" in logic.notice and "under transform 'shifted'" in logic.notice
    assert out.GetName() in logic.notice
    env.scene.RemoveNode(tnode)


def test_empty_segmentation_under_another_transform_is_used(env, ct, logic):
    tnode = _shift(env, 10.0)
    empty = env.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    empty.SetAndObserveTransformNodeID(tnode.GetID())
    job = logic.start(ct, "left lung", empty, threaded=False)
    job.wait(60)
    assert logic.finish(job) is empty and empty.GetTransformNodeID() == ct.GetTransformNodeID()
    assert logic.notice == "" and job.notice == ""
    env.scene.RemoveNode(tnode)


# -- closed-surface source representation -------------------------------------------------
def _surface_segment(seg_node, center=(0.0, 0.0, 0.0)):
    from vtkmodules.vtkFiltersSources import vtkSphereSource

    sphere = vtkSphereSource()
    sphere.SetCenter(*center)
    sphere.SetRadius(20)
    sphere.Update()
    segmentation = seg_node.GetSegmentation()
    segmentation.SetSourceRepresentationName(SURFACE)
    segment = slicer.vtkSegment()
    segment.SetName("my surface")
    segment.AddRepresentation(SURFACE, sphere.GetOutput())
    segmentation.AddSegment(segment, "mine")
    return sphere.GetOutput().GetNumberOfPoints()


def test_closed_surface_segmentation_is_not_converted(env, ct, logic):
    user = env.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "surfaces")
    user.CreateDefaultDisplayNodes()
    points = _surface_segment(user)
    out = logic.segment(ct, "left lung", user)
    assert out is not user and ids(user) == ["mine"]
    assert user.GetSegmentation().GetSourceRepresentationName() == SURFACE
    assert user.GetSegmentation().GetSegment("mine").GetRepresentation(SURFACE).GetNumberOfPoints() == points
    assert "stores its segments as Closed surface" in logic.notice
    # the result keeps its labelmap, so the digest check knows TextSeg's own segment on a rerun
    (sid,) = ids(out)
    assert out.GetSegmentation().GetSourceRepresentationName() == LABELMAP
    assert out.GetSegmentation().GetSegment(sid).GetRepresentation(LABELMAP) is not None
    logic.segment(ct, "left lung", out)
    assert ids(out) == [sid]


def test_empty_closed_surface_segmentation_gets_a_labelmap_source(env, ct, logic):
    empty = env.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty surfaces")
    empty.GetSegmentation().SetSourceRepresentationName(SURFACE)
    out = logic.segment(ct, "left lung, right lung", empty)
    assert out is empty and logic.notice == ""
    assert empty.GetSegmentation().GetSourceRepresentationName() == LABELMAP
    first = ids(empty)
    logic.segment(ct, "left lung, right lung", empty)
    assert ids(empty) == first  # reused, not duplicated: the digests match


def test_addsegment_drops_the_labelmap_into_a_surface_segmentation(env, ct, logic):
    """The Slicer behaviour the guard exists for (vtkSegmentation::AddSegment, step 2: a new segment
    keeps only the representations of the first segment)."""
    user = env.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "raw")
    _surface_segment(user)
    vol = logic.volume(ct)
    m = np.zeros(vol.shape, bool)
    m[40:60, 40:60, 10:20] = True
    sid, _ = mrml_io.put_segment(user, None, "x", m, vol.ijk_to_ras)
    assert user.GetSegmentation().GetSegment(sid).GetRepresentation(LABELMAP) is None
