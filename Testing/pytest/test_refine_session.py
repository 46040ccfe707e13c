"""RefineSession: negative clicks persist across calls; undo/redo of interactions."""
from __future__ import annotations

import numpy as np
import pytest

from _refine_helpers import ball, two_spheres
from TextSegLib.refine import BuiltinRefiner, RefineInputError, RefineSession, refine
from TextSegLib.volume import Volume


@pytest.fixture(scope="module")
def leaky():
    """Spheres A and B joined by a bright bridge; the mask leaks into B and misses a cap of A."""
    vol, a, b = two_spheres()
    img = vol.array.copy()
    bridge = np.zeros(a.shape, bool)
    bridge[14:34, 18:23, 16:21] = True
    img[bridge] = 200
    vol = Volume(img, vol.ijk_to_ras, "ct", "bridged")
    start = (a | b | bridge) & ~ball(a.shape, (20, 20, 18), 4)
    return vol, a, b, start


def test_removed_leak_stays_removed_after_positive_click(leaky):
    vol, a, b, start = leaky
    given = start.copy()
    # a refiner without the per-click size cap, intensity gate and size scaling, which on their own
    # already keep this leak out: the lock is what is tested here
    permissive = BuiltinRefiner(max_change_fraction=0, intensity_gate=False, size_ref_mm=0)
    s = RefineSession(vol, start, engine=permissive)
    r1 = s.add(negative_points=[(34, 20, 18)], points_space="ijk")
    assert not (s.mask & b).any(), "the negative click removes the leak"
    s.add(positive_points=[(20, 20, 18)], points_space="ijk")
    assert not (s.mask & b).any(), "the leak must not grow back"
    assert s.mask[20, 20, 18] and (s.mask & a).sum() > (r1.mask & a).sum()
    plain = refine(vol, r1.mask, [(20, 20, 18)], points_space="ijk", engine=permissive).mask
    assert (plain & b).any(), "without the session the leak grows back (the test is meaningful)"
    assert (start == given).all()  # the caller's mask is untouched
    assert len(s.negative_points) == 1 and len(s.positive_points) == 1


def test_positive_click_inside_removed_part_unlocks_it(leaky):
    vol, a, b, start = leaky
    s = RefineSession(vol, start)
    s.add(negative_points=[(34, 20, 18)], points_space="ijk")
    s.add(positive_points=[(34, 20, 18)], points_space="ijk")
    assert s.mask[34, 20, 18]
    assert not s.locked_background[34, 20, 18]


def test_undo_redo_restore_mask_and_lock(leaky):
    vol, a, b, start = leaky
    s = RefineSession(vol, start)
    r1 = s.add(negative_points=[(34, 20, 18)], points_space="ijk")
    r2 = s.add(positive_points=[(20, 20, 18)], points_space="ijk")
    assert s.undo() is not None and (s.mask == r1.mask).all()
    assert s.undo() is not None and (s.mask == start).all() and not s.locked_background.any()
    assert s.undo() is None and not s.can_undo() and s.can_redo()
    s.redo()
    assert s.locked_background[34, 20, 18]
    s.redo()
    assert (s.mask == r2.mask).all() and not s.can_redo()
    s.undo()
    s.add(positive_points=[(20, 20, 18)], points_space="ijk")
    assert not s.can_redo(), "a new interaction drops the redo stack"
    with pytest.raises(ValueError):
        s.mask[0, 0, 0] = True  # read-only: edit a copy


def test_bad_click_is_a_clear_error(leaky):
    vol, _, _, start = leaky
    s = RefineSession(vol, start)
    with pytest.raises(RefineInputError, match="outside"):
        s.add(positive_points=[(500, 0, 0)], points_space="ijk")
    with pytest.raises(RefineInputError, match="shape"):
        RefineSession(vol, start[:-1])
    assert s.n_steps == 0


def test_refine_locked_background_is_never_added(leaky):
    vol, a, b, start = leaky
    locked = np.zeros(vol.shape, bool)
    locked[:, :, 18:] = True  # half of the image may not be added
    res = refine(vol, start & ~locked, [(20, 20, 17)], points_space="ijk", locked_background=locked)
    assert not (res.mask & locked & ~(start & ~locked)).any()
    with pytest.raises(RefineInputError, match="locked_background"):
        refine(vol, start, [(20, 20, 17)], points_space="ijk", locked_background=locked[:-1])


def test_boxes_in_ras_go_through_the_session(leaky):
    vol, a, b, start = leaky
    s = RefineSession(vol, start)
    corners = vol.ijk_to_ras_points(np.array([[0, 0, 0], [25, 39, 35]], float))
    res = s.add(boxes=[(corners.min(0), corners.max(0))])
    assert res.changed_box is not None and not s.mask[30:, :, :].any()
    assert s.undo() is not None and (s.mask == start).all()


def test_cancelled_click_leaves_the_session_unchanged(leaky):
    from TextSegLib.engine.base import CancelToken
    from TextSegLib.errors import CancelledError

    vol, a, b, start = leaky
    s = RefineSession(vol, start)
    s.add(negative_points=[(34, 20, 18)], points_space="ijk")
    mask, lock = s.mask.copy(), s.locked_background.copy()
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        s.add(positive_points=[(34, 20, 18)], points_space="ijk", cancel=token)  # would unlock first
    assert (s.mask == mask).all() and (s.locked_background == lock).all() and s.n_steps == 1
