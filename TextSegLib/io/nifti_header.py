"""Checks of a NIfTI file's header and voxel bytes that ITK's reader would skip.

ITK's NIfTI reader silently repairs what it cannot use: an infinite ``pixdim``
becomes 1 mm, a non-unit quaternion is renormalised, missing voxels are filled
and NaN/Inf voxels become 0. These checks run before ITK reads anything, and
every one of them reads a bounded number of bytes (the declared voxel data,
never a gzip stream to its end).
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import GeometryError, InputFileError, VolumeTooLargeError
from ..volume import max_voxels

#: NIfTI-1 datatype code -> numpy type (float types are checked for NaN/Inf).
_FLOAT_TYPES = {16: "f4", 64: "f8"}


def _is_gz(p: Path) -> bool:
    return p.name.lower().endswith(".nii.gz")


def read_header(p: Path) -> dict:
    """The NIfTI-1 header fields TextSeg checks; raises a one-line error for NIfTI-2 or a bad ``dim``."""
    try:
        opener = gzip.open if _is_gz(p) else open
        with opener(p, "rb") as f:
            head = f.read(352)
    except (OSError, EOFError, zlib.error):
        raise InputFileError(f"{p.name}: the file is not valid gzip data.", "Copy or export it again.") from None
    if len(head) < 4:
        raise InputFileError(f"{p.name}: the file is truncated (shorter than a NIfTI header).",
                             "Copy or export it again.")
    sizes = (struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0])
    if 540 in sizes:
        raise InputFileError(f"{p.name}: is a NIfTI-2 file; NIfTI-2 is not supported.",
                             "Save it as NIfTI-1 (e.g. nibabel: nib.save(nib.Nifti1Image(img.dataobj, img.affine), "
                             "'scan.nii.gz')) or as NRRD.")
    if 348 not in sizes:
        raise InputFileError(f"{p.name}: cannot be read as a NIfTI image (its content is not a recognised image "
                             "format: the header does not start with sizeof_hdr 348).",
                             "Check that it really is a NIfTI file and opens in another viewer, or export it again.")
    if len(head) < 348:
        raise InputFileError(f"{p.name}: the file is truncated (shorter than a NIfTI header).",
                             "Copy or export it again.")
    e = "<" if sizes[0] == 348 else ">"
    dims = struct.unpack(e + "8h", head[40:56])
    if not 1 <= dims[0] <= 7:
        raise InputFileError(f"{p.name}: the NIfTI header field dim[0] (the number of dimensions) is {dims[0]}; "
                             "it must be 1 to 7.", "Fix the header or export the scan again.")
    if any(d < 1 for d in dims[1:dims[0] + 1]):
        raise InputFileError(f"{p.name}: the NIfTI header sizes {dims[1:dims[0] + 1]} include a zero or "
                             "negative size.", "Fix the header or export the scan again.")
    datatype, bitpix = struct.unpack(e + "2h", head[70:74])
    pixdim = struct.unpack(e + "8f", head[76:108])
    vox_offset = struct.unpack(e + "f", head[108:112])[0]
    qform_code, sform_code = struct.unpack(e + "2h", head[252:256])
    quatern = struct.unpack(e + "6f", head[256:280])
    srow = struct.unpack(e + "12f", head[280:328])
    if not np.isfinite(vox_offset) or vox_offset < 0:
        raise InputFileError(f"{p.name}: the NIfTI header field vox_offset is {vox_offset:g}.",
                             "Fix the header or export the scan again.")
    nvox = int(np.prod([d for d in dims[1:dims[0] + 1]], dtype=np.int64))
    return {"endian": e, "dims": dims[1:dims[0] + 1], "datatype": datatype, "bitpix": bitpix,
            "pixdim": pixdim, "vox_offset": int(vox_offset), "qform_code": qform_code, "sform_code": sform_code,
            "quatern": quatern, "srow": srow, "data_bytes": nvox * max(bitpix, 0) // 8}


def check_geometry(p: Path, hdr: dict) -> None:
    """Spacing and orientation fields that ITK would repair silently."""
    ndim = min(3, len(hdr["dims"]))
    spacing = hdr["pixdim"][1:ndim + 1]
    if not all(np.isfinite(s) and s != 0 for s in spacing):
        raise GeometryError(
            f"{p.name}: voxel spacing (pixdim) {tuple(float(s) for s in spacing)} has a zero, infinite or invalid "
            "value (a reader would replace it by 1 mm and every volume would come out wrong).",
            "Fix pixdim in the file header (all three must be > 0 mm).")
    if hdr["qform_code"] > 0:
        b, c, d = hdr["quatern"][:3]
        if not all(np.isfinite(v) for v in hdr["quatern"]):
            raise GeometryError(f"{p.name}: the qform quaternion or offset holds NaN or Inf.",
                                "Fix the qform in the file header.")
        if hdr["sform_code"] <= 0 and b * b + c * c + d * d > 1.0 + 1e-4:
            raise GeometryError(
                f"{p.name}: the qform quaternion (b, c, d) = ({b:g}, {c:g}, {d:g}) is not a unit quaternion "
                f"(b²+c²+d² = {b * b + c * c + d * d:.4g} > 1); its orientation is undefined.",
                "Fix the qform in the file header (or store the orientation in the sform).")
    if hdr["sform_code"] > 0 and not all(np.isfinite(v) for v in hdr["srow"]):
        raise GeometryError(f"{p.name}: the sform rows hold NaN or Inf.", "Fix the sform in the file header.")


def _open_data(p: Path, offset: int):
    f = gzip.open(p, "rb") if _is_gz(p) else open(p, "rb")
    if _is_gz(p):
        f.read(offset)
    else:
        f.seek(offset)
    return f


def present_bytes(p: Path, hdr: dict) -> int:
    """Voxel bytes present after ``vox_offset``, counted up to the declared size only."""
    need = hdr["data_bytes"]
    if not _is_gz(p):
        return max(0, min(need, p.stat().st_size - hdr["vox_offset"]))
    with open(p, "rb") as f:
        f.seek(-4, os.SEEK_END)
        isize = struct.unpack("<I", f.read(4))[0]
    if isize == (hdr["vox_offset"] + need) % 2**32:
        return need
    return max(0, min(need, gunzip_length(p, hdr["vox_offset"] + need) - hdr["vox_offset"]))


def gunzip_length(p: Path, limit: int) -> int:
    """Bytes a (possibly truncated, possibly multi-member) gzip file decompresses to, counted no
    further than ``limit``: trailing data past what the header declares is never inflated."""
    total = 0
    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with open(p, "rb") as f:
            while total < limit and (raw := f.read(1 << 16)):
                while raw and total < limit:
                    total += len(dec.decompress(raw, max(1, limit - total)))
                    raw = dec.unconsumed_tail or dec.unused_data
                    if dec.eof and raw:
                        dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    except zlib.error:
        pass
    return min(total, limit)


def count_nonfinite(p: Path, hdr: dict) -> int:
    """NaN/Inf voxels of a float NIfTI, reading the declared voxel bytes only."""
    code = _FLOAT_TYPES.get(hdr["datatype"])
    if not code:
        return 0
    dtype = np.dtype(hdr["endian"] + code)
    left = hdr["data_bytes"]
    bad = 0
    with _open_data(p, hdr["vox_offset"]) as f:
        while left > 0 and (block := f.read(min(left, dtype.itemsize << 20))):
            left -= len(block)
            usable = len(block) - len(block) % dtype.itemsize
            bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(block[:usable], dtype=dtype))))
    return bad


def check_nifti(p: Path) -> None:
    """All checks of a NIfTI-1 file, before ITK reads it."""
    hdr = read_header(p)
    n = int(np.prod(hdr["dims"][:3], dtype=np.int64))
    if n > max_voxels():
        raise VolumeTooLargeError(
            f"{p.name}: {n:,} voxels {tuple(hdr['dims'][:3])} exceed the limit of {max_voxels():,}.",
            "Crop or downsample the scan, or raise the TEXTSEG_MAX_VOXELS environment variable.")
    check_geometry(p, hdr)
    expected = hdr["vox_offset"] + hdr["data_bytes"]
    actual = hdr["vox_offset"] + present_bytes(p, hdr)
    if actual < expected:
        raise InputFileError(
            f"{p.name}: the file is truncated ({actual:,} of {expected:,} bytes present).",
            "The download or copy was incomplete; copy or export it again.",
        )
    bad = count_nonfinite(p, hdr)
    if bad:
        raise InputFileError(
            f"{p.name}: {bad:,} voxel(s) are NaN or Inf.",
            "Replace them (e.g. with the background value) before segmenting.",
        )
