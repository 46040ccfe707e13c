"""The panel's PACS widgets: a "PACS (DICOMweb)" settings section and the "Send to PACS" button.

Kept apart from panel.py; :func:`build_pacs_settings` and :func:`build_send_button`
attach the widgets to the panel (``panel.pacs_url_edit`` ...). The controller
side is :mod:`TextSegPanelLib.pacs_controller`.
"""
from __future__ import annotations

from typing import Any

from .qt_compat import QtWidgets

SEND_TIP = "Send the segmentation as DICOM SEG to the DICOMweb server set under Settings > PACS (DICOMweb)."


def build_pacs_settings(panel: Any, layout: Any) -> None:
    """Server URL, user, password/token and Test connection, in their own group box."""
    box = QtWidgets.QGroupBox("PACS (DICOMweb)")
    box.setObjectName("pacsBox")
    form = QtWidgets.QFormLayout(box)
    form.setContentsMargins(8, 6, 8, 6)
    panel.pacs_url_edit = QtWidgets.QLineEdit()
    panel.pacs_url_edit.setObjectName("pacsUrlEdit")
    panel.pacs_url_edit.setPlaceholderText("https://pacs.example.org/dicom-web")
    panel.pacs_url_edit.setToolTip("DICOMweb root (QIDO-RS / STOW-RS) of the PACS that receives DICOM SEG. "
                                   "Empty: the DICOMweb server of Slicer's DICOM Send dialog.")
    form.addRow("Server URL:", panel.pacs_url_edit)
    panel.pacs_user_edit = QtWidgets.QLineEdit()
    panel.pacs_user_edit.setObjectName("pacsUserEdit")
    panel.pacs_user_edit.setPlaceholderText("optional (empty: bearer token)")
    form.addRow("User:", panel.pacs_user_edit)
    panel.pacs_secret_edit = QtWidgets.QLineEdit()
    panel.pacs_secret_edit.setObjectName("pacsSecretEdit")
    panel.pacs_secret_edit.setEchoMode(QtWidgets.QLineEdit.Password)
    panel.pacs_secret_edit.setPlaceholderText("password or token (not saved)")
    panel.pacs_secret_edit.setToolTip("Kept for this session only. Empty: TEXTSEG_DICOMWEB_TOKEN / _USER or "
                                      "~/.textseg/dicomweb.json are used.")
    form.addRow("Password / token:", panel.pacs_secret_edit)
    panel.pacs_note_label = QtWidgets.QLabel("")  # why DICOM SEG / Send to PACS are off (Slicer 5.10)
    panel.pacs_note_label.setObjectName("pacsNoteLabel")
    panel.pacs_note_label.setWordWrap(True)
    panel.pacs_note_label.setVisible(False)
    form.addRow(panel.pacs_note_label)
    panel.pacs_test_button = QtWidgets.QPushButton("Test connection")
    panel.pacs_test_button.setObjectName("pacsTestButton")
    form.addRow(panel.pacs_test_button)
    layout.addWidget(box)


def build_send_button(panel: Any, row: Any) -> None:
    """'Send to PACS' next to Export; disabled until a DICOM volume has a segmentation."""
    panel.send_pacs_button = QtWidgets.QPushButton("Send to PACS")
    panel.send_pacs_button.setObjectName("sendPacsButton")
    panel.send_pacs_button.setEnabled(False)
    panel.send_pacs_button.setToolTip(SEND_TIP)
    row.addWidget(panel.send_pacs_button)
