"""Slicer's "Send to PACS": DICOMweb server settings, per-server consent, what to send (Qt-free).

The server URL and user name are kept in the module's settings store; the
password or token is never stored there (like the remote API key it lives
only in the Settings field for the session). Leave the field empty to use the
library's own sources instead: ``TEXTSEG_DICOMWEB_TOKEN`` / ``TEXTSEG_DICOMWEB_USER``
or the ``~/.textseg/dicomweb.json`` config file (which must be ``chmod 600``). Leave the URL
empty to use the DICOMweb server of Slicer's own DICOM Send dialog (:func:`slicer_dicomweb_server`).
The network work itself runs in a child process (:mod:`.pacs_process`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from TextSegLib.segmentation import Segmentation

from .settings import PREFIX, AskConsent, ensure_upload_consent


class PacsPanelSettings:
    """The DICOMweb server of the Settings section, and which servers may receive uploads."""

    def __init__(self, store: Any) -> None:
        self.store = store if store is not None else {}

    def _get(self, key: str) -> str:
        v = self.store.get(PREFIX + key)
        return "" if v is None else str(v)

    @property
    def url(self) -> str:
        return self._get("pacsUrl")

    @url.setter
    def url(self, value: str) -> None:
        self.store[PREFIX + "pacsUrl"] = value.strip().rstrip("/")

    @property
    def user(self) -> str:
        """User name only (no password)."""
        return self._get("pacsUser")

    @user.setter
    def user(self, value: str) -> None:
        self.store[PREFIX + "pacsUser"] = value.strip()

    # the two methods ensure_upload_consent calls, keyed apart from remote inference's consent
    def _consented(self) -> list[str]:
        try:
            urls = json.loads(self._get("pacsUploadConsent") or "[]")
        except ValueError:
            return []
        return [u for u in urls if isinstance(u, str)]

    def upload_consent(self, url: str) -> bool:
        return url.rstrip("/") in self._consented()

    def set_upload_consent(self, url: str) -> None:
        self.store[PREFIX + "pacsUploadConsent"] = json.dumps(sorted(set(self._consented()) | {url.rstrip("/")}))


def ensure_pacs_consent(settings: PacsPanelSettings, url: str, ask: AskConsent | None) -> bool:
    """True when segmentations may be sent to ``url`` (asks unless 'don't ask again' was ticked)."""
    if ask is None:
        return settings.upload_consent(url)
    return ensure_upload_consent(settings, url, ask)  # type: ignore[arg-type]  # same two methods


# -- Slicer's own DICOM settings (used when TextSeg has no server of its own) ------------------
#: Slicer's DICOM Send dialog (Modules/Scripted/DICOMLib/DICOMSendDialog.py, 5.10 and 5.12) keeps
#: the server address and protocol ("DIMSE" or "DICOMweb") under these QSettings keys
SLICER_SEND_URL = "DICOM/Send/URL"
SLICER_SEND_PROTOCOL = "DICOM/Send/Protocol"
#: DICOMLib.DICOMUtils.getGlobalDICOMAuth (HTTP Basic for DICOMweb) reads these keys
SLICER_DICOMWEB_USER = "GLOBAL_DICOMWEB_USER_KEY"
SLICER_DICOMWEB_PASSWORD = "GLOBAL_DICOMWEB_PASSWORD_KEY"


@dataclass
class PacsServer:
    """Where Send to PACS goes: TextSeg's own fields or Slicer's DICOM Send setting."""

    url: str
    user: str = ""
    secret: str = ""
    source: str = "TextSeg"  # or "Slicer"


def _value(qsettings: Any, key: str) -> str:
    v = qsettings.value(key, "")
    return "" if v is None else str(v).strip()


def slicer_dicomweb_server(qsettings: Any) -> PacsServer | None:
    """``qsettings``: Slicer's application ``qt.QSettings()`` (anything with ``value(key, default)``).
    The DICOMweb server of Slicer's DICOM Send dialog, with Slicer's global DICOMweb user and
    password; None when none is set or its protocol is DIMSE (TextSeg sends over DICOMweb only)."""
    if qsettings is None:
        return None
    url = _value(qsettings, SLICER_SEND_URL)
    if not url or _value(qsettings, SLICER_SEND_PROTOCOL).lower() != "dicomweb":
        return None
    if "://" not in url:  # the dialog accepts "host:port/path"; DICOMSender reads it with QUrl.fromUserInput
        url = "http://" + url
    user, password = _value(qsettings, SLICER_DICOMWEB_USER), _value(qsettings, SLICER_DICOMWEB_PASSWORD)
    return PacsServer(url.rstrip("/"), user, password if user else "", "Slicer")


def choose_server(url: str, user: str, secret: str, qsettings: Any) -> PacsServer | None:
    """TextSeg's server when its URL is set, else Slicer's DICOMweb Send server, else None."""
    if url.strip():
        return PacsServer(url.strip().rstrip("/"), user.strip(), secret)
    return slicer_dicomweb_server(qsettings)


def prepare(logic: Any, volume_node: Any, segmentation_node: Any,
            file_for_instance: Callable[[str], str] | None = None) -> tuple[Segmentation, list[str]]:
    """The masks and the source DICOM files (MRML access: call on the main thread)."""
    from .dicom_export import require_dicom, segmentation_from_node, source_files

    require_dicom()
    files = source_files(volume_node, file_for_instance)
    return segmentation_from_node(logic, volume_node, segmentation_node), files
