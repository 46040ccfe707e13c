"""The TextSeg panel (the same code the Slicer widget uses) under PySide6, offscreen."""
from __future__ import annotations

import os
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")

import pytest  # noqa: E402

from _module_helpers import CT_CHEST, ROOT, LungThresholdEngine, wait_for_download  # noqa: E402

QtWidgets = pytest.importorskip("Qt.QtWidgets", reason="Qt.py + PySide6 not installed")
from Qt import QtCore, QtTest  # noqa: E402

from TextSegLogicLib.completion import Suggestion, make_suggester, replace_fragment  # noqa: E402
from TextSegPanelLib import qt_compat as qc  # noqa: E402
from TextSegPanelLib.panel import TextSegPanel  # noqa: E402

VOCAB = ["left kidney", "right kidney", "kidney cyst", "liver", "spleen", "left lung", "right lung", "left kidney"]


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


@pytest.fixture()
def panel(app):
    p = TextSegPanel(suggest=make_suggester(VOCAB))
    p.resize(400, 800)
    p.show()
    yield p
    p.close()
    p.deleteLater()


def type_text(widget, text: str) -> None:
    QtTest.QTest.keyClicks(widget, text)


def test_lt_kid_suggests_left_kidney_and_pick_builds_prompt_list(panel):
    type_text(panel.prompt_edit, "lt kid")
    names = [s.preferred for s in panel.suggestions()]
    assert names[0] == "Left kidney" and "Right kidney" not in names
    assert panel.suggestions()[0].trained  # a term of the model's vocabulary: starred
    assert qc.is_visible(panel.suggestion_list) and qc.count(panel.suggestion_list) == len(names)
    panel.pick_suggestion(0)
    type_text(panel.prompt_edit, "spl")
    assert [s.preferred for s in panel.suggestions()][0] == "Spleen"
    item = panel.suggestion_list.item(0)
    panel.suggestion_list.itemClicked.emit(item)
    assert panel.prompts() == ["Left kidney", "Spleen"]


def test_knowledge_completer_in_panel(app):
    from TextSegLogicLib.completion import make_suggester

    panel = TextSegPanel(suggest=make_suggester())
    type_text(panel.prompt_edit, "lt kid")
    first = panel.suggestions()[0]
    assert first.preferred == "Left kidney" and first.region == "abdomen" and "64033007" in first.code
    assert "Left kidney" in panel.suggestion_list.item(0).text() and "abdomen" in panel.suggestion_list.item(0).text()
    panel.pick_suggestion(0)
    assert panel.prompts() == ["Left kidney"]
    panel.deleteLater()


def test_suggestion_row_shows_synonym_preferred_region_and_code():
    s = Suggestion("kidney", synonym="renal", region="abdomen", code="SCT:64033007")
    assert s.display() == "renal \u2192 kidney   [abdomen \u00b7 SCT:64033007]"
    assert replace_fragment("liver,\nlt kid", "left kidney") == "liver,\nleft kidney, "


def test_ctrl_enter_starts_run_and_button_toggles(panel):
    started: list[list[str]] = []
    panel.on_run = lambda prompts: (started.append(prompts), panel.set_running(True))
    panel.on_cancel = lambda: panel.set_running(False)
    panel.prompt_edit.setPlainText("liver, spleen")
    panel.activateWindow()
    assert QtTest.QTest.qWaitForWindowActive(panel, 2000)
    panel.prompt_edit.setFocus()
    QtTest.QTest.keyClick(panel.prompt_edit, QtCore.Qt.Key_Return, QtCore.Qt.ControlModifier)
    assert started == [["liver", "spleen"]]
    assert qc.text(panel.segment_button) == "Cancel" and not qc.is_enabled(panel.prompt_edit)
    panel.segment_button.click()
    assert qc.text(panel.segment_button) == "Segment"
    assert panel.run_shortcut.context() == QtCore.Qt.WidgetWithChildrenShortcut


def test_cpu_warning_hooks_and_history(panel):
    panel.device_combo.setCurrentIndex(3)
    assert "bundled" in qc.text(panel.device_warning) and "slow" not in qc.text(panel.device_warning)
    panel.model_combo.setCurrentIndex(panel.model_combo.findData("sat-nano"))
    assert "slow for SAT" in qc.text(panel.device_warning)
    panel.model_combo.setCurrentIndex(panel.model_combo.findData("remote"))
    assert qc.text(panel.device_warning) == ""
    panel.model_combo.setCurrentIndex(panel.model_combo.findData("sat-nano"))
    panel.device_combo.setCurrentIndex(0)
    assert qc.text(panel.device_warning) == ""
    assert not qc.is_enabled(panel.export_button) and "after a run" in qc.tooltip(panel.export_button)
    panel.set_server_history(["http://a:8000", "http://b:8000"])
    assert qc.count(panel.server_combo) == 2 and qc.current_text(panel.server_combo) == "http://a:8000"


