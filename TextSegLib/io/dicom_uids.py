"""The UIDs a DICOM SEG must reference: check them over every file of a series at once, and
write a UID-complete copy of a series whose UIDs are empty (anonymised exports often are).

>>> problems = empty_uids(files)          # {"StudyInstanceUID": ["a.dcm", ...], ...}
>>> check_uids(files, "CT_FOLDER")       # one DicomSegError naming every empty field
>>> fix_uids("CT_FOLDER", "CT_FIXED")    # a copy with each empty UID filled in
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import DicomSeriesError, InputFileError, OutputPathError

#: what a DICOM SEG references of each source image (the Common Instance Reference module needs
#: the study and series, the Referenced Series Sequence every SOP instance and class, and the
#: SEG shares the source's frame of reference)
REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "FrameOfReferenceUID")

#: the SOP class of an image whose SOPClassUID is empty, by modality (only when the file meta says nothing)
_CLASS_BY_MODALITY = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4",
                      "PT": "1.2.840.10008.5.1.4.1.1.128"}


def _read(path: str, pixels: bool = False):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except Exception as exc:  # InvalidDicomError, OSError, ...
        raise InputFileError(f"{path}: cannot be read as DICOM ({exc}).", "Pass the original series files.") from None


def empty_uids(files: Sequence[str]) -> dict[str, list[str]]:
    """``{field: [file names]}`` of every required UID that is empty, over all ``files``."""
    out: dict[str, list[str]] = {}
    for f in files:
        ds = _read(str(f))
        for key in REQUIRED_UIDS:
            if not str(ds.get(key, "") or "").strip():
                out.setdefault(key, []).append(Path(f).name)
    return out


def describe(problems: dict[str, list[str]], total: int) -> str:
    """``StudyInstanceUID (20 of 20 files), SOPInstanceUID (1 of 20: s16.dcm)``."""
    parts = []
    for key in REQUIRED_UIDS:
        names = problems.get(key)
        if not names:
            continue
        which = "" if len(names) == total else ": " + ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        parts.append(f"{key} ({len(names)} of {total} file{'s' if total != 1 else ''}{which})")
    return ", ".join(parts)


def check_uids(files: Sequence[str], where: str = "the source series") -> None:
    """Raise one :class:`~TextSegLib.io.dicomseg.DicomSegError` naming every empty required UID of
    every file, before any model work."""
    problems = empty_uids(files)
    if not problems:
        return
    from .dicomseg import DicomSegError

    folder = str(Path(files[0]).parent) if files else "FOLDER"
    raise DicomSegError(
        f"{where}: a DICOM SEG must reference these UIDs, which are empty: {describe(problems, len(files))}.",
        f"Write a copy with UIDs (`textseg dicom fix-uids {folder} FIXED_FOLDER`) and segment that, "
        "or export the series from the PACS or scanner again.")


def _uid(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["textseg-fix-uids", *parts])


def fix_uids(src: str | os.PathLike, dst: str | os.PathLike) -> dict:
    """Copy the DICOM series in folder ``src`` to the new folder ``dst``, filling each empty
    required UID: SOP instance and class from the file's own meta header when it has them, the
    study, series and frame of reference from a digest of the series' headers, so the same
    input always gets the same UIDs. UIDs that are present are kept. Returns a summary dict."""
    from .dicom import list_series

    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.is_dir():
        raise InputFileError(f"{src}: is not a folder.", "Pass the folder that holds the DICOM series.")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise OutputPathError(f"{dst}: already exists and is not an empty folder.",
                              "Give a new folder name; TextSeg never writes over files.")
    if dst.resolve() == src.resolve():
        raise OutputPathError(f"{dst}: is the input folder.", "Write the copy to a new folder.")
    series = list_series(src)
    if len(series) != 1:
        raise DicomSeriesError(f"{src}: holds {len(series)} image series; fix-uids copies one.",
                               "Put each series in its own folder.")
    files = series[0].files
    headers = [_read(f) for f in files]
    digest = hashlib.sha256()
    for f, ds in zip(files, headers):
        digest.update(Path(f).name.encode())
        for key in ("PatientID", "PatientName", "StudyDate", "StudyTime", "SeriesNumber", "InstanceNumber",
                    "ImagePositionPatient"):
            digest.update(str(ds.get(key, "")).encode())
    seed = digest.hexdigest()
    shared = {"StudyInstanceUID": _uid(seed, "study"), "SeriesInstanceUID": _uid(seed, "series"),
              "FrameOfReferenceUID": _uid(seed, "frame")}
    filled: dict[str, int] = {}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    try:
        for n, f in enumerate(files):
            ds = _read(f, pixels=True)
            meta = getattr(ds, "file_meta", None)
            for key in REQUIRED_UIDS:
                if str(ds.get(key, "") or "").strip():
                    continue
                if key == "SOPInstanceUID":
                    value = str(getattr(meta, "MediaStorageSOPInstanceUID", "") or "") or _uid(seed, "instance", str(n))
                elif key == "SOPClassUID":
                    value = str(getattr(meta, "MediaStorageSOPClassUID", "") or "") or \
                        _CLASS_BY_MODALITY.get(str(ds.get("Modality", "")).upper(), "")
                    if not value:
                        raise DicomSeriesError(f"{Path(f).name}: empty SOPClassUID and no modality to infer it from.",
                                               "Export the series again with its SOP Class UID.")
                else:
                    value = shared[key]
                setattr(ds, key, value)
                filled[key] = filled.get(key, 0) + 1
            if meta is not None:
                meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.save_as(tmp / Path(f).name, enforce_file_format=True)
        if dst.exists():
            dst.rmdir()
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"folder": dst, "files": len(files), "filled": filled,
            "StudyInstanceUID": str(headers[0].get("StudyInstanceUID", "") or shared["StudyInstanceUID"]),
            "SeriesInstanceUID": str(headers[0].get("SeriesInstanceUID", "") or shared["SeriesInstanceUID"])}
