"""Send to PACS in the real application's conditions: a child process polled by short ticks in the
GIL-holding host, the SEG in Slicer's DICOM database, Slicer's own DICOMweb Send setting as the
fallback server, and Slicer 5.10 (no highdicom) disabling it with the reason. Real Orthanc,
slicer-core MRML, PySide6 panel; Slicer's QSettings is a real QSettings file with Slicer's keys."""
from __future__ import annotations

import os
import socket
import threading
import time

import pydicom
import pytest

from _dicom_database import StandInDICOMDatabase
from _gil_host import run_host
from _orthanc_helpers import orthanc, skip_module_without_orthanc  # noqa: F401 (orthanc: a fixture)
from _pacs_scene import pacs_scene, pacs_series

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")
pytest.importorskip("highdicom")
pytest.importorskip("dicomweb_client")
os.environ.setdefault("QT_API", "pyside6")
QtWidgets = pytest.importorskip("Qt.QtWidgets", reason="Qt.py + PySide6 not installed")
QtCore = pytest.importorskip("Qt.QtCore")
skip_module_without_orthanc()

from TextSegLogicLib import deps  # noqa: E402
from TextSegLogicLib.completion import make_suggester  # noqa: E402
from TextSegLogicLib.pacs_upload import slicer_dicomweb_server  # noqa: E402
from TextSegLogicLib.settings import TextSegSettings  # noqa: E402
from TextSegPanelLib import qt_compat as qc  # noqa: E402
from TextSegPanelLib.controller import TextSegController  # noqa: E402
from TextSegPanelLib.panel import TextSegPanel  # noqa: E402

TICK_LIMIT_S = 0.1


@pytest.fixture(scope="module")
def series(tmp_path_factory, orthanc):
    return pacs_series(tmp_path_factory, orthanc)


def slicer_settings(path, url="", protocol="DICOMweb", user="", password=""):
    """A QSettings file with the keys Slicer's DICOMSendDialog and DICOMUtils.getGlobalDICOMAuth use."""
    s = QtCore.QSettings(str(path), QtCore.QSettings.IniFormat)
    s.setValue("DICOM/Send/URL", url)
    s.setValue("DICOM/Send/Protocol", protocol)
    s.setValue("DICOM/Send/AETitle", "CTK")
    s.setValue("GLOBAL_DICOMWEB_USER_KEY", user)
    s.setValue("GLOBAL_DICOMWEB_PASSWORD_KEY", password)
    s.sync()
    return QtCore.QSettings(str(path), QtCore.QSettings.IniFormat)  # read back from the file


@pytest.fixture
def scene(tmp_path, series, monkeypatch):
    made = pacs_scene(tmp_path, series, monkeypatch, spleen=True)
    ctrl, panel, volume, by_uid = made["ctrl"], made["panel"], made["volume"], made["by_uid"]
    database = StandInDICOMDatabase(tmp_path / "dicomdb", by_uid)
    ctrl.pacs.database = database
    ctrl.pacs.ask_consent = lambda url: (True, True)
    yield dict(ctrl=ctrl, panel=panel, volume=volume, database=database, tmp=tmp_path)
    ctrl.pacs.stop()
    panel.deleteLater()


def _host(ctrl, timeout=90.0):
    """Drive the PACS tick as Slicer would: the GIL held between ticks (PythonQt idling)."""
    seconds, ticks, done = run_host(ctrl.pacs._poll, lambda: not ctrl.pacs.busy, timeout_s=timeout)
    assert done, f"the PACS job did not finish in the GIL-holding host within {timeout:.0f} s ({ticks} ticks)"
    return qc.text(ctrl.panel.status_label)


def test_test_connection_and_send_finish_with_short_ticks_under_the_gil(scene, orthanc):
    """Python threads would starve here (the host never releases the GIL between ticks); a child
    process does not, and no tick waits on the network."""
    ctrl, panel, database = scene["ctrl"], scene["panel"], scene["database"]
    panel.pacs_url_edit.setText(orthanc.dicomweb)
    panel.pacs_user_edit.setText(orthanc.user)
    panel.pacs_secret_edit.setText(orthanc.password)
    ctrl.pacs.test_connection()
    assert _host(ctrl).startswith(f"Connected to {orthanc.dicomweb} (DICOMweb QIDO-RS answered, user textseg;")
    ctrl.pacs.send()
    folder = ctrl.pacs._proc.folder
    message = _host(ctrl)
    assert message == f"Sent 1 segment(s) to {orthanc.dicomweb}; added to Slicer's DICOM database"
    ticks = ctrl.pacs.tick_seconds
    print(f"\nPACS ticks: {len(ticks)}, longest {max(ticks) * 1000:.1f} ms")
    assert len(ticks) >= 2 and max(ticks) <= TICK_LIMIT_S
    # the SEG is in the DICOM database (a copy: the job folder is gone), in the scan's study
    assert len(database.inserted) == 1 and not folder.exists()
    (stored, *_), = [(database.by_uid[u],) for u in database.by_uid if database.by_uid[u].startswith(str(scene["tmp"] / "dicomdb"))]
    ds = pydicom.dcmread(stored)
    assert ds.Modality == "SEG" and ds.StudyInstanceUID == scene["volume"].meta["StudyInstanceUID"]
    assert orthanc.password not in message


