"""Read one DICOM image series from a folder (SimpleITK / GDCM).

The series is chosen by UID when a folder holds several; slices are sorted
along the slice normal and must be evenly spaced. Cheap DICOM identifiers
are kept in ``Volume.meta`` for a later DICOM SEG export.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import DicomSeriesError, GeometryError, VolumeTooLargeError
from ..volume import MIN_SPACING_MM, Volume, max_voxels, normalize_modality
from ._itk import itk_reason, quiet_itk
from .dicom_checks import NATIVE, check_slice, syntax_name, transfer_syntax
from .sitk_convert import from_sitk

#: Volume.meta key -> DICOM tag, copied from the first slice of the series.
META_TAGS = {
    "StudyInstanceUID": "0020|000d",
    "SeriesInstanceUID": "0020|000e",
    "FrameOfReferenceUID": "0020|0052",
    "PatientID": "0010|0020",
    "Modality": "0008|0060",
    "SeriesDescription": "0008|103e",
    "SeriesNumber": "0020|0011",
    "StudyDate": "0008|0020",
    "Manufacturer": "0008|0070",
}


@dataclass
class SeriesInfo:
    """One image series found in a folder."""

    uid: str
    description: str
    modality: str
    files: list[str]

    def summary(self) -> str:
        desc = self.description or "no description"
        return f"{self.uid or '(empty UID)'} [{self.modality or '?'}, {desc!r}, {len(self.files)} slice(s)]"


def _tags(path: str) -> dict[str, str]:
    r = sitk.ImageFileReader()
    r.SetFileName(path)
    r.LoadPrivateTagsOff()
    error = None
    with quiet_itk() as captured:
        try:
            r.ReadImageInformation()
        except RuntimeError as exc:
            error = exc
    if error is not None:
        raise DicomSeriesError(f"{Path(path).name}: the DICOM header cannot be read ({itk_reason(error, captured)}).",
                               "The file may be corrupt; export the series again.")
    return {k: r.GetMetaData(k).strip() for k in r.GetMetaDataKeys()}


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """The image series directly inside ``folder`` (not its sub-folders)."""
    name, folder = folder, str(folder)
    error = None
    with quiet_itk() as captured:
        try:
            uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
            found = [(uid, list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))) for uid in uids]
        except RuntimeError as exc:
            error = exc
    if error is not None:
        raise DicomSeriesError(f"{name}: the DICOM headers cannot be parsed ({itk_reason(error, captured)}).",
                               "A file here has a corrupt header; export the series again.")
    with quiet_itk():
        out = []
        for uid, files in found:
            try:
                tags = _tags(files[0])
            except DicomSeriesError:
                tags = {}
            out.append(SeriesInfo(uid, tags.get("0008|103e", ""), tags.get("0008|0060", ""), files))
    return out


def _no_series_error(folder: Path) -> DicomSeriesError:
    entries = list(folder.iterdir())
    files = [e for e in entries if e.is_file() and not e.name.startswith(".")]
    subdirs = [e.name for e in entries if e.is_dir()]
    hint = "Pass the folder that directly holds the DICOM slices."
    if subdirs:
        hint += " Sub-folders here: " + ", ".join(sorted(subdirs)[:5]) + "."
    if not files:
        return DicomSeriesError(f"{folder}: the folder is empty (no files).", hint)
    n_dicom = 0
    for f in files[:200]:
        with open(f, "rb") as fh:
            if fh.read(132)[128:132] == b"DICM":
                n_dicom += 1
    if n_dicom:
        return DicomSeriesError(
            f"{folder}: holds {n_dicom} DICOM file(s) but no image series (no pixel data: reports, structure sets or headers only).",
            hint,
        )
    return DicomSeriesError(f"{folder}: is not a DICOM folder (none of its {len(files)} file(s) is DICOM).", hint)


def _skipped(folder: Path) -> list[str]:
    """DICOM files (by their 'DICM' marker) that belong to no readable series, e.g. corrupt slices."""
    with quiet_itk():
        listed = {str(Path(f).resolve()) for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
                  for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)}
    out = []
    for f in sorted(folder.iterdir()):
        if f.is_file() and str(f.resolve()) not in listed:
            with open(f, "rb") as fh:
                if fh.read(132)[128:132] == b"DICM":
                    out.append(f.name)
    return out


def _choose(folder: Path, series: list[SeriesInfo], series_uid: str | None) -> SeriesInfo:
    if not series:
        raise _no_series_error(folder)
    listing = "; ".join(s.summary() for s in series)
    if series_uid is not None:
        for s in series:
            if s.uid == series_uid:
                return s
        raise DicomSeriesError(f"{folder}: no series with UID {series_uid!r}. Series found: {listing}.",
                               "Pass one of these UIDs.")
    if len(series) > 1:
        raise DicomSeriesError(
            f"{folder}: holds {len(series)} series: {listing}.",
            "Choose one with its series UID (--series-uid in the CLI, series_uid= in Python).",
        )
    return series[0]


def _check_one_kind(folder: Path, files: list[str], tags: list[dict[str, str]]) -> None:
    """One series must be one modality in one frame of reference; else list what is there."""
    for tag, what, hint in (
            ("0008|0060", "modalities", "Put each modality's slices in a folder of its own and pass one of them."),
            ("0020|0052", "frames of reference", "Put the slices of each frame of reference in a folder of their own "
                                                 "and pass one of them.")):
        groups: dict[str, list[str]] = {}
        for f, t in zip(files, tags):
            groups.setdefault(t.get(tag, "").strip(), []).append(Path(f).name)
        if len(groups) > 1:
            listing = "; ".join(f"{k or '(none)'}: {len(v)} slice(s), e.g. {sorted(v)[0]}"
                                for k, v in sorted(groups.items()))
            raise DicomSeriesError(f"{folder}: one series mixes {len(groups)} {what} ({listing}).", hint)


def _slice_geometry(folder: Path, files: list[str]) -> tuple[list[dict[str, str]], bool]:
    """Tags of every slice; checks orientation and spacing; says if float output is needed."""
    tags = [_tags(f) for f in files]
    _check_one_kind(folder, files, tags)
    for f, t in zip(files, tags):
        check_slice(f"{Path(f).name} in {folder}", f, t)
    if len(tags) < 2:
        return tags, False
    try:
        iop = np.array([[float(v) for v in t["0020|0037"].split("\\")] for t in tags])
        ipp = np.array([[float(v) for v in t["0020|0032"].split("\\")] for t in tags])
    except (KeyError, ValueError):
        raise DicomSeriesError(f"{folder}: some slices lack a valid Image Position/Orientation (Patient).",
                               "The series cannot be stacked into a volume; export it again.") from None
    sizes = {(t.get("0028|0010"), t.get("0028|0011")) for t in tags}
    if len(sizes) > 1:
        shown = ", ".join(f"{r}x{c}" for r, c in sorted(sizes, key=str))
        raise DicomSeriesError(f"{folder}: the slices of this series have different sizes ({shown} pixels).",
                               "Export a series whose slices share one matrix size.")
    if np.abs(iop - iop[0]).max() > 1e-3:
        raise DicomSeriesError(f"{folder}: the slices of this series have different orientations.",
                               "Export a single-orientation series (e.g. one localizer plane).")
    normal = np.cross(iop[0, :3], iop[0, 3:])
    order = np.argsort(ipp @ normal)
    travel = ipp[order[-1]] - ipp[order[0]]
    cos = abs(float(travel @ normal)) / max(float(np.linalg.norm(travel)), 1e-9)
    if cos < 0.9999:
        angle = float(np.degrees(np.arccos(min(1.0, cos))))
        raise DicomSeriesError(
            f"{folder}: slices are sheared (stacked at {angle:.1f}° from the slice normal, e.g. gantry tilt); "
            "reading them as a regular grid would distort the anatomy.",
            "Resample the series to a regular grid first (e.g. Slicer's DICOM import with "
            "acquisition geometry regularization).",
        )
    pos = np.sort(ipp @ normal)
    gaps = np.diff(pos)
    if np.all(gaps > 1e-9) and np.all(gaps < MIN_SPACING_MM):
        raise DicomSeriesError(
            f"{folder}: the slices are only {float(np.median(gaps)):.3g} mm apart (ImagePositionPatient), "
            f"closer than any scan's slices (at least {MIN_SPACING_MM:g} mm).",
            "Fix the slice positions in the headers, or export the series again.")
    if np.any(gaps < 1e-3):
        raise DicomSeriesError(
            f"{folder}: {int(np.sum(gaps < 1e-3)) + 1} slices share a position (several echoes, phases or time points in one series).",
            "Split the series (e.g. by echo or time point) and pass one 3D volume.",
        )
    median = float(np.median(gaps))
    if gaps.max() - gaps.min() > max(0.01, 0.01 * median):
        distinct = sorted({round(float(g), 3) for g in gaps})
        shown = ", ".join(f"{g:g}" for g in distinct[:8])
        raise DicomSeriesError(
            f"{folder}: slices are unevenly spaced (gaps of {shown} mm between neighbouring slices); a slice may be missing.",
            "Re-export the complete series, or resample it to even spacing first.",
        )
    slopes = {t.get("0028|1053", "1") for t in tags} | {t.get("0028|1052", "0") for t in tags}
    needs_float = any(not float(v).is_integer() for v in slopes if v) or \
        len({t.get("0028|1053", "1") for t in tags}) > 1
    return tags, needs_float


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> Volume:
    """Read one series of ``folder`` as a :class:`Volume` (modality from the Modality tag)."""
    folder = Path(folder)
    info = _choose(folder, list_series(folder), series_uid)
    first = _tags(info.files[0])
    try:
        n = int(first.get("0028|0010", 0)) * int(first.get("0028|0011", 0)) * \
            max(len(info.files), int(first.get("0028|0008", 1) or 1))
    except ValueError:
        n = 0
    if n > max_voxels():
        raise VolumeTooLargeError(
            f"{folder}: the series has {n:,} voxels, above the limit of {max_voxels():,}.",
            "Crop or downsample the scan, or raise the TEXTSEG_MAX_VOXELS environment variable.",
        )
    tags, needs_float = _slice_geometry(folder, info.files)
    if len(info.files) == 1:
        reader = sitk.ImageFileReader()
        reader.SetFileName(info.files[0])
    else:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(info.files)
    if needs_float:
        reader.SetOutputPixelType(sitk.sitkFloat32)
    error = None
    with quiet_itk() as captured:
        try:
            img = reader.Execute()
        except RuntimeError as exc:
            error = exc
    if error is not None:
        syntaxes = sorted({transfer_syntax(f) for f in info.files} - NATIVE - {""})
        if syntaxes:
            names = ", ".join(f"{syntax_name(u)} ({u})" for u in syntaxes)
            raise DicomSeriesError(f"{folder}: the compressed pixel data ({names}) cannot be decoded; "
                                   "a file is corrupt.", "Export the series again, uncompressed if possible.")
        raise DicomSeriesError(f"{folder}: the series cannot be read ({itk_reason(error, captured)}).",
                               "Check that the files are complete; export the series again.")
    if img.GetDimension() == 3 and img.GetSize()[2] == 1:
        raise DicomSeriesError(f"{folder}: the series has a single slice (a 2D image); TextSeg needs a 3D scan.",
                               "Pass a series with several slices.")
    try:
        volume = from_sitk(img, name=folder.name)
    except GeometryError as exc:
        raise DicomSeriesError(f"{folder}: {exc.message}", exc.hint) from None
    volume.validate(check_values=True)
    first = tags[0] if tags else {}
    meta = {key: first.get(tag, "") for key, tag in META_TAGS.items()}
    meta["SeriesInstanceUID"] = meta["SeriesInstanceUID"] or info.uid
    meta.update(format="DICOM", dicom_files=list(info.files), skipped_files=_skipped(folder),
                SOPInstanceUIDs=[t.get("0008|0018", "") for t in tags])
    volume.meta.update(meta)
    try:
        volume.modality = normalize_modality(meta["Modality"])
    except GeometryError:
        volume.modality = ""  # e.g. 'OT' or 'NM': left to the heuristics
    return volume
