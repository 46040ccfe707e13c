"""Per-slice checks of a DICOM series before GDCM reads its pixels.

GDCM (inside SimpleITK) repairs what it cannot use without saying so: a NaN
ImagePositionPatient or a PixelSpacing of ``0\\0`` becomes 1 mm, a short
PixelData element is zero-padded (two 2 KB files claiming 20000×20000 pixels
are read into gigabytes of −1024), MONOCHROME1 is not inverted. These checks
read the tags GDCM already parsed plus a few header bytes of each file, and
refuse such a series with one line naming the slice and the field, before any
pixel buffer is allocated.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import DicomSeriesError

#: transfer syntaxes whose pixel data is stored uncompressed (bytes can be counted).
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
#: transfer syntax -> name, for those TextSeg's reader (GDCM in SimpleITK) decodes.
DECODED = {
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline", "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless", "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless", "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless", "1.2.840.10008.1.2.4.91": "JPEG 2000",
}
_HTJ2K_HINT = ("Decompress the series first, e.g. with pydicom and the pylibjpeg-openjpeg package (version 2 or "
               "later decodes HTJ2K): ds.decompress(); ds.save_as(...), or export it uncompressed from the PACS.")
#: transfer syntax -> (name, what to do), for compressions GDCM in SimpleITK cannot decode.
UNDECODED = {
    "1.2.840.10008.1.2.4.201": ("HTJ2K Lossless (High-Throughput JPEG 2000)", _HTJ2K_HINT),
    "1.2.840.10008.1.2.4.202": ("HTJ2K Lossless RPCL (High-Throughput JPEG 2000)", _HTJ2K_HINT),
    "1.2.840.10008.1.2.4.203": ("HTJ2K (High-Throughput JPEG 2000)", _HTJ2K_HINT),
    "1.2.840.10008.1.2.4.110": ("JPEG XL Lossless", "Export the series uncompressed from the PACS."),
    "1.2.840.10008.1.2.4.111": ("JPEG XL JPEG Recompression", "Export the series uncompressed from the PACS."),
    "1.2.840.10008.1.2.4.112": ("JPEG XL", "Export the series uncompressed from the PACS."),
}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def transfer_syntax(path: str | Path) -> str:
    """The TransferSyntaxUID of a Part 10 file, read from its file meta group ('' if none)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError:
        return ""
    if head[128:132] != b"DICM":
        return ""
    i = 132
    while i + 8 <= len(head):
        group, elem = struct.unpack_from("<HH", head, i)
        if group != 2:
            break
        vr = head[i + 4:i + 6]
        if vr in _LONG_VRS:
            length, start = struct.unpack_from("<I", head, i + 8)[0], i + 12
        else:
            length, start = struct.unpack_from("<H", head, i + 6)[0], i + 8
        if elem == 0x10:
            return head[start:start + length].rstrip(b"\0 ").decode("ascii", "replace")
        i = start + length
    return ""


def syntax_name(uid: str) -> str:
    return DECODED.get(uid) or UNDECODED.get(uid, (uid,))[0]


def pixel_bytes_present(path: str | Path, syntax: str) -> int | None:
    """Bytes of the PixelData value present in the file (``None`` if that cannot be told: no pydicom,
    encapsulated data). Without pydicom the file size is an upper bound, used by the caller."""
    try:
        import pydicom
    except ImportError:
        return None
    try:
        with open(path, "rb") as f:
            pydicom.dcmread(f, stop_before_pixels=True, force=True)
            start = f.tell()
            head = f.read(12)
            size = f.seek(0, 2)
    except Exception:  # an unreadable header is GDCM's to report
        return None
    if len(head) < 8:
        return 0
    little = syntax != "1.2.840.10008.1.2.2"
    e = "<" if little else ">"
    if struct.unpack(e + "HH", head[:4]) != (0x7FE0, 0x0010):
        return None
    if syntax == "1.2.840.10008.1.2":  # implicit VR
        length, value = struct.unpack(e + "I", head[4:8])[0], start + 8
    elif head[4:6] in _LONG_VRS:
        length, value = struct.unpack(e + "I", head[8:12])[0], start + 12
    else:
        length, value = struct.unpack(e + "H", head[6:8])[0], start + 8
    if length == 0xFFFFFFFF:
        return None
    return max(0, min(length, size - value))


