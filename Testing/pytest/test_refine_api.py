"""refine(): clicks and boxes on synthetic scenes with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from TextSegLib.engine.base import EngineResult
from TextSegLib.errors import TextSegError
from TextSegLib.refine import RefineInputError, refine
from TextSegLib.refine.algorithms import growcut_available

from _refine_helpers import ball, dice, oblique_direction, two_spheres

pytestmark = pytest.mark.skipif(not growcut_available(), reason="slicer-core (GrowCut) not installed")


def test_positive_click_in_missed_sphere_adds_it():
    vol, a, b = two_spheres()
    res = refine(vol, a, positive_points=[(34, 20, 18)], points_space="ijk")
    assert dice(res.mask, a | b) > 0.95
    assert dice(res.mask & ~a, b) > 0.9  # the new part is sphere B, not background


def test_negative_click_on_leak_removes_it_and_inputs_untouched():
    vol, a, b = two_spheres()
    leaky = a | b | ball(vol.shape, (24, 20, 18), 2.5)  # A and B joined by a bridge
    before, img_before = leaky.copy(), vol.array.copy()
    res = refine(vol, leaky, negative_points=[(34, 20, 18)], points_space="ijk")
    assert np.count_nonzero(res.mask & b) < 0.05 * b.sum()
    assert np.count_nonzero(res.mask & a) > 0.95 * a.sum()
    assert res.mask is not leaky
    np.testing.assert_array_equal(leaky, before)
    np.testing.assert_array_equal(vol.array, img_before)


def test_changed_box_is_tight_bounding_box():
    vol, a, b = two_spheres()
    res = refine(vol, a, positive_points=[(34, 20, 18)], points_space="ijk")
    diff = np.argwhere(res.mask != a)
    assert res.changed_box == (tuple(diff.min(0)), tuple(diff.max(0) + 1))
    block = res.changed_block()
    np.testing.assert_array_equal(block, res.mask[res.changed_slices])
    same = refine(vol, a, positive_points=[(14, 20, 18)], points_space="ijk")  # click inside: no change
    assert same.changed_box is None and same.changed_block() is None


def test_ras_and_ijk_points_agree_on_oblique_volume():
    vol, a, b = two_spheres(spacing=(0.8, 1.1, 1.3), direction=oblique_direction())
    ijk = np.array([34, 20, 18])
    ras = vol.ijk_to_ras_points(ijk + 0.2)[0]  # off-centre: must round to the same voxel
    r_ijk = refine(vol, a, [ijk], points_space="ijk")
    r_ras = refine(vol, a, [ras], points_space="ras")
    np.testing.assert_array_equal(r_ijk.mask, r_ras.mask)
    assert r_ijk.mask[tuple(ijk)] and r_ijk.changed_box is not None


def test_box_clips_3d_and_slice_box_clips_one_slice():
    vol, a, b = two_spheres()
    both = a | b
    corners = vol.ijk_to_ras_points(np.array([[0, 0, 0], [24, 39, 35]]))
    res = refine(vol, both, boxes=[corners])
    np.testing.assert_array_equal(res.mask, a)  # B lies outside the box
    flat = vol.ijk_to_ras_points(np.array([[0, 0, 18], [24, 39, 18]]))
    res2 = refine(vol, both, boxes=[flat])
    assert not res2.mask[:, :, 18][b[:, :, 18]].any()
    np.testing.assert_array_equal(np.delete(res2.mask, 18, axis=2), np.delete(both, 18, axis=2))
    assert res2.changed_box[0][2] == 18 and res2.changed_box[1][2] == 19


def test_box_without_mask_segments_dominant_structure():
    vol, a, b = two_spheres()
    empty = np.zeros(vol.shape, bool)
    res = refine(vol, empty, boxes=[[(25, 10, 9), (44, 30, 28)]], points_space="ijk")
    assert dice(res.mask, b) > 0.85
    assert not (res.mask & a).any()


class _BoxEngine:
    """A text engine stand-in that 'segments' sphere B wherever asked."""

    name = "box-engine"

    def __init__(self, truth: np.ndarray):
        self.truth, self.calls = truth, []

    def vocabulary(self, modality):
        return ["kidney"]

    def segment(self, volume, prompts, *, modality=None, roi_ras=None, progress=None, cancel=None):
        self.calls.append((list(prompts), roi_ras))
        return EngineResult({prompts[0]: self.truth.copy()})


def test_box_with_text_engine_reruns_model_inside_box():
    vol, a, b = two_spheres()
    eng = _BoxEngine(a | b)
    corners = vol.ijk_to_ras_points(np.array([[25, 0, 0], [47, 39, 35]]))
    res = refine(vol, a, boxes=[corners], engine=eng, prompt="kidney")
    np.testing.assert_array_equal(res.mask, a | b)
    (prompts, roi), = eng.calls
    assert prompts == ["kidney"] and np.allclose(np.minimum(roi[0], roi[1]), roi[0])
    with pytest.raises(TextSegError, match="prompt"):
        refine(vol, a, boxes=[corners], engine=eng)


def test_probabilities_widen_uncertain_zone_and_are_validated():
    vol, a, b = two_spheres()
    prob = np.where(a, 0.95, 0.02).astype(np.float32)
    prob[b] = 0.4  # the model was unsure about B
    res = refine(vol, a, positive_points=[(34, 20, 18)], probabilities=prob, points_space="ijk")
    assert dice(res.mask, a | b) > 0.95
    with pytest.raises(RefineInputError, match="probabilities"):
        refine(vol, a, [(34, 20, 18)], probabilities=prob * 3, points_space="ijk")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(positive_points=[(100, 1, 1)], points_space="ijk"), "outside the volume"),
        (dict(negative_points=[(1, 2)], points_space="ijk"), "3D points"),
        (dict(boxes=[[(1, 1, 1), (1, 1, 9)]], points_space="ijk"), "line or a point"),
        (dict(boxes=[[(200, 200, 200), (300, 300, 300)]], points_space="ijk"), "does not overlap"),
        (dict(boxes=[(1, 2, 3, 4)]), "6"),
        (dict(), "No click or box"),
        (dict(positive_points=[(1, 1, 1)], points_space="voxel"), "points_space"),
        (dict(positive_points=[(1, 1, 1)], roi_margin_mm=-1), "roi_margin_mm"),
        (dict(positive_points=[(1, 1, 1)], points_space="ijk", engine="magic"), "Unknown refine engine"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    vol, a, _ = two_spheres(shape=(20, 20, 20))
    with pytest.raises(RefineInputError, match=match):
        refine(vol, a, **kwargs)


def test_mask_validation():
    vol, a, _ = two_spheres(shape=(20, 20, 20))
    with pytest.raises(RefineInputError, match="does not match the image shape"):
        refine(vol, a[:-1], [(1, 1, 1)], points_space="ijk")
    with pytest.raises(RefineInputError, match="binary mask"):
        refine(vol, a.astype(np.uint8) * 5, [(1, 1, 1)], points_space="ijk")
    res = refine(vol, a.astype(np.uint8), [(1, 1, 1)], points_space="ijk")  # 0/1 ints are fine
    assert res.mask.dtype == bool


def test_large_roi_is_strided_and_stays_local():
    from TextSegLib.refine import BuiltinRefiner

    vol, a, b = two_spheres(shape=(60, 60, 60))
    r = BuiltinRefiner(max_roi_voxels=20_000)
    res = refine(vol, a, [(34, 20, 18)], points_space="ijk", engine=r, roi_margin_mm=15)
    assert dice(res.mask, a | b) > 0.85
    (lo, hi) = res.info["roi"]
    assert all(h - l <= 31 for l, h in zip(lo, hi))
    assert res.changed_box is not None and all(
        lo[i] <= res.changed_box[0][i] and res.changed_box[1][i] <= hi[i] for i in range(3))
