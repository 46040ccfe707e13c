"""A small DICOMweb client on dicomweb-client: QIDO-RS search, WADO-RS pull into a cache, STOW-RS push.

* Transient failures (connection refused or reset, HTTP 429/502/503/504) are
  retried with exponential back-off by urllib3's ``Retry`` on the session;
  POST is retried too (STOW-RS of the same instances is idempotent).
* HTTP 401/403, 404 and 413 become :class:`PacsError` with what to do.
* Credentials live on the session's ``auth`` object, never in a header
  dictionary that a library might log, and never in messages.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from .config import PacsError, PacsSettings

TRANSIENT = (429, 502, 503, 504)
#: WADO-RS: the instances as stored (no transcoding, which servers may not support for e.g. JPEG 2000)
AS_STORED = (("application/dicom", "*"),)


def _session(settings: PacsSettings, retries: int):
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    class _Bearer(requests.auth.AuthBase):
        def __init__(self, token: str):
            self._token = token

        def __call__(self, r):
            r.headers["Authorization"] = f"Bearer {self._token}"
            return r

        def __repr__(self) -> str:
            return "<bearer token>"

    s = requests.Session()
    if settings.token:
        s.auth = _Bearer(settings.token)
    elif settings.username is not None:
        s.auth = requests.auth.HTTPBasicAuth(settings.username, settings.password or "")
    retry = Retry(total=retries, connect=retries, read=1, status=retries, backoff_factor=0.5,
                  status_forcelist=TRANSIENT, allowed_methods=None, respect_retry_after_header=True,
                  raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


class PacsClient:
    """QIDO/WADO/STOW against one DICOMweb server (see :func:`~.config.resolve_settings`)."""

    def __init__(self, settings: PacsSettings, retries: int = 3):
        try:
            from dicomweb_client.api import DICOMwebClient
        except ImportError:
            raise PacsError("DICOMweb needs dicomweb-client, which is not installed.",
                            "Install the extra: pip install 'textseg[dicom]'.") from None
        self.settings = settings
        self._client = DICOMwebClient(settings.url, session=_session(settings, retries), timeout=settings.timeout)
        self._client.set_http_retry_params(retry=False)  # urllib3 does the retrying

    def __repr__(self) -> str:
        return f"PacsClient({self.settings!r})"

    # -- errors -----------------------------------------------------------------
    def _call(self, what: str, fn, *args, not_found: str | None = None, **kwargs):
        import requests

        url = self.settings.url
        try:
            return fn(*args, **kwargs)
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code in (401, 403):
                raise PacsError(f"{url}: the server refused the credentials for {what} (HTTP {code}).",
                                "Check the token or user:password (--token/--user, TEXTSEG_DICOMWEB_TOKEN/"
                                "TEXTSEG_DICOMWEB_USER or the config file).") from None
            if code == 404:
                raise PacsError(f"{url}: {not_found or what + ' found nothing'} (HTTP 404).",
                                "Check the UID, e.g. with `textseg pacs series`.") from None
            if code == 413:
                raise PacsError(f"{url}: the server rejected {what} as too large (HTTP 413).",
                                "Raise the server's upload limit, or write a smaller LABELMAP SEG "
                                "(--seg-type LABELMAP).") from None
            if code in TRANSIENT or code >= 500:
                raise PacsError(f"{url}: {what} failed with HTTP {code} after retries (server busy or failing).",
                                "Try again later or ask the PACS administrator.") from None
            raise PacsError(f"{url}: {what} failed with HTTP {code}.", "Check the request and the server log.") from None
        except requests.exceptions.RetryError as exc:
            raise PacsError(f"{url}: {what} kept failing after retries ({type(exc).__name__}).",
                            "Try again later or ask the PACS administrator.") from None
        except requests.ConnectionError:
            raise PacsError(f"{url}: cannot connect to the DICOMweb server for {what}.",
                            "Check the URL, the network and that the server is running.") from None
        except requests.Timeout:
            raise PacsError(f"{url}: {what} timed out after {self.settings.timeout:g} s.",
                            "Try again, or raise the timeout in the config file.") from None

    # -- QIDO-RS ----------------------------------------------------------------
    def find_studies(self, patient_id: str | None = None, study_uid: str | None = None,
                     modality: str | None = None, limit: int | None = None) -> list[dict]:
        """Studies as flat dicts (StudyInstanceUID, PatientID, StudyDate, StudyDescription, …)."""
        filters = {k: v for k, v in (("PatientID", patient_id), ("StudyInstanceUID", study_uid),
                                     ("ModalitiesInStudy", modality)) if v}
        found = self._call("the study search", self._client.search_for_studies, search_filters=filters or None,
                           limit=limit, fields=["StudyDescription", "PatientName", "NumberOfStudyRelatedSeries"])
        return [_flat(d) for d in found]

    def find_series(self, study_uid: str | None = None, series_uid: str | None = None,
                    modality: str | None = None, limit: int | None = None) -> list[dict]:
        """Series as flat dicts (SeriesInstanceUID, StudyInstanceUID, Modality, SeriesDescription, …)."""
        filters = {k: v for k, v in (("SeriesInstanceUID", series_uid), ("Modality", modality)) if v}
        found = self._call("the series search", self._client.search_for_series, study_instance_uid=study_uid,
                           search_filters=filters or None, limit=limit,
                           fields=["SeriesDescription", "NumberOfSeriesRelatedInstances", "StudyInstanceUID"])
        return [_flat(d) for d in found]

    def study_of(self, series_uid: str) -> str:
        hits = self.find_series(series_uid=series_uid)
        if not hits:
            raise PacsError(f"{self.settings.url}: no series with UID {series_uid} on the server.",
                            "Check the UID, e.g. with `textseg pacs series --study UID`.")
        return str(hits[0]["StudyInstanceUID"])

    # -- WADO-RS ----------------------------------------------------------------
    def pull_series(self, series_uid: str, study_uid: str | None = None, cache: str | os.PathLike | None = None,
                    refresh: bool = False) -> Path:
        """Download a series into ``cache/<study>/<series>/`` (atomic); returns that folder.
        A complete earlier download is reused unless ``refresh``."""
        study_uid = study_uid or self.study_of(series_uid)
        root = Path(cache).expanduser() if cache else self.settings.cache_dir()
        target = root / _safe(study_uid) / _safe(series_uid)
        if (target / ".complete").is_file() and not refresh:
            return target
        root.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".textseg-pull-", dir=target.parent))
        try:
            datasets = self._call(f"the download of series {series_uid}", self._client.retrieve_series,
                                  study_uid, series_uid, media_types=AS_STORED, not_found=f"series {series_uid} of study {study_uid} is not on the server")
            if not datasets:
                raise PacsError(f"{self.settings.url}: series {series_uid} has no instances.", "Check the UID.")
            for n, ds in enumerate(datasets):
                name = _safe(str(ds.get("SOPInstanceUID", "") or f"instance{n}")) + ".dcm"
                ds.save_as(tmp / name, enforce_file_format=True)
            (tmp / ".complete").write_text(f"{len(datasets)}\n", encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def retrieve_instances(self, series_uid: str, study_uid: str | None = None) -> list:
        study_uid = study_uid or self.study_of(series_uid)
        return self._call(f"the download of series {series_uid}", self._client.retrieve_series, study_uid, series_uid,
                          media_types=AS_STORED, not_found=f"series {series_uid} is not on the server")

    # -- STOW-RS ----------------------------------------------------------------
    def push(self, files: Iterable[str | os.PathLike]) -> list[str]:
        """Store DICOM files; returns the SOP Instance UIDs the server accepted."""
        import pydicom

        datasets = []
        for f in expand_dicom_files(files):
            try:
                datasets.append(pydicom.dcmread(f))
            except Exception as exc:
                raise PacsError(f"{f}: cannot be read as DICOM ({exc}).", "Push DICOM files only.") from None
        if not datasets:
            raise PacsError("nothing to push.", "Name one or more DICOM files.")
        studies = {str(ds.StudyInstanceUID) for ds in datasets}
        reply = self._call(f"the upload of {len(datasets)} instance(s)", self._client.store_instances, datasets,
                           study_instance_uid=studies.pop() if len(studies) == 1 else None)
        failed = reply.get("FailedSOPSequence") if reply is not None else None
        if failed:
            reasons = ", ".join(str(i.get("FailureReason", "?")) for i in failed)
            raise PacsError(f"{self.settings.url}: the server refused {len(failed)} instance(s) (failure reasons {reasons}).",
                            "Check the server log; the SOP class may not be accepted.")
        ok = reply.get("ReferencedSOPSequence", []) if reply is not None else []
        return [str(i.ReferencedSOPInstanceUID) for i in ok]


def _safe(uid: str) -> str:
    return "".join(ch for ch in uid if ch.isalnum() or ch in ".-_") or "unknown"


_KEYWORDS = {"0020000D": "StudyInstanceUID", "0020000E": "SeriesInstanceUID", "00100020": "PatientID",
             "00100010": "PatientName", "00080020": "StudyDate", "00081030": "StudyDescription",
             "0008103E": "SeriesDescription", "00080060": "Modality", "00200011": "SeriesNumber",
             "00080061": "ModalitiesInStudy", "00201206": "NumberOfStudyRelatedSeries",
             "00201209": "NumberOfSeriesRelatedInstances"}


def _flat(item: dict) -> dict:
    """DICOM JSON (tag -> {vr, Value}) to {keyword: first value}."""
    out = {}
    for tag, name in _KEYWORDS.items():
        value = (item.get(tag) or {}).get("Value")
        if value:
            v = value[0] if len(value) == 1 else value
            if isinstance(v, dict) and "Alphabetic" in v:
                v = v["Alphabetic"]
            out[name] = v
    return out


def expand_dicom_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder contributes every file under it (hidden files and DICOMDIR skipped)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                          and f.name.upper() != "DICOMDIR")
        else:
            out.append(p)
    return out


def series_table(rows: Sequence[dict], keys: Sequence[str]) -> str:
    """A plain text table for the CLI."""
    if not rows:
        return "(none)"
    def cell(value: object) -> str:  # a multi-valued attribute (ModalitiesInStudy) as "CT, SEG"
        return ", ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)

    table = [[cell(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(row[i]) for row in table)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    return "\n".join(lines)