# -- panel + controller + real MRML ------------------------------------------------------
slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")


@pytest.fixture()
def wired(panel):
    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic
    from TextSegLogicLib.settings import TextSegSettings
    from TextSegPanelLib.controller import TextSegController

    env = make_scene()
    node = env.load_volume(CT_CHEST)
    gate = threading.Event()
    gate.set()
    engine = LungThresholdEngine(slab=2, gate=gate)
    logic = TextSegLogic(**env.logics(), engine=engine)
    holder = {"seg": None, "placed": [], "clicks": ([], [], []), "node": node, "logic": logic}
    store: dict[str, str] = {}
    ctrl = TextSegController(
        panel, logic, lambda: node, lambda: holder["seg"], lambda n: holder.update(seg=n),
        settings=TextSegSettings(store),
        test_connection=lambda url, key: (url.startswith("http"), f"Connected to {url}"),
        place=lambda kind, on: holder["placed"].append((kind, on)),
        refine_inputs=lambda: holder["clicks"],
    )
    return ctrl, engine, gate, holder


def wait_job(app, ctrl, timeout=20.0):
    t0 = time.time()
    while ctrl.job is not None and not ctrl.job.is_final and time.time() - t0 < timeout:
        ctrl.job.wait(0.05)
    ctrl.poll()
    app.processEvents()


def test_run_progress_import_export_and_undo(app, panel, wired, tmp_path):
    ctrl, engine, gate, holder = wired
    panel.prompt_edit.setPlainText("left lung, right lung")
    gate.clear()
    panel.segment_button.click()
    assert ctrl.job is not None and qc.text(panel.segment_button) == "Cancel"
    gate.set()
    while engine.tiles_run < 3:
        time.sleep(0.005)
    ctrl.poll()
    assert qc.value(panel.progress_bar) > 0 and "tiles" in panel.progress_bar.format()
    wait_job(app, ctrl)
    assert qc.text(panel.segment_button) == "Segment"
    status = qc.text(panel.status_label)
    assert status.startswith("2 segment(s)") and "lung-threshold" in status
    assert holder["seg"].GetSegmentation().GetNumberOfSegments() == 2
    assert qc.is_enabled(panel.undo_button) and qc.is_enabled(panel.export_button)
    out = tmp_path / "lungs"
    ctrl.export(str(out))
    assert qc.text(panel.status_label) == f"Saved {out}.seg.nrrd"
    import slicerio

    assert [s["name"] for s in slicerio.read_segmentation(f"{out}.seg.nrrd")["segments"]] == ["Left lung", "Right lung"]
    ctrl.export(str(out) + ".seg.nrrd")
    assert "already exists" in qc.text(panel.status_label)
    panel.undo_button.click()
    assert holder["seg"].GetSegmentation().GetNumberOfSegments() == 0


def test_cancel_from_button_stops_promptly(app, panel, wired):
    ctrl, engine, gate, holder = wired
    panel.prompt_edit.setPlainText("left lung")
    gate.clear()
    QtTest.QTest.mouseClick(panel.segment_button, QtCore.Qt.LeftButton)
    QtTest.QTest.mouseClick(panel.segment_button, QtCore.Qt.LeftButton)  # now "Cancel"
    gate.set()
    wait_job(app, ctrl)
    assert engine.tiles_run <= 1
    assert "Cancelled" in qc.text(panel.status_label) and holder["seg"] is None
    assert qc.text(panel.segment_button) == "Segment"


def test_vocabulary_hint_and_test_connection(app, panel, wired):
    ctrl, engine, gate, holder = wired
    assert panel.modality_combo.itemText(0) == "Auto (CT)"
    panel.prompt_edit.setPlainText("left lung, liver, ")
    hint = qc.text(panel.hint_label)
    assert "\u201cliver\u201d is not a trained term" in hint and "left lung" not in hint
    panel.prompt_edit.setPlainText("left lnug, ")  # the knowledge tree forgives the typo
    assert qc.text(panel.hint_label) == ""
    panel.server_combo.setEditText("http://gpu-box:8000")
    panel.test_connection_button.click()
    assert qc.text(panel.status_label).startswith("Connecting")  # the request runs off the GUI thread
    t0 = time.time()
    while qc.text(panel.status_label).startswith("Connecting") and time.time() - t0 < 5:
        app.processEvents()
        time.sleep(0.01)
    assert qc.text(panel.status_label) == "Connected to http://gpu-box:8000"
    assert ctrl.settings.server_history() == ["http://gpu-box:8000"]
    panel.device_combo.setCurrentIndex(2)
    assert ctrl.settings.device == "mps"


