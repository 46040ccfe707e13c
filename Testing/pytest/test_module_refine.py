"""Refinement in the Qt-free module logic on a real MRML scene (PyPI slicer-core)."""
from __future__ import annotations

import numpy as np
import pytest

from _module_helpers import CT_CHEST, reference_segment

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")
pytest.importorskip("TextSegLib.refine", reason="TextSegLib.refine is not installed")

from slicer_bootstrap import make_scene  # noqa: E402
from TextSegLib.errors import GeometryError  # noqa: E402
from TextSegLogicLib import TextSegLogic, mrml_io  # noqa: E402
from TextSegLogicLib.mrml_io import TAG_DIGEST, segment_tag  # noqa: E402
from TextSegLogicLib.refinement import ROLE_ATTRIBUTE, prompt_node  # noqa: E402


@pytest.fixture()
def env():
    return make_scene()  # fresh scene per test: prompt nodes and transforms do not leak between tests


@pytest.fixture()
def setup(env):
    """(logic, volume node, segmentation node, left-lung segment ID, other segment ID, volume)."""
    node = env.load_volume(CT_CHEST)
    logic = TextSegLogic(**env.logics())
    vol = logic.volume(node)
    seg = logic.output_segmentation(node)
    s = seg.GetSegmentation()
    sid = s.AddEmptySegment("", "left lung")
    other = s.AddEmptySegment("", "right lung")
    mrml_io.write_mask(env.segmentations_logic, seg, sid, reference_segment("left lung"), vol.ijk_to_ras)
    mrml_io.write_mask(env.segmentations_logic, seg, other, reference_segment("right lung"), vol.ijk_to_ras)
    return logic, node, seg, sid, other, vol


def read(logic, seg, sid, vol):
    return mrml_io.segment_array_ijk(logic.segmentations_logic, seg, sid, vol).copy()


