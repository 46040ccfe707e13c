"""Read and write scalar 3D volumes: NIfTI, NRRD, MetaImage and DICOM folders.

Every failure is a :class:`TextSegError` subclass naming the file, what is
wrong and what to do; SimpleITK's own error text is never shown raw.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputFileError, OutputPathError, VolumeTooLargeError
from ..volume import Volume, check_plausible_geometry, max_voxels, normalize_modality
from ._itk import itk_reason, quiet_itk
from .sitk_convert import from_sitk, to_sitk
from .writing import atomic_replace, check_output_path, output_set, write_atomically  # noqa: F401 (re-exported)

#: extension -> format name, for files read_volume accepts.
READ_FORMATS = {".nii": "NIfTI", ".nii.gz": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD",
                ".mha": "MetaImage", ".mhd": "MetaImage"}
#: extension -> format name, for files write_volume produces.
WRITE_FORMATS = {".nii": "NIfTI", ".nii.gz": "NIfTI", ".nrrd": "NRRD", ".mha": "MetaImage"}


def extension(path: str | os.PathLike) -> str:
    """Lower-case extension, keeping ``.nii.gz`` whole."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def read_volume(path: str | os.PathLike, modality: str | None = None,
                series_uid: str | None = None) -> Volume:
    """Read a 3D scalar scan from a NIfTI/NRRD/MHA file or a DICOM series folder.

    ``modality`` ('ct', 'mri', 'pet') overrides detection; when ``None`` it
    comes from the DICOM Modality tag or, failing that, :func:`guess_modality`
    (the reason is kept in ``volume.meta['modality_reason']``).
    """
    from .modality import guess_modality

    p = Path(path).expanduser()
    if not p.exists():
        raise InputFileError(f"{p}: no such file or folder.", "Check the path and its spelling.")
    if p.is_dir():
        from .dicom import read_dicom_series

        volume = read_dicom_series(p, series_uid=series_uid)
    else:
        if series_uid:
            raise InputFileError(
                f"{p.name}: a series UID was given but this is a single file, not a DICOM folder.",
                "Drop the series UID, or pass the folder that holds the DICOM series.",
            )
        volume = _read_file(p)
    check_plausible_geometry(volume)
    volume.meta.setdefault("source", str(p))
    if modality is not None and modality != "":
        volume.modality = normalize_modality(modality)
        volume.meta["modality_reason"] = "given by the user"
    else:
        volume.modality, volume.meta["modality_reason"] = guess_modality(volume)
    return volume


def _read_file(p: Path) -> Volume:
    ext = extension(p)
    if ext not in READ_FORMATS:
        hint = "Pass the folder that holds the series, not one file." if ext in (".dcm", ".ima") else \
            "Convert it to NIfTI (.nii.gz), NRRD (.nrrd) or MetaImage (.mha), or pass a DICOM folder."
        raise InputFileError(f"{p.name}: file type {ext or '(no extension)'!r} is not supported.", hint)
    kind = READ_FORMATS[ext]
    size = p.stat().st_size
    if size == 0:
        raise InputFileError(f"{p.name}: the file is empty (0 bytes).", "Export or copy the scan again.")
    if kind == "NRRD":
        check_nrrd_header(p, scan=True)
    elif kind == "NIfTI":
        from .nifti_header import check_nifti

        check_nifti(p)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    with quiet_itk():
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            reason = itk_reason(exc)
            if "Unable to determine ImageIO" in reason:
                reason = "its content is not a recognised image format"
            raise InputFileError(
                f"{p.name}: cannot be read as a {kind} image ({reason}).",
                f"Check that it really is a {kind} file and opens in another viewer, or export it again.",
            ) from None
    _check_information(p, reader)
    with quiet_itk() as captured:
        try:
            img = reader.Execute()
        except RuntimeError as exc:
            error = exc
        else:
            error = None
    if error is not None:
        reason = itk_reason(error, captured)
        if re.search(r"not read completely|but received|fread got only|unexpected end|premature", reason, re.I):
            raise InputFileError(f"{p.name}: the file is truncated (its voxel data ends early).",
                                 "The download or copy was incomplete; copy or export it again.")
        raise InputFileError(
            f"{p.name}: the voxel data cannot be read ({reason}).",
            "The file may be truncated or corrupt; export or copy it again.",
        ) from None
    volume = from_sitk(img, name=p.name)
    volume.validate(check_values=True)
    volume.meta.update({"format": kind, "file_bytes": size})
    return volume


def _check_size(name: str, shape: tuple[int, ...]) -> None:
    n = int(np.prod([int(s) for s in shape], dtype=np.int64))
    if n > max_voxels():
        raise VolumeTooLargeError(
            f"{name}: {n:,} voxels {tuple(shape)} exceed the limit of {max_voxels():,}.",
            "Crop or downsample the scan, or raise the TEXTSEG_MAX_VOXELS environment variable.",
        )


