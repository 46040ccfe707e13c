"""Points, boxes and blocks: conversions and validation (no segmentation)."""
from __future__ import annotations

import numpy as np
import pytest

from TextSegLib.refine.geometry import (
    Region, RefineInputError, box_to_voxels, changed_block, points_to_ijk, roi_around,
)

from _refine_helpers import oblique_direction, two_spheres


def test_points_round_to_nearest_voxel_in_both_spaces():
    vol, *_ = two_spheres(shape=(20, 20, 20), spacing=(0.7, 1.2, 2.0), direction=oblique_direction())
    ijk = np.array([[3, 4, 5], [19, 0, 19]])
    ras = vol.ijk_to_ras_points(ijk + np.array([0.45, -0.45, 0.3]))
    np.testing.assert_array_equal(points_to_ijk(vol, ras, "ras", "p"), ijk)
    np.testing.assert_array_equal(points_to_ijk(vol, ijk + 0.4, "ijk", "p"), ijk)
    with pytest.raises(RefineInputError, match="outside"):
        points_to_ijk(vol, vol.ijk_to_ras_points(np.array([20.0, 3, 3])), "ras", "p")
    with pytest.raises(RefineInputError, match="NaN"):
        points_to_ijk(vol, [(np.nan, 1, 1)], "ijk", "p")


def test_oblique_ras_box_selects_voxel_centres_inside():
    vol, *_ = two_spheres(shape=(20, 20, 20), spacing=(0.7, 1.2, 2.0), direction=oblique_direction())
    lo, hi = np.array([-8.0, 0.0, 35.0]), np.array([2.0, 12.0, 50.0])
    vb = box_to_voxels(vol, (lo, hi), "ras", 0)
    full = np.zeros(vol.shape, bool)
    full[vb.region.slices] = vb.inside
    ras = vol.ijk_to_ras_points(np.argwhere(np.ones(vol.shape, bool)).astype(float))
    expect = np.all((ras >= lo) & (ras <= hi), axis=1).reshape(vol.shape)
    np.testing.assert_array_equal(full, expect)
    assert vb.flat_axis is None


def test_flat_box_picks_one_slice():
    vol, *_ = two_spheres(shape=(20, 20, 20))
    corners = vol.ijk_to_ras_points(np.array([[2, 3, 7], [9, 12, 7]]))
    vb = box_to_voxels(vol, corners, "ras", 0)
    assert vb.flat_axis == 2 and vb.region == Region((2, 3, 7), (10, 13, 8)) and vb.inside.all()


def test_roi_and_changed_block():
    vol, *_ = two_spheres(shape=(20, 20, 20), spacing=(1.0, 2.0, 4.0))
    roi = roi_around(vol, np.array([[10, 10, 10]]), 4.0)
    assert roi == Region((6, 8, 9), (15, 13, 12))
    a = np.zeros((5, 6, 7), bool)
    b = a.copy()
    assert changed_block(a, b) is None
    b[1, 2, 3] = b[3, 2, 5] = True
    assert changed_block(a, b) == ((1, 2, 3), (4, 3, 6))
