"""The module's Batch section (PySide6 offscreen + slicer-core): a real detached ``textseg batch``
with the bundled model on two small CT crops, watched through the controller, surviving the
module's cleanup; its report URL; a case loaded into a real MRML scene."""
from __future__ import annotations

import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")

import pytest  # noqa: E402

import _module_helpers  # noqa: E402,F401 - puts TextSeg/ and Testing/ on sys.path

QtWidgets = pytest.importorskip("Qt.QtWidgets", reason="Qt.py + PySide6 not installed")

from TextSegPanelLib import qt_compat as qc  # noqa: E402

PROMPTS = "liver, spleen"


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def _wired(app, store):
    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic
    from TextSegLogicLib.settings import TextSegSettings
    from TextSegPanelLib.controller import TextSegController
    from TextSegPanelLib.panel import TextSegPanel

    env = make_scene()
    panel = TextSegPanel(suggest=lambda *a, **k: [])
    panel.batch_section.setChecked(True)  # expanded (a collapsed section disables its contents)
    logic = TextSegLogic(**env.logics())
    ctrl = TextSegController(panel, logic, lambda: None, lambda: None, settings=TextSegSettings(store))
    opened: list[str] = []
    ctrl.batch.open_url = opened.append
    ctrl.batch.loaders = (env.load_volume, lambda path: _load_seg(env, path))
    ctrl.batch.extra_args = ("--threads", "1", "--no-thumbnails")
    return env, panel, logic, ctrl, opened


def _load_seg(env, path):
    """slicer-core's equivalent of ``slicer.util.loadSegmentation``."""
    import slicer

    node = env.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = env.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        return None
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    assert isinstance(node, slicer.vtkMRMLSegmentationNode)
    return node


