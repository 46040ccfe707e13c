"""The "uncertain" presence state in the Slicer logic (real MRML, PyPI slicer-core) and the panel
(PySide6 offscreen): the segment is kept, named "Left lung ?", and the status line says to review it."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")

import pytest  # noqa: E402

from _module_helpers import LungThresholdEngine  # noqa: E402

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")

from _mrml_fixtures import ct, env  # noqa: E402,F401 (fixtures)
from TextSegLogicLib import TextSegLogic  # noqa: E402
from TextSegLogicLib.mrml_io import TAG_NAME, TAG_PRESENCE, segment_tag  # noqa: E402


class Unsure(LungThresholdEngine):
    def segment(self, volume, prompts, **kw):
        res = super().segment(volume, prompts, **kw)
        res.presence = {"left lung": 0.55, "right lung": 0.97}
        res.mark_uncertain("left lung", "left lung: the evidence is in between")
        return res


def names(seg_node) -> list[str]:
    s = seg_node.GetSegmentation()
    return [s.GetSegment(s.GetNthSegmentID(i)).GetName() for i in range(s.GetNumberOfSegments())]


def test_logic_names_uncertain_segment_and_reports_it(env, ct):
    logic = TextSegLogic(**env.logics(), engine=Unsure())
    job = logic.start(ct, "left lung, right lung", threaded=False)
    assert job.wait(30)
    seg_node = logic.finish(job)
    assert names(seg_node) == ["Left lung ?", "Right lung"]
    s = seg_node.GetSegmentation()
    first = s.GetSegment(s.GetNthSegmentID(0))
    assert segment_tag(first, TAG_PRESENCE) == "uncertain" and segment_tag(first, TAG_NAME) == "Left lung ?"
    assert job.uncertain == {"Left lung ?": 0.55} and job.not_found == {}
    assert job.review_line() == "1 uncertain: review Left lung ? (0.55)."
    left, right = job.measurements
    assert left.presence_state == "uncertain" and left.presence_probability == 0.55 and left.voxels > 1000
    assert right.presence_state == "found"


def test_rerun_found_reuses_the_uncertain_segment(env, ct):
    """A later run that finds it for sure replaces TextSeg's own "Left lung ?" (renamed "Left lung")."""
    logic = TextSegLogic(**env.logics(), engine=Unsure())
    job = logic.start(ct, "left lung", threaded=False)
    assert job.wait(30)
    seg_node = logic.finish(job)
    logic.set_engine(LungThresholdEngine())
    job = logic.start(ct, "left lung", seg_node, threaded=False)
    assert job.wait(30)
    assert names(logic.finish(job)) == ["Left lung"] and job.review_line() == ""


def test_panel_status_and_table_show_uncertain(monkeypatch):
    QtWidgets = pytest.importorskip("Qt.QtWidgets", reason="Qt.py + PySide6 not installed")
    from test_module_panel import wait_job

    from TextSegLogicLib.settings import TextSegSettings
    from TextSegPanelLib import qt_compat as qc
    from TextSegPanelLib.controller import TextSegController
    from TextSegPanelLib.panel import TextSegPanel
    from _module_helpers import CT_CHEST
    from slicer_bootstrap import make_scene

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    scene = make_scene()
    node = scene.load_volume(CT_CHEST)
    panel = TextSegPanel()
    panel.show()
    holder = {"seg": None}
    logic = TextSegLogic(**scene.logics(), engine=Unsure())
    ctrl = TextSegController(panel, logic, lambda: node, lambda: holder["seg"], lambda n: holder.update(seg=n),
                             settings=TextSegSettings({}), test_connection=lambda url, key: (True, ""),
                             place=lambda kind, on: None, refine_inputs=lambda: ([], [], []))
    try:
        panel.prompt_edit.setPlainText("left lung, right lung")
        panel.segment_button.click()
        wait_job(app, ctrl)
        status = qc.text(panel.status_label)
        assert status.startswith("2 segment(s)") and "1 uncertain: review Left lung ? (0.55)." in status, status
        assert panel.results_table.item(0, 0).text() == "Left lung ?"
        assert panel.results_table.item(1, 0).text() == "Right lung"
    finally:
        panel.close()
        panel.deleteLater()
