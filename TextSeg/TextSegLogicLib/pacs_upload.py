"""Slicer's "Send to PACS": DICOMweb server settings, per-server consent, test and STOW (Qt-free).

The server URL and user name are kept in the module's settings store; the
password or token is never stored there (like the remote API key it lives
only in the Settings field for the session). Leave the field empty to use the
library's own sources instead: ``TEXTSEG_DICOMWEB_TOKEN`` / ``TEXTSEG_DICOMWEB_USER``
or the ``~/.textseg/dicomweb.json`` config file (which must be ``chmod 600``).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from TextSegLib.errors import TextSegError
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


def client_for(url: str, user: str = "", secret: str = "") -> Any:
    """A PacsClient; ``user`` + ``secret`` is HTTP Basic, ``secret`` alone a bearer token."""
    from TextSegLib.pacs import PacsClient, resolve_settings

    if not url.strip():
        raise TextSegError("No DICOMweb server is set.", "Enter its URL under Settings > PACS (DICOMweb).")
    return PacsClient(resolve_settings(url.strip(), **_auth(user, secret)))


def _auth(user: str, secret: str) -> dict[str, str | None]:
    user, secret = user.strip(), secret.strip()
    if user:
        return {"token": None, "user": f"{user}:{secret}" if secret else user}
    return {"token": secret or None, "user": None}


def check_connection(url: str, user: str = "", secret: str = "") -> tuple[bool, str]:
    """One QIDO-RS query; ``(True, 'Connected to ...')`` or ``(False, one-line error)``."""
    try:
        client = client_for(url, user, secret)
        studies = client.find_studies(limit=1)
    except TextSegError as exc:
        return False, one_line(str(exc), secret)
    except Exception as exc:  # noqa: BLE001 - shown as one line
        return False, one_line(f"{url}: connection test failed ({type(exc).__name__}).", secret)
    cfg = client.settings
    auth = "bearer token" if cfg.token else (f"user {cfg.username}" if cfg.username else "no credentials")
    found = "has studies" if studies else "has no studies yet"
    return True, f"Connected to {client.settings.url} (DICOMweb QIDO-RS answered, {auth}; the server {found})."


@dataclass
class PreparedSeg:
    """What the main thread reads from MRML before the upload runs on a worker thread."""

    segmentation: Segmentation
    source_files: list[str]


def prepare(logic: Any, volume_node: Any, segmentation_node: Any,
            file_for_instance: Callable[[str], str] | None = None) -> PreparedSeg:
    """Read the masks and the source DICOM files (MRML access: call on the main thread)."""
    from .dicom_export import segmentation_from_node, source_files

    files = source_files(volume_node, file_for_instance)
    return PreparedSeg(segmentation_from_node(logic, volume_node, segmentation_node), files)


def write_and_send(prepared: PreparedSeg, url: str, user: str = "", secret: str = "") -> tuple[int, str]:
    """Write the DICOM SEG to a temporary folder, STOW-RS it, delete it; ``(segments, server URL)``."""
    from TextSegLib.io.dicomseg import write_dicom_seg

    from .dicom_export import send_to_pacs

    if not url.strip():
        raise TextSegError("No DICOMweb server is set.", "Enter its URL under Settings > PACS (DICOMweb).")
    with tempfile.TemporaryDirectory(prefix="textseg-pacs-") as folder:
        report = write_dicom_seg(prepared.segmentation, prepared.source_files, os.path.join(folder, "seg.dcm"))
        send_to_pacs(str(report.path), url.strip(), **_auth(user, secret))
    return len(report.segments), url.strip().rstrip("/")


def one_line(message: str, secret: str = "") -> str:
    text = " ".join(message.split())
    return text.replace(secret, "***") if secret else text