def test_refine_section_refines_last_run_segment(app, panel, wired):
    pytest.importorskip("TextSegLib.refine", reason="TextSegLib.refine is not installed")
    import numpy as np

    ctrl, engine, gate, holder = wired
    assert qc.is_enabled(panel.refine_button)
    panel.prompt_edit.setPlainText("right lung")
    panel.segment_button.click()
    wait_job(app, ctrl)
    assert qc.count(panel.refine_segment_combo) == 1 and qc.current_text(panel.refine_segment_combo) == "Right lung"
    panel.negative_button.click()
    assert holder["placed"] == [("negative", True)]
    seg, logic, node = holder["seg"], holder["logic"], holder["node"]
    sid = qc.current_data(panel.refine_segment_combo)
    from TextSegLogicLib import mrml_io

    vol = logic.volume(node)
    mask = mrml_io.segment_array_ijk(logic.segmentations_logic, seg, sid, vol)
    inside = np.argwhere(mask)[len(np.argwhere(mask)) // 2]
    holder["clicks"] = ([], [tuple(vol.ijk_to_ras_points(inside)[0])], [])
    panel.refine_button.click()
    assert qc.text(panel.status_label).startswith("Refined (segment updated)")
    assert not mrml_io.segment_array_ijk(logic.segmentations_logic, seg, sid, vol)[tuple(inside)]
    panel.refine_undo_button.click()
    assert mrml_io.segment_array_ijk(logic.segmentations_logic, seg, sid, vol)[tuple(inside)]


def test_unavailable_model_is_explained(app, panel, tmp_path, monkeypatch):
    """SAT-Pro without its weights (an empty model home): the run is refused with the reason."""
    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic, engines
    from TextSegPanelLib.controller import TextSegController

    monkeypatch.setenv("TEXTSEG_HOME", str(tmp_path / "home"))
    env = make_scene()
    node = env.load_volume(CT_CHEST)
    ctrl = TextSegController(panel, TextSegLogic(**env.logics()), lambda: node, lambda: None)
    ok, reason = engines.available("sat-pro")
    assert not ok and "SAT-Pro" in reason
    panel.model_combo.setCurrentIndex(panel.model_combo.findData("sat-pro"))
    panel.prompt_edit.setPlainText("liver")
    panel.segment_button.click()
    assert ctrl.job is None and qc.text(panel.status_label) == reason
    assert panel.model_combo.itemData(panel.model_combo.findData("sat-pro"), QtCore.Qt.ToolTipRole) == reason


def test_panel_screenshot(app, tmp_path):
    """Renders the panel offscreen. With TEXTSEG_UPDATE_SCREENSHOT=1 it refreshes
    Resources/Screenshots/panel.png (the README and the extension metadata link it);
    otherwise it writes to a temporary folder, so a test run leaves the tree clean."""
    from TextSegLogicLib.completion import make_suggester

    panel = TextSegPanel(suggest=make_suggester())
    panel.resize(400, 820)
    panel.volume_combo.addItem("CTChest4")
    panel.segmentation_combo.addItem("CTChest4 TextSeg")
    panel.segmentation_combo.setCurrentIndex(1)
    panel.device_combo.setCurrentIndex(3)
    panel.server_combo.setEditText("http://gpu-server:8000")
    panel.show_finished("2 segment(s) in 3.1 s (+0.02 s import) with textseg-mini.")
    panel.undo_button.setEnabled(True)
    type_text(panel.prompt_edit, "left lung, right lung, lt kid")
    panel.show()
    app.processEvents()
    if os.environ.get("TEXTSEG_UPDATE_SCREENSHOT") == "1":
        out = ROOT / "Resources" / "Screenshots" / "panel.png"
    else:
        out = tmp_path / "panel.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    assert panel.grab().save(str(out))
    assert out.stat().st_size > 5000
    panel.close()
    panel.deleteLater()


# -- issue 12 / 13: panel behaviour --------------------------------------------------------
def test_ambiguous_prompt_shows_the_completer(app, panel, wired, monkeypatch):
    from TextSegLib.knowledge.resolved import AmbiguousPromptError
    from TextSegLib.knowledge import default_tree

    ctrl, engine, gate, holder = wired
    tree = default_tree()
    cands = [tree.get(tree.map_vocabulary(["left lung"])["left lung"]), tree.get(tree.map_vocabulary(["right lung"])["right lung"])]

    def ambiguous(*a, **k):
        raise AmbiguousPromptError("lng", cands)

    monkeypatch.setattr(ctrl.logic, "resolve", ambiguous)
    panel.prompt_edit.setPlainText("liver, lng")
    panel.segment_button.click()
    assert ctrl.job is None and "ambiguous" in qc.text(panel.status_label)
    assert qc.is_visible(panel.suggestion_list) and [s.preferred for s in panel.suggestions()] == ["Left lung", "Right lung"]
    panel.pick_suggestion(1)
    assert panel.prompts() == ["liver", "Right lung"]


def test_results_table_reports_volume_voxels_and_intensities(app, panel, wired):
    ctrl, engine, gate, holder = wired
    panel.prompt_edit.setPlainText("left lung")
    panel.segment_button.click()
    wait_job(app, ctrl)
    table = panel.results_table
    assert qc.is_visible(table) and table.rowCount() == 1
    cells = [table.item(0, c).text() for c in range(7)]
    m = ctrl.job.measurements[0]
    assert cells[0] == "Left lung" and cells[1] == f"{m.volume_ml:.1f}" and cells[2] == str(m.voxels)
    assert float(cells[3]) < -500  # mean HU of lung


def test_completer_marks_the_selected_models_terms(app):
    """Bundled model selected: 'SMA' (superior mesenteric artery) is one of its terms, hippocampus is not."""
    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic
    from TextSegPanelLib.controller import TextSegController

    env = make_scene()
    p = TextSegPanel()
    ctrl = TextSegController(p, TextSegLogic(**env.logics()), lambda: None, lambda: None)
    assert qc.current_data(p.model_combo) == "bundled"
    terms = ctrl.model_terms("ct")
    assert "liver" in terms and not any("hippocampus" in t for t in terms)
    rows = p.suggest("liver", "ct")
    assert rows[0].preferred == "Liver" and rows[0].trained
    assert not any(r.trained for r in p.suggest("hippocampus", "mri"))
    p.deleteLater()


def test_default_model_is_bundled_and_never_remote(app, tmp_path, monkeypatch):
    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic
    from TextSegPanelLib.controller import TextSegController, restore_choices

    monkeypatch.setenv("TEXTSEG_HOME", str(tmp_path / "home"))
    env = make_scene()
    p = TextSegPanel()
    ctrl = TextSegController(p, TextSegLogic(**env.logics()), lambda: None, lambda: None)
    ctrl.refresh_models()  # e.g. after the dependency install
    assert qc.current_data(p.model_combo) == "bundled"
    p.model_combo.setCurrentIndex(p.model_combo.findData("sat-nano"))  # not downloaded here
    assert not p.download_button.isHidden() and "SAT-Nano" in qc.text(p.download_label)
    restore_choices(p, {"model": "bundled", "modality": "mri", "device": "cpu"})
    assert [qc.current_data(c) for c in (p.model_combo, p.modality_combo, p.device_combo)] == ["bundled", "mri", "cpu"]
    p.deleteLater()


def test_download_refused_network_is_one_line(app, tmp_path, monkeypatch):
    """SAT-Nano's Download button, offline: the pull command's one-line error, no traceback."""
    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic
    from TextSegPanelLib.controller import TextSegController

    monkeypatch.setenv("TEXTSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env = make_scene()
    p = TextSegPanel()
    ctrl = TextSegController(p, TextSegLogic(**env.logics()), lambda: None, lambda: None)
    p.model_combo.setCurrentIndex(p.model_combo.findData("sat-nano"))
    p.download_button.click()
    assert qc.text(p.download_button) == "Cancel download"
    wait_for_download(ctrl)
    message = qc.text(p.download_label)
    assert ctrl.download_job is None and "Traceback" not in message and "SAT-Nano" in message, message
    p.download_button.click()
    p.download_button.click()  # start then cancel
    assert ctrl.download_job is None or ctrl.download_job.state == "cancelled"
    p.deleteLater()


def test_status_says_not_found_with_the_reason(app, panel, wired, monkeypatch):
    ctrl, engine, gate, holder = wired
    real = engine.segment

    def absent(volume, prompts, **kw):
        res = real(volume, prompts, **kw)
        res.mark_not_found("right lung", "volume 0.4 mL below the 150 mL minimum")
        return res

    monkeypatch.setattr(engine, "segment", absent)
    panel.prompt_edit.setPlainText("left lung, right lung")
    panel.segment_button.click()
    wait_job(app, ctrl)
    status = qc.text(panel.status_label)
    assert status.startswith("1 segment(s)") and "Right lung: not found (volume 0.4 mL below the 150 mL minimum)" in status
    assert panel.results_table.item(1, 1).text() == "not found"
