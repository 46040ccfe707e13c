"""Drives the panel's PACS widgets: save the server, Test connection, Send to PACS.

MRML is read on the main thread (masks + source file list, short); writing
the DICOM SEG and the STOW-RS upload run on a worker thread, and a QTimer on
the main thread reports the result in the status line, as the remote
"Test connection" does. The password/token is never saved, logged or shown.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from TextSegLib.errors import TextSegError
from TextSegLogicLib import pacs_upload
from TextSegLogicLib.pacs_upload import PacsPanelSettings, ensure_pacs_consent
from TextSegLogicLib.settings import AskConsent

from . import qt_compat as qc
from .pacs_panel import SEND_TIP

POLL_MS = 100


class PacsController:
    """The PACS part of the TextSeg controller (owns its worker thread and timer)."""

    def __init__(self, panel: Any, logic: Any, volume_node: Callable[[], Any], segmentation_node: Callable[[], Any],
                 store: Any = None, ask_consent: AskConsent | None = None,
                 file_for_instance: Callable[[str], str] | None = None) -> None:
        self.panel = panel
        self.logic = logic
        self.volume_node = volume_node
        self.segmentation_node = segmentation_node
        self.settings = PacsPanelSettings(store)
        self.ask_consent = ask_consent  # ask(url) -> (allowed, don't ask again); None: refuse unless remembered
        self.file_for_instance = file_for_instance  # None: Slicer's DICOM database
        self.last_message = ""
        self._thread: threading.Thread | None = None
        self._result: tuple[str, bool, str] | None = None  # (what, ok, message)
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
        return self._thread is not None

    def why_not(self) -> str:
        """Why Send to PACS is unavailable now ('' when it is available)."""
        seg, volume = self.segmentation_node(), self.volume_node()
        if seg is None or seg.GetSegmentation().GetNumberOfSegments() == 0:
            return "Nothing to send yet: run a segmentation first."
        if volume is None or not (volume.GetAttribute("DICOM.instanceUIDs") or "").strip():
            return "The volume was not loaded from DICOM, so a DICOM SEG cannot reference it (use Export)."
        if not self._fields()[0]:
            return "Set the DICOMweb server under Settings > PACS (DICOMweb)."
        return ""

    def refresh(self, *_: Any) -> None:
        """Enable Send to PACS only for a segmented DICOM volume and a configured server."""
        reason = self.why_not()
        self.panel.send_pacs_button.setEnabled(not reason and not self.busy)
        self.panel.send_pacs_button.setToolTip(reason or SEND_TIP)

    def _report(self, message: str) -> None:
        self.last_message = message
        self.panel.status_label.setText(message)

    # -- actions ----------------------------------------------------------------------
    def test_connection(self) -> None:
        """Test connection: one QIDO-RS query off the GUI thread."""
        if self.busy:
            return
        url, user, secret = self._fields()
        if not url:
            self._report("Enter the DICOMweb server URL first.")
            return
        self._save()
        self._start("test", lambda: pacs_upload.check_connection(url, user, secret), f"Connecting to {url} ...")

    def send(self) -> None:
        """Send to PACS: consent (once per server), then write the DICOM SEG and STOW it."""
        if self.busy:
            return
        reason = self.why_not()
        if reason:
            self._report(reason)
            return
        url, user, secret = self._fields()
        self._save()
        if not ensure_pacs_consent(self.settings, url, self.ask_consent):
            self._report(f"Not sent: upload to {url} was not allowed.")
            return
        try:
            prepared = pacs_upload.prepare(self.logic, self.volume_node(), self.segmentation_node(),
                                           self.file_for_instance)
        except TextSegError as exc:
            self._report(pacs_upload.one_line(str(exc), secret))
            return

        def work() -> tuple[bool, str]:
            n, server = pacs_upload.write_and_send(prepared, url, user, secret)
            return True, f"Sent {n} segment(s) to {server}"

        self._start("send", work, f"Sending DICOM SEG to {url} ...")

    def _start(self, what: str, fn: Callable[[], tuple[bool, str]], message: str) -> None:
        secret = self._fields()[2]

        def run() -> None:
            try:
                ok, text = fn()
            except TextSegError as exc:
                ok, text = False, str(exc)
            except Exception as exc:  # noqa: BLE001 - shown as one line, never a traceback
                ok, text = False, f"{what} failed: {type(exc).__name__}: {exc}"
            self._result = (what, ok, pacs_upload.one_line(text, secret))

        self._result = None
        self._report(message)
        self.panel.pacs_test_button.setEnabled(False)
        self.panel.send_pacs_button.setEnabled(False)
        self._thread = threading.Thread(target=run, name=f"TextSegPacs-{what}", daemon=True)
        self._thread.start()
        self.timer.start()

    def _poll(self) -> None:
        """Timer slot: when the worker ended, show its one line and re-enable the buttons."""
        if self._thread is None or self._thread.is_alive():
            return
        self._thread = None
        self.timer.stop()
        _what, _ok, message = self._result or ("", False, "No answer.")
        self._report(message)
        self.panel.pacs_test_button.setEnabled(True)
        self.refresh()
