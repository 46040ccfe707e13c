"""Write a :class:`~TextSegLib.segmentation.Segmentation` as a DICOM Segmentation (SEG) with highdicom.

The SEG references its source image series (instances, frame of reference,
patient and study are taken from the source files); one frame is written per
source slice and segment that holds voxels (empty frames are omitted).

Per segment (from its Slicer terminology string, parsed by
:func:`~TextSegLib.segmentation.parse_terminology`):

* Segmented Property Category / Type, with the type modifier (laterality)
  nested in the type item, Anatomic Region (+ modifier) where known;
* Recommended Display CIELab Value from the segment colour (sRGB);
* Segment Algorithm Type ``AUTOMATIC``, or ``SEMIAUTOMATIC`` once refined
  (``segment.meta['refined']``), or ``segment.meta['algorithm_type']``;
* Segmentation Algorithm Identification: name ``TextSeg``, TextSeg's version,
  family *Artificial Intelligence*, source = the model name, and Algorithm
  Parameters ``model=…,weights_sha256=…,concept=…,term=…,prompt=…`` (term:
  what the model was queried with) (values
  percent-encoded, so a prompt with commas stays one value);
* Segment Description = the prompt text.

A segment with no terminology (a free-text prompt that matched no concept)
gets the private codes :data:`FREE_TEXT_CATEGORY` / :data:`FREE_TEXT_TYPE`
of the coding scheme ``99TEXTSEG`` (declared in the Coding Scheme
Identification Sequence). It never borrows an organ's code.

Metadata read from the segmentation (all optional): ``segmentation.meta``
keys ``model``, ``weights_sha256``; ``segment.meta`` keys ``prompt``,
``model``, ``weights_sha256``, ``refined``, ``algorithm_type``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

import numpy as np

from ..errors import InputFileError, TextSegError
from ..segmentation import Code, Segment, Segmentation
from .dicom_planes import Plane, plane_on_grid
from .volumes import check_output_path, write_atomically

#: Private coding scheme for segments that no coded concept describes.
PRIVATE_SCHEME = "99TEXTSEG"
FREE_TEXT_CATEGORY: Code = (PRIVATE_SCHEME, "FREETEXTCAT", "Structure named by free text")
FREE_TEXT_TYPE: Code = (PRIVATE_SCHEME, "FREETEXT", "Structure named by a text prompt, no coded concept")
ALGORITHM_NAME = "TextSeg"
SEG_TYPES = ("BINARY", "LABELMAP")


class DicomSegError(TextSegError):
    """A segmentation that cannot be written as (or read from) DICOM SEG."""


@dataclass
class SegWriteReport:
    """What :func:`write_dicom_seg` wrote."""

    path: Path
    segmentation_type: str
    segments: list[str]
    frames: int
    empty_segments: list[str] = field(default_factory=list)
    series_instance_uid: str = ""
    sop_instance_uid: str = ""


def textseg_version() -> str:
    from .. import __version__

    return __version__


#: what the writer and reader call needs: highdicom 0.27 (CIELabColor.from_rgb / to_rgb), which
#: itself needs pydicom >= 3.0.1 (pyproject's ``dicom`` extra; 3D Slicer >= 5.12 ships both)
HIGHDICOM_MIN, PYDICOM_MIN = (0, 27), (3, 0, 1)


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in (version.split("+")[0].split(".") + ["0", "0"])[:3] if p.isdigit())


def _lazy_imports():
    try:
        import pydicom
    except ImportError:
        pydicom = None
    if pydicom is not None and _release(pydicom.__version__) < PYDICOM_MIN:
        raise DicomSegError(f"DICOM SEG needs pydicom >= 3.0.1 and highdicom >= 0.27; this Python has pydicom "
                            f"{pydicom.__version__} (3D Slicer 5.10 ships pydicom 2.4.4: use Slicer 5.12 or later).",
                            "Outside Slicer: pip install 'textseg[dicom]'. Or write .seg.nrrd / NIfTI instead.")
    try:
        import highdicom as hd
    except ImportError:
        hd = None
    if pydicom is None or hd is None or _release(hd.__version__) < HIGHDICOM_MIN:
        have = f"highdicom {hd.__version__}" if hd is not None else "no highdicom"
        raise DicomSegError(f"DICOM SEG needs highdicom >= 0.27 and pydicom >= 3.0.1; this Python has {have}.",
                            "Install the extra: pip install 'textseg[dicom]' (in Slicer: use 3D Slicer 5.12 or later).")
    return hd, pydicom


# -- source series ----------------------------------------------------------------
def source_files(source) -> list[str]:
    """The source DICOM files of a Volume (``meta['dicom_files']``), a folder or a list of files."""
    if isinstance(source, (list, tuple)):
        files = [str(f) for f in source]
    elif isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        from .dicom import read_dicom_series

        files = list(read_dicom_series(source).meta["dicom_files"])
    else:
        meta = getattr(source, "meta", None) or {}
        files = list(meta.get("dicom_files") or [])
        if not files:
            fmt = meta.get("format") or "a non-DICOM file"
            where = meta.get("source") or getattr(source, "name", "") or "the volume"
            raise DicomSegError(
                f"{where}: DICOM SEG needs the source DICOM series, but this segmentation was made on {fmt}.",
                "Segment the original DICOM series (a folder of slices) instead, or export .seg.nrrd / NIfTI.")
    if not files:
        raise DicomSegError("DICOM SEG: no source DICOM files were given.", "Pass the source series' folder or files.")
    return files


def load_sources(files: Sequence[str]):
    """Read the source headers (no pixel data) and check they can be referenced."""
    _, pydicom = _lazy_imports()
    out = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises InvalidDicomError, OSError, ...
            raise InputFileError(f"{f}: cannot be read as DICOM ({exc}).", "Pass the original series files.") from None
        for key in ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"):
            if not str(ds.get(key, "") or "").strip():
                raise DicomSegError(f"{Path(f).name}: the source image has an empty {key}; a DICOM SEG must reference it.",
                                    "Export the series from the PACS or scanner again (with its UIDs).")
        out.append(ds)
    if len({ds.SeriesInstanceUID for ds in out}) != 1:
        raise DicomSegError("DICOM SEG: the source files belong to more than one series.", "Pass one series.")
    return out


def source_plane(ds) -> Plane:
    try:
        return Plane(tuple(float(v) for v in ds.ImagePositionPatient), tuple(float(v) for v in ds.ImageOrientationPatient),
                     tuple(float(v) for v in ds.PixelSpacing), int(ds.Rows), int(ds.Columns))
    except (AttributeError, TypeError, ValueError):
        raise DicomSegError(f"source image {ds.get('SOPInstanceUID', '?')}: lacks Image Position/Orientation or Pixel Spacing.",
                            "DICOM SEG needs a cross-sectional (CT, MR, PET) source series.") from None


# -- segment descriptions ---------------------------------------------------------
def _concept(hd, code: Code):
    return hd.sr.CodedConcept(value=code[1], scheme_designator=code[0], meaning=code[2] or code[1])


def algorithm_type(segment: Segment) -> str:
    t = str(segment.meta.get("algorithm_type") or "").upper()
    if t in ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"):
        return t
    return "SEMIAUTOMATIC" if segment.meta.get("refined") else "AUTOMATIC"


def _parameters(segmentation: Segmentation, segment: Segment) -> dict[str, str]:
    values = {
        "model": segment.meta.get("model") or segmentation.meta.get("model") or "",
        "weights_sha256": segment.meta.get("weights_sha256") or segmentation.meta.get("weights_sha256") or "",
        "concept": segment.concept_id or "",
        "term": segment.meta.get("term") or "",
        "prompt": segment.meta.get("prompt") or "",
    }
    return {k: quote(str(v), safe=" ()/:;+-_.'") for k, v in values.items() if v}


def describe_segment(hd, segmentation: Segmentation, segment: Segment, number: int):
    """The highdicom SegmentDescription of one segment."""
    from pydicom.sr.codedict import codes

    entry = segment.terminology_entry()
    if entry is None:
        category, type_, modifier, region, region_mod = FREE_TEXT_CATEGORY, FREE_TEXT_TYPE, None, None, None
    else:
        category, type_, modifier = entry.category, entry.type, entry.type_modifier
        region, region_mod = entry.anatomic_region, entry.anatomic_region_modifier
    kind = algorithm_type(segment)
    algo = None
    if kind != "MANUAL":
        params = _parameters(segmentation, segment)
        algo = hd.AlgorithmIdentificationSequence(
            name=ALGORITHM_NAME, family=codes.cid7162.ArtificialIntelligence, version=textseg_version(),
            source=params.get("model") or None, parameters=params or None)
    rgb = segment.color or (0.5, 0.5, 0.5)
    desc = hd.seg.SegmentDescription(
        segment_number=number, segment_label=segment.name[:64], segmented_property_category=_concept(hd, category),
        segmented_property_type=_concept(hd, type_), algorithm_type=kind, algorithm_identification=algo,
        anatomic_regions=[_concept(hd, region)] if region else None,
        display_color=hd.color.CIELabColor.from_rgb(*(int(round(255 * c)) for c in rgb)))
    if modifier:
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [_concept(hd, modifier)]
    if region and region_mod:
        desc.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [_concept(hd, region_mod)]
    prompt = segment.meta.get("prompt")
    if prompt:
        desc.SegmentDescription = str(prompt)[:1024]
    return desc


# -- pixel data -------------------------------------------------------------------
def _frames(segmentation: Segmentation, sources, seg_type: str) -> np.ndarray:
    """``(slices, rows, columns)`` label frames, or ``(…, segments)`` booleans when segments overlap."""
    segs = segmentation.segments
    planes = [plane_on_grid(source_plane(ds), segmentation.shape, segmentation.ijk_to_ras,
                            what=f"source slice {ds.get('InstanceNumber', n + 1)}") for n, ds in enumerate(sources)]
    covered = sorted((pl.axis, pl.slice) for pl in planes)
    axis = covered[0][0]
    if {a for a, _ in covered} != {axis} or [k for _, k in covered] != list(range(segmentation.shape[axis])):
        raise DicomSegError(
            f"DICOM SEG: the {len(sources)} source slices do not cover the segmentation grid "
            f"({' x '.join(map(str, segmentation.shape))}) one slice each.",
            "Pass the complete series the masks were computed on.")
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    dtype = np.uint8 if len(segs) < 256 else np.uint16
    labels = np.zeros(segmentation.shape, dtype=dtype)
    overlapping = False
    for s, seg in enumerate(segs):  # one pass per segment; the pairwise count only when needed
        overlapping = overlapping or bool(np.any(labels[seg.mask]))
        labels[seg.mask] = s + 1
    if overlapping:
        overlaps = segmentation.overlaps()
        if seg_type == "LABELMAP":
            shown = "; ".join(f"{a} / {b} ({n:,} voxels)" for a, b, n in overlaps[:5])
            raise DicomSegError(
                f"DICOM SEG LABELMAP cannot hold overlapping segments, and these overlap: {shown}.",
                "Write BINARY (the default, --seg-type BINARY), which keeps overlaps, or remove the overlap first.")
        out = np.zeros((len(sources), rows, cols, len(segs)), dtype=bool)
        for f, pl in enumerate(planes):
            for s, seg in enumerate(segs):
                out[f, :, :, s] = pl.take(seg.mask)
        return out
    out = np.zeros((len(sources), rows, cols), dtype=dtype)
    for f, pl in enumerate(planes):
        out[f] = pl.take(labels)
    return out


def write_dicom_seg(segmentation: Segmentation, source, path: str | os.PathLike, *,
                    segmentation_type: str = "BINARY", overwrite: bool = False, compress: bool = True,
                    series_description: str | None = None, series_number: int | None = None,
                    series_instance_uid: str | None = None, sop_instance_uid: str | None = None,
                    content_creator: str | None = None) -> SegWriteReport:
    """Write ``segmentation`` (on the grid of the DICOM series ``source``) as a DICOM SEG file.

    ``source`` is the Volume the masks were computed on (read from DICOM), the
    series folder, or its files. ``segmentation_type`` is ``BINARY`` (any
    viewer; overlaps allowed) or ``LABELMAP`` (much smaller; no overlaps;
    needs a recent viewer). ``compress`` stores LABELMAP
    frames RLE-lossless. Segments with no voxels (not found) are left out and
    listed in the report.
    """
    hd, pydicom = _lazy_imports()
    seg_type = segmentation_type.upper()
    if seg_type not in SEG_TYPES:
        raise DicomSegError(f"DICOM SEG type {segmentation_type!r} is not supported.", "Use BINARY or LABELMAP.")
    p = check_output_path(path, overwrite, formats={".dcm": "DICOM SEG"})
    files = source_files(source)
    sources = load_sources(files)
    kept = [s for s in segmentation if s.voxel_count]
    empty = [s.name for s in segmentation if not s.voxel_count]
    if not kept:
        raise DicomSegError("DICOM SEG: every segment is empty (nothing was found), so there is nothing to store.",
                            "Check the prompts; a SEG needs at least one segment with voxels.")
    sub = Segmentation(segmentation.geometry)
    sub.meta = dict(segmentation.meta)
    for s in kept:
        sub.add(s)
    pixels = _frames(sub, sources, seg_type)
    try:
        descriptions = [describe_segment(hd, sub, s, n + 1) for n, s in enumerate(sub)]
    except (ValueError, TypeError) as exc:
        raise DicomSegError(f"DICOM SEG: a segment's codes or labels are not valid DICOM ({exc}).",
                            "Check the segment's terminology (code values, meanings up to 64 characters).") from None
    model = str(segmentation.meta.get("model") or "")
    from .dicomseg_naming import seg_series_description, seg_series_number

    if series_number is None:
        series_number = seg_series_number(sources[0])
    kwargs = {}
    if compress and seg_type == "LABELMAP":
        kwargs["transfer_syntax_uid"] = pydicom.uid.RLELossless
    try:
        ds = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixels, segmentation_type=seg_type,
            segment_descriptions=descriptions,
            series_instance_uid=series_instance_uid or hd.UID(), series_number=series_number,
            sop_instance_uid=sop_instance_uid or hd.UID(), instance_number=1,
            manufacturer="TextSeg", manufacturer_model_name=(model or "TextSeg")[:64],
            software_versions=textseg_version(), device_serial_number="none",
            content_label="TEXTSEG", content_description=(f"TextSeg {model}".strip())[:64],
            content_creator_name=None, omit_empty_frames=True, **kwargs)
    except (ValueError, TypeError) as exc:
        raise DicomSegError(f"DICOM SEG could not be built: {exc}", "Report this with the source series attached.") from None
    ds.SeriesDescription = (series_description or seg_series_description(sub.names))[:64]
    # Type 2 in the Content Identification Macro: present, empty unless the caller names someone
    ds.ContentCreatorName = content_creator if content_creator is not None else \
        str(segmentation.meta.get("content_creator") or "")
    if any(d.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME for d in descriptions):
        item = pydicom.Dataset()
        item.CodingSchemeDesignator = PRIVATE_SCHEME
        item.CodingSchemeName = "TextSeg private codes for uncoded structures"
        item.CodingSchemeResponsibleOrganization = "TextSeg project"
        ds.CodingSchemeIdentificationSequence = [item]
    write_atomically(p, lambda tmp: ds.save_as(tmp, enforce_file_format=True), ".dcm")
    return SegWriteReport(p, seg_type, sub.names, int(ds.NumberOfFrames), empty,
                          str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