def _numbers(where: str, tags: dict[str, str], tag: str, field: str, count: int) -> np.ndarray | None:
    raw = tags.get(tag, "").strip()
    if not raw:
        return None
    parts = raw.split("\\")
    try:
        values = np.array([float(v) for v in parts], dtype=np.float64)
    except ValueError:
        values = np.array([], dtype=np.float64)
    if values.size != count or not np.all(np.isfinite(values)):
        raise DicomSeriesError(
            f"{where}: {field} ({tag.replace('|', ',')}) is {raw[:60]!r}, not {count} finite number(s).",
            "The slice header is corrupt; export the series again.")
    return values


def check_slice(where: str, path: str, tags: dict[str, str]) -> None:
    """One slice's geometry, pixel description and stored pixel bytes (see the module docstring)."""
    syntax = transfer_syntax(path)
    if syntax in UNDECODED:
        name, hint = UNDECODED[syntax]
        raise DicomSeriesError(f"{where}: its pixel data is compressed as {name} (transfer syntax {syntax}), "
                               "which TextSeg's DICOM reader (GDCM in SimpleITK) cannot decode.", hint)
    for tag, field in (("0028|1053", "RescaleSlope"), ("0028|1052", "RescaleIntercept")):
        _numbers(where, tags, tag, field, 1)
    spacing = _numbers(where, tags, "0028|0030", "PixelSpacing", 2)
    if spacing is not None and np.any(spacing <= 0):
        raise DicomSeriesError(f"{where}: PixelSpacing is {tags['0028|0030']!r}; both values must be > 0 mm "
                               "(a reader would take 1 mm and every volume would come out wrong).",
                               "Fix PixelSpacing in the header, or export the series again.")
    _numbers(where, tags, "0020|0032", "ImagePositionPatient", 3)
    iop = _numbers(where, tags, "0020|0037", "ImageOrientationPatient", 6)
    if iop is not None:
        x, y = iop[:3], iop[3:]
        if abs(np.linalg.norm(x) - 1) > 1e-2 or abs(np.linalg.norm(y) - 1) > 1e-2 or abs(float(x @ y)) > 1e-2:
            raise DicomSeriesError(
                f"{where}: ImageOrientationPatient {tags['0020|0037']!r} is not two perpendicular unit vectors "
                "(row and column directions).", "Fix the orientation in the header, or export the series again.")
    if tags.get("0028|0004", "").strip().upper() == "MONOCHROME1":
        raise DicomSeriesError(
            f"{where}: PhotometricInterpretation is MONOCHROME1 (inverted grey scale, low values shown white), "
            "which TextSeg's reader does not invert; the intensities would not mean what the model expects.",
            "Convert the series to MONOCHROME2 (e.g. gdcmconv or pydicom), or export it again as MONOCHROME2.")
    dims = [_numbers(where, tags, t, f, 1) for t, f in (("0028|0010", "Rows"), ("0028|0011", "Columns"),
                                                        ("0028|0100", "BitsAllocated"))]
    if any(d is None for d in dims) or syntax not in NATIVE | {""}:
        return
    rows, cols, bits = (int(d[0]) for d in dims)  # type: ignore[index]
    frames = _numbers(where, tags, "0028|0008", "NumberOfFrames", 1)
    samples = _numbers(where, tags, "0028|0002", "SamplesPerPixel", 1)
    declared = rows * cols * int(frames[0] if frames is not None else 1) * \
        int(samples[0] if samples is not None else 1) * bits // 8
    present = pixel_bytes_present(path, syntax)
    if present is None:
        present = Path(path).stat().st_size  # upper bound: the whole file
    if present < declared:
        raise DicomSeriesError(
            f"{where}: holds {present:,} of the {declared:,} pixel bytes its header declares ({rows}x{cols} "
            f"pixels, {bits} bits); the slice is truncated or its Rows/Columns are wrong.",
            "Copy or export the series again.")
