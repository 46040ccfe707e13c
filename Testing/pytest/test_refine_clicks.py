"""Built-in refiner over many clicks: no drift, deep clicks, intensity gate."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from TextSegLib.refine import BuiltinRefiner, RefineSession, refine
from TextSegLib.refine.algorithms import growcut_available
from TextSegLib.volume import Volume, make_ijk_to_ras

from _refine_helpers import ball, dice, protocol_click

pytestmark = pytest.mark.skipif(not growcut_available(), reason="slicer-core (GrowCut) not installed")


def _touching_scene(seed: int = 1):
    """A bright sphere (the target) pressed against a slab of almost the same
    intensity with no edge between them (a lesion on the chest wall)."""
    shape = (56, 48, 40)
    rng = np.random.default_rng(seed)
    target = ball(shape, (24, 24, 20), 10)
    slab = np.zeros(shape, bool)
    slab[34:, :, :] = True
    img = np.where(target, 200.0, np.where(slab, 190.0, 0.0)) + rng.normal(0, 12, shape)
    vol = Volume(img.astype(np.float32), make_ijk_to_ras((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3)), "ct", "touching")
    return vol, target & ~slab


def _lesion_on_wall(spacing=(0.6, 0.6, 5.0), seed: int = 1):
    """A 10 mm lesion flattened against a wall of almost its intensity, on a
    thin-in-plane / 5 mm-slice grid (the pyradiomics lung-lesion situation)."""
    shape = (90, 80, 12)
    c = tuple(n // 2 for n in shape)
    target = ball(shape, c, 10, spacing)
    wall = np.zeros(shape, bool)
    wall[int(c[0] + 8 / spacing[0]):] = True
    rng = np.random.default_rng(seed)
    img = np.where(target, 200.0, np.where(wall, 195.0, 0.0)) + rng.normal(0, 12, shape)
    vol = Volume(img.astype(np.float32), make_ijk_to_ras(spacing, (0.0, 0.0, 0.0), np.eye(3)), "ct", "lesion")
    return vol, target & ~wall


def test_dice_does_not_drift_down_over_many_clicks():
    vol, ref = _lesion_on_wall()
    start = ndimage.distance_transform_edt(ref, sampling=vol.spacing) > 2.5  # a too-tight mask
    session = RefineSession(vol, start)
    mask, dices = start, [dice(start, ref)]
    for _ in range(15):
        click = protocol_click(mask, ref)
        if click is None:
            break
        p, positive = [click[0]], click[1]
        mask = session.add(p if positive else (), () if positive else p, points_space="ijk").mask
        dices.append(dice(mask, ref))
    assert max(dices[:4]) >= dices[0] + 0.2  # the clicks do help
    # and later clicks never undo much of it (the refiner before this test: 0.98 -> 0.92 -> 0.98 ...)
    worst = min(d - max(dices[:i]) for i, d in enumerate(dices) if i >= 3)
    assert worst >= -0.04, dices


def test_one_edit_is_bounded_when_intensity_cannot_tell():
    vol, ref = _touching_scene()
    start = ndimage.binary_erosion(ref, iterations=3)
    res = refine(vol, start, [(24, 24, 31)], points_space="ijk")  # in the rim next to the slab
    added = res.mask & ~start
    # the slab (edge-less, ~30x more voxels than the target) is not swallowed by one click
    assert np.count_nonzero(added & ~ref) < 0.5 * np.count_nonzero(start)


def test_deep_click_grows_the_roi_fixed_margin_does_not():
    shape = (40, 40, 200)  # a long bright tube, 200 mm; the mask covers its first 60 mm
    grid = np.ogrid[:40, :40, :200]
    tube = ((grid[0] - 20) ** 2 + (grid[1] - 20) ** 2 <= 64) & (grid[2] >= 10) & (grid[2] < 190)
    rng = np.random.default_rng(0)
    img = np.where(tube, 200.0, 0.0) + rng.normal(0, 10, shape)
    vol = Volume(img.astype(np.float32), make_ijk_to_ras((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3)), "ct", "tube")
    mask = tube & (grid[2] < 70)
    click = [(20, 20, 130)]
    auto = refine(vol, mask, click, points_space="ijk")
    fixed = refine(vol, mask, click, points_space="ijk", roi_margin_mm=30)
    assert dice(auto.mask, tube) > 0.95
    assert dice(fixed.mask, tube) < dice(auto.mask, tube) - 0.1
    lo, hi = fixed.info["roi"]
    assert all(h - l <= 61 for l, h in zip(lo, hi))  # an explicit margin is a hard bound


def test_intensity_gate_only_when_separable():
    r = BuiltinRefiner()
    img = np.zeros((30, 30, 30), np.float32)
    img[:15] = 1000.0
    mask = np.zeros(img.shape, bool)
    mask[:15] = True
    gate = r.foreground_like(img, mask, np.array([[5, 5, 5]]), np.zeros((0, 3), int))
    assert gate is not None and gate[:15].all() and not gate[15:].any()
    noisy = np.random.default_rng(0).normal(0, 10, img.shape).astype(np.float32)  # same tissue both sides
    assert r.foreground_like(noisy, mask, np.array([[5, 5, 5]]), np.zeros((0, 3), int)) is None
