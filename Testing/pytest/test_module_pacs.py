"""Slicer panel: Send to PACS and the DICOMweb Settings against a real Orthanc (PySide6 offscreen + slicer-core)."""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest

from _orthanc_helpers import orthanc, skip_module_without_orthanc  # noqa: F401 (orthanc: a fixture)
from _pacs_scene import pacs_scene, pacs_series

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")
pytest.importorskip("highdicom")
pytest.importorskip("dicomweb_client")
os.environ.setdefault("QT_API", "pyside6")
QtWidgets = pytest.importorskip("Qt.QtWidgets", reason="Qt.py + PySide6 not installed")
skip_module_without_orthanc()

from TextSegLib.io import read_segmentation, read_volume  # noqa: E402
from TextSegLib.pacs import PacsClient, resolve_settings  # noqa: E402
from TextSegLogicLib import mrml_io  # noqa: E402
from TextSegPanelLib import qt_compat as qc  # noqa: E402


@pytest.fixture(scope="module")
def series(tmp_path_factory, orthanc):
    """The fixture series, also stored on the Orthanc (as if it came from the PACS)."""
    return pacs_series(tmp_path_factory, orthanc)


@pytest.fixture
def scene(tmp_path, series, monkeypatch):
    made = pacs_scene(tmp_path, series, monkeypatch)
    ctrl, panel = made["ctrl"], made["panel"]
    asked: list[str] = []
    answers = {"allow": True, "remember": True}

    def ask(url):
        asked.append(url)
        return answers["allow"], answers["remember"]

    ctrl.pacs.ask_consent = ask
    yield dict(made, asked=asked, answers=answers)
    panel.deleteLater()


def _configure(panel, url, user, secret):
    panel.pacs_url_edit.setText(url)
    panel.pacs_user_edit.setText(user)
    panel.pacs_secret_edit.setText(secret)


def _wait(ctrl, timeout=60.0) -> str:
    """Let the Qt timer report the worker's result (the GUI thread keeps running meanwhile)."""
    app = QtWidgets.QApplication.instance()
    deadline = time.time() + timeout
    while ctrl.pacs.busy and time.time() < deadline:
        app.processEvents()
        time.sleep(0.02)
    assert not ctrl.pacs.busy, "the PACS worker did not finish"
    return qc.text(ctrl.panel.status_label)


def _seg_series(orthanc, volume) -> list[str]:
    client = PacsClient(resolve_settings(orthanc.dicomweb, user=orthanc.credentials))
    return [r["SeriesInstanceUID"] for r in client.find_series(study_uid=volume.meta["StudyInstanceUID"], modality="SEG")]


def test_send_button_enabled_only_for_a_segmented_dicom_volume(scene, orthanc):
    panel, ctrl, node, seg_node = scene["panel"], scene["ctrl"], scene["node"], scene["seg_node"]
    _configure(panel, orthanc.dicomweb, orthanc.user, orthanc.password)
    assert not qc.is_enabled(panel.send_pacs_button)
    assert "run a segmentation first" in qc.tooltip(panel.send_pacs_button)
    mrml_io.put_segment(seg_node, None, "Spleen", scene["mask"], scene["volume"].ijk_to_ras)
    ctrl.pacs.refresh()
    assert qc.is_enabled(panel.send_pacs_button)
    node.SetAttribute("DICOM.instanceUIDs", "")
    ctrl.volume_changed()
    assert not qc.is_enabled(panel.send_pacs_button) and "not loaded from DICOM" in qc.tooltip(panel.send_pacs_button)
    ctrl.pacs.send()  # a click through a stale state still refuses, with the reason
    assert "not loaded from DICOM" in qc.text(panel.status_label) and not scene["asked"]


