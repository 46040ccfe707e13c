"""The Slicer logic segmenting through the "Remote server" choice equals the same engine run locally."""
from __future__ import annotations

import numpy as np
import pytest

from _module_helpers import CT_CHEST, LungThresholdEngine
from _remote_helpers import KEY, running_server

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")

from slicer_bootstrap import make_scene  # noqa: E402
from TextSegLogicLib import TextSegLogic, engines, mrml_io  # noqa: E402


@pytest.fixture(scope="module")
def env():
    return make_scene()


def _segments(env, logic, seg_node, node) -> dict[str, tuple[str, tuple, np.ndarray]]:
    s = seg_node.GetSegmentation()
    out = {}
    for i in range(s.GetNumberOfSegments()):
        sid = s.GetNthSegmentID(i)
        seg = s.GetSegment(sid)
        arr = mrml_io.segment_array_ijk(env.segmentations_logic, seg_node, sid, logic.volume(node))
        out[seg.GetName()] = (seg.GetTerminology(), tuple(round(c, 4) for c in seg.GetColor()), arr)
    return out


def test_remote_choice_creates_the_same_coded_segments(env):
    node = env.load_volume(CT_CHEST)
    try:
        local_logic = TextSegLogic(**env.logics(), engine=LungThresholdEngine())
        local = _segments(env, local_logic, local_logic.segment(node, "left lung, right lung"), node)
        engine = LungThresholdEngine()
        with running_server(lambda: engine, api_key=KEY) as url:
            assert engines.available("remote") == (True, "")
            logic = TextSegLogic(**env.logics())
            logic.use_model("remote", url=url, api_key=KEY)
            job = logic.start(node, "left lung, right lung")
            polls = 0
            while job.poll().status == "running":  # short non-blocking steps, as the panel's timer does
                polls += 1
                import time

                time.sleep(0.02)
            assert polls >= 1 and type(job.runner.client).__name__ == "RemoteEngine"
            remote = _segments(env, logic, logic.finish(job), node)
        assert engine.tiles_run > 0  # the work really ran on the server side
        assert sorted(remote) == sorted(local) == ["Left lung", "Right lung"]
        for name in local:
            assert remote[name][0] == local[name][0] and "^39607008^Lung" in remote[name][0]
            assert remote[name][1] == local[name][1]
            assert np.array_equal(remote[name][2], local[name][2]) and remote[name][2].sum() > 1000
    finally:
        env.scene.RemoveNode(node)
