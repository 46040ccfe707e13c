"""Model grid: reorientation + resampling + crop and its exact inverse."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _engine_helpers import rotation
from TextSegLib.engine.resample import (
    make_grid, ras_axes, source_mask_from_prob, to_model_grid, to_source_grid,
)
from TextSegLib.errors import GeometryError
from TextSegLib.volume import Volume, make_ijk_to_ras

quat = st.tuples(*[st.floats(-1, 1) for _ in range(4)]).filter(lambda q: np.linalg.norm(q) > 0.2)
shapes = st.tuples(*[st.integers(2, 9) for _ in range(3)])
spacings = st.tuples(*[st.sampled_from([0.5, 0.8, 1.0, 1.5, 2.5, 3.0]) for _ in range(3)])
perm_flip = st.tuples(st.permutations([0, 1, 2]), st.tuples(*[st.sampled_from([-1, 1]) for _ in range(3)]))
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def oblique_volume(q, shape, spacing, pf, array=None) -> Volume:
    perm, signs = pf
    axes = np.eye(3)[:, list(perm)] * np.asarray(signs)
    # a small rotation keeps the nearest-axis assignment unambiguous
    small = rotation((8.0,) + tuple(q[1:])) if len(q) == 4 else np.eye(3)
    direction = small @ axes
    m = make_ijk_to_ras(spacing, (10.0, -20.0, 5.0), direction)
    if array is None:
        array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(array, m, "ct")


@SETTINGS
@given(quat, shapes, spacings, perm_flip, spacings)
def test_model_grid_voxels_sit_where_the_source_says(q, shape, spacing, pf, new_spacing):
    vol = oblique_volume(q, shape, spacing, pf)
    grid = make_grid(vol, new_spacing)
    assert np.allclose(grid.spacing, new_spacing)
    # model axes point (mostly) along +R, +A, +S
    d = grid.ijk_to_ras[:3, :3] / grid.spacing
    assert np.all(np.diag(d) > 0.5)
    idx = np.array([[0, 0, 0], [1, 2, 3], [s - 1 for s in grid.shape]], float)
    ras_model = idx @ grid.ijk_to_ras[:3, :3].T + grid.ijk_to_ras[:3, 3]
    ras_src = vol.ijk_to_ras_points(grid.model_to_source_index(idx))
    assert np.allclose(ras_model, ras_src, atol=1e-6)


@SETTINGS
@given(quat, shapes, spacings, perm_flip, spacings, st.tuples(*[st.floats(-2, 2) for _ in range(3)]))
def test_linear_field_is_reproduced_on_the_model_grid(q, shape, spacing, pf, new_spacing, coef):
    vol = oblique_volume(q, shape, spacing, pf)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    field = (vol.ijk_to_ras_points(ijk) @ np.asarray(coef)).reshape(shape).astype(np.float64)
    vol = vol.with_array(field)
    out, grid = to_model_grid(vol, new_spacing, dtype=np.float64)
    assert out.shape == grid.shape
    midx = np.stack(np.meshgrid(*[np.arange(s) for s in grid.shape], indexing="ij"), -1).reshape(-1, 3)
    src = grid.model_to_source_index(midx)
    inside = np.all((src >= -1e-9) & (src <= np.asarray(shape) - 1 + 1e-9), axis=1)
    ras = midx @ grid.ijk_to_ras[:3, :3].T + grid.ijk_to_ras[:3, 3]
    expected = ras @ np.asarray(coef)
    assert np.allclose(out.reshape(-1)[inside], expected[inside], atol=1e-6)


@SETTINGS
@given(quat, shapes, spacings, perm_flip, st.data())
def test_label_round_trip_is_voxel_exact_at_source_spacing(q, shape, spacing, pf, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    labels = rng.integers(0, 4, size=shape).astype(np.uint8)
    vol = oblique_volume(q, shape, spacing, pf, labels)
    on_model, grid = to_model_grid(vol, None, "nearest")
    assert sorted(on_model.shape) == sorted(shape)
    assert np.array_equal(to_source_grid(on_model, grid, vol, kind="mask"), labels)
    # with a crop that keeps every non-zero label, the round trip stays exact
    nz = np.argwhere(on_model > 0)
    if len(nz):
        start, stop = nz.min(0), nz.max(0) + 1
        cg = grid.with_crop(start, stop)
        cropped = on_model[tuple(slice(a, b) for a, b in zip(start, stop))]
        assert np.array_equal(to_source_grid(cropped, cg, vol, kind="mask"), labels)
    # probabilities back-mapped at the same spacing threshold to the same mask
    prob = on_model.astype(np.float32) / 3.0
    mask, p = source_mask_from_prob(prob, grid, 0.5)
    assert np.array_equal(mask, labels > 1.5)
    assert np.allclose(p, labels / 3.0, atol=1e-6)


@SETTINGS
@given(quat, shapes, spacings, perm_flip, spacings, st.integers(0, 100))
def test_prob_to_mask_back_mapping_is_consistent(q, shape, spacing, pf, new_spacing, seed):
    vol = oblique_volume(q, shape, spacing, pf)
    _, grid = to_model_grid(vol, new_spacing)
    prob = np.random.default_rng(seed).random(grid.shape).astype(np.float32)
    mask, p = source_mask_from_prob(prob, grid, 0.4)
    assert mask.shape == vol.shape and p.shape == vol.shape
    assert np.array_equal(mask, p > 0.4)
    assert p.min() >= 0 and p.max() <= 1
    # a constant probability maps to the same constant everywhere
    c = to_source_grid(np.full(grid.shape, 0.7, np.float32), grid, kind="prob")
    assert np.allclose(c, 0.7, atol=1e-6)


def test_ras_axes_of_lps_volume():
    perm, flip = ras_axes(np.diag([-1.0, -1.0, 1.0]))
    assert perm == (0, 1, 2) and flip == (True, True, False)
    perm, flip = ras_axes(np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float))
    assert perm == (2, 0, 1) and flip == (False, False, True)


def test_voxels_outside_the_crop_get_the_fill_value():
    vol = Volume(np.ones((10, 10, 4), np.float32), np.eye(4), "ct")
    arr, grid = to_model_grid(vol, None)
    cg = grid.with_crop((2, 2, 0), (8, 8, 4))
    back = to_source_grid(np.ones(cg.cropped_shape, np.float32), cg, kind="prob")
    assert back[5, 5, 1] == 1 and back[0, 0, 0] == 0 and back[9, 9, 3] == 0


def test_bad_inputs_raise_geometry_errors():
    vol = Volume(np.zeros((6, 6, 6), np.float32), np.eye(4), "ct")
    arr, grid = to_model_grid(vol, (2, 2, 2))
    with pytest.raises(GeometryError, match="not on the model grid"):
        to_source_grid(np.zeros((2, 2, 2)), grid)
    with pytest.raises(GeometryError, match="spacing"):
        to_model_grid(vol, (1, 0, 1))
    with pytest.raises(GeometryError, match="geometry differs"):
        to_source_grid(arr, grid, Volume(np.zeros((6, 6, 7), np.float32)))
    with pytest.raises(GeometryError, match="does not overlap"):
        grid.ras_box_to_index_box((100, 100, 100), (110, 110, 110))
    with pytest.raises(GeometryError, match="Crop box"):
        grid.with_crop((0, 0, 0), (0, 3, 3))
    lo, hi = grid.ras_box_to_index_box((1, 1, 1), (3, 3, 3))
    assert lo == (0, 0, 0) and hi == (3, 3, 3)


def test_sitk_reference_matches_grid():
    import SimpleITK as sitk

    vol = Volume(np.zeros((5, 6, 7), np.float32), make_ijk_to_ras((1, 2, 3), (1, 2, 3), np.diag([-1, -1, 1.0])))
    _, grid = to_model_grid(vol, (2, 2, 2))
    ref = grid.to_sitk_reference()
    assert tuple(ref.GetSize()) == grid.cropped_shape
    lps = np.array(ref.TransformIndexToPhysicalPoint((1, 1, 1)))
    ras = grid.cropped_ijk_to_ras @ np.array([1, 1, 1, 1.0])
    assert np.allclose(lps * [-1, -1, 1], ras[:3])
    assert isinstance(ref, sitk.Image)
