"""Built-in refiner: analysis vs. decision grids, small-structure ROI, plausibility check."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from TextSegLib.refine import BuiltinRefiner, refine
from TextSegLib.refine.algorithms import growcut_available
from TextSegLib.refine.intensity import IntensityModel
from TextSegLib.refine.regions import regrid, to_coarse, to_fine
from TextSegLib.volume import Volume, make_ijk_to_ras

from _refine_helpers import ball, dice

needs_growcut = pytest.mark.skipif(not growcut_available(), reason="slicer-core (GrowCut) not installed")


def test_regrid_equals_upsampling_then_sampling():
    rng = np.random.default_rng(0)
    for _ in range(100):
        shape = rng.integers(5, 30, 3)
        stride = rng.integers(1, 5, 3)
        new = np.minimum(rng.integers(1, 5, 3), stride)
        coarse = tuple(len(range(int(s) // 2, int(n), int(s))) for s, n in zip(stride, shape))
        a = rng.random(coarse) > 0.5
        assert np.array_equal(regrid(a, stride, new, shape), to_coarse(to_fine(a, stride, shape), new))


def _lung_nodule(seed: int = 3):
    """A 7 mm nodule (soft tissue) in lung on a large 0.6 x 0.6 x 5 mm scan:
    the ROI around a click is far more than the voxel budget at full resolution."""
    spacing = (0.6, 0.6, 5.0)
    shape = (320, 320, 24)
    rng = np.random.default_rng(seed)
    nodule = ball(shape, (160, 160, 12), 7.0, spacing)
    img = np.where(nodule, 30.0, -800.0) + rng.normal(0, 25, shape)
    img = ndimage.gaussian_filter(img, (1.0, 1.0, 0.0))  # a soft (partial-volume) edge
    vol = Volume(img.astype(np.float32), make_ijk_to_ras(spacing, (0.0, 0.0, 0.0), np.eye(3)), "ct", "nodule")
    return vol, nodule


@needs_growcut
def test_small_nodule_in_large_scan_is_refined_at_full_resolution():
    vol, ref = _lung_nodule()
    start = ndimage.distance_transform_edt(ref, sampling=vol.spacing) > 1.8  # missed rim
    assert 0.6 < dice(start, ref) < 0.8
    rim = ref & ~start
    click = np.argwhere(rim)[np.argmax(ndimage.distance_transform_edt(rim)[rim])]
    res = refine(vol, start, positive_points=[click], points_space="ijk")
    # one click restores the rim at full resolution (a coarse grid gave blocky 2-4 voxel steps)
    assert dice(res.mask, ref) > 0.9, dice(res.mask, ref)
    assert not (res.mask & ~ndimage.binary_dilation(ref, iterations=2)).any()


@needs_growcut
def test_small_structure_gets_a_small_roi():
    vol, ref = _lung_nodule()
    r = BuiltinRefiner()
    radius = r.equivalent_radius(ref, vol.spacing)
    assert radius == pytest.approx(7.0, rel=0.15)
    big = ball(vol.shape, (160, 160, 12), 40.0, vol.spacing)
    assert r.equivalent_radius(big, vol.spacing) > 4 * radius


def _vessel_by_fat_and_muscle(seed: int = 5):
    """A 40 HU tube between fat (-100 HU, one side) and muscle (45 HU, the other
    side, touching it): intensity cannot gate, but it rules fat out."""
    shape = (40, 40, 20)
    rng = np.random.default_rng(seed)
    grid = np.ogrid[:40, :40, :20]
    tube = (grid[0] - 20) ** 2 + (grid[1] - 20) ** 2 <= 36 + 0 * grid[2]
    muscle = np.zeros(shape, bool)
    muscle[26:, :, :] = True
    img = np.where(tube, 40.0, np.where(muscle, 45.0, -100.0)) + rng.normal(0, 8, shape)
    vol = Volume(img.astype(np.float32), make_ijk_to_ras((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3)), "ct", "tube")
    return vol, tube & ~muscle, muscle


@needs_growcut
def test_plausibility_check_never_adds_fat_to_a_vessel():
    vol, tube, muscle = _vessel_by_fat_and_muscle()
    start = tube.copy()
    start[:, :16, :] = False  # the tube's left part is missed, next to fat
    click = (20, 15, 10)
    assert tube[click] and not start[click]
    res = refine(vol, start, positive_points=[click], points_space="ijk")
    added = res.mask & ~start
    assert np.count_nonzero(added & tube) > 0.5 * np.count_nonzero(tube & ~start)
    assert np.count_nonzero(added & (vol.array < -50)) == 0  # no fat-like voxel


def test_intensity_model_rules():
    rng = np.random.default_rng(0)
    img = np.concatenate([rng.normal(40, 8, 2000), rng.normal(-100, 8, 1000), rng.normal(45, 8, 1000)])
    fg = np.zeros(img.shape, bool)
    fg[:2000] = True
    model = IntensityModel.learn(img, fg, ~fg, np.zeros((0, 1), int), np.zeros((0, 1), int))
    assert model is not None and model.overlap > 0.3  # muscle makes it inseparable: no gate
    assert not model.can_add(np.array([-100.0]), 0.3).any()  # fat is never added
    assert model.can_add(np.array([42.0]), 0.3).all()
    assert model.can_remove(np.array([-100.0]), 0.3).all()
    assert not model.can_remove(np.array([40.0]), 3.0).any()
