"""Slicer side: DICOM SEG export of a segmentation node on real MRML (slicer-core)."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from _dicomseg_helpers import build_series
from _module_helpers import LungThresholdEngine

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")
pytest.importorskip("highdicom")

from slicer_bootstrap import make_scene  # noqa: E402
from TextSegLib.io import read_segmentation, read_volume, write_volume  # noqa: E402
from TextSegLib.io.dicomseg import DicomSegError  # noqa: E402
from TextSegLogicLib import TextSegLogic, mrml_io  # noqa: E402
from TextSegLogicLib.dicom_export import export_dicom_seg  # noqa: E402
from TextSegLogicLib.mrml_io import TAG_CREATED_BY, TAG_DIGEST, TAG_PROMPT  # noqa: E402

KIDNEY = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~"
          "SCT^64033007^Kidney~SCT^7771000^Left~Anatomic codes - DICOM master list~^^~^^")


def test_export_node_as_dicom_seg(tmp_path):
    env = make_scene()
    folder = build_series(tmp_path / "series", "axial")
    volume = read_volume(folder)
    node = env.load_volume(write_volume(volume, tmp_path / "ct.nrrd"))
    by_uid = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: str(f) for f in folder.iterdir()}
    logic = TextSegLogic(**env.logics(), engine=LungThresholdEngine())
    seg_node = logic.output_segmentation(node)
    with pytest.raises(DicomSegError, match="was not loaded from DICOM"):
        export_dicom_seg(logic, node, seg_node, str(tmp_path / "x.dcm"), file_for_instance=by_uid.get)
    node.SetAttribute("DICOM.instanceUIDs", " ".join(by_uid))
    kidney = np.zeros(volume.shape, bool)
    kidney[320:360, 200:240, 5:9] = True
    drawn = np.zeros(volume.shape, bool)
    drawn[100:120, 100:130, 10:12] = True
    sid, digest = mrml_io.put_segment(seg_node, None, "Left kidney", kidney, volume.ijk_to_ras)
    s = seg_node.GetSegmentation().GetSegment(sid)
    s.SetTerminology(KIDNEY)
    s.SetColor(0.7, 0.4, 0.3)
    for tag, value in ((TAG_CREATED_BY, "TextSeg"), (TAG_PROMPT, "lt kidney"), (TAG_DIGEST, digest)):
        s.SetTag(tag, value)
    mrml_io.put_segment(seg_node, None, "My drawing", drawn, volume.ijk_to_ras)
    report = export_dicom_seg(logic, node, seg_node, str(tmp_path / "out.dcm"), file_for_instance=by_uid.get)
    back = read_segmentation(report.path, reference=volume)
    assert back.names == ["Left kidney", "My drawing"]
    assert np.array_equal(back["Left kidney"].mask, kidney) and np.array_equal(back["My drawing"].mask, drawn)
    assert back["Left kidney"].terminology.split("~")[2:4] == ["SCT^64033007^Kidney", "SCT^7771000^Left"]
    assert back["Left kidney"].meta["algorithm_type"] == "AUTOMATIC" and back["Left kidney"].meta["prompt"] == "lt kidney"
    assert back["My drawing"].meta["algorithm_type"] == "MANUAL"
    assert back["My drawing"].terminology.split("~")[2] == "SCT^85756007^Tissue"  # Slicer's default for new segments
    assert np.allclose(back["Left kidney"].color, (0.7, 0.4, 0.3), atol=2 / 255)


def test_export_button_writes_dicom_seg_for_a_dcm_name(tmp_path, monkeypatch):
    """The panel's Export with a .dcm name goes through the controller to a DICOM SEG."""
    import os

    os.environ.setdefault("QT_API", "pyside6")
    QtWidgets = pytest.importorskip("Qt.QtWidgets", reason="Qt.py + PySide6 not installed")
    from TextSegLogicLib.completion import make_suggester
    from TextSegLogicLib.settings import TextSegSettings
    from TextSegPanelLib import qt_compat as qc
    from TextSegPanelLib.controller import TextSegController
    from TextSegPanelLib.panel import TextSegPanel

    QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    env = make_scene()
    folder = build_series(tmp_path / "series", "axial")
    volume = read_volume(folder)
    node = env.load_volume(write_volume(volume, tmp_path / "ct.nrrd"))
    by_uid = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: str(f) for f in folder.iterdir()}
    node.SetAttribute("DICOM.instanceUIDs", " ".join(by_uid))

    from _dicom_database import StandInDICOMDatabase  # ctkDICOMDatabase, absent in slicer-core

    database = StandInDICOMDatabase(tmp_path / "db", by_uid)
    monkeypatch.setattr(slicer, "dicomDatabase", database, raising=False)
    logic = TextSegLogic(**env.logics(), engine=LungThresholdEngine())
    seg_node = logic.output_segmentation(node)
    mask = np.zeros(volume.shape, bool)
    mask[300:340, 200:240, 4:8] = True
    mrml_io.put_segment(seg_node, None, "Spleen", mask, volume.ijk_to_ras)
    panel = TextSegPanel(suggest=make_suggester(["spleen"]))
    ctrl = TextSegController(panel, logic, lambda: node, lambda: seg_node, settings=TextSegSettings({}))
    out = tmp_path / "spleen.dcm"
    ctrl.export(str(out))
    assert qc.text(panel.status_label) == f"Saved DICOM SEG {out} (1 segment(s))"
    assert np.array_equal(read_segmentation(out, reference=volume)["Spleen"].mask, mask)
    # the SEG is in Slicer's DICOM database, beside its series, by Slicer's own call (CTK's defaults)
    assert database.inserted == [(str(out), True, True, True, "")]
    seg_uid = str(pydicom.dcmread(out, stop_before_pixels=True).SOPInstanceUID)
    assert database.fileForInstance(seg_uid).startswith(str(tmp_path / "db"))
    assert database.series[volume.meta["StudyInstanceUID"]] == {pydicom.dcmread(out).SeriesInstanceUID}
    ctrl.export(str(out))
    assert "already exists" in qc.text(panel.status_label)
    node.SetAttribute("DICOM.instanceUIDs", "")
    ctrl.export(str(tmp_path / "other.dcm"))
    assert "was not loaded from DICOM" in qc.text(panel.status_label)
    panel.deleteLater()