def _pump(app, ctrl, until, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        app.processEvents()
        if until():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def run(app, tmp_path_factory):
    """Start the batch from the panel, close the module mid-run, reopen it and watch to the end."""
    from _cohort_helpers import DATA, crop

    tmp = tmp_path_factory.mktemp("batch")
    scans = tmp / "scans"
    scans.mkdir()
    ts = DATA / "totalsegmentator"
    crop(ts / "example_ct_sm.nii.gz", scans / "abdomen_a.nii.gz", (slice(30, 78), slice(30, 78), slice(0, 30)))
    crop(ts / "example_ct_sm.nii.gz", scans / "abdomen_b.nii.gz", (slice(26, 74), slice(30, 78), slice(2, 30)))
    store: dict[str, str] = {}
    env, panel, logic, ctrl, _ = _wired(app, store)
    panel.prompt_edit.setPlainText(PROMPTS)
    panel.modality_combo.setCurrentIndex(panel.modality_combo.findData("ct"))
    section = panel.batch_section
    section.input_edit.setText(str(scans))
    section.run_combo.setEditText(str(tmp / "run"))
    t0 = time.time()
    section.start_button.click()
    pid = ctrl.batch.pid
    assert pid and ctrl.batch.timer.isActive(), ctrl.batch.last_error
    assert not qc.is_enabled(section.start_button) and qc.is_enabled(section.stop_button)
    ctrl.batch.poll()
    assert qc.text(section.progress_label).startswith(("starting", "running")), qc.text(section.progress_label)
    assert qc.is_enabled(section.stop_button)
    # the module closes (as Slicer's cleanup does): the batch runs on
    ctrl.batch.close()
    logic.shutdown()
    panel.close()
    panel.deleteLater()
    app.processEvents()
    time.sleep(0.5)
    from TextSegLogicLib.batch import progress

    at_close = progress(str(tmp / "run"))
    assert at_close.done + at_close.failed == 0, at_close  # closed mid-run
    with open(f"/proc/{pid}/stat") as fh:
        assert fh.read().rsplit(")", 1)[1].split()[0] in "RSD", "the batch ended with the module"
    # a new module session finds the run from the settings and follows it to the end
    env2, panel2, logic2, ctrl2, opened = _wired(app, store)
    assert qc.current_text(panel2.batch_section.run_combo) == str(tmp / "run")
    ctrl2.batch.watch(str(tmp / "run"))
    lines: list[str] = []

    def finished():
        p = ctrl2.batch.poll()
        line = qc.text(panel2.batch_section.progress_label)
        if not lines or lines[-1] != line:
            lines.append(line)
        return p is not None and p.finished and p.done + p.failed == 2

    ok = _pump(app, ctrl2, finished, 120)
    seconds = time.time() - t0
    log = (tmp / "run" / "batch.log").read_text() if (tmp / "run" / "batch.log").is_file() else ""
    assert ok, (lines, log[-2000:])
    assert lines[0].startswith(("not started", "starting", "running: 0 done")), lines  # not finished at reopening
    assert lines[-1].startswith("finished") and any(ln.startswith("running: 1 done") for ln in lines), lines
    yield {"run": tmp / "run", "scans": scans, "ctrl": ctrl2, "panel": panel2, "env": env2, "opened": opened,
           "lines": lines, "seconds": seconds, "pid": pid}
    panel2.close()
    panel2.deleteLater()


def test_batch_survives_module_cleanup_and_progress_reaches_done(run):
    p = run["ctrl"].batch.last_progress
    assert (p.state, p.done, p.failed, p.remaining) == ("finished", 2, 0, 0), run["lines"]
    assert run["lines"][-1].startswith("finished: 2 done, 0 failed, 0 remaining")
    assert not qc.is_enabled(run["panel"].batch_section.stop_button)
    assert not run["ctrl"].batch.timer.isActive()
    case_ids = [qc.get(run["panel"].batch_section.case_list.item(i), "text") for i in range(2)]
    assert sorted(case_ids) == ["\u2713 abdomen_a", "\u2713 abdomen_b"]
    print(f"batch of 2 crops, start to finished: {run['seconds']:.1f} s", run["lines"])


def test_open_report_gives_the_file_url_of_report_html(run):
    section = run["panel"].batch_section
    assert qc.is_enabled(section.report_button)
    section.report_button.click()
    assert run["opened"] == [(run["run"] / "report.html").resolve().as_uri()]
    assert (run["run"] / "report.html").is_file()


def test_load_brings_the_case_segmentation_and_volume_into_the_scene(run):
    import vtk

    from TextSegLib.io import read_seg_nrrd

    section, scene = run["panel"].batch_section, run["env"].scene
    from TextSegLogicLib.batch import list_cases

    section.case_list.setCurrentRow([c.case_id for c in list_cases(str(run["run"]))].index("abdomen_a"))
    loaded = []
    run["ctrl"].batch.on_loaded = lambda v, s: loaded.append((v, s))
    section.load_button.click()
    assert loaded, run["ctrl"].batch.last_error
    volume, seg = loaded[0]
    assert volume.GetName() == "abdomen_a" and volume.GetImageData().GetDimensions() == (48, 48, 30)
    assert scene.GetNodeByID(volume.GetID()) is volume and scene.GetNodeByID(seg.GetID()) is seg
    assert seg.GetName() == "abdomen_a segmentation"
    written = read_seg_nrrd(run["run"] / "cases" / "abdomen_a" / "abdomen_a.seg.nrrd")
    segmentation = seg.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(written) >= 1
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == written.names and "Liver" in names
    for i, ours in enumerate(written):
        tag = vtk.reference("")
        assert segmentation.GetNthSegment(i).GetTag("TerminologyEntry", tag) and str(tag) == ours.terminology
        assert "10200004" in str(tag) or ours.name != "Liver"  # SNOMED CT code of the liver


def test_bad_prompt_fails_before_a_process_starts(app, tmp_path, monkeypatch):
    from TextSegLogicLib import batch

    started = []
    monkeypatch.setattr(batch, "start_batch", lambda *a, **k: started.append(a) or 1)
    (tmp_path / "scans").mkdir()
    env, panel, logic, ctrl, _ = _wired(app, {})
    panel.prompt_edit.setPlainText("liver, flux capacitor")
    panel.modality_combo.setCurrentIndex(panel.modality_combo.findData("ct"))
    assert ctrl.batch.start(str(tmp_path / "scans"), str(tmp_path / "run")) is None
    message = qc.text(panel.batch_section.progress_label)
    assert "flux capacitor" in message and started == [] and not (tmp_path / "run").exists()
    assert qc.is_enabled(panel.batch_section.start_button)
    # a missing input folder is named too
    panel.prompt_edit.setPlainText("liver")
    assert ctrl.batch.start(str(tmp_path / "nowhere"), str(tmp_path / "run")) is None
    assert "nowhere" in qc.text(panel.batch_section.progress_label) and started == []
    # the remote model cannot run a batch
    from TextSegLib.errors import ModelError

    with pytest.raises(ModelError, match="local model"):
        batch.start(str(tmp_path / "scans"), str(tmp_path / "run"), ["liver"], "remote")
    assert started == []
    panel.close()
    panel.deleteLater()


def test_stop_ends_the_batch_after_the_current_case_and_a_restart_resumes(app, run, tmp_path):
    from TextSegLogicLib.batch import progress

    env, panel, logic, ctrl, _ = _wired(app, {})
    panel.prompt_edit.setPlainText(PROMPTS)
    panel.modality_combo.setCurrentIndex(panel.modality_combo.findData("ct"))
    section = panel.batch_section
    section.input_edit.setText(str(run["scans"]))
    section.run_combo.setEditText(str(tmp_path / "run"))
    section.start_button.click()
    assert ctrl.batch.pid, ctrl.batch.last_error
    assert _pump(app, ctrl, lambda: progress(str(tmp_path / "run")).pid is not None, 60)
    section.stop_button.click()
    assert qc.text(section.progress_label).startswith("Stopping")
    assert _pump(app, ctrl, lambda: not ctrl.batch.timer.isActive(), 60)
    p = ctrl.batch.last_progress
    assert p.state == "interrupted" and p.done + p.failed < 2, p
    assert qc.is_enabled(section.start_button) and not qc.is_enabled(section.stop_button)
    section.start_button.click()  # Start again resumes the run
    assert _pump(app, ctrl, lambda: not ctrl.batch.timer.isActive(), 90)
    assert (ctrl.batch.last_progress.state, ctrl.batch.last_progress.done) == ("finished", 2)
    assert ctrl.batch.load(str(tmp_path / "run"), "no_such_case") is None  # an unknown case is named
    assert "no case 'no_such_case'" in qc.text(section.progress_label)
    panel.close()
    panel.deleteLater()