def lung_voxel(mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask)
    return idx[len(idx) // 2]


def test_prompt_nodes_are_created_once_with_distinct_colours(env):
    pos, neg, box = (prompt_node(env.scene, r) for r in ("positive", "negative", "box"))
    assert pos.IsA("vtkMRMLMarkupsFiducialNode") and neg.IsA("vtkMRMLMarkupsFiducialNode")
    assert box.IsA("vtkMRMLMarkupsROINode")
    assert prompt_node(env.scene, "positive") is pos and pos.GetAttribute(ROLE_ATTRIBUTE) == "positive"
    colours = {tuple(round(c, 3) for c in n.GetDisplayNode().GetSelectedColor()) for n in (pos, neg, box)}
    assert len(colours) == 3
    assert pos.GetDisplayNode().GetSelectedColor()[1] > 0.5 and neg.GetDisplayNode().GetSelectedColor()[0] > 0.5


def test_refine_from_nodes_writes_only_the_changed_block(env, setup):
    logic, node, seg, sid, other, vol = setup
    before, other_before = read(logic, seg, sid, vol), read(logic, seg, other, vol)
    real = logic.segmentations_logic
    writes = []

    class Recorder:  # records the extent of every labelmap written into the segmentation
        def __getattr__(self, name):
            return getattr(real, name)

        def SetBinaryLabelmapToSegment(self, image, *args):
            writes.append(tuple(image.GetExtent()))
            return real.SetBinaryLabelmapToSegment(image, *args)

    logic.segmentations_logic = Recorder()
    ref = logic.refinement(node, seg, sid)
    assert ref.refine_from_nodes() is None  # nothing placed yet
    inside = lung_voxel(before)
    prompt_node(env.scene, "negative").AddControlPoint(*vol.ijk_to_ras_points(inside)[0])
    result = ref.refine_from_nodes()
    after = read(logic, seg, sid, vol)
    assert result is not None and not after[tuple(inside)]
    start, stop = result.changed_box
    assert ref.last_write == (tuple(start), tuple(stop))  # the write covered exactly that block
    block_extent = (start[0], stop[0] - 1, start[1], stop[1] - 1, start[2], stop[2] - 1)
    assert writes and all(w == block_extent for w in writes)  # only that block was sent to Slicer
    outside = np.ones(vol.shape, bool)
    outside[tuple(slice(a, b) for a, b in zip(start, stop))] = False
    assert (after[outside] == before[outside]).all()
    assert np.prod(np.subtract(stop, start)) < 0.5 * np.prod(vol.shape)
    assert (read(logic, seg, other, vol) == other_before).all()  # other segments untouched
    assert segment_tag(seg.GetSegmentation().GetSegment(sid), TAG_DIGEST) == "refined"
    assert ref.refine_from_nodes() is None  # the same point is not applied twice
    ref.clear_prompts()
    assert prompt_node(env.scene, "negative").GetNumberOfControlPoints() == 0


def test_live_mode_undo_redo_and_persistent_negative(env, setup):
    logic, node, seg, sid, other, vol = setup
    before = read(logic, seg, sid, vol)
    ref = logic.refinement(node, seg, sid)
    seen = []
    ref.on_result = seen.append
    ref.set_live(True)
    inside = lung_voxel(before)
    prompt_node(env.scene, "negative").AddControlPoint(*vol.ijk_to_ras_points(inside)[0])
    assert len(seen) == 1 and ref.last_error is None
    removed = read(logic, seg, sid, vol)
    assert not removed[tuple(inside)]
    gone = before & ~removed
    keep = np.argwhere(removed)  # a positive click on the lung right next to the removed part
    near = keep[np.argmin(np.abs(keep - inside).sum(1))]
    prompt_node(env.scene, "positive").AddControlPoint(*vol.ijk_to_ras_points(near)[0])
    assert len(seen) == 2
    now = read(logic, seg, sid, vol)
    assert gone.any() and not (now & gone).any(), "the removed part stays removed"
    ref.set_live(False)
    prompt_node(env.scene, "negative").AddControlPoint(*vol.ijk_to_ras_points(lung_voxel(now))[0])
    assert len(seen) == 2 and (read(logic, seg, sid, vol) == now).all()
    if (now != removed).any():  # the positive click changed something: one more undo step
        assert logic.undo(seg) and (read(logic, seg, sid, vol) == removed).all()
    assert logic.undo(seg) and (read(logic, seg, sid, vol) == before).all()
    assert not logic.undo(seg)
    assert logic.redo(seg) and (read(logic, seg, sid, vol) == removed).all()


def test_roi_box_clips_segment(env, setup):
    logic, node, seg, sid, other, vol = setup
    before = read(logic, seg, sid, vol)
    idx = np.argwhere(before)
    lo, hi = idx.min(0), idx.max(0)
    mid = (lo + hi) // 2
    corners = vol.ijk_to_ras_points(np.array([lo, [hi[0], hi[1], mid[2]]], float))
    roi = prompt_node(env.scene, "box")
    roi.SetXYZ(*((corners[0] + corners[1]) / 2))
    roi.SetRadiusXYZ(*(np.abs(corners[1] - corners[0]) / 2 + 0.1))
    result = logic.refinement(node, seg, sid).refine_from_nodes()
    after = read(logic, seg, sid, vol)
    assert result is not None and after.sum() < before.sum()
    assert not after[:, :, mid[2] + 2 :].any() and (after[:, :, : mid[2] - 1] == before[:, :, : mid[2] - 1]).all()


def test_transforms(env, setup):
    logic, node, seg, sid, other, vol = setup
    t = env.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    m = slicer.vtkMatrix4x4() if hasattr(slicer, "vtkMatrix4x4") else __import__("vtk").vtkMatrix4x4()
    m.SetElement(0, 3, 25.0)
    t.SetMatrixTransformToParent(m)
    node.SetAndObserveTransformNodeID(t.GetID())
    with pytest.raises(GeometryError, match="different transforms"):
        logic.refinement(node, seg, sid)
    seg.SetAndObserveTransformNodeID(t.GetID())
    before = read(logic, seg, sid, vol)
    inside = lung_voxel(before)
    world = vol.ijk_to_ras_points(inside)[0] + [25.0, 0, 0]  # where that voxel is shown
    logic.refine_segment(node, seg, sid, negative_ras=[world])
    assert not read(logic, seg, sid, vol)[tuple(inside)]


def test_history_mixes_snapshots_and_refine_actions(env, setup):
    logic, node, seg, sid, other, vol = setup
    before = read(logic, seg, sid, vol)
    logic.refine_segment(node, seg, sid, negative_ras=vol.ijk_to_ras_points(lung_voxel(before)))
    refined = read(logic, seg, sid, vol)
    logic.history.save(seg)  # as a run does before importing
    seg.GetSegmentation().RemoveSegment(other)
    assert logic.undo(seg) and seg.GetSegmentation().GetSegment(other) is not None
    assert logic.undo(seg) and (read(logic, seg, sid, vol) == before).all()
    assert logic.redo(seg) and (read(logic, seg, sid, vol) == refined).all()
    assert logic.redo(seg) and seg.GetSegmentation().GetSegment(other) is None
    assert not logic.redo(seg) and logic.history.can_undo(seg)


def test_panel_live_toggle_and_redo_call_back(env, setup):
    """The Refine section's live check box and Redo button (PySide6, offscreen) drive the logic."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QT_API", "pyside6")
    QtWidgets = pytest.importorskip("Qt.QtWidgets", reason="Qt.py + PySide6 not installed")
    from TextSegPanelLib.panel import TextSegPanel

    logic, node, seg, sid, other, vol = setup
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])  # noqa: F841
    panel = TextSegPanel()
    panel.set_refinement_available(True)
    panel.set_refine_segments([("left lung", sid)])
    panel.on_refine_live = lambda s, on: logic.refinement(node, seg, s).set_live(on)
    panel.on_redo = lambda: logic.redo(seg)
    panel.refine_live_check.setChecked(True)
    assert logic.refinement(node, seg, sid).live
    before = read(logic, seg, sid, vol)
    prompt_node(env.scene, "negative").AddControlPoint(*vol.ijk_to_ras_points(lung_voxel(before))[0])
    refined = read(logic, seg, sid, vol)
    assert (refined != before).any()
    assert logic.undo(seg) and (read(logic, seg, sid, vol) == before).all()
    panel.refine_redo_button.click()
    assert (read(logic, seg, sid, vol) == refined).all()
    panel.refine_live_check.setChecked(False)
    assert not logic.refinement(node, seg, sid).live
    panel.deleteLater()


def test_edit_outside_textseg_restarts_the_session(env, setup):
    logic, node, seg, sid, other, vol = setup
    ref = logic.refinement(node, seg, sid)
    before = read(logic, seg, sid, vol)
    ref.add(negative_ras=vol.ijk_to_ras_points(lung_voxel(before)))
    painted = np.zeros(vol.shape, bool)
    painted[10:20, 10:20, 5:10] = True  # e.g. the Segment Editor replaced the segment
    mrml_io.write_mask(env.segmentations_logic, seg, sid, painted, vol.ijk_to_ras)
    ref.add(positive_ras=vol.ijk_to_ras_points(np.array([15, 15, 7])))
    assert (ref.session.mask == read(logic, seg, sid, vol)).all()
    assert read(logic, seg, sid, vol)[painted].all(), "the session restarted from the edited segment"


def test_undo_refuses_to_overwrite_a_later_edit(env, setup):
    """Undoing a refinement after the user edited its block elsewhere would lose that
    edit: it is refused with a clear message, changes nothing, and stays undoable."""
    from TextSegLib.errors import TextSegError

    logic, node, seg, sid, other, vol = setup
    ref = logic.refinement(node, seg, sid)
    before = read(logic, seg, sid, vol)
    result = ref.add(negative_ras=vol.ijk_to_ras_points(lung_voxel(before)))
    assert result.changed_box is not None
    refined = read(logic, seg, sid, vol)
    edited = refined.copy()
    sl = tuple(slice(a, b) for a, b in zip(*result.changed_box))
    edited[sl] = True  # e.g. painted over the refined block in the Segment Editor
    mrml_io.write_mask(env.segmentations_logic, seg, sid, edited, vol.ijk_to_ras)
    with pytest.raises(TextSegError, match="edited after this refinement"):
        logic.undo(seg)
    assert (read(logic, seg, sid, vol) == edited).all(), "the user's edit is kept"
    mrml_io.write_mask(env.segmentations_logic, seg, sid, refined, vol.ijk_to_ras)  # user reverts their edit
    assert logic.undo(seg) and (read(logic, seg, sid, vol) == before).all(), "the step was kept and now undoes"