def test_import_textseg_dicom_seg_keeps_terminology(tmp_path):
    """A TextSeg DICOM SEG loaded into the scene: names, codes (laterality), colours, prompt, and
    voxel-exact masks on the scan it was made on; without the scan, on the SEG's own frames."""
    from TextSegLib.io import write_dicom_seg
    from TextSegLib.segmentation import Segment, Segmentation
    from TextSegLogicLib.dicom_export import import_dicom_seg

    env = make_scene()
    folder = build_series(tmp_path / "series", "axial")
    volume = read_volume(folder)
    kidney = np.zeros(volume.shape, bool)
    kidney[320:360, 200:240, 5:9] = True
    liver = np.zeros(volume.shape, bool)
    liver[150:260, 180:300, 3:15] = True
    liver_term = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~"
                  "SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")
    seg = Segmentation(volume, [
        Segment("Left kidney", kidney, terminology=KIDNEY, color=(0.7, 0.4, 0.3), meta={"prompt": "lt kidn"}),
        Segment("Liver", liver, terminology=liver_term, color=(0.87, 0.51, 0.41), meta={"prompt": "liver"})])
    out = write_dicom_seg(seg, volume, tmp_path / "ts.dcm").path
    node = env.load_volume(write_volume(volume, tmp_path / "ct.nrrd"))
    logic = TextSegLogic(**env.logics())
    seg_node = import_dicom_seg(logic, str(out), node)
    s = seg_node.GetSegmentation()
    assert [s.GetNthSegment(i).GetName() for i in range(s.GetNumberOfSegments())] == ["Left kidney", "Liver"]
    k = s.GetSegment(s.GetSegmentIdBySegmentName("Left kidney"))
    tag = k.GetTerminologyEntryTagName() if hasattr(k, "GetTerminologyEntryTagName") else "TerminologyEntry"
    entry = mrml_io.segment_tag(k, tag)
    assert entry.split("~")[2:4] == ["SCT^64033007^Kidney", "SCT^7771000^Left"]
    assert np.allclose(k.GetColor(), (0.7, 0.4, 0.3), atol=2 / 255)
    assert mrml_io.segment_tag(k, TAG_PROMPT) == "lt kidn"
    back = mrml_io.segment_array_ijk(logic.segmentations_logic, seg_node, s.GetSegmentIdBySegmentName("Liver"),
                                     logic.volume(node))
    assert np.array_equal(back, liver)
    alone = import_dicom_seg(logic, str(out))  # no scan: the SEG's own frames
    assert alone.GetSegmentation().GetNumberOfSegments() == 2 and alone.GetID() != seg_node.GetID()
