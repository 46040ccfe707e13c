"""The Send-to-PACS scene shared by test_module_pacs.py and test_module_pacs_process.py: the fixture
series (also stored on the Orthanc, as if it came from the PACS) loaded into a slicer-core scene
with its instance UIDs, a logic with one "Spleen" segment, and the PySide6 panel's controller."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from _dicomseg_helpers import build_series
from _module_helpers import LungThresholdEngine


def pacs_series(tmp_path_factory: Any, orthanc: Any) -> Path:
    """The axial fixture series, pushed to the Orthanc."""
    from TextSegLib.pacs import PacsClient, resolve_settings

    folder = build_series(tmp_path_factory.mktemp("series") / "axial", "axial")
    PacsClient(resolve_settings(orthanc.dicomweb, user=orthanc.credentials)).push(sorted(folder.iterdir()))
    return folder


def pacs_scene(tmp_path: Path, series: Path, monkeypatch: Any, store: dict | None = None,
               spleen: bool = False) -> dict:
    """The scene, with no DICOMweb setting from the environment (``spleen``: ``mask`` is already
    the segmentation's "Spleen" segment): ``ctrl``, ``panel``, ``node``,
    ``seg_node``, ``mask``, ``volume``, ``by_uid`` (SOP Instance UID -> file), ``store`` (settings)."""
    import pydicom
    from Qt import QtWidgets
    from slicer_bootstrap import make_scene
    from TextSegLib.io import read_volume, write_volume
    from TextSegLogicLib import TextSegLogic, mrml_io
    from TextSegLogicLib.completion import make_suggester
    from TextSegLogicLib.settings import TextSegSettings
    from TextSegPanelLib.controller import TextSegController
    from TextSegPanelLib.panel import TextSegPanel

    for var in ("TEXTSEG_DICOMWEB_URL", "TEXTSEG_DICOMWEB_TOKEN", "TEXTSEG_DICOMWEB_USER", "TEXTSEG_DICOMWEB_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TEXTSEG_HOME", str(tmp_path / "home"))
    QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    env = make_scene()
    volume = read_volume(series)
    node = env.load_volume(write_volume(volume, tmp_path / "ct.nrrd"))
    by_uid = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: str(f) for f in series.iterdir()}
    node.SetAttribute("DICOM.instanceUIDs", " ".join(by_uid))
    logic = TextSegLogic(**env.logics(), engine=LungThresholdEngine())
    seg_node = logic.output_segmentation(node)
    mask = np.zeros(volume.shape, bool)
    mask[300:340, 200:240, 4:8] = True
    if spleen:
        mrml_io.put_segment(seg_node, None, "Spleen", mask, volume.ijk_to_ras)
    store = {} if store is None else store
    panel = TextSegPanel(suggest=make_suggester(["spleen"]))
    ctrl = TextSegController(panel, logic, lambda: node, lambda: seg_node, settings=TextSegSettings(store))
    ctrl.pacs.file_for_instance = by_uid.get
    return dict(ctrl=ctrl, panel=panel, node=node, seg_node=seg_node, mask=mask, volume=volume, by_uid=by_uid,
                store=store)