def _check_information(p: Path, reader: sitk.ImageFileReader) -> None:
    dim, size = reader.GetDimension(), reader.GetSize()
    if dim != 3:
        what = "a 2D image" if dim == 2 else f"a {dim}D image (e.g. a time series)"
        raise InputFileError(
            f"{p.name}: is {what} of size {size}; TextSeg needs one 3D scan.",
            "Pass a 3D volume (for 4D data, extract one 3D frame first).",
        )
    if reader.GetNumberOfComponents() != 1:
        raise InputFileError(
            f"{p.name}: has {reader.GetNumberOfComponents()} components per voxel (colour or vector image); TextSeg needs a scalar (grayscale) volume.",
            "Convert it to a single-channel volume first.",
        )
    _check_size(p.name, size)
    spacing = np.asarray(reader.GetSpacing(), dtype=np.float64)
    if np.any(~np.isfinite(spacing)) or np.any(spacing <= 0):
        raise GeometryError(
            f"{p.name}: voxel spacing {tuple(float(s) for s in spacing)} has a zero, negative or invalid value.",
            "Fix the spacing in the file header (all three must be > 0 mm).",
        )
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(3, 3)
    det = np.linalg.det(direction) if np.all(np.isfinite(direction)) else 0.0
    if abs(det) < 1e-3:
        raise GeometryError(
            f"{p.name}: the direction matrix is singular (determinant {det:.3g}): two image axes point the same way.",
            "Fix the direction cosines / space directions in the file header.",
        )


def check_nrrd_header(p: Path, scan: bool = False) -> dict:
    """The pynrrd header of ``p`` after the checks every NRRD reader (scan or ``.seg.nrrd``) shares:
    a readable header, the voxel cap on the declared sizes, detached data files confined to the
    header's folder. ``scan=True`` also refuses a Slicer segmentation given as the scan."""
    import nrrd

    try:
        header = nrrd.read_header(str(p))
    except Exception as exc:  # pynrrd raises NRRDError or ValueError on bad fields
        raise InputFileError(
            f"{p.name}: the NRRD header is corrupt ({str(exc).splitlines()[0][:200]}).",
            "Fix the header fields or export the volume again.",
        ) from None
    sizes = header.get("sizes")
    if sizes is not None:
        kinds = header.get("kinds") or []
        spatial = [int(s) for s, k in zip(sizes, list(kinds) + [None] * len(sizes))
                   if k in (None, "domain", "space")]
        _check_size(p.name, tuple(spatial))
    data_file = header.get("data file") or header.get("datafile")
    if data_file:
        for name in _nrrd_data_files(p, str(data_file)):
            _check_data_file(p, name)
    if scan and any(str(k).startswith("Segment0_") for k in header):
        raise InputFileError(f"{p.name}: is a Slicer segmentation (.seg.nrrd), not a scan.",
                             "Pass the image it was made on; show the segmentation with `textseg info`.")
    return header


def _nrrd_data_files(p: Path, field: str) -> list[str]:
    """The detached data file names of an NRRD header: one name, a ``LIST`` after the header,
    or a ``printf``-style pattern with min/max/step (NRRD0004 'data file' forms)."""
    parts = field.split()
    if parts[0] == "LIST":
        text = p.read_bytes().split(b"\n\n", 1)
        names = text[1].decode("utf-8", "replace").splitlines() if len(text) > 1 else []
        return [n.strip() for n in names[:100_000] if n.strip()]
    if "%" in parts[0] and len(parts) >= 4:
        try:
            lo, hi, step = (int(x) for x in parts[1:4])
            if step == 0 or abs(hi - lo) // abs(step) > 100_000:
                raise ValueError
            return [parts[0] % i for i in range(lo, hi + (1 if step > 0 else -1), step)]
        except (ValueError, TypeError):
            raise InputFileError(f"{p.name}: the 'data file' pattern {field!r:.80} is not valid.",
                                 "Use 'data file: NAME%03d.raw MIN MAX STEP' or list the files.") from None
    return [field.strip()]


def _check_data_file(p: Path, name: str) -> None:
    """A detached data file must be a regular file inside the header's folder (no /etc/passwd, no
    ../ escapes or symlinks out of it, no devices, pipes or folders)."""
    folder = p.parent.resolve()
    given = Path(name)
    target = (given if given.is_absolute() else folder / given).resolve()
    if target != folder and folder not in target.parents:
        raise InputFileError(
            f"{p.name}: its voxel data file {name!r} lies outside the header's folder ({target}); "
            "TextSeg only reads data files next to their header.",
            "Put the data file in the same folder as the .nhdr and name it without a path.",
        )
    if not target.exists():
        raise InputFileError(
            f"{p.name}: its voxel data file {given.name!r} is missing (the .nhdr holds only the header).",
            "Keep the .nhdr and its data file together in one folder.",
        )
    if target.is_dir():
        raise InputFileError(f"{p.name}: its voxel data file {name!r} is a folder, not a file.",
                             "Point 'data file' at the raw or gzip voxel file.")
    if not target.is_file():
        raise InputFileError(f"{p.name}: its voxel data file {name!r} is a device, pipe or socket, not a file.",
                             "Point 'data file' at the raw or gzip voxel file.")


def write_volume(volume: Volume, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a volume as NIfTI (.nii/.nii.gz), NRRD (.nrrd) or MetaImage (.mha).

    The file is written beside its target and then renamed, so a failed write
    never leaves a half-written file behind.
    """
    p = check_output_path(path, overwrite)
    array = volume.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    img = to_sitk(volume.with_array(array))
    ext = extension(p)

    def write(tmp: str) -> None:
        try:
            with quiet_itk():
                sitk.WriteImage(img, tmp, ext in (".nii.gz", ".nrrd", ".mha"))
        except RuntimeError as exc:
            raise OutputPathError(f"{p}: writing failed ({itk_reason(exc)}).",
                                  "Check free disk space and permissions.") from None

    return write_atomically(p, write, ext)