def test_send_to_pacs_asks_once_per_server_and_lands_in_orthanc(scene, orthanc, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    panel, ctrl, asked = scene["panel"], scene["ctrl"], scene["asked"]
    mrml_io.put_segment(scene["seg_node"], None, "Spleen", scene["mask"], scene["volume"].ijk_to_ras)
    _configure(panel, orthanc.dicomweb, orthanc.user, orthanc.password)
    before = set(_seg_series(orthanc, scene["volume"]))
    ctrl.pacs.send()
    assert _wait(ctrl) == f"Sent 1 segment(s) to {orthanc.dicomweb}"
    assert asked == [orthanc.dicomweb]
    new = set(_seg_series(orthanc, scene["volume"])) - before
    assert len(new) == 1
    pulled = PacsClient(resolve_settings(orthanc.dicomweb, user=orthanc.credentials)).pull_series(
        new.pop(), cache=tmp_path / "cache")
    back = read_segmentation(next(pulled.glob("*.dcm")), reference=scene["volume"])
    assert back.names == ["Spleen"] and np.array_equal(back["Spleen"].mask, scene["mask"])
    ctrl.pacs.send()  # same server: no second question
    assert _wait(ctrl).startswith("Sent 1 segment(s)") and asked == [orthanc.dicomweb]
    # the settings remember the server and user, never the password
    assert scene["store"]["TextSeg/pacsUrl"] == orthanc.dicomweb and scene["store"]["TextSeg/pacsUser"] == orthanc.user
    assert orthanc.password not in repr(scene["store"]) and orthanc.password not in caplog.text
    other = orthanc.root.replace("127.0.0.1", "localhost") + "/dicom-web"  # the same Orthanc under another name
    panel.pacs_url_edit.setText(other)
    ctrl.pacs.send()
    assert _wait(ctrl) == f"Sent 1 segment(s) to {other}" and asked == [orthanc.dicomweb, other]


def test_refused_consent_sends_nothing(scene, orthanc):
    panel, ctrl = scene["panel"], scene["ctrl"]
    mrml_io.put_segment(scene["seg_node"], None, "Spleen", scene["mask"], scene["volume"].ijk_to_ras)
    _configure(panel, orthanc.dicomweb, orthanc.user, orthanc.password)
    before = _seg_series(orthanc, scene["volume"])
    scene["answers"]["allow"] = False
    ctrl.pacs.send()
    assert not ctrl.pacs.busy and qc.text(panel.status_label) == f"Not sent: upload to {orthanc.dicomweb} was not allowed."
    assert _seg_series(orthanc, scene["volume"]) == before
    scene["answers"].update(allow=True, remember=False)  # allowed once, not remembered: asked again next time
    ctrl.pacs.send()
    assert _wait(ctrl).startswith("Sent 1 segment(s)")
    ctrl.pacs.send()
    _wait(ctrl)
    assert scene["asked"] == [orthanc.dicomweb] * 3


def test_wrong_password_is_one_line_without_the_password(scene, orthanc, caplog):
    caplog.set_level(logging.DEBUG)
    panel, ctrl = scene["panel"], scene["ctrl"]
    mrml_io.put_segment(scene["seg_node"], None, "Spleen", scene["mask"], scene["volume"].ijk_to_ras)
    _configure(panel, orthanc.dicomweb, orthanc.user, "Wrong-Secret-123")
    before = _seg_series(orthanc, scene["volume"])
    ctrl.pacs.send()
    message = _wait(ctrl)
    assert "refused the credentials" in message and "HTTP 401" in message and "\n" not in message
    assert "Wrong-Secret-123" not in message and "Wrong-Secret-123" not in caplog.text
    assert _seg_series(orthanc, scene["volume"]) == before
    assert qc.is_enabled(panel.send_pacs_button) and qc.is_enabled(panel.pacs_test_button)


def test_test_connection_ok_and_failures(scene, orthanc, caplog):
    caplog.set_level(logging.DEBUG)
    panel, ctrl = scene["panel"], scene["ctrl"]
    _configure(panel, orthanc.dicomweb, orthanc.user, orthanc.password)
    panel.pacs_test_button.click()
    assert qc.text(panel.status_label).startswith("Connecting to") and not qc.is_enabled(panel.pacs_test_button)
    message = _wait(ctrl)
    assert message.startswith(f"Connected to {orthanc.dicomweb} (DICOMweb QIDO-RS answered, user textseg;")
    assert qc.is_enabled(panel.pacs_test_button)
    panel.pacs_secret_edit.setText("not-the-password")
    panel.pacs_test_button.click()
    message = _wait(ctrl)
    assert "refused the credentials" in message and "HTTP 401" in message and "not-the-password" not in message
    assert "\n" not in message and "not-the-password" not in caplog.text
    panel.pacs_url_edit.setText("http://127.0.0.1:9/dicom-web")  # nothing listens on the discard port
    panel.pacs_test_button.click()
    message = _wait(ctrl)
    assert message.startswith("http://127.0.0.1:9/dicom-web: cannot connect to the DICOMweb server") and "\n" not in message
    panel.pacs_url_edit.setText("")
    ctrl.pacs.test_connection()
    assert qc.text(panel.status_label) == "Enter the DICOMweb server URL first." and not ctrl.pacs.busy


def test_export_offers_nifti_with_labels_csv(scene, tmp_path):
    panel, ctrl = scene["panel"], scene["ctrl"]
    mrml_io.put_segment(scene["seg_node"], None, "Spleen", scene["mask"], scene["volume"].ijk_to_ras)
    out = tmp_path / "spleen.nii.gz"
    ctrl.export(str(out))
    csv = tmp_path / "spleen_labels.csv"
    assert qc.text(panel.status_label) == f"Saved {out}, {csv}"
    labels = read_volume(out).array
    assert np.array_equal(labels > 0, scene["mask"])
    assert csv.read_text().splitlines()[1].split(",")[:3] == ["spleen.nii.gz", "1", "Spleen"]
    ctrl.export(str(out))
    assert "already exists" in qc.text(panel.status_label)
