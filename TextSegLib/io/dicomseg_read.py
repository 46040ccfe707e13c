"""Read a DICOM Segmentation (BINARY, FRACTIONAL or LABELMAP) into a :class:`Segmentation`.

* :func:`read_dicom_seg` ``(path, reference=None)``: with ``reference`` (the
  source Volume, its DICOM folder, or any grid with ``shape``/``ijk_to_ras``)
  the masks land on that grid, voxel for voxel; without it the grid is built
  from the SEG's own frames (full rows and columns, slices from the first to
  the last stored frame; ``segmentation.meta['grid'] == 'frames'``).
* :func:`read_segmentation` reads ``.seg.nrrd`` or DICOM SEG by content.

Names, terminology strings (codes), colours (CIELab -> sRGB), concept ids,
prompt text and algorithm identification come back on each segment; the
private free-text codes of :mod:`.dicomseg` come back as no terminology.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from ..errors import GeometryError, InputFileError
from ..segmentation import Geometry, Segment, Segmentation, terminology_string
from .dicom_planes import Plane, grid_of_planes, plane_on_grid
from .dicomseg import PRIVATE_SCHEME, DicomSegError, _lazy_imports

SEG_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
                   "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage"}


def is_dicom_file(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def is_dicom_seg(path: str | os.PathLike) -> bool:
    """True for a DICOM file whose SOP class is a segmentation (reads the header only)."""
    if not Path(path).is_file() or not is_dicom_file(path):
        return False
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:
        return False
    return str(ds.get("SOPClassUID", "")) in SEG_SOP_CLASSES


def _code(item, keyword: str):
    seq = item.get(keyword) if item is not None else None
    if not seq:
        return None
    c = seq[0]
    return (str(c.CodingSchemeDesignator), str(c.CodeValue), str(c.CodeMeaning))


def _terminology(item) -> str:
    category = _code(item, "SegmentedPropertyCategoryCodeSequence")
    type_ = _code(item, "SegmentedPropertyTypeCodeSequence")
    if not category or not type_ or PRIVATE_SCHEME in (category[0], type_[0]):
        return ""
    modifier = _code(item.SegmentedPropertyTypeCodeSequence[0], "SegmentedPropertyTypeModifierCodeSequence")
    regions = item.get("AnatomicRegionSequence")
    region = _code(item, "AnatomicRegionSequence")
    region_mod = _code(regions[0], "AnatomicRegionModifierSequence") if regions else None
    return terminology_string(category, type_, modifier, region, region_mod)


def _algorithm(item) -> dict:
    out: dict = {"algorithm_type": str(item.get("SegmentAlgorithmType", "") or "")}
    seq = item.get("SegmentationAlgorithmIdentificationSequence")
    if seq:
        a = seq[0]
        out["algorithm"] = {"name": str(a.get("AlgorithmName", "")), "version": str(a.get("AlgorithmVersion", "")),
                            "source": str(a.get("AlgorithmSource", "") or "")}
        for kv in str(a.get("AlgorithmParameters", "") or "").split(","):
            key, sep, value = kv.partition("=")
            if sep and key.strip():
                out.setdefault("parameters", {})[key.strip()] = unquote(value)
    return out


def _colour(hd, item) -> tuple[float, float, float] | None:
    lab = item.get("RecommendedDisplayCIELabValue")
    if not lab:
        return None
    r, g, b = hd.color.CIELabColor.from_dicom_value([int(v) for v in lab]).to_rgb(clip=True)
    return (r / 255.0, g / 255.0, b / 255.0)


def _planes(ds) -> list[Plane]:
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    out = []
    for n, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        def group(keyword):
            seq = fg.get(keyword) or (shared.get(keyword) if shared is not None else None)
            if not seq:
                raise DicomSegError(f"DICOM SEG frame {n + 1}: has no {keyword}.", "The file is not a valid SEG of a 3D series.")
            return seq[0]
        pos = group("PlanePositionSequence").ImagePositionPatient
        ori = group("PlaneOrientationSequence").ImageOrientationPatient
        spacing = group("PixelMeasuresSequence").PixelSpacing
        out.append(Plane(tuple(float(v) for v in pos), tuple(float(v) for v in ori),
                         tuple(float(v) for v in spacing), int(ds.Rows), int(ds.Columns)))
    return out


def _reference_geometry(reference) -> Geometry:
    if isinstance(reference, (str, os.PathLike)):
        from .volumes import read_volume

        reference = read_volume(reference)
    return Geometry.of(reference)


def read_dicom_seg(path: str | os.PathLike, reference=None) -> Segmentation:
    """Read a DICOM SEG file (see the module docstring)."""
    hd, pydicom = _lazy_imports()
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputFileError(f"{p}: no such file.", "Check the path.")
    try:
        ds = pydicom.dcmread(p)
    except Exception as exc:
        raise InputFileError(f"{p.name}: cannot be read as DICOM ({exc}).", "Check that the file is complete.") from None
    sop = str(ds.get("SOPClassUID", ""))
    if sop not in SEG_SOP_CLASSES:
        raise InputFileError(f"{p.name}: is a DICOM file but not a segmentation (SOP class {sop or 'missing'}).",
                             "Pass a DICOM SEG file; read image series with read_volume(folder).")
    seg_type = str(ds.get("SegmentationType", "BINARY")).upper()
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise InputFileError(f"{p.name}: its pixel data cannot be decoded ({exc}).",
                             "Install the decoder for its transfer syntax or export it uncompressed.") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = pixels.reshape(frames, int(ds.Rows), int(ds.Columns))
    planes = _planes(ds)
    if reference is not None:
        geometry = _reference_geometry(reference)
        ref_for = str((getattr(reference, "meta", None) or {}).get("FrameOfReferenceUID", "") or "")
        if ref_for and ref_for != str(ds.get("FrameOfReferenceUID", ref_for)):
            raise GeometryError(f"{p.name}: its frame of reference {ds.FrameOfReferenceUID} differs from the "
                                f"reference volume's ({ref_for}).", "Pass the series the SEG was made on.")
    else:
        measures = ds.SharedFunctionalGroupsSequence[0].get("PixelMeasuresSequence") \
            if "SharedFunctionalGroupsSequence" in ds else None
        between = measures[0].get("SpacingBetweenSlices") if measures else None
        shape, matrix = grid_of_planes(planes, float(between) if between else None)
        geometry = Geometry(shape, matrix)
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    items = {int(it.SegmentNumber): it for it in ds.SegmentSequence if int(it.SegmentNumber) > 0}
    masks = {n: np.zeros(geometry.shape, dtype=bool) for n in items}
    threshold = 0.5 * float(ds.get("MaximumFractionalValue", 1) or 1) if seg_type == "FRACTIONAL" else 0
    for f, plane in enumerate(planes):
        where = plane_on_grid(plane, geometry.shape, geometry.ijk_to_ras, what=f"{p.name} frame {f + 1}")
        frame = pixels[f]
        if seg_type == "LABELMAP":
            for n in np.unique(frame):
                if int(n) in masks:
                    m = where.take(masks[int(n)])
                    where.put(masks[int(n)], m | (frame == n))
            continue
        fg = ds.PerFrameFunctionalGroupsSequence[f]
        ident = fg.get("SegmentIdentificationSequence") or (shared.get("SegmentIdentificationSequence") if shared else None)
        if not ident:
            raise DicomSegError(f"{p.name} frame {f + 1}: has no Segment Identification.", "The file is not a valid SEG.")
        n = int(ident[0].ReferencedSegmentNumber)
        if n not in masks:
            raise DicomSegError(f"{p.name} frame {f + 1}: refers to segment {n}, which the Segment Sequence lacks.")
        where.put(masks[n], where.take(masks[n]) | (frame > threshold))
    out = Segmentation(geometry)
    for n, item in sorted(items.items()):
        info = _algorithm(item)
        params = info.get("parameters", {})
        meta = {"segment_number": n, **info}
        if item.get("SegmentDescription") or params.get("prompt"):
            meta["prompt"] = params.get("prompt") or str(item.SegmentDescription)
        seg = Segment(name=str(item.get("SegmentLabel", "") or f"Segment {n}"), mask=masks[n],
                      terminology=_terminology(item), color=_colour(hd, item),
                      concept_id=params.get("concept") or None, meta=meta)
        out.add(seg, on_conflict="rename")
    out.meta.update(source=str(p), format="DICOM SEG", segmentation_type=seg_type,
                    grid="reference" if reference is not None else "frames",
                    SeriesInstanceUID=str(ds.get("SeriesInstanceUID", "")),
                    StudyInstanceUID=str(ds.get("StudyInstanceUID", "")),
                    FrameOfReferenceUID=str(ds.get("FrameOfReferenceUID", "")),
                    referenced_series=[str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])])
    for key in ("model", "weights_sha256"):
        values = {s.meta.get("parameters", {}).get(key) for s in out} - {None}
        if len(values) == 1:
            out.meta[key] = values.pop()
    return out


def read_segmentation(path: str | os.PathLike, reference=None) -> Segmentation:
    """Read a Slicer ``.seg.nrrd`` or a DICOM SEG file (by its content)."""
    p = Path(path).expanduser()
    if p.is_file() and is_dicom_file(p):
        return read_dicom_seg(p, reference=reference)
    if p.name.lower().endswith((".seg.nrrd", ".nrrd")):
        from .segfiles import read_seg_nrrd

        return read_seg_nrrd(p)
    if not p.exists():
        raise InputFileError(f"{p}: no such file.", "Check the path.")
    raise InputFileError(f"{p.name}: is neither a Slicer .seg.nrrd nor a DICOM SEG file.",
                         "Pass a .seg.nrrd or a DICOM SEG (.dcm) file.")
