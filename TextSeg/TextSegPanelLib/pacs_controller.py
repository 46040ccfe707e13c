"""Drives the panel's PACS widgets: save the server, Test connection, Send to PACS.

MRML is read on the main thread (masks + source file list, short); the DICOM SEG writing and
the network run in a child process (:class:`~TextSegLogicLib.pacs_process.PacsProcess`, never a
Python thread: under PythonQt the GUI thread holds the GIL while Qt idles), and a 100 ms QTimer
tick polls it without blocking and reports the one-line result. A sent SEG is inserted into
Slicer's DICOM database. With no server of its own TextSeg uses the DICOMweb server of Slicer's
DICOM Send dialog. On Slicer 5.10 (no highdicom, pydicom 2.4.4) Send to PACS is disabled with
the reason. The password/token is never saved, logged or shown.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from TextSegLib.errors import TextSegError
from TextSegLib.pacs.job import one_line
from TextSegLogicLib import pacs_upload
from TextSegLogicLib.deps import dicom_unavailable
from TextSegLogicLib.dicom_export import add_to_database
from TextSegLogicLib.pacs_process import PacsProcess
from TextSegLogicLib.pacs_upload import PacsPanelSettings, PacsServer, ensure_pacs_consent
from TextSegLogicLib.settings import AskConsent

from . import qt_compat as qc
from .pacs_panel import SEND_TIP

POLL_MS = 100


class PacsController:
    """The PACS part of the TextSeg controller (owns its child process and timer)."""

    def __init__(self, panel: Any, logic: Any, volume_node: Callable[[], Any], segmentation_node: Callable[[], Any],
                 store: Any = None, ask_consent: AskConsent | None = None,
                 file_for_instance: Callable[[str], str] | None = None, qsettings: Any = None,
                 database: Any = None, python: str = "") -> None:
        self.panel = panel
        self.logic = logic
        self.volume_node = volume_node
        self.segmentation_node = segmentation_node
        self.settings = PacsPanelSettings(store)
        self.ask_consent = ask_consent  # ask(url) -> (allowed, don't ask again); None: refuse unless remembered
        self.file_for_instance = file_for_instance  # None: Slicer's DICOM database
        # Slicer's application settings (where its DICOM Send dialog keeps the server); none outside Slicer
        self.qsettings = qsettings if qsettings is not None else (qc.QtCore.QSettings() if qc.PYTHONQT else None)
        self.database = database  # None: slicer.dicomDatabase (when open)
        self.python = python  # "" = this interpreter (Slicer's Python: it has highdicom on 5.12)
        self.dicom_reason = dicom_unavailable()  # "" on Slicer >= 5.12
        self.last_message = ""
        self.tick_seconds: list[float] = []  # how long each timer tick took (the GUI-thread budget)
        self._proc: PacsProcess | None = None
        self._server: PacsServer | None = None
        self.timer = qc.QtCore.QTimer(panel)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)
        panel.pacs_url_edit.setText(self.settings.url)
        panel.pacs_user_edit.setText(self.settings.user)
        panel.pacs_url_edit.editingFinished.connect(self._save)
        panel.pacs_user_edit.editingFinished.connect(self._save)
        panel.pacs_url_edit.textChanged.connect(lambda *_: self.refresh())
        panel.pacs_test_button.clicked.connect(lambda *_: self.test_connection())
        panel.send_pacs_button.clicked.connect(lambda *_: self.send())
        self.refresh()

    # -- state ----------------------------------------------------------------------
    def _fields(self) -> tuple[str, str, str]:
        return (qc.text(self.panel.pacs_url_edit).strip().rstrip("/"), qc.text(self.panel.pacs_user_edit).strip(),
                qc.text(self.panel.pacs_secret_edit))

    def _save(self, *_: Any) -> None:
        url, user, _secret = self._fields()
        self.settings.url, self.settings.user = url, user

    @property
    def busy(self) -> bool:
        return self._proc is not None

    def server(self) -> PacsServer | None:
        """TextSeg's server (the fields), else Slicer's DICOMweb Send server, else None."""
        url, user, secret = self._fields()
        return pacs_upload.choose_server(url, user, secret, self.qsettings)

    def why_not(self) -> str:
        """Why Send to PACS is unavailable now ('' when it is available)."""
        if self.dicom_reason:
            return self.dicom_reason
        seg, volume = self.segmentation_node(), self.volume_node()
        if seg is None or seg.GetSegmentation().GetNumberOfSegments() == 0:
            return "Nothing to send yet: run a segmentation first."
        if volume is None or not (volume.GetAttribute("DICOM.instanceUIDs") or "").strip():
            return "The volume was not loaded from DICOM, so a DICOM SEG cannot reference it (use Export)."
        if self.server() is None:
            return ("Set the DICOMweb server under Settings > PACS (DICOMweb), or choose DICOMweb in "
                    "Slicer's DICOM Send dialog.")
        return ""

    def refresh(self, *_: Any) -> None:
        """Enable Send to PACS only for a segmented DICOM volume and a configured server."""
        reason = self.why_not()
        self.panel.send_pacs_button.setEnabled(not reason and not self.busy)
        self.panel.send_pacs_button.setToolTip(reason or SEND_TIP)
        self.panel.pacs_note_label.setText(self.dicom_reason)
        self.panel.pacs_note_label.setVisible(bool(self.dicom_reason))
        slicer_server = pacs_upload.slicer_dicomweb_server(self.qsettings)
        self.panel.pacs_url_edit.setPlaceholderText(
            f"empty: Slicer's DICOM Send server {slicer_server.url}" if slicer_server else
            "https://pacs.example.org/dicom-web")

    def _report(self, message: str) -> None:
        self.last_message = message
        self.panel.status_label.setText(message)

    # -- actions ----------------------------------------------------------------------
    def test_connection(self) -> None:
        """Test connection: one QIDO-RS query in a child process."""
        if self.busy:
            return
        self._save()
        server = self.server()
        if server is None:
            self._report("Enter the DICOMweb server URL first.")
            return
        try:
            proc = PacsProcess.test(server.url, server.user, server.secret, self.python)
        except OSError as exc:
            self._report(f"The PACS connection test could not be started ({type(exc).__name__}: {exc}).")
            return
        self._start(proc, server, f"Connecting to {server.url} ...")

    def send(self) -> None:
        """Send to PACS: consent (once per server), then write the DICOM SEG and STOW it (child process)."""
        if self.busy:
            return
        reason = self.why_not()
        if reason:
            self._report(reason)
            return
        self._save()
        server = self.server()
        assert server is not None  # why_not checked it
        if not ensure_pacs_consent(self.settings, server.url, self.ask_consent):
            self._report(f"Not sent: upload to {server.url} was not allowed.")
            return
        try:
            segmentation, files = pacs_upload.prepare(self.logic, self.volume_node(), self.segmentation_node(),
                                                      self.file_for_instance)
            proc = PacsProcess.send(segmentation, files, server.url, server.user, server.secret, self.python)
        except TextSegError as exc:
            self._report(one_line(str(exc), server.secret))
            return
        except OSError as exc:
            self._report(f"Send to PACS could not be started ({type(exc).__name__}: {exc}).")
            return
        self._start(proc, server, f"Sending DICOM SEG to {server.url} ...")

    def _start(self, proc: PacsProcess, server: PacsServer, message: str) -> None:
        self._proc, self._server = proc, server
        self._report(message)
        self.panel.pacs_test_button.setEnabled(False)
        self.panel.send_pacs_button.setEnabled(False)
        self.timer.start()

    def _poll(self) -> None:
        """Timer slot (never blocks): when the child ended, take its SEG into the DICOM database,
        show its one line and re-enable the buttons."""
        t0 = time.perf_counter()
        try:
            self._step()
        finally:
            self.tick_seconds.append(time.perf_counter() - t0)

    def _step(self) -> None:
        proc, server = self._proc, self._server
        if proc is None or server is None:
            self.timer.stop()
            return
        result = proc.poll()
        if result is None:
            return
        self._proc = self._server = None
        self.timer.stop()
        message = result.get("message") or "No answer."
        if result.get("ok") and result.get("seg_path"):
            try:
                if add_to_database(result["seg_path"], self.database):
                    message += "; added to Slicer's DICOM database"
            except Exception as exc:  # noqa: BLE001 - the SEG is on the PACS; say what failed locally
                message += f"; not added to the DICOM database ({type(exc).__name__})"
        if result.get("ok") and server.source == "Slicer":
            message += " (the DICOMweb server of Slicer's DICOM settings)"
        proc.cleanup()
        self._report(one_line(message, server.secret))
        self.panel.pacs_test_button.setEnabled(True)
        self.refresh()

    def stop(self) -> None:
        """Module cleanup: stop a running child and remove its files."""
        self.timer.stop()
        if self._proc is not None:
            self._proc.cancel()
            self._proc.cleanup()
        self._proc = self._server = None