def test_slicer_dicomweb_send_setting_is_the_fallback(scene, orthanc):
    ctrl, panel = scene["ctrl"], scene["panel"]
    host_path = orthanc.dicomweb.split("://", 1)[1]  # Slicer's dialog takes "host:port/path" too
    ctrl.pacs.qsettings = slicer_settings(scene["tmp"] / "slicer.ini", "DIMSE-only-server:104", "DIMSE")
    ctrl.pacs.refresh()
    assert not qc.is_enabled(panel.send_pacs_button)  # a DIMSE server cannot take STOW-RS
    assert "Slicer's DICOM Send dialog" in qc.tooltip(panel.send_pacs_button)
    ctrl.pacs.qsettings = slicer_settings(scene["tmp"] / "slicer2.ini", host_path, "DICOMweb",
                                          orthanc.user, orthanc.password)
    server = slicer_dicomweb_server(ctrl.pacs.qsettings)
    assert (server.url, server.user, server.source) == (orthanc.dicomweb, orthanc.user, "Slicer")
    ctrl.pacs.refresh()
    assert qc.is_enabled(panel.send_pacs_button)
    assert orthanc.dicomweb in panel.pacs_url_edit.placeholderText()
    ctrl.pacs.test_connection()
    assert _host(ctrl).startswith(f"Connected to {orthanc.dicomweb} (DICOMweb QIDO-RS answered, user textseg;")
    ctrl.pacs.send()
    assert _host(ctrl) == (f"Sent 1 segment(s) to {orthanc.dicomweb}; added to Slicer's DICOM database "
                           "(the DICOMweb server of Slicer's DICOM settings)")
    # TextSeg's own server wins when it is set
    panel.pacs_url_edit.setText("http://127.0.0.1:9/dicom-web")
    ctrl.pacs.test_connection()
    assert _host(ctrl).startswith("http://127.0.0.1:9/dicom-web: cannot connect to the DICOMweb server")


def test_slicer_510_disables_send_with_the_reason(scene, orthanc, monkeypatch):
    monkeypatch.setattr(deps, "_installed", {"pydicom": "2.4.4", "dicomweb-client": "0.60.0"}.get)
    QtWidgets.QApplication.instance()
    panel = TextSegPanel(suggest=make_suggester(["spleen"]))
    old = scene["ctrl"]
    ctrl = TextSegController(panel, old.logic, old.volume_node, old.segmentation_node, settings=TextSegSettings({}))
    panel.pacs_url_edit.setText(orthanc.dicomweb)
    ctrl.pacs.refresh()
    reason = qc.tooltip(panel.send_pacs_button)
    assert not qc.is_enabled(panel.send_pacs_button)
    assert reason.startswith("DICOM SEG export, SEG import and Send to PACS need 3D Slicer 5.12 or later")
    assert not panel.pacs_note_label.isHidden() and qc.text(panel.pacs_note_label) == reason
    ctrl.pacs.send()
    assert qc.text(panel.status_label) == reason and not ctrl.pacs.busy
    out = scene["tmp"] / "x.dcm"
    ctrl.export(str(out))
    assert qc.text(panel.status_label) == reason and not out.exists()
    ctrl.export(str(scene["tmp"] / "x.seg.nrrd"))  # the other formats still work
    assert qc.text(panel.status_label) == f"Saved {scene['tmp'] / 'x.seg.nrrd'}"
    panel.deleteLater()


def test_stop_ends_a_hanging_job(scene):
    """A server that accepts and never answers: stop() (module cleanup) ends the child at once."""
    ctrl, panel = scene["ctrl"], scene["panel"]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: list = []
    threading.Thread(target=lambda: held.append(sock.accept()), daemon=True).start()
    panel.pacs_url_edit.setText(f"http://127.0.0.1:{sock.getsockname()[1]}/dicom-web")
    ctrl.pacs.test_connection()
    proc = ctrl.pacs._proc
    run_host(ctrl.pacs._poll, lambda: bool(held), timeout_s=20)
    assert ctrl.pacs.busy and proc.proc.poll() is None
    t0 = time.monotonic()
    ctrl.pacs.stop()
    assert proc.proc.poll() is not None and time.monotonic() - t0 < 5
    assert not proc.folder.exists() and not ctrl.pacs.busy
    sock.close()
