"""nnInteractive adapter: call translation, and the real package where installed."""
from __future__ import annotations

import os

import numpy as np
import pytest

from TextSegLib.errors import ModelError
from TextSegLib.refine import RefineInputError, refine
from TextSegLib.refine.nninteractive import LICENSE_NOTE, NNInteractiveRefiner, nninteractive_available

from _refine_helpers import two_spheres


class RecordingSession:
    """Records the session calls the adapter makes; predicts 'click voxel on'."""

    def __init__(self):
        self.calls, self.target_buffer = [], None

    def set_image(self, image):
        self.calls.append(("set_image", image.shape))

    def set_target_buffer(self, buf):
        self.target_buffer = buf

    def add_initial_seg_interaction(self, seg, run_prediction=False):
        self.calls.append(("initial_seg", int(seg.sum()), run_prediction))
        self.target_buffer[:] = seg

    def add_point_interaction(self, coords, include_interaction=True, run_prediction=True):
        self.calls.append(("point", coords, include_interaction, run_prediction))
        self.target_buffer[coords] = 1 if include_interaction else 0

    def add_bbox_interaction(self, bbox, include_interaction=True, run_prediction=True):
        self.calls.append(("bbox", bbox, include_interaction, run_prediction))


def test_adapter_seeds_with_mask_then_adds_clicks_and_2d_boxes():
    vol, a, _ = two_spheres(shape=(24, 24, 20))
    sess = RecordingSession()
    ref = NNInteractiveRefiner(session=sess)
    res = refine(vol, a, [(2, 3, 4)], [(14, 20, 18)], boxes=[[(1, 1, 5), (9, 7, 5)]], points_space="ijk", engine=ref)
    kinds = [c[0] for c in sess.calls]
    assert kinds == ["set_image", "initial_seg", "point", "point", "bbox"]
    assert sess.calls[0][1] == (1, *vol.shape)
    assert sess.calls[1] == ("initial_seg", int(a.sum()), False)
    assert sess.calls[2] == ("point", (2, 3, 4), True, False)
    assert sess.calls[3][2] is False
    assert sess.calls[4] == ("bbox", [[1, 10], [1, 8], [5, 6]], True, True)  # half-open, one slice
    assert res.mask[2, 3, 4] and not a[2, 3, 4] and res.info["engine"] == "nninteractive"
    refine(vol, a, [(2, 3, 4)], points_space="ijk", engine=ref)
    assert [c[0] for c in sess.calls].count("set_image") == 1  # image sent once per volume


def test_adapter_rejects_3d_boxes_and_explains_missing_package():
    vol, a, _ = two_spheres(shape=(24, 24, 20))
    with pytest.raises(RefineInputError, match="2D boxes only"):
        refine(vol, a, boxes=[[(1, 1, 1), (9, 7, 5)]], points_space="ijk", engine=NNInteractiveRefiner(session=RecordingSession()))
    assert "non-commercial" in LICENSE_NOTE
    if not nninteractive_available():
        with pytest.raises(ModelError, match="not installed"):
            refine(vol, a, [(2, 3, 4)], points_space="ijk", engine="nninteractive")


@pytest.mark.skipif(not nninteractive_available(), reason="nnInteractive not installed (needs CUDA torch)")
@pytest.mark.skipif(not os.environ.get("TEXTSEG_NNINTERACTIVE_MODEL"), reason="TEXTSEG_NNINTERACTIVE_MODEL not set")
def test_real_nninteractive_adds_missed_sphere():
    vol, a, b = two_spheres()
    res = refine(vol, a, [(34, 20, 18)], points_space="ijk", engine="nninteractive")
    assert np.count_nonzero(res.mask & b) > 0.5 * b.sum()
